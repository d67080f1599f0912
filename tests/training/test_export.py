"""Exported models: params, config and log round-trip; missing or unreadable files are named."""

import json

import ml_collections
import numpy as np
import pytest

from worldscape_jax.errors import ConfigError
from worldscape_jax.inference.loading import load_exported
from worldscape_jax.training.export import export_params
from worldscape_jax.training.run_config import config_differences, resolve_run_config, write_run_config


def test_export_round_trip(tmp_path):
    params = {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3, np.float16)}}
    config = ml_collections.ConfigDict({"stage": "vae", "model": {"dim": 16, "dim_mult": (1, 2)}})
    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")
    out = export_params(params, tmp_path / "export", config, log)
    loaded, loaded_config = load_exported(out)
    np.testing.assert_array_equal(loaded["dense"]["kernel"], params["dense"]["kernel"])
    assert loaded["dense"]["bias"].dtype == np.float32  # exports are float32
    assert loaded_config.model.dim == 16 and list(loaded_config.model.dim_mult) == [1, 2]
    assert (tmp_path / "export" / "metrics.jsonl").read_text() == log.read_text()


def _run_config(**data):
    return ml_collections.ConfigDict({"stage": "teacher", "total_steps": 10,
                                      "data": {"families": ("forward", "pan"), "frames": 9, **data}})


def test_config_differences_name_each_differing_field():
    assert config_differences(_run_config(), _run_config()) == []
    listed = ml_collections.ConfigDict(json.loads(_run_config().to_json_best_effort()))  # tuples come back as lists
    assert config_differences(_run_config(), listed) == []
    other = _run_config(frames=17, families=("keys",))
    assert config_differences(_run_config(), other) == [
        "data.families: ['forward', 'pan'] vs ['keys']", "data.frames: 9 vs 17"]
    other.extra = 1
    assert "extra: '<absent>' vs 1" in config_differences(_run_config(), other)


def test_export_uses_the_runs_recorded_config_and_rejects_a_different_one(tmp_path):
    with pytest.raises(ConfigError, match="pass --config"):
        resolve_run_config(str(tmp_path), None)
    assert resolve_run_config(str(tmp_path), _run_config()).data.frames == 9  # older runs: the given config
    write_run_config(tmp_path, _run_config(families=("keys", "pan")))
    assert list(resolve_run_config(str(tmp_path), None).data.families) == ["keys", "pan"]
    assert resolve_run_config(str(tmp_path), _run_config(families=("keys", "pan"))).total_steps == 10
    with pytest.raises(ValueError, match=r"config.json\), in data.families: \['forward', 'pan'\] vs \['keys', 'pan'\]"):
        resolve_run_config(str(tmp_path), _run_config())
