"""Backward of the Mosaic GPU flash kernel: dQ over the forward visit lists, dK/dV over the transposed ones.

Both recompute P from the saved base-2 log-sum-exp, skip every tile the lists leave out, and use the
same row intervals / key validity masks as the forward (`flash_gpu`). Training shapes are padded to
whole tiles here (a copy the backward can afford). Lowered for CUDA on CPU; not yet run on a GPU.
"""

from __future__ import annotations

import functools

import jax
import jax.experimental.pallas as pl
import jax.experimental.pallas.mosaic_gpu as plgpu
import jax.numpy as jnp
from jax import lax

from worldscape_jax.kernels import block_mask
from worldscape_jax.kernels.block_mask import Blocking
from worldscape_jax.kernels.flash_gpu import (
    _COL,
    _ROW,
    LOG2E,
    GpuBlocks,
    _broadcast_cols,
    _broadcast_rows,
    _check,
    _pad_rows,
    _padded_intervals,
    _smem_tile,
)
from worldscape_jax.kernels.mask_spec import MaskSpec


def _interval_ok(k_index, sink_end, lo, hi):
    return (k_index < sink_end) | ((k_index >= lo) & (k_index < hi))


def _dq_kernel(blocks_ref, count_ref, full_ref, iv_ref, k_ref, v_ref, *rest, has_valid, bq, bk, dtype, scale):
    """dQ of one query block: the forward's key-block loop, recomputing P from the saved base-2 LSE."""
    valid_ref, rest = (rest[0], rest[1:]) if has_valid else (None, rest)
    q_ref, do_ref, lse_ref, delta_ref, dq_ref = rest[:5]
    (q_smem, do_smem, rows_smem, iv_smem, k_smem, v_smem, valid_smem, row_bars, k_bar, v_bar, valid_bar) = rest[5:]
    b, h, qi = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("q")
    q_start = qi * bq
    q_rows = (b, pl.ds(q_start, bq), h)
    plgpu.copy_gmem_to_smem(q_ref.at[q_rows], q_smem, row_bars.at[0])
    plgpu.copy_gmem_to_smem(do_ref.at[q_rows], do_smem, row_bars.at[1])
    plgpu.copy_gmem_to_smem(lse_ref.at[b, h, pl.ds(q_start, bq)], rows_smem.at[0], row_bars.at[2])
    plgpu.copy_gmem_to_smem(delta_ref.at[b, h, pl.ds(q_start, bq)], rows_smem.at[1], row_bars.at[3])
    plgpu.copy_gmem_to_smem(iv_ref.at[:, pl.ds(q_start, bq)], iv_smem, row_bars.at[4])
    count = count_ref[b, qi]

    def issue(step, slot):
        start = pl.multiple_of(blocks_ref[b, qi, step] * bk, bk)
        plgpu.copy_gmem_to_smem(k_ref.at[b, pl.ds(start, bk), h], k_smem.at[slot], k_bar.at[slot])
        plgpu.copy_gmem_to_smem(v_ref.at[b, pl.ds(start, bk), h], v_smem.at[slot], v_bar.at[slot])
        if valid_ref is not None:
            plgpu.copy_gmem_to_smem(valid_ref.at[b, pl.ds(start, bk)], valid_smem.at[slot], valid_bar.at[slot])

    for slot in range(2):
        pl.when(slot < count)(functools.partial(issue, slot, slot))
    for i in range(5):
        plgpu.barrier_wait(row_bars.at[i])
    lse = plgpu.load(rows_smem.at[0], layout=_ROW)
    delta = plgpu.load(rows_smem.at[1], layout=_ROW)
    intervals = tuple(plgpu.load(iv_smem.at[r], layout=_ROW) for r in range(3))
    d = q_smem.shape[-1]

    def step(j, dq):
        slot = lax.rem(j, 2)
        shape = (bq, bk)
        plgpu.barrier_wait(k_bar.at[slot])
        s = pl.run_scoped(lambda acc: (plgpu.wgmma(acc, q_smem, k_smem.at[slot].T), acc[...])[1],
                          plgpu.ACC(shape, jnp.float32))
        k_index = plgpu.broadcasted_iota(jnp.int32, shape, 1, layout=plgpu.Layout.WGMMA) + blocks_ref[b, qi, j] * bk
        ok = _interval_ok(k_index, *(_broadcast_rows(x, shape) for x in intervals))
        if valid_ref is not None:
            plgpu.barrier_wait(valid_bar.at[slot])
            ok = ok & (_broadcast_cols(plgpu.load(valid_smem.at[slot], layout=_COL), shape) != 0)
        ok = ok | (full_ref[b, qi, j] != 0)
        p = jnp.exp2(jnp.where(ok, s * (scale * LOG2E), -jnp.inf) - _broadcast_rows(lse, shape))
        plgpu.barrier_wait(v_bar.at[slot])
        dp = pl.run_scoped(lambda acc: (plgpu.wgmma(acc, do_smem, v_smem.at[slot].T), acc[...])[1],
                           plgpu.ACC(shape, jnp.float32))
        ds = p * (dp - _broadcast_rows(delta, shape))
        dq = pl.run_state(lambda acc: plgpu.wgmma(acc, ds.astype(dtype), k_smem.at[slot]))(plgpu.ACC.init(dq))
        pl.when(j + 2 < count)(lambda: issue(j + 2, slot))
        return dq

    zeros = plgpu.layout_cast(jnp.zeros((bq, d), jnp.float32), plgpu.Layout.WGMMA)
    dq = lax.fori_loop(0, count, step, zeros)
    q_smem[...] = (dq * scale).astype(dtype)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(q_smem, dq_ref.at[q_rows])
    plgpu.wait_smem_to_gmem(0)


