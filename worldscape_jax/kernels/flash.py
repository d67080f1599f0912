"""Block-sparse flash attention behind the `pallas` implementation name, with a custom VJP.

`flash_attention` computes the visit lists once (`block_mask`), then runs the kernel for the
platform: Mosaic GPU on CUDA (`flash_gpu`), splash attention on TPU (`flash_tpu`), and the portable
Pallas kernel in interpret mode elsewhere (CPU tests). Gradients go through `jax.custom_vjp`, so
training uses the kernels' own backward passes instead of differentiating through a loop.

`flash_cached_attention` is the streaming case: the current call's queries over the cache (read where
it lies, skipping key blocks with no valid entry) and then over the call's own tokens under the
mask's current part (block-causal blocks skipped as in ordinary attention), as two key sources of
one online softmax. Its gradient (rarely needed: streaming runs without gradients) is the reference
VJP of the XLA implementation.
"""

from __future__ import annotations

import functools

import jax

from worldscape_jax.kernels import block_mask, flash_portable
from worldscape_jax.kernels.flash_portable import KeySource, SourceArrays
from worldscape_jax.kernels.mask_spec import MaskSpec
from worldscape_jax.kernels.reference import xla_cached_attention

DEFAULT_BLOCK_Q = 128
DEFAULT_BLOCK_K = 128
BACKENDS = ("auto", "portable", "gpu", "tpu")


def resolve_backend(backend: str) -> str:
    """`auto` picks the kernel for the default JAX platform: gpu, tpu, otherwise the interpreted portable kernel."""
    if backend not in BACKENDS:
        raise ValueError(f"kernels/flash.py: backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    platform = jax.default_backend()
    return platform if platform in ("gpu", "tpu") else "portable"


def _check_inputs(q, k, v, kv_valid):
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(f"kernels/flash.py: q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if kv_valid is not None and kv_valid.shape != k.shape[:2]:
        raise ValueError(f"kernels/flash.py: kv_valid{kv_valid.shape} must be k.shape[:2]={k.shape[:2]}")


def _single_source(q, k, v, mask: MaskSpec, kv_valid, block_q: int, block_k: int):
    """Blocking, source description, arrays and transposed lists of one-sequence attention."""
    blocking = block_mask.make_blocking(q.shape[1], k.shape[1], block_q, block_k)
    lists, lists_t = block_mask.forward_and_transposed_lists(mask, blocking, kv_valid, q.shape[0])
    intervals = flash_portable.padded_intervals(block_mask.key_intervals(mask, blocking.num_q, blocking.num_k), blocking)
    src = KeySource(blocking, kv_valid is not None)
    return src, SourceArrays(k, v, kv_valid, intervals, lists), lists_t


def flash_attention_with_visits(q, k, v, mask: MaskSpec, kv_valid, scale: float, *, block_q=DEFAULT_BLOCK_Q,
                                block_k=DEFAULT_BLOCK_K, interpret=True):
    """Portable kernel forward returning (out, lse, visited) where visited[b, h, qb, kb] counts kernel loads."""
    _check_inputs(q, k, v, kv_valid)
    src, arrays, _ = _single_source(q, k, v, mask, kv_valid, block_q, block_k)
    return flash_portable.forward(q, (src,), (arrays,), scale, src.blocking.block_q, interpret)


def _forward(q, k, v, kv_valid, mask, scale, backend, block_q, block_k):
    if backend == "gpu":
        from worldscape_jax.kernels import flash_gpu

        return flash_gpu.forward(q, k, v, kv_valid, mask, scale)
    src, arrays, _ = _single_source(q, k, v, mask, kv_valid, block_q, block_k)
    out, lse, _ = flash_portable.forward(q, (src,), (arrays,), scale, src.blocking.block_q)
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8))
def _flash(q, k, v, kv_valid, mask, scale, backend, block_q, block_k):
    return _forward(q, k, v, kv_valid, mask, scale, backend, block_q, block_k)[0]


def _flash_fwd(q, k, v, kv_valid, mask, scale, backend, block_q, block_k):
    out, lse = _forward(q, k, v, kv_valid, mask, scale, backend, block_q, block_k)
    return out, (q, k, v, kv_valid, out, lse)


