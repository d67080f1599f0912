"""Test helper: Wan2.1's official state-dict names/shapes and a NumPy forward on those torch tensors.

Written from the Wan2.1 description (research notes wan_distillation_streaming.md §5.2, §5.3, §9)
and Diffusers' WanTransformer3DModel module names, independently of `worldscape_jax.convert` and
of `worldscape_jax.models`: the converter and the Flax model are both checked against this.
Everything here works in torch layout ([out, in] Linear weights, Conv3d [dim, c, pt, ph, pw],
video [B, C, F, H, W]) and float64.
"""

from __future__ import annotations

import re

import numpy as np
from scipy.special import erf


def original_shapes(dim, ffn, freq, text_dim, in_dim, out_dim, layers, patch=(1, 2, 2), clip_dim=None):
    """{key: torch shape} of a Wan2.1 DiT checkpoint (wan/modules/model.py names)."""
    pt, ph, pw = patch
    shapes = {
        "patch_embedding.weight": (dim, in_dim, pt, ph, pw), "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim), "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim), "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq), "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim), "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim), "time_projection.1.bias": (6 * dim,),
        "head.modulation": (1, 2, dim),
        "head.head.weight": (out_dim * pt * ph * pw, dim), "head.head.bias": (out_dim * pt * ph * pw,),
    }
    for i in range(layers):
        b = f"blocks.{i}."
        shapes[b + "modulation"] = (1, 6, dim)
        for attn in ("self_attn", "cross_attn"):
            for p in "qkvo":
                shapes[f"{b}{attn}.{p}.weight"], shapes[f"{b}{attn}.{p}.bias"] = (dim, dim), (dim,)
            shapes[f"{b}{attn}.norm_q.weight"] = shapes[f"{b}{attn}.norm_k.weight"] = (dim,)
        shapes[b + "norm3.weight"] = shapes[b + "norm3.bias"] = (dim,)
        shapes[b + "ffn.0.weight"], shapes[b + "ffn.0.bias"] = (ffn, dim), (ffn,)
        shapes[b + "ffn.2.weight"], shapes[b + "ffn.2.bias"] = (dim, ffn), (dim,)
        if clip_dim:
            for p in ("k_img", "v_img"):
                shapes[f"{b}cross_attn.{p}.weight"], shapes[f"{b}cross_attn.{p}.bias"] = (dim, dim), (dim,)
            shapes[b + "cross_attn.norm_k_img.weight"] = (dim,)
    if clip_dim:
        shapes.update({
            "img_emb.proj.0.weight": (clip_dim,), "img_emb.proj.0.bias": (clip_dim,),
            "img_emb.proj.1.weight": (clip_dim, clip_dim), "img_emb.proj.1.bias": (clip_dim,),
            "img_emb.proj.3.weight": (dim, clip_dim), "img_emb.proj.3.bias": (dim,),
            "img_emb.proj.4.weight": (dim,), "img_emb.proj.4.bias": (dim,),
        })
    return shapes


# Original name -> Diffusers name (WanTransformer3DModel), as regex substitutions on whole keys.
DIFFUSERS_RENAMES = [
    (r"text_embedding\.0\.", "condition_embedder.text_embedder.linear_1."),
    (r"text_embedding\.2\.", "condition_embedder.text_embedder.linear_2."),
    (r"time_embedding\.0\.", "condition_embedder.time_embedder.linear_1."),
    (r"time_embedding\.2\.", "condition_embedder.time_embedder.linear_2."),
    (r"time_projection\.1\.", "condition_embedder.time_proj."),
    (r"head\.modulation", "scale_shift_table"),
    (r"head\.head\.", "proj_out."),
    (r"img_emb\.proj\.0\.", "condition_embedder.image_embedder.norm1."),
    (r"img_emb\.proj\.1\.", "condition_embedder.image_embedder.ff.net.0.proj."),
    (r"img_emb\.proj\.3\.", "condition_embedder.image_embedder.ff.net.2."),
    (r"img_emb\.proj\.4\.", "condition_embedder.image_embedder.norm2."),
    (r"(blocks\.\d+\.)modulation", r"\1scale_shift_table"),
    (r"(blocks\.\d+\.)self_attn\.([qkv])\.", r"\1attn1.to_\2."),
    (r"(blocks\.\d+\.)self_attn\.o\.", r"\1attn1.to_out.0."),
    (r"(blocks\.\d+\.)self_attn\.norm_", r"\1attn1.norm_"),
    (r"(blocks\.\d+\.)cross_attn\.([qkv])\.", r"\1attn2.to_\2."),
    (r"(blocks\.\d+\.)cross_attn\.o\.", r"\1attn2.to_out.0."),
    (r"(blocks\.\d+\.)cross_attn\.k_img\.", r"\1attn2.add_k_proj."),
    (r"(blocks\.\d+\.)cross_attn\.v_img\.", r"\1attn2.add_v_proj."),
    (r"(blocks\.\d+\.)cross_attn\.norm_k_img\.", r"\1attn2.norm_added_k."),
    (r"(blocks\.\d+\.)cross_attn\.norm_([qk])\.", r"\1attn2.norm_\2."),
    (r"(blocks\.\d+\.)norm3\.", r"\1norm2."),
    (r"(blocks\.\d+\.)ffn\.0\.", r"\1ffn.net.0.proj."),
    (r"(blocks\.\d+\.)ffn\.2\.", r"\1ffn.net.2."),
]


