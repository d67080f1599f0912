"""The causal student's pieces shared by its two training stages (ode_init.py, self_forcing.py).

The student is the teacher's WanDiT run block-causally over chunks of `frames_per_chunk` latent
frames. Latent 0 is the given first image, clean at timestep 0 (the sink). Every chunk is
conditioned as latent(s) 1.. of a teacher clip that starts at the *reference frame*, the newest pixel
frame the stream already has (the last pixel frame of the previous chunk; the first image for chunk 1):
its Plücker rays are the teacher's for that clip (`clip_conditions`), and its control and turn-warp
channels that clip's, zeros, or those of the clip from the first image (`reference_mode`). So the
camera input of chunk 10,000 is in the range of chunk 1, keys already in the cache never change, and
the DMD teacher can be given any generated chunk's last frame as its clean first frame with the
conditioning it was trained on (self_forcing.py).

`rollout` generates a stream with the student's own KV cache (no teacher forcing): per chunk K
few-step denoising levels (Self-Forcing's consistency sampler), optionally leaving at a given exit
level with gradients only through that one forward, then a t = 0 refresh that writes the clean
chunk's keys (without gradient), and a streaming VAE decode of the chunk to get the next reference frame.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from worldscape_jax.diffusion import flow
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.conditioning import (clip_camera_input, first_frame_conditions, low_pass, noised_control,
                                                reference_conditions)
from worldscape_jax.models.dit import Causal, build_dit
from worldscape_jax.streaming.config import REFERENCES, from_student
from worldscape_jax.streaming.maco import MacoConfig, MacoPolicy
from worldscape_jax.streaming.policy import CacheLayout
from worldscape_jax.streaming.rolling import RollingPolicy
from worldscape_jax.inference.teacher import camera_rays, clip_tokens, text_context, uses_turn_warp


def denoising_sigmas(config) -> Float[Array, "k"]:
    """The student's K noise levels: Self-Forcing's [1, .75, .5, .25] warped by `config.student.shift`."""
    s = config.student
    return flow.shift_sigma(jnp.asarray(s.denoising_levels, jnp.float32), float(s.shift))


def pixels_per_chunk(config) -> int:
    return config.model.frames_per_chunk * config.model.vae_stride[0]


def clip_conditions(vae, config, ref_frame: Float[Array, "b 1 h w 3"], c2w: Float[Array, "b f 4 4"],
                    intrinsics: Float[Array, "b f 4"]):
    """The teacher's conditioning of a clip that starts at `ref_frame`: (cond [B, T, h, w, C], rays [B, T, ...]).

    cond = [control | first-frame latent | turn warp] (the warp only when the DiT has it); rays are relative
    to the clip's first camera. Pixel frames after the first are never read (the control video is black).
    """
    vae_params, vae_config = vae
    cond = reference_conditions(vae_params, vae_config, ref_frame, c2w, intrinsics, turn_warp=uses_turn_warp(config))
    return cond, camera_rays(config, c2w, intrinsics)


def reference_latent(cond: Float[Array, "b t h w c"], vae_config) -> Float[Array, "b 1 h w z"]:
    """The clean first-frame latent that `clip_conditions` put in channels [z, 2z) of latent 0."""
    return cond[:, :1, ..., vae_config.z_dim:2 * vae_config.z_dim]


def reference_mode(config) -> str:
    """How generated chunks see pixels: `config.student.reference` (older exports: newest_frame).

    newest_frame: each chunk's control, first-frame and turn-warp channels are those of a teacher clip
      that starts at the newest decoded frame (one VAE encode per chunk). Measured on 401-frame streams
      (BENCHMARKS.md, "Long streams"), it feeds every chunk's errors into the next chunk's conditioning
      through a decode and re-encode, and the stream drifts to noise within ~30 frames (an oracle
      ground-truth reference frame removes the drift).
    none: chunks get zero conditioning channels (the teacher's "image dropped" input) and see the past
      only through the KV cache, whose sink holds the given image for ever. No VAE encode per chunk.
    first_frame: each chunk's channels are those of a teacher clip from the stream's given first frame at
      the first camera, the chunk standing as its latent 1: the turn warp shows the first frame turned
      by the rotation since the start (what the teacher follows turns by), and nothing generated is
      re-encoded, so no error loops back. One VAE encode per chunk. Scaled by
      `conditioning.anchor_weight` of the chunk's last camera (`reference_reach`, `reference_reach_deg`):
      far from the start the warp is stale or mostly outside the first view, and fades to zero channels.
    In every mode the camera rays are relative to the newest frame (the pixel frame before the chunk).
    """
    mode = config.student.get("reference", "newest_frame")
    if mode not in REFERENCES:
        raise ValueError(f"config.student.reference: {mode!r} is unknown; expected one of {REFERENCES}")
    return mode


def chunk_conditions(vae, config, ref_frame, c2w, intrinsics, rng=None, first=None):
    """Conditioning of one chunk over c2w [B, 1 + 4c, 4, 4] (the newest frame's camera, then the chunk's):
    latents 1.. of the clip from `ref_frame` (reference "newest_frame"), zero channels of that shape
    ("none"), or latents 1.. of the clip from `first` = (the stream's first frame [B, 1, H, W, 3], its
    camera [B, 4, 4]) over [its camera, the chunk's] ("first_frame"); the rays are those of c2w in every
    mode. With `rng` and `reference_noise` > 0 a newest-frame reference's control channels get that noise
    (a stream's chunks and a rollout's do; the ODE pairs, written once, do not). With `reference_blur` > 1
    a newest-frame reference is low-passed first (every caller)."""
    mode = reference_mode(config)
    rays = camera_rays(config, c2w, intrinsics)[:, 1:]
    if mode == "none":
        _, vae_config = vae
        b, c = ref_frame.shape[0], config.model.frames_per_chunk
        h, w = ref_frame.shape[2] // vae_config.spatial_factor, ref_frame.shape[3] // vae_config.spatial_factor
        return jnp.zeros((b, c, h, w, config.model.in_dim - config.model.out_dim), ref_frame.dtype), rays
    if mode == "first_frame":
        if first is None:
            raise ValueError("student.chunk_conditions: reference 'first_frame' needs first=(the stream's first frame, "
                             "its camera)")
        first_frame, first_c2w = first
        stream = from_student(config)
        cond = first_frame_conditions(*vae, first_frame, first_c2w, c2w[:, 1:], intrinsics,
                                      turn_warp=uses_turn_warp(config),
                                      drop_outside=stream.reference_outside == "dropped",
                                      reach=stream.reference_reach, reach_deg=stream.reference_reach_deg)
        return cond, rays
    stream = from_student(config)  # the stream's own reading (and checks) of reference_blur and reference_noise
    cond, _ = clip_conditions(vae, config, low_pass(ref_frame, stream.reference_blur), c2w, intrinsics)
    cond = cond[:, 1:]
    if rng is not None:
        cond = noised_control(cond, vae[1].z_dim, stream.reference_noise, rng)
    return cond, rays


def chunk_windows(x: Array, num_chunks: int, step: int, length: int) -> Array:
    """[B, F, ...] -> [N, B, length, ...]: windows starting at 0, step, 2 step, ... (static slices)."""
    return jnp.stack([x[:, i * step:i * step + length] for i in range(num_chunks)])


def apply_dit(params, config, x, timesteps, cond, rays, **kwargs):
    """The DiT's velocity (and with a cache its chunk's keys and values)."""
    b = x.shape[0]
    return build_dit(config.model).apply({"params": params}, x, timesteps, text_context(config, b),
                                         cond=cond, camera=rays, clip=clip_tokens(config, b), **kwargs)


def causal_spec(config) -> Causal:
    """Block-causal attention of the student over a whole sequence, as the cache would give it."""
    s = config.student
    window = s.cache_slots - s.sink_frames + 1 if s.cache_slots else None
    return Causal(window=None if window is None else window // config.model.frames_per_chunk,
                  sink=s.sink_frames // config.model.frames_per_chunk)


def cache_layout(config, batch: int, latent_hw: tuple[int, int]) -> CacheLayout:
    """One latent frame's keys and values across the student's DiT (float32)."""
    m = build_dit(config.model).cfg
    tokens = (latent_hw[0] // m.patch_size[1]) * (latent_hw[1] // m.patch_size[2])
    return CacheLayout(m.num_layers, batch, tokens, m.num_heads, m.head_dim)


def rollout_policy(config):
    """The KV cache of the student's rollouts: `config.student.cache` "rolling" (the default: the sink and
    the newest frames, `cache_slots` in all) or "maco" (streaming/maco.py sized by the `maco` section),
    so that a student meant to stream with MACO is trained with memory entries in its context (issue 18)."""
    s = config.student
    mode = s.get("cache", "rolling")
    if mode == "rolling":
        return RollingPolicy(int(s.cache_slots), int(s.sink_frames))
    if mode == "maco":
        if "maco" not in config:
            raise ValueError("config.student.cache is 'maco' but the config has no maco section (local, budget, "
                             "select, tau_mdl, alpha, lambda_, positions)")
        return MacoPolicy(MacoConfig.from_config(config.maco), config.model.frames_per_chunk)
    raise ValueError(f"config.student.cache: {mode!r} is unknown; expected 'rolling' or 'maco'")


def new_cache(config, batch: int, latent_hw: tuple[int, int]):
    """An empty rolling cache of `config.student.cache_slots` frames."""
    s = config.student
    return RollingPolicy(int(s.cache_slots), int(s.sink_frames)).init(cache_layout(config, batch, latent_hw))


def _chunk_x0(params, config, x, sigma, cond, rays, cache, start):
    t = jnp.full(x.shape[:2], flow.sigma_to_timestep(sigma), jnp.float32)
    v, _ = apply_dit(params, config, x, t, cond, rays, cache=cache, start_frame=start)
    return flow.x0_from_velocity(x, v, jnp.broadcast_to(sigma, x.shape[:2]))


def denoise_chunk(params, config, noise, cond, rays, cache, start, rng, exit_level):
    """x0 of one chunk after the few-step sampler leaves at level `exit_level` (a traced int).

    Levels before the exit run on stop-gradient params; only the exit forward carries gradients.
    """
    sigmas = denoising_sigmas(config)
    frozen = jax.lax.stop_gradient(params)
    keys = jax.random.split(rng, sigmas.shape[0])

    def level(i, x):
        x0 = _chunk_x0(frozen, config, x, sigmas[i], cond, rays, cache, start)
        eps = jax.random.normal(keys[i], x.shape, x.dtype)
        return (1.0 - sigmas[i + 1]) * x0 + sigmas[i + 1] * eps

    x_exit = jax.lax.stop_gradient(jax.lax.fori_loop(0, exit_level, level, noise))
    return _chunk_x0(params, config, x_exit, sigmas[exit_level], cond, rays, cache, start)


def refresh(params, config, policy, policy_state, context, x0, cond, rays, start, pose):
    """Write the clean chunk's keys and values (t = 0, over the chunk's `context`) through the cache
    policy, without gradient."""
    x0 = jax.lax.stop_gradient(x0)
    _, (k, v) = apply_dit(jax.lax.stop_gradient(params), config, x0, jnp.zeros(x0.shape[:2]), cond, rays,
                          cache=context, start_frame=start)
    return policy.update(policy_state, k, v, start, pose)


def decode_chunk(vae, decode_cache, latents):
    """Stream-decode a chunk's latents [B, c, h, w, z]: (its pixel frames [B, P, H, W, 3], new cache)."""
    vae_params, vae_config = vae
    frames = []
    for i in range(latents.shape[1]):
        video, _, decode_cache = vae_lib.decode_step(vae_params, decode_cache, latents[:, i:i + 1], vae_config)
        frames.append(video)
    return jnp.concatenate(frames, axis=1), decode_cache