def _flash_bwd(mask, scale, backend, block_q, block_k, residuals, d_out):
    q, k, v, kv_valid, out, lse = residuals
    if backend == "gpu":
        from worldscape_jax.kernels import flash_gpu_bwd

        dq, dk, dv = flash_gpu_bwd.backward(q, k, v, kv_valid, out, lse, d_out, mask, scale)
    else:
        src, arrays, lists_t = _single_source(q, k, v, mask, kv_valid, block_q, block_k)
        dq, dk, dv = flash_portable.backward(q, out, d_out, lse, src, arrays, lists_t, scale)
    return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def flash_attention(q, k, v, mask: MaskSpec, kv_valid, scale: float, *, backend: str = "auto",
                    block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K):
    """Block-sparse attention with the `attention()` contract (rows with no visible key give zeros)."""
    _check_inputs(q, k, v, kv_valid)
    backend = resolve_backend(backend)
    if backend == "tpu":
        from worldscape_jax.kernels import flash_tpu

        return flash_tpu.splash_attention(q, k, v, mask, kv_valid, scale)
    return _flash(q, k, v, kv_valid, mask, float(scale), backend, block_q, block_k)


def cached_source_masks(mask: MaskSpec) -> tuple[MaskSpec, MaskSpec]:
    """The masks of the two key sources of a cached call: the cache (all visible) and the current tokens."""
    return MaskSpec(), mask.current()


def _cached_sources(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, block_q: int, block_k: int):
    """Two sources: the cache (validity-gated, read in place) and the current tokens (under the mask's current part)."""
    b, nq = q.shape[:2]
    sources, arrays = [], []
    for (keys, values, valid), part in zip(((cache_k, cache_v, cache_valid), (k, v, None)), cached_source_masks(mask)):
        blocking = block_mask.make_blocking(nq, keys.shape[1], block_q, block_k)
        lists, _ = block_mask.forward_and_transposed_lists(part, blocking, valid, b)
        intervals = flash_portable.padded_intervals(block_mask.key_intervals(part, nq, keys.shape[1]), blocking)
        sources.append(KeySource(blocking, valid is not None))
        arrays.append(SourceArrays(keys, values, valid, intervals, lists))
    return tuple(sources), tuple(arrays)


def flash_cached_attention_with_visits(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float, *,
                                       block_q=DEFAULT_BLOCK_Q, block_k=DEFAULT_BLOCK_K, interpret=True):
    """Streaming forward: (out, lse, visited) with visited's key-block columns = [cache blocks, current blocks]."""
    _check_inputs(q, k, v, None)
    _check_inputs(q, cache_k, cache_v, cache_valid)
    sources, arrays = _cached_sources(q, k, v, cache_k, cache_v, cache_valid, mask, block_q, block_k)
    return flash_portable.forward(q, sources, arrays, scale, sources[0].blocking.block_q, interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9, 10))
def _cached(q, k, v, cache_k, cache_v, cache_valid, mask, scale, backend, block_q, block_k):
    if backend == "gpu":
        from worldscape_jax.kernels import flash_gpu

        return flash_gpu.cached_forward(q, k, v, cache_k, cache_v, cache_valid, mask, scale)
    out, _, _ = flash_cached_attention_with_visits(q, k, v, cache_k, cache_v, cache_valid, mask, scale,
                                                   block_q=block_q, block_k=block_k)
    return out


def _cached_fwd(q, k, v, cache_k, cache_v, cache_valid, mask, scale, backend, block_q, block_k):
    out = _cached(q, k, v, cache_k, cache_v, cache_valid, mask, scale, backend, block_q, block_k)
    return out, (q, k, v, cache_k, cache_v, cache_valid)


def _cached_bwd(mask, scale, backend, block_q, block_k, residuals, d_out):
    q, k, v, cache_k, cache_v, cache_valid = residuals
    reference = lambda *x: xla_cached_attention(*x, cache_valid, mask, scale)  # noqa: E731
    _, vjp = jax.vjp(reference, q, k, v, cache_k, cache_v)
    return (*vjp(d_out), None)


_cached.defvjp(_cached_fwd, _cached_bwd)


def flash_cached_attention(q, k, v, cache_k, cache_v, cache_valid, mask: MaskSpec, scale: float, *,
                           backend: str = "auto", block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K):
    """The `cached_attention()` contract on the kernels (`mask` with or without its cache prefix set);
    TPU uses splash over the concatenation."""
    _check_inputs(q, k, v, None)
    _check_inputs(q, cache_k, cache_v, cache_valid)
    mask = mask.with_cache(cache_k.shape[1])
    backend = resolve_backend(backend)
    if backend == "tpu":
        from worldscape_jax.kernels import flash_tpu

        return flash_tpu.splash_cached_attention(q, k, v, cache_k, cache_v, cache_valid, mask, scale)
    return _cached(q, k, v, cache_k, cache_v, cache_valid, mask, float(scale), backend, block_q, block_k)
