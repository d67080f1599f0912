"""Building blocks of the Wan2.1 causal 3-D VAE, channels-last `[B, F, H, W, C]`.

Every block with a temporal receptive field is written once for two modes:

* batch mode (`first=None`): the whole clip at once; a causal conv pads the front of time with
  zeros, and the temporal resamplers treat frame 0 specially (it passes through).
* streaming mode (`first` is a traced bool scalar): one fixed-size chunk per call; each causal conv
  reads its previous input frames from `history` and returns the new ones. On the first call a
  chunk holds a single real frame, placed last; the frames before it are placeholders that every
  causal conv zeroes (so histories match a zero-padded clip) and every resampler drops.

Blocks share one calling convention, `block(x, state, first) -> (x, new_state)`, where `state` is the
block's part of the streaming cache (`None` in batch mode means "zeros").
Wan semantics (../shared/research/wan_distillation_streaming.md §5.4, §9): RMS norm is an L2
normalisation times sqrt(C) times gamma; spatial downsampling pads right and bottom only;
downsample3d keeps frame 0 and convolves windows (0,1,2), (2,3,4), ...; upsample3d keeps frame 0 and
gives every later frame two output frames from a causal time conv that excludes frame 0.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from worldscape_jax.models.attention import attention

CACHE_FRAMES = 2  # past input frames a 3-tap causal conv needs (Wan's CACHE_T)
_CONV_AXES = (None, None, None, "conv_in", "conv_out")
# Untruncated LeCun normal: same scale as Flax's default, and much cheaper to compile on a CPU.
_KERNEL_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def logical(init, names):
    """An initializer whose parameter carries logical axis `names` (mapped to mesh axes by configs)."""
    return nn.with_logical_partitioning(init, tuple(names))


def frame_validity(first: Bool[Array, ""] | None, num_frames: int) -> Bool[Array, "f"] | None:
    """Which frames of a streaming chunk are real: all of them, except on the first call where only the last is."""
    if first is None:
        return None
    return jnp.logical_or(jnp.logical_not(first), jnp.arange(num_frames) == num_frames - 1)


def _conv(x, kernel, bias, strides, padding, spec):
    lhs, rhs = spec
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), strides, padding, dimension_numbers=(lhs, rhs, lhs))
    return y + bias.astype(x.dtype)


def _causal_conv(x, kernel, bias, padding_hw):
    """A 'valid'-in-time 3-D conv of x [B, F + kt - 1, H, W, C] with kernel [kt, kh, kw, C, O].

    On the CPU the kt time taps are folded into the channels of one 2-D conv (the same sum, in a
    different order): XLA:CPU's 3-D convolution is 2-4x slower than its 2-D one at these shapes.
    Accelerators keep the native 3-D conv, which their conv libraries handle well.
    """
    kt = kernel.shape[0]
    if kt == 1 or jax.default_backend() != "cpu":
        return _conv(x, kernel, bias, (1, 1, 1), [(0, 0), *padding_hw], ("NDHWC", "DHWIO"))
    b, frames, h, w, c = x.shape
    f = frames - (kt - 1)
    taps = jnp.concatenate([x[:, dt:dt + f] for dt in range(kt)], axis=-1).reshape(b * f, h, w, kt * c)
    folded = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kernel.shape[1], kernel.shape[2], kt * c, -1)
    y = _conv(taps, folded, bias, (1, 1), padding_hw, ("NHWC", "HWIO"))
    return y.reshape(b, f, *y.shape[1:])


class RMSNorm(nn.Module):
    """Wan's RMS_norm: x / max(||x||_2, 1e-12) over channels, times sqrt(C) and a learned gamma."""

    @nn.compact
    def __call__(self, x: Float[Array, "... c"]) -> Float[Array, "... c"]:
        channels = x.shape[-1]
        gamma = self.param("gamma", logical(nn.initializers.ones_init(), ("conv_out",)), (channels,))
        x32 = x.astype(jnp.float32)
        norm = jnp.maximum(jnp.linalg.norm(x32, axis=-1, keepdims=True), 1e-12)
        return (x32 / norm * math.sqrt(channels) * gamma).astype(x.dtype)


