"""The causal few-step student (paper §3.3): ODE-pair init, then Self-Forcing DMD with a rolling window.

  python launch/train.py --config configs/student.py:tiny,ode_init --workdir runs/student_ode_tiny
  python launch/export.py --workdir runs/student_ode_tiny --out runs/student_ode_tiny/export
  python launch/train.py --config configs/student.py:tiny --workdir runs/student_tiny \
      --config.student.init_from=runs/student_ode_tiny/export
  python launch/export.py --workdir runs/student_tiny --out worldscape_jax/assets/student_tiny

One base config holds both stages' fields; the variant after the scale picks the stage
(`ode_init`; the default is `self_forcing`). The student is the teacher's DiT (`config.model` equals the
teacher export's) run block-causally over chunks of `model.frames_per_chunk` latent frames: 1 at tiny
(4 pixel frames), 3 at wan1_3b, as in Self-Forcing.

Denoising levels: Self-Forcing's [1000, 750, 500, 250] warped by the timestep shift of the model they
are used with (`student.shift`): 5 for Wan at 480p (t = 1000, 937.5, 833.3, 625), and at tiny the tiny
teacher's own shift 1 (it was trained and samples at shift 1 on 64x64 frames, where shift 5 would spend
three of four levels above sigma 0.8).
"""

from __future__ import annotations

import ml_collections

from worldscape_jax.configs import dit
from worldscape_jax.training.defaults import trainer_config

