"""Official Wan2.1 DiT state dicts (original or Diffusers names) -> our Flax `WanDiT` params.

Every Flax parameter of `WanDiT` (shapes from `jax.eval_shape` of its init, nothing allocated) is
looked up in `PARAM_RULES`, which names its checkpoint tensor in both namings and the layout that
maps torch's tensor to ours (Linear weights transposed, the Conv3d patch embedding
[dim, c, pt, ph, pw] -> [pt, ph, pw, c, dim], modulations [1, n, dim] -> [n, dim], per-block
tensors stacked on the scanned layer axis). The head's outputs are (pt, ph, pw, c) in both, so
it is a plain transpose. Every checkpoint tensor must be used and every parameter filled, or one
`ConversionError` lists all that is missing, left over or mis-shaped. Parameters that Wan
checkpoints cannot hold (our camera encoder) keep the model's own init, whose output projection is
zero, and the report names each of them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax.convert.report import ConversionReport, Converted
from worldscape_jax.convert.state_dict import (IDENTITY, LINEAR, SQUEEZE_LEADING, ConversionError, Layout,
                                               StateDictConsumer, conv_layout)
from worldscape_jax.models.dit import DiTConfig, build_dit

NAMINGS = ("original", "diffusers")
BLOCK = "blocks.{i}."
# Our own modules, absent from every Wan checkpoint, and why keeping their init is right.
NOT_IN_WAN_CHECKPOINTS = {
    "camera_encoder": "the camera encoder is ours, not Wan's: kept at the model's init, whose zero output "
                      "projection makes the converted model exactly the unconditioned Wan until it is trained",
}


@dataclasses.dataclass(frozen=True)
class ModuleRule:
    """One Flax module (or bare parameter) and its checkpoint names in each naming."""

    flax: tuple[str, ...]
    original: str
    diffusers: str
    kind: str  # linear | conv3d | layernorm | rmsnorm | squeezed_param


# (flax leaf name, torch suffix, layout) per module kind.
_KIND_LEAVES: dict[str, tuple[tuple[str, str, Layout], ...]] = {
    "linear": (("kernel", ".weight", LINEAR), ("bias", ".bias", IDENTITY)),
    "conv3d": (("kernel", ".weight", conv_layout(3)), ("bias", ".bias", IDENTITY)),
    "layernorm": (("scale", ".weight", IDENTITY), ("bias", ".bias", IDENTITY)),
    "rmsnorm": (("scale", ".weight", IDENTITY),),
    "squeezed_param": ((None, "", SQUEEZE_LEADING),),
}

_TOP = [
    ModuleRule(("patch_embedding",), "patch_embedding", "patch_embedding", "conv3d"),
    ModuleRule(("text_embedding_0",), "text_embedding.0", "condition_embedder.text_embedder.linear_1", "linear"),
    ModuleRule(("text_embedding_2",), "text_embedding.2", "condition_embedder.text_embedder.linear_2", "linear"),
    ModuleRule(("time_embedding_0",), "time_embedding.0", "condition_embedder.time_embedder.linear_1", "linear"),
    ModuleRule(("time_embedding_2",), "time_embedding.2", "condition_embedder.time_embedder.linear_2", "linear"),
    ModuleRule(("time_projection",), "time_projection.1", "condition_embedder.time_proj", "linear"),
    ModuleRule(("head_modulation",), "head.modulation", "scale_shift_table", "squeezed_param"),
    ModuleRule(("head",), "head.head", "proj_out", "linear"),
    ModuleRule(("img_emb_norm_in",), "img_emb.proj.0", "condition_embedder.image_embedder.norm1", "layernorm"),
    ModuleRule(("img_emb_fc1",), "img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj", "linear"),
    ModuleRule(("img_emb_fc2",), "img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2", "linear"),
    ModuleRule(("img_emb_norm_out",), "img_emb.proj.4", "condition_embedder.image_embedder.norm2", "layernorm"),
]

_ATTENTION = [(ours, f"{{a}}.{ours}", theirs) for ours, theirs in
              (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))]
_PER_BLOCK = [
    ModuleRule(("modulation",), "modulation", "scale_shift_table", "squeezed_param"),
    *[ModuleRule(("self_attn", ours), orig.format(a="self_attn"), f"attn1.{theirs}", "linear")
      for ours, orig, theirs in _ATTENTION],
    ModuleRule(("self_attn", "norm_q"), "self_attn.norm_q", "attn1.norm_q", "rmsnorm"),
    ModuleRule(("self_attn", "norm_k"), "self_attn.norm_k", "attn1.norm_k", "rmsnorm"),
    # The affine LayerNorm before cross-attention: norm3 in Wan's numbering, norm2 in Diffusers'.
    ModuleRule(("norm3",), "norm3", "norm2", "layernorm"),
    *[ModuleRule(("cross_attn", ours), orig.format(a="cross_attn"), f"attn2.{theirs}", "linear")
      for ours, orig, theirs in _ATTENTION],
    ModuleRule(("cross_attn", "norm_q"), "cross_attn.norm_q", "attn2.norm_q", "rmsnorm"),
    ModuleRule(("cross_attn", "norm_k"), "cross_attn.norm_k", "attn2.norm_k", "rmsnorm"),
    ModuleRule(("cross_attn", "k_img"), "cross_attn.k_img", "attn2.add_k_proj", "linear"),
    ModuleRule(("cross_attn", "v_img"), "cross_attn.v_img", "attn2.add_v_proj", "linear"),
    ModuleRule(("cross_attn", "norm_k_img"), "cross_attn.norm_k_img", "attn2.norm_added_k", "rmsnorm"),
    ModuleRule(("ffn_0",), "ffn.0", "ffn.net.0.proj", "linear"),
    ModuleRule(("ffn_2",), "ffn.2", "ffn.net.2", "linear"),
]
PARAM_RULES = [*_TOP, *[dataclasses.replace(rule, flax=("blocks", *rule.flax), original=BLOCK + rule.original,
                                              diffusers=BLOCK + rule.diffusers) for rule in _PER_BLOCK]]

# Keys that some checkpoints carry and the model does not use, with the reason reported.
KNOWN_UNUSED = {
    "diffusers": {r"blocks\.\d+\.attn2\.norm_added_q\.weight":
                  "an unused q-norm that old Diffusers exports carry (Diffusers itself ignores it)"},
    "original": {},
}


def _leaf_rules() -> dict[tuple[str, ...], tuple[str, str, Layout]]:
    """Flax leaf path (below 'params') -> (original key, diffusers key, layout)."""
    leaves = {}
    for rule in PARAM_RULES:
        for leaf, suffix, layout in _KIND_LEAVES[rule.kind]:
            path = rule.flax if leaf is None else (*rule.flax, leaf)
            leaves[path] = (rule.original + suffix, rule.diffusers + suffix, layout)
    return leaves


LEAF_RULES = _leaf_rules()


def _dit_config(cfg: Any) -> DiTConfig:
    c = cfg if isinstance(cfg, DiTConfig) else DiTConfig.from_config(cfg)
    if not c.scan_layers:
        raise ValueError("convert: the converter writes scanned blocks; convert with scan_layers=True and turn the "
                         "params into the unrolled layout with models.dit.unroll_params")
    return c


def _example_inputs(cfg: Any) -> tuple[tuple, dict]:
    """The smallest inputs that make `WanDiT.init` create every parameter of `cfg`."""
    c = _dit_config(cfg)
    pt, ph, pw = c.patch_size
    x = jnp.zeros((1, pt, ph, pw, c.out_dim))
    kwargs = {}
    if c.in_dim > c.out_dim:
        kwargs["cond"] = jnp.zeros((1, pt, ph, pw, c.in_dim - c.out_dim))
    if c.image_branch:
        kwargs["clip"] = jnp.zeros((1, 1, c.clip_dim))
    if c.camera:
        kwargs["camera"] = jnp.zeros((1, pt, ph * c.vae_stride[1], pw * c.vae_stride[2],
                                      c.camera_plucker_channels * c.vae_stride[0]))
    return (x, jnp.zeros((1, pt)), jnp.zeros((1, 1, c.text_dim))), kwargs


def init_dit_variables(cfg: Any, rng: jax.Array | None = None) -> dict[str, Any]:
    """`WanDiT.init` on example inputs, unboxed (plain arrays, no LogicallyPartitioned wrappers)."""
    args, kwargs = _example_inputs(cfg)
    rng = jax.random.key(0) if rng is None else rng
    return nn.unbox(build_dit(_dit_config(cfg)).init(rng, *args, **kwargs))


def abstract_dit_params(cfg: Any) -> dict[str, Any]:
    """The exact Flax variables tree of `cfg` as ShapeDtypeStructs (nothing is allocated)."""
    return jax.eval_shape(lambda: init_dit_variables(cfg))


def detect_naming(keys) -> str:
    """'original' (wan/modules/model.py names) or 'diffusers' (WanTransformer3DModel names)."""
    keys = list(keys)
    original = any(k.startswith(("time_embedding.", "head.head.")) or re.match(r"blocks\.\d+\.self_attn\.", k)
                   for k in keys)
    diffusers = any(k.startswith(("condition_embedder.", "proj_out.")) or re.match(r"blocks\.\d+\.attn1\.", k)
                    for k in keys)
    if original != diffusers:
        return "original" if original else "diffusers"
    found = "both" if original else "neither"
    raise ConversionError(f"cannot tell the checkpoint's naming: it has {found} of the original Wan names "
                          f"(time_embedding.*, blocks.N.self_attn.*) and the Diffusers names "
                          f"(condition_embedder.*, blocks.N.attn1.*); first keys: {sorted(keys)[:8]}. "
                          "Pass naming='original' or 'diffusers'")


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _hints(consumer: StateDictConsumer, c: DiTConfig, naming: str) -> list[str]:
    text = " ".join([*consumer.leftovers(), *(key for key, _ in consumer.missing)])
    image_keys = re.search(r"img_emb|k_img|v_img|image_embedder|add_k_proj", text)
    hints = []
    if len(consumer.missing) > consumer.tensors_read:
        hints.append(f"most expected keys are missing: check the naming ({naming} was used; "
                     f"the other is {[n for n in NAMINGS if n != naming][0]})")
    if image_keys and not c.image_branch and any(re.search(r"img|image|add_", k) for k in consumer.leftovers()):
        hints.append("the checkpoint has the CLIP-image branch (I2V / Fun-Control): use the config variant "
                     "',i2v' (36 input channels) or ',fun_control' (48)")
    if c.image_branch and any(re.search(r"img|image|add_", k) for k, _ in consumer.missing):
        hints.append("the config has the image branch but the checkpoint does not (a T2V checkpoint?)")
    if any(m.key.startswith("patch_embedding.weight") for m in consumer.mismatched):
        hints.append(f"patch_embedding input channels differ from config in_dim={c.in_dim} "
                     "(16 = T2V, 36 = I2V, 48 = Fun-Control)")
    if any(re.match(r"blocks\.(\d+)\.", k) and int(k.split(".")[1]) >= c.num_layers for k in consumer.leftovers()):
        hints.append(f"the checkpoint has more than num_layers={c.num_layers} blocks")
    return hints


def _take_leaf(consumer: StateDictConsumer, path: tuple[str, ...], shape: tuple[int, ...], naming: str,
               num_layers: int) -> np.ndarray | None:
    original, diffusers, layout = LEAF_RULES[path]
    key = original if naming == "original" else diffusers
    target = "params/" + "/".join(path)
    if path[0] == "blocks":
        return consumer.take_stacked([key.format(i=i) for i in range(num_layers)], layout, shape[1:], target=target)
    return consumer.take(key, layout, shape, target=target)


def expected_checkpoint_shapes(cfg: Any, naming: str = "original") -> dict[str, tuple[int, ...]]:
    """{checkpoint key: torch shape} that a Wan checkpoint for `cfg` must hold, in `naming`."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    c = _dit_config(cfg)
    shapes = {}
    for path, leaf in _flatten(abstract_dit_params(cfg)["params"]).items():
        if path[0] in NOT_IN_WAN_CHECKPOINTS:
            continue
        original, diffusers, layout = LEAF_RULES[path]
        key = original if naming == "original" else diffusers
        if path[0] == "blocks":
            shapes.update({key.format(i=i): layout.torch_shape(leaf.shape[1:]) for i in range(c.num_layers)})
        else:
            shapes[key] = layout.torch_shape(leaf.shape)
    return shapes


