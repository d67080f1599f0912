"""The rolling cache policy: a sink of the first frames plus a ring of the most recent ones.

Frames < `sink` keep their own slot forever; later frames cycle through the remaining slots, so the
cache always holds the sink plus the latest `slots - sink` frames (Self-Forcing's rolling KV cache
with an attention sink, research notes §1.2 and §3). The state is the `KVCache` itself.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from worldscape_jax.models.kv_cache import KVCache, init_kv_cache, write_slots
from worldscape_jax.streaming.policy import EMPTY, LOCAL, SINK, CacheLayout


def rolling_slot_ids(first_frame: Int[Array, ""] | int, num_frames: int, slots: int, sink_frames: int) -> Int[Array, "f"]:
    """Slots for frames first_frame .. first_frame + num_frames - 1 under the sink + ring policy."""
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


@dataclasses.dataclass(frozen=True)
class RollingPolicy:
    """`slots` latent frames of cache, the first `sink` of them kept forever (a `CachePolicy`)."""

    slots: int
    sink: int = 1

    def __post_init__(self):
        if not 0 <= self.sink < self.slots:
            raise ValueError(f"RollingPolicy: need 0 <= sink < slots, got sink={self.sink}, slots={self.slots}")

    def init(self, layout: CacheLayout) -> KVCache:
        return init_kv_cache(layout.num_layers, layout.batch, self.slots, layout.tokens_per_frame, layout.num_heads,
                             layout.head_dim, layout.dtype)

    def context(self, state: KVCache, query_pose: Float[Array, "b 4 4"]) -> KVCache:
        del query_pose  # the window does not depend on where the camera looks
        return state

    def update(self, state: KVCache, k: Array, v: Array, first_frame, pose: Float[Array, "b 4 4"]) -> KVCache:
        del pose
        return insert_rolling(state, k, v, first_frame, self.sink)

    def roles(self, state: KVCache) -> Int[Array, "b s"]:
        role = jnp.where(state.frame_index < self.sink, SINK, LOCAL)
        return jnp.where(state.valid, role, EMPTY).astype(jnp.int32)
