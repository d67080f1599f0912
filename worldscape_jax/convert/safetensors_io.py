"""Reading `.safetensors` files with every declared size checked against the file before it is read.

Format: an 8-byte little-endian header length N, N bytes of JSON `{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}`, then the tensors' bytes, offsets relative to
the end of the header. This reader (rather than `safetensors.numpy`, which raises its own error
type without the path and cannot return float8) checks that the header is a JSON object of that
form, that each tensor's byte range matches its shape and dtype, and that the ranges tile the data
exactly; every problem is a CheckpointError naming the file and the tensor. float8 comes back
through ml_dtypes.
"""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np

from worldscape_jax.errors import CheckpointError

MAX_HEADER_BYTES = 100_000_000  # the format's own limit
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def load_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`{name: array}` of a .safetensors file (dtypes as stored; checks in the module docstring)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            header, data_start = _read_header(file, path)
            data_bytes = os.fstat(file.fileno()).st_size - data_start
            entries = _check_entries(header, path, data_bytes)
            tensors = {}
            for name, (dtype, shape, begin, end) in entries.items():
                file.seek(data_start + begin)
                raw = file.read(end - begin)
                tensors[name] = np.frombuffer(raw, dtype).reshape(shape).copy()
    except OSError as error:
        raise CheckpointError(path, f"cannot read the file ({error})") from error
    return tensors


def _read_header(file, path: str) -> tuple[dict, int]:
    prefix = file.read(8)
    if len(prefix) != 8:
        raise CheckpointError(path, f"is {len(prefix)} bytes long; a .safetensors file starts with an 8-byte header size")
    size = int.from_bytes(prefix, "little")
    file_size = os.fstat(file.fileno()).st_size
    if size > min(MAX_HEADER_BYTES, file_size - 8):
        raise CheckpointError(path, f"declares a {size}-byte header in a {file_size}-byte file (limit "
                                    f"{MAX_HEADER_BYTES}); not a .safetensors file, or truncated")
    try:
        header = json.loads(file.read(size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(path, f"the header is not UTF-8 JSON ({error})") from error
    if not isinstance(header, dict):
        raise CheckpointError(path, f"the header is a JSON {type(header).__name__}; expected an object")
    return header, 8 + size


def _check_entries(header: dict, path: str, data_bytes: int) -> dict[str, tuple[np.dtype, tuple, int, int]]:
    """Validated (dtype, shape, begin, end) per tensor; the byte ranges must tile [0, data_bytes)."""
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
            raise CheckpointError(path, "expected {'dtype', 'shape', 'data_offsets'}", key=name)
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(path, f"unknown dtype {dtype!r:.40}; expected one of {sorted(DTYPES)}", key=name)
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            raise CheckpointError(path, f"expected a shape of non-negative ints; got {shape!r:.80}", key=name)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise CheckpointError(path, f"data_offsets {offsets!r:.80} do not lie within the file's {data_bytes} "
                                        "data bytes", key=name)
        expected = int(np.prod(shape, dtype=object)) * DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != expected:
            raise CheckpointError(path, f"shape {shape} {dtype} needs {expected} bytes; data_offsets span "
                                        f"{offsets[1] - offsets[0]}", key=name)
        entries[name] = (DTYPES[dtype], tuple(shape), offsets[0], offsets[1])
    end = 0
    for name, (_, _, begin, stop) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != end:
            raise CheckpointError(path, f"starts at data byte {begin}; expected {end} (tensors must tile the data "
                                        "without gaps or overlaps)", key=name)
        end = stop
    if end != data_bytes:
        raise CheckpointError(path, f"the tensors cover {end} data bytes; the file holds {data_bytes} (truncated or "
                                    "padded)")
    return entries
