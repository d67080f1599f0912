"""Train the causal VAE on SynthWorld (training/stages/vae.py).

  python launch/train.py --config configs/vae.py:tiny --workdir runs/vae_tiny

The argument is the VAE preset (models/vae_config.py): `tiny` (64x64 SynthWorld, the committed
checkpoint's recipe) or `wan2_1` (fine-tuning the converted official VAE at 480x832; GPU only).
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.configs.arguments import parse_arg
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training.defaults import trainer_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    preset, _ = parse_arg(arg, "configs/vae.py", ("tiny", "wan2_1"), ())
    tiny = preset == "tiny"
    # tiny: the committed worldscape_jax/assets/vae_tiny (patch shortcut, PCA init) is this config's
    # 3000-step cosine run on random 32x32 crops of 9-frame clips, stopped at step 2250 (24 min) and
    # resumed in the same workdir on crops of 17-frame clips for the last 750 steps:
    #   python launch/train.py --config configs/vae.py:tiny --workdir runs/vae_tiny --config.stop_at_step=2250
    #   python launch/train.py --config configs/vae.py:tiny --workdir runs/vae_tiny --config.data.frames=17
    # The export's config.json and metrics.jsonl record the run, history_phase1_* its 9-frame part.
    # BENCHMARKS.md ("The committed tiny models") has its figures, and those of the VAE before it.
    config = trainer_config("vae", total_steps=3000 if tiny else 2000, global_batch=8 if tiny else 4)
    shape = get_vae_config(preset)
    # The preset's shape, spelled out so that flags can change it (--config.model.dim=16).
    config.model = ml_collections.ConfigDict(dict(
        preset=preset, dim=shape.dim, dim_mult=shape.dim_mult, num_res_blocks=shape.num_res_blocks,
        temporal_downsample=shape.temporal_downsample, z_dim=shape.z_dim, patch_shortcut=shape.patch_shortcut))
    config.data = ml_collections.ConfigDict(dict(
        # Where clips come from (training/stages/vae.py clip_source): synthworld (train scenes rendered on
        # the fly), array_record (launch/make_synthworld.py's export at `path`), realestate10k (<clip>.txt
        # poses in `pose_dir`, default `path`; frames in path/<clip>/ or path/<clip>.mp4) or egodex (`path`).
        source="synthworld", path="", pose_dir="", frame_stride=1,
        frames=9 if tiny else 17, height=64 if tiny else 480, width=64 if tiny else 832,
        num_clips=512 if tiny else 64,  # the source's first clips that train; 0: all (not synthworld)
        heldout_clips=16,  # SynthWorld held-out scenes for heldout_psnr and samples
        crop=32 if tiny else 0,  # > 0: train on random crop x crop windows (cheaper steps; see stages/vae.py)
    ))
    config.vae_stats = None  # {mean, std} per latent channel: set by launch/export.py (stages/vae.py export_metadata)
    config.shortcut_init = "pca"  # with model.patch_shortcut: start as the PCA autoencoder (stages/vae.py)
    config.loss = ml_collections.ConfigDict(dict(kl_weight=1e-6, freeze_encoder=False))
    config.optim.lr = 5e-4 if tiny else 1e-5
    config.optim.warmup_steps = 100
    config.optim.min_lr_ratio = 0.05 if tiny else 0.0
    config.ema.decay = 0.998 if tiny else 0.999
    config.log.every_steps = 20
    config.sample = ml_collections.ConfigDict(dict(every_steps=1000, fps=8, count=4))
    config.checkpoint.every_steps = 250 if tiny else 500
    return config