def to_diffusers_names(state_dict):
    renamed = {}
    for key, value in state_dict.items():
        new = key
        for pattern, replacement in DIFFUSERS_RENAMES:
            new, hits = re.subn("^" + pattern, replacement, new)
            if hits:
                break
        renamed[new] = value
    return renamed


def random_state_dict(shapes, seed=0):
    """Weights of a sensible scale: norms near 1, Linear/conv weights ~ 1/sqrt(fan_in)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in shapes.items():
        if re.search(r"norm|proj\.[04]\.weight", key) and key.endswith("weight"):
            sd[key] = 1.0 + 0.1 * rng.normal(size=shape)
        elif "modulation" in key or key.endswith("bias"):
            sd[key] = 0.1 * rng.normal(size=shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            sd[key] = rng.normal(size=shape) / np.sqrt(fan_in)
    return {k: v.astype(np.float32) for k, v in sd.items()}


# ---- NumPy forward of Wan2.1 on the state dict (float64) ----

def linear(sd, name, x):
    return x @ sd[name + ".weight"].astype(np.float64).T + sd[name + ".bias"]


def layer_norm(x, eps, weight=None, bias=None):
    mu = x.mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    return y if weight is None else y * weight + bias


def rms_norm(x, weight, eps=1e-6):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * weight


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def silu(x):
    return x / (1 + np.exp(-x))


def patch_embed(sd, video, patch):
    """Conv3d with kernel = stride = patch on video [B, C, F, H, W] -> tokens [B, F'*H'*W', dim] (f, h, w order)."""
    b, c, f, h, w = video.shape
    pt, ph, pw = patch
    blocks = video.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    out = np.einsum("bcfthiwj,dctij->bfhwd", blocks, sd["patch_embedding.weight"].astype(np.float64))
    return (out + sd["patch_embedding.bias"]).reshape(b, -1, out.shape[-1])


def sinusoid(t, dim):
    half = dim // 2
    angles = t.astype(np.float64)[..., None] * np.power(10000.0, -np.arange(half) / half)
    return np.concatenate([np.cos(angles), np.sin(angles)], axis=-1)


def time_embeddings(sd, t, freq_dim):
    """e [B, F, dim] and e0 [B, F, 6, dim] for per-frame timesteps t [B, F]."""
    e = linear(sd, "time_embedding.2", silu(linear(sd, "time_embedding.0", sinusoid(t, freq_dim))))
    e0 = linear(sd, "time_projection.1", silu(e))
    return e, e0.reshape(*e0.shape[:-1], 6, -1)


def rope(x, grid, theta=10000.0):
    """x [B, N, heads, d]; rotate adjacent pairs by angles split d-4(d//6) / 2(d//6) / 2(d//6) over f, h, w."""
    d = x.shape[-1]
    dims = (d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6))
    f, h, w = np.meshgrid(*[np.arange(n) for n in grid], indexing="ij")
    angles = np.concatenate([pos.reshape(-1, 1) * theta ** (-np.arange(0, n, 2) / n)
                             for pos, n in zip((f, h, w), dims)], axis=-1)  # [N, d/2]
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * np.exp(1j * angles)[None, :, None, :]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def attend(q, k, v):
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return np.einsum("bhqk,bkhd->bqhd", p / p.sum(-1, keepdims=True), v)


