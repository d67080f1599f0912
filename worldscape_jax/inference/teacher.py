"""The camera-controlled image-to-video teacher at inference: how its DiT is called, and generation.

Generation (`generate`): encode the conditions (the control video [first frame, pose frames] and the
first-frame latent, 48-channel Fun-Control layout; the turn warp when the teacher has one) with the VAE,
sample latents with the Euler flow sampler and classifier-free guidance on the camera, and decode them.
The model-call helpers (`teacher_model`, `camera_rays`, ...) are shared with the teacher's training
loss (training/stages/teacher.py), so that training and generation feed the DiT the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from worldscape_jax.diffusion import flow, samplers
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.conditioning import (camera_input, encode_conditions, encode_turn_warp,
                                                first_frame_latent)
from worldscape_jax.models.dit import WanDiT, build_dit
from worldscape_jax.models.vae_config import VAEConfig


def teacher_model(config) -> WanDiT:
    """The teacher's DiT from its stage config."""
    return build_dit(config.model)


def text_context(config, batch: int) -> Float[Array, "b l d"]:
    """The teacher is not text-conditioned: a zero text context of the DiT's shape."""
    m = config.model
    return jnp.zeros((batch, m.text_len, m.text_dim), jnp.float32)


def clip_tokens(config, batch_size: int, batch: dict | None = None) -> Float[Array, "b n d"] | None:
    """CLIP image tokens for the Fun-Control image branch: the batch's, else zeros (Wan-Fun's "no image")."""
    m = config.model
    if not m.image_branch:
        return None
    if batch is not None and "clip" in batch:
        return batch["clip"]
    return jnp.zeros((batch_size, m.clip_tokens, m.clip_dim), jnp.float32)


def camera_rays(config, c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"]) -> Float[Array, "b t h w c"]:
    """The camera encoder's input: Plücker rays (and each pixel's ray turn, with `camera.ray_turn`)."""
    d = config.data
    return camera_input(c2w, intrinsics, d.height, d.width, config.model.vae_stride[0],
                        with_ray_turn=config.model.camera.ray_turn)


def uses_turn_warp(config) -> bool:
    """Whether the teacher takes the first frame re-projected through each frame's turn as input channels."""
    return config.model.camera.turn_warp


def model_cond(cond: Float[Array, "b t h w c"], warp: Float[Array, "b t h w z"] | None) -> Float[Array, "b t h w d"]:
    """The DiT's conditioning channels: [control | first frame] and, when the teacher has one, the turn warp."""
    return cond if warp is None else jnp.concatenate([cond, warp], axis=-1)


def latent_shape(config) -> tuple[int, int, int]:
    """(latent frames, height, width) of a clip of `config.data`'s size."""
    d, stride = config.data, config.model.vae_stride
    return 1 + (d.frames - 1) // stride[0], d.height // stride[1], d.width // stride[2]


def generate(params: Any, config, vae: tuple[Any, VAEConfig], first_frames: Float[Array, "b 1 h w 3"],
             c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"], rng: jax.Array, *,
             steps: int | None = None, guidance: float | None = None, camera_scale: float = 1.0,
             pose_video: Float[Array, "b f h w 3"] | None = None) -> Float[Array, "b f h w 3"]:
    """Videos [B, F, H, W, 3] (the VAE's unclamped decode, nominally in [-1, 1]) from first frames
    [B, 1, H, W, 3] (in [-1, 1]) and a camera path.

    `vae` is (params, VAEConfig) of the VAE the teacher was trained with (`loading.load_vae`). Classifier-free
    guidance on the camera: v = v(no camera) + g (v(camera) - v(no camera)). `camera_scale=0` zeroes the
    camera input (the ablation that Trajectory Accuracy is compared with), the turn warp included.
    """
    vae_params, vae_config = vae
    s = config.sample
    steps, guidance = steps or s.steps, s.guidance if guidance is None else guidance
    b = first_frames.shape[0]
    frames = c2w.shape[1]
    t, h, w = latent_shape(config)
    video = jnp.concatenate([first_frames, jnp.zeros((b, frames - 1, *first_frames.shape[2:]))], axis=1)
    cond_latents = encode_conditions(vae_params, vae_config, video, pose_video)
    camera = {"rays": camera_rays(config, c2w, intrinsics) * camera_scale, "warp": None}
    if uses_turn_warp(config):
        camera["warp"] = encode_turn_warp(vae_params, vae_config, first_frames, c2w, intrinsics) * camera_scale
    model, text, clip = teacher_model(config), text_context(config, b), clip_tokens(config, b)

    def denoise(x_t, t_frames, camera_):
        return model.apply({"params": params}, x_t, t_frames, text, cond=model_cond(cond_latents, camera_["warp"]),
                           camera=camera_["rays"], clip=clip)

    noise = jax.random.normal(rng, (b, t, h, w, config.model.out_dim))
    first_latent = None
    if config.flow.clean_first_latent:
        first_latent = first_frame_latent(cond_latents, vae_config)
    latents = samplers.euler_sample(denoise, noise, flow.inference_sigmas(steps, s.shift), camera,
                                    jax.tree.map(jnp.zeros_like, camera), guidance, clean_prefix=first_latent)
    return vae_lib.decode(vae_params, latents, vae_config)
