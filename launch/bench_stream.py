"""Benchmark the streaming floor end to end: the student stream, VAE decode included.

  python launch/bench_stream.py                    # tiny, 64x64, 2000 chunks (8000 frames) on the CPU
  python launch/bench_stream.py --chunks=300       # a quick look
  python launch/bench_stream.py --scale=wan1_3b --memory=maco --json=stream.json   # 832x480 on a GPU
  python launch/bench_stream.py --scale=wan1_3b --dry_run   # shapes only (jax.eval_shape), any machine

Prints, from one run: frames per second over the whole stream (held keys drawn at random, the
4-step student + the t = 0 cache refresh + the streaming decode of every chunk, each chunk's frames
waited for as a player would); the step's compile time (ahead of time) and the first chunk's latency
after it; how many times the step compiled while streaming (jax.monitoring backend compiles: zero is
the contract); the median per-chunk time of the first and last `--window` chunks; the process's
resident memory after the first window and at the end (flat: the state has fixed shapes), and the
accelerator's peak memory where jax reports it.

Random weights (speed does not depend on training): `tiny` is configs/dit.py `tiny,control,camera`
with the tiny VAE, 1-latent-frame chunks; `wan1_3b` is `wan1_3b,control,camera,bf16` (Fun-Control's
48-channel layout; the stream passes no CLIP tokens, so the CLIP image branch, a 257-token
cross-attention, is left out) with the wan2_1 VAE at 832x480, 3-latent-frame (12-frame) chunks and
`streaming.config.get_config("wan1_3b")`. `--memory` picks the cache: the rolling window of the stream
config, or MACO (streaming/maco.py, its default sizes). By default chunks are conditioned on the newest
decoded frame (one VAE encode per chunk) with no turn-warp channels; `--reference=none` is the committed
`asset:student_tiny`'s setting (no encode), and `--turn_warp` adds the warped frames' encode of a newest-frame
turn-warp student:

  python launch/bench_stream.py --reference=none --turn_warp          # as asset:student_tiny streams
  python launch/bench_stream.py --turn_warp --reference_noise=0.5     # a newest-frame turn-warp student
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
from absl import app, flags
from tqdm import tqdm

from worldscape_jax import cli
from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.geometry.actions import HELD_KEY_ORDER
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.dit import DiTConfig, WanDiT
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.streaming import StreamConfig, StreamSpec, init_stream, maco, step
from worldscape_jax.streaming import config as stream_config

# scale: (DiT preset, VAE preset, (height, width), chunks, window)
SCALES = {
    "tiny": ("tiny,control,camera", "tiny", (64, 64), 2000, 200),
    "wan1_3b": ("wan1_3b,control,camera,bf16", "wan2_1", (480, 832), 20, 5),
}

_SCALE = flags.DEFINE_enum("scale", "tiny", list(SCALES), "model scale: tiny (CPU) or wan1_3b (GPU)")
_MEMORY = flags.DEFINE_enum("memory", "rolling", ["rolling", "maco"], "KV cache policy of the stream")
_CHUNKS = flags.DEFINE_integer("chunks", None, "chunks streamed (default: 2000 tiny, 20 wan1_3b)")
_HEIGHT = flags.DEFINE_integer("height", None, "frame height in pixels (default: 64 tiny, 480 wan1_3b)")
_WIDTH = flags.DEFINE_integer("width", None, "frame width in pixels (default: 64 tiny, 832 wan1_3b)")
_WINDOW = flags.DEFINE_integer("window", None, "chunks in the first / last timing windows (default: 200 tiny, "
                               "5 wan1_3b)")
_REFERENCE = flags.DEFINE_enum("reference", "newest_frame", list(stream_config.REFERENCES),
                               "what chunks after the first are conditioned on (StreamConfig.reference): the newest "
                               "decoded frame or the first frame cost a VAE encode per chunk, none costs nothing")
_TURN_WARP = flags.DEFINE_bool("turn_warp", False, "a DiT with the turn-warp channels (the committed tiny students "
                               "have them); with --reference=newest_frame each chunk also encodes the warped frames")
_REFERENCE_NOISE = flags.DEFINE_float("reference_noise", 0.0, "noise std on a newest-frame reference's control "
                                      "channels (StreamConfig.reference_noise)")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the weights, the first frame and the keys")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "only trace: the shapes of the params, init_stream and step "
                             "(jax.eval_shape), nothing computed")
_JSON = flags.DEFINE_string("json", None, "also write the figures to this JSON file")


class CompileCounter:
    """Counts XLA backend compilations reported through jax.monitoring while it is active."""

    def __init__(self):
        self.count, self.active = 0, False
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)

    def _on_duration(self, event: str, duration: float, **_):
        if self.active and event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def build_spec(scale: str, height: int, width: int, memory: str, reference: str = "newest_frame",
               turn_warp: bool = False, reference_noise: float = 0.0) -> StreamSpec:
    """The stream's static description at `scale`, with the rolling cache or MACO, and the reference and
    DiT input channels of the student it stands for."""
    dit_preset, vae_preset, _, _, _ = SCALES[scale]
    dit_cfg = DiTConfig.from_config(dit_configs.get_config(dit_preset + (",turn_warp" if turn_warp else "")))
    stream = dataclasses.replace(StreamConfig.from_config(stream_config.get_config(scale)), reference=reference,
                                 reference_noise=reference_noise)
    policy = maco.MacoPolicy(maco.MacoConfig(), dit_cfg.frames_per_chunk) if memory == "maco" else None
    return StreamSpec.create(dit_cfg, get_vae_config(vae_preset), stream, height, width, policy=policy)


def init_params(spec: StreamSpec, seed: int) -> dict:
    """Random DiT and VAE weights of the spec's shapes (float32, as the checkpoints store them)."""
    dit_cfg, vae_cfg = spec.dit, spec.vae
    lat_h, lat_w = spec.latent_hw
    dit_params = jax.jit(WanDiT(dit_cfg).init)(
        jax.random.key(seed), jnp.zeros((1, 1, lat_h, lat_w, dit_cfg.out_dim)), jnp.zeros((1, 1)),
        jnp.zeros((1, dit_cfg.text_len, dit_cfg.text_dim)),
        cond=jnp.zeros((1, 1, lat_h, lat_w, dit_cfg.in_dim - dit_cfg.out_dim)),
        camera=jnp.zeros((1, 1, spec.height, spec.width, 6 * vae_cfg.temporal_factor)))["params"]
    return {"dit": dit_params, "vae": vae_lib.init_params(vae_cfg, seed)}


