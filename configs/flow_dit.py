"""Train the Wan DiT with the flow-matching loss on moving-blob latents (training/stages/flow_dit.py).

  python launch/train.py --config configs/flow_dit.py:tiny --workdir runs/flow_dit_tiny
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python launch/train.py \
      --config configs/flow_dit.py:tiny --config.mesh.fsdp=4 --config.mesh.tensor=2 --workdir runs/fd8

The argument is the DiT scale plus its variants (configs/dit.py), e.g. `tiny` or `wan1_3b,bf16`.
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.configs import dit
from worldscape_jax.configs.arguments import parse_arg
from worldscape_jax.training.defaults import trainer_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    scale, variants = parse_arg(arg, "configs/flow_dit.py", tuple(dit.SCALES), dit.VARIANTS)
    config = trainer_config("flow_dit", total_steps=2000 if scale == "tiny" else 20000,
                            global_batch=8 if scale == "tiny" else 64)
    config.model = dit.get_config(",".join([scale, *variants]))
    # num_clips moving-blob clips (training/stages/moving_blobs.py), shuffled by `seed` every epoch.
    config.data = ml_collections.ConfigDict(dict(frames=4, size=16 if scale == "tiny" else 60, num_clips=65536,
                                                 seed=0))
    config.flow = ml_collections.ConfigDict(dict(
        distribution="logit_normal", shift=1.0 if scale == "tiny" else 5.0, per_frame=False,
        logit_mean=0.0, logit_std=1.0, text_dropout=0.1,
    ))
    config.optim.lr = 3e-4 if scale == "tiny" else 2e-5
    config.optim.warmup_steps = 50
    config.optim.weight_decay = 0.01
    config.ema.decay = 0.999
    config.precision.compute_dtype = config.model.dtype
    config.checkpoint.every_steps = 250
    config.log.every_steps = 10
    config.sample = ml_collections.ConfigDict(dict(every_steps=500, fps=4, steps=20, shift=config.flow.shift,
                                                   guidance=3.0, count=4))
    return config
