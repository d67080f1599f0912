"""The Wan2.1 causal 3-D video VAE in Flax Linen, channels-last `[B, F, H, W, C]`, pixels in [-1, 1].

Encoding maps F = 1 + 4k pixel frames to 1 + k latent frames (frame 0 alone, then groups of 4, and
no latent depends on a later group); decoding maps each latent frame back to 1 (the first) or 4 pixel
frames. Both run either on a whole clip (`encode`, `decode`) or as a stream with an explicit cache
pytree (`encode_step`, `decode_step`), and the two agree exactly: the stream is the real thing, not
an approximation (tests/models/test_vae.py).

Streaming calls have fixed shapes so that each compiles once. The choice for the first call (which
Wan handles with a Python branch) is an array flag, `VAEStreamCache.is_first`: every call takes and
returns full-size chunks, and on the first call only the chunk's last frame is real.
  * decode_step: one latent frame in, always `temporal_factor` (4) pixel frames out, plus `valid`,
    a [4] bool mask that is true for the last frame only on the first call and for all four after.
  * encode_step: always 4 pixel frames in, one latent frame out; on the first call only the last of
    the 4 frames is read (put frame 0 there, e.g. with `first_encode_chunk`).

Latents given to and returned by the public functions are normalised with the config's per-channel
mean and std (the space the DiT works in); `WanVAE` methods work on raw latents.
"""

from __future__ import annotations

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from worldscape_jax.models.vae_config import VAEConfig
from worldscape_jax.models.vae_layers import (
    AttentionBlock, CausalConv3d, Downsample, PatchShortcutIn, PatchShortcutOut, RMSNorm, ResidualBlock, Upsample,
    frame_validity)


class _StatefulSequence:
    """Runs blocks in order, handing each its slice of the streaming state and collecting the new one."""

    def __init__(self, state: dict | None, first):
        self.state, self.first, self.new_state = state or {}, first, {}

    def __call__(self, block: nn.Module, x):
        x, block_state = block(x, self.state.get(block.name), self.first)
        if block_state is not None:
            self.new_state[block.name] = block_state
        return x

    def middle(self, x, width: int):
        """Wan's middle: residual block, single-head spatial attention, residual block."""
        x = self(ResidualBlock(width, name="middle_0"), x)
        x = self(AttentionBlock(name="middle_1"), x)
        return self(ResidualBlock(width, name="middle_2"), x)


class Encoder3d(nn.Module):
    """Pixels [B, F, H, W, 3] -> features [B, 1 + (F - 1) / 4, H / 8, W / 8, out_channels] (Wan strides)."""

    config: VAEConfig
    out_channels: int

    @nn.compact
    def __call__(self, x, state: dict | None = None, first=None):
        cfg = self.config
        seq = _StatefulSequence(state, first)
        widths = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        x = seq(CausalConv3d(widths[0], name="conv1"), x)
        index = 0
        for stage, width in enumerate(widths[1:]):
            for _ in range(cfg.num_res_blocks):
                x = seq(ResidualBlock(width, name=f"downsamples_{index}"), x)
                index += 1
            if stage < len(cfg.dim_mult) - 1:
                x = seq(Downsample(cfg.temporal_downsample[stage], name=f"downsamples_{index}"), x)
                index += 1
        x = seq.middle(x, widths[-1])
        x = nn.silu(RMSNorm(name="head_norm")(x))
        x = seq(CausalConv3d(self.out_channels, name="head_conv"), x)
        return x, seq.new_state


