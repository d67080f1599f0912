"""The paper's interaction-aware conditions (§2.1), assembled the same way for training and streaming.

* Control video: the first-frame image followed along time by the hand-pose frames (black where
  there is no hand, i.e. for navigation). VAE-encoded, it is concatenated with the noisy latents on
  channels, together with the first-frame latent (zero after latent frame 0): the Wan2.1-Fun-Control
  48-channel layout [noise 16 | control 16 | first frame 16].
* Camera: Plücker rays of the poses relative to the clip's first frame, at pixel resolution (with
  `ray_turn`, three more channels per pixel: `geometry.plucker.ray_turn`), packed to the VAE's
  temporal stride for the camera encoder (the teacher: `camera_input`).
* Camera of a causal student (`chunk_camera_input`, `clip_camera_input`): each chunk's rays relative
  to the camera of the newest frame the stream already has, the last pixel frame of the previous
  chunk (for the first latent frame, itself). The input then stays in the range of a short training
  clip at frame 10,000, and the keys already in a KV cache never need recomputing: each chunk's
  camera input is a property of the chunk and its predecessor only. Training clips and streams call
  the same code, so the student sees in a stream exactly what it was trained on.
* Turn warp (optional, `configs/dit.py` variant `turn_warp`; not in the paper): the first frame
  re-projected through each frame's camera rotation (`geometry.reprojection.turn_warp`), VAE-encoded
  like the control video and appended on channels: [control 16 | first frame 16 | turn warp 16]. It
  carries the camera, so it is dropped and guided with the camera.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from worldscape_jax.geometry.cameras import invert_pose, relative_to_first
from worldscape_jax.geometry.plucker import plucker_rays, ray_turn
from worldscape_jax.geometry.reprojection import turn_warp, turn_warp_coverage
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.camera_encoder import pack_frames, pack_groups
from worldscape_jax.models.vae_config import VAEConfig


def control_video(video: Float[Array, "b f h w 3"], pose_video: Float[Array, "b f h w 3"] | None = None
                  ) -> Float[Array, "b f h w 3"]:
    """[first frame, pose frames 1..F-1] in [-1, 1]; pose frames are black (-1) when there is no hand."""
    later = -jnp.ones_like(video[:, 1:]) if pose_video is None else pose_video[:, 1:].astype(video.dtype)
    return jnp.concatenate([video[:, :1], later], axis=1)


def encode_conditions(vae_params, vae_config: VAEConfig, video: Float[Array, "b f h w 3"],
                      pose_video: Float[Array, "b f h w 3"] | None = None) -> Float[Array, "b t h2 w2 c2"]:
    """The 32 conditioning channels [control latents | first-frame latent], from pixels in [-1, 1]."""
    control = vae_lib.encode(vae_params, control_video(video, pose_video), vae_config)
    first = vae_lib.encode(vae_params, video[:, :1], vae_config)
    first = jnp.concatenate([first, jnp.zeros_like(control[:, 1:])], axis=1)
    return jnp.concatenate([control, first], axis=-1)


def encode_turn_warp(vae_params, vae_config: VAEConfig, first_frame: Float[Array, "b 1 h w 3"],
                     c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"]) -> Float[Array, "b t h2 w2 z"]:
    """VAE latents of the first frame (in [-1, 1]) warped through every frame's turn: z_dim channels."""
    return vae_lib.encode(vae_params, turn_warp(first_frame[:, 0], c2w, intrinsics), vae_config)


def reference_conditions(vae_params, vae_config: VAEConfig, ref_frame: Float[Array, "b 1 h w 3"],
                         c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"], *,
                         turn_warp: bool) -> Float[Array, "b t h2 w2 c"]:
    """The conditioning channels of a clip that starts at `ref_frame` and follows `c2w`, as the teacher
    was trained on them: [control | first-frame latent] (navigation: the control video is the first
    frame then black) and, with `turn_warp`, the first frame warped through each frame's turn.

    The causal student conditions every chunk as latent 1.. of such a clip whose first frame is the
    newest pixel frame the stream has (training/stages/student.py and streaming/stream.py both call this).
    """
    frames = c2w.shape[1]
    video = jnp.concatenate([ref_frame, jnp.zeros((ref_frame.shape[0], frames - 1, *ref_frame.shape[2:]),
                                                   ref_frame.dtype)], axis=1)
    cond = encode_conditions(vae_params, vae_config, video)
    if turn_warp:
        cond = jnp.concatenate([cond, encode_turn_warp(vae_params, vae_config, ref_frame, c2w, intrinsics)], axis=-1)
    return cond


