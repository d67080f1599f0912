"""Wan's rectified flow: shifted sigmas, noising, the velocity target, and timestep sampling.

Conventions (ARCHITECTURE.md, "Noise"): sigma in [0, 1], Wan's timestep t = 1000 * sigma,
x_t = (1 - sigma) * x0 + sigma * eps, and the network predicts v = eps - x0. Noise levels are
per frame, `[B, F]`, so that chunks at different noise levels share one model call; a video is
`[B, F, H, W, C]` (or any `[B, F, ...]` latent) and sigmas broadcast over the trailing axes.

The shift warps a sigma towards the noisy end: sigma' = shift * s / (1 + (shift - 1) * s). In
logit space it is a translation by log(shift), which is why shifted logit-normal sampling is again
logit-normal; the tests rely on that identity.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

NUM_TRAIN_TIMESTEPS = 1000.0
Distribution = Literal["uniform", "logit_normal"]


def shift_sigma(sigma: Float[Array, "..."], shift: float) -> Float[Array, "..."]:
    """Warp sigma in [0, 1] with Wan's timestep shift; shift=1 is the identity, shift>1 adds noise."""
    if shift <= 0:
        raise ValueError(f"flow.shift_sigma: shift must be > 0, got {shift}")
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sigma_to_timestep(sigma: Float[Array, "..."]) -> Float[Array, "..."]:
    """Wan's model timestep: t = 1000 * sigma."""
    return NUM_TRAIN_TIMESTEPS * sigma


def _broadcast_frames(sigma: Float[Array, "b f"], x: Float[Array, "b f ..."]) -> Array:
    """Reshape per-frame sigmas [B, F] so they broadcast against x [B, F, ...]."""
    if sigma.shape != x.shape[:2]:
        raise ValueError(
            f"flow: per-frame sigma must have shape [B, F] = {x.shape[:2]} to match x {x.shape}, "
            f"got {sigma.shape}"
        )
    return sigma.reshape(sigma.shape + (1,) * (x.ndim - 2)).astype(x.dtype)


def add_noise(
    x0: Float[Array, "b f ..."], eps: Float[Array, "b f ..."], sigma: Float[Array, "b f"]
) -> Float[Array, "b f ..."]:
    """x_t = (1 - sigma) * x0 + sigma * eps, with one sigma per frame."""
    if x0.shape != eps.shape:
        raise ValueError(f"flow.add_noise: x0 {x0.shape} and eps {eps.shape} must have the same shape")
    s = _broadcast_frames(sigma, x0)
    return (1.0 - s) * x0 + s * eps


def velocity_target(x0: Float[Array, "b f ..."], eps: Float[Array, "b f ..."]) -> Float[Array, "b f ..."]:
    """The flow-matching target v = eps - x0 (independent of sigma: the paths are straight)."""
    return eps - x0


def x0_from_velocity(
    x_t: Float[Array, "b f ..."], v: Float[Array, "b f ..."], sigma: Float[Array, "b f"]
) -> Float[Array, "b f ..."]:
    """Invert the noising given a velocity: x0 = x_t - sigma * v."""
    return x_t - _broadcast_frames(sigma, x_t) * v


def eps_from_velocity(
    x_t: Float[Array, "b f ..."], v: Float[Array, "b f ..."], sigma: Float[Array, "b f"]
) -> Float[Array, "b f ..."]:
    """The noise implied by a velocity: eps = x_t + (1 - sigma) * v."""
    return x_t + (1.0 - _broadcast_frames(sigma, x_t)) * v


@dataclasses.dataclass(frozen=True)
class TimestepSampling:
    """How training draws noise levels.

    distribution: "uniform" (s ~ U(0, 1)) or "logit_normal" (s = sigmoid(mean + std * n)).
    shift: Wan's shift applied after drawing (1 = none).
    per_frame: one sigma per frame ([B, F] independent draws, diffusion forcing) or one per sample
      shared by all its frames (the bidirectional teacher).
    min_sigma / max_sigma: the drawn sigma is rescaled into [min_sigma, max_sigma] before the shift.
    """

    distribution: Distribution = "uniform"
    shift: float = 1.0
    per_frame: bool = False
    logit_mean: float = 0.0
    logit_std: float = 1.0
    min_sigma: float = 0.0
    max_sigma: float = 1.0

    def __post_init__(self):
        if self.distribution not in ("uniform", "logit_normal"):
            raise ValueError(
                f"TimestepSampling.distribution must be 'uniform' or 'logit_normal', got {self.distribution!r}"
            )
        if self.shift <= 0:
            raise ValueError(f"TimestepSampling.shift must be > 0, got {self.shift}")
        if self.logit_std <= 0:
            raise ValueError(f"TimestepSampling.logit_std must be > 0, got {self.logit_std}")
        if not 0.0 <= self.min_sigma < self.max_sigma <= 1.0:
            raise ValueError(
                "TimestepSampling needs 0 <= min_sigma < max_sigma <= 1, "
                f"got min_sigma={self.min_sigma}, max_sigma={self.max_sigma}"
            )


def sample_sigmas(rng: jax.Array, batch: int, frames: int, sampling: TimestepSampling) -> Float[Array, "b f"]:
    """Draw training noise levels [B, F] (float32) according to `sampling`."""
    draw_shape = (batch, frames) if sampling.per_frame else (batch, 1)
    if sampling.distribution == "uniform":
        base = jax.random.uniform(rng, draw_shape, jnp.float32)
    else:
        normal = jax.random.normal(rng, draw_shape, jnp.float32)
        base = jax.nn.sigmoid(sampling.logit_mean + sampling.logit_std * normal)
    base = sampling.min_sigma + (sampling.max_sigma - sampling.min_sigma) * base
    sigma = shift_sigma(base, sampling.shift)
    return jnp.broadcast_to(sigma, (batch, frames))


def inference_sigmas(num_steps: int, shift: float = 1.0) -> Float[Array, "n"]:
    """The sampling schedule: num_steps + 1 shifted sigmas from 1 down to 0 (linear before the shift)."""
    if num_steps < 1:
        raise ValueError(f"flow.inference_sigmas: num_steps must be >= 1, got {num_steps}")
    return shift_sigma(jnp.linspace(1.0, 0.0, num_steps + 1, dtype=jnp.float32), shift)


def flow_matching_loss(
    v_pred: Float[Array, "b f ..."],
    x0: Float[Array, "b f ..."],
    eps: Float[Array, "b f ..."],
    frame_weight: Float[Array, "b f"] | None = None,
) -> Float[Array, ""]:
    """Mean squared error between predicted and target velocity, computed in float32.

    frame_weight (optional, [B, F]) weights each frame, e.g. 0 for a conditioning frame that is
    given rather than generated; the loss is normalised by the total weight.
    """
    if v_pred.shape != x0.shape:
        raise ValueError(f"flow.flow_matching_loss: v_pred {v_pred.shape} must match x0 {x0.shape}")
    err = jnp.square(v_pred.astype(jnp.float32) - velocity_target(x0, eps).astype(jnp.float32))
    per_frame = err.reshape(err.shape[:2] + (-1,)).mean(axis=-1)
    if frame_weight is None:
        return per_frame.mean()
    if frame_weight.shape != per_frame.shape:
        raise ValueError(
            f"flow.flow_matching_loss: frame_weight must be [B, F] = {per_frame.shape}, got {frame_weight.shape}"
        )
    w = frame_weight.astype(jnp.float32)
    return (per_frame * w).sum() / jnp.maximum(w.sum(), 1e-8)