def rollout(params, config, vae, first_frame, c2w, intrinsics, rng, exit_level=None):
    """Autoregressive generation over the student's own cache.

    first_frame [B, 1, H, W, 3] in [-1, 1]; c2w [B, 1 + 4 c N, 4, 4] for N chunks of c latent frames.
    exit_level: None runs every level (inference); an int array leaves there (training).
    Returns (latents [B, 1 + c N, h, w, z] with latent 0 the first image's,
             ref_frames [N, B, 1, H, W, 3]: the newest frame before each chunk, which a newest-frame chunk
             is conditioned on and each DMD window starts at).
    """
    vae_params, vae_config = vae
    c, p = config.model.frames_per_chunk, pixels_per_chunk(config)
    b, frames = c2w.shape[:2]
    if (frames - 1) % p:
        raise ValueError(f"student rollout: c2w has {frames} frames; expected 1 + {p} * chunks")
    num_chunks = (frames - 1) // p
    k = denoising_sigmas(config).shape[0]
    exit_level = jnp.asarray(k - 1 if exit_level is None else exit_level, jnp.int32)
    sg_vae = (jax.lax.stop_gradient(vae_params), vae_config)

    cond0, rays0 = clip_conditions(sg_vae, config, first_frame, c2w[:, :1 + p], intrinsics[:, :1 + p])
    latent0 = reference_latent(cond0, vae_config)
    policy = rollout_policy(config)
    state = policy.init(cache_layout(config, b, latent0.shape[2:4]))
    state = refresh(params, config, policy, state, policy.context(state, c2w[:, 0]), latent0, cond0[:, :1],
                    rays0[:, :1], 0, c2w[:, 0])
    _, decode_cache = decode_chunk(sg_vae, vae_lib.init_decode_cache(vae_config, b, latent0.shape[2:4]), latent0)

    def one_chunk(carry, inputs):
        state, decode_cache, ref_frame = carry
        index, chunk_c2w, chunk_intrinsics, key = inputs
        start = 1 + c * index
        cond, rays = chunk_conditions(sg_vae, config, ref_frame, chunk_c2w, chunk_intrinsics,
                                      rng=jax.random.fold_in(key, 1), first=(first_frame, c2w[:, 0]))
        cond, rays = jax.lax.stop_gradient((cond, rays))
        pose = chunk_c2w[:, -1]
        context = policy.context(state, pose)
        noise_key, level_key = jax.random.split(key)
        noise = jax.random.normal(noise_key, (b, c, *latent0.shape[2:]), latent0.dtype)
        x0 = denoise_chunk(params, config, noise, cond, rays, context, start, level_key, exit_level)
        state = refresh(params, config, policy, state, context, x0, cond, rays, start, pose)
        frames, decode_cache = decode_chunk(sg_vae, decode_cache, jax.lax.stop_gradient(x0))
        return (state, decode_cache, frames[:, -1:]), (x0, ref_frame)

    inputs = (jnp.arange(num_chunks), chunk_windows(c2w, num_chunks, p, 1 + p),
              chunk_windows(intrinsics, num_chunks, p, 1 + p), jax.random.split(rng, num_chunks))
    _, (chunks, ref_frames) = jax.lax.scan(one_chunk, (state, decode_cache, first_frame), inputs)
    chunks = jnp.moveaxis(chunks, 0, 1).reshape(b, num_chunks * c, *latent0.shape[2:])
    return jnp.concatenate([latent0, chunks], axis=1), ref_frames


def sequence_rays(config, c2w, intrinsics):
    """The student's rays for a whole sequence [B, 1 + c N, ...]: latent 0 its own, each chunk relative to
    the pixel frame before it (what `rollout` feeds chunk by chunk)."""
    d, m = config.data, config.model
    return clip_camera_input(c2w, intrinsics, d.height, d.width, m.vae_stride[0], m.frames_per_chunk,
                             with_ray_turn=m.camera.get("ray_turn", False))


def generate(params, config, vae, first_frames, c2w, intrinsics, rng):
    """Videos in [-1, 1] [B, F, H, W, 3] of any 1 + 4 c N frames: the student's block-causal rollout over its
    own cache (every denoising level), decoded. The stream-floor's `streaming.step` is the streaming form."""
    latents, _ = rollout(params, config, vae, first_frames, c2w, intrinsics, rng)
    return vae_lib.decode(vae[0], latents, vae[1])


def is_student(config) -> bool:
    return config.stage in ("ode_init", "self_forcing")
