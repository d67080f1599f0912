"""Writes docs/synthworld_contact_sheet.png: SynthWorld clips as rows of RGB, depth and pose video.

Each clip shows `--frames_shown` evenly spaced frames: the RGB row, the depth row (inverse depth,
colour-mapped per clip, near = bright yellow, far = dark blue) and, for manipulation clips, the
pose-video row. Rows are labelled with the scene seed, kind and trajectory.

    JAX_PLATFORMS=cpu python launch/synthworld_sheet.py [--size 64] [--out docs/synthworld_contact_sheet.png]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from worldscape_jax.data.synthworld import generate_clip

# (scene_seed, kind, trajectory, traj_seed): indoor and outdoor scenes, every family, an action string.
CLIPS = (
    (0, "navigation", "forward", 0),
    (1, "navigation", "pan", 1),
    (2, "navigation", "orbit", 2),
    (3, "navigation", "random_walk", 3),
    (4, "navigation", "there_and_back", 4),
    (5, "navigation", "w*4,q*4,wd*4,r*4", 5),
    (6, "manipulation", None, 0),
    (9, "manipulation", None, 1),
)
# Stops of a dark-blue -> purple -> orange -> yellow colour map for depth.
DEPTH_STOPS = np.asarray([[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]], np.float64)


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """uint8 RGB of inverse depth, normalised to the clip's 2nd-98th percentiles."""
    inverse = 1.0 / np.maximum(depth, 1e-3)
    low, high = np.percentile(inverse, [2, 98])
    x = np.clip((inverse - low) / max(high - low, 1e-6), 0, 1) * (len(DEPTH_STOPS) - 1)
    i = np.minimum(np.floor(x).astype(int), len(DEPTH_STOPS) - 2)
    frac = (x - i)[..., None]
    return np.round(DEPTH_STOPS[i] * (1 - frac) + DEPTH_STOPS[i + 1] * frac).astype(np.uint8)


def clip_rows(clip: dict[str, np.ndarray], picks: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(row name, [H, n*W, 3] strip) for the RGB, depth and (if present) pose rows of a clip."""
    rows = [("rgb", clip["video"][picks]), ("depth", colorize_depth(clip["depth"])[picks])]
    if "pose_video" in clip:
        rows.append(("pose", clip["pose_video"][picks]))
    return [(name, np.concatenate(list(frames), axis=1)) for name, frames in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="clip height and width in pixels")
    parser.add_argument("--num_frames", type=int, default=49, help="frames per clip (action-string clips have 65)")
    parser.add_argument("--frames_shown", type=int, default=8, help="evenly spaced frames shown per row")
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the sheet")
    parser.add_argument("--out", default="docs/synthworld_contact_sheet.png", help="where the PNG is written")
    args = parser.parse_args()
    picks = np.linspace(0, args.num_frames - 1, args.frames_shown).round().astype(int)
    label_width = 150
    strips = []
    for seed, kind, trajectory, traj_seed in tqdm(CLIPS, desc="rendering clips"):
        frames = 1 + 16 * 4 if trajectory and "*" in trajectory else args.num_frames
        clip = generate_clip(seed, frames, args.size, args.size, kind=kind, trajectory=trajectory, traj_seed=traj_seed)
        shown = picks if frames == args.num_frames else np.linspace(0, frames - 1, args.frames_shown).round().astype(int)
        title = f"seed {seed} {kind[:5]}\n{trajectory or 'default'}"
        for name, strip in clip_rows(clip, shown):
            strip = np.repeat(np.repeat(strip, args.scale, 0), args.scale, 1)
            canvas = Image.new("RGB", (label_width + strip.shape[1], strip.shape[0] + 2), (255, 255, 255))
            canvas.paste(Image.fromarray(strip), (label_width, 0))
            ImageDraw.Draw(canvas).text((6, 6), f"{title}\n[{name}]", fill=(0, 0, 0))
            strips.append(np.asarray(canvas))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    Image.fromarray(np.concatenate(strips, axis=0)).save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(CLIPS)} clips, frames {list(picks)} of {args.num_frames}")


if __name__ == "__main__":
    main()
