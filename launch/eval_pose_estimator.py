"""How well does the pose estimator recover camera paths? Trajectory Accuracy of the path estimated
from *ground-truth* SynthWorld renders of held-out scenes, per size and trajectory family.

  python launch/eval_pose_estimator.py --sizes 64,128 --scenes 4 --num_frames 33 --out runs/pose_eval.json

Clips are rendered as `generate_clip` renders them (anti-aliased, `--supersample` rays per pixel);
`--supersample 1` measures the point-sampled renders of RENDER_VERSION 1.

All five navigation families are scored by default (random_walk moves at key speed since PATHS_VERSION 2;
before, it squeezed a whole tour into the clip and a 9-frame clip turned ~100 degrees per frame).
"""

import json
import os
import time

import numpy as np
from absl import flags
from tqdm import tqdm

from worldscape_jax import cli
from worldscape_jax.data.synthworld.clips import DEFAULT_SUPERSAMPLE, NAVIGATION_FAMILIES, generate_clip, split_of
from worldscape_jax.eval.pose_estimation import estimate_trajectory
from worldscape_jax.eval.trajectory import trajectory_accuracy

_SIZES = flags.DEFINE_list("sizes", ["64", "128"], "Square frame sizes to render at.")
_SCENES = flags.DEFINE_integer("scenes", 4, "Number of held-out scene seeds.")
_FRAMES = flags.DEFINE_integer("num_frames", 33, "Frames per clip (1 + 4k).")
_FAMILIES = flags.DEFINE_list("families", list(NAVIGATION_FAMILIES), "Trajectory families.")
_SUPERSAMPLE = flags.DEFINE_integer("supersample", DEFAULT_SUPERSAMPLE, "Rays per pixel of the renders.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON output path.")


def main(argv):
    del argv
    seeds = [seed for seed in range(10_000) if split_of(seed) == "heldout"][:_SCENES.value]
    results = {}
    jobs = [(int(size), seed, family) for size in _SIZES.value for seed in seeds for family in _FAMILIES.value]
    for size, seed, family in tqdm(jobs, desc="render + estimate"):
        clip = generate_clip(seed, _FRAMES.value, size, size, trajectory=family, traj_seed=seed,
                             supersample=_SUPERSAMPLE.value)
        start = time.perf_counter()
        estimate = estimate_trajectory(clip["video"], clip["intrinsics"])
        seconds = time.perf_counter() - start
        score = trajectory_accuracy(estimate.c2w, clip["c2w"])
        results.setdefault(size, []).append({"seed": seed, "family": family, "accuracy": score.accuracy,
                                             "raw": score.raw, "failed_blocks": estimate.failed_blocks,
                                             "seconds": seconds})
    summary = {}
    for size, rows in results.items():
        by_family = {family: float(np.mean([r["accuracy"] for r in rows if r["family"] == family]))
                     for family in _FAMILIES.value}
        summary[size] = {"trajectory_accuracy": float(np.mean([r["accuracy"] for r in rows])),
                         "mean_raw": float(np.mean([r["raw"] for r in rows])), "by_family": by_family,
                         "clips": len(rows), "seconds_per_clip": float(np.mean([r["seconds"] for r in rows]))}
        print(f"{size}x{size}, {_FRAMES.value} frames, {_SUPERSAMPLE.value} rays/pixel: Trajectory Accuracy "
              f"{summary[size]['trajectory_accuracy']:.3f} over {len(rows)} clips (mean raw {summary[size]['mean_raw']:.3f}); by family {by_family}")
    if _OUT.value:
        os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
        with open(_OUT.value, "w") as handle:
            json.dump({"summary": summary, "clips": results, "num_frames": _FRAMES.value,
                       "supersample": _SUPERSAMPLE.value}, handle, indent=2)


if __name__ == "__main__":
    cli.run(main)
