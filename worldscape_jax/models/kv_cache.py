"""The DiT's self-attention KV cache as an explicit, fixed-shape pytree.

The cache holds `slots` latent frames. Each slot stores the un-rotated keys and the values of one
frame's tokens for every layer, the frame's absolute index, and whether the slot is in use. Rotary
positions are applied at attention time relative to the current chunk, so a slot can hold any
frame of an endless stream. The type lives with the model that reads it; which frames it holds is
decided above, by a cache policy (`streaming/rolling.py`, MACO).
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


@flax.struct.dataclass
class KVCache:
    k: Float[Array, "l b s t h d"]
    v: Float[Array, "l b s t h d"]
    frame_index: Int[Array, "b s"]
    valid: Bool[Array, "b s"]

    @property
    def slots(self) -> int:
        return self.k.shape[2]

    @property
    def tokens_per_frame(self) -> int:
        return self.k.shape[3]


def init_kv_cache(num_layers: int, batch: int, slots: int, tokens_per_frame: int, num_heads: int,
                  head_dim: int, dtype=jnp.float32) -> KVCache:
    """An empty cache (every slot invalid)."""
    shape = (num_layers, batch, slots, tokens_per_frame, num_heads, head_dim)
    return KVCache(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                   frame_index=jnp.zeros((batch, slots), jnp.int32), valid=jnp.zeros((batch, slots), bool))


def write_slots(cache: KVCache, slot_ids: Int[Array, "f"], k: Array, v: Array, frame_index: Int[Array, "b f"]) -> KVCache:
    """Writes frames f (k, v: [L, B, F, T, H, Dh]) into `slot_ids` (same slots for the whole batch)."""
    return KVCache(
        k=cache.k.at[:, :, slot_ids].set(k.astype(cache.k.dtype)),
        v=cache.v.at[:, :, slot_ids].set(v.astype(cache.v.dtype)),
        frame_index=cache.frame_index.at[:, slot_ids].set(frame_index.astype(jnp.int32)),
        valid=cache.valid.at[:, slot_ids].set(True),
    )
