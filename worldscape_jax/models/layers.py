"""Small Linen building blocks shared by the DiT, the camera encoder and the adapters.

Every parameter carries logical axis names (see `training/sharding.py` for the mapping to mesh
axes); models never name mesh axes.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Dtype = jnp.dtype | str


def logical(init, names: Sequence[str | None]):
    """An initializer whose parameter is annotated with logical axis `names`."""
    return nn.with_logical_partitioning(init, tuple(names))


def Linear(features: int, axes: tuple[str | None, str | None] = ("embed", "mlp"), *, dtype: Dtype = jnp.float32,
           name: str | None = None, use_bias: bool = True,
           kernel_init: nn.initializers.Initializer = nn.initializers.xavier_uniform()) -> nn.Dense:
    """A float32-parameter dense layer whose kernel (in, out) and bias (out) carry logical axis names."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=logical(kernel_init, axes),
        bias_init=logical(nn.initializers.zeros_init(), axes[1:]),
        name=name,
    )


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis with a learned scale (Wan's q/k norm: full width)."""

    eps: float = 1e-6
    axis_name: str = "norm"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", logical(nn.initializers.ones_init(), (self.axis_name,)), (x.shape[-1],),
                           jnp.float32)
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (normed * scale).astype(x.dtype)


def LayerNorm(eps: float = 1e-6, affine: bool = False, *, name: str | None = None) -> nn.LayerNorm:
    """LayerNorm computed and returned in float32, optionally affine (Wan's norm1/norm2 are not, norm3 is)."""
    return nn.LayerNorm(
        epsilon=eps,
        use_scale=affine,
        use_bias=affine,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        scale_init=logical(nn.initializers.ones_init(), ("norm",)),
        bias_init=logical(nn.initializers.zeros_init(), ("norm",)),
        name=name,
    )


def sinusoidal_embedding(t: Float[Array, "..."], dim: int) -> Float[Array, "... dim"]:
    """Wan's timestep embedding: [cos(t*w), sin(t*w)] with w_i = 10000^(-i/(dim/2)), t raw in [0, 1000]."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def modulate(x: Array, shift: Array, scale: Array) -> Array:
    """adaLN modulation x * (1 + scale) + shift, in float32."""
    return x.astype(jnp.float32) * (1.0 + scale) + shift


def gelu_tanh(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=True)
