"""`MaskSpec`: the static description of which keys each query may see, shared by the model and the kernels.

It lives at the bottom of the attention stack (it imports nothing from the project), so that
`models/attention.py`, the XLA reference and every Pallas kernel read the same definition.

One description covers the three masks the model needs:
  * bidirectional (`MaskSpec()`): the teacher;
  * block-causal over chunks of `chunk_size` tokens, with an optional window and sink (in chunks):
    the student trained on a whole sequence;
  * either of the above over a KV cache (`with_cache(n)`): the first `cache_tokens` keys are the
    cache, visible to every query (subject to key validity); the block structure applies to the
    keys after them, which are the current call's own tokens, indexed like the queries. So several
    chunks at different noise levels in one call (the rolling window) attend block-causally to each
    other and fully to the cache.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp

MaskKind = Literal["full", "block_causal"]


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """Which keys a query may see (hashable, so it can be a jit static argument).

    kind="full": every (valid) key.
    kind="block_causal": the current tokens are grouped into chunks of `chunk_size` tokens; a query in
      chunk c sees current keys in chunks c' <= c, restricted, when `window` is set, to c' > c - window
      (its own chunk plus window - 1 earlier ones), and always including the first `sink` chunks.
    cache_tokens: keys [0, cache_tokens) are a cache every query sees; key cache_tokens + i is current
      token i (the query index space).
    """

    kind: MaskKind = "full"
    chunk_size: int = 0
    window: int | None = None
    sink: int = 0
    cache_tokens: int = 0

    def __post_init__(self):
        if self.kind not in ("full", "block_causal"):
            raise ValueError(f"MaskSpec.kind must be 'full' or 'block_causal', got {self.kind!r}")
        if self.kind == "block_causal" and self.chunk_size <= 0:
            raise ValueError(f"MaskSpec.chunk_size must be > 0 for block_causal, got {self.chunk_size}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"MaskSpec.window must be >= 1 chunk or None, got {self.window}")
        if self.sink < 0:
            raise ValueError(f"MaskSpec.sink must be >= 0, got {self.sink}")
        if self.cache_tokens < 0:
            raise ValueError(f"MaskSpec.cache_tokens must be >= 0, got {self.cache_tokens}")

    @classmethod
    def block_causal(cls, chunk_size: int, window: int | None = None, sink: int = 0) -> "MaskSpec":
        return cls("block_causal", chunk_size, window, sink)

    def with_cache(self, cache_tokens: int) -> "MaskSpec":
        """The same structure over `cache_tokens` leading cache keys."""
        return dataclasses.replace(self, cache_tokens=cache_tokens)

    def current(self) -> "MaskSpec":
        """The structure among the current tokens alone (no cache)."""
        return dataclasses.replace(self, cache_tokens=0)

    def allowed(self, q_index, k_index):
        """Whether query `q_index` may see key `k_index` (broadcasting integer arrays).

        Written with operators only, so it evaluates on NumPy (host-side tiling), jax.numpy and
        in-kernel index arrays alike.
        """
        in_cache = k_index < self.cache_tokens
        current = k_index - self.cache_tokens
        if self.kind == "full":
            return (q_index >= 0) & (current >= 0) | in_cache
        qc, kc = q_index // self.chunk_size, current // self.chunk_size
        ok = (kc <= qc) & (current >= 0)
        if self.window is not None:
            ok = ok & ((kc > qc - self.window) | (kc < self.sink))
        return ok | in_cache

    def dense(self, num_q: int, num_k: int):
        """The dense boolean mask [num_q, num_k]; only reference implementations materialise it."""
        return self.allowed(jnp.arange(num_q)[:, None], jnp.arange(num_k)[None, :])