class Decoder3d(nn.Module):
    """Latents [B, T, h, w, z] -> pixels [B, 1 + 4 (T - 1), 8 h, 8 w, 3] (Wan strides)."""

    config: VAEConfig

    @nn.compact
    def __call__(self, x, state: dict | None = None, first=None):
        cfg = self.config
        seq = _StatefulSequence(state, first)
        widths = [cfg.dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        x = seq(CausalConv3d(widths[0], name="conv1"), x)
        x = seq.middle(x, widths[0])
        index = 0
        for stage, width in enumerate(widths[1:]):
            for _ in range(cfg.num_res_blocks + 1):
                x = seq(ResidualBlock(width, name=f"upsamples_{index}"), x)
                index += 1
            if stage < len(cfg.dim_mult) - 1:
                x = seq(Upsample(cfg.temporal_upsample[stage], name=f"upsamples_{index}"), x)
                index += 1
        x = nn.silu(RMSNorm(name="head_norm")(x))
        x = seq(CausalConv3d(3, name="head_conv"), x)
        return x, seq.new_state


class WanVAE(nn.Module):
    """Encoder + 1x1x1 quant conv (to mean and log-variance) and 1x1x1 post-quant conv + decoder.

    With `config.patch_shortcut`, linear pixel-block <-> latent paths are added to both ends
    (`patch_encoder`, `patch_decoder`); they are per block, so causality and streaming are unchanged.
    """

    config: VAEConfig

    def setup(self):
        cfg = self.config
        self.encoder = Encoder3d(cfg, 2 * cfg.z_dim)
        self.quant_conv = CausalConv3d(2 * cfg.z_dim, (1, 1, 1))
        self.post_quant_conv = CausalConv3d(cfg.z_dim, (1, 1, 1))
        self.decoder = Decoder3d(cfg)
        if cfg.patch_shortcut:
            self.patch_encoder = PatchShortcutIn(2 * cfg.z_dim, cfg.temporal_factor, cfg.spatial_factor)
            self.patch_decoder = PatchShortcutOut(3, cfg.temporal_factor, cfg.spatial_factor)

    def encode_moments(self, video, state=None, first=None):
        """Raw latent mean and log-variance, and the encoder's new streaming state."""
        features, state = self.encoder(video, state, first)
        moments, _ = self.quant_conv(features)
        if self.config.patch_shortcut:
            moments = moments + self.patch_encoder(video, first)
        mu, log_var = jnp.split(moments, 2, axis=-1)
        return mu, log_var, state

    def decode_latents(self, latents, state=None, first=None):
        """Pixels (unclipped) from raw latents, and the decoder's new streaming state."""
        x, _ = self.post_quant_conv(latents)
        video, state = self.decoder(x, state, first)
        if self.config.patch_shortcut:
            video = video + self.patch_decoder(latents, first)
        return video, state

    def __call__(self, video):
        mu, _, _ = self.encode_moments(video)
        return self.decode_latents(mu)[0]


@flax.struct.dataclass
class VAEStreamCache:
    """Streaming state: the last input frames of every causal conv (nested like the params) and the first-call flag."""

    histories: dict
    is_first: Bool[Array, ""]


def normalize_latents(mu: Float[Array, "b t h w z"], config: VAEConfig) -> Float[Array, "b t h w z"]:
    """Raw encoder mean -> the unit-scale latents the DiT sees: (mu - mean) / std per channel."""
    mean, std = (jnp.asarray(v, mu.dtype) for v in (config.latent_mean, config.latent_std))
    return (mu - mean) / std


def denormalize_latents(z: Float[Array, "b t h w z"], config: VAEConfig) -> Float[Array, "b t h w z"]:
    """Inverse of `normalize_latents`: z * std + mean."""
    mean, std = (jnp.asarray(v, z.dtype) for v in (config.latent_mean, config.latent_std))
    return z * std + mean


def check_video(video, config: VAEConfig, *, chunk: bool = False, where: str = "video"):
    """Raises unless `video` is [B, F, H, W, 3] with F = 1 + 4k (or F = 4 for a chunk) and H, W multiples of 8."""
    t, s = config.temporal_factor, config.spatial_factor
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"{where}: expected [B, F, H, W, 3], got shape {video.shape}")
    frames, height, width = video.shape[1:4]
    if chunk and frames != t:
        raise ValueError(f"{where}: a streaming chunk has exactly {t} frames, got {frames}")
    if not chunk and (frames - 1) % t:
        raise ValueError(f"{where}: frame count must be 1 + {t}k, got {frames}")
    if height % s or width % s:
        raise ValueError(f"{where}: H and W must be multiples of {s}, got {height}x{width}")


