"""The Wan DiT: causality, window/sink invariance, cache equivalence, parameter count, bad inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.models.camera_encoder import pack_frames
from worldscape_jax.models.dit import Causal, DiTConfig, build_dit
from worldscape_jax.models.kv_cache import init_kv_cache, write_slots

CHUNK = 2  # latent frames per chunk
LATENT_HW = (8, 8)  # 4 x 4 = 16 tokens per frame
TOKENS = 16


def tiny_config(**overrides) -> DiTConfig:
    cfg = dit_configs.get_config("tiny,camera")
    cfg.frames_per_chunk = CHUNK
    cfg.num_layers = 2
    cfg.update(overrides)
    return DiTConfig.from_config(cfg)


def inputs(cfg: DiTConfig, frames: int, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(keys[0], (1, frames, *LATENT_HW, cfg.in_dim))
    t = jax.random.uniform(keys[1], (1, frames), minval=0, maxval=1000)
    text = jax.random.normal(keys[2], (1, cfg.text_len, cfg.text_dim))
    stride = cfg.vae_stride
    rays = jax.random.normal(keys[3], (1, 1 + stride[0] * (frames - 1), LATENT_HW[0] * stride[1],
                                       LATENT_HW[1] * stride[2], 6))
    return x, t, text, pack_frames(rays, stride[0])


@functools.lru_cache(maxsize=None)
def model_and_params(**overrides):
    cfg = tiny_config(**dict(overrides))
    model = build_dit(cfg)
    x, t, text, camera = inputs(cfg, CHUNK)
    params = model.init(jax.random.key(42), x, t, text, camera=camera)
    # The camera encoder's output layer starts at zero; perturb it so the camera path is exercised.
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape), params)
    return model, params


def forward(model, params, x, t, text, camera, **kw):
    return jax.jit(lambda p, x, t, c: model.apply(p, x, t, text, camera=c, **kw))(params, x, t, camera)


def test_perturbing_a_later_chunk_leaves_earlier_chunks_unchanged():
    model, params = model_and_params()
    x, t, text, camera = inputs(model.cfg, 3 * CHUNK)
    base = forward(model, params, x, t, text, camera, causal=Causal())
    x2 = x.at[:, 2 * CHUNK:].add(1.0)
    camera2 = camera.at[:, 2 * CHUNK:].add(1.0)
    t2 = t.at[:, 2 * CHUNK:].set(3.0)
    moved = forward(model, params, x2, t2, text, camera2, causal=Causal())
    np.testing.assert_array_equal(np.asarray(base[:, :2 * CHUNK]), np.asarray(moved[:, :2 * CHUNK]))
    assert np.abs(np.asarray(base[:, 2 * CHUNK:] - moved[:, 2 * CHUNK:])).max() > 1e-3
    bidirectional = forward(model, params, x2, t2, text, camera2)
    assert np.abs(np.asarray(bidirectional[:, :CHUNK] - base[:, :CHUNK])).max() > 1e-3


def test_chunk_outside_window_and_sink_does_not_matter():
    """Chunks 0 (sink) 1 2 3 4, window 2, two layers: chunk 4 attends to 0, 3, 4, and through the first
    layer's output of chunk 3 also to chunk 2. Its receptive field is {0, 2, 3, 4}: chunk 1 is outside."""
    model, params = model_and_params()
    assert model.cfg.num_layers == 2
    x, t, text, camera = inputs(model.cfg, 5 * CHUNK)
    causal = Causal(window=2, sink=1)
    base = forward(model, params, x, t, text, camera, causal=causal)
    outside = forward(model, params, x.at[:, CHUNK:2 * CHUNK].add(2.0), t, text, camera, causal=causal)
    np.testing.assert_allclose(np.asarray(base[:, 4 * CHUNK:]), np.asarray(outside[:, 4 * CHUNK:]), atol=1e-6)
    for visible in (0, 2):  # the sink, and chunk 2 through layer 1
        moved = forward(model, params, x.at[:, visible * CHUNK:(visible + 1) * CHUNK].add(2.0), t, text, camera,
                        causal=causal)
        assert np.abs(np.asarray(base[:, 4 * CHUNK:] - moved[:, 4 * CHUNK:])).max() > 1e-3


def ring_insert(cache, k, v, start, sink_frames):
    """A sink + ring cache written out slot by slot: frame f < sink keeps slot f, later frames cycle."""
    frames = list(range(start, start + k.shape[2]))
    ring = cache.slots - sink_frames
    slots = [f if f < sink_frames else sink_frames + (f - sink_frames) % ring for f in frames]
    return write_slots(cache, jnp.asarray(slots), k, v, jnp.asarray([frames]))


def stream(model, params, x, t, text, camera, slots, sink_frames):
    cfg = model.cfg
    cache = init_kv_cache(cfg.num_layers, 1, slots, TOKENS, cfg.num_heads, cfg.head_dim)
    step = jax.jit(lambda p, cache, x, t, c, start: model.apply(p, x, t, text, camera=c, cache=cache,
                                                                start_frame=start))
    outs = []
    for start in range(0, x.shape[1], CHUNK):
        sl = slice(start, start + CHUNK)
        out, (k, v) = step(params, cache, x[:, sl], t[:, sl], camera[:, sl], start)
        cache = ring_insert(cache, k, v, start, sink_frames)
        outs.append(out)
    return jnp.concatenate(outs, axis=1)


def test_cached_generation_equals_block_causal_forward():
    model, params = model_and_params()
    x, t, text, camera = inputs(model.cfg, 3 * CHUNK, seed=3)
    full = forward(model, params, x, t, text, camera, causal=Causal())
    streamed = stream(model, params, x, t, text, camera, slots=3 * CHUNK, sink_frames=0)
    np.testing.assert_allclose(np.asarray(streamed), np.asarray(full), atol=2e-5, rtol=1e-5)


