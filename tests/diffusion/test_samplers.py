"""Samplers against oracle velocities whose exact answer is known in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.diffusion import flow, samplers


def point_oracle(target):
    """The exact velocity when all data sit at `target`: v = (x_t - target) / sigma."""

    def denoise(x_t, t_frames, cond):
        sigma = (t_frames / 1000.0)[..., None, None]
        return (x_t - target - cond) / sigma

    return denoise


def gaussian_oracle(mu, std):
    """E[eps - x0 | x_t] for data x0 ~ N(mu, std^2) (elementwise), closed form."""

    def denoise(x_t, t_frames, cond):
        s = (t_frames / 1000.0)[..., None, None]
        var = (1 - s) ** 2 * std**2 + s**2
        resid = x_t - (1 - s) * mu
        e_x0 = mu + (1 - s) * std**2 / var * resid
        e_eps = s / var * resid
        return e_eps - e_x0

    return denoise


def test_euler_lands_on_the_single_data_point_for_any_schedule():
    target = jnp.array([[1.5, -2.0]])
    noise = jax.random.normal(jax.random.key(0), (3, 2, 1, 2))
    for sigmas in (flow.inference_sigmas(1), flow.inference_sigmas(7, shift=5.0)):
        out = samplers.euler_sample(point_oracle(target), noise, sigmas, cond=jnp.zeros(()))
        np.testing.assert_allclose(out, jnp.broadcast_to(target, out.shape), atol=1e-5)


def test_guidance_extrapolates_between_the_cond_and_uncond_points():
    # v_u + g (v_c - v_u) for point oracles a (cond) and b (uncond) is the oracle of b + g (a - b).
    a, b, g = 1.0, -0.5, 3.0
    noise = jax.random.normal(jax.random.key(1), (2, 2, 1, 3))
    for batched in (False, True):
        out = samplers.euler_sample(
            point_oracle(0.0), noise, flow.inference_sigmas(5, 3.0), cond=jnp.full((2,), a)[:, None, None, None],
            uncond=jnp.full((2,), b)[:, None, None, None], guidance_scale=g, batched_guidance=batched,
        )
        np.testing.assert_allclose(out, b + g * (a - b), atol=1e-4)


def test_euler_keeps_a_clean_prefix_that_the_denoiser_sees_at_timestep_zero():
    target = jnp.array([[0.5, -1.0]])
    prefix = jax.random.normal(jax.random.key(3), (3, 1, 1, 2))
    seen_clean = []

    def denoise(x_t, t_frames, cond):
        is_clean = jnp.all(t_frames[:, :1] == 0) & jnp.all(x_t[:, :1] == prefix)
        jax.debug.callback(lambda c: seen_clean.append(bool(c)), is_clean)
        sigma = (t_frames[:, 1:] / 1000.0)[..., None, None]
        rest = (x_t[:, 1:] - target - x_t[:, :1]) / sigma  # the point oracle of target + the prefix
        return jnp.concatenate([jnp.full_like(x_t[:, :1], 1e3), rest], axis=1)  # frame 0: a velocity to ignore

    noise = jax.random.normal(jax.random.key(4), (3, 3, 1, 2))
    out = samplers.euler_sample(denoise, noise, flow.inference_sigmas(6, shift=3.0), None, clean_prefix=prefix)
    np.testing.assert_array_equal(out[:, :1], prefix)
    np.testing.assert_allclose(out[:, 1:], jnp.broadcast_to(target + prefix, out[:, 1:].shape), atol=1e-5)
    assert seen_clean == [True] * 6
    with pytest.raises(ValueError, match="clean_prefix"):
        samplers.euler_sample(denoise, noise, flow.inference_sigmas(2), None, clean_prefix=noise)


def test_euler_with_gaussian_oracle_transports_noise_to_the_data_distribution():
    mu, std = 2.0, 0.5
    noise = jax.random.normal(jax.random.key(2), (4000, 1, 4, 4))
    out = np.asarray(samplers.euler_sample(gaussian_oracle(mu, std), noise, flow.inference_sigmas(200), None))
    assert abs(out.mean() - mu) < 0.02
    assert abs(out.std() - std) < 0.02


def test_consistency_sampler_predicts_x0_and_renoises_with_fresh_noise():
    target = 0.75
    noise = jax.random.normal(jax.random.key(3), (2, 3, 2, 2))
    sigmas = flow.shift_sigma(jnp.array([1.0, 0.75, 0.5, 0.25]), 5.0)
    out = samplers.consistency_sample(point_oracle(target), jax.random.key(4), noise, sigmas, cond=0.0)
    np.testing.assert_allclose(out, target, atol=1e-5)

    # A denoiser whose x0 prediction is half its input (v = x_t / (2 sigma)), recording what it sees.
    # In closed form: step k sees x_k = (1 - s_k) x0_{k-1} + s_k eps_k with x0_{k-1} = x_{k-1} / 2, so the
    # noise it was given is eps_k = (x_k - (1 - s_k) x_{k-1} / 2) / s_k, which must be fresh N(0, 1) noise
    # each step: unit variance, uncorrelated with the starting noise and with every other step's.
    seen = []

    def half_x0(x_t, t_frames, cond):
        jax.debug.callback(lambda x, t: seen.append((np.asarray(x), np.asarray(t))), x_t, t_frames)
        return 0.5 * x_t / (t_frames / 1000.0)[..., None, None]

    start = jax.random.normal(jax.random.key(5), (2, 3, 32, 32))
    got = np.asarray(samplers.consistency_sample(half_x0, jax.random.key(6), start, sigmas, cond=None))
    levels = np.asarray(sigmas)
    assert len(seen) == 4
    for (_, t), s in zip(seen, levels):
        np.testing.assert_allclose(t, np.full((2, 3), 1000 * s), rtol=1e-6)
    np.testing.assert_array_equal(seen[0][0], start)
    np.testing.assert_allclose(got, 0.5 * seen[-1][0], rtol=1e-6)  # the output is the last x0 prediction
    drawn = [np.asarray(start).ravel()]
    for k in range(1, 4):
        drawn.append(((seen[k][0] - (1 - levels[k]) * 0.5 * seen[k - 1][0]) / levels[k]).ravel())
    assert all(abs(e.std() - 1) < 0.05 and abs(e.mean()) < 0.05 for e in drawn[1:])
    correlations = np.corrcoef(np.stack(drawn))
    assert np.all(np.abs(correlations[~np.eye(4, dtype=bool)]) < 0.05), correlations


def test_bad_schedule_raises():
    with pytest.raises(ValueError, match="sigmas"):
        samplers.euler_sample(point_oracle(0.0), jnp.zeros((1, 1, 1, 1)), jnp.array([1.0]), None)
