"""Official Wan2.1 VAE weights (`Wan2.1_VAE.pth`, or Diffusers' `AutoencoderKLWan`) -> our Flax VAE params.

The mapping is derived from our own parameter tree (every Flax parameter asks for exactly one
checkpoint key), so `vae_params_from_state_dict` either fills every parameter and consumes every
tensor, or raises one `ConversionError` naming every missing key, every left-over key and every
shape mismatch (with both shapes).

Naming schemes (module indices follow Wan's flat `nn.Sequential`s):
  original:  encoder.conv1, encoder.downsamples.{i}.residual.{0,2,3,6} / .shortcut / .resample.1 / .time_conv,
             encoder.middle.{0,1,2}, encoder.head.{0,2}, conv1 (quant), conv2 (post-quant), decoder.* alike.
  diffusers: encoder.conv_in, encoder.down_blocks.{i}.{norm1,conv1,norm2,conv2,conv_shortcut},
             encoder.mid_block.{resnets.{0,1},attentions.0}, encoder.{norm_out,conv_out}, quant_conv,
             post_quant_conv, decoder.up_blocks.{stage}.{resnets.{j},upsamplers.0}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import jax
import numpy as np

from worldscape_jax.convert.report import ConversionReport, Converted
from worldscape_jax.convert.state_dict import Layout, StateDictConsumer, conv_layout
from worldscape_jax.models import vae
from worldscape_jax.models.vae_config import VAEConfig

NAMINGS = ("original", "diffusers")

# A 1x1 Conv2d [out, in, 1, 1] used as a per-pixel linear layer -> Dense kernel [in, out].
POINTWISE = Layout("pointwise", lambda a: np.swapaxes(a[:, :, 0, 0], 0, 1), lambda s: (s[1], s[0], 1, 1))


def _gamma_layout(trailing_ones: int) -> Layout:
    """Wan's RMS_norm gamma is [C, 1, 1, 1] (video) or [C, 1, 1] (per-frame attention) -> [C]."""
    return Layout(f"gamma{trailing_ones}", lambda a: a.reshape(a.shape[0]), lambda s: (s[0],) + (1,) * trailing_ones)


_RESIDUAL_PARTS = {  # our name -> (original, diffusers)
    "norm1": ("residual.0", "norm1"), "conv1": ("residual.2", "conv1"),
    "norm2": ("residual.3", "norm2"), "conv2": ("residual.6", "conv2"),
    "shortcut": ("shortcut", "conv_shortcut"),
}
_LEAF_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "gamma"}


def detect_naming(keys) -> str:
    """'diffusers' if the keys use AutoencoderKLWan names, 'original' if Wan's; raises if neither."""
    keys = set(keys)
    if "encoder.conv_in.weight" in keys or "quant_conv.weight" in keys:
        return "diffusers"
    if "encoder.conv1.weight" in keys or "conv1.weight" in keys:
        return "original"
    sample = sorted(keys)[:5]
    raise ValueError(f"state dict uses neither Wan's VAE names (encoder.conv1.weight) nor Diffusers' "
                     f"(encoder.conv_in.weight); first keys: {sample}")


def _decoder_block(index: int, config: VAEConfig) -> tuple[int, int, bool]:
    """Flat decoder index -> (stage, position in stage, is the upsampler)."""
    per_stage = config.num_res_blocks + 2  # residual blocks + 1, then the upsampler
    stage, position = divmod(index, per_stage)
    return stage, position, position == config.num_res_blocks + 1


def _block_name(part: str, inner: tuple[str, ...], naming: str, config: VAEConfig) -> str:
    """Checkpoint module name of one of our encoder/decoder children (`part` is 'encoder' or 'decoder')."""
    original = naming == "original"
    top = inner[0]
    if top == "conv1":
        return f"{part}.conv1" if original else f"{part}.conv_in"
    if top == "head_norm":
        return f"{part}.head.0" if original else f"{part}.norm_out"
    if top == "head_conv":
        return f"{part}.head.2" if original else f"{part}.conv_out"
    kind, index = top.rsplit("_", 1)
    index = int(index)
    if kind == "middle":
        block = f"{part}.middle.{index}" if original else (
            f"{part}.mid_block.attentions.0" if index == 1 else f"{part}.mid_block.resnets.{index // 2}")
    elif kind == "downsamples":
        block = f"{part}.downsamples.{index}" if original else f"{part}.down_blocks.{index}"
    elif kind == "upsamples":
        stage, position, is_upsampler = _decoder_block(index, config)
        block = f"{part}.upsamples.{index}" if original else (
            f"{part}.up_blocks.{stage}.upsamplers.0" if is_upsampler else f"{part}.up_blocks.{stage}.resnets.{position}")
    else:
        raise KeyError(f"no checkpoint name for {part}/{'/'.join(inner)}")
    return ".".join([block, *_sub_names(inner[1:], original)])