def test_cached_window_stream_longer_than_capacity_equals_windowed_forward():
    """Window 2 chunks + sink 1 chunk: the cache holds sink + 1 previous chunk; 6 chunks stream through it."""
    model, params = model_and_params()
    x, t, text, camera = inputs(model.cfg, 6 * CHUNK, seed=4)
    full = forward(model, params, x, t, text, camera, causal=Causal(window=2, sink=1))
    streamed = stream(model, params, x, t, text, camera, slots=2 * CHUNK, sink_frames=CHUNK)
    np.testing.assert_allclose(np.asarray(streamed), np.asarray(full), atol=2e-5, rtol=1e-5)
    unwindowed = forward(model, params, x, t, text, camera, causal=Causal())
    assert np.abs(np.asarray(unwindowed[:, -CHUNK:] - streamed[:, -CHUNK:])).max() > 1e-4


def test_rolling_window_call_equals_its_chunks_run_one_by_one():
    """Self-Forcing's rolling window: three chunks at staggered noise levels denoised in one call over a
    cache (block-causal among themselves) give what the same chunks give run one at a time, each
    seeing the cache plus the earlier chunks' keys at their own noise levels."""
    model, params = model_and_params()
    cfg = model.cfg
    x, t, text, camera = inputs(cfg, 5 * CHUNK, seed=5)
    t = jnp.repeat(jnp.asarray([[0.0, 0.0, 900.0, 600.0, 300.0]]), CHUNK, axis=1)  # 2 clean chunks, then the window
    empty = init_kv_cache(cfg.num_layers, 1, 5 * CHUNK, TOKENS, cfg.num_heads, cfg.head_dim)
    call = jax.jit(lambda p, cache, x, t, c, start, causal: model.apply(p, x, t, text, camera=c, cache=cache,
                                                                        start_frame=start, causal=causal),
                   static_argnames="causal")
    context = empty
    for start in (0, CHUNK):  # the clean context, inserted chunk by chunk
        sl = slice(start, start + CHUNK)
        _, (k, v) = call(params, context, x[:, sl], t[:, sl], camera[:, sl], start, None)
        context = ring_insert(context, k, v, start, 0)
    window = slice(2 * CHUNK, 5 * CHUNK)
    rolled, (k_rolled, _) = call(params, context, x[:, window], t[:, window], camera[:, window], 2 * CHUNK, Causal())
    cache, outs, keys = context, [], []
    for start in range(2 * CHUNK, 5 * CHUNK, CHUNK):
        sl = slice(start, start + CHUNK)
        out, (k, v) = call(params, cache, x[:, sl], t[:, sl], camera[:, sl], start, None)
        cache = ring_insert(cache, k, v, start, 0)
        outs.append(out)
        keys.append(k)
    np.testing.assert_allclose(np.asarray(rolled), np.asarray(jnp.concatenate(outs, axis=1)), atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(k_rolled), np.asarray(jnp.concatenate(keys, axis=2)), atol=2e-5, rtol=1e-5)
    everything_sees_everything, _ = call(params, context, x[:, window], t[:, window], camera[:, window], 2 * CHUNK, None)
    assert np.abs(np.asarray(everything_sees_everything[:, :CHUNK] - rolled[:, :CHUNK])).max() > 1e-3


def test_remat_policies_do_not_change_the_output_or_gradient():
    model, params = model_and_params()
    remat_model, _ = model_and_params(remat_policy="save_attention")
    x, t, text, camera = inputs(model.cfg, CHUNK)
    loss = lambda m: lambda p: jnp.mean(m.apply(p, x, t, text, camera=camera) ** 2)
    g1, g2 = jax.grad(loss(model))(params), jax.grad(loss(remat_model))(params)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-4)


def parameter_count(arg: str) -> int:
    cfg = DiTConfig.from_config(dit_configs.get_config(arg))
    model = build_dit(cfg)
    kw = {"clip": jnp.zeros((1, cfg.clip_tokens, cfg.clip_dim))} if cfg.image_branch else {}
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1, 60, 104, cfg.in_dim)),
                                               jnp.zeros((1, 1)), jnp.zeros((1, cfg.text_len, cfg.text_dim)), **kw))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))


def test_wan1_3b_parameter_count():
    count = parameter_count("wan1_3b")
    print(f"wan1_3b T2V parameters: {count:,}")
    assert abs(count / 1.419e9 - 1) < 1e-3
    fun = parameter_count("wan1_3b,fun_control")
    print(f"wan1_3b Fun-Control parameters: {fun:,}")
    assert 1.55e9 < fun < 1.58e9  # the released Fun-Control safetensors is 3.13 GB in bf16


def test_bad_inputs_give_clear_errors():
    model, params = model_and_params()
    x, t, text, camera = inputs(model.cfg, CHUNK)
    with pytest.raises(ValueError, match="in_dim"):
        model.apply(params, x[..., :3], t, text, camera=camera)
    with pytest.raises(ValueError, match="timesteps must be per latent frame"):
        model.apply(params, x, t[:, :1], text, camera=camera)
    with pytest.raises(ValueError, match="no camera"):
        model.apply(params, x, t, text)
    with pytest.raises(ValueError, match="text_dim"):
        model.apply(params, x, t, text[..., :4], camera=camera)
    with pytest.raises(ValueError, match="whole number"):
        model.apply(params, x[:, :1], t[:, :1], text, camera=camera[:, :1], causal=Causal())