def noised_control(cond: Float[Array, "b t h w c"], z_dim: int, sigma: float, rng) -> Float[Array, "b t h w c"]:
    """`cond` with Gaussian noise of standard deviation `sigma` added to its control channels [0, z_dim).

    Noise augmentation of a generated reference (GameNGen's fix for autoregressive drift): a chunk
    conditioned on its predecessor's decoded frame learns not to copy that frame's errors exactly,
    so each chunk's error is not handed on whole to the next. The control latent is where a chunk's
    reference reaches it (latents 1.. of a teacher clip carry no first-frame channels), so only those
    channels are noised. sigma = 0 returns `cond` unchanged.
    """
    if sigma == 0.0:
        return cond
    if sigma < 0.0:
        raise ValueError(f"noised_control: sigma must be >= 0, got {sigma}")
    noise = jax.random.normal(rng, (*cond.shape[:-1], z_dim), cond.dtype)
    return cond.at[..., :z_dim].add(sigma * noise)


def anchor_weight(anchor_c2w: Float[Array, "b 4 4"], c2w: Float[Array, "b 4 4"], reach: float,
                  reach_deg: float) -> Float[Array, "b"]:
    """How much a view taken at `anchor_c2w` still tells about the view at `c2w`: 1 at the anchor, falling
    linearly to 0 at `reach` scene units of camera travel or `reach_deg` degrees of turn (the product of
    the two), 0 beyond. A reach of 0 disables that factor (weight 1 however far).

    A first-frame student (training/stages/student.py) scales its chunk's conditioning by this: the first
    frame turned through the rotation since the start is a true picture of the view only near the
    start; far from it the turn warp shows a stale place (after travel) or mostly `OUTSIDE` (after a
    wide turn), which a student copies. At weight 0 the chunk gets zero channels, the teacher's
    "image dropped" input.
    """
    if reach < 0 or reach_deg < 0:
        raise ValueError(f"anchor_weight: reach and reach_deg must be >= 0, got {reach}, {reach_deg}")
    relative = invert_pose(anchor_c2w) @ c2w
    weight = jnp.ones(c2w.shape[:1], c2w.dtype)
    if reach > 0:
        weight = weight * jnp.clip(1.0 - jnp.linalg.norm(relative[:, :3, 3], axis=-1) / reach, 0.0, 1.0)
    if reach_deg > 0:
        rot = relative[:, :3, :3]
        cos = (jnp.trace(rot, axis1=-2, axis2=-1) - 1.0) / 2.0
        skew = rot - jnp.swapaxes(rot, -1, -2)
        sin = 0.5 * jnp.sqrt(skew[:, 2, 1] ** 2 + skew[:, 0, 2] ** 2 + skew[:, 1, 0] ** 2)
        weight = weight * jnp.clip(1.0 - jnp.degrees(jnp.arctan2(sin, cos)) / reach_deg, 0.0, 1.0)
    return weight


def drop_outside_warp(cond: Float[Array, "b c h w ch"], c2w: Float[Array, "b f 4 4"],
                      intrinsics: Float[Array, "b f 4"], vae_config: VAEConfig, height: int,
                      width: int) -> Float[Array, "b c h w ch"]:
    """`cond` (latents 1.. of a clip with a turn warp, [control | first frame | warp]) with its warp channels
    scaled by the fraction of each latent pixel's pixels that the warp covers over its frames: where the
    first frame does not reach, the warp reads as the teacher's "image dropped" zeros, not encoded black.
    c2w, intrinsics: the clip's 1 + 4c frames (the first is the warp's source)."""
    st, sf, z = vae_config.temporal_factor, vae_config.spatial_factor, vae_config.z_dim
    coverage = turn_warp_coverage(c2w, intrinsics, height, width)[:, 1:]  # [b, 4c, H, W]
    b, c, h, w = cond.shape[:4]
    coverage = coverage.reshape(b, c, st, h, sf, w, sf).mean(axis=(2, 4, 6))[..., None]
    return jnp.concatenate([cond[..., :2 * z], cond[..., 2 * z:] * coverage], axis=-1)


def first_frame_conditions(vae_params, vae_config: VAEConfig, first_frame: Float[Array, "b 1 h w 3"],
                           first_c2w: Float[Array, "b 4 4"], chunk_c2w: Float[Array, "b p 4 4"],
                           intrinsics: Float[Array, "b f 4"], *, turn_warp: bool, drop_outside: bool, reach: float,
                           reach_deg: float) -> Float[Array, "b c h2 w2 ch"]:
    """A first-frame student's conditioning of one chunk: latents 1.. of the teacher clip from `first_frame`
    at `first_c2w` over the chunk's P pixel cameras (intrinsics [B, 1 + P, 4]), the warp's uncovered parts
    dropped when asked (`drop_outside_warp`), all scaled by `anchor_weight` of the chunk's last camera.
    The student's rollout and the stream both build it here (training/stages/student.py, streaming/stream.py)."""
    c2w = jnp.concatenate([first_c2w[:, None], chunk_c2w], axis=1)
    cond = reference_conditions(vae_params, vae_config, first_frame, c2w, intrinsics, turn_warp=turn_warp)[:, 1:]
    if drop_outside and turn_warp:
        cond = drop_outside_warp(cond, c2w, intrinsics, vae_config, first_frame.shape[2], first_frame.shape[3])
    return cond * anchor_weight(first_c2w, chunk_c2w[:, -1], reach, reach_deg)[:, None, None, None, None]


