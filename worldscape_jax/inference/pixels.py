"""uint8 pixels <-> the models' [-1, 1] range."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, UInt8


def to_unit_range(video_uint8: UInt8[np.ndarray, "..."]) -> Float[Array, "..."]:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return jnp.asarray(video_uint8, jnp.float32) / 127.5 - 1.0


def to_uint8(video: Float[Array, "..."]) -> UInt8[np.ndarray, "..."]:
    """[-1, 1] -> uint8 [0, 255], rounded; values outside the range are clipped here, where pixels are made."""
    return np.asarray(jnp.round((video + 1.0) * 127.5)).clip(0, 255).astype(np.uint8)
