"""One attention entry point for every mask the model needs, with pluggable implementations.

The model never builds a dense mask itself: it describes the mask (`MaskSpec`) and passes key
validity as data, so that a kernel can skip whole key blocks. The `xla` implementation builds the
dense mask from that description and is the ground truth for every test; `cudnn` goes through
`jax.nn.dot_product_attention`; Pallas kernels register themselves under their own names.

Two calls cover the model:
  * `attention(q, k, v, mask, kv_valid=...)`: queries and keys from one sequence (bidirectional or
    block-causal over chunks, with an optional window and sink), used by the teacher and in training.
  * `cached_attention(q, k, v, cache_k, cache_v, cache_valid)`: the queries of the current chunk(s)
    over [cache ⊕ current tokens], used in streaming. Current tokens see each other and every valid
    cache entry. Implementations receive the cache where it lies; the reference concatenates.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

MaskKind = Literal["full", "block_causal"]


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """Static description of which keys a query may see (hashable, so it can be a jit static arg).

    kind="full": every (valid) key.
    kind="block_causal": tokens are grouped into chunks of `chunk_size` tokens; a query in chunk c
      sees keys in chunks c' <= c, restricted, when `window` is set, to c' > c - window (its own
      chunk plus window - 1 earlier ones), and always including the first `sink` chunks.
    """

    kind: MaskKind = "full"
    chunk_size: int = 0
    window: int | None = None
    sink: int = 0

    def __post_init__(self):
        if self.kind not in ("full", "block_causal"):
            raise ValueError(f"MaskSpec.kind must be 'full' or 'block_causal', got {self.kind!r}")
        if self.kind == "block_causal" and self.chunk_size <= 0:
            raise ValueError(f"MaskSpec.chunk_size must be > 0 for block_causal, got {self.chunk_size}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"MaskSpec.window must be >= 1 chunk or None, got {self.window}")
        if self.sink < 0:
            raise ValueError(f"MaskSpec.sink must be >= 0, got {self.sink}")

    @classmethod
    def block_causal(cls, chunk_size: int, window: int | None = None, sink: int = 0) -> "MaskSpec":
        return cls("block_causal", chunk_size, window, sink)

    def allowed(self, q_index: jax.Array, k_index: jax.Array) -> jax.Array:
        """Whether query token `q_index` may see key token `k_index` (broadcasting integer arrays)."""
        if self.kind == "full":
            return jnp.ones(jnp.broadcast_shapes(q_index.shape, k_index.shape), bool)
        qc, kc = q_index // self.chunk_size, k_index // self.chunk_size
        ok = kc <= qc
        if self.window is not None:
            ok = ok & ((kc > qc - self.window) | (kc < self.sink))
        return ok

    def dense(self, num_q: int, num_k: int) -> Bool[Array, "nq nk"]:
        """The dense boolean mask; only the reference implementation materialises it."""
        return self.allowed(jnp.arange(num_q)[:, None], jnp.arange(num_k)[None, :])


class AttentionImpl(Protocol):
    def __call__(self, q, k, v, mask: MaskSpec, kv_valid, scale: float) -> jax.Array: ...


class CachedAttentionImpl(Protocol):
    def __call__(self, q, k, v, cache_k, cache_v, cache_valid, scale: float) -> jax.Array: ...


_IMPLS: dict[str, AttentionImpl] = {}
_CACHED_IMPLS: dict[str, CachedAttentionImpl] = {}


def register_attention(name: str, impl: AttentionImpl, cached_impl: CachedAttentionImpl | None = None):
    """Makes `impl` (and optionally its cached variant) selectable as `impl=name`."""
    _IMPLS[name] = impl
    if cached_impl is not None:
        _CACHED_IMPLS[name] = cached_impl


def available_implementations() -> tuple[str, ...]:
    _import_optional_impls()
    return tuple(sorted(_IMPLS))


def _import_optional_impls():
    """Kernels register on import; import them lazily so the core has no hard dependency."""
    try:
        import worldscape_jax.kernels  # noqa: F401  (registers "pallas" when present)
    except ImportError:
        pass


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        _import_optional_impls()
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
    *,
    impl: str = "xla",
    scale: float | None = None,
) -> Float[Array, "b nq h d"]:
    """Queries of the current tokens over [valid cache entries ⊕ the current tokens themselves]."""
    _check_heads(q, k, v)
    _check_heads(q, cache_k, cache_v)
    if cache_valid.shape != cache_k.shape[:2]:
        raise ValueError(f"cache_valid{cache_valid.shape} must be cache_k.shape[:2]={cache_k.shape[:2]}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _lookup(_CACHED_IMPLS, impl, "cached attention")(q, k, v, cache_k, cache_v, cache_valid, scale)


def _full_mask(mask: MaskSpec, kv_valid, b: int, nq: int, nk: int) -> Bool[Array, "b 1 nq nk"]:
    allowed = mask.dense(nq, nk)[None, None]
    if kv_valid is not None:
        allowed = allowed & kv_valid[:, None, None, :]
    return jnp.broadcast_to(allowed, (b, 1, nq, nk))


def xla_attention(q, k, v, mask: MaskSpec, kv_valid, scale: float):
    """Reference: dense logits and dense mask in float32."""
    allowed = _full_mask(mask, kv_valid, q.shape[0], q.shape[1], k.shape[1])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
    logits = jnp.where(allowed, logits, -jnp.inf)
    m = jnp.max(logits, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    p = jnp.where(allowed, jnp.exp(logits - m), 0.0)
    denom = jnp.sum(p, axis=-1, keepdims=True)
    p = p / jnp.where(denom > 0, denom, 1.0)
    out = jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(jnp.float32))
    return out.astype(q.dtype)


def _concat_cache(q, k, v, cache_k, cache_v, cache_valid):
    keys = jnp.concatenate([cache_k, k], axis=1)
    values = jnp.concatenate([cache_v, v], axis=1)
    valid = jnp.concatenate([cache_valid, jnp.ones(k.shape[:2], bool)], axis=1)
    return keys, values, valid


def xla_cached_attention(q, k, v, cache_k, cache_v, cache_valid, scale: float):
    keys, values, valid = _concat_cache(q, k, v, cache_k, cache_v, cache_valid)
    return xla_attention(q, keys, values, MaskSpec(), valid, scale)


def dot_product_attention(q, k, v, mask: MaskSpec, kv_valid, scale: float, implementation: str | None = "cudnn"):
    """`jax.nn.dot_product_attention` with the mask made dense (cuDNN cannot skip blocks of it)."""
    b, nq, _, _ = q.shape
    needs_mask = mask.kind != "full" or kv_valid is not None
    dense = _full_mask(mask, kv_valid, b, nq, k.shape[1]) if needs_mask else None
    out = jax.nn.dot_product_attention(q, k, v, mask=dense, scale=scale, implementation=implementation)
    if dense is not None:  # cuDNN and XLA disagree on rows with no visible key; we define them as 0.
        out = jnp.where(jnp.any(dense, axis=-1)[:, 0, :, None, None], out, 0)
    return out


def dot_product_cached_attention(q, k, v, cache_k, cache_v, cache_valid, scale: float, implementation="cudnn"):
    keys, values, valid = _concat_cache(q, k, v, cache_k, cache_v, cache_valid)
    return dot_product_attention(q, keys, values, MaskSpec(), valid, scale, implementation)


register_attention("xla", xla_attention, xla_cached_attention)
register_attention("cudnn", dot_product_attention, dot_product_cached_attention)
