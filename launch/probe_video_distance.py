"""Which long-stream metric (eval/long_stream.py: SSIM, detail ratio, `--video_distance`) sees what PSNR misses?

  python launch/probe_video_distance.py --scenes 4   # 8 streams, 8 min (BENCHMARKS.md)

Renders the ground truth of the long-stream paths (held-out scenes x the `keys` and `holds` families, no
model involved) and scores known corruptions of it the way `launch/long_stream.py --video_distance`
scores a student, one window per quarter and stream, against the clean truth's windows at other offsets:
  truth (other windows)   the floor: real videos of the same scenes, KVD ~ 0
  blur                    Gaussian blur of std `--blur` pixels (a blurry student)
  speckle                 i.i.d. coloured noise on every pixel (a student that dissolves into texture),
                          its std that of the blur's error on the same stream, so both have one PSNR
  blurred speckle         the blur, then the noise at the same std: the layout kept, the detail replaced
  still first frame       nothing moves
For each: PSNR and SSIM against the truth (eval/long_stream.block_ssim), the detail ratio
(eval/long_stream.block_detail_ratio) and KVD / FVD with KVD's leave-one-stream-out error. The blur and the
noise have the same PSNR: PSNR cannot rank them, and the question is which of the others does, and how.
"""

from __future__ import annotations

import cv2
import numpy as np
from absl import app, flags
from tqdm import tqdm

from worldscape_jax import cli

_SCENES = flags.DEFINE_integer("scenes", 8, "Held-out scenes per path family.", lower_bound=2)
_STEPS = flags.DEFINE_integer("steps", 100, "Latent steps per path (4 frames each).", lower_bound=16)
_BLUR = flags.DEFINE_float("blur", 1.5, "Gaussian blur std in pixels.")
_SIZE = flags.DEFINE_integer("size", 64, "Frame height and width.")


def gaussian_blur(video: np.ndarray, sigma: float) -> np.ndarray:
    """Each frame of float [F, H, W, C] blurred by a Gaussian of std `sigma` px over +-3 std, edges replicated."""
    side = 2 * max(1, int(np.ceil(3 * sigma))) + 1
    return np.stack([cv2.GaussianBlur(frame, (side, side), sigma, borderType=cv2.BORDER_REPLICATE)
                     for frame in video])


def corruptions(video: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The probe's versions of one ground-truth stream (uint8 [F, H, W, 3]), frame 0 left as given."""
    as_float = video.astype(np.float64)
    blurred = gaussian_blur(as_float, _BLUR.value)
    matched_std = np.sqrt(np.mean((blurred[1:] - as_float[1:]) ** 2))
    noise = rng.normal(0.0, matched_std, video.shape)
    out = {"blur": blurred, "speckle": as_float + noise, "blurred speckle": blurred + noise,
           "still first frame": np.broadcast_to(as_float[:1], video.shape)}
    out = {name: np.clip(np.round(v), 0, 255).astype(np.uint8) for name, v in out.items()}
    for v in out.values():
        v[0] = video[0]
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from worldscape_jax.data.synthworld.clips import split_seeds
    from worldscape_jax.eval import fvd
    from worldscape_jax.eval import long_stream
    from worldscape_jax.eval.revisit import block_psnr
    from worldscape_jax.play.keys import script_to_chunks
    from worldscape_jax.play.scene_start import synthworld_start

    extractor = fvd.I3DFeatures()
    frames = 1 + 4 * _STEPS.value
    # Two windows per quarter: the truth's first window is the reference set, its second the "truth" entry.
    starts = long_stream.quarter_windows(frames, 2)
    rng = np.random.default_rng(0)
    reference, scores = [], {}  # scores[version]: one dict per stream
    jobs = [(f, int(s)) for f in ("keys", "holds") for s in split_seeds("heldout", _SCENES.value)]
    for family, seed in tqdm(jobs, desc="probe streams", unit="stream"):
        scene = synthworld_start(seed, _SIZE.value, _SIZE.value)
        chunks = script_to_chunks(long_stream.long_path(family, _STEPS.value, seed), 1)
        truth = long_stream.truth_of(scene, chunks)["video"]

        def features(video, which):
            clips = np.stack([video[q[which]:q[which] + long_stream.VIDEO_WINDOW] for q in starts])
            return extractor(clips.astype(np.float32) / 255.0)[:, None]  # [4 quarters, 1 window, D]

        reference.append(features(truth, 0))
        for name, video in {"truth (other windows)": truth, **corruptions(truth, rng)}.items():
            scores.setdefault(name, []).append({
                "features": features(video, 1), "psnr": np.mean(block_psnr(video, truth)),
                "ssim": np.mean(long_stream.block_ssim(video, truth)),
                "detail": np.mean(long_stream.block_detail_ratio(video, truth))})
    print(f"{len(jobs)} held-out ground-truth streams of {frames} frames, one 16-frame window per quarter and "
          f"stream scored against the truth's window at another offset of the same quarter:")
    for name, streams in scores.items():
        mean = {key: np.mean([stream[key] for stream in streams]) for key in ("psnr", "ssim", "detail")}
        row = long_stream.video_distances([stream["features"] for stream in streams], reference)
        kvd = " ".join(f"{m:.3f}±{e:.3f}" for m, e in zip(row["kvd_quarters"], row["kvd_quarters_se"]))
        print(f"{name:>22}: PSNR {mean['psnr']:6.2f} dB | SSIM {mean['ssim']:.3f} | detail ratio {mean['detail']:.2f} | "
              f"KVD q1..q4 {kvd} | mean KVD {np.mean(row['kvd_quarters']):.3f} | "
              f"FVD mean {np.mean(row['fvd_quarters']):.0f}")

if __name__ == "__main__":
    cli.run(main)
