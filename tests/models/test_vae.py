"""Tests of the Wan causal 3-D VAE: layers against naive numpy loops, causality, stream == batch, Wan shapes."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.models import vae
from worldscape_jax.models.vae_config import VAEConfig, wan2_1
from worldscape_jax.models.vae_layers import (
    CausalConv3d, Downsample, PatchShortcutIn, PatchShortcutOut, RMSNorm, Upsample)

SMALL = VAEConfig(dim=8, dim_mult=(1, 2, 2), num_res_blocks=1, temporal_downsample=(True, True), z_dim=4,
                  latent_mean=(0.1, -0.2, 0.3, 0.0), latent_std=(2.0, 0.5, 1.0, 1.5))


def randomize(shapes, seed):
    """Random values for a pytree of shapes: kernels ~ N(0, 1/fan_in), gammas near 1, small biases (all non-zero)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "gamma" in name:
            value = 1.0 + 0.2 * rng.standard_normal(leaf.shape)
        elif len(leaf.shape) >= 2:
            value = rng.standard_normal(leaf.shape) / math.sqrt(np.prod(leaf.shape[:-1]))
        else:
            value = 0.1 * rng.standard_normal(leaf.shape)
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


SHORTCUT = dataclasses.replace(SMALL, patch_shortcut=True)


@functools.cache
def small_params(seed=0, config=SMALL):
    shapes = jax.eval_shape(lambda: vae.init_params(config, jax.random.key(0, impl="rbg")))
    return randomize(shapes, seed)


def module_params(module, *args, seed=0):
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0, impl="rbg"), *args))["params"]
    return randomize(jax.tree.map(lambda s: s.value if hasattr(s, "value") else s, shapes,
                                  is_leaf=lambda s: hasattr(s, "value")), seed)


def naive_conv(x, kernel, bias, strides, pads):
    """Direct convolution by looping over output positions: x [B, *S, Cin], kernel [*K, Cin, Cout]."""
    nd = kernel.ndim - 2
    x = np.pad(np.asarray(x, np.float64), [(0, 0), *pads, (0, 0)])
    sizes = [(x.shape[1 + d] - kernel.shape[d]) // strides[d] + 1 for d in range(nd)]
    out = np.zeros((x.shape[0], *sizes, kernel.shape[-1]))
    for idx in np.ndindex(*sizes):
        window = x[(slice(None),) + tuple(slice(i * s, i * s + k) for i, s, k in zip(idx, strides, kernel.shape))]
        out[(slice(None), *idx)] = np.tensordot(window, np.asarray(kernel, np.float64),
                                                axes=(list(range(1, nd + 2)), list(range(nd + 1))))
    return out + np.asarray(bias)


def per_frame(fn, x):
    return np.stack([fn(x[:, t]) for t in range(x.shape[1])], axis=1)


def test_rms_norm_is_l2_normalisation_times_sqrt_c_times_gamma():
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    params = module_params(RMSNorm(), x)
    y = RMSNorm().apply({"params": params}, jnp.asarray(x, jnp.float32))
    expected = x / np.linalg.norm(x, axis=-1, keepdims=True) * math.sqrt(5) * np.asarray(params["gamma"])
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_causal_conv_matches_naive_loop_and_streams_with_history():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 5, 6, 2)), jnp.float32)
    conv = CausalConv3d(3)
    params = module_params(conv, x)
    y, _ = conv.apply({"params": params}, x)
    expected = naive_conv(x, params["kernel"], params["bias"], (1, 1, 1), [(2, 0), (1, 1), (1, 1)])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    y_head, history = conv.apply({"params": params}, x[:, :1])
    y_tail, _ = conv.apply({"params": params}, x[:, 1:], history)
    np.testing.assert_allclose(jnp.concatenate([y_head, y_tail], 1), y, rtol=1e-5, atol=1e-6)


def test_downsample3d_keeps_frame0_then_strides_over_windows_0_1_2_and_2_3_4():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 5, 4, 6, 2)), jnp.float32)
    block = Downsample(temporal=True)
    params = module_params(block, x)
    y, _ = block.apply({"params": params}, x)
    spatial = params["resample"]
    s = per_frame(lambda f: naive_conv(f, spatial["kernel"], spatial["bias"], (2, 2), [(0, 1), (0, 1)]), x)
    t = params["time_conv"]
    strided = naive_conv(s, t["kernel"], t["bias"], (2, 1, 1), [(0, 0)] * 3)
    expected = np.concatenate([s[:, :1], strided], axis=1)
    assert y.shape == (1, 3, 2, 3, 2)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_upsample3d_keeps_frame0_and_splits_time_conv_channels_into_frame_pairs():
    x = jnp.asarray(np.random.default_rng(3).standard_normal((1, 3, 2, 3, 4)), jnp.float32)
    block = Upsample(temporal=True)
    params = module_params(block, x)
    y, _ = block.apply({"params": params}, x)
    t = params["time_conv"]
    doubled = naive_conv(x[:, 1:], t["kernel"], t["bias"], (1, 1, 1), [(2, 0), (0, 0), (0, 0)])
    frames = [np.asarray(x[:, 0])]
    for k in range(doubled.shape[1]):
        frames += [doubled[:, k, ..., :4], doubled[:, k, ..., 4:]]
    nearest = np.stack(frames, 1).repeat(2, axis=2).repeat(2, axis=3)
    spatial = params["resample"]
    expected = per_frame(lambda f: naive_conv(f, spatial["kernel"], spatial["bias"], (1, 1), [(1, 1), (1, 1)]),
                         nearest)
    assert y.shape == (1, 5, 4, 6, 2)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@functools.cache
