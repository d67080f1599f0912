"""Wan's 3-D RoPE against an independent complex-number implementation."""

import numpy as np
import jax.numpy as jnp
import pytest

from worldscape_jax.models.rope import apply_rope, axis_dims, grid_positions


def complex_rope(x: np.ndarray, positions: np.ndarray, theta: float = 10000.0) -> np.ndarray:
    """x: [n, h, d]; each adjacent pair (x[2j], x[2j+1]) is the complex number x[2j] + i x[2j+1]."""
    d = x.shape[-1]
    hw = 2 * (d // 6)
    sections = [d - 2 * hw, hw, hw]
    angles = []
    for axis, dim in enumerate(sections):
        for j in range(dim // 2):
            angles.append(positions[:, axis] * theta ** (-(2 * j) / dim))
    angles = np.stack(angles, axis=-1)  # [n, d/2]
    z = x[..., 0::2] + 1j * x[..., 1::2]
    z = z * np.exp(1j * angles)[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def test_wan_split_at_head_dim_128():
    assert axis_dims(128) == (44, 42, 42)  # 22 / 21 / 21 complex pairs


@pytest.mark.parametrize("head_dim", [64, 128])
def test_rope_matches_complex_rotation(head_dim):
    rng = np.random.default_rng(0)
    positions = np.array(grid_positions(3, 2, 4, frame_offset=5))
    x = rng.standard_normal((1, positions.shape[0], 2, head_dim)).astype(np.float32)
    ours = np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(positions)))
    np.testing.assert_allclose(ours[0], complex_rope(x[0].astype(np.float64), positions), atol=2e-5)


def test_rope_scores_depend_only_on_relative_positions():
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.standard_normal((1, 6, 1, 64)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((1, 6, 1, 64)), jnp.float32)
    pos = grid_positions(2, 1, 3)
    shifted = pos + jnp.array([7, 0, 0])
    score = lambda p: jnp.einsum("bqhd,bkhd->qk", apply_rope(q, p), apply_rope(k, p))
    np.testing.assert_allclose(score(pos), score(shifted), atol=1e-4)
    assert not np.allclose(score(pos), score(pos * jnp.array([2, 1, 1])), atol=1e-2)
