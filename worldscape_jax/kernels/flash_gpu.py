"""Block-sparse flash attention for Hopper GPUs on the Pallas Mosaic GPU backend (`plgpu`).

The same visit lists as the portable kernel (`block_mask`) drive the KV loop: each CTA (one head,
one query block, one batch element) reads its list and count from GMEM and TMA-loads only the
listed key blocks, double-buffered, so a fully masked block is never fetched. Scores go through
`wgmma` into float32, the online softmax runs in base 2 in float32, and partial tiles are masked
from the per-row key intervals, the key validity and the shifted-window overlap; full tiles skip
the element mask. The backward kernels (dQ over the forward lists, dK/dV over the transposed lists)
are in `flash_gpu_bwd`. The streaming forward walks two sources, the cache where it lies (its own lists
and validity) and the current chunk.

Constraints: bf16/f16 inputs, head_dim a multiple of 64, block sizes multiples of 64. Key blocks
start at multiples of block_k (TMA needs provably aligned tiles), so the tail block reads past the
end of K/V; TMA fills those rows with zeros and the row intervals (hi <= num_k) mask them. Written and lowered (to the Mosaic
GPU MLIR custom call) without a GPU; its speed and correctness on a real H100 are still to be
measured (`launch/bench_attention.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import jax.experimental.pallas as pl
import jax.experimental.pallas.mosaic_gpu as plgpu
from jax import lax

from worldscape_jax.kernels import block_mask
from worldscape_jax.kernels.block_mask import Blocking, VisitLists
from worldscape_jax.kernels.mask_spec import MaskSpec

LOG2E = math.log2(math.e)
_M_INIT = -1e30  # finite running max: masked scores are -inf, exp2(-inf - m) = 0, and alpha never sees inf - inf
_ROW = plgpu.Layout.WGMMA.reduce(1)
_COL = plgpu.Layout.WGMMA.reduce(0)


@dataclasses.dataclass(frozen=True)
class GpuBlocks:
    """Tile sizes: forward and dQ use (block_q, block_k); dK/dV use (block_q_bwd, block_k_bwd)."""

    block_q: int = 64
    block_k: int = 128
    block_q_bwd: int = 64
    block_k_bwd: int = 64


def _check(q, k):
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError(f"kernels/flash_gpu.py: q/k/v must be bfloat16 or float16, got {q.dtype}")
    if q.shape[-1] % 64:
        raise ValueError(f"kernels/flash_gpu.py: head_dim must be a multiple of 64, got {q.shape[-1]}")


def _smem_tile(shape, dtype):
    """SMEM buffer laid out for TMA + wgmma (8x64 tiles, 128-byte swizzle for 16-bit types)."""
    return plgpu.SMEM(shape, dtype, transforms=(plgpu.TilingTransform((8, 64)), plgpu.SwizzleTransform(128)))


def _pad_rows(x, axis: int, multiple: int, value=0):
    pad = -x.shape[axis] % multiple
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths, constant_values=value)


@dataclasses.dataclass(frozen=True)
class _Source:
    """One key source inside the forward kernel: static tiling and whether validity is streamed in."""

    blocking: Blocking
    has_valid: bool


def _broadcast_rows(x, shape):
    return lax.broadcast_in_dim(x, shape, [0])


def _broadcast_cols(x, shape):
    return lax.broadcast_in_dim(x, shape, [1])


def _tile_ok(intervals_rows, k_start, valid_cols, shape):
    """Element mask of a (rows, keys) tile in WGMMA layout: row key intervals (all below num_k), validity."""
    sink_end, lo, hi = (_broadcast_rows(x, shape) for x in intervals_rows)
    k_index = plgpu.broadcasted_iota(jnp.int32, shape, 1, layout=plgpu.Layout.WGMMA) + k_start
    ok = (k_index < sink_end) | ((k_index >= lo) & (k_index < hi))
    if valid_cols is not None:
        ok = ok & (_broadcast_cols(valid_cols, shape) != 0)
    return ok


def _forward_kernel(*refs, sources, bq, dtype, scale):
    """One CTA: a query block of one head and batch element over the visit lists of every source."""
    n_in = sum(7 if s.has_valid else 6 for s in sources)
    inputs, (q_ref, o_ref, lse_ref), scratch = refs[:n_in], refs[n_in : n_in + 3], refs[n_in + 3 :]
    (q_smem, iv_smem, kv_smems, valid_smem, lse_smem, q_bar, iv_bar, k_bar, v_bar, valid_bar) = scratch
    b, h, qi = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("q")
    q_start = qi * bq
    plgpu.copy_gmem_to_smem(q_ref.at[b, pl.ds(q_start, bq), h], q_smem, q_bar)
    d = q_smem.shape[-1]
    carry = (
        plgpu.layout_cast(jnp.full((bq,), _M_INIT, jnp.float32), _ROW),
        plgpu.layout_cast(jnp.zeros((bq,), jnp.float32), _ROW),
        plgpu.layout_cast(jnp.zeros((bq, d), jnp.float32), plgpu.Layout.WGMMA),
    )
    plgpu.barrier_wait(q_bar)
    i = 0
    for src in sources:
        n = 7 if src.has_valid else 6
        blocks_ref, count_ref, full_ref, iv_ref, k_ref, v_ref, *valid = inputs[i : i + n]
        i += n
        k_smem, v_smem = kv_smems
        plgpu.copy_gmem_to_smem(iv_ref.at[:, pl.ds(q_start, bq)], iv_smem, iv_bar)
        plgpu.barrier_wait(iv_bar)
        intervals_rows = tuple(plgpu.load(iv_smem.at[r], layout=_ROW) for r in range(3))
        carry = _source_loop(
            carry, src, b, h, qi, q_smem, intervals_rows, blocks_ref, count_ref, full_ref, k_ref, v_ref,
            valid[0] if valid else None, k_smem, v_smem, valid_smem, k_bar, v_bar, valid_bar, dtype, scale,
        )
    m, l, acc = carry
    safe_l = jnp.where(l > 0, l, 1.0)
    out = jnp.where(_broadcast_rows(l > 0, acc.shape), acc / _broadcast_rows(safe_l, acc.shape), 0.0)
    q_smem[...] = out.astype(dtype)
    lse_smem[...] = jnp.where(l > 0, m + jnp.log2(safe_l), jnp.inf)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(q_smem, o_ref.at[b, pl.ds(q_start, bq), h])
    plgpu.copy_smem_to_gmem(lse_smem, lse_ref.at[b, h, pl.ds(q_start, bq)])
    plgpu.wait_smem_to_gmem(0)


def _source_loop(carry, src, b, h, qi, q_smem, intervals_rows, blocks_ref, count_ref, full_ref, k_ref, v_ref,
                 valid_ref, k_smem, v_smem, valid_smem, k_bar, v_bar, valid_bar, dtype, scale):
    """Online softmax over one source's visited key blocks, TMA double-buffered in two SMEM slots."""
    bk, bq = src.blocking.block_k, q_smem.shape[0]
    count = count_ref[b, qi]

    def issue(step, slot):
        start = pl.multiple_of(blocks_ref[b, qi, step] * bk, bk)  # the tail block reads past nk: TMA fills zeros
        rows = (b, pl.ds(start, bk), h)
        plgpu.copy_gmem_to_smem(k_ref.at[rows], k_smem.at[slot], k_bar.at[slot])
        plgpu.copy_gmem_to_smem(v_ref.at[rows], v_smem.at[slot], v_bar.at[slot])
        if valid_ref is not None:
            plgpu.copy_gmem_to_smem(valid_ref.at[b, pl.ds(start, bk)], valid_smem.at[slot], valid_bar.at[slot])

    for slot in range(2):
        @pl.when(slot < count)
        def _prologue(slot=slot):
            issue(slot, slot)

    def step(j, carry):
        m, l, acc = carry
        slot = lax.rem(j, 2)
        start = blocks_ref[b, qi, j] * bk
        plgpu.barrier_wait(k_bar.at[slot])

        def qk(acc_ref):
            plgpu.wgmma(acc_ref, q_smem, k_smem.at[slot].T)
            return acc_ref[...]

        s = pl.run_scoped(qk, plgpu.ACC((bq, bk), jnp.float32)) * (scale * LOG2E)
        valid_cols = None
        if valid_ref is not None:
            plgpu.barrier_wait(valid_bar.at[slot])
            valid_cols = plgpu.load(valid_smem.at[slot], layout=_COL)
        ok = _tile_ok(intervals_rows, start, valid_cols, s.shape) | (full_ref[b, qi, j] != 0)
        s = jnp.where(ok, s, -jnp.inf)
        m_new = jnp.maximum(m, s.max(axis=1))
        p = jnp.exp2(s - _broadcast_rows(m_new, s.shape))
        alpha = jnp.exp2(m - m_new)
        acc = acc * _broadcast_rows(alpha, acc.shape)
        l = l * alpha + p.sum(axis=1)
        plgpu.barrier_wait(v_bar.at[slot])

        def pv(acc_ref):
            plgpu.wgmma(acc_ref, p.astype(dtype), v_smem.at[slot])

        acc = pl.run_state(pv)(plgpu.ACC.init(acc))

        @pl.when(j + 2 < count)
        def _prefetch():
            issue(j + 2, slot)

        return m_new, l, acc

    return lax.fori_loop(0, count, step, carry)


