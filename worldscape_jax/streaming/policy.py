"""The cache-policy protocol: which earlier frames the current chunk attends to.

The stream step (and the Self-Forcing rollout in training) is written against this protocol, so the
rolling window (`rolling.RollingPolicy`) and MACO (`maco.py`) are interchangeable:

    state = policy.init(layout)                          # a flax.struct pytree with fixed shapes
    cache = policy.context(state, query_pose)            # models.kv_cache.KVCache the chunk attends to
    state = policy.update(state, k, v, first_frame, pose)  # insert the clean chunk (t = 0 refresh pass)
    roles = policy.roles(state)                          # [B, S] int: what each slot holds (for figures)

k, v: the chunk's un-rotated keys and values [L, B, F, T, H, Dh]; first_frame: its absolute latent
index (a traced int); pose: the chunk's camera, the c2w of its last pixel frame [B, 4, 4]. Policies are
frozen dataclasses (hashable: they are a static part of the jitted step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from worldscape_jax.models.kv_cache import KVCache

EMPTY, SINK, LOCAL, MEMORY = 0, 1, 2, 3  # slot roles


@dataclasses.dataclass(frozen=True)
class CacheLayout:
    """The shape of one latent frame's keys and values across the DiT, which a policy allocates slots of."""

    num_layers: int
    batch: int
    tokens_per_frame: int
    num_heads: int
    head_dim: int
    dtype: Any = jnp.float32


class CachePolicy(Protocol):
    def init(self, layout: CacheLayout) -> Any: ...

    def context(self, state: Any, query_pose: Float[Array, "b 4 4"]) -> KVCache: ...

    def update(self, state: Any, k: Array, v: Array, first_frame: Int[Array, ""], pose: Float[Array, "b 4 4"]) -> Any: ...

    def roles(self, state: Any) -> Int[Array, "b s"]: ...
