"""The attention entry point: the xla reference against a naive softmax written here, and the masks."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from worldscape_jax.models.attention import MaskSpec, attention, cached_attention, dot_product_attention


def naive_attention(q, k, v, allowed):
    """Loops over batch, head and query; softmax over the allowed keys only."""
    b, nq, h, d = q.shape
    out = np.zeros(q.shape, np.float64)
    for bi in range(b):
        for hi in range(h):
            for i in range(nq):
                keys = np.flatnonzero(allowed[bi, i])
                if keys.size == 0:
                    continue
                logits = np.array([q[bi, i, hi] @ k[bi, j, hi] for j in keys]) / np.sqrt(d)
                weights = np.exp(logits - logits.max())
                weights /= weights.sum()
                out[bi, i, hi] = sum(w * v[bi, j, hi] for w, j in zip(weights, keys))
    return out


def naive_block_causal(n, chunk, window=None, sink=0):
    allowed = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            ci, cj = i // chunk, j // chunk
            visible = cj <= ci
            if window is not None:
                visible = visible and (ci - cj < window or cj < sink)
            allowed[i, j] = visible
    return allowed


def random_qkv(seed, b=2, nq=10, nk=10, h=2, d=8):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for shape in ((b, nq, h, d), (b, nk, h, d), (b, nk, h, d))]


@pytest.mark.parametrize("window,sink", [(None, 0), (2, 0), (2, 1), (1, 2)])
def test_block_causal_mask_matches_definition(window, sink):
    spec = MaskSpec.block_causal(3, window, sink)
    np.testing.assert_array_equal(np.asarray(spec.dense(13, 13)), naive_block_causal(13, 3, window, sink))


@pytest.mark.parametrize("spec", [MaskSpec(), MaskSpec.block_causal(3), MaskSpec.block_causal(2, window=2, sink=1)])
def test_xla_attention_matches_naive_softmax(spec):
    q, k, v = random_qkv(0)
    kv_valid = np.ones((2, 10), bool)
    kv_valid[1, 7:] = False
    allowed = np.asarray(spec.dense(10, 10))[None] & kv_valid[:, None, :]
    ours = attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), spec, kv_valid=jnp.asarray(kv_valid))
    np.testing.assert_allclose(np.asarray(ours), naive_attention(q, k, v, allowed), atol=1e-5)


def test_query_with_no_visible_key_gives_zeros_not_nan():
    q, k, v = random_qkv(1, b=1, nq=4, nk=4)
    out = attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), kv_valid=jnp.zeros((1, 4), bool))
    assert np.all(np.asarray(out) == 0)


def test_cached_attention_is_attention_over_valid_cache_and_current_tokens():
    q, k, v = random_qkv(2, nq=3, nk=3)
    _, ck, cv = random_qkv(3, nq=5, nk=5)
    valid = np.array([[True, False, True, True, False], [False] * 5])
    ours = cached_attention(*map(jnp.asarray, (q, k, v, ck, cv, valid)))
    keys, values = np.concatenate([ck, k], 1), np.concatenate([cv, v], 1)
    allowed = np.concatenate([valid, np.ones((2, 3), bool)], 1)[:, None, :].repeat(3, 1)
    np.testing.assert_allclose(np.asarray(ours), naive_attention(q, keys, values, allowed), atol=1e-5)


@pytest.mark.parametrize("window,sink", [(None, 0), (2, 1)])
def test_cached_block_causal_attention_matches_naive_softmax(window, sink):
    """Three 2-token chunks in one call over a cache with holes: every valid cache key, then block-causal."""
    q, k, v = random_qkv(7, nq=6, nk=6)
    _, ck, cv = random_qkv(8, nq=5, nk=5)
    valid = np.array([[True, False, True, True, False], [False, True, True, True, True]])
    spec = MaskSpec.block_causal(2, window, sink)
    ours = cached_attention(*map(jnp.asarray, (q, k, v, ck, cv, valid)), spec)
    keys, values = np.concatenate([ck, k], 1), np.concatenate([cv, v], 1)
    allowed = np.concatenate([np.repeat(valid[:, None, :], 6, 1),
                              np.broadcast_to(naive_block_causal(6, 2, window, sink), (2, 6, 6))], -1)
    np.testing.assert_allclose(np.asarray(ours), naive_attention(q, keys, values, allowed), atol=1e-5)
    dense = np.asarray(spec.with_cache(5).dense(6, 11))
    np.testing.assert_array_equal(dense[:, :5], True)
    np.testing.assert_array_equal(dense[:, 5:], naive_block_causal(6, 2, window, sink))
    with pytest.raises(ValueError, match="cache_tokens"):
        cached_attention(*map(jnp.asarray, (q, k, v, ck, cv, valid)), spec.with_cache(5))


def test_dot_product_path_matches_reference_masks():
    """The `cudnn` implementation's mask plumbing, run through jax.nn.dot_product_attention's XLA backend."""
    q, k, v = random_qkv(4)
    spec = MaskSpec.block_causal(2, window=2, sink=1)
    valid = jnp.asarray(np.arange(10)[None].repeat(2, 0) < np.array([[10], [6]]))
    ref = attention(*map(jnp.asarray, (q, k, v)), spec, kv_valid=valid)
    ours = dot_product_attention(*map(jnp.asarray, (q, k, v)), spec, valid, 1 / np.sqrt(8), implementation="xla")
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)


def test_bad_inputs_are_named():
    q, k, v = map(jnp.asarray, random_qkv(5))
    with pytest.raises(ValueError, match="unknown attention implementation 'nope'"):
        attention(q, k, v, impl="nope")
    with pytest.raises(ValueError, match="shape mismatch"):
        attention(q, k[:, :, :1], v)
    with pytest.raises(ValueError, match="chunk_size"):
        MaskSpec.block_causal(0)
    with pytest.raises(ValueError, match="window"):
        MaskSpec.block_causal(2, window=0)


def softmax_attention(q, k, v, allowed):
    """Dense masked softmax attention in plain jnp: the gradients of this textbook form are the reference."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    logits = jnp.where(allowed[:, None], logits, -1e9)
    weights = jnp.exp(logits - logits.max(-1, keepdims=True))
    return jnp.einsum("bhqk,bkhd->bqhd", weights / weights.sum(-1, keepdims=True), v)


def test_gradients_through_masked_attention_match_a_naive_softmax():
    q, k, v = map(jnp.asarray, random_qkv(6))
    spec = MaskSpec.block_causal(3, window=2, sink=1)
    kv_valid = jnp.asarray(np.arange(10)[None] < np.array([[10], [8]]))
    allowed = spec.dense(10, 10)[None] & kv_valid[:, None, :]
    cotangent = jnp.asarray(np.random.default_rng(7).standard_normal(q.shape), jnp.float32)
    ours = jax.grad(lambda *a: jnp.sum(attention(*a, spec, kv_valid=kv_valid) * cotangent), argnums=(0, 1, 2))
    naive = jax.grad(lambda *a: jnp.sum(softmax_attention(*a, allowed) * cotangent), argnums=(0, 1, 2))
    for name, got, expected in zip("qkv", ours(q, k, v), naive(q, k, v)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5, err_msg=f"d loss / d {name}")
    assert np.all(np.asarray(ours(q, k, v)[1])[1, 8:] == 0)  # invalid keys get no gradient
