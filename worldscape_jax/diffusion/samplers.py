"""Samplers over a pure velocity model `denoise_fn(x_t, t_frames, cond) -> v`.

* `euler_sample`: the bidirectional teacher's ODE sampler, Euler steps along the flow
  dx/dsigma = v from sigma = 1 to 0, with classifier-free guidance v = v_u + g * (v_c - v_u).
* `consistency_sample`: Self-Forcing's few-step sampler: at each level predict x0 = x_t - sigma * v,
  then re-noise that x0 with fresh noise to the next level; the last prediction is the output.

`t_frames` is Wan's timestep (1000 * sigma) per frame, shape [B, F]. `cond` is any pytree the
denoiser understands; the samplers never look inside it except to stack cond/uncond on the batch
axis when `batched_guidance` is set (then every leaf must have the batch as its leading axis).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from worldscape_jax.diffusion.flow import sigma_to_timestep, x0_from_velocity

DenoiseFn = Callable[[Array, Array, Any], Array]


def _frame_timesteps(sigma: Array, x: Array) -> Float[Array, "b f"]:
    """Broadcast a scalar sigma to Wan timesteps [B, F] for x [B, F, ...]."""
    return jnp.broadcast_to(sigma_to_timestep(sigma), x.shape[:2]).astype(jnp.float32)


def guided_velocity(
    denoise_fn: DenoiseFn,
    x_t: Array,
    t_frames: Array,
    cond: Any,
    uncond: Any | None,
    guidance_scale: float,
    batched_guidance: bool = False,
) -> Array:
    """Classifier-free guided velocity v_u + g * (v_c - v_u); only v_c when uncond is None or g == 1."""
    if uncond is None or guidance_scale == 1.0:
        return denoise_fn(x_t, t_frames, cond)
    if batched_guidance:
        both = jax.tree.map(lambda c, u: jnp.concatenate([c, u], axis=0), cond, uncond)
        v = denoise_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t_frames, t_frames]), both)
        v_cond, v_uncond = jnp.split(v, 2, axis=0)
    else:
        v_cond = denoise_fn(x_t, t_frames, cond)
        v_uncond = denoise_fn(x_t, t_frames, uncond)
    return v_uncond + guidance_scale * (v_cond - v_uncond)


def _check_schedule(sigmas: Array, name: str) -> None:
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"samplers.{name}: sigmas must be a 1-D schedule of length >= 2, got shape {sigmas.shape}")


def euler_sample(
    denoise_fn: DenoiseFn,
    noise: Float[Array, "b f ..."],
    sigmas: Float[Array, "n"],
    cond: Any,
    uncond: Any | None = None,
    guidance_scale: float = 1.0,
    batched_guidance: bool = False,
    clean_prefix: Float[Array, "b p ..."] | None = None,
) -> Float[Array, "b f ..."]:
    """Integrate the flow from x = noise at sigmas[0] to sigmas[-1] with Euler steps.

    sigmas: decreasing schedule (e.g. `flow.inference_sigmas(50, shift=5)`, from 1 to 0).
    Each step is x <- x + (sigma_next - sigma) * v(x, sigma). Runs as one `lax.scan`.
    clean_prefix: P given frames (e.g. the first-frame latent of image-to-video). They stay clean:
    the denoiser sees them with timestep 0 at every step and the output starts with them.
    """
    _check_schedule(sigmas, "euler_sample")
    if clean_prefix is not None and (clean_prefix.shape[0] != noise.shape[0] or clean_prefix.shape[2:] != noise.shape[2:]
                                     or clean_prefix.shape[1] >= noise.shape[1]):
        raise ValueError(f"samplers.euler_sample: clean_prefix {clean_prefix.shape} must be [B, P, ...] like noise "
                         f"{noise.shape} with P < {noise.shape[1]} frames")

    prefix = 0 if clean_prefix is None else clean_prefix.shape[1]

    def hold_prefix(x):
        return x if clean_prefix is None else x.at[:, :prefix].set(clean_prefix.astype(x.dtype))

    def step(x, sigma_pair):
        sigma, sigma_next = sigma_pair
        x = hold_prefix(x)
        t_frames = _frame_timesteps(sigma, x).at[:, :prefix].set(0.0)
        v = guided_velocity(denoise_fn, x, t_frames, cond, uncond, guidance_scale, batched_guidance)
        return (x + (sigma_next - sigma).astype(x.dtype) * v).astype(x.dtype), None

    pairs = (sigmas[:-1], sigmas[1:])
    x, _ = jax.lax.scan(step, noise, pairs)
    return hold_prefix(x)


def consistency_sample(
    denoise_fn: DenoiseFn,
    rng: jax.Array,
    noise: Float[Array, "b f ..."],
    sigmas: Float[Array, "k"],
    cond: Any,
    uncond: Any | None = None,
    guidance_scale: float = 1.0,
) -> Float[Array, "b f ..."]:
    """Self-Forcing's few-step sampler: predict x0 at each level, re-noise to the next.

    sigmas: the K decreasing noise levels visited (no trailing 0), e.g. the shift-5 warp of
    [1, 0.75, 0.5, 0.25]. Returns the x0 predicted at the last level.
    """
    if sigmas.ndim != 1 or sigmas.shape[0] < 1:
        raise ValueError(f"samplers.consistency_sample: sigmas must be a non-empty 1-D array, got {sigmas.shape}")
    next_sigmas = jnp.concatenate([sigmas[1:], jnp.zeros((1,), sigmas.dtype)])
    keys = jax.random.split(rng, sigmas.shape[0])

    def step(x, inputs):
        sigma, sigma_next, key = inputs
        t = _frame_timesteps(sigma, x)
        v = guided_velocity(denoise_fn, x, t, cond, uncond, guidance_scale)
        x0 = x0_from_velocity(x, v, jnp.broadcast_to(sigma, x.shape[:2]))
        eps = jax.random.normal(key, x.shape, x.dtype)
        renoised = (1.0 - sigma_next).astype(x.dtype) * x0 + sigma_next.astype(x.dtype) * eps
        return renoised, x0

    _, x0_per_step = jax.lax.scan(step, noise, (sigmas, next_sigmas, keys))
    return x0_per_step[-1]