class CausalConv3d(nn.Module):
    """3-D conv, 'same' in space, causal in time: kt - 1 past frames come from `history` (zeros if None)."""

    features: int
    kernel_size: tuple[int, int, int] = (3, 3, 3)

    @nn.compact
    def __call__(self, x: Float[Array, "b f h w c"], history: Float[Array, "b p h w c"] | None = None,
                 first: Bool[Array, ""] | None = None):
        kt, kh, kw = self.kernel_size
        kernel = self.param("kernel", logical(_KERNEL_INIT, _CONV_AXES),
                            (kt, kh, kw, x.shape[-1], self.features))
        bias = self.param("bias", logical(nn.initializers.zeros_init(), ("conv_out",)), (self.features,))
        valid = frame_validity(first, x.shape[1])
        if valid is not None:
            x = x * valid[None, :, None, None, None].astype(x.dtype)
        new_history = None
        if kt > 1:
            if history is None:
                history = jnp.zeros((x.shape[0], kt - 1, *x.shape[2:]), x.dtype)
            if history.shape != (x.shape[0], kt - 1, *x.shape[2:]):
                raise ValueError(f"CausalConv3d {self.name}: history shape {history.shape} does not fit "
                                 f"input {x.shape}; expected {(x.shape[0], kt - 1, *x.shape[2:])}")
            x = jnp.concatenate([history.astype(x.dtype), x], axis=1)
            new_history = x[:, -(kt - 1):]
        y = _causal_conv(x, kernel, bias, [(kh // 2, kh // 2), (kw // 2, kw // 2)])
        return y, new_history


class SpatialConv(nn.Module):
    """A 2-D conv applied to every frame on its own (Wan's nn.Conv2d inside Resample)."""

    features: int
    stride: int = 1
    padding: Any = "SAME"

    @nn.compact
    def __call__(self, x: Float[Array, "b f h w c"]) -> Float[Array, "b f h2 w2 d"]:
        kernel = self.param("kernel", logical(_KERNEL_INIT, _CONV_AXES[1:]),
                            (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", logical(nn.initializers.zeros_init(), ("conv_out",)), (self.features,))
        b, f = x.shape[:2]
        y = _conv(x.reshape(b * f, *x.shape[2:]), kernel, bias, (self.stride, self.stride), self.padding,
                  ("NHWC", "HWIO"))
        return y.reshape(b, f, *y.shape[1:])


class ResidualBlock(nn.Module):
    """norm -> SiLU -> causal 3x3x3 conv -> norm -> SiLU -> causal 3x3x3 conv, plus a 1x1x1 shortcut if widths differ."""

    features: int

    @nn.compact
    def __call__(self, x, state: dict | None = None, first=None):
        state = state or {}
        shortcut = x
        if x.shape[-1] != self.features:
            shortcut, _ = CausalConv3d(self.features, (1, 1, 1), name="shortcut")(x)
        h = nn.silu(RMSNorm(name="norm1")(x))
        h, hist1 = CausalConv3d(self.features, name="conv1")(h, state.get("conv1"), first)
        h = nn.silu(RMSNorm(name="norm2")(h))
        h, hist2 = CausalConv3d(self.features, name="conv2")(h, state.get("conv2"), first)
        return h + shortcut, {"conv1": hist1, "conv2": hist2}


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame on its own (no temporal mixing)."""

    @nn.compact
    def __call__(self, x, state=None, first=None):
        b, f, h, w, c = x.shape
        tokens = RMSNorm(name="norm")(x).reshape(b * f, h * w, 1, c)
        dense_init = logical(_KERNEL_INIT, ("conv_in", "conv_out"))
        bias_init = logical(nn.initializers.zeros_init(), ("conv_out",))
        qkv = nn.Dense(3 * c, dtype=x.dtype, kernel_init=dense_init, bias_init=bias_init, name="to_qkv")(tokens)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        out = attention(q, k, v)
        out = nn.Dense(c, dtype=x.dtype, kernel_init=logical(nn.initializers.zeros_init(), ("conv_in", "conv_out")),
                       bias_init=bias_init, name="proj")(out)
        return x + out.reshape(b, f, h, w, c), None


def _passthrough_last(x: Array, num_frames: int) -> Array:
    """The first streaming call's output: placeholders (zeros) then the chunk's one real frame, last."""
    pad = jnp.zeros((x.shape[0], num_frames - 1, *x.shape[2:]), x.dtype)
    return jnp.concatenate([pad, x[:, -1:]], axis=1)


class StridedTimeConv(nn.Module):
    """Kernel-3, stride-2 valid conv over time only: windows (0,1,2), (2,3,4), ..."""

    features: int

    @nn.compact
    def __call__(self, x: Float[Array, "b f h w c"]) -> Float[Array, "b g h w d"]:
        kernel = self.param("kernel", logical(_KERNEL_INIT, _CONV_AXES),
                            (3, 1, 1, x.shape[-1], self.features))
        bias = self.param("bias", logical(nn.initializers.zeros_init(), ("conv_out",)), (self.features,))
        return _conv(x, kernel, bias, (2, 1, 1), "VALID", ("NDHWC", "DHWIO"))


class Downsample(nn.Module):
    """Halves H and W (pad right/bottom, 3x3 stride-2 conv); with `temporal`, also halves time after frame 0."""

    temporal: bool

    @nn.compact
    def __call__(self, x, state=None, first=None):
        x = SpatialConv(x.shape[-1], stride=2, padding=[(0, 1), (0, 1)], name="resample")(x)
        if not self.temporal:
            return x, None
        time_conv = StridedTimeConv(x.shape[-1], name="time_conv")

        num_frames = x.shape[1]
        if first is None:
            if num_frames % 2 != 1:
                raise ValueError(f"Downsample {self.name}: batch mode needs 1 + 2k frames, got {num_frames}")
            rest = [time_conv(x)] if num_frames > 1 else []
            return jnp.concatenate([x[:, :1], *rest], axis=1), None
        if num_frames % 2 != 0:
            raise ValueError(f"Downsample {self.name}: a streaming chunk needs an even frame count, got {num_frames}")
        if state is None:
            state = jnp.zeros((x.shape[0], 1, *x.shape[2:]), x.dtype)
        strided = time_conv(jnp.concatenate([state.astype(x.dtype), x], axis=1))
        out = jnp.where(first, _passthrough_last(x, num_frames // 2), strided)
        return out, x[:, -1:]


def _interleave_pairs(y: Float[Array, "b f h w c2"]) -> Float[Array, "b f2 h w c"]:
    """Channels [0:C] of frame k become frame 2k, channels [C:2C] frame 2k + 1."""
    b, f, h, w, c2 = y.shape
    y = y.reshape(b, f, h, w, 2, c2 // 2)
    return jnp.moveaxis(y, 4, 2).reshape(b, 2 * f, h, w, c2 // 2)


class Upsample(nn.Module):
    """Doubles H and W (nearest, then a 3x3 conv to C/2); with `temporal`, doubles every frame after frame 0 first."""

    temporal: bool

    @nn.compact
    def __call__(self, x, state=None, first=None):
        channels = x.shape[-1]
        new_state = None
        if self.temporal:
            time_conv = CausalConv3d(2 * channels, (3, 1, 1), name="time_conv")
            if first is None:
                rest = [_interleave_pairs(time_conv(x[:, 1:])[0])] if x.shape[1] > 1 else []
                x = jnp.concatenate([x[:, :1], *rest], axis=1)
            else:
                doubled, new_history = time_conv(x, state)
                previous = jnp.zeros_like(new_history) if state is None else state.astype(x.dtype)
                new_state = jnp.where(first, previous, new_history)  # frame 0 never enters the history
                x = jnp.where(first, _passthrough_last(x, 2 * x.shape[1]), _interleave_pairs(doubled))
        x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
        return SpatialConv(channels // 2, name="resample")(x), new_state


def space_time_to_depth(x: Float[Array, "b f h w c"], t: int, s: int) -> Float[Array, "b g h2 w2 d"]:
    """Folds every t x s x s block (t consecutive frames, s x s pixels) into one vector of t * s * s * C."""
    b, f, h, w, c = x.shape
    x = x.reshape(b, f // t, t, h // s, s, w // s, s, c)
    return jnp.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7)).reshape(b, f // t, h // s, w // s, t * s * s * c)


def depth_to_space_time(y: Float[Array, "b g h w d"], t: int, s: int) -> Float[Array, "b f h2 w2 c"]:
    """Inverse of `space_time_to_depth`: [B, G, h, w, t * s * s * C] -> [B, t * G, s * h, s * w, C]."""
    b, g, h, w, d = y.shape
    y = y.reshape(b, g, h, w, t, s, s, d // (t * s * s))
    return jnp.transpose(y, (0, 1, 4, 2, 5, 3, 6, 7)).reshape(b, g * t, h * s, w * s, -1)


class PatchShortcutIn(nn.Module):
    """A linear map from every t x s x s pixel block straight to the latent moments (frame 0 is a block of its own).

    Batch mode pads the front of time with t - 1 zero frames, so the blocks are the encoder's frame
    groups [1, 4, 4, ...]; in streaming mode a chunk is one block (its placeholders zeroed on the first
    call), so the path needs no cache.
    """

    features: int
    temporal: int
    spatial: int

    @nn.compact
    def __call__(self, x: Float[Array, "b f h w c"], first: Bool[Array, ""] | None = None):
        valid = frame_validity(first, x.shape[1])
        if valid is None:
            x = jnp.concatenate([jnp.zeros((x.shape[0], self.temporal - 1, *x.shape[2:]), x.dtype), x], axis=1)
        else:
            x = x * valid[None, :, None, None, None].astype(x.dtype)
        blocks = space_time_to_depth(x, self.temporal, self.spatial)
        return nn.Dense(self.features, dtype=x.dtype, kernel_init=logical(_KERNEL_INIT, ("conv_in", "conv_out")),
                        bias_init=logical(nn.initializers.zeros_init(), ("conv_out",)), name="proj")(blocks)


class PatchShortcutOut(nn.Module):
    """The decoder's mirror of `PatchShortcutIn`: each latent frame -> a t x s x s pixel block per latent pixel.

    Batch mode drops the first latent's t - 1 leading frames (frame 0 is the last of its block, as in
    the streaming convention); streaming returns all t frames, placeholders zeroed on the first call.
    """

    channels: int
    temporal: int
    spatial: int

    @nn.compact
    def __call__(self, z: Float[Array, "b g h w d"], first: Bool[Array, ""] | None = None):
        features = self.temporal * self.spatial * self.spatial * self.channels
        blocks = nn.Dense(features, dtype=z.dtype, kernel_init=logical(_KERNEL_INIT, ("conv_in", "conv_out")),
                          bias_init=logical(nn.initializers.zeros_init(), ("conv_out",)), name="proj")(z)
        x = depth_to_space_time(blocks, self.temporal, self.spatial)
        valid = frame_validity(first, x.shape[1])
        if valid is None:
            return x[:, self.temporal - 1:]
        return x * valid[None, :, None, None, None].astype(x.dtype)
