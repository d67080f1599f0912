"""The Wan2.1 diffusion transformer in Flax Linen, with camera and control-video conditioning.

One set of parameters, three ways to run it:
  * bidirectional (the teacher): `model.apply(params, x, t, text)`;
  * block-causal over chunks of `frames_per_chunk` latent frames, optionally with a window of W
    chunks and a sink of S chunks (training the student): `..., causal=Causal(window=W, sink=S)`;
  * cached (streaming, and the student's rollouts): `model.apply(params, x, t, text, cache=kv,
    start_frame=f, causal=Causal())` attends to a fixed-capacity `KVCache` plus the call's own
    tokens, block-causally over its chunks when `causal` is given (several chunks at staggered noise
    levels in one call: the rolling window), and returns the call's own un-rotated keys and values,
    which the caller inserts (rolling window, MACO, ...).

The math is Wan's exactly (research notes wan_distillation_streaming.md §5.2 and §9): patch embedding
(1,2,2), sinusoidal time embedding [cos|sin] shared by six per-block modulation vectors, q/k RMSNorm
over the full width, 3-D RoPE on adjacent pairs, affine-LayerNorm cross-attention with an optional
CLIP-image branch, tanh-GELU FFN, and a head modulated by the time embedding. Timesteps are per
frame, [B, F], so chunks at different noise levels share one call. The residual stream and all
normalisation/modulation math stay in float32; matmuls run in `config.dtype`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from einops import rearrange
from jax.ad_checkpoint import checkpoint_name
from jaxtyping import Array, Float

from worldscape_jax.models.attention import MaskSpec, attention, cached_attention
from worldscape_jax.models.camera_encoder import CameraEncoder
from worldscape_jax.models.kv_cache import KVCache
from worldscape_jax.models.layers import LayerNorm, Linear, RMSNorm, gelu_tanh, logical, modulate, sinusoidal_embedding
from worldscape_jax.models.rope import apply_rope, grid_positions


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Hashable model hyper-parameters; build from an ml_collections config with `from_config`."""

    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    num_heads: int = 12
    num_layers: int = 30
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    eps: float = 1e-6
    rope_theta: float = 10000.0
    image_branch: bool = False
    clip_dim: int = 1280
    clip_tokens: int = 257
    frames_per_chunk: int = 3
    vae_stride: tuple[int, int, int] = (4, 8, 8)
    camera: bool = False
    camera_res_blocks: int = 1
    camera_plucker_channels: int = 6  # per pixel and pixel frame: [o x d, d], + d - d_cam with ray_turn
    camera_ray_turn: bool = False
    camera_turn_warp: bool = False  # the turn warp's 16 channels are part of in_dim (conditioning.py)
    attention_impl: str = "xla"
    remat_policy: str = "none"
    scan_layers: bool = True
    dtype: str = "float32"

    @classmethod
    def from_config(cls, cfg: Any) -> "DiTConfig":
        """From configs/dit.py's ConfigDict (or an export's config.json): its `camera` sub-config maps to the
        `camera*` fields. A field this class does not have is an error, never dropped; a missing one keeps
        its default (older exports lack the newer fields)."""
        d = dict(cfg)
        camera = dict(d.pop("camera", None) or {})
        unknown_camera = set(camera) - set(CAMERA_FIELDS)
        if unknown_camera:
            raise ValueError(f"DiT config: unknown camera fields {sorted(unknown_camera)}; expected any of "
                             f"{sorted(CAMERA_FIELDS)}")
        d.update({CAMERA_FIELDS[key]: value for key, value in camera.items()})
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"DiT config: unknown fields {sorted(unknown)}; expected those of "
                             f"models/dit.py DiTConfig (configs/dit.py declares them all)")
        for key in ("patch_size", "vae_stride"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"DiT config: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"DiT config: remat_policy={self.remat_policy!r}; expected one of {sorted(REMAT_POLICIES)}")
        expected_channels = 9 if self.camera_ray_turn else 6
        if self.camera_plucker_channels != expected_channels:
            raise ValueError(f"DiT config: camera.plucker_channels={self.camera_plucker_channels} but camera.ray_turn="
                             f"{self.camera_ray_turn} gives {expected_channels} ray channels per pixel")
        if (self.camera_ray_turn or self.camera_turn_warp) and not self.camera:
            raise ValueError("DiT config: camera.ray_turn and camera.turn_warp need camera.enabled")


# configs/dit.py's `camera` sub-config -> DiTConfig fields.
CAMERA_FIELDS = {"enabled": "camera", "res_blocks": "camera_res_blocks", "plucker_channels": "camera_plucker_channels",
                 "ray_turn": "camera_ray_turn", "turn_warp": "camera_turn_warp"}


@dataclasses.dataclass(frozen=True)
class Causal:
    """Block-causal attention over chunks, with an optional window and sink (both in chunks)."""

    window: int | None = None
    sink: int = 0


REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_attention": jax.checkpoint_policies.save_only_these_names("self_attn_out", "cross_attn_out"),
}


