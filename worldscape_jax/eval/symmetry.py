"""Memory Symmetry: does a video that returns along a mirrored path show the same scene again?

Definition (WorldScape paper, appendix A.1.1 "Metrics", Memory Symmetry). For a video of n frames
F_0..F_{n-1} and each symmetric pair (F_i, F_{n-1-i}):

    s_i = exp(-k1 * max(MSE_i - a, 0) ** k2),   k1 = 0.0001, k2 = 1.1, a = 1000,

    Memory Symmetry = sum_{i=0}^{m-1} s_i w_i / sum_{i=0}^{m-1} w_i,
    w_i = exp(alpha * |i - (n-1)/2|),  m = floor(n/2),  alpha = 0.1,

so the first/last pair weighs most. Two readings the appendix leaves to us, and what we do:
- Pixel units. The offset a = 1000 only makes sense for MSE on 8-bit intensities (0..255): a
  1000 MSE is an RMS error of ~32 grey levels. Frames in any other range are rescaled to 0..255
  first (`max_value` gives their range).
- Which pairs. The prose says i in [0, floor(n/2)], the formula sums i = 0..m-1 with m = floor(n/2).
  We follow the formula: the pairs (i, n-1-i) for i < floor(n/2), which never pairs the middle frame
  of an odd-length video with itself.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from worldscape_jax.eval.image_metrics import mse

K1 = 0.0001
K2 = 1.1
OFFSET_A = 1000.0
ALPHA = 0.1
EIGHT_BIT_MAX = 255.0


def pair_similarities(video: Float[Array, "f h w c"], max_value: float = EIGHT_BIT_MAX) -> Float[Array, "m"]:
    """s_i of appendix A.1.1 for the pairs (F_i, F_{n-1-i}), i = 0..floor(n/2)-1 (MSE on a 0..255 scale)."""
    if video.ndim != 4:
        raise ValueError(f"memory symmetry: video must be [F, H, W, C], got shape {video.shape}")
    num_frames = video.shape[0]
    if num_frames < 2:
        raise ValueError(f"memory symmetry needs at least 2 frames, got {num_frames}")
    if max_value <= 0:
        raise ValueError(f"memory symmetry: max_value must be positive, got {max_value}")
    pairs = num_frames // 2
    frames = jnp.asarray(video, jnp.float32) * (EIGHT_BIT_MAX / max_value)
    first_half = frames[:pairs]
    mirrored = frames[::-1][:pairs]  # F_{n-1-i} for i = 0..m-1
    pair_mse = mse(first_half, mirrored)
    return jnp.exp(-K1 * jnp.maximum(pair_mse - OFFSET_A, 0.0) ** K2)


def pair_weights(num_frames: int) -> np.ndarray:
    """w_i = exp(alpha |i - (n-1)/2|) for i = 0..floor(n/2)-1 (appendix A.1.1)."""
    i = np.arange(num_frames // 2, dtype=np.float64)
    return np.exp(ALPHA * np.abs(i - (num_frames - 1) / 2.0))


def memory_symmetry(video: Float[Array, "f h w c"], max_value: float = EIGHT_BIT_MAX) -> float:
    """Memory Symmetry of one video (appendix A.1.1), in [0, 1]; 1 when every mirrored pair has MSE <= 1000.

    `max_value` is the range of the input pixels (255 for uint8, 1.0 for [0, 1] floats).
    """
    similarities = np.asarray(pair_similarities(video, max_value), np.float64)
    weights = pair_weights(video.shape[0])
    return float(np.sum(similarities * weights) / np.sum(weights))
