"""Benchmark MACO's cache work per chunk against the rolling cache, its memory over a long stream, and compiles.

  python launch/bench_maco.py                               # tiny shapes on the CPU
  python launch/bench_maco.py --scale=wan1_3b --dtype=bfloat16 --chunks=2000   # on a GPU

Per chunk, MACO does its update (gate, FPS, one chunk written) and its context (selection and the
gather of sink ⊕ memory ⊕ local into a KVCache); the rolling cache writes the chunk into its ring and
its cache is the context. Both hold the same number of context chunks (MacoConfig.rolling()). The DiT's
cached forward of one chunk (random weights) is timed too, to put the cache work in proportion. Then
MACO streams --chunks chunks with its state donated, and the script prints the state's bytes, the
process's resident memory early and late, the live device arrays, and the number of compilations.
Whatever the device, it first prints the wan1_3b state sizes from shapes alone.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from tqdm import tqdm

from worldscape_jax import cli
from worldscape_jax.benchmarking import median_seconds
from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.models.dit import DiTConfig, build_dit
from worldscape_jax.streaming import maco
from worldscape_jax.streaming.policy import CacheLayout
from worldscape_jax.streaming.rolling import RollingPolicy

_SCALE = flags.DEFINE_string("scale", "tiny", "DiT config whose cache shapes are used: tiny | wan1_3b")
_TOKENS = flags.DEFINE_integer("tokens_per_frame", None, "tokens per latent frame (default: 64 tiny, 1560 wan1_3b)")
_DTYPE = flags.DEFINE_string("dtype", "float32", "dtype of the cached keys and values")
_CHUNKS = flags.DEFINE_integer("chunks", 10_000, "chunks streamed through MACO for the memory and compile figures")
_TIMED = flags.DEFINE_integer("timed_chunks", 500, "chunks timed per policy (median reported)")
_REPEATS = flags.DEFINE_integer("repeats", 5, "timed repetitions of the DiT forward (median reported)")

WAN_TOKENS = 30 * 52  # 480x832: 60x104 latents, 2x2 patches


def state_bytes(tree) -> int:
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def report_wan_shapes(config: maco.MacoConfig) -> None:
    """MACO's state and its context at wan1_3b (bfloat16), from shapes alone."""
    cfg = DiTConfig.from_config(dit_configs.get_config("wan1_3b"))
    policy = maco.MacoPolicy(config, cfg.frames_per_chunk)
    layout = CacheLayout(cfg.num_layers, 1, WAN_TOKENS, cfg.num_heads, cfg.head_dim, jnp.bfloat16)
    state = jax.eval_shape(lambda: policy.init(layout))
    context = jax.eval_shape(policy.context, state, jax.ShapeDtypeStruct((1, 4, 4), jnp.float32))
    print(f"wan1_3b, bfloat16, batch 1: MACO state {state_bytes(state) / 2**30:.2f} GiB "
          f"({config.capacity} chunks of {cfg.frames_per_chunk} latent frames), its context "
          f"{state_bytes(context) / 2**30:.2f} GiB ({config.context_chunks} chunks, the rolling cache's size)")


def chunk_inputs(cfg: DiTConfig, tokens: int, frames: int, dtype, count: int):
    """Random keys/values and a random walk of poses for `count` chunks."""
    rng = np.random.default_rng(0)
    shape = (cfg.num_layers, 1, frames, tokens, cfg.num_heads, cfg.head_dim)
    k = jnp.asarray(rng.normal(size=(count, *shape)), dtype)
    yaw = np.cumsum(rng.normal(0, 0.3, count))
    c, s = np.cos(yaw), np.sin(yaw)
    pose = np.tile(np.eye(4, dtype=np.float32), (count, 1, 1, 1))
    pose[:, 0, 0, 0], pose[:, 0, 0, 2], pose[:, 0, 2, 0], pose[:, 0, 2, 2] = c, s, -s, c
    pose[:, 0, :3, 3] = np.cumsum(rng.normal(0, 0.1, (count, 3)), axis=0)
    return k, k[::-1], jnp.asarray(pose)


