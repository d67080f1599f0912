"""Timing for the `launch/bench_*.py` scripts: wall time of jitted calls, compile excluded."""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np


def median_seconds(fn: Callable, *args, repeats: int) -> float:
    """Median wall time of fn(*args) in seconds over `repeats` calls, after one warm-up call (which compiles)."""
    if repeats < 1:
        raise ValueError(f"median_seconds: repeats must be >= 1, got {repeats}")
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))
