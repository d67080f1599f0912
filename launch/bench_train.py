"""Benchmark the train step of a stage: compile time, step time, throughput, FLOPs and MFU.

  python launch/bench_train.py --config configs/flow_dit.py:tiny --steps 10
  python launch/bench_train.py --config configs/flow_dit.py:wan1_3b,bf16 --steps 5   # on a GPU
  python launch/bench_train.py --config configs/teacher.py:wan1_3b --config.global_batch=1 --synthetic_data


It builds the stage exactly as launch/train.py does (mesh, shardings, donation), times `--steps`
steps after `--warmup` untimed ones, and prints one table: the step's matmul FLOPs counted from
its jaxpr (training/flops.py; XLA's cost analysis, which counts a scanned layer stack once, is shown
beside it), the device's peak (training/logging.py), and MFU = FLOPs / step time / peak. No
checkpoints or logs are written. `--json` also writes the figures to a file. `--synthetic_data` feeds
one random batch of the stage's batch shapes (its `synthetic_batches`) instead of its dataset, so that a
stage whose data needs a trained VAE (the teacher's latent cache) can be timed with none.
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
_SYNTHETIC = flags.DEFINE_bool("synthetic_data", False, "Random batches of the stage's shapes instead of its data "
                               "(stages with a `synthetic_batches`, e.g. teacher).")
flags.mark_flags_as_required(["config"])


def bench(config, steps: int, warmup: int, synthetic_data: bool = False) -> dict:
    """Compile and time the train step; return the figures."""
    import jax
    from tqdm import tqdm

    from worldscape_jax.training import logging as train_logging
    from worldscape_jax.training import loop

    setup = loop.build(config)
    if synthetic_data and not hasattr(setup.stage, "synthetic_batches"):
        raise app.UsageError(f"--synthetic_data: stage {config.stage!r} has no synthetic_batches")
    make_dataset = setup.stage.synthetic_batches if synthetic_data else setup.stage.make_dataset
    data_iter = make_dataset(config, jax.process_index(), jax.process_count())
    state = loop.initial_state(setup, config)
    batch, batch_shardings = loop.to_global_batch(next(data_iter), setup.mesh)
    start = time.perf_counter()
    compiled = loop.compile_step(setup, state, batch, batch_shardings)
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)  # with --warmup=0 too
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
        "synthetic_data": synthetic_data,
    }


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    figures = bench(_CONFIG.value, _STEPS.value, _WARMUP.value, _SYNTHETIC.value)
    width = max(map(len, figures))
    for key, value in figures.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    cli.run(main)
