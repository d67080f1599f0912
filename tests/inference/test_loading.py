"""Loading exported models (inference/loading.py): the kind is checked, and every malformed export is an
`ExportError` naming its file: missing pieces, JSON that is not an object, params that are not a tree of
finite real arrays, and any change to the params file after export (its checksum)."""

import json
import os

import chex
import flax.serialization
import jax
import ml_collections
import msgpack
import numpy as np
import pytest

from worldscape_jax.inference.loading import ExportError, load_exported, load_vae, manifest_of, resolve_asset
from worldscape_jax.training.export import export_params

PARAMS = {"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "bias": np.ones(3, np.float32)}}


def _export(tmp_path, stage="teacher"):
    return export_params(PARAMS, tmp_path / "export", ml_collections.ConfigDict({"stage": stage, "model": {}}))


def _replace_params(directory, data: bytes):
    """Writes new params bytes with a matching manifest: what a deliberate (not accidental) change looks like."""
    (directory / "params.msgpack").write_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(manifest_of(data)))


def test_round_trip_and_stage_check(tmp_path):
    params, config = load_exported(_export(tmp_path), stage="teacher")
    chex.assert_trees_all_equal(params, PARAMS, strict=True)  # same tree, dtypes and values
    assert config.stage == "teacher"
    with pytest.raises(ExportError, match=r"export: this export is a 'teacher' model \(the stage in its config.json\), "
                                          "not a 'vae'"):
        load_exported(tmp_path / "export", stage="vae")


def test_missing_directory_and_files_are_named(tmp_path):
    with pytest.raises(ExportError, match=r"nope: no such directory$"):
        load_exported(tmp_path / "nope")
    with pytest.raises(ExportError, match="missing params.msgpack"):
        load_exported(tmp_path)
    directory = tmp_path / "export"
    _export(tmp_path)
    os.remove(directory / "manifest.json")
    with pytest.raises(ExportError, match="missing manifest.json"):
        load_exported(directory)


@pytest.mark.parametrize("text, expected", [
    ("{not json", "config.json: not valid JSON"), ("[1, 2]", "config.json: expected a JSON object, got list"),
    ("5", "config.json: expected a JSON object, got int"), (b"\xff\xfe{}", "config.json: not valid JSON"),
    ('{"stage": "teacher", "lr": NaN}', "config.json: not valid JSON .*NaN is not a JSON number"),
    ('{"model": {}}', "config.json: expected a 'stage' field"), ('{"stage": 3}', "config.json: expected a 'stage'"),
])
def test_config_that_is_not_a_json_object_with_a_stage_is_named(tmp_path, text, expected):
    directory = tmp_path / "export"
    _export(tmp_path)
    path = directory / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ExportError, match=expected):
        load_exported(directory)


@pytest.mark.parametrize("value, expected", [
    (None, "expected a non-empty dict of parameter arrays, got NoneType"),
    (5, "got int 5"),
    ({}, "got an empty dict"),
    ({"params": 3}, r"parameter \['params'\] is int 3"),
    ({"params": {}}, "holds no parameter arrays"),
    ({"w": b"bytes"}, r"parameter \['w'\] is bytes"),
    ({"w": [1.0, 2.0]}, r"parameter \['w'\] is list"),
    ({"a": {}, 1: {}}, "key 1 under the root is int; expected parameter names"),
])
def test_params_that_are_not_a_tree_of_arrays_are_named(tmp_path, value, expected):
    directory = _export(tmp_path)
    _replace_params(directory, msgpack.packb(value))
    with pytest.raises(ExportError, match="params.msgpack: .*" + expected):
        load_exported(directory)


@pytest.mark.parametrize("array, expected", [
    (np.ones(3, np.complex64), "dtype complex64"), (np.ones(3, np.int32), "dtype int32"),
    (np.ones(3, bool), "dtype bool"), (np.array([1.0, np.nan, np.inf], np.float32), "2 non-finite values"),
])
def test_params_of_the_wrong_dtype_or_not_finite_are_named(tmp_path, array, expected):
    directory = _export(tmp_path)
    _replace_params(directory, flax.serialization.msgpack_serialize({"layer": {"w": array}}))
    with pytest.raises(ExportError, match=r"params.msgpack: parameter \['layer'\]\['w'\] .*" + expected):
        load_exported(directory)


def test_a_flipped_bit_or_a_truncated_params_file_is_detected(tmp_path):
    directory = _export(tmp_path)
    path = directory / "params.msgpack"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last float: still a valid msgpack file, with one weight changed
    path.write_bytes(bytes(data))
    assert not np.array_equal(flax.serialization.msgpack_restore(bytes(data))["dense"]["kernel"],
                              PARAMS["dense"]["kernel"])
    with pytest.raises(ExportError, match="params.msgpack: SHA-256 .* differs from .* in manifest.json"):
        load_exported(directory)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ExportError, match=r"params.msgpack: \d+ bytes, but manifest.json records \d+: .*truncated"):
        load_exported(directory)
    (directory / "manifest.json").write_text('{"files": {"params.msgpack": {"sha256": "abc"}}}')
    with pytest.raises(ExportError, match="manifest.json: expected"):
        load_exported(directory)


def test_an_export_of_another_stage_is_refused_by_kind():
    with pytest.raises(ExportError, match="is a 'vae' model .*not a 'teacher'"):
        load_exported("asset:vae_tiny", stage="teacher")
    with pytest.raises(ExportError, match="is a 'teacher' model .*not a 'vae'"):
        load_vae("asset:teacher_tiny")
    with pytest.raises(ExportError, match="committed assets: asset:student_tiny, asset:teacher_tiny, asset:vae_tiny"):
        load_exported("asset:teacher_tine")


def test_committed_tiny_assets_load_with_their_checksums():
    params, config = load_exported("asset:vae_tiny", stage="vae")
    assert config.stage == "vae" and len(config.vae_stats["mean"]) == 16
    assert os.path.isdir(resolve_asset("asset:vae_tiny"))
    assert sum(np.asarray(p).size for p in jax.tree.leaves(params)) > 1e6
    _, vae_cfg = load_vae("asset:vae_tiny", "tiny")
    assert vae_cfg.latent_mean == tuple(config.vae_stats["mean"])
    with pytest.raises(ExportError, match="preset 'tiny', but preset 'wan2_1'"):
        load_vae("asset:vae_tiny", "wan2_1")
    params, config = load_exported("asset:teacher_tiny", stage="teacher")
    assert config.stage == "teacher" and sum(np.asarray(p).size for p in jax.tree.leaves(params)) > 1e6
