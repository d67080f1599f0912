"""Portable Pallas flash attention (forward, dQ, dK/dV) over block visit lists; runs in interpret mode on CPU.

This is the kernel the CPU tests exercise: it loops over exactly the key blocks that
`block_mask.visit_lists` names (so fully masked blocks are never loaded), applies the per-row key
intervals and key validity element-wise inside partial blocks, and keeps the online softmax in
float32. It also writes, per (batch, head, query block), how often it visited each key block, so
tests can check the skipping against a brute-force count.

Keys may come from several sources (`KeySource`): one for ordinary attention, two for streaming
(the cache where it lies, then the current chunk), each with its own visit lists and validity. Tail
blocks are loaded as windows shifted back into bounds (`block_mask.shifted_start`) and the rows that
belong to the previous block are masked out, so no K/V or cache buffer is padded or copied.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from worldscape_jax.kernels.block_mask import Blocking, VisitLists, element_mask, shifted_start

_NEG_INF = float("-inf")


@dataclasses.dataclass(frozen=True)
class KeySource:
    """Static description of one key/value source: its tiling, and whether a validity vector comes with it."""

    blocking: Blocking
    has_valid: bool


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SourceArrays:
    """Device arrays of one source: K, V [b, nk, h, d], validity [b, nk] (or None), row intervals, visit lists."""

    k: jax.Array
    v: jax.Array
    valid: jax.Array | None
    intervals: jax.Array  # int32 [3, num_q_blocks * block_q]
    lists: VisitLists


def padded_intervals(intervals: np.ndarray, blocking: Blocking) -> jax.Array:
    """Pads per-row intervals to whole query blocks (padded rows see nothing)."""
    pad = blocking.num_q_blocks * blocking.block_q - intervals.shape[1]
    return jnp.asarray(np.pad(intervals, ((0, 0), (0, pad))))


def _dot(a, b, contract):
    return jax.lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=jnp.float32)


def _tile_mask(intervals_rows, q_ok, k_start, k_logical_start, src: KeySource, valid_ref, full):
    """Element mask of one tile: row intervals, shifted-window overlap, key validity; `full` skips all of it."""
    bk = src.blocking.block_k
    k_index = k_start + jax.lax.broadcasted_iota(jnp.int32, (1, bk), 1)
    ok = element_mask(intervals_rows, k_index) & (k_index >= k_logical_start) & q_ok
    if src.has_valid:
        ok = ok & (valid_ref[pl.ds(k_start, bk)][None, :] != 0)
    return ok | (full != 0)


def _unpack(refs, sources):
    """Splits the flat kernel refs into per-source tuples (blocks, count, full, intervals, k, v, valid|None)."""
    out, i = [], 0
    for src in sources:
        n = 7 if src.has_valid else 6
        group = list(refs[i : i + n])
        out.append(tuple(group) if src.has_valid else (*group, None))
        i += n
    return out, refs[i:]


def _source_inputs(arrays: SourceArrays, src: KeySource, bq: int, d: int):
    """Flat inputs and BlockSpecs for one source in a grid of (batch, head, query block)."""
    whole = lambda shape: pl.BlockSpec(shape, lambda b, h, i: (0,) * len(shape))  # noqa: E731
    kv_spec = pl.BlockSpec((None, src.blocking.num_k, None, d), lambda b, h, i: (b, 0, h, 0))
    lists = arrays.lists
    inputs = [lists.blocks, lists.count, lists.full, arrays.intervals, arrays.k, arrays.v]
    specs = [
        whole(lists.blocks.shape),
        whole(lists.count.shape),
        whole(lists.full.shape),
        pl.BlockSpec((3, bq), lambda b, h, i: (0, i)),
        kv_spec,
        kv_spec,
    ]
    if src.has_valid:
        inputs.append(arrays.valid.astype(jnp.int32))
        specs.append(pl.BlockSpec((None, src.blocking.num_k), lambda b, h, i: (b, 0)))
    return inputs, specs


def _forward_kernel(*refs, sources, scale, bq):
    groups, (q_ref, o_ref, lse_ref, visited_ref) = _unpack(refs, sources)
    b, qi = pl.program_id(0), pl.program_id(2)
    q = q_ref[...]
    d = q.shape[-1]
    carry = (jnp.full((bq, 1), _NEG_INF, jnp.float32), jnp.zeros((bq, 1), jnp.float32), jnp.zeros((bq, d), jnp.float32))
    visited_ref[...] = jnp.zeros(visited_ref.shape, jnp.int32)
    column_offset = 0
    for src, (blocks_ref, count_ref, full_ref, iv_ref, k_ref, v_ref, valid_ref) in zip(sources, groups):
        bk, nk = src.blocking.block_k, src.blocking.num_k
        intervals_rows = tuple(iv_ref[r, :][:, None] for r in range(3))

        def step(j, carry, src=src, refs=(blocks_ref, full_ref, k_ref, v_ref, valid_ref), off=column_offset):
            blocks_ref, full_ref, k_ref, v_ref, valid_ref = refs
            m, l, acc = carry
            kb = blocks_ref[b, qi, j]
            start = shifted_start(kb, bk, nk)
            s = _dot(q, k_ref[pl.ds(start, bk), :], ((1,), (1,))) * scale
            ok = _tile_mask(intervals_rows, True, start, kb * bk, src, valid_ref, full_ref[b, qi, j])
            s = jnp.where(ok, s, _NEG_INF)
            m_new = jnp.maximum(m, s.max(-1, keepdims=True))
            m_safe = jnp.where(m_new == _NEG_INF, 0.0, m_new)
            p = jnp.where(ok, jnp.exp(s - m_safe), 0.0)
            alpha = jnp.exp(jnp.where(m == _NEG_INF, m_safe, m) - m_safe)
            acc = acc * alpha + _dot(p.astype(v_ref.dtype), v_ref[pl.ds(start, bk), :], ((1,), (0,)))
            visited_ref[pl.ds(off + kb, 1)] += 1
            return m_new, l * alpha + p.sum(-1, keepdims=True), acc

        carry = jax.lax.fori_loop(0, count_ref[b, qi], step, carry)
        column_offset += src.blocking.num_k_blocks
    m, l, acc = carry
    o_ref[...] = jnp.where(l > 0, acc / jnp.where(l > 0, l, 1.0), 0.0).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(l > 0, m + jnp.log(jnp.where(l > 0, l, 1.0)), jnp.inf)[:, 0]


@functools.partial(jax.jit, static_argnames=("sources", "scale", "block_q", "interpret"))
def forward(q, sources: tuple[KeySource, ...], arrays: tuple[SourceArrays, ...], scale: float, block_q: int, interpret=True):
    """Returns (out [b, nq, h, d], lse [b, h, nq] float32, visited [b, h, nqb, sum of key blocks] int32).

    Jitted with the tiling static and the visit lists as data, so masks of the same shapes share one compile.
    """
    b, nq, h, d = q.shape
    nqb = -(-nq // block_q)
    inputs, specs = [], []
    for src, arr in zip(sources, arrays):
        i, s = _source_inputs(arr, src, block_q, d)
        inputs += i
        specs += s
    total_cols = sum(src.blocking.num_k_blocks for src in sources)
    q_spec = pl.BlockSpec((None, block_q, None, d), lambda b, h, i: (b, i, h, 0))
    kernel = functools.partial(_forward_kernel, sources=sources, scale=scale, bq=block_q)
    return pl.pallas_call(
        kernel,
        grid=(b, h, nqb),
        in_specs=specs + [q_spec],
        out_specs=[
            q_spec,
            pl.BlockSpec((None, None, block_q), lambda b, h, i: (b, h, i)),
            pl.BlockSpec((None, None, None, total_cols), lambda b, h, i: (b, h, i, 0)),
        ],
        out_shape=[
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((b, h, nq), jnp.float32),
            jax.ShapeDtypeStruct((b, h, nqb, total_cols), jnp.int32),
        ],
        interpret=interpret,
        name="flash_forward_portable",
    )(*inputs, q)


def _probabilities(q, k, lse_rows, ok, scale):
    s = _dot(q, k, ((1,), (1,))) * scale
    return jnp.where(ok, jnp.exp(s - lse_rows), 0.0)


def _dq_kernel(*refs, src, scale):
    groups, (q_ref, do_ref, lse_ref, delta_ref, dq_ref) = _unpack(refs, (src,))
    blocks_ref, count_ref, full_ref, iv_ref, k_ref, v_ref, valid_ref = groups[0]
    b, qi = pl.program_id(0), pl.program_id(2)
    bk, nk = src.blocking.block_k, src.blocking.num_k
    q, do = q_ref[...], do_ref[...]
    lse_rows, delta_rows = lse_ref[...][:, None], delta_ref[...][:, None]
    intervals_rows = tuple(iv_ref[r, :][:, None] for r in range(3))

    def step(j, dq):
        kb = blocks_ref[b, qi, j]
        start = shifted_start(kb, bk, nk)
        k, v = k_ref[pl.ds(start, bk), :], v_ref[pl.ds(start, bk), :]
        ok = _tile_mask(intervals_rows, True, start, kb * bk, src, valid_ref, full_ref[b, qi, j])
        p = _probabilities(q, k, lse_rows, ok, scale)
        dp = _dot(do, v, ((1,), (1,)))
        ds = jnp.where(ok, p * (dp - delta_rows), 0.0)
        return dq + _dot(ds.astype(k.dtype), k, ((1,), (0,))) * scale

    dq = jax.lax.fori_loop(0, count_ref[b, qi], step, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = dq.astype(dq_ref.dtype)


def _dkv_kernel(lists_t_blocks, lists_t_count, iv_ref, valid_ref, q_ref, do_ref, lse_ref, delta_ref, k_ref, v_ref,
                dk_ref, dv_ref, *, src, nq, bq, scale):
    b, kb = pl.program_id(0), pl.program_id(2)
    bk, nk = src.blocking.block_k, src.blocking.num_k
    k, v = k_ref[...], v_ref[...]
    k_index = kb * bk + jax.lax.broadcasted_iota(jnp.int32, (1, bk), 1)
    key_ok = k_index < nk
    if valid_ref is not None:
        key_ok = key_ok & (valid_ref[...][None, :] != 0)

    def step(j, carry):
        dk, dv = carry
        qb = lists_t_blocks[b, kb, j]
        start = shifted_start(qb, bq, nq)
        rows = pl.ds(start, bq)
        q, do = q_ref[rows, :], do_ref[rows, :]
        q_index = start + jax.lax.broadcasted_iota(jnp.int32, (bq, 1), 0)
        intervals_rows = tuple(iv_ref[r, rows][:, None] for r in range(3))
        ok = element_mask(intervals_rows, k_index) & key_ok & (q_index >= qb * bq)
        p = _probabilities(q, k, lse_ref[rows][:, None], ok, scale)
        dp = _dot(do, v, ((1,), (1,)))
        ds = jnp.where(ok, p * (dp - delta_ref[rows][:, None]), 0.0)
        dv = dv + _dot(p.astype(do.dtype), do, ((0,), (0,)))
        dk = dk + _dot(ds.astype(q.dtype), q, ((0,), (0,))) * scale
        return dk, dv

    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = jax.lax.fori_loop(0, lists_t_count[b, kb], step, (zeros, zeros))
    dk_ref[...] = dk.astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


@functools.partial(jax.jit, static_argnames=("src", "scale", "interpret"))
def backward(q, o, do, lse, src: KeySource, arrays: SourceArrays, lists_t: VisitLists, scale: float, interpret=True):
    """dQ, dK, dV of single-source attention from the forward residuals (lse) and the upstream gradient."""
    b, nq, h, d = q.shape
    bq, bk = src.blocking.block_q, src.blocking.block_k
    nqb, nkb = src.blocking.num_q_blocks, src.blocking.num_k_blocks
    delta = jnp.einsum("bqhd,bqhd->bhq", o.astype(jnp.float32), do.astype(jnp.float32))
    inputs, specs = _source_inputs(arrays, src, bq, d)
    q_spec = pl.BlockSpec((None, bq, None, d), lambda b, h, i: (b, i, h, 0))
    row_spec = pl.BlockSpec((None, None, bq), lambda b, h, i: (b, h, i))
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, src=src, scale=scale),
        grid=(b, h, nqb),
        in_specs=specs + [q_spec, q_spec, row_spec, row_spec],
        out_specs=q_spec,
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        interpret=interpret,
        name="flash_dq_portable",
    )(*inputs, q, do, lse, delta)

    whole = lambda shape: pl.BlockSpec(shape, lambda b, h, i: (0,) * len(shape))  # noqa: E731
    seq_spec = pl.BlockSpec((None, nq, None, d), lambda b, h, i: (b, 0, h, 0))
    seq_rows = pl.BlockSpec((None, None, nq), lambda b, h, i: (b, h, 0))
    kv_spec = pl.BlockSpec((None, bk, None, d), lambda b, h, i: (b, i, h, 0))
    dkv_inputs = [lists_t.blocks, lists_t.count, arrays.intervals]
    dkv_specs = [whole(lists_t.blocks.shape), whole(lists_t.count.shape), whole(arrays.intervals.shape)]
    if src.has_valid:
        dkv_inputs.append(arrays.valid.astype(jnp.int32))
        dkv_specs.append(pl.BlockSpec((None, bk), lambda b, h, i: (b, i)))

    def dkv_kernel(*refs):
        head, tail = refs[:3], refs[3:]
        valid_ref = tail[0] if src.has_valid else None
        tail = tail[1:] if src.has_valid else tail
        _dkv_kernel(*head, valid_ref, *tail, src=src, nq=nq, bq=bq, scale=scale)

    dk, dv = pl.pallas_call(
        dkv_kernel,
        grid=(b, h, nkb),
        in_specs=dkv_specs + [seq_spec, seq_spec, seq_rows, seq_rows, kv_spec, kv_spec],
        out_specs=[kv_spec, kv_spec],
        out_shape=[jax.ShapeDtypeStruct(arrays.k.shape, arrays.k.dtype)] * 2,
        interpret=interpret,
        name="flash_dkv_portable",
    )(*dkv_inputs, q, do, lse, delta, arrays.k, arrays.v)
    return dq, dk, dv
