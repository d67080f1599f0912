"""The causal student's camera input: every chunk's rays relative to the previous chunk's last frame,
checked against a per-pixel Plücker computation written out here."""

import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.geometry.actions import actions_to_c2w
from worldscape_jax.models.conditioning import camera_input, chunk_camera_input, clip_camera_input

H, W, STRIDE = 8, 12, 4
INTRINSICS = np.array([0.9, 1.1, 0.45, 0.55], np.float32)


def naive_rays(c2w: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """[H, W, 6] Plücker rays [o x d, d] of camera `c2w` seen from `reference`, pixel by pixel."""
    relative = np.linalg.inv(reference.astype(np.float64)) @ c2w.astype(np.float64)
    fx, fy, cx, cy = INTRINSICS * np.array([W, H, W, H])
    out = np.zeros((H, W, 6))
    for i in range(H):
        for j in range(W):
            d = np.array([(j + 0.5 - cx) / fx, (i + 0.5 - cy) / fy, 1.0])
            d = relative[:3, :3] @ (d / np.linalg.norm(d))
            o = relative[:3, 3]
            out[i, j] = np.concatenate([np.cross(o, d), d])
    return out


def naive_pack(frames: list[np.ndarray]) -> np.ndarray:
    """Groups of STRIDE frames into channels, channel c * STRIDE + k = channel c of the group's k-th frame."""
    groups = [np.stack(frames[g:g + STRIDE], axis=-1).reshape(H, W, -1) for g in range(0, len(frames), STRIDE)]
    return np.stack(groups)


def path(text: str) -> np.ndarray:
    start = np.eye(4, dtype=np.float32)
    start[:3, 3] = [3.0, -0.5, 7.0]  # far from the origin: relative poses must not depend on it
    return actions_to_c2w(text, start_c2w=start)


def test_chunk_input_is_relative_to_the_previous_frame():
    c2w = path("wq*2,d,er")  # 1 + 16 pixel frames
    chunk, reference = c2w[9:17], c2w[8]
    ours = chunk_camera_input(jnp.asarray(chunk[None]), jnp.asarray(reference[None]),
                              jnp.broadcast_to(INTRINSICS, (1, 8, 4)), H, W, STRIDE)
    expected = naive_pack([naive_rays(pose, reference) for pose in chunk])
    assert ours.shape == (1, 2, H, W, 6 * STRIDE)
    np.testing.assert_allclose(np.asarray(ours[0]), expected, atol=2e-5)


@pytest.mark.parametrize("frames_per_chunk", [1, 2])
def test_clip_input_is_the_streams_chunks_side_by_side(frames_per_chunk):
    c2w = path("w*2,q*2,dr,s")  # 1 + 24 pixel frames: 6 latent frames after the first
    f = c2w.shape[0]
    intrinsics = jnp.broadcast_to(INTRINSICS, (1, f, 4))
    ours = np.asarray(clip_camera_input(jnp.asarray(c2w[None]), intrinsics, H, W, STRIDE, frames_per_chunk)[0])
    per_chunk = STRIDE * frames_per_chunk
    expected = [naive_pack([naive_rays(c2w[0], c2w[0])] * STRIDE)]
    for start in range(1, f, per_chunk):
        reference = c2w[start - 1]
        expected.append(naive_pack([naive_rays(pose, reference) for pose in c2w[start:start + per_chunk]]))
    np.testing.assert_allclose(ours, np.concatenate(expected), atol=2e-5)
    first = camera_input(jnp.asarray(c2w[None]), intrinsics, H, W, STRIDE)[0, :1]
    np.testing.assert_allclose(ours[:1], np.asarray(first), atol=1e-6)  # the first latent frame as the teacher's
    with pytest.raises(ValueError, match="whole number"):
        clip_camera_input(jnp.asarray(c2w[None, :-4]), intrinsics[:, :-4], H, W, STRIDE, 4)


def test_noised_control_adds_sigma_times_a_normal_draw_to_the_control_channels_only():
    """Against the closed form: channels [0, z) get sigma * N(rng) of shape [..., z], the rest are untouched;
    sigma 0 is the identity and a negative sigma is refused."""
    import jax

    from worldscape_jax.models.conditioning import noised_control

    z = 4
    cond = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 5, 5, 3 * z)), jnp.float32)
    key = jax.random.key(7)
    noised = np.asarray(noised_control(cond, z, 0.3, key))
    expected = np.asarray(cond).copy()
    expected[..., :z] += 0.3 * np.asarray(jax.random.normal(key, (2, 3, 5, 5, z)))
    np.testing.assert_allclose(noised, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(noised[..., z:], np.asarray(cond)[..., z:])
    assert noised_control(cond, z, 0.0, key) is cond
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        noised_control(cond, z, -0.1, key)


def test_low_pass_is_the_block_mean_brought_back_bilinearly():
    """Against NumPy: block means of 4 x 4 pixels, then half-pixel-centred bilinear upsampling with edge clamp;
    a constant image passes unchanged and factor 1 is the identity."""
    from worldscape_jax.models.conditioning import low_pass

    frames = np.random.default_rng(1).uniform(-1, 1, size=(1, 2, 8, 12, 3)).astype(np.float32)
    blocks = frames.reshape(1, 2, 2, 4, 3, 4, 3).mean(axis=(3, 5))

    def axis_weights(n_out, n_in):
        centres = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.floor(centres).astype(int)
        high = np.minimum(low + 1, n_in - 1)
        weights = np.zeros((n_out, n_in))
        weights[np.arange(n_out), low] += 1 - (centres - low)
        weights[np.arange(n_out), high] += centres - low
        return weights

    expected = np.einsum("hi,wj,bfijc->bfhwc", axis_weights(8, 2), axis_weights(12, 3), blocks)
    np.testing.assert_allclose(np.asarray(low_pass(jnp.asarray(frames), 4)), expected, atol=1e-5)
    constant = jnp.full((1, 1, 8, 12, 3), 0.3)
    np.testing.assert_allclose(np.asarray(low_pass(constant, 4)), 0.3, atol=1e-6)
    assert low_pass(jnp.asarray(frames), 1) is not None and np.array_equal(np.asarray(low_pass(jnp.asarray(frames), 1)), frames)
    with pytest.raises(ValueError, match="divide the frame size"):
        low_pass(jnp.asarray(frames), 5)


@pytest.mark.parametrize("with_warp", [False, True])
def test_reference_conditions_equal_the_teachers_separate_encodes(with_warp):
    """The student's per-chunk conditioning is the teacher's: `encode_conditions` of [reference, black...]
    (whatever the later frames held) and, with the warp, `encode_turn_warp` of the reference over a turning
    path; latent 0 alone carries the first-frame channels."""
    import jax

    from worldscape_jax.models import vae as vae_lib
    from worldscape_jax.models.conditioning import encode_conditions, encode_turn_warp, reference_conditions
    from worldscape_jax.models.vae_config import get_vae_config

    vae_config = get_vae_config("tiny")
    vae_params = vae_lib.init_params(vae_config, 0)
    ref = jax.random.uniform(jax.random.key(3), (2, 1, 16, 16, 3), minval=-1, maxval=1)
    c2w = jnp.asarray(np.stack([actions_to_c2w("e,w", start_c2w=np.eye(4, dtype=np.float32)),
                                actions_to_c2w("q,d", start_c2w=np.eye(4, dtype=np.float32))])[:, :5])
    intrinsics = jnp.broadcast_to(jnp.asarray(INTRINSICS), (2, 5, 4))
    ours = np.asarray(reference_conditions(vae_params, vae_config, ref, c2w, intrinsics, turn_warp=with_warp))
    video = jnp.concatenate([ref, jnp.zeros((2, 4, 16, 16, 3))], axis=1)  # frames after the first: any content
    expected = [encode_conditions(vae_params, vae_config, video)]
    if with_warp:
        expected.append(encode_turn_warp(vae_params, vae_config, ref, c2w, intrinsics))
    expected = np.asarray(jnp.concatenate(expected, axis=-1))
    z = vae_config.z_dim
    assert ours.shape == expected.shape == (2, 2, 4, 4, (3 if with_warp else 2) * z)
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)
    assert np.abs(ours[:, 0, ..., z:2 * z]).max() > 0 and not ours[:, 1:, ..., z:2 * z].any()


