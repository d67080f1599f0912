"""The DiT's self-attention KV cache as an explicit, fixed-shape pytree.

The cache holds `slots` latent frames. Each slot stores the un-rotated keys and the values of one
frame's tokens for every layer, the frame's absolute index, and whether the slot is in use. Rotary
positions are applied at attention time relative to the current chunk, so a slot can hold any
frame of an endless stream and a memory policy (the rolling window below, or MACO) decides which.
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


def rolling_slot_ids(first_frame: Int[Array, ""] | int, num_frames: int, slots: int, sink_frames: int) -> Int[Array, "f"]:
    """Slots for frames first_frame .. first_frame + num_frames - 1 under a sink + ring policy.

    Frames < sink_frames keep their own slot forever; later frames cycle through the remaining
    slots, so the cache always holds the sink plus the most recent `slots - sink_frames` frames.
    """
    if not 0 <= sink_frames < slots:
        raise ValueError(f"rolling cache: sink_frames={sink_frames} must be in [0, slots={slots})")
    frames = jnp.asarray(first_frame, jnp.int32) + jnp.arange(num_frames, dtype=jnp.int32)
    ring = slots - sink_frames
    return jnp.where(frames < sink_frames, frames, sink_frames + (frames - sink_frames) % ring)


def insert_rolling(cache: KVCache, k: Array, v: Array, first_frame: Int[Array, ""] | int, sink_frames: int) -> KVCache:
    """Inserts a chunk's frames (k, v: [L, B, F, T, H, Dh]) under the sink + ring policy."""
    num_frames = k.shape[2]
    if num_frames > cache.slots - sink_frames:
        raise ValueError(f"rolling cache: a chunk of {num_frames} frames does not fit the "
                         f"{cache.slots - sink_frames} ring slots")
    slot_ids = rolling_slot_ids(first_frame, num_frames, cache.slots, sink_frames)
    frames = jnp.asarray(first_frame, jnp.int32) + jnp.arange(num_frames, dtype=jnp.int32)
    return write_slots(cache, slot_ids, k, v, jnp.broadcast_to(frames, (k.shape[1], num_frames)))
