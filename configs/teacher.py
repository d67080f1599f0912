"""Stage 1: the camera-controlled image-to-video teacher (training/stages/teacher.py).

  python launch/train.py --config configs/teacher.py:tiny --workdir runs/teacher_tiny
  python launch/export.py --workdir runs/teacher_tiny --out worldscape_jax/assets/teacher_tiny

`tiny` trains on SynthWorld's train split (64x64, 9 frames = 3 latent frames) in the committed tiny
VAE's latent space (it reconstructs held-out 9-frame clips at 32.0 dB). `wan1_3b` is the paper's scale
(832x480, 81 frames, Fun-Control 48 channels with the CLIP branch); on a CPU it is only lowered and
compiled (tests/training/test_teacher.py).

`configs/teacher.py:tiny` is the recipe of the committed worldscape_jax/assets/teacher_tiny (its
config.json matches this config field for field): one run of 17000 steps (74.8 min on 2 CPU cores)
on TEACHER_FAMILIES, the five navigation families plus `keys` twice, with the turn warp (configs/dit.py
`turn_warp`: the first frame re-projected through each frame's turn, VAE-encoded, on 16 more input
channels, so that a rigid turn becomes a copy).

Variants after the scale:
  turn_warp     the turn warp (already in `tiny`; adds it to `wan1_3b`);
  no_turn_warp  without it: the 48-channel layout of the teacher before (in git history);
  ray_turn      each pixel's ray turn in the camera input (experimental; BENCHMARKS.md, "What would
                make turns rigid").
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.configs import dit
from worldscape_jax.configs.arguments import ConfigArgumentError, parse_arg
from worldscape_jax.data.synthworld.clips import NAVIGATION_FAMILIES
from worldscape_jax.training.defaults import trainer_config

# Clip i of the latent cache follows TEACHER_FAMILIES[traj_seed % len(TEACHER_FAMILIES)]: repeating a
# name weights it.
TEACHER_FAMILIES = (*NAVIGATION_FAMILIES, "keys", "keys")
VARIANTS = ("turn_warp", "no_turn_warp", "ray_turn")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    scale, variants = parse_arg(arg, "configs/teacher.py", ("tiny", "wan1_3b"), VARIANTS)
    if "turn_warp" in variants and "no_turn_warp" in variants:
        raise ConfigArgumentError(f"configs/teacher.py: {arg!r} asks for turn_warp and no_turn_warp")
    tiny = scale == "tiny"
    config = trainer_config("teacher", total_steps=17000 if tiny else 20000, global_batch=8 if tiny else 64)
    model = ["tiny,control,camera"] if tiny else ["wan1_3b,fun_control,camera,bf16"]
    turn_warp = "turn_warp" in variants or (tiny and "no_turn_warp" not in variants)
    model += ["turn_warp"] * turn_warp + ["ray_turn"] * ("ray_turn" in variants)
    config.model = dit.get_config(",".join(model))
    config.vae = ml_collections.ConfigDict(dict(
        preset="tiny" if tiny else "wan2_1",
        checkpoint="asset:vae_tiny" if tiny else "",  # an export dir (launch/export.py) or asset:NAME
    ))
    config.data = ml_collections.ConfigDict(dict(
        # Where clips come from (training/stages/teacher.py clip_source): synthworld (rendered on the fly),
        # array_record (launch/make_synthworld.py's export at `path`), realestate10k (<clip>.txt poses in
        # `pose_dir`, default `path`; frames in path/<clip>/ or path/<clip>.mp4) or egodex (`path`).
        source="synthworld", path="", pose_dir="",
        frames=9 if tiny else 81, height=64 if tiny else 480, width=64 if tiny else 832, frame_stride=1,
        num_clips=4096 if tiny else 0,  # clips encoded into the latent cache; 0: all the source has
        seed=0,
        families=TEACHER_FAMILIES,  # synthworld only
        # The latent cache's root; empty: $XDG_CACHE_HOME/worldscape_jax (~/.cache/worldscape_jax).
        cache_dir="",
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
