"""Speed-up at equal quality (issue 17, paper Table 6): the causal student against its teacher, in one run.

  python launch/bench_student.py --student asset:student_tiny --teacher asset:teacher_tiny --scenes 8

For every key held for a whole clip (W A S D Q E R F) and for the mixed held-out families, both models
generate the same held-out SynthWorld clips (the teacher's 9 frames) from the same first frame; printed
per path and over all: PSNR against ground truth (mean and standard deviation over clips), Trajectory
Accuracy, off-rotation (the median distance of tracked points from the best pure rotation of each
4-frame block, `rotation_residual_px`: for a pure turn, how far the video is from rigid; rendered turns
sit at 0.03-0.1 px, and the pose estimator weighs residuals in units of its 0.25 px tracking noise, so a
turn well above that reads as travel and Trajectory Accuracy on Q E R F hinges on it), and frames per
second with the VAE decode included (batch 1, after compilation, the median over the clips). The student
runs its block-causal rollout over its own KV cache.
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from absl import app, flags

_STUDENT = flags.DEFINE_string("student", "asset:student_tiny", "Exported student or asset:NAME.")
_TEACHER = flags.DEFINE_string("teacher", "asset:teacher_tiny", "Exported teacher or asset:NAME.")
_SCENES = flags.DEFINE_integer("scenes", 8, "Held-out scenes per path.")
_PATHS = flags.DEFINE_list("paths", ["w*2", "a*2", "s*2", "d*2", "q*2", "e*2", "r*2", "f*2", "mixed"],
                           "Paths: a key held for 2 steps (w*2: 9 frames) or 'mixed' (the held-out families).")
_OUT = flags.DEFINE_string("out", "", "Optional JSON file for the figures.")


def _timed(fn, *args):
    start = time.perf_counter()
    video = jax.block_until_ready(fn(*args))
    return video, time.perf_counter() - start


def _decode_bound_fps(config, vae, repeats: int = 30) -> float:
    """Pixel frames per second of the streaming VAE decode of one chunk (what every student step pays
    after its DiT calls), batch 1, the median of `repeats` calls after compilation."""
    from worldscape_jax.models import vae as vae_lib
    from worldscape_jax.training.stages import student
    params, vae_config = vae
    h, w = config.data.height // vae_config.spatial_factor, config.data.width // vae_config.spatial_factor
    latents = jax.random.normal(jax.random.key(0), (1, config.model.frames_per_chunk, h, w, vae_config.z_dim))
    cache = vae_lib.init_decode_cache(vae_config, 1, (h, w))
    _, cache = student.decode_chunk(vae, cache, latents[:, :1])  # past the first frame's special case
    decode = jax.jit(lambda p, c, x: student.decode_chunk((p, vae_config), c, x))
    jax.block_until_ready(decode(params, cache, latents))
    seconds = [_timed(decode, params, cache, latents)[1] for _ in range(repeats)]
    return student.pixels_per_chunk(config) / float(np.median(seconds))


def main(argv):
    del argv
    from worldscape_jax.eval.video_eval import evaluate_clip
    from worldscape_jax.inference import teacher
    from worldscape_jax.inference.heldout import heldout_clips
    from worldscape_jax.inference.loading import load_exported, load_vae
    from worldscape_jax.inference.pixels import to_unit_range
    from worldscape_jax.training.stages import student

    t_params, t_config = load_exported(_TEACHER.value, stage="teacher")
    s_params, s_config = load_exported(_STUDENT.value)
    vae = load_vae(t_config.vae.checkpoint, t_config.vae.preset)
    # params are arguments, not closure constants: XLA would fold the networks into the program
    teacher_fn = jax.jit(lambda p, v, f, c, k, r: teacher.generate(p, t_config, (v, vae[1]), f, c, k, r))
    student_fn = jax.jit(lambda p, v, f, c, k, r: student.generate(p, s_config, (v, vae[1]), f, c, k, r))
    models = {"teacher": lambda *a: teacher_fn(t_params, vae[0], *a),
              "student": lambda *a: student_fn(s_params, vae[0], *a)}
    rows = {}
    for path in _PATHS.value:
        clips = heldout_clips(t_config, _SCENES.value, trajectory=None if path == "mixed" else path)
        scores = {name: {"psnr": [], "ta": [], "off_rotation": [], "seconds": []} for name in models}
        for i, clip in enumerate(clips):
            args = (to_unit_range(clip["video"][None, :1]), jax.numpy.asarray(clip["c2w"][None]),
                    jax.numpy.asarray(clip["intrinsics"][None]), jax.random.key(i))
            for name, fn in models.items():
                if not scores[name]["seconds"] and not rows:
                    _timed(fn, *args)  # compile once
                video, seconds = _timed(fn, *args)
                video = np.asarray(np.round((np.asarray(video[0]) + 1.0) * 127.5).clip(0, 255), np.uint8)
                result = evaluate_clip(video, clip["video"], clip["c2w"], clip["intrinsics"])
                scores[name]["psnr"].append(result["psnr"])
                scores[name]["ta"].append(result["trajectory"]["accuracy"])
                scores[name]["off_rotation"].append(result["trajectory"]["rotation_residual_px"])
                scores[name]["seconds"].append(seconds)
        frames = clips[0]["video"].shape[0]
        rows[path] = {name: {"psnr": float(np.mean(s["psnr"])), "psnr_std": float(np.std(s["psnr"])),
                             "trajectory_accuracy": float(np.mean(s["ta"])),
                             "off_rotation_px": float(np.nanmedian(np.asarray(s["off_rotation"], float))),
                             "fps": float(frames / np.median(s["seconds"]))} for name, s in scores.items()}
        r = rows[path]
        print(f"{path:>6}: teacher {r['teacher']['psnr']:.2f}±{r['teacher']['psnr_std']:.2f} dB "
              f"TA {r['teacher']['trajectory_accuracy']:.2f} off-rot {r['teacher']['off_rotation_px']:.2f} px "
              f"{r['teacher']['fps']:.1f} fps | student "
              f"{r['student']['psnr']:.2f}±{r['student']['psnr_std']:.2f} dB TA {r['student']['trajectory_accuracy']:.2f} "
              f"off-rot {r['student']['off_rotation_px']:.2f} px "
              f"{r['student']['fps']:.1f} fps | speed-up {r['student']['fps'] / r['teacher']['fps']:.1f}x", flush=True)
    for name in models:
        print(f"all paths, {name}: PSNR {np.mean([r[name]['psnr'] for r in rows.values()]):.2f} dB, "
              f"TA {np.mean([r[name]['trajectory_accuracy'] for r in rows.values()]):.2f}, "
              f"{np.median([r[name]['fps'] for r in rows.values()]):.1f} fps")
    ceiling = _decode_bound_fps(s_config, vae)
    teacher_fps = np.median([r["teacher"]["fps"] for r in rows.values()])
    print(f"decode-bound ceiling: the student's streaming VAE decode alone runs at {ceiling:.0f} fps, "
          f"{ceiling / teacher_fps:.1f}x the teacher's {teacher_fps:.1f} fps: no student step that decodes its "
          f"frames can be faster here")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"scenes": _SCENES.value, "rows": rows, "decode_bound_fps": ceiling}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
