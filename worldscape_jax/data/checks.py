"""Checks that every reader applies where data enters: strict numbers, rigid poses, sizes before allocating.

* Text numbers are parsed strictly: ASCII digits only, an optional leading '-', a decimal point and an
  exponent ('1e-3', '-2.5E+02'); no '+5', '1_000', Unicode digits, 'nan' or 'inf'. A value that
  float32 cannot hold (|v| > 3.4e38) is refused rather than becoming inf later.
* Lines are split on '\\n' (a trailing '\\r' is dropped), never on the other characters that
  `str.splitlines` treats as breaks, so line numbers in errors are the ones an editor shows; fields
  are split on spaces and tabs only, so a stray control character is an error, not a separator.
* Poses are rigid: finite, bottom row [0 0 0 1], rotation orthonormal within a tolerance with det +1.
* Sizes are compared with caps before anything is allocated (`MAX_*` below; every reader takes them
  as arguments, so a user with bigger data raises the cap instead of editing the code).
"""

from __future__ import annotations

import re

import numpy as np

from worldscape_jax.errors import DataFormatError

MAX_IMAGE_PIXELS = 8192 * 8192  # per frame; Pillow's decompression-bomb guard, made an error
MAX_CLIP_FRAMES = 100_000  # frames per clip (an hour at 25 fps)
MAX_ARRAY_BYTES = 2**31  # one array read from a file (depth map, hdf5 dataset)
ROTATION_ATOL = 1e-3  # released pose files print ~6 decimals; their rotations are orthonormal to ~1e-6
FLOAT32_MAX = float(np.finfo(np.float32).max)

_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INT = re.compile(r"-?[0-9]+")


def split_lines(text: str) -> list[str]:
    """Lines of `text` split on '\\n' only (Windows '\\r\\n' endings lose their '\\r')."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def split_fields(line: str) -> list[str]:
    """The space- or tab-separated fields of one line (other whitespace stays inside a field)."""
    return [field for field in re.split(r"[ \t]+", line) if field]


def parse_float(token: str, path, line: int, field: str) -> float:
    """A strict ASCII decimal number that float32 can hold; DataFormatError naming the line and field."""
    if _FLOAT.fullmatch(token) is None:
        raise DataFormatError(path, f"expected a finite number as {field} (ASCII digits, optional '-', '.' and "
                                    f"exponent); got {token[:40]!r}", line=line)
    value = float(token)
    if not abs(value) <= FLOAT32_MAX:
        raise DataFormatError(path, f"{field} = {token[:40]} is beyond float32's range (|v| <= 3.4e38)", line=line)
    return value


def parse_int(token: str, path, line: int, field: str, max_digits: int = 19) -> int:
    """A strict ASCII integer of at most `max_digits` digits; DataFormatError naming the line and field."""
    if _INT.fullmatch(token) is None or len(token.lstrip("-")) > max_digits:
        raise DataFormatError(path, f"expected an integer of at most {max_digits} ASCII digits as {field}; "
                                    f"got {token[:40]!r}", line=line)
    return int(token)


def check_rigid(poses: np.ndarray, path, *, key: str | None = None, first_line: int | None = None,
                atol: float = ROTATION_ATOL) -> None:
    """Raises DataFormatError unless every pose [..., 4, 4] is a finite rigid transform.

    The error names the pose: `key` (an hdf5 dataset, with the frame index) or, for text files, the
    line `first_line + index`.
    """
    poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
    rotation = poses[:, :3, :3]
    with np.errstate(all="ignore"):
        orthonormal_error = np.abs(np.swapaxes(rotation, 1, 2) @ rotation - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(rotation) if len(poses) else np.zeros(0)
    problems = [
        (~np.all(np.isfinite(poses), axis=(1, 2)), "expected finite numbers; found NaN or inf"),
        (np.any(poses[:, 3] != [0.0, 0.0, 0.0, 1.0], axis=1), "expected the bottom row [0 0 0 1]"),
        (~(orthonormal_error <= atol), f"expected an orthonormal rotation (|R^T R - I| <= {atol}; no scale "
                                       "or shear)"),
        (~(np.abs(det - 1.0) <= 3 * atol), "expected a rotation with det +1 (no reflection)"),
    ]
    for bad, expectation in problems:
        if np.any(bad):
            index = int(np.argmax(bad))
            detail = (f"; got |R^T R - I| = {orthonormal_error[index]:.3g}, det {det[index]:.4g}"
                      if "rotation" in expectation else "")
            if first_line is not None:
                raise DataFormatError(path, f"pose is not rigid: {expectation}{detail}", line=first_line + index)
            raise DataFormatError(path, f"pose of frame {index} is not rigid: {expectation}{detail}", key=key)


def check_size(path, shape: tuple[int, ...], itemsize: int, *, max_bytes: int = MAX_ARRAY_BYTES,
               key: str | None = None) -> None:
    """Raises DataFormatError when an array of `shape` would take more than `max_bytes` (before reading it)."""
    nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * int(itemsize)
    if nbytes > max_bytes:
        raise DataFormatError(path, f"declares an array of shape {tuple(shape)} ({nbytes / 2**20:.1f} MiB); the "
                                    f"limit is {max_bytes / 2**20:.0f} MiB (raise max_bytes for bigger data)", key=key)
