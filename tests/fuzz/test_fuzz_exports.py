"""Fuzz the exported-model loader (inference/loading.py): mutated params, manifest and config files."""

from __future__ import annotations

import json

import flax.serialization
import jax
import ml_collections
import msgpack
import numpy as np
from harness import Case, Target, mutated_file
from mutators import mutate_bytes, mutate_text

from worldscape_jax.inference.loading import load_exported, manifest_of
from worldscape_jax.training.export import export_params

HOSTILE_PARAMS = (
    (None, "params None"), (5, "params 5"), ({"params": 3}, "{'params': 3}"), ({}, "empty dict"),
    ({"params": {}}, "only empty dicts"), ({"w": b"\x00" * 8}, "bytes leaf"), ({"w": "text"}, "str leaf"),
    ({"w": [1.0, 2.0]}, "list leaf"),
)
HOSTILE_ARRAYS = (
    (np.ones((2, 2), np.complex64), "complex64"), (np.ones(3, np.int64), "int64"), (np.ones(3, bool), "bool"),
    (np.array([1.0, np.nan], np.float32), "NaN weight"), (np.array([np.inf], np.float32), "inf weight"),
)


def small_params(rng: np.random.Generator) -> dict:
    return {"block": {"kernel": rng.normal(size=(3, 4)).astype(np.float32),
                      "bias": rng.normal(size=(4,)).astype(np.float32)}}


def replace_params(directory, data: bytes) -> None:
    """New params bytes with a matching manifest: a deliberate change, so the content checks must catch it."""
    (directory / "params.msgpack").write_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(manifest_of(data)))


def hostile_params(rng: np.random.Generator) -> tuple[bytes, str]:
    if rng.integers(2):
        value, label = HOSTILE_PARAMS[rng.integers(len(HOSTILE_PARAMS))]
        return msgpack.packb(value), label
    array, label = HOSTILE_ARRAYS[rng.integers(len(HOSTILE_ARRAYS))]
    return flax.serialization.msgpack_serialize({"block": {"kernel": array}}), label


def export_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            directory = tmp_path / f"export_{index}"
            export_params(small_params(rng), directory, ml_collections.ConfigDict({"stage": "teacher", "seed": 1}))
            kind = index % 6
            if kind == 0:
                yield Case(directory, "valid", valid=True)
            elif kind == 1:  # an accident: the manifest no longer matches
                params = directory / "params.msgpack"
                yield mutated_file(params, params.read_bytes(), rng, data_for=directory)
            elif kind == 2:  # a deliberate change with a matching manifest: the content decides
                data, label = mutate_bytes((directory / "params.msgpack").read_bytes(), rng)
                replace_params(directory, data)
                yield Case(directory, f"params {label}, manifest updated", names="params.msgpack")
            elif kind == 3:
                data, label = hostile_params(rng)
                replace_params(directory, data)
                yield Case(directory, label, names="params.msgpack", wrong=True)
            else:
                name = ("config.json", "manifest.json")[kind - 4]
                text, label = mutate_text((directory / name).read_text(), rng)
                (directory / name).write_bytes(text.encode("utf-8", "surrogatepass"))
                yield Case(directory, f"{name}: {label}", names=name)
    return cases


def load(directory):
    return load_exported(directory, stage="teacher")


def check_export(result) -> str | None:
    params, config = result
    leaves = jax.tree.leaves(params)
    if not leaves or not all(isinstance(x, np.ndarray) and x.dtype.kind == "f" and np.isfinite(x).all() for x in leaves):
        return "params hold a leaf that is not a finite real array"
    if config.stage != "teacher":
        return f"a {config.stage!r} export was returned for a teacher"
    return None


def test_fuzz_exported_models(fuzz, tmp_path):
    fuzz(Target("exported_model", export_cases(tmp_path), load, check_export), ci=120, long=3000)
