"""checkpoint_io / torch_zip: torch-format files written by the test (no torch), safetensors, shards, Orbax."""

import json

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from torch_pickle_writer import Global, TensorRef, save_torch_state_dict, write_torch_zip

from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.torch_zip import TorchFormatError, load_torch_zip


def _storage(dtype, n, seed=0):
    values = np.random.default_rng(seed).normal(size=n) * 10
    return values.astype(np.int64) if dtype == np.int64 else values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.int64])
def test_pth_reader_dtypes_offsets_and_strides(tmp_path, dtype):
    storage = _storage(dtype, 40)
    obj = {
        "contiguous": TensorRef("0", 0, (3, 4), (4, 1)),
        "offset": TensorRef("0", 5, (2, 3), (3, 1)),
        "transposed": TensorRef("0", 0, (4, 3), (1, 4)),  # a .T view: column-major strides
        "every_other_row": TensorRef("0", 2, (3, 5), (10, 1)),
        "scalar": TensorRef("0", 7, (), ()),
    }
    write_torch_zip(tmp_path / "x.pth", obj, {"0": storage})
    loaded = load_torch_zip(tmp_path / "x.pth")
    base = storage[:12].reshape(3, 4)
    expected = {
        "contiguous": base,
        "offset": storage[5:11].reshape(2, 3),
        "transposed": base.T,
        "every_other_row": np.stack([storage[2 + 10 * r: 7 + 10 * r] for r in range(3)]),
        "scalar": storage[7],
    }
    assert list(loaded) == list(expected)
    for name, want in expected.items():
        assert loaded[name].dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(loaded[name], want, err_msg=name)
        assert loaded[name].flags.c_contiguous


def test_pth_reader_shares_one_storage_between_tensors_and_reads_two_storages(tmp_path):
    a, b = _storage(np.float32, 8, 1), _storage(ml_dtypes.bfloat16, 6, 2)
    obj = {"first_half": TensorRef("a", 0, (4,), (1,)), "second_half": TensorRef("a", 4, (2, 2), (2, 1)),
           "other": TensorRef("b", 0, (2, 3), (3, 1))}
    write_torch_zip(tmp_path / "x.pt", obj, {"a": a, "b": b}, root="my_model")
    loaded = load_torch_zip(tmp_path / "x.pt")
    np.testing.assert_array_equal(loaded["first_half"], a[:4])
    np.testing.assert_array_equal(loaded["second_half"], a[4:].reshape(2, 2))
    np.testing.assert_array_equal(loaded["other"], b.reshape(2, 3))


def test_pth_reader_refuses_foreign_globals(tmp_path):
    write_torch_zip(tmp_path / "evil.pth", {"w": Global("os", "system")}, {})
    with pytest.raises(TorchFormatError, match=r"evil\.pth.*'os\.system'.*refusing"):
        load_torch_zip(tmp_path / "evil.pth")


def test_pth_reader_rejects_out_of_bounds_views_and_short_storages(tmp_path):
    write_torch_zip(tmp_path / "oob.pth", {"w": TensorRef("0", 6, (2, 3), (3, 1))}, {"0": _storage(np.float32, 10)})
    with pytest.raises(TorchFormatError, match="reads element 11 of a storage with 10"):
        load_torch_zip(tmp_path / "oob.pth")
    (tmp_path / "legacy.pth").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(TorchFormatError, match="not a zip archive"):
        load_torch_zip(tmp_path / "legacy.pth")