def block(sd, i, x, mod, ctx, img, grid, heads):
    """One Wan block; x [B, N, dim], mod [B, N, 6, dim] (modulation + e0 per token)."""
    b = f"blocks.{i}."
    split = lambda y: y.reshape(*y.shape[:2], heads, -1)
    shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (mod[:, :, j] for j in range(6))
    y = layer_norm(x, 1e-6) * (1 + scale_sa) + shift_sa
    q = split(rms_norm(linear(sd, b + "self_attn.q", y), sd[b + "self_attn.norm_q.weight"]))
    k = split(rms_norm(linear(sd, b + "self_attn.k", y), sd[b + "self_attn.norm_k.weight"]))
    v = split(linear(sd, b + "self_attn.v", y))
    out = attend(rope(q, grid), rope(k, grid), v).reshape(x.shape)
    x = x + linear(sd, b + "self_attn.o", out) * gate_sa

    y = layer_norm(x, 1e-6, sd[b + "norm3.weight"], sd[b + "norm3.bias"])
    q = split(rms_norm(linear(sd, b + "cross_attn.q", y), sd[b + "cross_attn.norm_q.weight"]))
    k = split(rms_norm(linear(sd, b + "cross_attn.k", ctx), sd[b + "cross_attn.norm_k.weight"]))
    out = attend(q, k, split(linear(sd, b + "cross_attn.v", ctx)))
    if img is not None:
        k_img = split(rms_norm(linear(sd, b + "cross_attn.k_img", img), sd[b + "cross_attn.norm_k_img.weight"]))
        out = out + attend(q, k_img, split(linear(sd, b + "cross_attn.v_img", img)))
    x = x + linear(sd, b + "cross_attn.o", out.reshape(x.shape))

    y = layer_norm(x, 1e-6) * (1 + scale_ff) + shift_ff
    return x + linear(sd, b + "ffn.2", gelu_tanh(linear(sd, b + "ffn.0", y))) * gate_ff


def image_tokens(sd, clip):
    h = layer_norm(clip, 1e-5, sd["img_emb.proj.0.weight"], sd["img_emb.proj.0.bias"])
    h = linear(sd, "img_emb.proj.3", gelu_erf(linear(sd, "img_emb.proj.1", h)))
    return layer_norm(h, 1e-5, sd["img_emb.proj.4.weight"], sd["img_emb.proj.4.bias"])


def head(sd, x, e, tokens_per_frame):
    """Modulated output head -> [B, N, prod(patch) * C]; (shift, scale) = head.modulation + e (not e0)."""
    mod = sd["head.modulation"][0][None, None] + np.repeat(e, tokens_per_frame, axis=1)[:, :, None]
    return linear(sd, "head.head", layer_norm(x, 1e-6) * (1 + mod[:, :, 1]) + mod[:, :, 0])


def unpatchify(out, grid, patch, channels):
    """Wan's einsum fhwpqrc->cfphqwr: head channels are (pt, ph, pw, c), channel fastest."""
    b = out.shape[0]
    x = out.reshape(b, *grid, *patch, channels)
    x = np.einsum("bfhwpqrc->bcfphqwr", x)
    return x.reshape(b, channels, grid[0] * patch[0], grid[1] * patch[1], grid[2] * patch[2])


def pad_text(context, text_len):
    """What Wan2.1's forward does to the text-encoder output: zeros appended up to text_len tokens."""
    return np.concatenate([context, np.zeros((context.shape[0], text_len - context.shape[1], context.shape[2]))], 1)


def wan_forward(sd, video, t, context, heads, freq_dim, patch=(1, 2, 2), clip=None, layers=None, text_len=None):
    """The whole Wan2.1 DiT: video [B, C_in, F, H, W], per-frame t [B, F'] -> velocity [B, C_out, F, H, W].
    With text_len, the context is zero-padded to it first, as the official forward does."""
    _, _, f, h, w = video.shape
    if text_len is not None:
        context = pad_text(context, text_len)
    grid = (f // patch[0], h // patch[1], w // patch[2])
    x = patch_embed(sd, video.astype(np.float64), patch)
    e, e0 = time_embeddings(sd, t, freq_dim)
    tokens_per_frame = grid[1] * grid[2]
    ctx = linear(sd, "text_embedding.2", gelu_tanh(linear(sd, "text_embedding.0", context.astype(np.float64))))
    img = None if clip is None else image_tokens(sd, clip.astype(np.float64))
    for i in range(layers):
        mod = sd[f"blocks.{i}.modulation"][0][None, None] + np.repeat(e0, tokens_per_frame, axis=1)
        x = block(sd, i, x, mod, ctx, img, grid, heads)
    out = head(sd, x, e, tokens_per_frame)
    channels = out.shape[-1] // int(np.prod(patch))
    return unpatchify(out, grid, patch, channels)
