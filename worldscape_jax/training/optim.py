"""The optimizer from config: AdamW, a learning-rate schedule with warmup, gradient clipping.

Config (`config.optim`, an ml_collections ConfigDict):
  name: "adamw" | "sgd"          lr: peak learning rate
  b1, b2, eps: Adam moments      weight_decay: decoupled decay (applied to >= 2-D params only
  schedule: "constant" | "warmup_cosine" | "warmup_linear"          unless decay_all_params)
  warmup_steps: linear warmup from 0        decay_steps: end of the decay (default total_steps)
  min_lr_ratio: final lr / peak lr          grad_clip: global-norm clip (0 disables)
  accumulation_steps: micro-batches per optimizer step (handled by the train step, see step.py)
"""

from __future__ import annotations

from typing import Callable

import jax
import ml_collections
import optax

Schedule = Callable[[int], float]

SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")
OPTIMIZERS = ("adamw", "sgd")


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the optimizer step."""
    if optim.schedule not in SCHEDULES:
        raise ValueError(f"config.optim.schedule must be one of {SCHEDULES}, got {optim.schedule!r}")
    if optim.lr <= 0:
        raise ValueError(f"config.optim.lr must be > 0, got {optim.lr}")
    warmup = int(optim.get("warmup_steps", 0))
    decay_steps = int(optim.get("decay_steps", 0) or total_steps)
    final = optim.lr * float(optim.get("min_lr_ratio", 0.0))
    if optim.schedule == "constant":
        if warmup == 0:
            return optax.constant_schedule(optim.lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, optim.lr, warmup), optax.constant_schedule(optim.lr)], [warmup]
        )
    if decay_steps <= warmup:
        raise ValueError(
            f"config.optim: decay_steps ({decay_steps}) must exceed warmup_steps ({warmup}) for {optim.schedule}"
        )
    if optim.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, optim.lr, warmup, decay_steps, end_value=final)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, optim.lr, warmup), optax.linear_schedule(optim.lr, final, decay_steps - warmup)],
        [warmup],
    )


def _decay_mask(params):
    """Decay matrices and kernels only: biases, norm scales and other 1-D vectors are left alone."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    optim: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Build (transformation, schedule) from `config.optim`."""
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {optim.name!r}")
    schedule = make_schedule(optim, total_steps)
    parts = []
    if optim.get("grad_clip", 0.0):
        parts.append(optax.clip_by_global_norm(float(optim.grad_clip)))
    if optim.name == "adamw":
        mask = None if optim.get("decay_all_params", False) else _decay_mask
        parts.append(
            optax.adamw(
                schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay, mask=mask
            )
        )
    else:
        parts.append(optax.sgd(schedule, momentum=optim.get("momentum", None) or None))
    return optax.chain(*parts), schedule
