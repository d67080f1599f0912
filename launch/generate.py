"""Generate camera-controlled video with the tiny teacher on held-out SynthWorld scenes, and score it.

  python launch/generate.py                                           # one scene, path "w,q" (offline; not the main job)
  python launch/generate.py --scenes=8 --actions=mixed --out=runs/eval  # the teacher's held-out evaluation
  python launch/generate.py --scenes=8 --actions=pan --vae_ceiling      # the same metrics on VAE round trips

For each held-out scene the teacher sees the first ground-truth frame and the camera path of the
WASD/QERF action string, and generates the clip. Written to --out: generated_vs_truth.mp4 (side by
side), contact_sheet.png, paths.png, metrics.json, report.md and videos.npz (the uint8 videos:
generated, truth, camera_zeroed with --ablate_camera, and the c2w and intrinsics they were scored
with, for your own analysis); the metrics are printed: PSNR and SSIM against ground truth, PSNR of
repeating the first frame, Trajectory Accuracy of the generated video, and (with --ablate_camera) of
the same model with its camera input zeroed, and how far the video's motion is from a rigid turn.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from tqdm import tqdm

from worldscape_jax import cli
from worldscape_jax.data.synthworld.clips import FAMILIES
from worldscape_jax.geometry.actions import num_frames_of

_TEACHER = flags.DEFINE_string("teacher", "asset:teacher_tiny", "Exported teacher (launch/export.py) or asset:NAME.")
_MODEL = flags.DEFINE_string("model", None, "Exported model to run instead of --teacher: a teacher, or a causal "
                             "student (asset:student_tiny), which rolls out chunk by chunk over its KV cache and "
                             "takes a path of any length.")
_ACTIONS = flags.DEFINE_string("actions", "w,q", "Keys per latent frame, e.g. 'w,q' (1 + 4 * steps frames); or a "
                               "trajectory family (forward, pan, orbit, there_and_back, random_walk, static, keys); "
                               "or 'mixed': each scene's own navigation family (one of the first five), the "
                               "teacher's held-out evaluation set.")
_SCENES = flags.DEFINE_integer("scenes", 1, "Number of held-out scenes.", lower_bound=1)
_FIRST_SCENE = flags.DEFINE_integer("first_scene", 0, "Index of the first held-out scene (tune sampler settings "
                                    "on scenes that the reported figures do not use).", lower_bound=0)
_OUT = flags.DEFINE_string("out", "runs/demo", "Output directory.")
_STEPS = flags.DEFINE_integer("steps", None, "Sampling steps (default: the config's).", lower_bound=1)
_GUIDANCE = flags.DEFINE_float("guidance", None, "Camera guidance scale (default: the config's).")
_SHIFT = flags.DEFINE_float("shift", None, "Shift of the sampling sigmas (default: the config's sample.shift).")
_ABLATE = flags.DEFINE_bool("ablate_camera", True, "Also generate with the camera input zeroed and score it.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_VAE_CEILING = flags.DEFINE_bool("vae_ceiling", False, "Score the VAE's reconstruction of each ground-truth clip "
                                 "instead of a generation: the best the teacher's latent space allows on every "
                                 "metric. No camera ablation then.")


@flags.validator("actions", message="--actions must be 'mixed', a trajectory family or an action string")
def _check_actions(actions: str) -> bool:
    """A bad action string raises its own message (which key, which item); a family or 'mixed' passes."""
    if actions != "mixed" and actions not in FAMILIES:
        try:
            num_frames_of(actions)
        except ValueError as e:
            raise flags.ValidationError(str(e)) from e
    return True


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from worldscape_jax.eval.report import side_by_side, write_report
    from worldscape_jax.eval.video_eval import evaluate_clip, summarise
    from worldscape_jax.inference.heldout import heldout_clips
    from worldscape_jax.inference.loading import load_exported, load_vae
    from worldscape_jax.inference.pixels import to_uint8, to_unit_range
    from worldscape_jax.inference.teacher import generate
    from worldscape_jax.models import vae as vae_lib
    from worldscape_jax.training.media import write_mp4

    from worldscape_jax.training.stages import student

    model_name = _MODEL.value or _TEACHER.value
    params, config = load_exported(model_name)
    is_student = student.is_student(config)
    if not is_student and config.stage != "teacher":
        raise app.UsageError(f"--model {model_name}: an export of stage {config.stage!r}; expected a teacher or "
                             "a causal student")
    trajectory = None if _ACTIONS.value == "mixed" else _ACTIONS.value
    frames = config.data.frames if trajectory is None or trajectory in FAMILIES else num_frames_of(trajectory)
    if frames != config.data.frames and not is_student:
        raise app.UsageError(f"--actions {_ACTIONS.value!r} gives {frames} frames; the teacher was trained on "
                             f"{config.data.frames} (1 + 4 * {(config.data.frames - 1) // 4} steps)")
    if _SHIFT.value is not None:
        config.sample.shift = _SHIFT.value
    vae = load_vae(config.vae.checkpoint, config.vae.preset)
    if is_student:
        run = jax.jit(lambda first, c2w, k, rng, scale: student.generate(params, config, vae, first, c2w, k, rng))
        with config.unlocked():
            config.data.frames = frames
    else:
        run = jax.jit(lambda first, c2w, k, rng, scale: generate(
            params, config, vae, first, c2w, k, rng, steps=_STEPS.value, guidance=_GUIDANCE.value,
            camera_scale=scale))
    reconstruct = jax.jit(lambda video: vae_lib.decode(vae[0], vae_lib.encode(vae[0], video, vae[1]), vae[1]))
    ablate = _ABLATE.value and not _VAE_CEILING.value and not is_student  # the student has no camera CFG

    clips = heldout_clips(config, _SCENES.value, trajectory=trajectory, first=_FIRST_SCENE.value)
    results, ablated, generated, ablated_videos = [], [], [], []
    for i, clip in enumerate(tqdm(clips, desc="generate + score", unit="scene")):
        args = (to_unit_range(clip["video"][None, :1]), jnp.asarray(clip["c2w"][None]),
                jnp.asarray(clip["intrinsics"][None]), jax.random.key(_SEED.value + i))
        if _VAE_CEILING.value:
            video = to_uint8(reconstruct(to_unit_range(clip["video"][None])))[0]
        else:
            video = to_uint8(run(*args, 1.0))[0]
        generated.append(video)
        results.append(evaluate_clip(video, clip["video"], clip["c2w"], clip["intrinsics"]))
        if ablate:
            no_camera = to_uint8(run(*args, 0.0))[0]
            ablated_videos.append(no_camera)
            ablated.append(evaluate_clip(no_camera, clip["video"], clip["c2w"], clip["intrinsics"]))

    truth = np.stack([c["video"] for c in clips])
    generated = np.stack(generated)
    summary = summarise(results)
    summary.update(actions=_ACTIONS.value, teacher=model_name,
                   source="vae_reconstruction" if _VAE_CEILING.value else ("student" if is_student else "teacher"))
    if ablated:
        zero = summarise(ablated)
        summary["camera_zeroed_trajectory_accuracy"] = zero["trajectory_accuracy"]
        summary["camera_zeroed_psnr"] = zero["psnr"]
    paths = write_report(_OUT.value, summary, results, generated, truth, np.stack([c["c2w"] for c in clips]))
    write_mp4(os.path.join(_OUT.value, "generated_vs_truth.mp4"), side_by_side(generated, truth), fps=8)
    arrays = dict(generated=generated, truth=truth, c2w=np.stack([c["c2w"] for c in clips]),
                  intrinsics=np.stack([c["intrinsics"] for c in clips]))
    if ablated_videos:
        arrays["camera_zeroed"] = np.stack(ablated_videos)
    np.savez_compressed(os.path.join(_OUT.value, "videos.npz"), **arrays)
    print(f"wrote {', '.join(sorted(paths.values()))}, generated_vs_truth.mp4 and videos.npz")
    print(f"{len(clips)} held-out scene(s), path {_ACTIONS.value!r}, {frames} frames")
    print(f"PSNR {summary['psnr']:.2f} dB vs {summary['psnr_first_frame_baseline']:.2f} dB repeating the first frame "
          f"(gain {summary['psnr_gain_over_first_frame']:+.2f} dB); SSIM {summary['ssim']:.3f}")
    line = f"Trajectory Accuracy {summary['trajectory_accuracy']:.3f}"
    if ablated:
        line += f" (camera zeroed: {summary['camera_zeroed_trajectory_accuracy']:.3f})"
    print(line + f"; pose estimator on the ground-truth video: {summary['trajectory_ground_truth_video_accuracy']:.3f}")
    print(f"Distance of tracked points from a rigid rotation per block (median): generated "
          f"{summary['trajectory_rotation_residual_px']:.3f} px, ground truth "
          f"{summary['trajectory_ground_truth_video_rotation_residual_px']:.3f} px")


if __name__ == "__main__":
    cli.run(main)
