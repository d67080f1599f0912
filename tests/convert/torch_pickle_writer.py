"""Test helper: write torch's zip checkpoint format with plain `zipfile` + hand-written pickle opcodes.

torch is not installed here, so the tests build `.pth` files the way `torch.save` lays them out
(`<root>/data.pkl`, `<root>/data/<key>`, `<root>/version`, `<root>/byteorder`), emitting the pickle
opcodes directly (protocol 2): `collections.OrderedDict()` for dicts, a persistent id
`('storage', torch.<X>Storage, key, 'cpu', numel)` per storage, and
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` per tensor.
This is written from the format, independently of the reader under test.
"""

from __future__ import annotations

import dataclasses
import struct
import zipfile

import ml_dtypes
import numpy as np

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.float64): "DoubleStorage",
}


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """A tensor viewing `storage` (a key of the storages dict) at an element offset with a stride."""

    storage: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Global:
    """An arbitrary global reference (used to check that the reader refuses it)."""

    module: str
    name: str


def _string(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(parts: list[bytes]) -> bytes:
    return b"(" + b"".join(parts) + b"t"


def _ordered_dict() -> bytes:
    return _global("collections", "OrderedDict") + b")R"


def _encode(obj, storages: dict[str, np.ndarray]) -> bytes:
    if isinstance(obj, dict):
        items = b"".join(_string(k) + _encode(v, storages) for k, v in obj.items())
        return _ordered_dict() + (b"(" + items + b"u" if obj else b"")
    if isinstance(obj, TensorRef):
        storage = storages[obj.storage]
        pid = _tuple([_string("storage"), _global("torch", STORAGE_NAMES[storage.dtype]), _string(obj.storage),
                      _string("cpu"), _int(storage.size)]) + b"Q"
        args = _tuple([pid, _int(obj.offset), _tuple([_int(n) for n in obj.size]),
                       _tuple([_int(n) for n in obj.stride]), b"\x89", _ordered_dict()])
        return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    if isinstance(obj, Global):
        return _global(obj.module, obj.name) + b")R"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return _int(obj)
    if isinstance(obj, str):
        return _string(obj)
    raise TypeError(f"torch_pickle_writer: cannot encode {type(obj)}")


def write_torch_zip(path, obj, storages: dict[str, np.ndarray], root: str = "archive") -> None:
    """Write `obj` (nested dicts of TensorRef / int / str) with the given 1-D storages."""
    pickle_bytes = b"\x80\x02" + _encode(obj, storages) + b"."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", pickle_bytes)
        archive.writestr(f"{root}/byteorder", "little")
        for key, storage in storages.items():
            archive.writestr(f"{root}/data/{key}", np.ascontiguousarray(storage).reshape(-1).tobytes())
        archive.writestr(f"{root}/version", "3\n")


def save_torch_state_dict(path, state_dict: dict[str, np.ndarray], wrap: str | None = None,
                          prefix: str = "") -> None:
    """`torch.save(state_dict)` look-alike: one contiguous storage per tensor, optionally wrapped as
    {wrap: state_dict} and with `prefix` in front of every name."""
    storages, refs = {}, {}
    for i, (name, array) in enumerate(state_dict.items()):
        key = str(i)
        storages[key] = np.ascontiguousarray(array).reshape(-1)
        strides = [int(np.prod(array.shape[d + 1:], dtype=np.int64)) for d in range(array.ndim)]
        refs[prefix + name] = TensorRef(key, 0, tuple(array.shape), tuple(strides))
    write_torch_zip(path, refs if wrap is None else {wrap: refs, "epoch": 3}, storages)