STAGES = ("ode_init", "self_forcing")


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    scale, *variants = (arg or "tiny").split(",")
    if scale not in ("tiny", "wan1_3b"):
        raise ValueError(f"configs/student.py: unknown scale {scale!r}; expected tiny or wan1_3b")
    unknown = [v for v in variants if v not in STAGES]
    if unknown or len(variants) > 1:
        raise ValueError(f"configs/student.py: variants {variants}; expected at most one stage of {STAGES}")
    tiny = scale == "tiny"
    stage = variants[0] if variants else "self_forcing"
    steps = {"ode_init": 600 if tiny else 3000, "self_forcing": 600}[stage]
    batch = {"ode_init": 8 if tiny else 64, "self_forcing": 2 if tiny else 64}[stage]
    config = trainer_config(stage, total_steps=steps, global_batch=batch)
    # The teacher's DiT: at tiny the committed turn-warp teacher (asset:teacher_tiny) exactly.
    config.model = dit.get_config("tiny,control,camera,turn_warp" if tiny else "wan1_3b,fun_control,camera,bf16")
    config.vae = ml_collections.ConfigDict(dict(preset="tiny" if tiny else "wan2_1",
                                                checkpoint="asset:vae_tiny" if tiny else ""))
    config.teacher = ml_collections.ConfigDict(dict(
        checkpoint="asset:teacher_tiny" if tiny else "",  # "" = random init (shape checks only)
        # The teacher's window: its 9-frame clip at tiny (3 latent frames: the reference + 2 chunks); at wan1_3b
        # 73 of its 81 frames (the reference + 6 chunks of 3), so a window is whole chunks.
        frames=9 if tiny else 73,
        ode_steps=24,  # Euler steps of the teacher's ODE over sigma 1 -> 0 (its own sampler)
        guidance=2.0 if tiny else 3.0,  # camera CFG of the teacher, used for ODE pairs and the real score
        shift=1.0 if tiny else 5.0,
    ))
    config.student = ml_collections.ConfigDict(dict(
        denoising_levels=(1.0, 0.75, 0.5, 0.25), shift=1.0 if tiny else 5.0,
        # Rolling KV cache: the sink (the first latent) + the most recent frames. tiny: 1 + 4 latent frames.
        cache_slots=5 if tiny else 24, sink_frames=1 if tiny else 3,
        # Generated chunks per Self-Forcing rollout (> the teacher's window: the rolling window). tiny: 8 (33
        # frames, 7 teacher windows); with the truth anchor they lasted longer than 4 on 401-frame streams.
        rollout_chunks=8 if tiny else 9,
        # What chunks after the first are conditioned on (student.reference_mode): "none" (zero channels,
        # the past through the cache only) since the newest-frame reference drifted to noise in ~30 frames.
        reference="none",
        # With reference "newest_frame": std of the noise on the reference's control channels in every rollout
        # and stream (conditioning.noised_control; GameNGen's noise augmentation against drift). 0 = none.
        reference_noise=0.0,
        # With reference "newest_frame": block size of the low pass on the reference before it is encoded
        # (conditioning.low_pass): its layout passes on, not the fine texture in which drift grows. 1 = none.
        reference_blur=1,
        # With reference "first_frame": the first frame's conditioning fades linearly to zero at this much camera
        # travel (scene units) and turn (degrees) from the first camera (conditioning.anchor_weight). 0 = no fade.
        reference_reach=0.0, reference_reach_deg=0.0,
        # With reference "first_frame": "black" gives the warp's OUTSIDE pixels as the teacher saw them (encoded
        # black); "dropped" scales the warp channels by each latent pixel's coverage (conditioning.drop_outside_warp).
        reference_outside="black",
        # The rollout's KV cache: "rolling" (the sink + the newest frames, cache_slots in all) or "maco" (the
        # maco section below), so that a student meant to stream with MACO trains with memory in its context.
        cache="rolling",
        init_from="",  # Self-Forcing: the ODE-init export the generator starts from ("" = the teacher's params)
    ))
    # MACO (streaming/maco.py, sizes in chunks) at the trained span: sink + select + local = the rolling cache's
    # context (5 frames at tiny, 8 chunks at wan1_3b), pool of 4. The stream, play and demo read it from exports.
    config.maco = ml_collections.ConfigDict(dict(local=2 if tiny else 5, budget=4, select=2, tau_mdl=0.7, alpha=0.5,
                                                 lambda_=1.0, positions="fixed"))
    config.data = ml_collections.ConfigDict(dict(
        # the teacher's clips for the ODE pairs, read as the teacher stage reads them (training/stages/teacher.py)
        source="synthworld", path="", pose_dir="", frame_stride=1,
        frames=config.teacher.frames, height=64 if tiny else 480, width=64 if tiny else 832,
        num_clips=256 if tiny else 0,  # ODE pairs (teacher clips); Self-Forcing draws its own paths
        seed=0, cache_dir="runs/cache", families=("forward", "pan", "orbit", "there_and_back", "random_walk",
                                                  "keys", "keys"),
        rollout_examples=256 if tiny else 0,  # Self-Forcing: first frames + camera paths
    ))
    config.dmd = ml_collections.ConfigDict(dict(
        min_sigma=0.02, max_sigma=0.98, shift=config.student.shift,  # the score timestep (Self-Forcing)
        # Critic updates per generator update: Self-Forcing's 5 at wan1_3b; 3 at tiny, whose CPU budget
        # allows a few hundred steps, and whose critic starts as the teacher (so it is close from step 0).
        critic_lr=1e-4 if tiny else 4e-7, generator_every=3 if tiny else 5,
        # Ground-truth anchor (self_forcing.loss_fn): weight of the rollout's latent MSE against the rendered
        # path; 0 is the paper's DMD alone. tiny: 1 (SynthWorld renders any path; BENCHMARKS.md "Long streams").
        truth_weight=1.0 if tiny else 0.0,
        # The anchor's spatial average pool in latent pixels (self_forcing._truth_mse): 1 = every pixel, whose
        # optimum is a blur; 4 at tiny anchors a 4x4 grid of 16x16-pixel blocks, layout and colour only.
        truth_pool=1,
        # The teacher's (and critic's) windows start at the ground truth's frame, not the student's own decoded
        # one (self_forcing.loss_fn): DMD itself then pulls a drifted or blurred stream towards the real scene.
        truth_reference=False,
    ))
    if stage == "ode_init":  # the student starts from the teacher's params (the trainer's init_from)
        config.init_from = config.teacher.checkpoint
    config.cond = ml_collections.ConfigDict(dict(drop_image=0.0, drop_camera=0.0))
    config.flow = ml_collections.ConfigDict(dict(clean_first_latent=True))
    config.optim.lr = (2e-4 if stage == "ode_init" else 5e-5) if tiny else 2e-6
    config.optim.b1 = 0.9 if stage == "ode_init" else 0.0
    config.optim.warmup_steps = 20
    config.optim.weight_decay = 0.01
    config.optim.grad_clip = 1.0 if tiny else 10.0
    config.optim.schedule = "constant"
    config.ema.decay = 0.99
    config.ema.start_step = 50 if tiny else 200
    config.precision.compute_dtype = config.model.dtype
    config.checkpoint.every_steps = 100 if stage == "ode_init" else 25
    config.log.every_steps = 10
    config.sample = ml_collections.ConfigDict(dict(every_steps=0, fps=8, steps=24, shift=config.teacher.shift,
                                                   guidance=config.teacher.guidance, count=2))
    return config
