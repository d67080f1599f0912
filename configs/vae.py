"""Train the causal VAE on SynthWorld (training/stages/vae.py).

  python launch/train.py --config configs/vae.py:tiny --workdir runs/vae_tiny

The argument is the VAE preset (models/vae_config.py): `tiny` (64x64 SynthWorld, the committed
checkpoint's recipe) or `wan2_1` (fine-tuning the converted official VAE at 480x832; GPU only).
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training.defaults import trainer_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    preset = arg or "tiny"
    if preset not in ("tiny", "wan2_1"):
        raise ValueError(f"configs/vae.py: the argument is a VAE preset, 'tiny' or 'wan2_1'; got {arg!r}")
    tiny = preset == "tiny"
    # tiny: the first phase of the committed worldscape_jax/assets/vae_tiny (1000 steps on 5-frame clips,
    # ~30 min on 2 CPU cores). A VAE that only saw 5-frame clips fails past frame 5 (every group's history
    # was frame 0), so the asset then resumed the same workdir for 220 steps on 9-frame clips:
    #   --config.total_steps=1220 --config.data.frames=9 --config.optim.schedule=constant
    #   --config.optim.lr=3e-4 --config.data.num_clips=128
    # and finally continued from that export on random 32x32 crops of 17-frame clips (2400 steps, 53 min):
    #   --config.init_from=asset:vae_tiny --config.data.frames=17 --config.data.crop=32
    #   --config.data.num_clips=512 --config.total_steps=2400 --config.optim.warmup_steps=50
    #   --config.optim.min_lr_ratio=0.05 --config.ema.decay=0.998
    # Then the decoder alone (the encoder frozen, so the teacher's latents stay exact), 2000 steps on crops
    # of 9-frame clips and, from that export, 1900 on crops of 17-frame clips:
    #   --config.init_from=asset:vae_tiny --config.loss.freeze_encoder=True --config.data.frames=9
    #   --config.data.crop=32 --config.data.num_clips=512 --config.total_steps=8000 (stopped at 2000)
    #   --config.optim.lr=5e-4 --config.optim.warmup_steps=50 --config.ema.decay=0.998
    #   --config.init_from=<that export> --config.loss.freeze_encoder=True --config.data.frames=17
    #   --config.data.crop=32 --config.data.num_clips=512 --config.total_steps=1900 --config.optim.lr=3e-4
    #   --config.optim.warmup_steps=20 --config.ema.decay=0.995
    # The export's config.json and metrics.jsonl record the last phase; history_phase1_* the first two,
    # history_phase3_* the crop phase and history_phase4_* the 9-frame decoder phase.
    config = trainer_config("vae", total_steps=1000 if tiny else 2000, global_batch=8 if tiny else 4)
    shape = get_vae_config(preset)
    # The preset's shape, spelled out so that flags can change it (--config.model.dim=16).
    config.model = ml_collections.ConfigDict(dict(
        preset=preset, dim=shape.dim, dim_mult=shape.dim_mult, num_res_blocks=shape.num_res_blocks,
        temporal_downsample=shape.temporal_downsample, z_dim=shape.z_dim, patch_shortcut=shape.patch_shortcut))
    config.data = ml_collections.ConfigDict(dict(
        frames=5 if tiny else 17, height=64 if tiny else 480, width=64 if tiny else 832,
        num_clips=256 if tiny else 64, heldout_clips=16,
        crop=0,  # > 0: train on random crop x crop windows (cheaper steps; see stages/vae.py)
    ))
    config.shortcut_init = "pca"  # with model.patch_shortcut: start as the PCA autoencoder (stages/vae.py)
    config.loss = ml_collections.ConfigDict(dict(kl_weight=1e-6, freeze_encoder=False))
    config.optim.lr = 1e-3 if tiny else 1e-5
    config.optim.warmup_steps = 40 if tiny else 100
    config.ema.decay = 0.999
    config.log.every_steps = 20
    config.sample = ml_collections.ConfigDict(dict(every_steps=500, fps=8, count=4))
    config.checkpoint.every_steps = 100 if tiny else 500
    return config
