"""The revisit benchmark (the paper's Table 5, extended): a student streamed along SynthWorld revisit paths.

For one held-out scene and one revisit path (streaming/revisit.py: `revisit_path`, `render_clip`), the
student starts from the ground-truth first frame and streams the path's cameras chunk by chunk
(`student_stream.make_stream`: the student's own conditioning) under a cache policy (MACO, the rolling cache with the same number of context
chunks, a full cache). Each chunk is represented by its last pixel frame (its pose is the chunk's).

A chunk *revisits* when an earlier chunk, at least `min_gap` chunks before it (out of a rolling
window's reach), was generated at nearly the same camera: d = |t_i - t_j| + |v_i - v_j| (MACO's FPS
distance with lambda = 1: positions and unit view directions) below `max_distance`; its first visit is
the nearest such chunk. Per stream (`revisit_metrics`): PSNR and SSIM of the revisit frames against
ground truth, PSNR of each revisit frame against its first visit's generated frame, Memory Symmetry
(appendix A.1.1, over the whole pixel video; it assumes a mirrored path, so the ground truth's own
score is reported beside it), Trajectory Accuracy (appendix A.1.1, from the pose estimator on the
generated video) and pixel frames per second of the stream (compilation excluded).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt8

from worldscape_jax.eval.image_metrics import psnr, ssim
from worldscape_jax.eval.pose_estimation import estimate_trajectory
from worldscape_jax.eval.symmetry import memory_symmetry
from worldscape_jax.eval.trajectory import trajectory_accuracy
from worldscape_jax.inference.pixels import to_uint8

METRICS = ("psnr_gt", "ssim_gt", "psnr_first_visit", "memory_symmetry", "trajectory_accuracy", "trajectory_raw",
           "fps")


def stream_along(streams: dict, first_frame: Float[Array, "1 1 h w 3"], intrinsics: Float[np.ndarray, "4"],
                 c2w: Float[np.ndarray, "n 4 4"], frames_per_chunk: int, seed: int = 0
                 ) -> dict[str, tuple[UInt8[np.ndarray, "n h w 3"], float]]:
    """{name: (the streamed video [1 + p (chunks - 1) frames] as uint8, its pixel frames per second)}.

    streams: {name: (init, step)} of `student_stream.make_stream`, one per cache policy. Frame 0 is the
    given first frame; chunk i follows c2w[p (i - 1) + 1 .. p i] (conditioned from the reference frame
    at p (i - 1)), with the i-th key of split(key(seed), chunks - 1), as `student.rollout` splits its
    key. The streams take turns chunk by chunk, so that on a shared machine each sees the same load;
    the first chunk's step (which compiles) is left out of the frame rate; every step is waited for.
    """
    p = frames_per_chunk
    if (len(c2w) - 1) % p or len(c2w) < 1 + 2 * p:
        raise ValueError(f"stream_along: c2w must hold 1 + {p} k poses with k >= 2, got {len(c2w)}")
    poses = jnp.asarray(c2w, jnp.float32)[None]
    per_frame = jnp.broadcast_to(jnp.asarray(intrinsics, jnp.float32), (1, len(c2w), 4))
    num_chunks = (len(c2w) - 1) // p
    keys = jax.random.split(jax.random.key(seed), num_chunks)
    states = {name: init(first_frame, poses[:, :1 + p], per_frame[:, :1 + p]) for name, (init, _) in streams.items()}
    frames = {name: [to_uint8(first_frame[0])] for name in streams}
    seconds = dict.fromkeys(streams, 0.0)
    for i in range(num_chunks):
        window = slice(p * i, p * (i + 1) + 1)
        for name, (_, step) in streams.items():
            tic = time.perf_counter()
            states[name], chunk = step(states[name], poses[:, window], per_frame[:, window], keys[i])
            chunk = jax.block_until_ready(chunk)
            seconds[name] += (time.perf_counter() - tic) if i else 0.0
            frames[name].append(to_uint8(chunk[0]))
    return {name: (np.concatenate(frames[name]), (len(c2w) - 1 - p) / seconds[name]) for name in streams}


def revisit_pairs(chunk_c2w: Float[np.ndarray, "n 4 4"], min_gap: int, max_distance: float = 0.3
                  ) -> list[tuple[int, int]]:
    """(i, j) for every chunk i whose nearest chunk j <= i - min_gap lies within max_distance (module doc)."""
    position, view = chunk_c2w[:, :3, 3], chunk_c2w[:, :3, 2]
    distance = (np.linalg.norm(position[:, None] - position[None], axis=-1)
                + np.linalg.norm(view[:, None] - view[None], axis=-1))
    pairs = []
    for i in range(min_gap, len(chunk_c2w)):
        j = int(np.argmin(distance[i, :i - min_gap + 1]))
        if distance[i, j] < max_distance:
            pairs.append((i, j))
    return pairs


def revisit_metrics(generated: UInt8[np.ndarray, "f h w 3"], reference: UInt8[np.ndarray, "f h w 3"],
                    c2w: Float[np.ndarray, "f 4 4"], intrinsics: Float[np.ndarray, "4"],
                    pairs: list[tuple[int, int]], frames_per_chunk: int) -> dict[str, float]:
    """The per-stream figures of the module docstring (fps excluded); NaN revisit figures without pairs."""
    if generated.shape != reference.shape or len(c2w) != len(generated):
        raise ValueError(f"revisit_metrics: generated {generated.shape}, reference {reference.shape} and c2w "
                         f"{np.shape(c2w)} must agree in frames")
    trajectory = trajectory_accuracy(estimate_trajectory(generated, intrinsics).c2w, c2w)
    result = {"memory_symmetry": memory_symmetry(generated), "trajectory_accuracy": trajectory.accuracy,
              "trajectory_raw": trajectory.raw}
    if not pairs:
        return {**result, "psnr_gt": np.nan, "ssim_gt": np.nan, "psnr_first_visit": np.nan}
    revisit = np.asarray([i for i, _ in pairs]) * frames_per_chunk
    first = np.asarray([j for _, j in pairs]) * frames_per_chunk
    mean = lambda x: float(np.mean(np.asarray(x, np.float64)))
    return {**result, "psnr_gt": mean(psnr(generated[revisit], reference[revisit], 255.0)),
            "ssim_gt": mean(ssim(generated[revisit], reference[revisit], 255.0)),
            "psnr_first_visit": mean(np.minimum(psnr(generated[revisit], generated[first], 255.0), 100.0))}


def summarise(rows: list[dict], key: str, metrics=METRICS) -> dict[str, dict[str, tuple[float, float]]]:
    """{group: {metric: (mean, std over streams)}}, grouping rows by row[key]; NaNs (no revisit) skipped."""
    groups: dict[str, dict[str, tuple[float, float]]] = {}
    for name in dict.fromkeys(row[key] for row in rows):
        values = {m: np.asarray([row[m] for row in rows if row[key] == name], np.float64) for m in metrics}
        groups[name] = {m: (float(np.nanmean(v)), float(np.nanstd(v))) if np.any(np.isfinite(v)) else (np.nan, np.nan)
                        for m, v in values.items()}
    return groups
