"""What a run reports: a tqdm progress bar (ETA, loss, throughput, MFU), a JSONL log, TensorBoard.

MFU = (FLOPs of one train step per device) / (step time) / (that device's peak FLOP/s).
The loop counts matmul FLOPs from the step's jaxpr (training/flops.py, which sees inside scans);
`step_flops` reads XLA's cost analysis of a compiled program, which counts a scanned layer stack
only once and is kept for comparison. The peaks are dense bf16 figures from vendor data sheets
(`PEAK_FLOPS`). CPUs have no data-sheet figure: we use a
nominal AVX2-FMA peak (cores x 3 GHz x 32 fp32 FLOP/cycle), so CPU MFU is only a rough indicator.

TensorBoard event files are written with tensorboardX, which does not need TensorFlow. Only process
0 writes anything.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping

import jax
import numpy as np
from tqdm.auto import tqdm

# Dense bf16 peak FLOP/s per device (no sparsity), keyed by a substring of `device.device_kind`.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("TPU v6", 918e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
)
CPU_NOMINAL_FLOPS_PER_CORE = 3.0e9 * 32


def peak_flops_per_device(device: jax.Device | None = None) -> float | None:
    """Peak FLOP/s of one device from the table, a nominal figure for CPUs, None if unknown."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        cores = os.cpu_count() or 1
        return CPU_NOMINAL_FLOPS_PER_CORE * cores / max(1, jax.local_device_count())
    for key, flops in PEAK_FLOPS:
        if key.lower() in device.device_kind.lower():
            return flops
    return None


def step_flops(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled (per-device SPMD) program, from XLA's cost analysis."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement cost analysis
        return None
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def mfu(flops_per_step: float | None, seconds_per_step: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1], or None when the FLOP count or peak is unknown."""
    if not flops_per_step or not peak or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / peak


def scalarize(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Fetch metric arrays to host floats; non-scalar metrics are an error naming the key."""
    out = {}
    for key, value in jax.device_get(dict(metrics)).items():
        arr = np.asarray(value)
        if arr.size != 1:
            raise ValueError(f"logging: metric {key!r} must be a scalar, got shape {arr.shape}")
        out[key] = float(arr.reshape(()))
    return out


class MetricWriter:
    """JSONL + TensorBoard writer for scalar metrics (no-op on processes other than 0)."""

    def __init__(self, workdir: str, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    "logging: config.log.tensorboard=True needs the `tensorboardX` package "
                    "(pip install tensorboardX), or set config.log.tensorboard=False"
                ) from err
            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop JSONL records past `step` (a resumed run re-logs the steps after its checkpoint)."""
        if not self.enabled or not os.path.exists(self.jsonl_path):
            return
        with open(self.jsonl_path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.jsonl_path, "w") as f:
            f.writelines(kept)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_jsonl(path: str) -> list[dict[str, float]]:
    """The records of a metrics.jsonl file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """A tqdm bar over optimizer steps showing loss, steps/s, examples/s and MFU; timing helper."""

    def __init__(self, start_step: int, total_steps: int, global_batch: int, enabled: bool = True):
        self.global_batch = global_batch
        self._bar = tqdm(
            total=total_steps, initial=start_step, desc="train", unit="step",
            disable=not (enabled and jax.process_index() == 0), dynamic_ncols=True,
        )
        self._last_time = time.perf_counter()
        self._last_step = start_step

    def rates(self, step: int) -> tuple[float, float]:
        """(seconds per step, examples per second) since the previous call."""
        now = time.perf_counter()
        steps = max(1, step - self._last_step)
        seconds = (now - self._last_time) / steps
        self._last_time, self._last_step = now, step
        return seconds, self.global_batch / seconds if seconds > 0 else 0.0

    def update(self, step: int, scalars: Mapping[str, float]) -> None:
        shown = {k: scalars[k] for k in ("loss", "steps_per_s", "examples_per_s", "mfu") if k in scalars}
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        self._bar.update(step - self._bar.n)

    def close(self) -> None:
        self._bar.close()
