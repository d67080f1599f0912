"""Read torch's zip checkpoint format (`torch.save`, torch >= 1.6) into NumPy, without torch.

A `.pth`/`.pt`/`.bin` file is a zip archive `<root>/data.pkl` + `<root>/data/<key>` (+ `version`,
`byteorder`). `data.pkl` is a pickle whose tensors are `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, ...)` calls and whose storages are persistent ids
`('storage', torch.<Dtype>Storage, key, location, numel)` naming the raw bytes in `data/<key>`.

The unpickler here resolves only those names (plus `collections.OrderedDict`, `torch.Size` and
`torch._utils._rebuild_parameter`) and refuses every other global, so loading an untrusted file
cannot run code. Offsets and sizes are in elements; strides are honoured and every tensor is
returned as its own contiguous array. Sizes are checked before anything is allocated: a storage's
bytes against its declared element count, a tensor's elements against its storage (no stride-0
broadcasts). A damaged archive or pickle raises TorchFormatError naming the file.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any

import ml_dtypes
import numpy as np

from worldscape_jax.errors import CheckpointError

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


# What a damaged zip or pickle raises inside zipfile / pickle.
CORRUPT_ERRORS = (pickle.UnpicklingError, EOFError, OverflowError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error,
                  struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
                  NotImplementedError, OSError)


class TorchFormatError(CheckpointError):
    """The file is not a torch zip checkpoint this reader can load safely (the file, and what was expected)."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the globals a tensor state dict needs; storages come from the zip."""

    def __init__(self, file, archive: zipfile.ZipFile, root: str, path: str, byteorder: str):
        super().__init__(file)
        self._archive, self._root, self._path, self._byteorder = archive, root, path, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("torch", "Size"):
            return tuple
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise TorchFormatError(
            self._path, f"the pickle asks for '{module}.{name}', which a tensor state dict never needs; "
            f"refusing to load it (allowed: tensors, storages {sorted(STORAGE_DTYPES)}, OrderedDict)")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchFormatError(self._path, f"unexpected persistent id {pid!r} (expected a torch storage)")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchFormatError(self._path, f"storage {key!r:.40} has an unknown type {storage_type!r:.60}")
        if not (isinstance(key, str) and _is_count(numel)):
            raise TorchFormatError(self._path, f"storage id {pid!r:.80}: expected a string key and an element count")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type.dtype, numel)
        return self._storages[key]

    def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        member = f"{self._root}/data/{key}"
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise TorchFormatError(self._path, f"storage file {member!r} is missing from the archive") from None
        if info.file_size != numel * dtype.itemsize:
            raise TorchFormatError(self._path, f"storage {key!r} has {info.file_size} bytes, expected {numel} "
                                               f"{dtype} elements = {numel * dtype.itemsize} bytes")
        raw = self._archive.read(member)
        if self._byteorder == "big" and dtype.itemsize > 1:
            words = np.frombuffer(raw, dtype=f">u{dtype.itemsize}").astype(f"<u{dtype.itemsize}")
            return words.view(dtype)
        return np.frombuffer(raw, dtype=dtype)

    def _rebuild_tensor(self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                        *unused) -> np.ndarray:
        if not isinstance(storage, np.ndarray):
            raise TorchFormatError(self._path, f"a tensor is built on a {type(storage).__name__}, not a storage")
        for name, value in (("size", size), ("stride", stride)):
            if not (isinstance(value, tuple) and all(_is_count(n) for n in value)):
                raise TorchFormatError(self._path, f"tensor {name} {value!r:.80}: expected non-negative ints")
        if not _is_count(storage_offset):
            raise TorchFormatError(self._path, f"tensor offset {storage_offset!r:.40}: expected a non-negative int")
        return strided_view(storage, storage_offset, size, stride, self._path)


def _is_count(value: Any) -> bool:
    """A non-negative int (not a bool) that fits in 63 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def strided_view(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                 path: str = "<storage>") -> np.ndarray:
    """A contiguous copy of the tensor at `offset` with `size` and element `stride` in a 1-D storage.

    The tensor may not hold more elements than its storage (a stride-0 broadcast is refused: a
    state dict never needs one, and a hostile file uses it to ask for terabytes).
    """
    if len(size) != len(stride):
        raise TorchFormatError(path, f"tensor size {size} and stride {stride} have different ranks")
    if any(s < 0 for s in stride) or offset < 0 or any(n < 0 for n in size):
        raise TorchFormatError(path, f"negative size {size}, stride {stride} or offset {offset}")
    numel = int(np.prod(size, dtype=object))
    if numel == 0:
        return np.zeros(size, storage.dtype)
    if numel > storage.size:
        raise TorchFormatError(path, f"tensor of size {size} has {numel} elements, more than its storage's "
                                     f"{storage.size} (a stride-0 broadcast?); expected a dense tensor")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise TorchFormatError(path, f"tensor (offset {offset}, size {size}, stride {stride}) reads element "
                               f"{last} of a storage with {storage.size} elements")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.array(view, copy=True, order="C")


def _archive_root(archive: zipfile.ZipFile, path: str) -> str:
    roots = [name[: -len("/data.pkl")] for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(roots) != 1:
        raise TorchFormatError(path, f"expected exactly one '<root>/data.pkl' in the zip, found {len(roots)}")
    return roots[0]


def load_torch_zip(path: str | os.PathLike) -> Any:
    """Unpickle a torch zip checkpoint; tensors come back as NumPy arrays (bfloat16 via ml_dtypes)."""
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise TorchFormatError(
            path, f"not a zip archive; only torch's zip format (torch.save since torch 1.6) is supported. "
            "Re-save the legacy file with torch>=1.6, or convert it to .safetensors")
    try:
        with zipfile.ZipFile(path) as archive:
            root = _archive_root(archive, path)
            byteorder = "little"
            if f"{root}/byteorder" in archive.namelist():
                byteorder = archive.read(f"{root}/byteorder").decode().strip()
                if byteorder not in ("little", "big"):
                    raise TorchFormatError(path, f"unknown byteorder {byteorder!r:.40}")
            with archive.open(f"{root}/data.pkl") as pkl:
                return _StateDictUnpickler(pkl, archive, root, path, byteorder).load()
    except CheckpointError:
        raise
    except CORRUPT_ERRORS as error:
        raise TorchFormatError(path, f"the archive or its pickle is damaged ({type(error).__name__}: "
                                     f"{str(error)[:200]})") from error
