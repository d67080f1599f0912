"""The streaming floor on a tiny random-init student: what it caches is what the block-causal model
computes over the same frames, it compiles once, the rolling cache keeps the sink, bad input is named."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.geometry.actions import HELD_KEY_ORDER, actions_to_c2w
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.conditioning import clip_camera_input, drop_outside_warp, encode_conditions, encode_turn_warp
from worldscape_jax.models.dit import Causal, DiTConfig, WanDiT
from worldscape_jax.models.kv_cache import init_kv_cache
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.streaming import RollingPolicy, StreamConfig, StreamSpec, cache_roles, init_stream, step
from worldscape_jax.streaming.policy import EMPTY, LOCAL, SINK

SIZE = 32  # pixels: 8 x 8 latents, 4 x 4 tokens per frame
STEPS = ["wq", "d", "er"]


def dit_config(arg="tiny,control,camera") -> DiTConfig:
    cfg = dit_configs.get_config(arg)
    cfg.num_layers = 2
    return DiTConfig.from_config(cfg)


@functools.lru_cache(maxsize=None)
def fixture(cache_frames: int, variant: str = "tiny,control,camera", reference: str = "newest_frame"):
    dit_cfg, vae_cfg = dit_config(variant), get_vae_config("tiny")
    reach = dict(reference_reach=0.3, reference_reach_deg=10.0, reference_outside="dropped") \
        if reference == "first_frame" else {}
    spec = StreamSpec.create(dit_cfg, vae_cfg, StreamConfig(cache_frames=cache_frames, reference=reference, **reach),
                             SIZE, SIZE)
    model = WanDiT(dit_cfg)
    x = jnp.zeros((1, 1, SIZE // 4, SIZE // 4, dit_cfg.out_dim))
    camera = jnp.zeros((1, 1, SIZE, SIZE, 24))

    @jax.jit  # op by op, the DiT's initialisers take ~10 s
    def init_dit():
        dit_params = model.init(jax.random.key(0), x, jnp.zeros((1, 1)), jnp.zeros((1, 8, 32)),
                                cond=jnp.zeros((1, 1, SIZE // 4, SIZE // 4, dit_cfg.in_dim - 16)), camera=camera)
        # The camera encoder's output starts at zero: perturb every weight so the camera path matters.
        return jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), dit_params["params"])

    dit_params = init_dit()
    params = {"dit": dit_params, "vae": vae_lib.init_params(vae_cfg, 0)}
    first = jax.random.uniform(jax.random.key(2), (1, 1, SIZE, SIZE, 3), minval=-1, maxval=1)
    return spec, params, first


def held(keys: str) -> jnp.ndarray:
    return jnp.asarray([[[k in keys for k in HELD_KEY_ORDER]]])


START = np.array([[0.0, 0, 1, 2], [0, 1, 0, -1], [-1, 0, 0, 5], [0, 0, 0, 1]], np.float32)  # turned and moved
INTRINSICS = jnp.asarray([[0.9, 0.9, 0.5, 0.5]])


@functools.partial(jax.jit, static_argnums=(1, 4))  # op by op, each call's VAE encodes take seconds
def teacher_clip_conditions(vae_params, vae_cfg, ref_frame, c2w, turn_warp: bool):
    """The teacher's conditioning of a clip from `ref_frame` over c2w [1, F, 4, 4], built from its parts:
    [control | first frame] of [ref_frame, black...] and, with turn_warp, the warped first frame."""
    video = jnp.concatenate([ref_frame, jnp.zeros((1, c2w.shape[1] - 1, SIZE, SIZE, 3))], axis=1)
    cond = encode_conditions(vae_params, vae_cfg, video)
    if turn_warp:
        intrinsics = jnp.broadcast_to(INTRINSICS, (1, c2w.shape[1], 4))
        cond = jnp.concatenate([cond, encode_turn_warp(vae_params, vae_cfg, ref_frame, c2w, intrinsics)], axis=-1)
    return cond


# The turn-warp DiT's newest-frame conditioning is the plain DiT's [control | first frame] plus the warp, so
# the plain DiT adds no path here; it streams in the tests below.
@pytest.mark.parametrize("variant,reference", [
    # ~1.5 min each, settings the committed student (reference "none") does not use: `-m slow` runs them
    pytest.param("tiny,control,camera,turn_warp", "newest_frame", marks=pytest.mark.slow),
    pytest.param("tiny,control,camera,turn_warp", "first_frame", marks=pytest.mark.slow),
    ("tiny,control,camera,turn_warp", "none")])
def test_cached_keys_equal_the_block_causal_model_over_the_streams_own_frames(variant, reference):
    """Teacher-forced check of everything the step assembles: stream 3 chunks, then run the model once,
    block-causally at t = 0, over [first frame, the 3 clean chunks] with the camera path integrated by
    geometry/actions.py from the action string, rays from clip_camera_input, and each chunk conditioned
    as latent 1 of a teacher clip from the newest frame before it (what the student trains on), with
    reference "first_frame" as latent 1 of the clip from the first frame at the start camera over the
    chunk's cameras, its warp's uncovered parts dropped, faded by its distance and turn from the start
    (written out here), or with reference "none" given zero channels. The cache must hold exactly that
    sequence's keys and values, and without a newest-frame reference a perturbed newest frame changes
    nothing of the next chunk."""
    spec, params, first = fixture(5, variant, reference)
    state = init_stream(params, spec, first, INTRINSICS, jax.random.key(3), start_c2w=jnp.asarray(START[None]))
    latents, references = [state.chunk_latents], [first]
    for keys in STEPS:
        state, frames = step(params, state, held(keys))
        latents.append(state.chunk_latents)
        references.append(frames[:, -1:])
        assert frames.shape == (1, 4, SIZE, SIZE, 3) and bool(jnp.all(jnp.isfinite(frames)))
    c2w = actions_to_c2w(",".join(STEPS), start_c2w=START)[None]
    np.testing.assert_allclose(np.asarray(state.chunk_c2w[0]), c2w[0, -4:], atol=1e-5)
    warp = spec.dit.camera_turn_warp
    cond = [teacher_clip_conditions(params["vae"], spec.vae, first, jnp.asarray(c2w[:, :1]), warp)]
    for j in range(len(STEPS)):
        window = jnp.asarray(c2w[:, 4 * j:4 * j + 5])
        if reference == "first_frame":
            window = jnp.concatenate([jnp.asarray(c2w[:, :1]), window[:, 1:]], axis=1)
        ref = first if reference == "first_frame" else references[j]
        chunk_cond = teacher_clip_conditions(params["vae"], spec.vae, ref, window, warp)[:, 1:]
        if reference == "first_frame":  # the warp's uncovered parts dropped (tested in test_conditioning), and
            # the whole faded by the distance and turn of the chunk's last camera from the start
            chunk_cond = drop_outside_warp(chunk_cond, window, jnp.broadcast_to(INTRINSICS, (1, 5, 4)), spec.vae,
                                           SIZE, SIZE)
            relative = np.linalg.inv(c2w[0, 0].astype(np.float64)) @ c2w[0, 4 * j + 4]
            turn = np.degrees(np.arccos(np.clip((np.trace(relative[:3, :3]) - 1) / 2, -1, 1)))
            weight = max(0.0, 1 - np.linalg.norm(relative[:3, 3]) / 0.3) * max(0.0, 1 - turn / 10.0)
            assert 0.2 < weight < 0.8, weight  # partly faded: neither the unfaded nor the zero channels
            chunk_cond = chunk_cond * weight
        cond.append(jnp.zeros_like(chunk_cond) if reference == "none" else chunk_cond)
    cond = jnp.concatenate(cond, axis=1)
    camera = clip_camera_input(jnp.asarray(c2w), jnp.broadcast_to(INTRINSICS, (1, c2w.shape[1], 4)), SIZE, SIZE, 4, 1)
    sequence = jnp.concatenate(latents, axis=1)
    empty = init_kv_cache(2, 1, 1, 16, spec.dit.num_heads, spec.dit.head_dim)
    _, (k, v) = WanDiT(spec.dit).apply({"params": params["dit"]}, sequence, jnp.zeros((1, 4)), state.text, cond=cond,
                                       camera=camera, cache=empty, causal=Causal())
    cache = state.policy_state
    used = np.flatnonzero(np.asarray(cache.valid[0]))
    order = used[np.argsort(np.asarray(cache.frame_index[0])[used])]
    np.testing.assert_array_equal(np.asarray(cache.frame_index[0])[order], np.arange(4))
    np.testing.assert_allclose(np.asarray(cache.k[:, :, order]), np.asarray(k), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cache.v[:, :, order]), np.asarray(v), atol=2e-5, rtol=1e-5)
    if reference != "newest_frame":  # the newest frame reaches no later chunk (the cache carries the past)
        assert newest_frame_change(params, state) == 0.0


def newest_frame_change(params, state) -> float:
    """Largest change of the next chunk's pixels when the stream's newest frame is perturbed."""
    _, frames = step(params, state, held("e"))
    noisy = state.replace(last_frame=state.last_frame + 0.5 * jax.random.normal(jax.random.key(9), state.last_frame.shape))
    _, frames_noisy = step(params, noisy, held("e"))
    return float(jnp.abs(frames - frames_noisy).max())


@pytest.mark.slow  # ~75 s: a fixture of its own, for a setting the committed student does not use
def test_a_newest_frame_student_reads_the_newest_frame():
    """A perturbed newest frame changes the next chunk of a newest-frame student (a reference-none or
    first-frame student's next chunk does not change: checked at the end of the cached-keys test)."""
    spec, params, first = fixture(5, "tiny,control,camera,turn_warp", "newest_frame")
    state = init_stream(params, spec, first, INTRINSICS, jax.random.key(3), start_c2w=jnp.asarray(START[None]))
    state, _ = step(params, state, held("we"))
    assert newest_frame_change(params, state) > 1e-3


def test_stream_compiles_once_and_the_rolling_cache_keeps_the_sink():
    spec, params, first = fixture(cache_frames=3)
    jitted = jax.jit(step)
    state = init_stream(params, spec, first, INTRINSICS, jax.random.key(4))
    keys = ["w", "q", "wd", "f", ".", "er"]
    for k in keys:
        state, frames = jitted(params, state, held(k))
    assert jitted._cache_size() == 1
    assert int(state.frame) == 1 + len(keys)
    frame_index = np.asarray(state.policy_state.frame_index[0])
    assert sorted(frame_index.tolist()) == [0, len(keys) - 1, len(keys)]  # the sink and the two newest
    roles = np.asarray(cache_roles(state)[0])
    assert roles[frame_index == 0].tolist() == [SINK] and sorted(roles.tolist()) == [SINK, LOCAL, LOCAL]
    assert EMPTY not in roles


def test_bad_streams_are_refused_with_named_fields():
    spec, params, first = fixture(cache_frames=3)
    warp_without_control = dit_configs.get_config("tiny,camera,turn_warp")
    warp_without_control.num_layers, warp_without_control.in_dim = 2, 32
    with pytest.raises(ValueError, match="in_dim"):
        StreamSpec.create(DiTConfig.from_config(warp_without_control), get_vae_config("tiny"), StreamConfig(), SIZE, SIZE)
    with pytest.raises(ValueError, match="first_frame"):
        init_stream(params, spec, first[:, :, :16], INTRINSICS, jax.random.key(0))
    with pytest.raises(ValueError, match="intrinsics"):
        init_stream(params, spec, first, INTRINSICS[:, :3], jax.random.key(0))
    state = init_stream(params, spec, first, INTRINSICS, jax.random.key(0))
    with pytest.raises(ValueError, match="held keys"):
        step(params, state, jnp.zeros((1, 1, 7), bool))
    with pytest.raises(ValueError, match="sink_frames"):
        StreamConfig(cache_frames=1, sink_frames=1)
    with pytest.raises(ValueError, match="unknown fields"):
        StreamConfig.from_config({"cache_slots": 4})
    with pytest.raises(ValueError, match="sink"):
        RollingPolicy(slots=2, sink=2)
