"""Which (query block, key block) tiles an attention kernel must visit, and how to mask inside them.

Every kernel in this package (portable Pallas, Mosaic GPU) shares this file, so the block-skipping
logic that the CPU tests check in interpret mode is the logic the GPU kernel runs.

Two ideas:
  * Every mask a `MaskSpec` describes is, for each query row, the union of two key intervals:
    a sink `[0, sink_end)` and a main range `[lo, hi)` (with `sink_end <= lo`). `key_intervals`
    computes them on the host (NumPy) once per static shape; kernels test `k < sink_end or lo <= k < hi`
    element-wise, so they never evaluate the chunk arithmetic themselves.
  * Tiles are classified as empty (0), partial (1) or full (2). The static part comes from the
    intervals; key validity (`kv_valid`, the streaming cache's validity) is data, so its per-block
    count is computed on device and combined. Each query block then gets a compacted, ascending
    list of the key blocks to visit plus a count: the kernel loops over exactly those, so a fully
    masked key block is never loaded. The transposed lists (per key block, the query blocks) drive
    the dK/dV backward kernel.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

from worldscape_jax.kernels.mask_spec import MaskSpec

EMPTY, PARTIAL, FULL = 0, 1, 2


def key_intervals(mask: MaskSpec, num_q: int, num_k: int) -> np.ndarray:
    """int32 [3, num_q]: per query row (sink_end, lo, hi); the row sees keys k < sink_end or lo <= k < hi.

    Equivalent to `mask.allowed` restricted to keys < num_k (checked by the tests). A cache prefix of
    P keys shifts the current tokens' intervals by P and joins the sink: [0, P + sink_end).
    """
    q = np.arange(num_q, dtype=np.int64)
    prefix = mask.cache_tokens
    num_current = num_k - prefix
    if num_current < 0:
        raise ValueError(f"block_mask.key_intervals: {num_k} keys cannot hold a cache of {prefix} tokens")
    if mask.kind == "full":
        sink_end = lo = np.zeros(num_q, np.int64)
        hi = np.full(num_q, num_current)
    else:
        c = mask.chunk_size
        q_chunk = q // c
        hi = np.minimum((q_chunk + 1) * c, num_current)
        lo = np.zeros(num_q, np.int64) if mask.window is None else np.minimum(np.maximum(q_chunk - mask.window + 1, 0) * c, hi)
        sink_end = np.minimum(mask.sink * c, lo)
    return np.stack([sink_end + prefix, lo + prefix, hi + prefix]).astype(np.int32)


def visible_keys_per_row(mask: MaskSpec, kv_valid, batch: int, num_q: int, num_k: int) -> jax.Array:
    """int32 [batch, num_q]: how many valid keys each query sees (intervals + a prefix sum: O(nq + nk))."""
    sink_end, lo, hi = (jnp.asarray(x) for x in key_intervals(mask, num_q, num_k))
    valid = jnp.ones((batch, num_k), jnp.int32) if kv_valid is None else kv_valid.astype(jnp.int32)
    prefix = jnp.pad(jnp.cumsum(valid, axis=1), ((0, 0), (1, 0)))
    return prefix[:, sink_end] + prefix[:, hi] - prefix[:, lo]


def element_mask(intervals_rows, k_index) -> jax.Array:
    """Broadcasting element mask from per-row intervals ([3, rows] or three [rows, 1] arrays) and key indices."""
    sink_end, lo, hi = intervals_rows
    return (k_index < sink_end) | ((k_index >= lo) & (k_index < hi))


@dataclasses.dataclass(frozen=True)
class Blocking:
    """Static tile sizes for one call; blocks never exceed the sequence (so shifted windows stay in bounds)."""

    num_q: int
    num_k: int
    block_q: int
    block_k: int

    @property
    def num_q_blocks(self) -> int:
        return -(-self.num_q // self.block_q)

    @property
    def num_k_blocks(self) -> int:
        return -(-self.num_k // self.block_k)


def make_blocking(num_q: int, num_k: int, block_q: int, block_k: int) -> Blocking:
    """Clamps the requested tile sizes to the sequence lengths."""
    if num_q < 1 or num_k < 1:
        raise ValueError(f"block_mask.make_blocking: need num_q >= 1 and num_k >= 1, got {num_q}, {num_k}")
    if block_q < 1 or block_k < 1:
        raise ValueError(f"block_mask.make_blocking: block sizes must be >= 1, got {block_q}, {block_k}")
    return Blocking(num_q, num_k, min(block_q, num_q), min(block_k, num_k))


@functools.lru_cache(maxsize=64)
def static_block_classes(mask: MaskSpec, blocking: Blocking) -> np.ndarray:
    """int8 [num_q_blocks, num_k_blocks] in {EMPTY, PARTIAL, FULL} from the mask alone (keys < num_k)."""
    bq, bk = blocking.block_q, blocking.block_k
    sink_end, lo, hi = key_intervals(mask, blocking.num_q, blocking.num_k).astype(np.int64)
    k_start = np.arange(blocking.num_k_blocks, dtype=np.int64) * bk
    k_end = np.minimum(k_start + bk, blocking.num_k)

    def overlap(a, b):  # rows x key blocks
        return np.clip(np.minimum(b[:, None], k_end[None]) - np.maximum(a[:, None], k_start[None]), 0, None)

    allowed_per_row = overlap(np.zeros_like(sink_end), sink_end) + overlap(lo, hi)
    q_block_of_row = np.arange(blocking.num_q) // bq
    allowed = np.zeros((blocking.num_q_blocks, blocking.num_k_blocks), np.int64)
    np.add.at(allowed, q_block_of_row, allowed_per_row)
    rows = np.bincount(q_block_of_row, minlength=blocking.num_q_blocks)
    area = rows[:, None] * bk  # a key block shorter than bk (the tail) is never full: its padding is masked
    classes = np.where(allowed == 0, EMPTY, np.where(allowed == area, FULL, PARTIAL))
    return classes.astype(np.int8)


def valid_key_block_classes(kv_valid: Bool[Array, "b nk"], blocking: Blocking) -> Int[Array, "b nkb"]:
    """Per batch and key block: EMPTY if no key is valid, FULL if all block_k keys are, else PARTIAL."""
    pad = blocking.num_k_blocks * blocking.block_k - blocking.num_k
    padded = jnp.pad(kv_valid, ((0, 0), (0, pad)))
    counts = padded.reshape(kv_valid.shape[0], blocking.num_k_blocks, blocking.block_k).sum(-1)
    return jnp.where(counts == 0, EMPTY, jnp.where(counts == blocking.block_k, FULL, PARTIAL)).astype(jnp.int8)


def combine_classes(static: np.ndarray, dynamic: Int[Array, "b nkb"] | None, batch: int) -> Int[Array, "b nqb nkb"]:
    """Tile classes for each batch element: empty if either part is empty, full only if both are full."""
    static = jnp.asarray(static)[None]
    if dynamic is None:
        return jnp.broadcast_to(static, (batch, *static.shape[1:]))
    dynamic = dynamic[:, None, :]
    empty = (static == EMPTY) | (dynamic == EMPTY)
    full = (static == FULL) & (dynamic == FULL)
    return jnp.where(empty, EMPTY, jnp.where(full, FULL, PARTIAL)).astype(jnp.int8)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VisitLists:
    """For each (batch, row block): the column blocks to visit in ascending order, their count, and fullness.

    Entries at or past `count` repeat the last visited block (or 0), so a prefetching kernel that runs
    one step ahead fetches nothing new.
    """

    blocks: Int[Array, "b rows cols"]
    count: Int[Array, "b rows"]
    full: Int[Array, "b rows cols"]


def visit_lists(classes: Int[Array, "b rows cols"]) -> VisitLists:
    """Compacts non-empty tiles of each row to the front, keeping their column order."""
    nonempty = classes != EMPTY
    order = jnp.argsort(~nonempty, axis=-1, stable=True).astype(jnp.int32)
    count = nonempty.sum(-1).astype(jnp.int32)
    slot = jnp.arange(classes.shape[-1], dtype=jnp.int32)
    last = jnp.take_along_axis(order, jnp.maximum(count - 1, 0)[..., None], axis=-1)
    blocks = jnp.where(slot < count[..., None], order, jnp.where(count[..., None] > 0, last, 0))
    full = (jnp.take_along_axis(classes, blocks, axis=-1) == FULL) & (slot < count[..., None])
    return VisitLists(blocks, count, full.astype(jnp.int32))


def forward_and_transposed_lists(
    mask: MaskSpec, blocking: Blocking, kv_valid: Bool[Array, "b nk"] | None, batch: int
) -> tuple[VisitLists, VisitLists]:
    """Key blocks per query block (forward, dQ) and query blocks per key block (dK, dV)."""
    dynamic = None if kv_valid is None else valid_key_block_classes(kv_valid, blocking)
    classes = combine_classes(static_block_classes(mask, blocking), dynamic, batch)
    return visit_lists(classes), visit_lists(jnp.swapaxes(classes, 1, 2))


def shifted_start(block_index, block: int, length: int):
    """Start of block `block_index` moved left so that [start, start + block) stays inside [0, length).

    Kernels load the tail block this way instead of padding (and copying) K/V in HBM; rows before
    `block_index * block` then belong to the previous block and are masked out by index.
    """
    return jnp.minimum(block_index * block, length - block)