def _heads(x: Array, num_heads: int) -> Array:
    return rearrange(x, "b n (h d) -> b n h d", h=num_heads)


def _merge(x: Array) -> Array:
    return rearrange(x, "b n h d -> b n (h d)")


class SelfAttention(nn.Module):
    """Self-attention with q/k RMSNorm and 3-D RoPE; full-sequence (masked) or over a KV cache."""

    cfg: DiTConfig
    mask: MaskSpec

    @nn.compact
    def __call__(self, x, positions, cache):
        c = self.cfg
        dense = lambda name, axes=("embed", "heads"): Linear(c.dim, axes, dtype=c.dtype, name=name)
        q = _heads(RMSNorm(c.eps, name="norm_q")(dense("q")(x)), c.num_heads)
        k = _heads(RMSNorm(c.eps, name="norm_k")(dense("k")(x)), c.num_heads)
        v = _heads(dense("v")(x), c.num_heads)
        q_rot, k_rot = apply_rope(q, positions, c.rope_theta), apply_rope(k, positions, c.rope_theta)
        if cache is None:
            out = attention(q_rot, k_rot, v, self.mask, impl=c.attention_impl)
        else:
            cache_k, cache_v, cache_positions, cache_valid = cache
            cache_k_rot = apply_rope(cache_k.astype(k.dtype), cache_positions, c.rope_theta)
            out = cached_attention(q_rot, k_rot, v, cache_k_rot, cache_v.astype(v.dtype), cache_valid, self.mask,
                                   impl=c.attention_impl)
        out = checkpoint_name(_merge(out), "self_attn_out")
        return dense("o", ("heads", "embed"))(out), (k, v)


class CrossAttention(nn.Module):
    """Cross-attention on text tokens, plus CLIP-image tokens in the i2v / Fun-Control variant."""

    cfg: DiTConfig

    @nn.compact
    def __call__(self, x, text, image):
        c = self.cfg
        dense = lambda name, axes=("embed", "heads"): Linear(c.dim, axes, dtype=c.dtype, name=name)
        q = _heads(RMSNorm(c.eps, name="norm_q")(dense("q")(x)), c.num_heads)

        def attend(context, k_name, v_name, norm_name):
            k = _heads(RMSNorm(c.eps, name=norm_name)(dense(k_name)(context)), c.num_heads)
            v = _heads(dense(v_name)(context), c.num_heads)
            return attention(q, k, v, impl=c.attention_impl)

        out = attend(text, "k", "v", "norm_k")
        if c.image_branch:
            out = out + attend(image, "k_img", "v_img", "norm_k_img")
        out = checkpoint_name(_merge(out), "cross_attn_out")
        return dense("o", ("heads", "embed"))(out)


