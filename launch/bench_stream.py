"""Benchmark the streaming floor end to end: the tiny student stream at 64x64, VAE decode included.

  python launch/bench_stream.py                    # 2000 chunks (8000 frames) on the CPU
  python launch/bench_stream.py --chunks=300       # a quick look

Prints, from one run: frames per second over the whole stream (held keys drawn at random, the
4-step student + the t = 0 cache refresh + the streaming decode of every chunk, each chunk's frames
waited for as a player would); how many times the step compiled while streaming (counted by
JAX's compilation events and by the jitted step's own cache: exactly one is the contract); the
median per-chunk time of the first and last 200 chunks; and the process's resident memory after
the first 200 chunks and at the end (flat: the state has fixed shapes).

Random weights of the tiny student architecture (configs/dit.py `tiny,control,camera`, the tiny VAE):
speed does not depend on training.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from absl import app, flags
from tqdm import tqdm

from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.geometry.actions import HELD_KEY_ORDER
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.dit import DiTConfig, WanDiT
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.streaming import StreamConfig, StreamSpec, init_stream, step
from worldscape_jax.streaming import config as stream_config

_CHUNKS = flags.DEFINE_integer("chunks", 2000, "chunks streamed (4 pixel frames each at tiny)")
_SIZE = flags.DEFINE_integer("size", 64, "frame height and width in pixels")
_WINDOW = flags.DEFINE_integer("window", 200, "chunks in the first / last timing windows")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the weights, the first frame and the keys")


class CompileCounter:
    """Counts XLA backend compilations reported through jax.monitoring while it is active."""

    def __init__(self):
        self.count, self.active = 0, False
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, duration: float, **_):
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def build(size: int, seed: int):
    dit_cfg = DiTConfig.from_config(dit_configs.get_config("tiny,control,camera"))
    vae_cfg = get_vae_config("tiny")
    spec = StreamSpec.create(dit_cfg, vae_cfg, StreamConfig.from_config(stream_config.get_config("tiny")), size, size)
    latent = size // vae_cfg.spatial_factor
    dit_params = WanDiT(dit_cfg).init(
        jax.random.key(seed), jnp.zeros((1, 1, latent, latent, dit_cfg.out_dim)), jnp.zeros((1, 1)),
        jnp.zeros((1, dit_cfg.text_len, dit_cfg.text_dim)), cond=jnp.zeros((1, 1, latent, latent, 2 * dit_cfg.out_dim)),
        camera=jnp.zeros((1, 1, size, size, 6 * vae_cfg.temporal_factor)))["params"]
    params = {"dit": dit_params, "vae": vae_lib.init_params(vae_cfg, seed)}
    return spec, params


def random_held_keys(chunks: int, frames_per_chunk: int, seed: int) -> np.ndarray:
    """[chunks, 1, F, 8] bool: each key held with probability 0.2, independently per latent frame."""
    return np.random.default_rng(seed).random((chunks, 1, frames_per_chunk, len(HELD_KEY_ORDER))) < 0.2


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main(argv):
    del argv
    chunks, window = _CHUNKS.value, _WINDOW.value
    if chunks < 2 * window:
        raise app.UsageError(f"--chunks={chunks} must be at least twice --window={window}")
    spec, params = build(_SIZE.value, _SEED.value)
    first = jax.random.uniform(jax.random.key(_SEED.value), (1, 1, _SIZE.value, _SIZE.value, 3), minval=-1, maxval=1)
    state = init_stream(params, spec, first, jnp.asarray([[1.0, 1.0, 0.5, 0.5]]), jax.random.key(_SEED.value))
    keys = random_held_keys(chunks + 1, spec.dit.frames_per_chunk, _SEED.value)
    jitted = jax.jit(step, donate_argnums=1)
    counter = CompileCounter()
    counter.active = True
    state, frames = jitted(params, state, jnp.asarray(keys[0]))  # compiles
    jax.block_until_ready(frames)
    first_chunk_compiles, counter.count = counter.count, 0
    times, rss_after_window = [], None
    for i in tqdm(range(1, chunks + 1), desc="chunks", unit="chunk"):
        start = time.perf_counter()
        state, frames = jitted(params, state, jnp.asarray(keys[i]))
        jax.block_until_ready(frames)
        times.append(time.perf_counter() - start)
        if i == window:
            rss_after_window = rss_mib()
    counter.active = False
    times = np.asarray(times)
    frames_per_chunk = spec.pixel_frames_per_chunk
    first_ms, last_ms = np.median(times[:window]) * 1e3, np.median(times[-window:]) * 1e3
    print(f"stream: tiny student (4 steps + refresh) + tiny VAE streaming decode, {_SIZE.value}x{_SIZE.value}, "
          f"{chunks} chunks = {chunks * frames_per_chunk} frames, {jax.devices()[0].platform}")
    print(f"  end to end:     {chunks * frames_per_chunk / times.sum():8.1f} frames/s "
          f"({times.sum() / chunks * 1e3:.1f} ms per {frames_per_chunk}-frame chunk)")
    print(f"  compilations:   {first_chunk_compiles} at the first chunk, {counter.count} over the {chunks} chunks "
          f"after it (jax.monitoring backend compiles); the jitted step's cache holds {jitted._cache_size()} entry")
    print(f"  per chunk:      first {window} median {first_ms:.2f} ms, last {window} median {last_ms:.2f} ms "
          f"(last / first = {last_ms / first_ms:.3f}); p10-p90 over all {np.percentile(times, 10) * 1e3:.2f}-"
          f"{np.percentile(times, 90) * 1e3:.2f} ms")
    print(f"  resident memory: {rss_after_window:.1f} MiB after {window} chunks, {rss_mib():.1f} MiB after {chunks}")


if __name__ == "__main__":
    app.run(main)