def _sub_names(inner: tuple[str, ...], original: bool) -> list[str]:
    names = []
    for name in inner:
        if name in _RESIDUAL_PARTS:
            names.append(_RESIDUAL_PARTS[name][0 if original else 1])
        elif name == "resample":
            names.append("resample.1")  # index 1 of Wan's Sequential(pad-or-upsample, Conv2d)
        elif name in ("time_conv", "norm", "to_qkv", "proj"):
            names.append(name)
        else:
            raise KeyError(f"no checkpoint name for sub-module {name!r}")
    return names


def checkpoint_key(path: tuple[str, ...], naming: str, config: VAEConfig) -> str:
    """The checkpoint key of our parameter at `path` (e.g. ('decoder', 'upsamples_3', 'resample', 'kernel'))."""
    *modules, leaf = path
    if modules == ["quant_conv"]:
        module = "conv1" if naming == "original" else "quant_conv"
    elif modules == ["post_quant_conv"]:
        module = "conv2" if naming == "original" else "post_quant_conv"
    else:
        module = _block_name(modules[0], tuple(modules[1:]), naming, config)
    return f"{module}.{_LEAF_NAMES[leaf]}"


def _layout(path: tuple[str, ...], shape: tuple[int, ...]) -> Layout:
    if path[-1] == "gamma":
        return _gamma_layout(2 if path[-2] == "norm" else 3)  # 'norm' is the attention block's
    if path[-1] == "bias":
        return Layout("bias", lambda a: a, lambda s: tuple(s))
    if len(shape) == 2:
        return POINTWISE
    return conv_layout(len(shape) - 2)


def abstract_vae_params(config: VAEConfig):
    """Shapes and dtypes of our VAE params, without computing anything."""
    return jax.eval_shape(lambda: vae.init_params(config, jax.random.key(0, impl="rbg")))


def expected_checkpoint_shapes(config: VAEConfig, naming: str = "original") -> dict[str, tuple[int, ...]]:
    """Every checkpoint key our VAE reads, with its torch shape."""
    flat = jax.tree_util.tree_flatten_with_path(abstract_vae_params(config))[0]
    out = {}
    for key_path, leaf in flat:
        path = tuple(k.key for k in key_path)
        out[checkpoint_key(path, naming, config)] = tuple(_layout(path, leaf.shape).torch_shape(leaf.shape))
    return out


def vae_params_from_state_dict(state_dict: Mapping[str, np.ndarray], config: VAEConfig, *,
                               naming: str = "auto", dtype=np.float32, source: str = "state dict") -> Converted:
    """Our Flax params (the dict `models.vae` functions take) and the report of what was read, from a
    Wan2.1 VAE state dict (torch layouts as numpy arrays).

    Consumes every tensor and fills every parameter, or raises `ConversionError` listing all missing and
    left-over keys and every shape mismatch with both shapes.
    """
    naming = detect_naming(state_dict.keys()) if naming == "auto" else naming
    if naming not in NAMINGS:
        raise ValueError(f"naming must be 'auto' or one of {NAMINGS}, got {naming!r}")
    consumer = StateDictConsumer(state_dict, source=source)
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract_vae_params(config))
    leaves, filled = [], []
    for key_path, leaf in flat:
        path = tuple(k.key for k in key_path)
        value = consumer.take(checkpoint_key(path, naming, config), _layout(path, leaf.shape), leaf.shape,
                              target="/".join(path))
        leaves.append(None if value is None else np.asarray(value, dtype))
        filled.append("/".join(path))
    consumer.finish(context=f"Wan VAE, {naming} names, dim={config.dim}, dim_mult={config.dim_mult}",
                    hints=_hints(consumer.leftovers(), naming))
    report = ConversionReport.of(consumer, naming, params_filled=filled, params_left_at_init={},
                                 parameter_count=int(sum(leaf.size for leaf in leaves)))
    return Converted(jax.tree_util.tree_unflatten(treedef, leaves), report)


_NAME_PATTERNS = {
    "original": r"(conv[12]\.|(encoder|decoder)\.(conv1|downsamples|upsamples|middle|head)\.)",
    "diffusers": r"(quant_conv\.|post_quant_conv\.|(encoder|decoder)\.(conv_in|down_blocks|up_blocks|mid_block|norm_out|conv_out)\.)",
}


def _hints(leftovers: list[str], naming: str) -> list[str]:
    other = "diffusers" if naming == "original" else "original"
    hints = []
    if any(re.match(_NAME_PATTERNS[other], k) for k in leftovers):
        hints.append(f"some left-over keys use {other!r} names; the file may mix namings (naming={naming!r} was used)")
    if leftovers and all(k.startswith(("model.", "module.", "vae.")) for k in leftovers):
        hints.append("keys carry a wrapper prefix; strip it (checkpoint_io.load_state_dict does)")
    return hints