def _check_latents(latents, config: VAEConfig, *, frames: int | None = None, where: str = "latents"):
    if latents.ndim != 5 or latents.shape[-1] != config.z_dim:
        raise ValueError(f"{where}: expected [B, T, h, w, {config.z_dim}], got shape {latents.shape}")
    if frames is not None and latents.shape[1] != frames:
        raise ValueError(f"{where}: expected {frames} latent frame(s), got {latents.shape[1]}")


def init_params(config: VAEConfig, rng: PRNGKeyArray | int) -> dict:
    """Fresh parameters (unboxed; logical axis names are in `param_partition_specs`).

    The initialisers draw from the 'rbg' PRNG, which compiles in seconds on a CPU where threefry's
    take half a minute to minutes for the ~100 VAE tensors: an int seed seeds it directly, any other
    key seeds it with 32 bits drawn from that key (deterministic in the key).
    """
    if isinstance(rng, int):
        rng = jax.random.key(rng, impl="rbg")
    return nn.meta.unbox(jax.jit(_init_variables_rbg, static_argnums=0)(config, rng))["params"]


def _init_variables_rbg(config: VAEConfig, rng):
    if str(jax.random.key_impl(rng)) != "rbg":
        rng = jax.random.key(jax.random.bits(rng, (), jnp.uint32), impl="rbg")
    return _init_variables(config, rng)


def param_partition_specs(config: VAEConfig):
    """Logical axis names of every parameter, as a pytree of PartitionSpecs."""
    return nn.get_partition_spec(jax.eval_shape(lambda: _init_variables(config, jax.random.key(0))))["params"]


def _init_variables(config: VAEConfig, rng):
    side = config.spatial_factor
    video = jnp.zeros((1, 1 + config.temporal_factor, side, side, 3), jnp.float32)
    return WanVAE(config).init(rng, video)


def encode(params: dict, video: Float[Array, "b f h w 3"], config: VAEConfig, *,
           rng: PRNGKeyArray | None = None) -> Float[Array, "b t h2 w2 z"]:
    """Normalised latents of a whole clip: the posterior mean, or a sample from it when `rng` is given."""
    check_video(video, config)
    mu, log_var, _ = WanVAE(config).apply({"params": params}, video, method=WanVAE.encode_moments)
    return normalize_latents(_maybe_sample(mu, log_var, rng), config)


def _maybe_sample(mu, log_var, rng):
    if rng is None:
        return mu
    return mu + jnp.exp(0.5 * jnp.clip(log_var, -30.0, 20.0)) * jax.random.normal(rng, mu.shape, mu.dtype)


def decode(params: dict, latents: Float[Array, "b t h w z"], config: VAEConfig, *,
           clip: bool = False) -> Float[Array, "b f h2 w2 3"]:
    """Pixels of a whole clip from normalised latents: 1 + 4 (T - 1) frames, unclamped like Wan's decoder
    (`clip=True` clamps to [-1, 1] as Wan's wrapper does; callers clamp where pixels become uint8)."""
    _check_latents(latents, config)
    video, _ = WanVAE(config).apply({"params": params}, denormalize_latents(latents, config),
                                    method=WanVAE.decode_latents)
    return jnp.clip(video, -1.0, 1.0) if clip else video


def _zero_cache(state_shapes) -> VAEStreamCache:
    histories = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state_shapes)
    return VAEStreamCache(histories=histories, is_first=jnp.array(True))


def init_decode_cache(config: VAEConfig, batch: int, latent_hw: tuple[int, int],
                      dtype=jnp.float32) -> VAEStreamCache:
    """An empty decode cache for latents of spatial size `latent_hw` (shapes from `jax.eval_shape`, no compute)."""
    latent = jax.ShapeDtypeStruct((batch, 1, *latent_hw, config.z_dim), dtype)

    def first_call(z):
        (_, state), _ = WanVAE(config).init_with_output(
            jax.random.key(0), z, None, jnp.array(True), method=WanVAE.decode_latents)
        return state

    return _zero_cache(jax.eval_shape(first_call, latent))


