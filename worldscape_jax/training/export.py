"""Export trained parameters as one small, self-describing file set, and load them back.

A training run's Orbax checkpoints hold everything needed to resume (optimizer state, EMA, data
iterator); a model that ships inside the repository needs only its parameters, its config and the
log of how it was trained. An export directory holds:

  params.msgpack   the parameters (EMA when the run kept them), float32, flax msgpack
  config.json      the stage config the run was trained with
  metrics.jsonl    the run's training log (copied)
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

PARAMS_FILE = "params.msgpack"
CONFIG_FILE = "config.json"
LOG_FILE = "metrics.jsonl"
ASSET_PREFIX = "asset:"


def resolve_asset(path: str) -> str:
    """`asset:NAME` -> the committed export directory worldscape_jax/assets/NAME; other paths unchanged."""
    if path.startswith(ASSET_PREFIX):
        return os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", path[len(ASSET_PREFIX):])
    return path


def export_params(params: Any, directory: str | os.PathLike, config: ml_collections.ConfigDict,
                  log_file: str | os.PathLike | None = None) -> str:
    """Writes params (as float32 numpy), the config and optionally the training log to `directory`."""
    os.makedirs(directory, exist_ok=True)
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
    with open(os.path.join(directory, PARAMS_FILE), "wb") as f:
        f.write(flax.serialization.msgpack_serialize(host))
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    if log_file is not None:
        shutil.copyfile(log_file, os.path.join(directory, LOG_FILE))
    return directory


def write_run_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Saves the config a run is (re)started with as WORKDIR/config.json, so its export cannot drift from it."""
    with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
        f.write(config.to_json_best_effort(indent=1))


def _flat_json(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    as_dict = json.loads(config.to_json_best_effort()) if isinstance(config, ml_collections.ConfigDict) else config
    flat = {}
    for key, value in as_dict.items():
        if isinstance(value, dict):
            flat.update(_flat_json(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> list[str]:
    """'field: a vs b' for every leaf where the two configs differ (tuples and lists compare equal)."""
    flat_a, flat_b = _flat_json(a), _flat_json(b)
    missing = "<absent>"
    return [f"{key}: {flat_a.get(key, missing)!r} vs {flat_b.get(key, missing)!r}"
            for key in sorted(set(flat_a) | set(flat_b)) if flat_a.get(key, missing) != flat_b.get(key, missing)]


def resolve_run_config(workdir: str, given: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
    """The config to export a run with: the run's own WORKDIR/config.json, which `given` must match.

    Runs older than that file need `given`. A mismatch is an error naming the fields, because an export
    whose config differs from its training (say, another data mix or step count) misdescribes the model.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        if given is None:
            raise FileNotFoundError(f"{path} is missing (runs before it was written): pass --config, the stage "
                                    "config the run was trained with, with the same overrides")
        return given
    with open(path) as f:
        recorded = ml_collections.ConfigDict(json.load(f))
    if given is not None:
        differences = config_differences(given, recorded)
        if differences:
            raise ValueError(f"--config differs from the config the run was last started with ({path}), in "
                             f"{'; '.join(differences)} (given vs recorded); leave out --config to export "
                             "with the recorded one")
    return recorded


def load_exported(directory: str | os.PathLike) -> tuple[Any, ml_collections.ConfigDict]:
    """(params, config) of an export directory; a clear error when a file is missing or unreadable."""
    params_path = os.path.join(directory, PARAMS_FILE)
    config_path = os.path.join(directory, CONFIG_FILE)
    for path in (params_path, config_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"exported model {directory}: missing {os.path.basename(path)} "
                                    f"(expected {PARAMS_FILE} and {CONFIG_FILE}, written by launch/export.py)")
    with open(params_path, "rb") as f:
        try:
            params = flax.serialization.msgpack_restore(f.read())
        except Exception as e:
            raise ValueError(f"exported model {params_path}: not a flax msgpack file ({e})") from e
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    return params, config


def load_init_params(path: str, abstract_params: Any) -> Any:
    """The params of export `path` (or asset:NAME) for a run that starts from them (`config.init_from`).

    They must have exactly the tree of `abstract_params` (same names and shapes); anything missing, extra
    or mis-shaped is named in the error. Values are cast to the abstract dtypes.
    """
    params, _ = load_exported(resolve_asset(path))
    if set(params) == {"params"} and "params" not in abstract_params:  # a flax variables dict
        params = params["params"]
    loaded = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    wanted = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(abstract_params)}
    problems = [f"missing {k}" for k in wanted if k not in loaded]
    problems += [f"unexpected {k}" for k in loaded if k not in wanted]
    problems += [f"{k}: shape {tuple(np.shape(loaded[k]))}, the model needs {tuple(w.shape)}"
                 for k, w in wanted.items() if k in loaded and tuple(np.shape(loaded[k])) != tuple(w.shape)]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems) - 8} more)" if len(problems) > 8 else "")
        raise ValueError(f"config.init_from={path}: the export does not fit this model's params: {shown}")
    return jax.tree_util.tree_map_with_path(
        lambda k, w: np.asarray(loaded[jax.tree_util.keystr(k)], w.dtype), abstract_params)


def restore_trained_params(config: ml_collections.ConfigDict, workdir: str | os.PathLike, use_ema: bool = True):
    """The params (EMA when kept and `use_ema`) of the newest readable checkpoint of a run, and its step."""
    from worldscape_jax.training.checkpointing import Checkpointer
    from worldscape_jax.training.loop import abstract_target, build

    setup = build(config)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep, async_save=False)
    restored = ckpt.restore_latest(abstract_target(setup), None)
    if restored is None:
        raise FileNotFoundError(f"no readable checkpoint under {os.path.join(workdir, 'checkpoints')}")
    state, step = restored
    params = state.ema_params if (use_ema and state.ema_params is not None) else state.params
    select = getattr(setup.stage, "exported_params", None)  # e.g. the generator of {generator, critic, teacher}
    return (params if select is None else select(params)), step