def low_pass(frames: Float[Array, "b f h w c"], factor: int) -> Float[Array, "b f h w c"]:
    """`frames` averaged over factor x factor pixel blocks and brought back to full size bilinearly.

    What a newest-frame reference passes on with `reference_blur`: its layout and colours, not its
    fine texture. Drift in a stream conditioned on its own frames shows as high-frequency texture that
    each chunk copies and sharpens; a low-passed reference cannot carry it from chunk to chunk.
    factor 1 returns `frames` unchanged; H and W must be multiples of factor.
    """
    if factor == 1:
        return frames
    b, f, h, w, c = frames.shape
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"low_pass: factor must be >= 1 and divide the frame size {h}x{w}, got {factor}")
    blocks = frames.reshape(b, f, h // factor, factor, w // factor, factor, c).mean(axis=(3, 5))
    return jax.image.resize(blocks, frames.shape, method="linear")


def first_frame_latent(cond: Float[Array, "b t h w c2"], vae_config: VAEConfig) -> Float[Array, "b 1 h w z"]:
    """The first-frame latent that `encode_conditions` put in its last z_dim channels of latent frame 0."""
    return cond[:, :1, ..., vae_config.z_dim:]


def camera_input(c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"], height: int, width: int,
                 stride_t: int, with_ray_turn: bool = False) -> Float[Array, "b t h w c"]:
    """Packed Plücker rays of the poses relative to the first frame: the camera encoder's input.

    6 channels per pixel and frame, or 9 with `with_ray_turn` (then [o x d, d, d - d_cam]).
    """
    return pack_frames(_rays(relative_to_first(c2w), intrinsics, height, width, with_ray_turn), stride_t)


def _rays(relative_c2w, intrinsics, height: int, width: int, with_ray_turn: bool):
    rays = plucker_rays(relative_c2w, intrinsics, height, width)
    if with_ray_turn:
        rays = jnp.concatenate([rays, ray_turn(relative_c2w, intrinsics, height, width)], axis=-1)
    return rays


def chunk_camera_input(c2w: Float[Array, "b p 4 4"], reference_c2w: Float[Array, "b 4 4"],
                       intrinsics: Float[Array, "b p 4"], height: int, width: int, stride_t: int,
                       with_ray_turn: bool = False) -> Float[Array, "b n h w c"]:
    """Packed rays of a chunk's p = stride_t * n pixel frames relative to `reference_c2w`: the camera of
    the newest frame the stream already has (the previous chunk's last pixel frame).

    For the stream's first latent frame (the given image), pass its pose `stride_t` times and as the
    reference: that is `camera_input`'s first latent frame (identity rays).
    """
    if c2w.ndim != 4 or c2w.shape[-2:] != (4, 4) or reference_c2w.shape != (c2w.shape[0], 4, 4):
        raise ValueError(f"chunk_camera_input: c2w must be [B, P, 4, 4] and reference_c2w [B, 4, 4], got "
                         f"{c2w.shape} and {reference_c2w.shape}")
    relative = invert_pose(reference_c2w)[:, None] @ c2w
    return pack_groups(_rays(relative, intrinsics, height, width, with_ray_turn), stride_t)


def chunk_reference_frames(num_pixel_frames: int, stride_t: int, frames_per_chunk: int) -> np.ndarray:
    """For every pixel frame of a 1 + stride_t*k clip, the pixel frame its chunk's rays are relative to.

    Latent frame 0 (pixel frame 0) is its own reference; latent frames 1 + j*F .. (j+1)*F (chunk j of
    F = frames_per_chunk frames) are relative to the last pixel frame of chunk j - 1, j*F*stride_t.
    """
    if (num_pixel_frames - 1) % stride_t or (num_pixel_frames - 1) // stride_t % frames_per_chunk:
        raise ValueError(f"clip camera input: {num_pixel_frames} pixel frames is not 1 + {stride_t} x a whole "
                         f"number of {frames_per_chunk}-latent-frame chunks")
    pixel = np.arange(num_pixel_frames)
    chunk = np.maximum(pixel - 1, 0) // (stride_t * frames_per_chunk)
    return chunk * frames_per_chunk * stride_t


def clip_camera_input(c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"], height: int, width: int,
                      stride_t: int, frames_per_chunk: int, with_ray_turn: bool = False) -> Float[Array, "b t h w c"]:
    """A training clip's camera input for the causal student: `chunk_camera_input` of every chunk at once.

    The first latent frame is the clip's first frame (identity rays); the chunks after it follow, each
    relative to the last pixel frame of the chunk before.
    """
    references = c2w[:, chunk_reference_frames(c2w.shape[1], stride_t, frames_per_chunk)]
    relative = invert_pose(references) @ c2w
    return pack_frames(_rays(relative, intrinsics, height, width, with_ray_turn), stride_t)
