"""Reading a `.npy` array from an untrusted file: the header is parsed and checked before the data is read.

`np.load` trusts the header: a 128-byte file declaring (100000, 100000) asks for 75 GiB, an `.npz`
under a `.npy` name comes back as an NpzFile, and a damaged header raises tokenizer errors. Here the
magic, the header, the dtype (real floats only), the rank and the declared size are checked against
the file's length and a cap first, and every problem is a DataFormatError naming the file.
"""

from __future__ import annotations

import os
import tokenize

import numpy as np

from worldscape_jax.data import checks
from worldscape_jax.data.errors import DataFormatError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
FLOAT_KINDS = "f"  # float16 / float32 / float64, either byte order


def read_npy(path: str | os.PathLike, *, ndim: int, max_bytes: int = checks.MAX_ARRAY_BYTES) -> np.ndarray:
    """The float array of rank `ndim` stored in the .npy file `path` (exactly as many bytes as declared)."""
    try:
        with open(path, "rb") as file:
            magic = file.read(len(NPY_MAGIC))
            file.seek(0)
            if magic[:4] == ZIP_MAGIC:
                raise DataFormatError(path, "is a zip archive (an .npz?); expected a single .npy array")
            if magic != NPY_MAGIC:
                raise DataFormatError(path, f"expected a .npy file (magic {NPY_MAGIC!r}); it starts with {magic!r}")
            shape, fortran_order, dtype = _read_header(file, path)
            _check_declared(path, shape, dtype, ndim, max_bytes, os.fstat(file.fileno()).st_size - file.tell())
            count = int(np.prod(shape))
            data = np.fromfile(file, dtype=dtype, count=count)
    except OSError as error:
        raise DataFormatError(path, f"cannot read the array ({error})") from error
    return data.reshape(shape, order="F" if fortran_order else "C")


def _read_header(file, path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        major, _ = np.lib.format.read_magic(file)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        return read(file, max_header_size=10_000)
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError, UnicodeDecodeError, TypeError,
            OverflowError, MemoryError) as error:
        raise DataFormatError(path, f"has a damaged .npy header ({type(error).__name__}: {error})") from error


def _check_declared(path, shape, dtype: np.dtype, ndim: int, max_bytes: int, data_bytes: int) -> None:
    if dtype.kind not in FLOAT_KINDS or dtype.hasobject or dtype.fields is not None:
        raise DataFormatError(path, f"expected a real floating-point array (float16/32/64); the header says {dtype}")
    if len(shape) != ndim:
        raise DataFormatError(path, f"expected an array of rank {ndim}; the header says shape {shape}")
    checks.check_size(path, shape, dtype.itemsize, max_bytes=max_bytes)
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if declared != data_bytes:
        raise DataFormatError(path, f"the header declares {shape} {dtype} = {declared} bytes of data but the file "
                                    f"holds {data_bytes} (truncated or padded)")
