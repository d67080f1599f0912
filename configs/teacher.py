"""Stage 1: the camera-controlled image-to-video teacher (training/stages/teacher.py).

  python launch/train.py --config configs/teacher.py:tiny --workdir runs/teacher_tiny
  python launch/export.py --workdir runs/teacher_tiny --out worldscape_jax/assets/teacher_tiny

`tiny` trains on SynthWorld's train split (64x64, 9 frames = 3 latent frames) in the committed tiny
VAE's latent space (it reconstructs held-out 9-frame clips at 32.0 dB). `wan1_3b` is the paper's scale
(832x480, 81 frames, Fun-Control 48 channels with the CLIP branch); on a CPU it is only lowered and
compiled (tests/training/test_teacher.py).

The committed worldscape_jax/assets/teacher_tiny is exactly this config: one run of 20000 steps
(84 min, 3.6-4.4 steps/s, after an 8-min latent-cache build) on TEACHER_FAMILIES, the five navigation
families plus `keys` twice, so 2 clips in 7 are random presses of every WASD/QERF key, idling and
key combinations. The teacher before it (in git history) saw the navigation families only and broke on
keys a, d, s, r, f and on standing still (s: -11.1 dB against repeating the first frame; now -2.1 dB;
standing still 20.2 -> 28.0 dB PSNR); on the navigation families the two are close (BENCHMARKS.md).

`configs/teacher.py:tiny,ray_turn` adds each pixel's ray turn to the camera input (configs/dit.py); in a
turn-only pilot it helped a little, a wider model much more (BENCHMARKS.md, "What would make turns rigid").
`configs/teacher.py:tiny,turn_warp` gives the DiT the first frame warped through each frame's turn
(geometry/reprojection.py) as 16 more input channels, so a rigid turn becomes a copy.
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.configs import dit
from worldscape_jax.data.synthworld.clips import NAVIGATION_FAMILIES
from worldscape_jax.training.defaults import trainer_config

# Clip i of the latent cache follows TEACHER_FAMILIES[traj_seed % len(TEACHER_FAMILIES)]: repeating a
# name weights it.
TEACHER_FAMILIES = (*NAVIGATION_FAMILIES, "keys", "keys")
# DiT variants accepted after the scale, e.g. configs/teacher.py:tiny,ray_turn (configs/dit.py).
MODEL_VARIANTS = ("ray_turn", "turn_warp")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    scale, *variants = (arg or "tiny").split(",")
    if scale not in ("tiny", "wan1_3b"):
        raise ValueError(f"configs/teacher.py: unknown scale {scale!r}; expected tiny or wan1_3b")
    unknown = [v for v in variants if v not in MODEL_VARIANTS]
    if unknown:
        raise ValueError(f"configs/teacher.py: unknown variants {unknown}; expected any of {MODEL_VARIANTS}")
    tiny = scale == "tiny"
    config = trainer_config("teacher", total_steps=20000, global_batch=8 if tiny else 64)
    model = "tiny,control,camera" if tiny else "wan1_3b,fun_control,camera,bf16"
    config.model = dit.get_config(",".join([model, *variants]))
    config.vae = ml_collections.ConfigDict(dict(
        preset="tiny" if tiny else "wan2_1",
        checkpoint="asset:vae_tiny" if tiny else "",  # an export dir (launch/export.py) or asset:NAME
    ))
    config.data = ml_collections.ConfigDict(dict(
        frames=9 if tiny else 81, height=64 if tiny else 480, width=64 if tiny else 832,
        num_clips=4096 if tiny else 0, seed=0, cache_dir="runs/cache",
        families=TEACHER_FAMILIES,
    ))
    config.flow = ml_collections.ConfigDict(dict(
        distribution="logit_normal", shift=1.0 if tiny else 5.0, per_frame=False, logit_mean=0.0, logit_std=1.0,
        # tiny: the first latent is given clean (timestep 0, not scored) and held fixed while sampling;
        # wan1_3b keeps Wan-Fun's recipe, where the first frame enters through the control channels only.
        clean_first_latent=tiny,
    ))
    config.cond = ml_collections.ConfigDict(dict(drop_image=0.05, drop_camera=0.15))
    config.optim.lr = 4e-4 if tiny else 2e-5
    config.optim.warmup_steps = 100
    config.optim.weight_decay = 0.01
    config.ema.decay = 0.999 if tiny else 0.9999
    config.ema.start_step = 1500 if tiny else 2000  # before it the EMA copies the params (no init in the average)
    config.precision.compute_dtype = config.model.dtype
    config.checkpoint.every_steps = 500
    config.log.every_steps = 25
    config.sample = ml_collections.ConfigDict(dict(every_steps=0, fps=8, steps=24,
                                                   shift=config.flow.shift, guidance=2.0, count=2))
    return config
