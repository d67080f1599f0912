"""The Plücker camera encoder: per-pixel rays -> features added to the DiT tokens.

Pixel frames are first packed to the VAE's temporal stride (`pack_frames`: the clip's first frame is
repeated to fill its own latent frame, then groups of `stride_t` frames go into channels), so the
encoder itself works on one latent frame at a time and a streamed chunk gets exactly the features
the whole clip would. Each latent frame is pixel-unshuffled to the latent grid, projected to the
model width by a conv with kernel = stride = the DiT patch, refined by residual conv blocks and
projected by a zero-initialised layer, so training starts from the unconditioned base model.
(Design as in VideoX-Fun's camera adapter; research notes control_memory_metrics.md §1.4.)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from einops import rearrange
from jaxtyping import Array, Float

from worldscape_jax.models.layers import logical


def pack_frames(pixel_frames: Float[Array, "b f h w c"], stride_t: int) -> Float[Array, "b fl h w cp"]:
    """[B, 1 + stride_t*k, H, W, C] -> [B, 1 + k, H, W, C*stride_t]: frame 0 repeated, then groups.

    Channel order is (c, k): channel c*stride_t + k holds channel c of the group's k-th frame.
    """
    f = pixel_frames.shape[1]
    if (f - 1) % stride_t:
        raise ValueError(f"camera frames: expected 1 + {stride_t}*k pixel frames, got {f}")
    first = jnp.repeat(pixel_frames[:, :1], stride_t, axis=1)
    return pack_groups(jnp.concatenate([first, pixel_frames[:, 1:]], axis=1), stride_t)


def pack_groups(pixel_frames: Float[Array, "b f h w c"], stride_t: int) -> Float[Array, "b fl h w cp"]:
    """[B, stride_t*k, H, W, C] -> [B, k, H, W, C*stride_t]: consecutive groups into channels, (c, k) order.

    A streamed chunk's frames (no clip start to repeat) in `pack_frames`' layout.
    """
    if pixel_frames.shape[1] % stride_t:
        raise ValueError(f"camera frames: expected a multiple of {stride_t} pixel frames, got {pixel_frames.shape[1]}")
    return rearrange(pixel_frames, "b (fl k) h w c -> b fl h w (c k)", k=stride_t)


def pixel_unshuffle(x: Float[Array, "... h w c"], factor: int) -> Float[Array, "... hs ws cs"]:
    """Space-to-depth with torch's channel order (c * factor^2 + dy * factor + dx)."""
    h, w = x.shape[-3], x.shape[-2]
    if h % factor or w % factor:
        raise ValueError(f"pixel_unshuffle: {h}x{w} is not divisible by {factor}")
    return rearrange(x, "... (h dy) (w dx) c -> ... h w (c dy dx)", dy=factor, dx=factor)


class ResidualConvBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        conv = lambda name: nn.Conv(self.features, (3, 3), padding="SAME", name=name,
                                    kernel_init=logical(nn.initializers.lecun_normal(),
                                                        (None, None, "conv_in", "embed")),
                                    bias_init=logical(nn.initializers.zeros_init(), ("embed",)))
        return x + conv("conv2")(nn.relu(conv("conv1")(x)))


class CameraEncoder(nn.Module):
    """Packed Plücker rays [B, F_lat, H_pix, W_pix, 6*stride_t] -> tokens [B, F_lat * h * w, dim]."""

    dim: int
    spatial_stride: int  # the VAE's spatial compression
    patch: tuple[int, int]  # the DiT's spatial patch
    res_blocks: int = 1
    dtype: str = "float32"

    @nn.compact
    def __call__(self, packed: Array) -> Float[Array, "b n d"]:
        x = pixel_unshuffle(packed.astype(self.dtype), self.spatial_stride)
        x = nn.Conv(self.dim, self.patch, strides=self.patch, padding="VALID", name="proj_in",
                    kernel_init=logical(nn.initializers.lecun_normal(), (None, None, "conv_in", "embed")),
                    bias_init=logical(nn.initializers.zeros_init(), ("embed",)))(x)
        for i in range(self.res_blocks):
            x = ResidualConvBlock(self.dim, name=f"res_block_{i}")(x)
        x = nn.Dense(self.dim, name="proj_out", kernel_init=logical(nn.initializers.zeros_init(), ("embed", "mlp")),
                     bias_init=logical(nn.initializers.zeros_init(), ("mlp",)))(x)
        return rearrange(x, "b f h w d -> b (f h w) d").astype(jnp.float32)
