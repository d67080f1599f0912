"""Benchmark the DiT: one denoising step of a streamed chunk, a whole chunk, and the teacher forward.

  python launch/bench_dit.py                      # tiny on the CPU
  python launch/bench_dit.py --scale=wan1_3b      # 832x480, on a GPU (bf16)

A denoising step is one cached forward of a chunk (frames_per_chunk latent frames) over a KV cache
of `--cache_frames` latent frames. A chunk costs `--steps` denoising steps plus one forward at t=0
that writes the clean keys (the Self-Forcing schedule), so chunk time = (steps + 1) * step time.
Frames per second counts decoded pixel frames (4 per latent frame) and excludes the VAE.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from worldscape_jax import cli
from worldscape_jax.benchmarking import median_seconds
from worldscape_jax.training.flops import function_flops

from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.models.camera_encoder import pack_frames
from worldscape_jax.models.dit import DiTConfig, build_dit
from worldscape_jax.models.kv_cache import init_kv_cache

_SCALE = flags.DEFINE_string("scale", "tiny", "DiT preset of configs/dit.py, with variants: tiny | wan1_3b[,camera]")
_HEIGHT = flags.DEFINE_integer("height", None, "pixel height (default: 64 tiny, 480 wan1_3b)")
_WIDTH = flags.DEFINE_integer("width", None, "pixel width (default: 64 tiny, 832 wan1_3b)")
_CACHE = flags.DEFINE_integer("cache_frames", None, "latent frames in the KV cache (default: 4 chunks)")
_STEPS = flags.DEFINE_integer("steps", 4, "denoising steps per chunk")
_TEACHER_FRAMES = flags.DEFINE_integer("teacher_frames", None, "latent frames of the bidirectional forward "
                                       "(default: 21 wan1_3b, 8 tiny)")
_DTYPE = flags.DEFINE_string("dtype", None, "compute dtype (default: bfloat16 on GPU/TPU, float32 on CPU)")
_IMPL = flags.DEFINE_string("attention", "xla", "attention implementation: xla | cudnn | pallas")
_REPEATS = flags.DEFINE_integer("repeats", 5, "timed repetitions (median reported)")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")



def main(_):
    scale = _SCALE.value
    on_cpu = jax.default_backend() == "cpu"
    cfg = dit_configs.get_config(scale)
    cfg.attention_impl = _IMPL.value
    cfg.dtype = _DTYPE.value or ("float32" if on_cpu else "bfloat16")
    cfg = DiTConfig.from_config(cfg)
    big = scale.startswith("wan1_3b")
    if big and on_cpu:
        raise SystemExit("bench_dit: wan1_3b needs a GPU or TPU (jax.default_backend() is 'cpu'); "
                         "use --scale=tiny on the CPU")
    height = _HEIGHT.value or (480 if big else 64)
    width = _WIDTH.value or (832 if big else 64)
    st, sh, sw = cfg.vae_stride
    lat_h, lat_w = height // sh, width // sw
    tokens = (lat_h // cfg.patch_size[1]) * (lat_w // cfg.patch_size[2])
    chunk = cfg.frames_per_chunk
    cache_frames = _CACHE.value or 4 * chunk
    teacher_frames = _TEACHER_FRAMES.value or (21 if big else 8)
    model = build_dit(cfg)
    rng = jax.random.key(0)

    def make_inputs(frames):
        x = jax.random.normal(rng, (1, frames, lat_h, lat_w, cfg.in_dim), jnp.float32)
        camera = pack_frames(jnp.zeros((1, 1 + st * (frames - 1), height, width, 6)), st) if cfg.camera else None
        return x, jnp.full((1, frames), 500.0), camera

    text = jnp.zeros((1, cfg.text_len, cfg.text_dim))
    x, t, camera = make_inputs(chunk)
    params = jax.jit(model.init)(rng, x, t, text, camera=camera)
    cache = init_kv_cache(cfg.num_layers, 1, cache_frames, tokens, cfg.num_heads, cfg.head_dim,
                          jnp.dtype(cfg.dtype))
    cache = cache.replace(valid=jnp.ones_like(cache.valid))

    def step(params, cache, x, t, camera):
        return model.apply(params, x, t, text, camera=camera, cache=cache, start_frame=cache_frames)

    def teacher(params, x, t, camera):
        return model.apply(params, x, t, text, camera=camera)

    step_time = median_seconds(jax.jit(step), params, cache, x, t, camera, repeats=_REPEATS.value)
    chunk_time = (_STEPS.value + 1) * step_time
    tx, tt, tcam = make_inputs(teacher_frames)
    teacher_time = median_seconds(jax.jit(teacher), params, tx, tt, tcam, repeats=max(1, _REPEATS.value // 2))
    step_flops = function_flops(step, params, cache, x, t, camera)  # matmuls and convs, scans x length

    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    fps = 4 * chunk / chunk_time
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), dtype {cfg.dtype}, "
          f"attention {cfg.attention_impl}")
    print(f"model: {scale}, {n_params / 1e6:.1f} M params, {height}x{width} -> latent {lat_h}x{lat_w}, "
          f"{tokens} tokens/latent frame")
    print(f"denoising step (chunk of {chunk} latent frames over a {cache_frames}-frame cache): "
          f"{step_time * 1e3:.2f} ms" + (f", {step_flops / 1e9:.2f} GFLOP, {step_flops / step_time / 1e12:.3f} TFLOP/s"
                                         if step_flops else ""))
    print(f"chunk ({_STEPS.value} steps + 1 cache write): {chunk_time * 1e3:.2f} ms -> {fps:.1f} pixel FPS "
          f"(DiT only, {4 * chunk} frames per chunk)")
    print(f"teacher forward ({teacher_frames} latent frames, bidirectional): {teacher_time * 1e3:.2f} ms")
    print(f"ratio teacher forward / streaming step: {teacher_time / step_time:.2f}x")
    if _JSON.value:
        figures = dict(device=jax.devices()[0].device_kind, scale=scale, dtype=cfg.dtype, attention=cfg.attention_impl,
                       height=height, width=width, params=n_params, tokens_per_latent_frame=tokens,
                       cache_frames=cache_frames, step_ms=step_time * 1e3, step_flops=step_flops,
                       step_tflops_per_s=step_flops / step_time / 1e12 if step_flops else None,
                       chunk_ms=chunk_time * 1e3, dit_pixel_fps=fps, teacher_frames=teacher_frames,
                       teacher_forward_ms=teacher_time * 1e3)
        with open(_JSON.value, "w") as f:
            json.dump(figures, f, indent=1, default=float)


if __name__ == "__main__":
    cli.run(main)