def small_video():
    return jnp.asarray(np.random.default_rng(4).uniform(-1, 1, (1, 9, 8, 8, 3)), jnp.float32)


both_designs = pytest.mark.parametrize("config", [SMALL, SHORTCUT], ids=["wan2_1_design", "patch_shortcut"])


@both_designs
def test_encoder_is_causal_over_frame_groups(config):
    video, params = small_video(), small_params(config=config)
    encode = jax.jit(functools.partial(vae.encode, config=config))
    latents = encode(params, video)
    assert latents.shape == (1, 3, 2, 2, 4)
    changed = video.at[:, 5:].set(-video[:, 5:])  # the last group of 4 frames
    latents_changed = encode(params, changed)
    np.testing.assert_array_equal(latents_changed[:, :2], latents[:, :2])
    assert not np.allclose(latents_changed[:, 2], latents[:, 2])


@both_designs
def test_stream_decode_equals_batch_decode(config):
    params = small_params(config=config)
    latents = vae.encode(params, small_video(), config)
    batch = vae.decode(params, latents, config, clip=False)
    assert batch.shape == (1, 9, 8, 8, 3)
    step = vae.jit_decode_step(config, clip=False)
    cache = vae.init_decode_cache(config, 1, (2, 2))
    pieces = []
    for t in range(latents.shape[1]):
        frames, valid, cache = step(params, cache, latents[:, t:t + 1])
        assert frames.shape == (1, 4, 8, 8, 3)
        assert valid.tolist() == ([False] * 3 + [True] if t == 0 else [True] * 4)
        pieces.append(frames[:, np.asarray(valid)])
    assert step._cache_size() == 1  # one compilation serves the first call and every later one
    np.testing.assert_allclose(jnp.concatenate(pieces, 1), batch, rtol=1e-5, atol=1e-5)
    steady = vae.jit_decode_step(config, clip=False, steady=True)  # what a stream runs after its first frame
    cache = vae.init_decode_cache(config, 1, (2, 2))
    frames, _, cache = step(params, cache, latents[:, :1])
    pieces = [frames[:, -1:]]
    for t in range(1, latents.shape[1]):
        frames, valid, cache = steady(params, cache, latents[:, t:t + 1])
        assert valid.tolist() == [True] * 4
        pieces.append(frames)
    np.testing.assert_allclose(jnp.concatenate(pieces, 1), batch, rtol=1e-5, atol=1e-5)


def test_decode_and_decode_step_return_the_decoder_output_unclamped_like_wans():
    """Wan's decoder does not clamp (only its wrapper does): pixels outside [-1, 1] come back as they are."""
    params = small_params()
    latents = 8.0 * vae.encode(params, small_video(), SMALL)  # far from the data: pixels leave [-1, 1]
    raw, _ = vae.WanVAE(SMALL).apply({"params": params}, vae.denormalize_latents(latents, SMALL),
                                     method=vae.WanVAE.decode_latents)
    assert np.abs(np.asarray(raw)).max() > 1.5
    np.testing.assert_array_equal(vae.decode(params, latents, SMALL), raw)
    frames, valid, _ = vae.jit_decode_step(SMALL)(params, vae.init_decode_cache(SMALL, 1, (2, 2)), latents[:, :1])
    np.testing.assert_allclose(frames[:, np.asarray(valid)], raw[:, :1], rtol=1e-5, atol=1e-5)
    assert np.asarray(vae.decode(params, latents, SMALL, clip=True)).max() <= 1.0  # Wan's wrapper, on request


@both_designs
def test_stream_encode_equals_batch_encode(config):
    video, params = small_video(), small_params(config=config)
    step = vae.jit_encode_step(config)
    cache = vae.init_encode_cache(config, 1, (8, 8))
    latents, cache = step(params, cache, vae.first_encode_chunk(video[:, :1], config))
    pieces = [latents]
    for group in range(2):
        latents, cache = step(params, cache, video[:, 1 + 4 * group:5 + 4 * group])
        pieces.append(latents)
    np.testing.assert_allclose(jnp.concatenate(pieces, 1), vae.encode(params, video, config), rtol=1e-5, atol=1e-5)