class WanBlock(nn.Module):
    """One transformer block, scanned over layers. Works on x as [B, F, T, D] so that modulation,
    which is per latent frame, broadcasts over each frame's T tokens."""

    cfg: DiTConfig
    mask: MaskSpec
    return_kv: bool

    @nn.compact
    def __call__(self, x, shared, layer_cache):
        c = self.cfg
        e0, text, image, positions, cache_positions, cache_valid = shared
        b, f, t, d = x.shape
        flat = lambda y: y.reshape(b, f * t, d)
        modulation = self.param("modulation", logical(nn.initializers.normal(d ** -0.5), (None, "embed")), (6, d))
        mod = modulation[:, None, :] + e0  # [B, F, 6, 1, D]
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (mod[:, :, i] for i in range(6))

        h = modulate(LayerNorm(c.eps, name="norm1")(x), shift_sa, scale_sa).astype(c.dtype)
        cache = None if layer_cache is None else (*layer_cache, cache_positions, cache_valid)
        y, (k, v) = SelfAttention(c, self.mask, name="self_attn")(flat(h), positions, cache)
        x = x + y.reshape(x.shape).astype(jnp.float32) * gate_sa

        h = LayerNorm(c.eps, affine=True, name="norm3")(x).astype(c.dtype)
        x = x + CrossAttention(c, name="cross_attn")(flat(h), text, image).reshape(x.shape).astype(jnp.float32)

        h = modulate(LayerNorm(c.eps, name="norm2")(x), shift_ff, scale_ff).astype(c.dtype)
        h = Linear(c.ffn_dim, ("embed", "mlp"), dtype=c.dtype, name="ffn_0")(h)
        h = Linear(c.dim, ("mlp", "embed"), dtype=c.dtype, name="ffn_2")(gelu_tanh(h))
        x = x + h.astype(jnp.float32) * gate_ff
        x = nn.with_logical_constraint(x, ("activation_batch", "activation_length", None, "activation_embed"))
        kv = (k.reshape(b, f, t, *k.shape[2:]), v.reshape(b, f, t, *v.shape[2:])) if self.return_kv else None
        return x, kv


def _scanned_blocks(cfg: DiTConfig, mask: MaskSpec, return_kv: bool, cached: bool):
    block = WanBlock
    policy = REMAT_POLICIES[cfg.remat_policy]
    if cfg.remat_policy != "none":
        block = nn.remat(block, policy=policy, prevent_cse=False)
    if not cfg.scan_layers:
        return _unrolled_blocks(cfg, mask, return_kv, block)
    scanned = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(nn.broadcast, 0 if cached else nn.broadcast),
        length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return scanned(cfg, mask, return_kv, name="blocks")


def _unrolled_blocks(cfg: DiTConfig, mask: MaskSpec, return_kv: bool, block: Any):
    """The blocks one after another as `blocks_0 ... blocks_{L-1}` (`scan_layers=False`), created in the
    calling module's scope: the scan's math, but each block is its own module, so `capture_intermediates`
    and per-layer tools see inside it. `unroll_params` turns scanned params into these."""

    def run(x, shared, layer_cache):
        kvs = []
        for i in range(cfg.num_layers):
            cache_i = None if layer_cache is None else jax.tree.map(lambda a: a[i], layer_cache)
            x, kv = block(cfg, mask, return_kv, name=f"blocks_{i}")(x, shared, cache_i)
            kvs.append(kv)
        return x, (jax.tree.map(lambda *a: jnp.stack(a), *kvs) if return_kv else None)

    return run


def unroll_params(params: Any, num_layers: int) -> Any:
    """Scanned DiT params (`blocks` stacked over layers) -> the unrolled model's (`blocks_0`, ...)."""
    params = dict(params)
    stacked = params.pop("blocks")
    for i in range(num_layers):
        params[f"blocks_{i}"] = jax.tree.map(lambda a: a[i], stacked)
    return params


