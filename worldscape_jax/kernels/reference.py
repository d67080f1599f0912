"""The XLA attention reference: dense logits and a dense mask in float32, the ground truth of every test.

It sits beside the Pallas kernels (which call it for the streaming backward pass) and below
`models/attention.py` (which registers it as implementation `xla`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Bool

from worldscape_jax.kernels.mask_spec import MaskSpec


def full_mask(mask: MaskSpec, kv_valid, b: int, nq: int, nk: int) -> Bool[Array, "b 1 nq nk"]:
    """The dense mask [B, 1, nq, nk] of `mask` and key validity."""
    allowed = mask.dense(nq, nk)[None, None]
    if kv_valid is not None:
        allowed = allowed & kv_valid[:, None, None, :]
    return jnp.broadcast_to(allowed, (b, 1, nq, nk))


def xla_attention(q, k, v, mask: MaskSpec, kv_valid, scale: float):
    """Softmax attention under `mask` and validity; a query with no visible key returns zeros."""
    allowed = full_mask(mask, kv_valid, q.shape[0], q.shape[1], k.shape[1])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
    logits = jnp.where(allowed, logits, -jnp.inf)
    m = jnp.max(logits, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    p = jnp.where(allowed, jnp.exp(logits - m), 0.0)
    denom = jnp.sum(p, axis=-1, keepdims=True)
    p = p / jnp.where(denom > 0, denom, 1.0)
    out = jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(jnp.float32))
    return out.astype(q.dtype)


def concat_cache(k, v, cache_k, cache_v, cache_valid):
    """Keys, values and validity of [cache ⊕ current tokens] (the current tokens are always valid)."""
    keys = jnp.concatenate([cache_k, k], axis=1)
    values = jnp.concatenate([cache_v, v], axis=1)
    valid = jnp.concatenate([cache_valid, jnp.ones(k.shape[:2], bool)], axis=1)
    return keys, values, valid


def xla_cached_attention(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float):
    """Queries of the current tokens over [cache ⊕ current tokens] under `mask` (its `cache_tokens` = the cache)."""
    keys, values, valid = concat_cache(k, v, cache_k, cache_v, cache_valid)
    return xla_attention(q, keys, values, mask.with_cache(cache_k.shape[1]), valid, scale)