def test_anchor_weight_falls_linearly_with_travel_and_turn_from_the_anchor():
    """Closed forms along held-key paths (0.08 units and 3 degrees per latent frame, 4 pixel frames each):
    1 - travel / reach times 1 - turn / reach_deg, clipped at 0; a reach of 0 leaves its factor at 1; a
    turned and moved anchor gives the same weights as the identity (only the relative pose counts)."""
    from worldscape_jax.models.conditioning import anchor_weight
    path = jnp.asarray(actions_to_c2w("w*4,s*2,q*4,e*12"))  # frames 0..88
    anchor = jnp.broadcast_to(path[0], path.shape)
    travel = np.concatenate([np.arange(17) * 0.02, 0.32 - np.arange(1, 9) * 0.02, np.full(64, 0.16)])
    turn = np.concatenate([np.zeros(25), np.arange(1, 17) * 0.75, np.abs(12.0 - np.arange(1, 49) * 0.75)])
    expected = np.clip(1 - travel / 0.6, 0, 1) * np.clip(1 - turn / 21.0, 0, 1)
    np.testing.assert_allclose(np.asarray(anchor_weight(anchor, path, 0.6, 21.0)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(anchor_weight(anchor, path, 0.0, 21.0)), np.clip(1 - turn / 21.0, 0, 1),
                               atol=1e-5)
    np.testing.assert_array_equal(np.asarray(anchor_weight(anchor, path, 0.0, 0.0)), np.ones(path.shape[0]))
    assert float(anchor_weight(anchor, path, 0.1, 0.0)[-1]) == 0.0  # 0.16 units away: past a reach of 0.1
    moved = jnp.asarray(actions_to_c2w("w*4,s*2,q*4,e*12", start_c2w=np.asarray(
        [[0.0, 0, 1, 2], [0, 1, 0, -1], [-1, 0, 0, 5], [0, 0, 0, 1]], np.float32)))
    np.testing.assert_allclose(np.asarray(anchor_weight(jnp.broadcast_to(moved[0], moved.shape), moved, 0.6, 21.0)),
                               expected, atol=1e-5)
    with pytest.raises(ValueError, match="reach"):
        anchor_weight(anchor, path, -1.0, 0.0)


def test_drop_outside_warp_scales_only_the_warp_channels_by_the_first_views_coverage():
    """Walking: the first view covers every pixel (cond unchanged). Turned right past the field of view:
    warp channels zero, control and first-frame channels untouched. Turned right a little: the right
    edge loses coverage first, the left keeps it all."""
    from worldscape_jax.models.conditioning import drop_outside_warp
    from worldscape_jax.models.vae_config import get_vae_config
    vae = get_vae_config("tiny")
    z, size = vae.z_dim, 64
    h = size // vae.spatial_factor
    cond = jnp.asarray(np.random.default_rng(0).normal(size=(1, 1, h, h, 3 * z)), jnp.float32)
    intrinsics = jnp.broadcast_to(jnp.asarray([0.9, 0.9, 0.5, 0.5]), (1, 5, 4))

    def dropped(keys, start):
        c2w = jnp.asarray(actions_to_c2w(keys)[None, start:start + 5])
        return np.asarray(drop_outside_warp(cond, c2w, intrinsics, vae, size, size))

    np.testing.assert_array_equal(dropped("w*2", 0), np.asarray(cond))
    far = np.asarray(drop_outside_warp(cond, jnp.asarray(np.concatenate(
        [actions_to_c2w("e")[:1], actions_to_c2w("e*40")[-4:]])[None]), intrinsics, vae, size, size))
    np.testing.assert_array_equal(far[..., :2 * z], np.asarray(cond)[..., :2 * z])
    np.testing.assert_array_equal(far[..., 2 * z:], 0.0)
    near = dropped("e*4", 0)  # frames 1-4 turned 0.75 to 3 degrees right of frame 0
    scale = near[..., 2 * z:] / np.asarray(cond)[..., 2 * z:]
    assert np.allclose(scale[0, 0, :, 0], 1.0) and np.all(scale[0, 0, :, -1] < 1.0)
