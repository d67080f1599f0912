"""Rectified-flow math against closed forms: shift identities, noising inverses, sampler moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worldscape_jax.diffusion import flow

sigma_values = st.floats(0.0, 1.0, allow_nan=False)
shift_values = st.floats(0.2, 20.0, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(sigma_values, shift_values, shift_values)
def test_shift_composes_multiplicatively_and_inverts(s, a, b):
    s = np.float64(s)
    composed = flow.shift_sigma(flow.shift_sigma(s, a), b)
    np.testing.assert_allclose(composed, flow.shift_sigma(s, a * b), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(flow.shift_sigma(flow.shift_sigma(s, a), 1.0 / a), s, rtol=1e-9, atol=1e-12)


def test_shift_fixes_endpoints_is_monotone_and_matches_self_forcing_table():
    s = np.linspace(0, 1, 101)
    shifted = flow.shift_sigma(s, 5.0)
    assert shifted[0] == 0.0 and shifted[-1] == 1.0
    assert np.all(np.diff(shifted) > 0)
    assert np.all(shifted >= s)  # shift > 1 moves every level towards noise
    np.testing.assert_array_equal(flow.shift_sigma(s, 1.0), s)
    # In logit space the shift is a translation by log(shift).
    inner = s[1:-1]
    logit = lambda p: np.log(p / (1 - p))
    np.testing.assert_allclose(logit(flow.shift_sigma(inner, 5.0)), logit(inner) + np.log(5.0), atol=1e-9)
    # Self-Forcing's 4-step student: denoising_step_list [1000, 750, 500, 250] warped through its shift-5
    # scheduler visits t = [1000, 937.5, 833.3, 625.0] (research notes §1.3, values as written there).
    self_forcing_timesteps = [1000.0, 937.5, 833.3, 625.0]
    np.testing.assert_allclose(flow.sigma_to_timestep(flow.inference_sigmas(4, 5.0))[:4], self_forcing_timesteps,
                               atol=0.05)


def test_bad_shift_raises():
    with pytest.raises(ValueError, match="shift"):
        flow.shift_sigma(0.5, 0.0)
    with pytest.raises(ValueError, match="distribution"):
        flow.TimestepSampling(distribution="beta")


def test_noising_velocity_and_inverses_are_consistent():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k1, (2, 3, 4, 4, 2))
    eps = jax.random.normal(k2, x0.shape)
    sigma = jax.random.uniform(k3, (2, 3))
    x_t = flow.add_noise(x0, eps, sigma)
    # Naive per-frame reference.
    ref = np.stack([np.stack([(1 - sigma[b, f]) * x0[b, f] + sigma[b, f] * eps[b, f] for f in range(3)]) for b in range(2)])
    np.testing.assert_allclose(x_t, ref, rtol=1e-6, atol=1e-6)
    v = flow.velocity_target(x0, eps)
    np.testing.assert_allclose(flow.x0_from_velocity(x_t, v, sigma), x0, atol=1e-5)
    np.testing.assert_allclose(flow.eps_from_velocity(x_t, v, sigma), eps, atol=1e-5)
    # d x_t / d sigma = v along the straight path.
    dxds = jax.jvp(lambda s: flow.add_noise(x0, eps, s), (sigma,), (jnp.ones_like(sigma),))[1]
    np.testing.assert_allclose(dxds, v, atol=1e-5)


def test_wrong_sigma_shape_names_the_expected_shape():
    x = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"\[B, F\]"):
        flow.add_noise(x, x, jnp.zeros((2,)))


def _logit(p):
    return np.log(p / (1 - p))


def test_logit_normal_moments_and_shift_translates_the_mean():
    n = 200_000
    sampling = flow.TimestepSampling("logit_normal", shift=3.0, per_frame=True, logit_mean=0.4, logit_std=0.8)
    sigma = np.asarray(flow.sample_sigmas(jax.random.key(1), n // 4, 4, sampling), np.float64)
    z = _logit(np.clip(sigma, 1e-7, 1 - 1e-7))
    assert abs(z.mean() - (0.4 + np.log(3.0))) < 0.01
    assert abs(z.std() - 0.8) < 0.01
    # per_frame: frames are independent draws (near-zero correlation between frame 0 and 1).
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.02


def test_uniform_with_shift_matches_its_cdf_and_shared_frames_are_equal():
    sampling = flow.TimestepSampling("uniform", shift=4.0, per_frame=False)
    sigma = np.asarray(flow.sample_sigmas(jax.random.key(2), 50_000, 3, sampling))
    assert sigma.shape == (50_000, 3)
    np.testing.assert_array_equal(sigma[:, 0], sigma[:, 2])  # one sigma per sample
    # P(sigma' <= y) = P(s <= inverse_shift(y)) = y / (shift - (shift - 1) y).
    for y in (0.2, 0.5, 0.8, 0.95):
        expected = y / (4.0 - 3.0 * y)
        assert abs((sigma[:, 0] <= y).mean() - expected) < 0.01


def test_inference_sigmas_run_from_one_to_zero():
    s = np.asarray(flow.inference_sigmas(4, shift=5.0))
    np.testing.assert_allclose(s, 5 * np.array([1, .75, .5, .25, 0]) / (1 + 4 * np.array([1, .75, .5, .25, 0])), rtol=1e-6)


def test_flow_matching_loss_weights_frames():
    x0 = jnp.zeros((1, 2, 3))
    eps = jnp.ones((1, 2, 3))
    v_pred = jnp.stack([jnp.ones((3,)), jnp.full((3,), 3.0)])[None]  # frame 0 exact, frame 1 off by 2
    assert float(flow.flow_matching_loss(v_pred, x0, eps)) == pytest.approx(2.0)
    w = jnp.array([[0.0, 1.0]])
    assert float(flow.flow_matching_loss(v_pred, x0, eps, w)) == pytest.approx(4.0)
