"""Benchmark the train step of a stage: compile time, step time, throughput, FLOPs and MFU.

  python launch/bench_train.py --config configs/flow_dit.py:tiny --steps 10
  python launch/bench_train.py --config configs/flow_dit.py:wan1_3b,bf16 --steps 5   # on a GPU

It builds the stage exactly as launch/train.py does (mesh, shardings, donation), times `--steps`
steps after `--warmup` untimed ones, and prints one table: the step's matmul FLOPs counted from
its jaxpr (training/flops.py; XLA's cost analysis, which counts a scanned layer stack once, is shown
beside it), the device's peak (training/logging.py), and MFU = FLOPs / step time / peak. No
checkpoints or logs are written. `--json` also writes the figures to a file.
"""

import json
import time

from absl import app, flags
from ml_collections import config_flags

from worldscape_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file, e.g. configs/flow_dit.py:tiny.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_JSON = flags.DEFINE_string("json", None, "Optional path for the figures as JSON.")
flags.mark_flags_as_required(["config"])


def bench(config, steps: int, warmup: int) -> dict:
    """Compile and time the train step; return the figures."""
    import jax
    from tqdm import tqdm

    from worldscape_jax.training import logging as train_logging
    from worldscape_jax.training import loop

    setup = loop.build(config)
    data_iter = setup.stage.make_dataset(config, jax.process_index(), jax.process_count())
    state = loop.initial_state(setup, config)
    batch, batch_shardings = loop.to_global_batch(next(data_iter), setup.mesh)
    start = time.perf_counter()
    compiled = loop.compile_step(setup, state, batch, batch_shardings)
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in tqdm(range(steps), desc="bench", unit="step"):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]
    flops = loop.step_flops_per_device(setup, state, batch)
    peak = train_logging.peak_flops_per_device()
    return {
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "mesh": dict(setup.mesh.shape),
        "global_batch": config.global_batch,
        "compile_s": compile_s,
        "step_s_median": step_s,
        "step_s_min": min(times),
        "examples_per_s": config.global_batch / step_s,
        "flops_per_step_per_device": flops,
        "xla_cost_analysis_flops": train_logging.step_flops(compiled),
        "peak_flops_per_device": peak,
        "mfu": train_logging.mfu(flops, step_s, peak),
        "loss": float(metrics["loss"]),
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    figures = bench(_CONFIG.value, _STEPS.value, _WARMUP.value)
    width = max(map(len, figures))
    for key, value in figures.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    cli.run(main)
