"""One attention entry point for every mask the model needs, with pluggable implementations.

The model never builds a dense mask itself: it describes the mask (`MaskSpec`) and passes key
validity as data, so that a kernel can skip whole key blocks. The `xla` implementation builds the
dense mask from that description and is the ground truth for every test; `cudnn` goes through
`jax.nn.dot_product_attention`; Pallas kernels register themselves under their own names.

Two calls cover the model:
  * `attention(q, k, v, mask, kv_valid=...)`: queries and keys from one sequence (bidirectional or
    block-causal over chunks, with an optional window and sink), used by the teacher and in training.
  * `cached_attention(q, k, v, cache_k, cache_v, cache_valid, mask)`: the queries of the current
    chunk(s) over [cache ⊕ current tokens], used in streaming and in the student's rollouts. Every
    valid cache entry is visible; among the current tokens `mask` applies (full, or block-causal so
    that several chunks at different noise levels share one call). Implementations receive the cache
    where it lies and the one description `mask.with_cache(n)`; the reference concatenates.

`MaskSpec` and the XLA reference live in `kernels/` (below this module, beside the Pallas kernels
that share them); this module registers `xla`, `cudnn` and `pallas` and dispatches by name.
"""

from __future__ import annotations

import math
from typing import Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from worldscape_jax.kernels.flash import flash_attention, flash_cached_attention
from worldscape_jax.kernels.mask_spec import MaskSpec
from worldscape_jax.kernels.reference import concat_cache, full_mask, xla_attention, xla_cached_attention

__all__ = ["MaskSpec", "attention", "cached_attention", "register_attention", "available_implementations",
           "xla_attention", "xla_cached_attention", "dot_product_attention"]

class AttentionImpl(Protocol):
    def __call__(self, q, k, v, mask: MaskSpec, kv_valid, scale: float) -> jax.Array: ...


class CachedAttentionImpl(Protocol):
    def __call__(self, q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float) -> jax.Array: ...


_IMPLS: dict[str, AttentionImpl] = {}
_CACHED_IMPLS: dict[str, CachedAttentionImpl] = {}


def register_attention(name: str, impl: AttentionImpl, cached_impl: CachedAttentionImpl | None = None):
    """Makes `impl` (and optionally its cached variant) selectable as `impl=name`."""
    _IMPLS[name] = impl
    if cached_impl is not None:
        _CACHED_IMPLS[name] = cached_impl


def available_implementations() -> tuple[str, ...]:
    return tuple(sorted(_IMPLS))


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        raise ValueError(f"unknown {what} implementation {name!r}; available: {sorted(table)}")
    return table[name]


def _check_heads(q, k, v):
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention expects [B, N, H, Dh] arrays, got q{q.shape} k{k.shape} v{v.shape}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"attention shape mismatch: q{q.shape} k{k.shape} v{v.shape}")


def attention(
    q: Float[Array, "b nq h d"],
    k: Float[Array, "b nk h d"],
    v: Float[Array, "b nk h d"],
    mask: MaskSpec = MaskSpec(),
    *,
    kv_valid: Bool[Array, "b nk"] | None = None,
    impl: str = "xla",
    scale: float | None = None,
) -> Float[Array, "b nq h d"]:
    """Softmax attention of q over (k, v) under `mask` and key validity; returns q's dtype.

    A query with no visible key returns zeros (never NaN).
    """
    _check_heads(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _lookup(_IMPLS, impl, "attention")(q, k, v, mask, kv_valid, scale)


def cached_attention(
    q: Float[Array, "b nq h d"],
    k: Float[Array, "b nq h d"],
    v: Float[Array, "b nq h d"],
    cache_k: Float[Array, "b nc h d"],
    cache_v: Float[Array, "b nc h d"],
    cache_valid: Bool[Array, "b nc"],
    mask: MaskSpec = MaskSpec(),
    *,
    impl: str = "xla",
    scale: float | None = None,
) -> Float[Array, "b nq h d"]:
    """Queries of the current tokens over [valid cache entries ⊕ the current tokens under `mask`].

    `mask` describes the current tokens only (its `cache_tokens` must be 0); every valid cache entry
    is visible to every query.
    """
    _check_heads(q, k, v)
    _check_heads(q, cache_k, cache_v)
    if cache_valid.shape != cache_k.shape[:2]:
        raise ValueError(f"cache_valid{cache_valid.shape} must be cache_k.shape[:2]={cache_k.shape[:2]}")
    if mask.cache_tokens:
        raise ValueError(f"cached_attention: mask describes the current tokens; the cache is added here, got "
                         f"cache_tokens={mask.cache_tokens}")
    if k.shape[1] != q.shape[1]:
        raise ValueError(f"cached_attention: current keys must be the queries' own tokens, got q{q.shape} k{k.shape}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    full = mask.with_cache(cache_k.shape[1])
    return _lookup(_CACHED_IMPLS, impl, "cached attention")(q, k, v, cache_k, cache_v, cache_valid, full, scale)


def dot_product_attention(q, k, v, mask: MaskSpec, kv_valid, scale: float, implementation: str | None = "cudnn"):
    """`jax.nn.dot_product_attention` with the mask made dense (cuDNN cannot skip blocks of it)."""
    b, nq, _, _ = q.shape
    needs_mask = mask.kind != "full" or kv_valid is not None
    dense = full_mask(mask, kv_valid, b, nq, k.shape[1]) if needs_mask else None
    out = jax.nn.dot_product_attention(q, k, v, mask=dense, scale=scale, implementation=implementation)
    if dense is not None:  # cuDNN and XLA disagree on rows with no visible key; we define them as 0.
        out = jnp.where(jnp.any(dense, axis=-1)[:, 0, :, None, None], out, 0)
    return out


def dot_product_cached_attention(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float,
                                 implementation="cudnn"):
    keys, values, valid = concat_cache(k, v, cache_k, cache_v, cache_valid)
    return dot_product_attention(q, keys, values, mask, valid, scale, implementation)


register_attention("xla", xla_attention, xla_cached_attention)
register_attention("cudnn", dot_product_attention, dot_product_cached_attention)
register_attention("pallas", flash_attention, flash_cached_attention)
