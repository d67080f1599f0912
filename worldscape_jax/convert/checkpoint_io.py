"""Load checkpoint files into flat `{name: np.ndarray}` state dicts, and save/restore Flax params with Orbax.

`load_state_dict` reads what people download: one `.safetensors` file, one torch `.pth`/`.pt`/`.bin`
(read without torch, see `torch_zip.py`), a sharded checkpoint described by a `*.index.json` weight
map, or a directory holding either. Training checkpoints often wrap the weights
(`{"state_dict": ...}`, `{"model": ...}`) and prefix the names (`module.`, `model.`); `container`
and `prefix` unwrap both, automatically when the answer is unambiguous.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from worldscape_jax.convert.safetensors_io import load_safetensors
from worldscape_jax.convert.torch_zip import load_torch_zip
from worldscape_jax.errors import CheckpointError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
WEIGHT_SUFFIXES = (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES)
# Wrappers that training frameworks put around a model's names (DDP, torch.compile, wrapper modules).
AUTO_PREFIXES = ("module.", "_orig_mod.", "model.", "diffusion_model.")
AUTO_CONTAINERS = ("state_dict", "model", "module")


class CheckpointFormatError(CheckpointError):
    """A checkpoint file or directory cannot be read as a state dict (the file, and what was expected)."""


def load_state_dict(path: str | os.PathLike, *, container: str | None = None,
                    prefix: str | None = "auto", progress: bool = True) -> dict[str, np.ndarray]:
    """Read a checkpoint into `{name: array}` (arrays keep the stored dtype; bfloat16 via ml_dtypes).

    path: a weight file, a `*.index.json`, or a directory with one index or one weight file.
    container: the key holding the state dict in a wrapped checkpoint (None: the file itself when it
      is flat, else the one nested state dict, else one of "state_dict", "model", "module").
    prefix: "auto" strips wrapper prefixes (`module.`, `model.`, ...) shared by every name;
      a string strips exactly that prefix (every name must have it); None keeps names as stored.
    """
    path = os.fspath(path)
    raw = _load_any(path, progress)
    state_dict = _unwrap(raw, container, path)
    return _strip_prefix(state_dict, prefix, path)


def _load_any(path: str, progress: bool) -> Any:
    if os.path.isdir(path):
        return _load_any(_pick_in_directory(path), progress)
    if not os.path.exists(path):
        raise CheckpointFormatError(path, "the checkpoint does not exist")
    if path.endswith(".index.json"):
        return load_sharded(path, progress=progress)
    if path.endswith(SAFETENSORS_SUFFIX):
        return load_safetensors(path)
    if path.endswith(TORCH_SUFFIXES):
        return load_torch_zip(path)
    raise CheckpointFormatError(path, f"unknown checkpoint type; expected one of {WEIGHT_SUFFIXES} or *.index.json")


def _pick_in_directory(directory: str) -> str:
    indexes = sorted(glob.glob(os.path.join(directory, "*.index.json")))
    if len(indexes) == 1:
        return indexes[0]
    if len(indexes) > 1:
        raise CheckpointFormatError(directory, f"several weight maps {[os.path.basename(i) for i in indexes]}; "
                                    "pass the one to use as the checkpoint path")
    files = sorted(f for f in os.listdir(directory) if f.endswith(WEIGHT_SUFFIXES))
    if len(files) != 1:
        raise CheckpointFormatError(directory, f"no *.index.json and {len(files)} weight files {files}; "
                                    "expected exactly one, or pass the file to use")
    return os.path.join(directory, files[0])


def load_sharded(index_path: str, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Load every shard named by a `*.index.json` weight map, checking that each shard holds exactly
    the names the map assigns to it."""
    try:
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointFormatError(index_path, f"not a weight-map index with a 'weight_map' field ({e})") from e
    directory = os.path.dirname(index_path)
    names_by_shard: dict[str, set[str]] = {}
    for name, shard in weight_map.items():
        names_by_shard.setdefault(shard, set()).add(name)
    state_dict: dict[str, np.ndarray] = {}
    for shard in tqdm(sorted(names_by_shard), desc="reading shards", unit="shard", disable=not progress):
        shard_path = os.path.join(directory, shard)
        tensors = _unwrap(_load_any(shard_path, progress=False), None, shard_path)
        expected = names_by_shard[shard]
        if set(tensors) != expected:
            raise CheckpointFormatError(
                shard_path, f"does not match {os.path.basename(index_path)}: missing "
                f"{sorted(expected - set(tensors))}, not in the map {sorted(set(tensors) - expected)}")
        state_dict.update(tensors)
    return state_dict


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, np.ndarray) for v in obj.values())


def _unwrap(obj: Any, container: str | None, path: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(path, f"holds a {type(obj).__name__}, not a dict of tensors")
    if container is not None:
        if container not in obj:
            raise CheckpointFormatError(path, f"no {container!r} entry; top-level keys are {sorted(obj)[:20]}")
        obj = obj[container]
        if not _is_tensor_dict(obj):
            raise CheckpointFormatError(path, f"{container!r} is not a dict whose values are all tensors")
        return dict(obj)
    if _is_tensor_dict(obj):
        return dict(obj)
    nested = [key for key, value in obj.items() if _is_tensor_dict(value)]
    if len(nested) > 1:
        nested = [key for key in AUTO_CONTAINERS if key in nested] or nested
    if len(nested) == 1:
        return dict(obj[nested[0]])
    not_tensors = sorted(key for key, value in obj.items() if not isinstance(value, np.ndarray))
    raise CheckpointFormatError(
        path, f"not a flat state dict (non-tensor entries {not_tensors[:10]}) and "
        f"{'several' if nested else 'no'} nested state dicts {nested}; choose one with container=")


def _strip_prefix(state_dict: dict[str, np.ndarray], prefix: str | None, path: str) -> dict[str, np.ndarray]:
    if prefix is None:
        return state_dict
    if prefix != "auto":
        lacking = [key for key in state_dict if not key.startswith(prefix)]
        if lacking:
            raise CheckpointFormatError(path, f"{len(lacking)} names lack the prefix {prefix!r}, e.g. {lacking[:5]}")
        return {key[len(prefix):]: value for key, value in state_dict.items()}
    stripped = True
    while stripped:
        stripped = False
        for candidate in AUTO_PREFIXES:
            if all(key.startswith(candidate) for key in state_dict):
                state_dict = {key[len(candidate):]: value for key, value in state_dict.items()}
                stripped = True
    return state_dict


def save_params_orbax(params: Any, path: str | os.PathLike, *, force: bool = False) -> str:
    """Write a params pytree to an Orbax checkpoint directory (absolute path returned)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} already exists; remove it or pass force=True (--overwrite)")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, params, force=force)
    checkpointer.wait_until_finished()
    return path


def load_params_orbax(path: str | os.PathLike, abstract_params: Any | None = None) -> Any:
    """Restore params written by `save_params_orbax`; with `abstract_params` (a tree of arrays or
    ShapeDtypeStructs) they come back in its structure and dtypes."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no Orbax checkpoint directory there")
    checkpointer = ocp.StandardCheckpointer()
    if abstract_params is None:
        return checkpointer.restore(path)
    return checkpointer.restore(path, abstract_params)
