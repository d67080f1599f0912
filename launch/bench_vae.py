"""Benchmark the causal VAE: encode time and streaming decode time per latent frame, and decode-cache memory.

  python launch/bench_vae.py                                  # tiny at 64x64 on the CPU
  python launch/bench_vae.py --preset=wan2_1 --dtype=bfloat16  # 480x832 on a GPU

Whatever the device, it first prints the wan2_1 decode cache at 480x832 from `jax.eval_shape`
(no compute), so the streaming memory figure is known even on a CPU. Timings use random weights
(speed does not depend on them); wan2_1 is not timed on a CPU unless --time_on_cpu.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from worldscape_jax import cli
from worldscape_jax.benchmarking import median_seconds

from worldscape_jax.models import vae
from worldscape_jax.models.vae_config import get_vae_config, wan2_1

_PRESET = flags.DEFINE_string("preset", "tiny", "VAE preset: tiny | wan2_1")
_HEIGHT = flags.DEFINE_integer("height", None, "pixel height (default: 64 tiny, 480 wan2_1)")
_WIDTH = flags.DEFINE_integer("width", None, "pixel width (default: 64 tiny, 832 wan2_1)")
_LATENT_FRAMES = flags.DEFINE_integer("latent_frames", 5, "latent frames encoded / decoded (1 + 4(n-1) pixel frames)")
_DTYPE = flags.DEFINE_string("dtype", "float32", "compute dtype of activations and the cache")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed repetitions (median reported)")
_TIME_ON_CPU = flags.DEFINE_bool("time_on_cpu", False, "time wan2_1 even on a CPU (minutes per call)")



def report_wan_cache() -> None:
    """wan2_1's decode cache and parameter count at 480x832, from shapes alone."""
    cfg = wan2_1()
    params = jax.eval_shape(lambda: vae.init_params(cfg, 0))
    count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
    print(f"wan2_1 parameters: encoder {count(params['encoder']) / 1e6:.1f} M, decoder "
          f"{count(params['decoder']) / 1e6:.1f} M, total {count(params) / 1e6:.1f} M")
    for dtype in (jnp.float32, jnp.bfloat16):
        cache = jax.eval_shape(lambda d=dtype: vae.init_decode_cache(cfg, 1, (60, 104), d))
        leaves = jax.tree.leaves(cache.histories)
        print(f"wan2_1 decode cache at 480x832, {jnp.dtype(dtype).name}: {len(leaves)} conv histories, "
              f"{vae.cache_bytes(cache) / 2**30:.2f} GiB")
    enc = jax.eval_shape(lambda: vae.init_encode_cache(cfg, 1, (480, 832), jnp.bfloat16))
    print(f"wan2_1 encode cache at 480x832, bfloat16: {vae.cache_bytes(enc) / 2**30:.2f} GiB")


def bench(cfg, height: int, width: int, dtype) -> None:
    n = _LATENT_FRAMES.value
    frames = 1 + cfg.temporal_factor * (n - 1)
    lh, lw = height // cfg.spatial_factor, width // cfg.spatial_factor
    params = jax.tree.map(lambda a: a.astype(dtype), vae.init_params(cfg, 0))
    video = jax.random.uniform(jax.random.key(0), (1, frames, height, width, 3), dtype, -1.0, 1.0)
    encode = jax.jit(functools.partial(vae.encode, config=cfg))
    encode_s = median_seconds(encode, params, video, repeats=_REPEATS.value)
    latents = encode(params, video)

    first_step, steady_step = vae.jit_decode_step(cfg), vae.jit_decode_step(cfg, steady=True)
    cache = vae.init_decode_cache(cfg, 1, (lh, lw), dtype)
    cache_bytes = vae.cache_bytes(cache)
    frame_times = []
    for t in range(n):  # the first two calls compile; time the later ones
        step = first_step if t == 0 else steady_step
        start = time.perf_counter()
        out, _, cache = step(params, cache, latents[:, t:t + 1])
        jax.block_until_ready(out)
        frame_times.append(time.perf_counter() - start)
    decode_s = float(np.median(frame_times[2:])) if n > 2 else frame_times[-1]
    batch_decode = jax.jit(functools.partial(vae.decode, config=cfg))
    batch_s = median_seconds(batch_decode, params, latents, repeats=_REPEATS.value)

    print(f"{_PRESET.value} at {height}x{width}, {frames} frames -> latents {tuple(latents.shape)}, "
          f"{jnp.dtype(dtype).name}, {jax.devices()[0].platform}")
    print(f"  encode:            {encode_s * 1e3:8.1f} ms per clip, {encode_s / n * 1e3:8.1f} ms per latent frame")
    print(f"  streaming decode:  {decode_s * 1e3:8.1f} ms per latent frame (4 pixel frames), "
          f"{cfg.temporal_factor / decode_s:8.1f} pixel frames/s")
    stream_per_pixel, whole_per_pixel = decode_s / cfg.temporal_factor, batch_s / frames
    print(f"  whole-clip decode: {batch_s / n * 1e3:8.1f} ms per latent frame (its first latent frame makes 1 pixel "
          f"frame, the others {cfg.temporal_factor})")
    print(f"  per pixel frame:   stream {stream_per_pixel * 1e3:.2f} ms, whole clip {whole_per_pixel * 1e3:.2f} ms "
          f"(stream / whole = {stream_per_pixel / whole_per_pixel:.2f})")
    print(f"  decode cache:      {cache_bytes / 2**20:8.2f} MiB ({len(jax.tree.leaves(cache.histories))} histories)")


def main(argv):
    del argv
    report_wan_cache()
    cfg = get_vae_config(_PRESET.value)
    big = _PRESET.value == "wan2_1"
    height = _HEIGHT.value or (480 if big else 64)
    width = _WIDTH.value or (832 if big else 64)
    if big and jax.devices()[0].platform == "cpu" and not _TIME_ON_CPU.value:
        print("wan2_1 timing skipped on a CPU (pass --time_on_cpu to force)")
        return
    bench(cfg, height, width, jnp.dtype(_DTYPE.value))


if __name__ == "__main__":
    cli.run(main)
