"""The Pallas flash kernels (interpret mode on CPU) against the dense `xla` reference.

Checks: the per-row key intervals equal `MaskSpec.dense`; tile classes equal a brute-force count;
the kernel loads exactly the key blocks that hold a visible key (each once) and nothing else;
forward outputs and dQ/dK/dV over every mask kind, head dims 64 and 128, lengths that are not
multiples of the block size, key padding, and rows that see no key; the streaming kernel over
[cache ⊕ chunk] with holes in the cache; and the `pallas` name at the attention entry point.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from worldscape_jax.kernels import block_mask  # noqa: E402
from worldscape_jax.kernels.flash import (  # noqa: E402
    flash_attention,
    flash_cached_attention,
    flash_attention_with_visits,
    flash_cached_attention_with_visits,
)
from worldscape_jax.models.attention import (  # noqa: E402
    MaskSpec,
    attention,
    available_implementations,
    cached_attention,
    xla_attention,
    xla_cached_attention,
)

BLOCK = 64
MASKS = {
    "full": MaskSpec(),
    "block_causal": MaskSpec.block_causal(48),
    "window": MaskSpec.block_causal(40, window=2),
    "window_sink": MaskSpec.block_causal(36, window=2, sink=1),
}


def _qkv(seed, b, nq, nk, h, d, dtype=jnp.float32):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(ks[0], (b, nq, h, d), dtype),
        jax.random.normal(ks[1], (b, nk, h, d), dtype),
        jax.random.normal(ks[2], (b, nk, h, d), dtype),
    )


def _padding_valid(b, nk, seed=7):
    """Per-batch key lengths (padding at the end), one row with a random hole pattern."""
    lengths = np.array([nk - 37, nk - 5][:b])
    valid = np.arange(nk)[None] < lengths[:, None]
    valid[0, 60:135] = False  # key block 1 (64..127) fully invalid for batch 0
    return jnp.asarray(valid)


def _brute_force_visits(dense: np.ndarray, bq: int, bk: int) -> np.ndarray:
    """[b, nqb, nkb]: 1 where a tile holds at least one visible (query, key) pair, from the dense mask."""
    b, nq, nk = dense.shape
    nqb, nkb = -(-nq // bq), -(-nk // bk)
    padded = np.zeros((b, nqb * bq, nkb * bk), bool)
    padded[:, :nq, :nk] = dense
    return padded.reshape(b, nqb, bq, nkb, bk).any(axis=(2, 4)).astype(np.int32)


def _dense(mask, valid, b, nq, nk):
    dense = np.broadcast_to(np.asarray(mask.dense(nq, nk))[None], (b, nq, nk))
    return dense & np.asarray(valid)[:, None, :] if valid is not None else dense


@pytest.mark.parametrize("mask", list(MASKS.values()) + [MaskSpec.block_causal(7, window=3, sink=2),
                                  MaskSpec().with_cache(40), MaskSpec.block_causal(7, window=3, sink=2).with_cache(40)],
                         ids=str)
@pytest.mark.parametrize("nq,nk", [(200, 200), (131, 260)])
def test_key_intervals_equal_dense_mask(mask, nq, nk):
    sink_end, lo, hi = block_mask.key_intervals(mask, nq, nk)
    k = np.arange(nk)[None]
    from_intervals = (k < sink_end[:, None]) | ((k >= lo[:, None]) & (k < hi[:, None]))
    np.testing.assert_array_equal(from_intervals, np.asarray(mask.dense(nq, nk)))
    valid = np.arange(nk)[None] % 5 != 1
    counts = block_mask.visible_keys_per_row(mask, jnp.asarray(valid), 1, nq, nk)
    np.testing.assert_array_equal(np.asarray(counts)[0], (np.asarray(mask.dense(nq, nk)) & valid).sum(-1))


@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_static_block_classes_match_brute_force(mask):
    nq, nk, bq, bk = 300, 300, 64, 32
    dense = np.asarray(mask.dense(nq, nk))
    blocking = block_mask.make_blocking(nq, nk, bq, bk)
    classes = block_mask.static_block_classes(mask, blocking)
    for qb in range(blocking.num_q_blocks):
        for kb in range(blocking.num_k_blocks):
            tile = np.zeros((bq, bk), bool)
            sub = dense[qb * bq : (qb + 1) * bq, kb * bk : (kb + 1) * bk]
            tile[: sub.shape[0], : sub.shape[1]] = sub
            rows = sub.shape[0]
            expected = 0 if not tile.any() else (2 if tile[:rows].all() else 1)
            assert classes[qb, kb] == expected, (qb, kb)


# (mask name, length, head dim, with key padding). Cases share shapes so that jit compiles are reused:
# interpret mode spends nearly all its time compiling.
CASES = [
    ("full", 200, 64, False),
    ("block_causal", 200, 64, False),
    ("window_sink", 200, 64, False),
    ("window", 200, 64, True),
    ("full", 200, 64, True),
    ("window_sink", 190, 128, True),
]


@pytest.mark.parametrize("name,n,d,padded", CASES)
def test_forward_matches_reference_and_visits_only_nonempty_blocks(name, n, d, padded):
    mask, b, h = MASKS[name], 2, 1
    q, k, v = _qkv(0, b, n, n, h, d)
    valid = _padding_valid(b, n) if padded else None
    out, lse, visited = flash_attention_with_visits(q, k, v, mask, valid, d**-0.5, block_q=BLOCK, block_k=BLOCK)
    np.testing.assert_allclose(out, xla_attention(q, k, v, mask, valid, d**-0.5), atol=2e-5, rtol=1e-5)

    exact = _brute_force_visits(_dense(mask, valid, b, n, n), BLOCK, BLOCK)
    by_mask = _brute_force_visits(_dense(mask, None, b, n, n), BLOCK, BLOCK)
    by_validity = _brute_force_visits(_dense(MaskSpec(), valid, b, n, n), BLOCK, BLOCK)
    for head in range(h):
        visits = np.asarray(visited[:, head])
        # Never a block the mask or the validity empties; every block with a visible key exactly once.
        np.testing.assert_array_equal(visits, by_mask & by_validity)
        assert np.all(visits >= exact)
    if not padded:
        np.testing.assert_array_equal(by_mask, exact)
    if name != "full":
        assert by_mask.sum() < by_mask.size, "test mask should leave some blocks empty"
    if padded:
        assert by_validity.sum() < by_validity.size, "test validity should leave some blocks empty"


def test_rows_without_visible_keys_are_zero_and_finite():
    mask, n, d = MaskSpec.block_causal(32, window=1), 200, 64
    q, k, v = _qkv(1, 2, n, n, 1, d)
    valid = jnp.asarray(np.stack([np.arange(n) >= 64, np.zeros(n, bool)]))  # batch 1 sees nothing at all
    out, lse, _ = flash_attention_with_visits(q, k, v, mask, valid, d**-0.5, block_q=BLOCK, block_k=BLOCK)
    reference = xla_attention(q, k, v, mask, valid, d**-0.5)
    assert np.all(np.asarray(out[0, :64]) == 0.0)
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(np.asarray(out[1]), 0.0)
    np.testing.assert_allclose(out, reference, atol=2e-5)


@pytest.mark.parametrize("name,n,d,padded", [CASES[0], CASES[3], CASES[5]])
def test_gradients_match_reference(name, n, d, padded):
    mask, b, h = MASKS[name], 2, 2
    q, k, v = _qkv(2, b, n, n, h, d)
    valid = _padding_valid(b, n) if padded else None
    cotangent = jax.random.normal(jax.random.key(3), q.shape)

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v, mask, valid, d**-0.5) * cotangent)

    kernel = lambda *a: flash_attention(*a, block_q=BLOCK, block_k=BLOCK)  # noqa: E731
    grads = jax.grad(loss(kernel), argnums=(0, 1, 2))(q, k, v)
    expected = jax.grad(loss(xla_attention), argnums=(0, 1, 2))(q, k, v)
    for name_, got, want in zip("qkv", grads, expected):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4, err_msg=f"d{name_}")


def test_bfloat16_forward_close_to_float32_reference():
    mask, n, d = MASKS["window_sink"], 200, 64
    q, k, v = _qkv(4, 2, n, n, 1, d, jnp.bfloat16)
    out = flash_attention(q, k, v, mask, None, d**-0.5, block_q=BLOCK, block_k=BLOCK)
    assert out.dtype == jnp.bfloat16
    reference = xla_attention(*(x.astype(jnp.float32) for x in (q, k, v)), mask, None, d**-0.5)
    np.testing.assert_allclose(out.astype(jnp.float32), reference, atol=3e-2)


def test_cached_attention_reads_cache_in_place_and_skips_invalid_blocks():
    b, nq, nc, h, d, block = 2, 70, 300, 1, 64, 128  # the entry point's default tiles
    q, k, v = _qkv(5, b, nq, nq, h, d)
    _, cache_k, cache_v = _qkv(6, b, nc, nc, h, d)
    valid = np.array(jax.random.uniform(jax.random.key(8), (b, nc)) > 0.4)
    valid[:, 128:256] = False  # a whole cache block is empty: the kernel must not load it
    valid[1, :] = False  # batch 1 has an empty cache
    valid = jnp.asarray(valid)
    out, _, visited = flash_cached_attention_with_visits(q, k, v, cache_k, cache_v, valid, MaskSpec(), d**-0.5,
                                                         block_q=block, block_k=block)
    reference = xla_cached_attention(q, k, v, cache_k, cache_v, valid, MaskSpec(), d**-0.5)
    np.testing.assert_allclose(out, reference, atol=2e-5)

    cache_visits = _brute_force_visits(np.broadcast_to(np.asarray(valid)[:, None, :], (b, nq, nc)), nq, block)
    chunk_visits = np.ones((b, 1, 1), np.int32)  # the 70-token chunk is one key block of itself
    expected = np.concatenate([cache_visits, chunk_visits], axis=-1)
    for head in range(h):
        np.testing.assert_array_equal(np.asarray(visited[:, head]), expected)
    assert expected[:, :, 1].sum() == 0 and expected[1, :, :3].sum() == 0


def test_cached_block_causal_window_matches_reference_and_skips_future_chunks():
    """The rolling window: four 50-token chunks in one call over a holed cache, block-causal among themselves.

    Tiles of 64: query block 0 (chunk 0, rows 0-49, and chunk 1, rows 50-63, which sees keys 0-99) must
    not load current key blocks 2-3, which hold only later chunks; the cache is read wherever it has a
    valid key.
    """
    b, nq, nc, h, d, block = 2, 200, 300, 1, 64, 64
    mask = MaskSpec.block_causal(50)
    q, k, v = _qkv(14, b, nq, nq, h, d)
    _, cache_k, cache_v = _qkv(15, b, nc, nc, h, d)
    valid = np.array(jax.random.uniform(jax.random.key(16), (b, nc)) > 0.3)
    valid[0, 64:192] = False
    valid = jnp.asarray(valid)
    out, _, visited = flash_cached_attention_with_visits(q, k, v, cache_k, cache_v, valid, mask, d**-0.5,
                                                         block_q=block, block_k=block)
    np.testing.assert_allclose(out, xla_cached_attention(q, k, v, cache_k, cache_v, valid, mask, d**-0.5),
                               atol=2e-5)
    dense = _dense(mask.with_cache(nc), jnp.concatenate([valid, jnp.ones((b, nq), bool)], 1), b, nq, nc + nq)
    expected = np.concatenate([_brute_force_visits(dense[:, :, :nc], block, block),
                               _brute_force_visits(dense[:, :, nc:], block, block)], axis=-1)
    np.testing.assert_array_equal(np.asarray(visited[:, 0]), expected)
    current = expected[:, :, -4:]
    assert current[:, 0].tolist() == [[1, 1, 0, 0]] * b and np.triu(current[0], 2).sum() == 0
    assert expected[0, :, 1:3].sum() == 0  # the empty cache blocks of batch 0
    grads = [jax.grad(lambda q, ck, impl=impl: jnp.sum(cached_attention(q, k, v, ck, cache_v, valid, mask,
                                                                        impl=impl) ** 2), (0, 1))(q, cache_k)
             for impl in ("pallas", "xla")]
    for got, want in zip(*grads):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)


def test_entry_point_dispatches_to_pallas_with_gradients():
    assert "pallas" in available_implementations()
    b, nq, nc, h, d = 2, 70, 300, 1, 64  # the shapes of the streaming test above: its compile is reused
    q, k, v = _qkv(9, b, nq, nq, h, d)
    _, cache_k, cache_v = _qkv(10, b, nc, nc, h, d)
    valid = jnp.broadcast_to(jnp.arange(nc)[None] % 3 != 0, (b, nc))

    def loss(impl):
        return lambda q, ck: jnp.sum(cached_attention(q, k, v, ck, cache_v, valid, impl=impl) ** 2)

    for got, want in zip(jax.grad(loss("pallas"), (0, 1))(q, cache_k), jax.grad(loss("xla"), (0, 1))(q, cache_k)):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)
    q, k, v = _qkv(13, 2, 200, 200, 1, d)
    mask = MaskSpec.block_causal(16, window=2)
    np.testing.assert_allclose(attention(q, k, v, mask, impl="pallas"), attention(q, k, v, mask), atol=2e-5)


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv(11, 1, 20, 20, 1, 64)
    with pytest.raises(ValueError, match="kv_valid"):
        flash_attention(q, k, v, MaskSpec(), jnp.ones((1, 19), bool), 0.1)
    with pytest.raises(ValueError, match="dtype"):
        flash_attention(q, k.astype(jnp.bfloat16), v, MaskSpec(), None, 0.1)
    with pytest.raises(ValueError, match="backend"):
        flash_attention(q, k, v, MaskSpec(), None, 0.1, backend="cuda")


def test_splash_tpu_path_matches_reference_in_interpret_mode():
    from worldscape_jax.kernels import flash_tpu

    mask, n = MASKS["window_sink"], 200
    q, k, v = _qkv(12, 2, n, n, 1, 64)
    valid = jnp.asarray(np.stack([np.arange(n) < 150, np.arange(n) >= 120]))  # batch 1: early rows see nothing
    np.testing.assert_array_equal(flash_tpu.dense_reference_mask(mask, n, n), np.asarray(mask.dense(n, n)))
    out = flash_tpu.splash_attention(q, k, v, mask, valid, 0.125, interpret=True)
    np.testing.assert_allclose(out, xla_attention(q, k, v, mask, valid, 0.125), atol=2e-5)


def test_mosaic_gpu_kernels_lower_for_cuda():
    """No GPU here: check that forward, custom-VJP backward and streaming kernels lower to Mosaic GPU."""
    spec = lambda *shape, dtype=jnp.bfloat16: jax.ShapeDtypeStruct(shape, dtype)  # noqa: E731
    q, valid = spec(1, 300, 2, 128), spec(1, 300, dtype=jnp.bool_)
    mask = MaskSpec.block_causal(100, window=2, sink=1)

    def loss(q, k, v, valid):
        return jnp.sum(flash_attention(q, k, v, mask, valid, 0.1, backend="gpu").astype(jnp.float32))

    grad_text = jax.jit(jax.grad(loss, (0, 1, 2))).trace(q, q, q, valid).lower(lowering_platforms=("cuda",)).as_text()
    assert grad_text.count("mosaic_gpu") >= 3  # forward, dQ and dK/dV kernels
    cache, cache_valid = spec(1, 520, 2, 128), spec(1, 520, dtype=jnp.bool_)

    def streaming(q, ck, cv, cvalid):
        return flash_cached_attention(q, q, q, ck, cv, cvalid, MaskSpec.block_causal(100), 0.1, backend="gpu")

    text = jax.jit(streaming).trace(q, cache, cache, cache_valid).lower(lowering_platforms=("cuda",)).as_text()
    assert "mosaic_gpu" in text
