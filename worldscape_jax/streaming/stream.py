"""The stream: one pure, jitted function per chunk, from held keys to pixel frames.

    spec = StreamSpec.create(dit_config, vae_config, StreamConfig(), height=64, width=64)
    state = init_stream(params, spec, first_frame, intrinsics, rng)      # the first frame is the sink
    step = jax.jit(stream.step, donate_argnums=1)                        # compiles once
    for held in keys:                                                    # any number of chunks
        state, frames = step(params, state, held)                        # frames [B, 4F, H, W, 3]

`params = {"dit": student params, "vae": VAE params}`. `held` is a bool array [B, F, 8] over W A S D Q E
R F (geometry/actions.py: 0.08 units and 3 degrees per latent frame), F = the DiT's frames_per_chunk.

For one chunk the step: turns the held keys into the chunk's camera path; computes its camera input
relative to the newest frame the stream has (`conditioning.chunk_camera_input`); runs the student's K
denoising steps over the cache (Self-Forcing's consistency sampler: predict x0, re-noise to the next
level); runs the clean chunk once more at t = 0 and inserts its keys and values through the cache
policy; decodes the chunk with the streaming VAE decoder; and advances the pose. The static part of
the stream (`StreamSpec`) rides in the state as a non-pytree field, so the jitted step takes exactly
(params, state, held), and every chunk after the first has the same shapes: one compilation for a
stream of any length, with no host round-trip inside it.

Conditioning: the DiT's extra input channels are none (in_dim = 16), the Fun-Control layout
[control | first frame] (in_dim = 48), or that layout plus the turn warp (in_dim = 64). They are filled
as the student was trained (`StreamConfig.reference`, training/stages/student.py): as latent 1.. of a
teacher clip that starts at the newest pixel frame the stream has (`conditioning.reference_conditions`
of the previous chunk's last decoded frame over the chunk's camera path), as latent 1.. of the clip from
the stream's first frame at its start camera, or with zeros. The rays are relative to the newest frame
in every mode, so the camera input has the same range at chunk 1 and chunk 10,000.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from worldscape_jax.diffusion.samplers import consistency_sample
from worldscape_jax.geometry.actions import ActionConfig, advance_heading, held_keys_deltas
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.conditioning import (chunk_camera_input, first_frame_conditions, low_pass, noised_control,
                                                reference_conditions)
from worldscape_jax.models.dit import Causal, DiTConfig, WanDiT
from worldscape_jax.models.vae_config import VAEConfig
from worldscape_jax.streaming.config import StreamConfig
from worldscape_jax.streaming.policy import CacheLayout, CachePolicy
from worldscape_jax.streaming.rolling import RollingPolicy


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """Everything static about a stream (hashable): the models' shapes, the stream settings, the policy."""

    dit: DiTConfig
    vae: VAEConfig
    stream: StreamConfig
    policy: CachePolicy
    height: int
    width: int
    actions: ActionConfig = ActionConfig()

    @classmethod
    def create(cls, dit: DiTConfig, vae: VAEConfig, stream: StreamConfig, height: int, width: int,
               policy: CachePolicy | None = None) -> "StreamSpec":
        """A spec with the rolling policy of `stream` unless another policy (MACO) is given."""
        policy = policy or RollingPolicy(stream.cache_frames, stream.sink_frames)
        spec = cls(dit, vae, stream, policy, height, width, ActionConfig(frames_per_step=vae.temporal_factor))
        spec.check()
        return spec

    def check(self):
        d = self.dit
        expected = (4 if d.camera_turn_warp else 3) * d.out_dim
        if d.in_dim not in (d.out_dim, expected) or (d.camera_turn_warp and d.in_dim != expected):
            raise ValueError(f"stream: the DiT's in_dim is {d.in_dim}; the floor streams students with no extra "
                             f"channels ({d.out_dim}), [control | first frame] ({3 * d.out_dim}) or, with "
                             f"camera.turn_warp, [control | first frame | turn warp] ({4 * d.out_dim})")
        if d.out_dim != self.vae.z_dim:
            raise ValueError(f"stream: DiT out_dim {d.out_dim} != VAE z_dim {self.vae.z_dim}")
        if tuple(d.vae_stride) != (self.vae.temporal_factor, self.vae.spatial_factor, self.vae.spatial_factor):
            raise ValueError(f"stream: DiT vae_stride {d.vae_stride} does not match the VAE's "
                             f"({self.vae.temporal_factor}, {self.vae.spatial_factor}, {self.vae.spatial_factor})")
        s = self.vae.spatial_factor * d.patch_size[1]
        if self.height % s or self.width % s:
            raise ValueError(f"stream: {self.height}x{self.width} frames must be multiples of {s} (VAE x patch)")

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // self.vae.spatial_factor, self.width // self.vae.spatial_factor

    @property
    def pixel_frames_per_chunk(self) -> int:
        return self.vae.temporal_factor * self.dit.frames_per_chunk

    @property
    def uses_control(self) -> bool:
        return self.dit.in_dim > self.dit.out_dim

    def layout(self, batch: int) -> CacheLayout:
        h, w = self.latent_hw
        tokens = (h // self.dit.patch_size[1]) * (w // self.dit.patch_size[2])
        return CacheLayout(self.dit.num_layers, batch, tokens, self.dit.num_heads, self.dit.head_dim,
                           jnp.dtype(self.dit.dtype))


@flax.struct.dataclass
class StreamState:
    """The stream between chunks (fixed shapes). Poses are c2w, OpenCV axes.

    policy_state: the cache policy's state (the KV cache and what the policy keeps beside it).
    decode_cache: the streaming VAE decoder's cache.
    frame: absolute latent index of the next chunk's first frame.
    c2w: camera of the newest frame (the last pixel frame so far); chunk_c2w: the last chunk's pixel
      frames' cameras (the camera path the play page draws); start_c2w, position, yaw, pitch: the path
      so far, relative to the start pose (geometry/actions.py's integration carried across chunks).
    chunk_latents: the last chunk's clean latents [B, F, h, w, z] (after `init_stream`: the first frame's
      latent in the last place, zeros before it).
    text: the text context (zeros: SynthWorld has no text).
    last_frame: the newest pixel frame [B, 1, H, W, 3] (unclamped decode), the next chunk's reference.
    first_frame: the given first frame [B, 1, H, W, 3], a first-frame student's reference (at start_c2w).
    """

    policy_state: Any
    decode_cache: vae_lib.VAEStreamCache
    rng: PRNGKeyArray
    frame: Int[Array, ""]
    c2w: Float[Array, "b 4 4"]
    chunk_c2w: Float[Array, "b p 4 4"]
    start_c2w: Float[Array, "b 4 4"]
    position: Float[Array, "b 3"]
    yaw: Float[Array, "b"]
    pitch: Float[Array, "b"]
    intrinsics: Float[Array, "b 4"]
    chunk_latents: Float[Array, "b f h w z"]
    text: Float[Array, "b l e"]
    last_frame: Float[Array, "b 1 hh ww 3"]
    first_frame: Float[Array, "b 1 hh ww 3"]
    spec: StreamSpec = flax.struct.field(pytree_node=False)


def cache_roles(state: StreamState) -> Int[Array, "b s"]:
    """What each cache slot holds: policy.EMPTY, SINK, LOCAL or MEMORY, [B, S]."""
    return state.spec.policy.roles(state.policy_state)


def _dit(spec: StreamSpec, params, x, t, text, cond, camera, cache, start_frame, causal):
    return WanDiT(spec.dit).apply({"params": params}, x, t, text, cond=cond, camera=camera, cache=cache,
                                  start_frame=start_frame, causal=causal)


def _camera(spec: StreamSpec, chunk_c2w, reference_c2w, intrinsics):
    if not spec.dit.camera:
        return None
    per_frame = jnp.broadcast_to(intrinsics[:, None], (*chunk_c2w.shape[:2], 4))
    return chunk_camera_input(chunk_c2w, reference_c2w, per_frame, spec.height, spec.width,
                              spec.vae.temporal_factor, with_ray_turn=spec.dit.camera_ray_turn)


def _cond(spec: StreamSpec, vae_params, ref_frame, ref_c2w, chunk_c2w, intrinsics, rng):
    """The conditioning channels of the chunk over `chunk_c2w` [B, P, 4, 4] whose reference frame is
    `ref_frame` at `ref_c2w` (the newest earlier frame, or with reference "first_frame" the first): latents
    1.. of the teacher clip that starts there, with the reference blur and noise a newest-frame student
    was trained with (None without channels)."""
    if not spec.uses_control:
        return None
    per_frame = jnp.broadcast_to(intrinsics[:, None], (chunk_c2w.shape[0], 1 + chunk_c2w.shape[1], 4))
    if spec.stream.reference == "first_frame":
        return first_frame_conditions(vae_params, spec.vae, ref_frame, ref_c2w, chunk_c2w, per_frame,
                                      turn_warp=spec.dit.camera_turn_warp,
                                      drop_outside=spec.stream.reference_outside == "dropped",
                                      reach=spec.stream.reference_reach, reach_deg=spec.stream.reference_reach_deg)
    if spec.stream.reference == "none":  # zero channels: the past comes through the cache only
        h, w = spec.latent_hw
        return jnp.zeros((ref_frame.shape[0], spec.dit.frames_per_chunk, h, w, spec.dit.in_dim - spec.dit.out_dim),
                         ref_frame.dtype)
    c2w = jnp.concatenate([ref_c2w[:, None], chunk_c2w], axis=1)
    cond = reference_conditions(vae_params, spec.vae, low_pass(ref_frame, spec.stream.reference_blur), c2w, per_frame,
                                turn_warp=spec.dit.camera_turn_warp)
    return noised_control(cond[:, 1:], spec.vae.z_dim, spec.stream.reference_noise, rng)


def _check_init(spec: StreamSpec, first_frame, intrinsics, start_c2w):
    b = first_frame.shape[0]
    if first_frame.shape[1:] != (1, spec.height, spec.width, 3):
        raise ValueError(f"init_stream: first_frame must be [B, 1, {spec.height}, {spec.width}, 3] in [-1, 1], got "
                         f"{first_frame.shape}")
    if intrinsics.shape != (b, 4):
        raise ValueError(f"init_stream: intrinsics must be [B={b}, 4] (fx, fy, cx, cy normalised), got "
                         f"{intrinsics.shape}")
    if start_c2w.shape != (b, 4, 4):
        raise ValueError(f"init_stream: start_c2w must be [B={b}, 4, 4], got {start_c2w.shape}")


def init_stream(params: dict, spec: StreamSpec, first_frame: Float[Array, "b 1 h w 3"],
                intrinsics: Float[Array, "b 4"], rng: PRNGKeyArray, *, start_c2w: Float[Array, "b 4 4"] | None = None,
                text: Float[Array, "b l e"] | None = None) -> StreamState:
    """A stream whose latent frame 0 is `first_frame` (clean, t = 0): encoded, put in the cache as the
    sink, and passed through the VAE decoder so that its cache is warm for the first chunk."""
    b = first_frame.shape[0]
    start_c2w = jnp.broadcast_to(jnp.eye(4, dtype=jnp.float32), (b, 4, 4)) if start_c2w is None else start_c2w
    _check_init(spec, first_frame, intrinsics, start_c2w)
    if text is None:
        text = jnp.zeros((b, spec.dit.text_len, spec.dit.text_dim), jnp.float32)
    return _init(params, spec, first_frame, intrinsics.astype(jnp.float32), rng, start_c2w.astype(jnp.float32), text)


@functools.partial(jax.jit, static_argnums=1)
def _init(params, spec: StreamSpec, first_frame, intrinsics, rng, start_c2w, text):
    b = first_frame.shape[0]
    latent = vae_lib.encode(params["vae"], first_frame, spec.vae)
    policy_state = spec.policy.init(spec.layout(b))
    st = spec.vae.temporal_factor
    held_still = jnp.broadcast_to(start_c2w[:, None], (b, st, 4, 4))
    camera = _camera(spec, held_still, start_c2w, intrinsics)
    cond = None
    if spec.uses_control:  # latent 0 of the clip that starts (and stays) at the first frame
        cond = reference_conditions(params["vae"], spec.vae, first_frame, start_c2w[:, None], intrinsics[:, None],
                                    turn_warp=spec.dit.camera_turn_warp)
    t0 = jnp.full((b, 1), spec.stream.context_timestep, jnp.float32)
    _, (k, v) = _dit(spec, params["dit"], latent, t0, text, cond, camera,
                     spec.policy.context(policy_state, start_c2w), 0, None)
    policy_state = spec.policy.update(policy_state, k, v, jnp.int32(0), start_c2w)
    decode_cache = vae_lib.init_decode_cache(spec.vae, b, spec.latent_hw)
    _, _, decode_cache = vae_lib.decode_step(params["vae"], decode_cache, latent, spec.vae, clip=False)
    f = spec.dit.frames_per_chunk
    return StreamState(
        policy_state=policy_state, decode_cache=decode_cache, rng=rng, frame=jnp.int32(1), c2w=start_c2w,
        chunk_c2w=jnp.broadcast_to(start_c2w[:, None], (b, spec.pixel_frames_per_chunk, 4, 4)),
        start_c2w=start_c2w, position=jnp.zeros((b, 3)), yaw=jnp.zeros((b,)), pitch=jnp.zeros((b,)),
        intrinsics=intrinsics, chunk_latents=jnp.zeros((b, f, *latent.shape[2:]), latent.dtype).at[:, -1:].set(latent),
        text=text, last_frame=first_frame, first_frame=first_frame, spec=spec)


def step(params: dict, state: StreamState, held: Bool[Array, "b f 8"]) -> tuple[StreamState, Float[Array, "b p h w 3"]]:
    """One chunk: (the new state, its pixel frames [B, 4F, H, W, 3] in [-1, 1], unclamped). Pure; jit it once."""
    spec = state.spec
    b, f = state.c2w.shape[0], spec.dit.frames_per_chunk
    if held.shape != (b, f, 8):
        raise ValueError(f"stream step: held keys must be bool [B={b}, frames_per_chunk={f}, 8] (W A S D Q E R F), "
                         f"got {held.shape}")
    chunk_c2w, position, yaw, pitch = _advance(spec, state, held)
    camera = _camera(spec, chunk_c2w, state.c2w, state.intrinsics)
    rng, noise_key, sample_key = jax.random.split(state.rng, 3)
    first = spec.stream.reference == "first_frame"
    cond = _cond(spec, params["vae"], state.first_frame if first else state.last_frame,
                 state.start_c2w if first else state.c2w, chunk_c2w, state.intrinsics, jax.random.fold_in(sample_key, 1))
    pose = chunk_c2w[:, -1]
    context = spec.policy.context(state.policy_state, pose)
    causal = Causal()

    def denoise(x, t, _):
        return _dit(spec, params["dit"], x, t, state.text, cond, camera, context, state.frame, causal)[0]

    h, w = spec.latent_hw
    noise = jax.random.normal(noise_key, (b, f, h, w, spec.dit.out_dim), jnp.float32)
    latents = consistency_sample(denoise, sample_key, noise, jnp.asarray(spec.stream.sigmas()), None)
    t_context = jnp.full((b, f), spec.stream.context_timestep, jnp.float32)
    _, (k, v) = _dit(spec, params["dit"], latents, t_context, state.text, cond, camera, context, state.frame, causal)
    policy_state = spec.policy.update(state.policy_state, k, v, state.frame, pose)
    frames, decode_cache = _decode(spec, params["vae"], state.decode_cache, latents)
    state = state.replace(policy_state=policy_state, decode_cache=decode_cache, rng=rng, frame=state.frame + f,
                          c2w=pose, chunk_c2w=chunk_c2w, position=position, yaw=yaw, pitch=pitch,
                          chunk_latents=latents, last_frame=frames[:, -1:])
    return state, frames


def _advance(spec: StreamSpec, state: StreamState, held):
    deltas = jnp.repeat(held_keys_deltas(held, spec.actions), spec.vae.temporal_factor, axis=1)
    relative, position, yaw, pitch = advance_heading(state.position, state.yaw, state.pitch, deltas)
    return state.start_c2w[:, None] @ relative, position, yaw, pitch


def _decode(spec: StreamSpec, vae_params, cache, latents):
    frames = []
    for i in range(latents.shape[1]):
        video, _, cache = vae_lib.decode_step(vae_params, cache, latents[:, i:i + 1], spec.vae, clip=False, steady=True)
        frames.append(video)
    return jnp.concatenate(frames, axis=1), cache