def _dkv_kernel(blocks_ref, count_ref, full_ref, iv_ref, k_ref, v_ref, *rest, has_valid, bq, bk, dtype, scale):
    """dK, dV of one key block over the query blocks that see it (the transposed visit lists)."""
    valid_ref, rest = (rest[0], rest[1:]) if has_valid else (None, rest)
    q_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref = rest[:6]
    (k_smem, v_smem, valid_smem, q_smem, do_smem, rows_smem, iv_smem, kv_bars, q_bar, do_bar, rows_bar, iv_bar) = rest[6:]
    b, h, kb = lax.axis_index("batch"), lax.axis_index("heads"), lax.axis_index("k")
    k_start = kb * bk
    k_rows = (b, pl.ds(k_start, bk), h)
    plgpu.copy_gmem_to_smem(k_ref.at[k_rows], k_smem, kv_bars.at[0])
    plgpu.copy_gmem_to_smem(v_ref.at[k_rows], v_smem, kv_bars.at[1])
    if valid_ref is not None:
        plgpu.copy_gmem_to_smem(valid_ref.at[b, pl.ds(k_start, bk)], valid_smem, kv_bars.at[2])
    count = count_ref[b, kb]

    def issue(step, slot):
        q_start = pl.multiple_of(blocks_ref[b, kb, step] * bq, bq)
        rows = (b, pl.ds(q_start, bq), h)
        plgpu.copy_gmem_to_smem(q_ref.at[rows], q_smem.at[slot], q_bar.at[slot])
        plgpu.copy_gmem_to_smem(do_ref.at[rows], do_smem.at[slot], do_bar.at[slot])
        plgpu.copy_gmem_to_smem(lse_ref.at[b, h, pl.ds(q_start, bq)], rows_smem.at[slot, 0], rows_bar.at[2 * slot])
        plgpu.copy_gmem_to_smem(delta_ref.at[b, h, pl.ds(q_start, bq)], rows_smem.at[slot, 1], rows_bar.at[2 * slot + 1])
        plgpu.copy_gmem_to_smem(iv_ref.at[:, pl.ds(q_start, bq)], iv_smem.at[slot], iv_bar.at[slot])

    for slot in range(2):
        pl.when(slot < count)(functools.partial(issue, slot, slot))
    plgpu.barrier_wait(kv_bars.at[0])
    plgpu.barrier_wait(kv_bars.at[1])
    shape = (bk, bq)
    k_index = plgpu.broadcasted_iota(jnp.int32, shape, 0, layout=plgpu.Layout.WGMMA) + k_start
    key_ok = None
    if valid_ref is not None:
        plgpu.barrier_wait(kv_bars.at[2])
        key_ok = _broadcast_rows(plgpu.load(valid_smem, layout=_ROW), shape) != 0

    def step(j, carry):
        dk, dv = carry
        slot = lax.rem(j, 2)
        plgpu.barrier_wait(q_bar.at[slot])
        s_t = pl.run_scoped(lambda acc: (plgpu.wgmma(acc, k_smem, q_smem.at[slot].T), acc[...])[1],
                            plgpu.ACC(shape, jnp.float32))
        plgpu.barrier_wait(iv_bar.at[slot])
        ok = _interval_ok(k_index, *(_broadcast_cols(plgpu.load(iv_smem.at[slot, r], layout=_COL), shape)
                                     for r in range(3)))
        if key_ok is not None:
            ok = ok & key_ok
        ok = ok | (full_ref[b, kb, j] != 0)
        plgpu.barrier_wait(rows_bar.at[2 * slot])
        plgpu.barrier_wait(rows_bar.at[2 * slot + 1])
        lse = _broadcast_cols(plgpu.load(rows_smem.at[slot, 0], layout=_COL), shape)
        delta = _broadcast_cols(plgpu.load(rows_smem.at[slot, 1], layout=_COL), shape)
        p_t = jnp.exp2(jnp.where(ok, s_t * (scale * LOG2E), -jnp.inf) - lse)
        plgpu.barrier_wait(do_bar.at[slot])
        dv = pl.run_state(lambda acc: plgpu.wgmma(acc, p_t.astype(dtype), do_smem.at[slot]))(plgpu.ACC.init(dv))
        dp_t = pl.run_scoped(lambda acc: (plgpu.wgmma(acc, v_smem, do_smem.at[slot].T), acc[...])[1],
                             plgpu.ACC(shape, jnp.float32))
        ds_t = p_t * (dp_t - delta)
        dk = pl.run_state(lambda acc: plgpu.wgmma(acc, ds_t.astype(dtype), q_smem.at[slot]))(plgpu.ACC.init(dk))
        pl.when(j + 2 < count)(lambda: issue(j + 2, slot))
        return dk, dv

    d = k_smem.shape[-1]
    zeros = plgpu.layout_cast(jnp.zeros((bk, d), jnp.float32), plgpu.Layout.WGMMA)
    dk, dv = lax.fori_loop(0, count, step, (zeros, zeros))
    k_smem[...] = (dk * scale).astype(dtype)
    v_smem[...] = dv.astype(dtype)
    plgpu.commit_smem()
    plgpu.copy_smem_to_gmem(k_smem, dk_ref.at[k_rows])
    plgpu.copy_smem_to_gmem(v_smem, dv_ref.at[k_rows])
    plgpu.wait_smem_to_gmem(0)


