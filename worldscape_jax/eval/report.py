"""Pictures and text of an evaluation: generated-vs-ground-truth contact sheet, top-down camera paths,
a markdown table. Inputs are the dicts of `video_eval`; nothing here computes a metric."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image, ImageDraw

from worldscape_jax.training.media import contact_sheet

PATH_COLOURS = {"ground truth": (40, 160, 40), "from generated": (220, 40, 40), "from ground-truth video": (40, 80, 220)}


def paired_contact_sheet(generated: np.ndarray, reference: np.ndarray, max_columns: int = 8) -> np.ndarray:
    """Rows alternate ground truth / generated for every clip, frames evenly spaced over time."""
    if generated.shape != reference.shape or generated.ndim != 5:
        raise ValueError(f"paired_contact_sheet: generated {generated.shape} and reference {reference.shape} "
                         "must both be [N, F, H, W, 3]")
    rows = np.stack([reference, generated], axis=1).reshape(-1, *reference.shape[1:])
    return contact_sheet(rows, max_columns=max_columns)


def side_by_side(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[N, F, H, W, 3] pairs -> frames [F, N*H, 2*W + 2, 3]: generated left, ground truth right."""
    gap = np.full(generated.shape[:3] + (2, 3), 255, np.uint8)
    rows = np.concatenate([generated, gap, truth], axis=3)
    return np.concatenate(list(rows), axis=1)


def top_down_paths(paths: dict[str, np.ndarray], size: int = 256, margin: int = 16) -> np.ndarray:
    """Camera centres seen from above (x right, z up the image) for each named c2w [F, 4, 4] path."""
    centres = {name: np.asarray(c2w)[:, :3, 3][:, [0, 2]] for name, c2w in paths.items()}
    stacked = np.concatenate(list(centres.values()))
    low, high = stacked.min(0), stacked.max(0)
    span = max(float(np.max(high - low)), 1e-6)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for name, xz in centres.items():
        pixels = margin + (xz - low) / span * (size - 2 * margin)
        points = [(float(x), float(size - y)) for x, y in pixels]
        colour = PATH_COLOURS.get(name, (0, 0, 0))
        draw.line(points, fill=colour, width=2)
        draw.ellipse([points[0][0] - 3, points[0][1] - 3, points[0][0] + 3, points[0][1] + 3], outline=colour)
    for row, name in enumerate(centres):
        draw.text((4, 4 + 12 * row), name, fill=PATH_COLOURS.get(name, (0, 0, 0)))
    return np.asarray(image)


def markdown_report(summary: dict, clips: list[dict], images: dict[str, str]) -> str:
    """A human-readable report: the set summary, one row per clip, and the pictures."""
    lines = ["# Evaluation report", "", "## Summary", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"
              for key, value in summary.items()]
    lines += ["", "## Clips", "",
              "| clip | PSNR | first-frame PSNR | SSIM | Mem. Sym. (gen / GT) | Traj. Acc. (raw) | GT-video Traj. Acc. (raw) "
              "| off-rotation px (gen / GT) |",
              "|---|---|---|---|---|---|---|---|"]
    for index, clip in enumerate(clips):
        gen, gt = clip["trajectory"], clip["trajectory_ground_truth_video"]
        lines.append(f"| {clip.get('name', index)} | {clip['psnr']:.2f} | {clip['psnr_first_frame_baseline']:.2f} | "
                     f"{clip['ssim']:.3f} | {clip['memory_symmetry']:.3f} / {clip['memory_symmetry_ground_truth']:.3f} | "
                     f"{gen['accuracy']:.0f} ({gen['raw']:.3f}) | {gt['accuracy']:.0f} ({gt['raw']:.3f}) | "
                     f"{gen['rotation_residual_px']:.3f} / {gt['rotation_residual_px']:.3f} |")
    lines += [""] + [f"![{title}]({os.path.basename(path)})" for title, path in images.items()]
    lines += ["", "Metrics: Memory Symmetry and Trajectory Accuracy follow the WorldScape paper's appendix A.1.1 "
              "(see worldscape_jax/eval/symmetry.py and trajectory.py for the readings of its gaps); camera paths "
              "are estimated from pixels by worldscape_jax/eval/pose_estimation.py. Off-rotation px: median distance "
              "of the tracked points from the best pure rotation of each 4-frame block (0.03-0.1 px for a rendered "
              "64x64 turn); a generated pan that wobbles reads as travel there.", ""]
    return "\n".join(lines)


def json_ready(value):
    """Drops numpy arrays (plot data), turns numpy scalars into floats and NaN and infinities into null (strict
    JSON has neither; an infinite PSNR is a frame equal to its reference, as a stream's given first frame)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items() if not isinstance(item, np.ndarray)}
    if isinstance(value, list):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_report(out_dir: str, summary: dict, clips: list[dict], generated: np.ndarray, reference: np.ndarray,
                 c2w: np.ndarray) -> dict[str, str]:
    """Writes metrics.json, report.md, contact_sheet.png and paths.png into `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("metrics.json", "report.md", "contact_sheet.png", "paths.png")}
    Image.fromarray(paired_contact_sheet(generated, reference)).save(paths["contact_sheet.png"])
    plots = [top_down_paths({"ground truth": c2w[i], "from generated": clip["trajectory"]["aligned_c2w"],
                             "from ground-truth video": clip["trajectory_ground_truth_video"]["aligned_c2w"]})
             for i, clip in enumerate(clips)]
    Image.fromarray(np.concatenate(plots, axis=1)).save(paths["paths.png"])
    with open(paths["metrics.json"], "w") as handle:
        json.dump({"summary": json_ready(summary), "clips": json_ready(clips)}, handle, indent=2)
    images = {"ground truth (odd rows) vs generated (even rows)": paths["contact_sheet.png"],
              "camera paths seen from above, one panel per clip": paths["paths.png"]}
    with open(paths["report.md"], "w") as handle:
        handle.write(markdown_report(summary, clips, images))
    return paths
