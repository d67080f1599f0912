"""The trainer's config fields with their defaults; every stage config starts from `trainer_config`.

A stage config file (`configs/<stage>.py`) calls `trainer_config(...)`, then sets `config.model`
and `config.data` and whatever defaults it changes; command-line overrides
(`--config.optim.lr=1e-4`) work on every field listed here.
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.training.sharding import DEFAULT_LOGICAL_AXIS_RULES


def trainer_config(stage: str, total_steps: int, global_batch: int) -> ml_collections.ConfigDict:
    """Defaults for the generic loop (loop.py); see each section's comment."""
    c = ml_collections.ConfigDict()
    c.stage = stage  # name or module path of the stage (training/stages/__init__.py)
    c.seed = 0
    c.total_steps = total_steps
    c.global_batch = global_batch
    c.stop_at_step = 0  # > 0: stop after this step without a final save, as a preemption would
    # An export directory (launch/export.py) or asset:NAME whose params a fresh run starts from
    # (fine-tuning); ignored once the run has a checkpoint to resume.
    c.init_from = ""
    # Mesh axis sizes; one may be -1 (all remaining devices).
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, context=1))
    c.logical_axis_rules = DEFAULT_LOGICAL_AXIS_RULES
    c.optim = ml_collections.ConfigDict(
        dict(
            name="adamw", lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decay_all_params=False,
            schedule="warmup_cosine", warmup_steps=0, decay_steps=0, min_lr_ratio=0.0, grad_clip=1.0,
            accumulation_steps=1, momentum=0.0,  # momentum: sgd only
        )
    )
    # Master weights in param_dtype; the loss runs with params cast to compute_dtype.
    c.precision = ml_collections.ConfigDict(dict(param_dtype="float32", compute_dtype="float32"))
    c.ema = ml_collections.ConfigDict(dict(decay=0.0, start_step=0))  # decay 0 disables EMA params
    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=100, keep=3, async_save=True))
    c.log = ml_collections.ConfigDict(dict(every_steps=10, tensorboard=True, progress=True))
    c.sample = ml_collections.ConfigDict(dict(every_steps=0, fps=8))  # 0: no sample videos
    c.model = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict()
    return c
