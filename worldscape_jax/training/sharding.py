"""Mesh from config and shardings from logical axis names.

Models name their parameter and activation axes logically ('embed', 'mlp', 'heads', ...); the
rules below (overridable in `config.logical_axis_rules`) map those names to the four mesh axes
('data', 'fsdp', 'tensor', 'context'). Batches are split over ('data', 'fsdp'): fsdp shards
parameters and batch alike (ZeRO-3 style), 'tensor' shards heads and MLP width, 'context' shards
the token sequence. State shardings are derived from `jax.eval_shape` of the init, never by
materialising anything first.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from worldscape_jax.errors import ConfigError
from worldscape_jax.training.train_state import TrainState

MESH_AXES = ("data", "fsdp", "tensor", "context")
BATCH_AXES = ("data", "fsdp")

# (logical name, mesh axis or axes or None). A mesh axis is used at most once per array: when two
# logical names of one array claim the same mesh axis, the first one in this list gets it.
DEFAULT_LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("activation_batch", BATCH_AXES),
    ("activation_length", "context"),
    ("activation_heads", "tensor"),
    ("activation_embed", None),
    ("activation_mlp", "tensor"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("conv_out", "tensor"),
    ("embed", "fsdp"),
    ("text_embed", "fsdp"),
    ("conv_in", "fsdp"),
    ("kv", None),
    ("layers", None),
    ("norm", None),
)


def normalize_rules(rules: Sequence[Sequence[Any]]) -> tuple[tuple[str, Any], ...]:
    """Rules from a config (lists or tuples) as hashable (name, axes) pairs, checked against MESH_AXES."""
    out = []
    for i, rule in enumerate(rules):
        if len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"config.logical_axis_rules[{i}] must be (logical_name, mesh_axes), got {rule!r}")
        name, axes = rule
        axes = tuple(axes) if isinstance(axes, (list, tuple)) else axes
        for axis in (axes if isinstance(axes, tuple) else (axes,)):
            if axis is not None and axis not in MESH_AXES:
                raise ValueError(
                    f"config.logical_axis_rules[{i}] ({name!r}) maps to unknown mesh axis {axis!r}; "
                    f"mesh axes are {MESH_AXES}"
                )
        out.append((name, axes))
    return tuple(out)


def mesh_shape(mesh_config: Any, num_devices: int) -> tuple[int, ...]:
    """Axis sizes in MESH_AXES order; one axis may be -1 and takes what the others leave."""
    unknown = set(mesh_config.keys()) - set(MESH_AXES)
    if unknown:
        raise ConfigError("config.mesh", f"unknown axes {sorted(unknown)}; allowed: {MESH_AXES}")
    sizes = [int(mesh_config.get(axis, 1)) for axis in MESH_AXES]
    free = [i for i, s in enumerate(sizes) if s == -1]
    if len(free) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError("config.mesh", f"sizes must be >= 1 with at most one -1, got {dict(zip(MESH_AXES, sizes))}")
    fixed = math.prod(s for s in sizes if s != -1)
    if free:
        if num_devices % fixed:
            fixed_axes = {a: s for a, s in zip(MESH_AXES, sizes) if s != -1}
            raise ConfigError("config.mesh", f"{fixed_axes} need a multiple of {fixed} devices, found {num_devices}")
        sizes[free[0]] = num_devices // fixed
    if math.prod(sizes) != num_devices:
        raise ConfigError("config.mesh", f"{dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, found "
                                         f"{num_devices}")
    return tuple(sizes)


def make_mesh(mesh_config: Any, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over all (global) devices with axes MESH_AXES, sizes from `config.mesh`."""
    devices = list(devices if devices is not None else jax.devices())
    shape = mesh_shape(mesh_config, len(devices))
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over data and fsdp, everything else replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def unbox(tree: Any) -> Any:
    """Strip flax partitioning metadata boxes, leaving plain arrays (or ShapeDtypeStructs)."""
    return nn.meta.unbox(tree)


def logical_param_specs(boxed_params: Any) -> Any:
    """Logical PartitionSpecs of (abstract) params as returned by `model.init` with logical names."""
    return nn.get_partition_spec(boxed_params)


def state_logical_specs(abstract_state: TrainState, param_specs: Any, tx: optax.GradientTransformation) -> TrainState:
    """Logical specs for the whole state: opt-state leaves shaped like params follow the params.

    Optimizers that partition the params (optax.multi_transform, masked) keep masked placeholders that
    `tree_map_params` cannot walk; their leaves are matched to params by path instead (`_specs_by_path`).
    """
    try:
        opt_specs = optax.tree_utils.tree_map_params(
            tx,
            lambda _, spec: spec,
            abstract_state.opt_state,
            param_specs,
            transform_non_params=lambda _: PartitionSpec(),
            is_leaf=lambda x: isinstance(x, PartitionSpec),
        )
    except (TypeError, ValueError):
        opt_specs = _specs_by_path(abstract_state.opt_state, abstract_state.params, param_specs)
    return TrainState(
        step=PartitionSpec(),
        params=param_specs,
        opt_state=opt_specs,
        ema_params=None if abstract_state.ema_params is None else param_specs,
        rng=PartitionSpec(),
    )