def test_patch_shortcut_is_a_linear_map_of_each_frame_group_and_back():
    """The shortcut alone, against a loop over frame groups [1, 4, 4] and 4x4 pixel blocks."""
    params = small_params(config=SHORTCUT)
    video = np.asarray(small_video(), np.float64)
    enc, dec = (np.asarray(params[n]["proj"]["kernel"], np.float64) for n in ("patch_encoder", "patch_decoder"))
    enc_bias, dec_bias = (np.asarray(params[n]["proj"]["bias"]) for n in ("patch_encoder", "patch_decoder"))
    padded = np.concatenate([np.zeros((1, 3, 8, 8, 3)), video], axis=1)
    moments = np.zeros((1, 3, 2, 2, 8))
    for g, i, j in np.ndindex(3, 2, 2):
        block = padded[0, 4 * g:4 * g + 4, 4 * i:4 * i + 4, 4 * j:4 * j + 4]  # [t, y, x, c]
        moments[0, g, i, j] = block.reshape(-1) @ enc + enc_bias
    shortcut_in = PatchShortcutIn(8, 4, 4)
    np.testing.assert_allclose(shortcut_in.apply({"params": params["patch_encoder"]}, small_video()), moments,
                               rtol=1e-5, atol=1e-5)
    latents = moments[..., :4]
    frames = np.zeros((1, 12, 8, 8, 3))
    for g, i, j in np.ndindex(3, 2, 2):
        block = latents[0, g, i, j] @ dec + dec_bias
        frames[0, 4 * g:4 * g + 4, 4 * i:4 * i + 4, 4 * j:4 * j + 4] = block.reshape(4, 4, 4, 3)
    shortcut_out = PatchShortcutOut(3, 4, 4)
    out = shortcut_out.apply({"params": params["patch_decoder"]}, jnp.asarray(latents, jnp.float32))
    np.testing.assert_allclose(out, frames[:, 3:], rtol=1e-5, atol=1e-5)


def test_normalize_denormalize_round_trip_and_wan_scale_convention():
    mu = jnp.asarray(np.random.default_rng(5).standard_normal((1, 2, 2, 2, 4)), jnp.float32)
    z = vae.normalize_latents(mu, SMALL)
    expected = (np.asarray(mu) - np.array(SMALL.latent_mean)) * (1.0 / np.array(SMALL.latent_std))
    np.testing.assert_allclose(z, expected, rtol=1e-6)
    np.testing.assert_allclose(vae.denormalize_latents(z, SMALL), mu, rtol=1e-6, atol=1e-6)


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.check_video(jnp.zeros((1, 8, 8, 8, 3)), SMALL)
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.check_video(jnp.zeros((1, 5, 6, 8, 3)), SMALL)
    with pytest.raises(ValueError, match="temporal_downsample"):
        VAEConfig(dim_mult=(1, 2), temporal_downsample=(True, True))


def test_wan2_1_shapes_for_81_frames_at_480x832():
    cfg = wan2_1()
    params = jax.eval_shape(lambda: vae.init_params(cfg, jax.random.key(0, impl="rbg")))
    video = jax.ShapeDtypeStruct((1, 81, 480, 832, 3), jnp.float32)
    latents = jax.eval_shape(functools.partial(vae.encode, config=cfg), params, video)
    assert latents.shape == (1, 21, 60, 104, 16)
    frames = jax.eval_shape(functools.partial(vae.decode, config=cfg), params, latents)
    assert frames.shape == (1, 81, 480, 832, 3)
    cache = vae.init_decode_cache(cfg, 1, (60, 104))
    # One history per temporal conv: decoder conv1, 2 middle blocks x 2, 4 stages x 3 blocks x 2,
    # the 2 upsample3d time convs and the head conv (1x1x1 shortcuts need none).
    assert len(jax.tree.leaves(cache.histories)) == 1 + 2 * 2 + 4 * 3 * 2 + 2 + 1
    step_out = jax.eval_shape(functools.partial(vae.decode_step, config=cfg), params, cache,
                              jax.ShapeDtypeStruct((1, 1, 60, 104, 16), jnp.float32))
    assert step_out[0].shape == (1, 4, 480, 832, 3)


def test_bfloat16_stream_keeps_its_cache_in_bfloat16():
    cache = jax.eval_shape(lambda: vae.init_decode_cache(SMALL, 1, (2, 2), jnp.bfloat16))
    assert {leaf.dtype for leaf in jax.tree.leaves(cache.histories)} == {jnp.dtype(jnp.bfloat16)}
    fp32 = jax.eval_shape(lambda: vae.init_decode_cache(SMALL, 1, (2, 2), jnp.float32))
    assert 2 * (vae.cache_bytes(cache) - 1) == vae.cache_bytes(fp32) - 1  # the 1-byte is_first flag aside
