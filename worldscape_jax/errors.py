"""The project's input errors: one base class, one type per kind of input.

Everything that comes from outside the program (a data file, a checkpoint, a config or a command-line
string) is checked where it enters, and a problem raises a subclass of `WorldscapeInputError` whose
message names the source (file path, or the config / flag), the place in it (line, key, tensor or
field) and what was expected. Third-party exceptions (Pillow, h5py, numpy, array_record, safetensors,
pickle, zipfile) are caught at that boundary and re-raised as one of these, chained (`raise ... from e`).

    WorldscapeInputError (ValueError)
      DataFormatError      a data file or clip: frames, poses, depth, hdf5, ArrayRecord (worldscape_jax.data.errors)
      CheckpointError      a weight file or a state dict: format, dtype, shape, non-finite values
      ConfigError          a config field or a user-given setting (pipeline configs, action strings)

Launch scripts catch `WorldscapeInputError` to print its one-line message and exit with status 2;
any other exception is a bug and keeps its traceback. The base subclasses ValueError, so callers
that already catch ValueError keep working.
"""

from __future__ import annotations

import os


class WorldscapeInputError(ValueError):
    """Bad input: names the source, the place in it (line, key or field) and what was expected."""

    place_label = "key"

    def __init__(self, source: str | os.PathLike | None, problem: str, *, line: int | None = None,
                 key: str | None = None):
        self.path = None if source is None else os.fspath(source)
        self.line = line
        self.key = key
        self.problem = problem
        where = [self.path or "<in memory>"]
        if line is not None:
            where.append(f"line {line}")
        if key is not None:
            where.append(f"{self.place_label} {key!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


class DataFormatError(WorldscapeInputError):
    """Bad input data (frames, poses, depth, hdf5, ArrayRecord): file, line / frame / key, expectation."""


class CheckpointError(WorldscapeInputError):
    """A checkpoint that cannot be read or converted: the file, the tensor (`key`) and what was expected."""

    place_label = "tensor"


class ConfigError(WorldscapeInputError):
    """A config or user-given setting out of its domain: the config, the field (`key`) and the allowed values."""

    place_label = "field"