def first_inputs(spec: StreamSpec, seed: int):
    """The first frame (uniform in [-1, 1]) and the intrinsics (normalized fx, fy, cx, cy)."""
    first = jax.random.uniform(jax.random.key(seed), (1, 1, spec.height, spec.width, 3), minval=-1, maxval=1)
    return first, jnp.asarray([[1.0, 1.0, 0.5, 0.5]])


def random_held_keys(chunks: int, frames_per_chunk: int, seed: int) -> np.ndarray:
    """[chunks, 1, F, 8] bool: each key held with probability 0.2, independently per latent frame."""
    return np.random.default_rng(seed).random((chunks, 1, frames_per_chunk, len(HELD_KEY_ORDER))) < 0.2


def shape_check(spec: StreamSpec, seed: int) -> dict:
    """Trace params, init_stream and one step abstractly; the chunk's frame shape and the sizes in bytes."""
    params = jax.eval_shape(lambda: init_params(spec, seed))
    first, intrinsics = first_inputs(spec, seed)
    state = jax.eval_shape(lambda p: init_stream(p, spec, first, intrinsics, jax.random.key(seed)), params)
    held = jax.ShapeDtypeStruct((1, spec.dit.frames_per_chunk, len(HELD_KEY_ORDER)), jnp.bool_)
    new_state, frames = jax.eval_shape(step, params, state, held)
    if jax.tree.structure(new_state) != jax.tree.structure(state) or any(
            a.shape != b.shape or a.dtype != b.dtype for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(state))):
        raise AssertionError("bench_stream: step changes the stream state's shapes; it would recompile every chunk")
    nbytes = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))  # noqa: E731
    return {"frames_shape": list(frames.shape), "param_bytes": nbytes(params), "state_bytes": nbytes(state)}


