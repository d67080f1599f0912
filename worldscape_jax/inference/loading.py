"""Load an exported model: `asset:NAME` or a directory written by `launch/export.py` -> (params, config).

An export directory holds
  params.msgpack   the parameters, float32, flax msgpack (training/export.py writes it)
  manifest.json    the SHA-256 and size of params.msgpack, checked on load: a truncated file or a
                   flipped bit is an error, not silently different weights
  config.json      the stage config the model was trained with; its `stage` says what kind of model it is
  metrics.jsonl    the training log (optional)
`asset:NAME` names one committed with the code under worldscape_jax/assets/NAME. Nothing is cached:
each call reads the files, so a model re-exported to the same path is seen at once. Whatever is wrong
with an export (a missing file or directory, JSON that is not an object, params that are not a tree of
finite real arrays, a checksum that does not match, another kind of model) raises `ExportError`
naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import flax.serialization
import jax.numpy as jnp
import ml_collections
import numpy as np

from worldscape_jax.errors import CheckpointError
from worldscape_jax.models.vae_config import VAEConfig, vae_config

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
LOG_FILE = "metrics.jsonl"
MANIFEST_FILE = "manifest.json"
ASSET_PREFIX = "asset:"
ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets")


class ExportError(CheckpointError):
    """An exported model that is missing, unreadable, malformed or not the kind asked for; names the file."""


def resolve_asset(path: str | os.PathLike) -> str:
    """`asset:NAME` -> the committed export directory worldscape_jax/assets/NAME; other paths unchanged."""
    path = os.fspath(path)
    if path.startswith(ASSET_PREFIX):
        return os.path.join(ASSETS_DIR, path[len(ASSET_PREFIX):])
    return path


def load_exported(path: str | os.PathLike, stage: str | None = None) -> tuple[Any, ml_collections.ConfigDict]:
    """(params, config) of export `path` (`asset:NAME` or a directory).

    `stage` ("teacher", "vae", ...) is the kind of model the caller needs; an export of another stage is
    refused with an `ExportError` saying what it is. Params come back as the stage's params dict (a flax
    `{"params": ...}` variables wrapper is removed).
    """
    directory = resolve_asset(path)
    if not os.path.isdir(directory):
        raise ExportError(path, f"no such directory{_asset_note(path)}")
    for name in (PARAMS_FILE, MANIFEST_FILE, CONFIG_FILE):
        if not os.path.isfile(os.path.join(directory, name)):
            raise ExportError(directory, f"missing {name} (an export holds {PARAMS_FILE}, {MANIFEST_FILE} and "
                                         f"{CONFIG_FILE}, written by launch/export.py)")
    config_path = os.path.join(directory, CONFIG_FILE)
    config = _read_config(config_path)
    if stage is not None and config.stage != stage:
        raise ExportError(path, f"this export is a {config.stage!r} model (the stage in its {CONFIG_FILE}), "
                                     f"not a {stage!r}")
    params_path = os.path.join(directory, PARAMS_FILE)
    data = _read_checked(params_path, _read_manifest(os.path.join(directory, MANIFEST_FILE)))
    params = _params_from_bytes(data, params_path)
    if set(params) == {"params"} and isinstance(params["params"], dict):
        params = params["params"]
    return params, config


def manifest_of(params_bytes: bytes) -> dict[str, Any]:
    """The manifest.json contents for a params file with these bytes (its size and SHA-256)."""
    return {"files": {PARAMS_FILE: {"bytes": len(params_bytes), "sha256": hashlib.sha256(params_bytes).hexdigest()}}}


def load_vae(path: str | os.PathLike, preset: str | None = None) -> tuple[Any, VAEConfig]:
    """(params, VAEConfig) of an exported VAE. Its shape and latent statistics come from the export's
    config; `preset`, when given, must name the preset it was built from."""
    params, exported = load_exported(path, stage="vae")
    if preset is not None and exported.model.preset != preset:
        raise ExportError(path, f"the VAE was trained from preset {exported.model.preset!r}, but preset "
                                f"{preset!r} is asked for (config.vae.preset)")
    return params, vae_config(exported)


def _asset_note(path: str | os.PathLike) -> str:
    if not os.fspath(path).startswith(ASSET_PREFIX):
        return ""
    names = sorted(os.listdir(ASSETS_DIR)) if os.path.isdir(ASSETS_DIR) else []
    return f" (committed assets: {', '.join(ASSET_PREFIX + n for n in names) or 'none'})"


def _read_json_object(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ExportError(path, f"not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise ExportError(path, f"expected a JSON object, got {type(value).__name__}")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (strict JSON has no NaN or Infinity)")


def _read_config(path: str) -> ml_collections.ConfigDict:
    value = _read_json_object(path)
    if not isinstance(value.get("stage"), str):
        raise ExportError(path, f"expected a 'stage' field naming the model's training stage (a string); got "
                                f"{value.get('stage')!r}")
    try:
        return ml_collections.ConfigDict(value)
    except Exception as e:  # ConfigDict refuses some keys (e.g. with dots); say which file held them
        raise ExportError(path, f"not a stage config ({type(e).__name__}: {e})") from e


def _read_manifest(path: str) -> dict[str, Any]:
    """The expected size and SHA-256 of the params file."""
    entry = _read_json_object(path).get("files", {})
    entry = entry.get(PARAMS_FILE) if isinstance(entry, dict) else None
    ok = (isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
          and len(entry["sha256"]) == 64)
    if not ok:
        expected = f'{{"files": {{"{PARAMS_FILE}": {{"bytes": int, "sha256": 64 hex digits}}}}}}'
        raise ExportError(path, f"expected {expected}; got {entry!r}")
    return entry


def _read_checked(path: str, expected: dict[str, Any]) -> bytes:
    """The file's bytes, after checking its size (before reading it) and its SHA-256 against the manifest."""
    size = os.path.getsize(path)
    if size != expected["bytes"]:
        raise ExportError(path, f"{size} bytes, but {MANIFEST_FILE} records {expected['bytes']}: the file is "
                                "truncated or was replaced after export")
    with open(path, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected["sha256"]:
        raise ExportError(path, f"SHA-256 {digest} differs from {expected['sha256']} in {MANIFEST_FILE}: the file "
                                "is corrupted or was changed after export")
    return data


def _params_from_bytes(data: bytes, path: str) -> dict:
    """The params tree of a flax msgpack file: nested dicts of finite, real floating arrays."""
    try:
        params = flax.serialization.msgpack_restore(data)
    except Exception as e:  # msgpack and flax raise many kinds; all mean the same thing here
        raise ExportError(path, f"not a flax msgpack file ({type(e).__name__}: {e})") from e
    if not isinstance(params, dict) or not params:
        raise ExportError(path, f"expected a non-empty dict of parameter arrays, got {_describe(params)}")
    if not _check_tree(params, "", path):
        raise ExportError(path, "holds no parameter arrays (only empty dicts)")
    return params


def _check_tree(node: dict, name: str, path: str) -> int:
    """Checks a params subtree (string keys; leaves finite real floating arrays); returns its leaf count."""
    count = 0
    for key, value in node.items():
        if not isinstance(key, str):
            raise ExportError(path, f"key {key!r} under {name or 'the root'} is {type(key).__name__}; expected "
                                    "parameter names (strings)")
        child = f"{name}['{key}']"
        if isinstance(value, dict):
            count += _check_tree(value, child, path)
            continue
        if not isinstance(value, np.ndarray) or not _is_real_float(value.dtype):
            raise ExportError(path, f"parameter {child} is {_describe(value)}; expected a real floating array "
                                    "(launch/export.py writes float32)")
        if not np.all(np.isfinite(value)):
            raise ExportError(path, f"parameter {child} has {int(value.size - np.isfinite(value).sum())} "
                                    "non-finite values (NaN or inf)")
        count += 1
    return count


def _is_real_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f" or dtype == jnp.bfloat16


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, dict):
        return "an empty dict" if not value else "a dict"
    return f"{type(value).__name__} {value!r:.40}"