def _dict_keys(path) -> tuple:
    return tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))


def _specs_by_path(opt_state: Any, params: Any, param_specs: Any) -> Any:
    """Opt-state leaf -> the spec of the param whose dict-key path ends its own, with the same shape."""
    shapes = {_dict_keys(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(params)}
    specs = {_dict_keys(p): s for p, s in jax.tree_util.tree_leaves_with_path(
        param_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))}

    def spec_of(path, leaf):
        keys = _dict_keys(path)
        for start in range(len(keys)):
            if keys[start:] in specs and shapes[keys[start:]] == getattr(leaf, "shape", None):
                return specs[keys[start:]]
        return PartitionSpec()

    return jax.tree_util.tree_map_with_path(spec_of, opt_state)


def _axis_size(mesh: Mesh, entry: Any) -> int:
    if entry is None:
        return 1
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(mesh.shape[n] for n in names)


def check_divisible(abstract_tree: Any, shardings: Any, what: str) -> None:
    """Raise, naming the leaf, when a sharded dimension is not divisible by its mesh axes."""
    leaves = jax.tree_util.tree_leaves_with_path(abstract_tree)
    sharding_leaves = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
    if len(leaves) != len(sharding_leaves):
        raise ValueError(f"sharding: {what} has {len(leaves)} leaves but {len(sharding_leaves)} shardings")
    for (path, leaf), sharding in zip(leaves, sharding_leaves):
        for dim, entry in enumerate(sharding.spec):
            size = _axis_size(sharding.mesh, entry)
            if dim >= len(leaf.shape) or leaf.shape[dim] % size:
                raise ValueError(
                    f"sharding: {what}{jax.tree_util.keystr(path)} has shape {leaf.shape} but spec "
                    f"{sharding.spec} splits dim {dim} over mesh axes {entry} of size {size}; "
                    "choose sizes divisible by the mesh or change config.logical_axis_rules / config.mesh"
                )


def logical_to_mesh_spec(logical: PartitionSpec, rules: tuple[tuple[str, Any], ...]) -> PartitionSpec:
    """Map one array's logical axis names to mesh axes.

    Rules are applied in order; a rule assigns its mesh axes to every still-unassigned dimension
    with its logical name, unless one of those mesh axes is already used by this array. So a kernel
    named ('embed', 'embed') gets ('fsdp', None). A name that no rule mentions is an error (a typo
    would otherwise silently replicate a parameter).
    """
    names = tuple(logical)
    known = {name for name, _ in rules}
    for name in names:
        if name is not None and (not isinstance(name, str) or name not in known):
            raise ValueError(
                f"sharding: logical axis {name!r} (in {logical}) has no rule in config.logical_axis_rules; "
                f"known names: {sorted(known)}"
            )
    out: list[Any] = [None] * len(names)
    assigned = [False] * len(names)
    used: set[str] = set()
    for rule_name, axes in rules:
        axes_tuple = axes if isinstance(axes, tuple) else ((axes,) if axes is not None else ())
        for dim, name in enumerate(names):
            if name != rule_name or assigned[dim]:
                continue
            if used.intersection(axes_tuple):
                continue
            out[dim], assigned[dim] = axes, True
            used.update(axes_tuple)
    return PartitionSpec(*out)


def logical_to_shardings(logical_specs: Any, mesh: Mesh, rules: Sequence[Sequence[Any]]) -> Any:
    """Logical PartitionSpecs -> NamedShardings on `mesh` under `rules`."""
    rules = normalize_rules(rules)
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, logical_to_mesh_spec(spec, rules)),
        logical_specs,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def batch_shardings(abstract_batch: Any, mesh: Mesh) -> Any:
    """A batch sharding per leaf, after checking each leading dim divides data * fsdp."""
    shardings = jax.tree.map(lambda _: batch_sharding(mesh), abstract_batch)
    check_divisible(abstract_batch, shardings, "batch")
    return shardings


def describe_sharding(tree: Any) -> dict[str, str]:
    """Path -> 'shape spec' for every leaf of a tree of jax.Arrays (for logs and tests)."""
    return {
        jax.tree_util.keystr(path): f"{tuple(x.shape)} {x.sharding.spec if hasattr(x.sharding, 'spec') else x.sharding}"
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def is_sharded(x: jax.Array) -> bool:
    """True when a global array's addressable shards are smaller than the array (some axis is split)."""
    shard_shape = x.sharding.shard_shape(x.shape)
    return bool(np.prod(shard_shape) < np.prod(x.shape))