def peak_device_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def stream(spec: StreamSpec, chunks: int, window: int, seed: int) -> dict:
    """Compile the step ahead of time, then stream `chunks` chunks; the figures."""
    start = time.perf_counter()
    params = init_params(spec, seed)
    first, intrinsics = first_inputs(spec, seed)
    state = init_stream(params, spec, first, intrinsics, jax.random.key(seed))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - start
    keys = random_held_keys(chunks + 1, spec.dit.frames_per_chunk, seed)
    counter = CompileCounter()
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=1).lower(params, state, jnp.asarray(keys[0])).compile()
    compile_s = time.perf_counter() - start
    counter.active = True
    times, rss_after_window = [], None
    for i in tqdm(range(chunks), desc="chunks", unit="chunk"):
        start = time.perf_counter()
        state, frames = compiled(params, state, jnp.asarray(keys[i]))
        jax.block_until_ready(frames)
        times.append(time.perf_counter() - start)
        if i + 1 == window:
            rss_after_window = rss_mib()
    counter.active = False
    times = np.asarray(times)
    frames_per_chunk = spec.pixel_frames_per_chunk
    return {
        "device": jax.devices()[0].device_kind, "chunks": chunks, "frames_per_chunk": frames_per_chunk,
        "frames_per_s": chunks * frames_per_chunk / times.sum(), "ms_per_chunk": times.mean() * 1e3,
        "first_chunk_ms": times[0] * 1e3, "compile_s": compile_s, "init_s_compile_included": init_s,
        "compiles_while_streaming": counter.count,
        "first_window_median_ms": np.median(times[:window]) * 1e3,
        "last_window_median_ms": np.median(times[-window:]) * 1e3,
        "p10_ms": np.percentile(times, 10) * 1e3, "p90_ms": np.percentile(times, 90) * 1e3,
        "rss_mib_after_window": rss_after_window, "rss_mib_end": rss_mib(), "peak_device_bytes": peak_device_bytes(),
    }


def report(figures: dict, window: int) -> None:
    f = figures
    print(f"stream: {f['scale']} student (4 steps + refresh) + VAE streaming decode, {f['height']}x{f['width']}, "
          f"{f['memory']} cache, reference {f['reference']} (turn warp {f['turn_warp']}, noise "
          f"{f['reference_noise']}), {f['chunks']} chunks = {f['chunks'] * f['frames_per_chunk']} frames, {f['device']}")
    print(f"  end to end:     {f['frames_per_s']:8.1f} frames/s ({f['ms_per_chunk']:.1f} ms per "
          f"{f['frames_per_chunk']}-frame chunk)")
    print(f"  startup:        init_stream {f['init_s_compile_included']:.2f} s (its compile included); step compile "
          f"{f['compile_s']:.2f} s; first chunk after it {f['first_chunk_ms']:.1f} ms")
    print(f"  compilations:   {f['compiles_while_streaming']} while streaming (jax.monitoring backend compiles)")
    print(f"  per chunk:      first {window} median {f['first_window_median_ms']:.2f} ms, last {window} median "
          f"{f['last_window_median_ms']:.2f} ms (last / first = "
          f"{f['last_window_median_ms'] / f['first_window_median_ms']:.3f}); p10-p90 {f['p10_ms']:.2f}-{f['p90_ms']:.2f} ms")
    peak = f["peak_device_bytes"]
    print(f"  memory:         resident {f['rss_mib_after_window']:.1f} MiB after {window} chunks, "
          f"{f['rss_mib_end']:.1f} MiB at the end; device peak "
          + (f"{peak / 2**30:.2f} GiB" if peak is not None else "not reported"))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    scale = _SCALE.value
    _, _, (height, width), chunks, window = SCALES[scale]
    height, width = _HEIGHT.value or height, _WIDTH.value or width
    chunks, window = _CHUNKS.value or chunks, _WINDOW.value or window
    if chunks < 2 * window:
        raise app.UsageError(f"--chunks={chunks} must be at least twice --window={window}")
    spec = build_spec(scale, height, width, _MEMORY.value, _REFERENCE.value, _TURN_WARP.value, _REFERENCE_NOISE.value)
    figures = {"scale": scale, "memory": _MEMORY.value, "height": height, "width": width,
               "reference": _REFERENCE.value, "turn_warp": _TURN_WARP.value, "reference_noise": _REFERENCE_NOISE.value}
    if _DRY_RUN.value:
        figures.update(shape_check(spec, _SEED.value), dry_run=True)
        print(f"bench_stream dry run ({scale}, {_MEMORY.value}): chunk frames {figures['frames_shape']}, params "
              f"{figures['param_bytes'] / 2**30:.2f} GiB, stream state {figures['state_bytes'] / 2**30:.3f} GiB")
    else:
        if scale != "tiny" and jax.default_backend() == "cpu":
            raise app.UsageError(f"--scale={scale} needs a GPU (jax.default_backend() is 'cpu'); add --dry_run to "
                                 "check its shapes here")
        figures.update(stream(spec, chunks, window, _SEED.value))
        report(figures, window)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(figures, f, indent=1, default=float)


if __name__ == "__main__":
    cli.run(main)