def interleaved_seconds(steps: dict, states: dict, k, v, pose, count: int) -> dict[str, float]:
    """Median time of one step of each policy, the policies taking turns chunk by chunk so that both see
    the same load on a shared machine (state donated, each step waited for)."""
    args = lambda i: (k[i % len(k)], v[i % len(v)], jnp.int32(i), pose[i % len(pose)])
    times = {name: [] for name in steps}
    for name in steps:  # compile
        states[name] = jax.block_until_ready(steps[name](states[name], *args(0)))
    for i in range(1, 1 + count):
        for name, step in steps.items():
            start = time.perf_counter()
            states[name] = jax.block_until_ready(step(states[name], *args(i)))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = maco.MacoConfig()
    report_wan_shapes(config)
    cfg = DiTConfig.from_config(dit_configs.get_config(_SCALE.value))
    tokens = _TOKENS.value or (WAN_TOKENS if _SCALE.value == "wan1_3b" else 64)
    dtype, f = jnp.dtype(_DTYPE.value), cfg.frames_per_chunk
    k, v, pose = chunk_inputs(cfg, tokens, f, dtype, count=64)
    print(f"{_SCALE.value} cache shapes: {cfg.num_layers} layers, {cfg.num_heads} heads x {cfg.head_dim}, "
          f"{tokens} tokens x {f} frames per chunk, {dtype.name}, on {jax.devices()[0].platform}")

    traces = []

    def maco_step(state, k, v, first, pose):
        traces.append(None)
        context = policy.context(state, pose)
        return policy.update(state, k, v, first, pose), context

    policy = maco.MacoPolicy(config, f)
    maco_jit = jax.jit(maco_step, donate_argnums=0)
    maco_chain = lambda state, *a: maco_jit(state, *a)[0]
    slots = config.context_chunks * f
    rolling_policy = RollingPolicy(slots=slots, sink=f)
    rolling_jit = jax.jit(rolling_policy.update, donate_argnums=0)
    layout = CacheLayout(cfg.num_layers, 1, tokens, cfg.num_heads, cfg.head_dim, dtype)
    init = lambda: policy.init(layout)
    rolling = rolling_policy.init(layout)
    seconds = interleaved_seconds({"maco": maco_chain, "rolling": rolling_jit}, {"maco": init(), "rolling": rolling},
                                  k, v, pose, _TIMED.value)
    t_maco, state = seconds["maco"], init()
    print(f"per chunk (median of {_TIMED.value}, interleaved): MACO update + context "
          f"{t_maco * 1e3:.3f} ms, rolling insert {seconds['rolling'] * 1e3:.3f} ms "
          f"(ratio {t_maco / seconds['rolling']:.2f})")
    dit_seconds(cfg, policy, state, tokens, f, pose, t_maco)

    state = init()
    early = None
    for i in tqdm(range(_CHUNKS.value), desc="MACO stream", unit="chunk", mininterval=2.0):
        state, _ = maco_jit(state, k[i % len(k)], v[i % len(v)], jnp.int32(i), pose[i % len(pose)])
        if i == 99:
            jax.block_until_ready(state)
            early = (resident_mib(), len(jax.live_arrays()))
    jax.block_until_ready(state)
    print(f"{_CHUNKS.value} chunks: state {state_bytes(state) / 2**20:.2f} MiB throughout (fixed shapes); "
          f"resident memory {early[0]:.0f} MiB at chunk 100, {resident_mib():.0f} MiB at the end; live arrays "
          f"{early[1]} and {len(jax.live_arrays())}; compilations of the step: {len(traces)}")


def dit_seconds(cfg: DiTConfig, policy, state, tokens: int, frames: int, pose, t_maco: float) -> None:
    """The DiT's cached forward of one chunk over MACO's context (random weights), for proportion."""
    side = int(round(np.sqrt(tokens))) * cfg.patch_size[1]
    if _SCALE.value != "tiny" and jax.devices()[0].platform == "cpu":
        return
    model = build_dit(dataclasses.replace(cfg, camera=False))  # the camera encoder is not the point here
    x = jnp.zeros((1, frames, side, side, cfg.in_dim))
    t, text = jnp.zeros((1, frames)), jnp.zeros((1, cfg.text_len, cfg.text_dim))
    context = policy.context(state, pose[0])
    params = jax.jit(lambda: model.init(jax.random.key(0), x, t, text))()
    forward = jax.jit(lambda p, c: model.apply(p, x, t, text, cache=c, start_frame=10_000)[1][0])
    seconds = median_seconds(forward, params, context, repeats=_REPEATS.value)
    print(f"one DiT chunk forward over that context (random weights): {seconds * 1e3:.2f} ms; "
          f"MACO's cache work is {100 * t_maco / seconds:.1f}% of it")


if __name__ == "__main__":
    cli.run(main)