def decode_step(params: dict, cache: VAEStreamCache, latent_frame: Float[Array, "b 1 h w z"], config: VAEConfig,
                *, clip: bool = False, steady: bool = False
                ) -> tuple[Float[Array, "b 4 h2 w2 3"], Bool[Array, "4"], VAEStreamCache]:
    """Decodes the next normalised latent frame: (4 pixel frames, which of them are real, the new cache).
    The frames are unclamped, as in `decode`.

    Jit it once with the config static, e.g. `jax.jit(functools.partial(decode_step, config=cfg))`.
    `steady=True` promises the cache is past its first call (a stream after its first frame): the
    first-call masks and selections are then constants that XLA folds away, which saves about a fifth
    of the step's memory traffic; the result is the same.
    """
    _check_latents(latent_frame, config, frames=1, where="decode_step latent_frame")
    first = jnp.array(False) if steady else cache.is_first
    video, histories = WanVAE(config).apply(
        {"params": params}, denormalize_latents(latent_frame, config), cache.histories, first,
        method=WanVAE.decode_latents)
    valid = frame_validity(first, video.shape[1])
    video = jnp.clip(video, -1.0, 1.0) if clip else video
    return video, valid, VAEStreamCache(histories=histories, is_first=jnp.array(False))


def init_encode_cache(config: VAEConfig, batch: int, video_hw: tuple[int, int],
                      dtype=jnp.float32) -> VAEStreamCache:
    """An empty encode cache for frames of spatial size `video_hw`."""
    chunk = jax.ShapeDtypeStruct((batch, config.temporal_factor, *video_hw, 3), dtype)

    def first_call(frames):
        (_, _, state), _ = WanVAE(config).init_with_output(
            jax.random.key(0), frames, None, jnp.array(True), method=WanVAE.encode_moments)
        return state

    return _zero_cache(jax.eval_shape(first_call, chunk))


def first_encode_chunk(frame0: Float[Array, "b 1 h w 3"], config: VAEConfig) -> Float[Array, "b 4 h w 3"]:
    """The chunk for the first `encode_step` call: placeholders, then frame 0 last."""
    pad = jnp.zeros((frame0.shape[0], config.temporal_factor - 1, *frame0.shape[2:]), frame0.dtype)
    return jnp.concatenate([pad, frame0], axis=1)


def encode_step(params: dict, cache: VAEStreamCache, frames: Float[Array, "b 4 h w 3"], config: VAEConfig, *,
                rng: PRNGKeyArray | None = None) -> tuple[Float[Array, "b 1 h2 w2 z"], VAEStreamCache]:
    """Encodes the next group of 4 pixel frames into one normalised latent frame (first call: see module doc)."""
    check_video(frames, config, chunk=True, where="encode_step frames")
    mu, log_var, histories = WanVAE(config).apply(
        {"params": params}, frames, cache.histories, cache.is_first, method=WanVAE.encode_moments)
    latent = normalize_latents(_maybe_sample(mu, log_var, rng), config)
    return latent, VAEStreamCache(histories=histories, is_first=jnp.array(False))


def jit_decode_step(config: VAEConfig, *, clip: bool = False, steady: bool = False):
    """`decode_step` compiled once for `config`, with the cache donated (it is replaced every call).

    A stream compiles it twice: once for the first call, once with `steady=True` for every call after.
    """
    return jax.jit(functools.partial(decode_step, config=config, clip=clip, steady=steady), donate_argnums=(1,))


def jit_encode_step(config: VAEConfig):
    """`encode_step` compiled once for `config`."""
    return jax.jit(functools.partial(encode_step, config=config), donate_argnums=(1,))


def cache_bytes(cache: VAEStreamCache) -> int:
    """Memory held by a streaming cache (works on arrays and on `jax.eval_shape` results)."""
    return sum(leaf.size * jnp.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(cache))