def _source_inputs(k, v, valid, intervals, lists: VisitLists):
    """Kernel operands of one source. TMA into 8-row tiles needs the key count to be a multiple of 8:
    true at the model's shapes (1560 tokens per frame); otherwise K/V get a few padding rows
    (masked, since every interval ends at or before num_k)."""
    k, v = _pad_rows(k, 1, 8), _pad_rows(v, 1, 8)
    inputs = [lists.blocks, lists.count, lists.full, intervals, k, v]
    if valid is not None:
        inputs.append(_pad_rows(valid.astype(jnp.int32), 1, 8))
    return inputs


def _run_forward(q, sources, source_inputs, scale, bq):
    """Shared launcher: pads queries to whole blocks, returns (out, lse base 2 [b, h, nq])."""
    b, nq, h, d = q.shape
    q_padded = _pad_rows(q, 1, bq)
    nq_pad = q_padded.shape[1]
    dtype = q.dtype
    block_k = sources[0].blocking.block_k
    if any(s.blocking.block_k != block_k for s in sources):
        raise ValueError("kernels/flash_gpu.py: every key source must use the same block_k")
    two = lambda: plgpu.Barrier(num_barriers=2)  # noqa: E731
    # Sources run one after another, so they share the double-buffered K/V slots and their barriers.
    scratch = [
        _smem_tile((bq, d), dtype),
        plgpu.SMEM((3, bq), jnp.int32),
        (_smem_tile((2, block_k, d), dtype), _smem_tile((2, block_k, d), dtype)),
        plgpu.SMEM((2, block_k), jnp.int32),
        plgpu.SMEM((bq,), jnp.float32),
        plgpu.Barrier(),
        plgpu.Barrier(),
        two(),
        two(),
        two(),
    ]
    out, lse = plgpu.kernel(
        functools.partial(_forward_kernel, sources=tuple(sources), bq=bq, dtype=dtype, scale=scale),
        out_type=[
            jax.ShapeDtypeStruct(q_padded.shape, dtype),
            jax.ShapeDtypeStruct((b, h, nq_pad), jnp.float32),
        ],
        scratch_types=scratch,
        grid=(h, nq_pad // bq, b),
        grid_names=("heads", "q", "batch"),
        compiler_params=plgpu.CompilerParams(approx_math=True),
    )(*[x for group in source_inputs for x in group], q_padded)
    return out[:, :nq], lse[:, :, :nq]


def _padded_intervals(mask: MaskSpec, blocking: Blocking):
    iv = block_mask.key_intervals(mask, blocking.num_q, blocking.num_k)
    return _pad_rows(jnp.asarray(iv), 1, blocking.block_q)


def forward(q, k, v, kv_valid, mask: MaskSpec, scale: float, blocks: GpuBlocks = GpuBlocks()):
    """Forward of one-sequence attention: (out, lse in base 2) for the custom VJP."""
    _check(q, k)
    blocking = Blocking(q.shape[1], k.shape[1], blocks.block_q, blocks.block_k)  # not clamped: TMA zero-fills
    lists, _ = block_mask.forward_and_transposed_lists(mask, blocking, kv_valid, q.shape[0])
    src = _Source(blocking, kv_valid is not None)
    inputs = _source_inputs(k, v, kv_valid, _padded_intervals(mask, blocking), lists)
    return _run_forward(q, [src], [inputs], scale, blocks.block_q)


def cached_forward(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float,
                   blocks: GpuBlocks = GpuBlocks()):
    """Streaming forward: the cache where it lies (validity-gated lists), then the current tokens under
    the mask's current part (`flash.cached_source_masks`)."""
    _check(q, k)
    sources, inputs = [], []
    parts = (MaskSpec(), mask.current())
    for (keys, values, valid), part in zip(((cache_k, cache_v, cache_valid), (k, v, None)), parts):
        blocking = Blocking(q.shape[1], keys.shape[1], blocks.block_q, blocks.block_k)
        lists, _ = block_mask.forward_and_transposed_lists(part, blocking, valid, q.shape[0])
        sources.append(_Source(blocking, valid is not None))
        inputs.append(_source_inputs(keys, values, valid, _padded_intervals(part, blocking), lists))
    return _run_forward(q, sources, inputs, scale, blocks.block_q)[0]

