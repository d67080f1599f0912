"""A run's recorded config (WORKDIR/config.json): written when a run (re)starts, read when it is exported.

Recording it lets `launch/export.py` export a model with exactly the config it was trained with, and
refuse a `--config` that differs (naming the fields) instead of misdescribing the model.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from worldscape_jax.errors import ConfigError
from worldscape_jax.inference.loading import CONFIG_FILE


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
            raise ConfigError(path, "missing (runs before it was written, or not a run directory): pass --config, "
                                    "the stage config the run was trained with, with the same overrides")
        return given
    with open(path) as f:
        recorded = ml_collections.ConfigDict(json.load(f))
    if given is not None:
        differences = config_differences(given, recorded)
        if differences:
            raise ConfigError("--config", f"differs from the config the run was last started with ({path}), in "
                                          f"{'; '.join(differences)} (given vs recorded); leave out --config to "
                                          "export with the recorded one")
    return recorded
