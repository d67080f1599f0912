"""TPU attention through JAX's splash attention with a computable block-causal window + sink mask.

Splash classifies (block_q, block_kv) tiles on the host and never DMAs empty ones; our mask is a
`_ComputableMask` (evaluated from indices, never materialised as T x T) built from the same
`MaskSpec`. Key validity becomes splash segment ids (valid keys 1, invalid and padding 0), which
splash combines with the mask per element. Rows with no visible key are set to zero afterwards
(splash leaves them undefined), counted cheaply from per-row intervals and a prefix sum of validity.
Sequences are padded to whole 128-token blocks. The streaming case concatenates [cache ⊕ chunk]
(splash takes a single key sequence); on GPU and CPU the kernels read the cache in place.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

from worldscape_jax.kernels.block_mask import visible_keys_per_row
from worldscape_jax.kernels.mask_spec import MaskSpec
from worldscape_jax.kernels.reference import concat_cache

BLOCK = 128


class SpecMask(splash_mask._ComputableMask):
    """`MaskSpec` as a splash computable mask: works on NumPy (host tiling) and in-kernel index arrays."""

    def __init__(self, spec: MaskSpec, shape: tuple[int, int]):
        self.spec = spec

        super().__init__(shape=shape, mask_function=spec.allowed)

    def __eq__(self, other):
        return isinstance(other, SpecMask) and (self.spec, self.shape) == (other.spec, other.shape)

    def __hash__(self):
        return hash((type(self), self.spec, self.shape))


@functools.lru_cache(maxsize=32)
def _kernel(spec: MaskSpec, num_q: int, num_k: int, heads: int, interpret: bool):
    mask = splash_mask.MultiHeadMask([SpecMask(spec, (num_q, num_k))] * heads)
    sizes = splash.BlockSizes(
        block_q=BLOCK, block_kv=BLOCK, block_kv_compute=BLOCK,
        block_q_dkv=BLOCK, block_kv_dkv=BLOCK, block_kv_dkv_compute=BLOCK,
        block_q_dq=BLOCK, block_kv_dq=BLOCK,
    )
    return splash.make_splash_mha_single_device(mask, block_sizes=sizes, interpret=interpret)


def _pad_to_block(x, axis):
    pad = -x.shape[axis] % BLOCK
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def splash_attention(q, k, v, mask: MaskSpec, kv_valid, scale: float, *, interpret: bool = False):
    """The `attention()` contract on splash: [b, n, h, d] in and out."""
    b, nq, h, _ = q.shape
    nk = k.shape[1]
    valid = jnp.ones((b, nk), bool) if kv_valid is None else kv_valid
    kernel = _kernel(mask, nq + (-nq % BLOCK), nk + (-nk % BLOCK), h, interpret)
    to_heads = lambda x: _pad_to_block(jnp.swapaxes(x, 1, 2), 2)  # noqa: E731  [b, h, n, d]
    q_ids = jnp.ones((b, nq + (-nq % BLOCK)), jnp.int32)
    kv_ids = _pad_to_block(valid.astype(jnp.int32), 1)
    segments = splash.SegmentIds(q=q_ids, kv=kv_ids)
    out = jax.vmap(kernel)(to_heads(q * jnp.asarray(scale, q.dtype)), to_heads(k), to_heads(v), segment_ids=segments)
    out = jnp.swapaxes(out[:, :, :nq], 1, 2)
    seen = visible_keys_per_row(mask, kv_valid, b, nq, nk) > 0
    return jnp.where(seen[:, :, None, None], out, 0).astype(q.dtype)


def splash_cached_attention(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float, *,
                            interpret: bool = False):
    """Streaming on TPU: splash over the concatenation [cache ⊕ current] with the validity as segment ids."""
    keys, values, valid = concat_cache(k, v, cache_k, cache_v, cache_valid)
    return splash_attention(q, keys, values, mask.with_cache(cache_k.shape[1]), valid, scale, interpret=interpret)


def dense_reference_mask(spec: MaskSpec, num_q: int, num_k: int) -> np.ndarray:
    """The host-side mask splash would tile (for tests and debugging)."""
    return np.asarray(SpecMask(spec, (num_q, num_k))[:, :])
