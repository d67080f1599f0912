"""Metrics of a long stream that leaves places and returns: which frames revisit a pose, and how well.

A stream's frame t revisits frame s when the camera at t is where it was at s (same position and
orientation, within tolerances) and at least `min_gap` frames have passed, so that s is no longer in
any short local window: what the model shows at t can only agree with s through its memory. For each
revisit pair the figures are
  revisit PSNR vs ground truth     generated[t] against the true view at t (is the world right?)
  first-visit PSNR vs ground truth generated[s] against the true view at s (the same poses, first time)
  revisit PSNR vs first visit      generated[t] against generated[s] (does the world stay the same?)
each from the mean squared error over all pairs (as `clip_psnr`). `block_psnr` is the PSNR of every
4-frame block over time (the frames of one latent frame), to see quality drift along a stream.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int, UInt8

from worldscape_jax.eval.video_eval import clip_psnr


def revisit_pairs(c2w: Float[np.ndarray, "f 4 4"], min_gap: int, position_tolerance: float = 1e-3,
                  angle_tolerance_deg: float = 0.5) -> tuple[Int[np.ndarray, "n"], Int[np.ndarray, "n"]]:
    """(later, earlier) frame indices: every frame t with an earlier frame s <= t - min_gap at the same
    pose, paired with the earliest such s (its first visit). Empty arrays when the path never returns."""
    c2w = np.asarray(c2w, np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise ValueError(f"revisit_pairs: c2w must be [frames, 4, 4], got {c2w.shape}")
    if min_gap < 1:
        raise ValueError(f"revisit_pairs: min_gap must be >= 1 frame, got {min_gap}")
    positions, rotations = c2w[:, :3, 3], c2w[:, :3, :3]
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    cos_angle = (np.einsum("sji,tji->ts", rotations, rotations) - 1.0) / 2.0   # trace(R_s^T R_t)
    angle = np.degrees(np.arccos(np.clip(cos_angle, -1.0, 1.0)))
    frames = np.arange(len(c2w))
    same = (distance.T <= position_tolerance) & (angle <= angle_tolerance_deg)
    same &= frames[None, :] <= frames[:, None] - min_gap                       # [t, s]: s early enough
    later = np.flatnonzero(same.any(axis=1))
    return later, same[later].argmax(axis=1)


def revisit_scores(generated: UInt8[np.ndarray, "f h w 3"], truth: UInt8[np.ndarray, "f h w 3"],
                   later: Int[np.ndarray, "n"], earlier: Int[np.ndarray, "n"]) -> dict:
    """The three revisit PSNRs of the module docstring (NaN when there is no pair) and the pair count."""
    if len(later) == 0:
        nan = float("nan")
        return {"revisit_frames": 0, "revisit_psnr_truth": nan, "first_visit_psnr_truth": nan,
                "revisit_psnr_first_visit": nan}
    return {"revisit_frames": int(len(later)),
            "revisit_psnr_truth": clip_psnr(generated[later], truth[later]),
            "first_visit_psnr_truth": clip_psnr(generated[earlier], truth[earlier]),
            "revisit_psnr_first_visit": clip_psnr(generated[later], generated[earlier])}


def block_psnr(generated: UInt8[np.ndarray, "f h w 3"], truth: UInt8[np.ndarray, "f h w 3"],
               block: int = 4) -> list[float]:
    """PSNR of each block of `block` frames after the given first frame (frames 1..4, 5..8, ...)."""
    if generated.shape != truth.shape or (len(truth) - 1) % block:
        raise ValueError(f"block_psnr: generated {generated.shape} and truth {truth.shape} must match and hold "
                         f"1 + {block} * blocks frames")
    return [clip_psnr(generated[i : i + block], truth[i : i + block]) for i in range(1, len(truth), block)]
