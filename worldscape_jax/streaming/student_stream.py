"""The trained student streamed along a given camera path, over any cache policy (MACO, rolling, full).

`stream.step` is the floor's stream, driven by held keys (0.08 units and 3 degrees per latent frame);
the revisit paths (streaming/revisit.py) are camera paths that keys cannot always reach (an orbit at
3.6 degrees per chunk, SynthWorld's own there-and-back). This module runs the student's own per-chunk
computation (training/stages/student.py: each chunk conditioned as its `reference_mode` says, its own K
noise levels) chunk by chunk along c2w, with the KV cache replaced by a `CachePolicy`: per chunk the
policy's context for the chunk's pose, the K levels over it, the t = 0 refresh whose keys go to
`policy.update`, and the streaming VAE decode whose last frame is the newest frame. With
`RollingPolicy(cache_slots, sink_frames)` it is `student.generate` frame for frame (tests/streaming/test_revisit_eval.py). A c2w-driven step in the floor would replace it.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.dit import build_dit
from worldscape_jax.streaming.policy import CacheLayout, CachePolicy
from worldscape_jax.training.stages import student


@flax.struct.dataclass
class StudentStreamState:
    """Between chunks: the policy's state, the VAE decoder's cache, the newest frame, the next latent index,
    and the first frame with its camera (a first-frame student's reference)."""

    policy_state: object
    decode_cache: object
    ref_frame: Float[Array, "b 1 h w 3"]
    frame: Int[Array, ""]
    first_frame: Float[Array, "b 1 h w 3"]
    first_c2w: Float[Array, "b 4 4"]


def layout(config, batch: int, latent_hw: tuple[int, int]) -> CacheLayout:
    """The cache layout of the student's DiT at latents of size latent_hw (in the DiT's dtype)."""
    return dataclasses.replace(student.cache_layout(config, batch, latent_hw),
                               dtype=jnp.dtype(build_dit(config.model).cfg.dtype))


def make_stream(params, config, vae, policy: CachePolicy):
    """(init, step), both jitted once for the policy:

    init(first_frame [B, 1, H, W, 3], c2w [B, 1 + p, 4, 4], intrinsics [B, 1 + p, 4]) -> state: latent 0,
      the first frame (the sink), conditioned as in `student.rollout`, inserted through the policy.
    step(state, c2w, intrinsics, rng) -> (state, frames [B, p, H, W, 3] in [-1, 1]): one chunk, c2w and
      intrinsics being the reference frame's camera followed by the chunk's p pixel frames'.
    """
    vae_params, vae_config = vae
    vae_sg = (jax.lax.stop_gradient(vae_params), vae_config)
    k_levels = int(student.denoising_sigmas(config).shape[0])
    c = config.model.frames_per_chunk

    @jax.jit
    def init(first_frame, c2w, intrinsics) -> StudentStreamState:
        cond0, rays0 = student.clip_conditions(vae_sg, config, first_frame, c2w, intrinsics)
        latent0 = student.reference_latent(cond0, vae_config)
        policy_state = policy.init(layout(config, first_frame.shape[0], latent0.shape[2:4]))
        context = policy.context(policy_state, c2w[:, 0])
        policy_state = student.refresh(params, config, policy, policy_state, context, latent0, cond0[:, :1],
                                       rays0[:, :1], jnp.int32(0), c2w[:, 0])
        _, decode_cache = student.decode_chunk(vae_sg, vae_lib.init_decode_cache(vae_config, first_frame.shape[0],
                                                                                  latent0.shape[2:4]), latent0)
        return StudentStreamState(policy_state, decode_cache, first_frame, jnp.int32(1), first_frame, c2w[:, 0])

    @jax.jit
    def step(state: StudentStreamState, c2w, intrinsics, rng: PRNGKeyArray):
        cond, rays = student.chunk_conditions(vae_sg, config, state.ref_frame, c2w, intrinsics,
                                              rng=jax.random.fold_in(rng, 1), first=(state.first_frame, state.first_c2w))
        pose = c2w[:, -1]
        context = policy.context(state.policy_state, pose)
        noise_key, level_key = jax.random.split(rng)
        noise = jax.random.normal(noise_key, (c2w.shape[0], c, *cond.shape[2:4], vae_config.z_dim))
        x0 = student.denoise_chunk(params, config, noise, cond, rays, context, state.frame, level_key, k_levels - 1)
        policy_state = student.refresh(params, config, policy, state.policy_state, context, x0, cond, rays,
                                       state.frame, pose)
        frames, decode_cache = student.decode_chunk(vae_sg, state.decode_cache, x0)
        state = state.replace(policy_state=policy_state, decode_cache=decode_cache, ref_frame=frames[:, -1:],
                              frame=state.frame + c)
        return state, frames

    return init, step