def backward(q, k, v, kv_valid, out, lse, d_out, mask: MaskSpec, scale: float, blocks: GpuBlocks = GpuBlocks()):
    """dQ, dK, dV from the forward residuals (lse in base 2); pads to whole tiles, which training can afford."""
    _check(q, k)
    b, nq, h, d = q.shape
    nk = k.shape[1]
    bq, bk = blocks.block_q_bwd, blocks.block_k_bwd
    blocking = Blocking(nq, nk, bq, bk)
    lists, lists_t = block_mask.forward_and_transposed_lists(mask, blocking, kv_valid, b)
    intervals = _padded_intervals(mask, blocking)
    delta = jnp.einsum("bqhd,bqhd->bhq", out.astype(jnp.float32), d_out.astype(jnp.float32))
    q_p, do_p = _pad_rows(q, 1, bq), _pad_rows(d_out.astype(q.dtype), 1, bq)
    lse_p, delta_p = _pad_rows(lse, 2, bq, jnp.inf), _pad_rows(delta, 2, bq)
    k_p, v_p = _pad_rows(k, 1, bk), _pad_rows(v, 1, bk)
    valid_p = None if kv_valid is None else [_pad_rows(kv_valid.astype(jnp.int32), 1, bk)]
    common = dict(has_valid=kv_valid is not None, bq=bq, bk=bk, dtype=q.dtype, scale=scale)
    two = lambda: plgpu.Barrier(num_barriers=2)  # noqa: E731
    params = plgpu.CompilerParams(approx_math=True)

    dq = plgpu.kernel(
        functools.partial(_dq_kernel, **common),
        out_type=jax.ShapeDtypeStruct(q_p.shape, q.dtype),
        scratch_types=[
            _smem_tile((bq, d), q.dtype), _smem_tile((bq, d), q.dtype), plgpu.SMEM((2, bq), jnp.float32),
            plgpu.SMEM((3, bq), jnp.int32), _smem_tile((2, bk, d), q.dtype), _smem_tile((2, bk, d), q.dtype),
            plgpu.SMEM((2, bk), jnp.int32), plgpu.Barrier(num_barriers=5), two(), two(), two(),
        ],
        grid=(h, q_p.shape[1] // bq, b),
        grid_names=("heads", "q", "batch"),
        compiler_params=params,
    )(lists.blocks, lists.count, lists.full, intervals, k_p, v_p, *(valid_p or []), q_p, do_p, lse_p, delta_p)

    dk, dv = plgpu.kernel(
        functools.partial(_dkv_kernel, **common),
        out_type=[jax.ShapeDtypeStruct(k_p.shape, k.dtype)] * 2,
        scratch_types=[
            _smem_tile((bk, d), q.dtype), _smem_tile((bk, d), q.dtype), plgpu.SMEM((bk,), jnp.int32),
            _smem_tile((2, bq, d), q.dtype), _smem_tile((2, bq, d), q.dtype), plgpu.SMEM((2, 2, bq), jnp.float32),
            plgpu.SMEM((2, 3, bq), jnp.int32), plgpu.Barrier(num_barriers=3), two(), two(),
            plgpu.Barrier(num_barriers=4), two(),
        ],
        grid=(h, k_p.shape[1] // bk, b),
        grid_names=("heads", "k", "batch"),
        compiler_params=params,
    )(lists_t.blocks, lists_t.count, lists_t.full, intervals, k_p, v_p, *(valid_p or []), q_p, do_p, lse_p, delta_p)
    return dq[:, :nq], dk[:, :nk], dv[:, :nk]