class WanDiT(nn.Module):
    """Wan2.1 DiT. Inputs are channels-last latents [B, F, H, W, C]; output is the velocity."""

    cfg: DiTConfig

    @nn.compact
    def __call__(
        self,
        x: Float[Array, "b f h w c"],
        timesteps: Float[Array, "b f"],
        text: Float[Array, "b l e"],
        *,
        cond: Float[Array, "b f h w cc"] | None = None,
        camera: Float[Array, "b f hp wp cp"] | None = None,
        clip: Float[Array, "b n e2"] | None = None,
        causal: Causal | None = None,
        cache: KVCache | None = None,
        start_frame: Any = 0,
    ):
        """Velocity for x at per-frame `timesteps` (Wan's t in [0, 1000]).

        text: text-encoder tokens; fewer than config.text_len are zero-padded to it (as Wan2.1 does).
        cond: latents concatenated after x on channels (I2V: 4 mask channels + the image latent;
          Fun-Control: control video + first frame).
        camera: Plücker rays packed per latent frame (`camera_encoder.pack_frames`), pixel resolution.
        clip: CLIP image tokens (image branch only).
        causal: block-causal attention over chunks of `frames_per_chunk` frames; with a cache it applies
          among the call's own chunks (window and sink counted in those chunks), and every valid cache
          entry is visible. Without `causal` all of the call's tokens see each other.
        cache, start_frame: streaming; x is the chunk(s) starting at absolute latent frame `start_frame`.
        Returns v [B, F, H, W, out_dim], or with a cache (v, (k, v)) with k, v [L, B, F, T, H, Dh].
        """
        c = self.cfg
        x = self._concat_cond(x, cond)
        b, f, h, w, _ = x.shape
        pt, ph, pw = c.patch_size
        grid = (f // pt, h // ph, w // pw)
        tokens = self._embed_tokens(x, camera)
        e, e0 = self._time_embeddings(timesteps, grid[0])
        text_tokens = self._embed_text(text)
        image_tokens = self._embed_image(clip)

        frame_offset = 0 if cache is not None else start_frame
        positions = grid_positions(*grid, frame_offset=frame_offset)
        shared = (e0, text_tokens, image_tokens, positions, None, None)
        mask = self._mask(causal, grid)
        layer_cache = None
        if cache is not None:
            shared = (*shared[:4], *self._cache_positions(cache, start_frame, grid))
            layer_cache = self._flat_cache(cache)
        blocks = _scanned_blocks(c, mask, return_kv=cache is not None, cached=cache is not None)
        hidden, kv = blocks(tokens.reshape(b, grid[0], grid[1] * grid[2], c.dim), shared, layer_cache)
        out = self._head(hidden, e, grid)
        return out if cache is None else (out, kv)

    def _concat_cond(self, x, cond):
        if cond is not None:
            x = jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)
        if x.shape[-1] != self.cfg.in_dim:
            raise ValueError(f"DiT input: latents (+ cond) have {x.shape[-1]} channels, config.in_dim is "
                             f"{self.cfg.in_dim} (16 = noise only, 36 = I2V noise + mask + image, "
                             "48 = Fun-Control noise + control + first frame)")
        h, w = x.shape[2:4]
        if h % self.cfg.patch_size[1] or w % self.cfg.patch_size[2]:
            raise ValueError(f"DiT input: latent {h}x{w} is not divisible by the patch {self.cfg.patch_size[1:]}")
        return x

    def _embed_tokens(self, x, camera):
        c = self.cfg
        patches = nn.Conv(c.dim, c.patch_size, strides=c.patch_size, padding="VALID", dtype=c.dtype,
                          name="patch_embedding",
                          kernel_init=logical(nn.initializers.xavier_uniform(), (None, None, None, "conv_in", "embed")),
                          bias_init=logical(nn.initializers.zeros_init(), ("embed",)))(x.astype(c.dtype))
        tokens = rearrange(patches, "b f h w d -> b (f h w) d").astype(jnp.float32)
        if c.camera:
            if camera is None:
                raise ValueError("DiT: config.camera.enabled is set but no camera (packed Plücker rays) was given")
            channels = c.camera_plucker_channels * c.vae_stride[0]
            if camera.shape[-1] != channels:
                raise ValueError(f"DiT: the camera input has {camera.shape[-1]} channels per latent frame; config "
                                 f"camera.plucker_channels={c.camera_plucker_channels} x vae_stride[0]="
                                 f"{c.vae_stride[0]} gives {channels} (models/conditioning.camera_input)")
            tokens = tokens + CameraEncoder(c.dim, c.vae_stride[1], c.patch_size[1:], c.camera_res_blocks,
                                            c.dtype, name="camera_encoder")(camera)
        elif camera is not None:
            raise ValueError("DiT: camera rays were given but config.camera.enabled is False")
        return tokens

    def _time_embeddings(self, timesteps, frames):
        c = self.cfg
        if timesteps.shape[1:] != (frames,):
            raise ValueError(f"DiT: timesteps must be per latent frame [B, {frames}], got {timesteps.shape}")
        emb = sinusoidal_embedding(timesteps, c.freq_dim)
        e = Linear(c.dim, (None, "embed"), name="time_embedding_0")(emb)
        e = Linear(c.dim, ("embed", "mlp"), name="time_embedding_2")(nn.silu(e))
        e0 = Linear(6 * c.dim, ("embed", "mlp"), name="time_projection")(nn.silu(e))
        return e, e0.reshape(*e0.shape[:2], 6, 1, c.dim)  # [B, F, 6, 1, D]: broadcasts over a frame's tokens

    def _embed_text(self, text):
        """Text tokens [B, L <= text_len, text_dim], zero-padded to text_len as Wan2.1 does: the padding
        is not masked in cross-attention, so the padded length changes the result (research notes §9.6)."""
        c = self.cfg
        if text.shape[-1] != c.text_dim:
            raise ValueError(f"DiT: text embeddings have width {text.shape[-1]}, config.text_dim is {c.text_dim}")
        if text.shape[1] > c.text_len:
            raise ValueError(f"DiT: text has {text.shape[1]} tokens, more than config.text_len={c.text_len} "
                             "(Wan2.1 zero-pads shorter text to text_len and has no room for longer)")
        text = jnp.pad(text, ((0, 0), (0, c.text_len - text.shape[1]), (0, 0)))
        h = Linear(c.dim, ("text_embed", "embed"), dtype=c.dtype, name="text_embedding_0")(text.astype(c.dtype))
        return Linear(c.dim, ("embed", "mlp"), dtype=c.dtype, name="text_embedding_2")(gelu_tanh(h))

    def _embed_image(self, clip):
        c = self.cfg
        if not c.image_branch:
            if clip is not None:
                raise ValueError("DiT: CLIP tokens were given but config.image_branch is False")
            return None
        if clip is None:
            raise ValueError("DiT: config.image_branch is set, so CLIP image tokens [B, N, clip_dim] are required")
        h = LayerNorm(1e-5, affine=True, name="img_emb_norm_in")(clip)
        h = Linear(c.clip_dim, (None, "mlp"), name="img_emb_fc1")(h)
        h = Linear(c.dim, ("mlp", "embed"), name="img_emb_fc2")(jax.nn.gelu(h, approximate=False))
        return LayerNorm(1e-5, affine=True, name="img_emb_norm_out")(h).astype(c.dtype)

    def _mask(self, causal: Causal | None, grid) -> MaskSpec:
        if causal is None:
            return MaskSpec()
        c = self.cfg
        if grid[0] % c.frames_per_chunk:
            raise ValueError(f"DiT: {grid[0]} latent frames is not a whole number of "
                             f"{c.frames_per_chunk}-frame chunks")
        return MaskSpec.block_causal(c.frames_per_chunk * grid[1] * grid[2], causal.window, causal.sink)

    def _cache_positions(self, cache: KVCache, start_frame, grid):
        if cache.tokens_per_frame != grid[1] * grid[2]:
            raise ValueError(f"DiT: the cache holds {cache.tokens_per_frame} tokens per frame, the chunk has "
                             f"{grid[1] * grid[2]}")
        b, s = cache.frame_index.shape
        hw = grid_positions(1, grid[1], grid[2])[:, 1:]  # [T, 2]
        t = (cache.frame_index - start_frame)[:, :, None, None]  # relative to the chunk's first frame
        t = jnp.broadcast_to(t, (b, s, hw.shape[0], 1))
        positions = jnp.concatenate([t, jnp.broadcast_to(hw, (b, s, *hw.shape))], axis=-1)
        valid = jnp.repeat(cache.valid, hw.shape[0], axis=1)
        return positions.reshape(b, -1, 3), valid

    def _flat_cache(self, cache: KVCache):
        l, b, s, t, h, d = cache.k.shape
        return cache.k.reshape(l, b, s * t, h, d), cache.v.reshape(l, b, s * t, h, d)

    def _head(self, hidden, e, grid):
        c = self.cfg
        modulation = self.param("head_modulation", logical(nn.initializers.normal(c.dim ** -0.5), (None, "embed")),
                                (2, c.dim))
        shift, scale = jnp.split(modulation + e[:, :, None, :], 2, axis=2)  # each [B, F, 1, D]
        h = modulate(LayerNorm(c.eps, name="head_norm")(hidden), shift, scale).astype(c.dtype)
        pt, ph, pw = c.patch_size
        out = Linear(pt * ph * pw * c.out_dim, ("embed", None), dtype=c.dtype, name="head")(h)
        return rearrange(out.astype(jnp.float32), "b f (hh ww) (pt ph pw c) -> b (f pt) (hh ph) (ww pw) c",
                         hh=grid[1], ww=grid[2], pt=pt, ph=ph, pw=pw)


def build_dit(cfg: Any) -> WanDiT:
    """A WanDiT from a DiTConfig or an ml_collections config (configs/dit.py)."""
    return WanDiT(cfg if isinstance(cfg, DiTConfig) else DiTConfig.from_config(cfg))