def _init_params_outside_wan(cfg: Any, paths: list[tuple[str, ...]], seed: int) -> dict[tuple[str, ...], Any]:
    """The model's own init for `paths` (jit prunes the initialisers of every other parameter)."""
    if not paths:
        return {}
    subset = jax.jit(lambda rng: {p: _flatten(init_dit_variables(cfg, rng)["params"])[p] for p in paths})
    return {path: np.asarray(value) for path, value in subset(jax.random.key(seed)).items()}


def dit_params_from_state_dict(state_dict: Mapping[str, np.ndarray], cfg: Any, *, naming: str = "auto",
                               dtype: Any = np.float32, source: str = "checkpoint", seed: int = 0) -> Converted:
    """Convert a Wan2.1 DiT state dict to `{"params": ...}` for `build_dit(cfg)`.

    naming: "auto" (detected from the keys), "original" or "diffusers".
    dtype: the dtype of the written parameters (float32, or bfloat16 to halve the file).
    Raises ConversionError naming every missing, left-over and mis-shaped key.
    """
    c = _dit_config(cfg)
    if naming == "auto":
        naming = detect_naming(state_dict.keys())
    if naming not in NAMINGS:
        raise ValueError(f"naming must be 'auto' or one of {NAMINGS}, got {naming!r}")
    abstract = _flatten(abstract_dit_params(cfg)["params"])
    unknown = [p for p in abstract if p not in LEAF_RULES and p[0] not in NOT_IN_WAN_CHECKPOINTS]
    if unknown:
        raise ConversionError(f"internal: WanDiT parameters with no checkpoint rule: {['/'.join(p) for p in unknown]}")

    consumer = StateDictConsumer(state_dict, source=source)
    filled = {path: _take_leaf(consumer, path, leaf.shape, naming, c.num_layers)
              for path, leaf in abstract.items() if path[0] not in NOT_IN_WAN_CHECKPOINTS}
    for pattern, reason in KNOWN_UNUSED[naming].items():
        consumer.ignore_matching(pattern, reason)
    consumer.finish(context=f"{naming} naming, in_dim={c.in_dim}, image_branch={c.image_branch}",
                    hints=_hints(consumer, c, naming))

    at_init = [path for path in abstract if path[0] in NOT_IN_WAN_CHECKPOINTS]
    params = {**filled, **_init_params_outside_wan(cfg, at_init, seed)}
    params = {path: np.asarray(value, dtype=dtype, order="C") for path, value in params.items()}
    report = ConversionReport.of(
        consumer, naming, params_filled=["/".join(p) for p in filled],
        params_left_at_init={"/".join(p): NOT_IN_WAN_CHECKPOINTS[p[0]] for p in at_init},
        parameter_count=int(sum(v.size for v in params.values())))
    return Converted({"params": _unflatten(params)}, report)
