"""Fuzz the checkpoint readers (.safetensors, torch .pth) and the converters' weight checks."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import safetensors.numpy
from harness import Case, Target, mutated_file
from torch_pickle_writer import TensorRef, save_torch_state_dict, write_torch_zip

from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.state_dict import IDENTITY, StateDictConsumer
from worldscape_jax.errors import CheckpointError


def small_state_dict(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"blocks.0.weight": rng.normal(size=(3, 4)).astype(np.float32),
            "blocks.0.bias": rng.normal(size=(4,)).astype(np.float16),
            "head.weight": rng.normal(size=(2, 2)).astype(ml_dtypes.bfloat16)}


def check_state_dict(state_dict: dict) -> str | None:
    if not state_dict or not all(isinstance(v, np.ndarray) for v in state_dict.values()):
        return "not a dict of arrays"
    return None


# ---- .safetensors -----------------------------------------------------------------------------------

def safetensors_header(entries: dict, data: bytes) -> bytes:
    import json

    header = json.dumps(entries).encode()
    return len(header).to_bytes(8, "little") + header + data


def safetensors_injection(rng: np.random.Generator) -> tuple[bytes, str]:
    kind = int(rng.integers(5))
    if kind == 0:
        return (2**62).to_bytes(8, "little") + b"{}", "header size 2^62"
    if kind == 1:
        return safetensors_header({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 16]}},
                                  bytes(16)), "shape (2^20, 2^20) over 16 bytes"
    if kind == 2:
        return safetensors_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), \
            "data_offsets past the end"
    if kind == 3:
        return safetensors_header({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)), \
            "unknown dtype"
    return safetensors_header([1, 2, 3], b""), "header is a JSON list"


def safetensors_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            path = tmp_path / f"weights_{index}.safetensors"
            state_dict = {k: v for k, v in small_state_dict(rng).items() if v.dtype != ml_dtypes.bfloat16}
            valid = safetensors.numpy.save(state_dict)
            if index % 4 == 0:
                path.write_bytes(valid)
                yield Case(path, "valid", names=path.name, valid=True)
            elif index % 4 == 1:
                data, label = safetensors_injection(rng)
                path.write_bytes(data)
                yield Case(path, label, names=path.name, wrong=True)
            elif index % 4 == 2:
                f8 = (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)[index % 2]
                code = "F8_E4M3" if f8 is ml_dtypes.float8_e4m3fn else "F8_E5M2"
                values = rng.normal(size=6).astype(f8)
                path.write_bytes(safetensors_header({"w": {"dtype": code, "shape": [2, 3], "data_offsets": [0, 6]}},
                                                    values.tobytes()))
                yield Case(path, f"{code} tensor", names=path.name, valid=True)
            else:
                yield mutated_file(path, valid, rng)
    return cases


def load(path):
    return checkpoint_io.load_state_dict(path, progress=False)


def test_fuzz_safetensors(fuzz, tmp_path):
    fuzz(Target("safetensors", safetensors_cases(tmp_path), load, check_state_dict), ci=240, long=4000)


# ---- torch .pth ---------------------------------------------------------------------------------------

def pth_injection(path, rng: np.random.Generator) -> str:
    storage = {"0": np.arange(4, dtype=np.float32)}
    kind = int(rng.integers(4))
    if kind == 0:
        write_torch_zip(path, {"w": TensorRef("0", 0, (2**20, 2**20), (0, 0))}, storage)
        return "size (2^20, 2^20), stride (0, 0)"
    if kind == 1:
        write_torch_zip(path, {"w": TensorRef("0", 0, (-4,), (1,))}, storage)
        return "negative size"
    if kind == 2:
        write_torch_zip(path, {"w": TensorRef("0", 3, (4,), (1,))}, storage)
        return "reads past its storage"
    write_torch_zip(path, {"w": TensorRef("0", 0, (2, 2), (-1, 1))}, storage)
    return "negative stride"


def pth_cases(tmp_path):
    def cases(rng, count):
        for index in range(count):
            path = tmp_path / f"model_{index}.pth"
            save_torch_state_dict(path, small_state_dict(rng))
            if index % 3 == 0:
                yield Case(path, "valid", names=path.name, valid=True)
            elif index % 3 == 1:
                yield Case(path, pth_injection(path, rng), names=path.name, wrong=True)
            else:
                yield mutated_file(path, path.read_bytes(), rng)
    return cases


def test_fuzz_torch_pth(fuzz, tmp_path):
    fuzz(Target("torch_pth", pth_cases(tmp_path), load, check_state_dict), ci=240, long=4000)


# ---- converter weight checks ----------------------------------------------------------------------------

BAD_DTYPES = (np.complex64, np.bool_, np.int8, np.int64, np.uint8)
GOOD_DTYPES = (np.float64, np.float32, np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)


def weight_cases(rng, count):
    for index in range(count):
        name = f"blocks.{index}.weight"
        values = rng.normal(size=(2, 3))
        if index % 3 == 0:
            dtype = GOOD_DTYPES[rng.integers(len(GOOD_DTYPES))]
            yield Case((name, values.astype(dtype)), f"{np.dtype(dtype)} weight", names=name, valid=True)
        elif index % 3 == 1:
            dtype = BAD_DTYPES[rng.integers(len(BAD_DTYPES))]
            yield Case((name, (values * 3).astype(dtype)), f"{np.dtype(dtype)} weight", names=name, wrong=True)
        else:
            dtype = GOOD_DTYPES[rng.integers(4)]
            values[rng.integers(2), rng.integers(3)] = (np.nan, np.inf, -np.inf, 1e39)[rng.integers(4)]
            with np.errstate(over="ignore", invalid="ignore"):
                yield Case((name, values.astype(dtype)), f"non-finite {np.dtype(dtype)} weight", names=name, wrong=True)


def convert_one(data) -> np.ndarray:
    name, value = data
    consumer = StateDictConsumer({name: value}, source="fuzz.safetensors")
    result = consumer.take(name, IDENTITY, value.shape)
    consumer.finish()
    return result


def test_fuzz_converter_weights(fuzz):
    fuzz(Target("converter_weights", weight_cases, convert_one, error_type=CheckpointError), ci=90, long=3000)