def test_load_state_dict_unwraps_containers_and_prefixes(tmp_path):
    sd = {"blocks.0.w": _storage(np.float32, 6).reshape(2, 3), "head.b": _storage(np.float16, 4)}
    save_torch_state_dict(tmp_path / "wrapped.pth", sd, wrap="state_dict", prefix="module.model.")
    loaded = checkpoint_io.load_state_dict(tmp_path / "wrapped.pth")
    assert sorted(loaded) == sorted(sd)
    for name in sd:
        np.testing.assert_array_equal(loaded[name], sd[name])
    explicit = checkpoint_io.load_state_dict(tmp_path / "wrapped.pth", container="state_dict", prefix="module.")
    assert sorted(explicit) == sorted("model." + k for k in sd)
    kept = checkpoint_io.load_state_dict(tmp_path / "wrapped.pth", prefix=None)
    assert sorted(kept) == sorted("module.model." + k for k in sd)
    with pytest.raises(checkpoint_io.CheckpointFormatError, match="lack the prefix 'ema.'"):
        checkpoint_io.load_state_dict(tmp_path / "wrapped.pth", prefix="ema.")
    with pytest.raises(checkpoint_io.CheckpointFormatError, match="no 'generator' entry"):
        checkpoint_io.load_state_dict(tmp_path / "wrapped.pth", container="generator")


def test_load_state_dict_asks_for_a_container_when_ambiguous(tmp_path):
    refs = {"w": TensorRef("0", 0, (2,), (1,))}
    write_torch_zip(tmp_path / "two.pth", {"generator": refs, "generator_ema": refs}, {"0": _storage(np.float32, 2)})
    with pytest.raises(checkpoint_io.CheckpointFormatError, match="several nested state dicts"):
        checkpoint_io.load_state_dict(tmp_path / "two.pth")
    assert list(checkpoint_io.load_state_dict(tmp_path / "two.pth", container="generator_ema")) == ["w"]


def test_safetensors_bf16_and_sharded_index(tmp_path):
    sd = {f"blocks.{i}.w": _storage(ml_dtypes.bfloat16, 6, i).reshape(2, 3) for i in range(4)}
    shards = {"model-00001-of-00002.safetensors": ["blocks.0.w", "blocks.1.w"],
              "model-00002-of-00002.safetensors": ["blocks.2.w", "blocks.3.w"]}
    for shard, names in shards.items():
        safetensors.numpy.save_file({n: sd[n] for n in names}, str(tmp_path / shard))
    weight_map = {name: shard for shard, names in shards.items() for name in names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    for source in (tmp_path, tmp_path / "model.safetensors.index.json"):
        loaded = checkpoint_io.load_state_dict(source, progress=False)
        assert sorted(loaded) == sorted(sd)
        for name in sd:
            assert loaded[name].dtype == ml_dtypes.bfloat16
            np.testing.assert_array_equal(loaded[name], sd[name])
    weight_map["blocks.3.w"] = "model-00001-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(checkpoint_io.CheckpointFormatError, match=r"00001.*missing \['blocks.3.w'\]"):
        checkpoint_io.load_state_dict(tmp_path, progress=False)


def test_directory_without_index_needs_exactly_one_weight_file(tmp_path):
    safetensors.numpy.save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "one.safetensors"))
    assert list(checkpoint_io.load_state_dict(tmp_path)) == ["a"]
    safetensors.numpy.save_file({"b": np.ones(2, np.float32)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(checkpoint_io.CheckpointFormatError, match="2 weight files"):
        checkpoint_io.load_state_dict(tmp_path)


def test_orbax_round_trip_is_exact_and_casts_to_the_target(tmp_path):
    params = {"params": {"a": _storage(np.float32, 6).reshape(2, 3),
                         "b": {"c": _storage(ml_dtypes.bfloat16, 4)}}}
    path = checkpoint_io.save_params_orbax(params, tmp_path / "ckpt")
    restored = checkpoint_io.load_params_orbax(path)
    np.testing.assert_array_equal(restored["params"]["a"], params["params"]["a"])
    assert np.asarray(restored["params"]["b"]["c"]).dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(restored["params"]["b"]["c"], params["params"]["b"]["c"])
    with pytest.raises(FileExistsError, match="already exists"):
        checkpoint_io.save_params_orbax(params, path)
