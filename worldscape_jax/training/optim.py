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
    decay_steps = int(optim.decay_steps or total_steps)
    warmup = short_run_warmup(int(optim.warmup_steps), decay_steps, optim.schedule)
    final = optim.lr * float(optim.min_lr_ratio)
    if optim.schedule == "constant":
        if warmup == 0:
            return optax.constant_schedule(optim.lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, optim.lr, warmup), optax.constant_schedule(optim.lr)], [warmup]
        )
    if optim.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, optim.lr, warmup, decay_steps, end_value=final)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, optim.lr, warmup), optax.linear_schedule(optim.lr, final, decay_steps - warmup)],
        [warmup],
    )


def short_run_warmup(warmup: int, decay_steps: int, schedule: str) -> int:
    """`warmup`, or a fifth of the run when the run is too short for it (a quick `--config.total_steps=20`
    of a config that warms up over 100 steps), said on the console rather than failing."""
    if schedule == "constant" or warmup < decay_steps:
        return warmup
    capped = decay_steps // 5
    print(f"optim: warmup_steps={warmup} does not fit a run that decays over {decay_steps} steps "
          f"(config.total_steps, or config.optim.decay_steps); warming up over {capped} steps instead "
          "(set --config.optim.warmup_steps to choose)")
    return capped


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
    if optim.grad_clip:
        parts.append(optax.clip_by_global_norm(float(optim.grad_clip)))
    if optim.name == "adamw":
        mask = None if optim.decay_all_params else _decay_mask
        parts.append(
            optax.adamw(
                schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay, mask=mask
            )
        )
    else:
        parts.append(optax.sgd(schedule, momentum=optim.momentum or None))
    return optax.chain(*parts), schedule
