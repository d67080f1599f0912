"""Wan2.1's 3-D rotary position embedding, with positions given explicitly per token.

The head dimension d is split into complex pairs: d - 4*(d//6) dims for time, 2*(d//6) for height
and 2*(d//6) for width (22/21/21 pairs at d=128). Each axis has its own inverse frequencies
theta^(-2i/d_axis), and rotation acts on adjacent (interleaved) pairs (x[2j], x[2j+1]).

Positions are data, not a table index: a stream can run forever, and a cached key can be placed at
any frame. Callers pass positions relative to the current chunk to keep the angles small.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Dims of the (t, h, w) rotary sections for a head of `head_dim` (Wan's split)."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def inverse_frequencies(head_dim: int, theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-axis inverse frequencies, each of length dim_axis // 2."""
    return tuple(
        1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim) for dim in axis_dims(head_dim)
    )


def rope_angles(positions: Int[Array, "... n 3"], head_dim: int, theta: float = 10000.0) -> Float[Array, "... n p"]:
    """Rotation angle of every complex pair: [..., n, head_dim // 2] in float32."""
    pos = positions.astype(jnp.float32)
    parts = [pos[..., axis, None] * jnp.asarray(freqs, jnp.float32)
             for axis, freqs in enumerate(inverse_frequencies(head_dim, theta))]
    return jnp.concatenate(parts, axis=-1)


def apply_rope(x: Float[Array, "b n h d"], positions: Int[Array, "b n 3"] | Int[Array, "n 3"],
               theta: float = 10000.0) -> Float[Array, "b n h d"]:
    """Rotates adjacent pairs of x by the angles of `positions` (t, h, w per token); keeps x's dtype."""
    if positions.shape[-1] != 3:
        raise ValueError(f"positions must end in (t, h, w), got shape {positions.shape}")
    angles = rope_angles(positions, x.shape[-1], theta)[..., None, :]  # broadcast over heads
    if angles.ndim == 3:
        angles = angles[None]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    rotated = jnp.stack([real * cos - imag * sin, real * sin + imag * cos], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)


def grid_positions(frames: int, height: int, width: int, frame_offset: int = 0) -> Int[Array, "n 3"]:
    """(t, h, w) of every token of a [frames, height, width] grid in f, h, w order."""
    t, h, w = jnp.meshgrid(jnp.arange(frames) + frame_offset, jnp.arange(height), jnp.arange(width),
                           indexing="ij")
    return jnp.stack([t, h, w], axis=-1).reshape(-1, 3).astype(jnp.int32)
