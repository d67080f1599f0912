"""The one error type of the data layer.

Every reader and pipeline stage raises `DataFormatError` for bad input, with a message that names the
file, the line / frame / key where the problem is, and what was expected. It subclasses ValueError
so callers that already catch ValueError keep working; tests catch `DataFormatError` itself.
"""

from __future__ import annotations

import os


class DataFormatError(ValueError):
    """Bad input data: names the file, the place in it (line, key or field) and what was expected."""

    def __init__(self, path: str | os.PathLike | None, problem: str, *, line: int | None = None,
                 key: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.key = key
        self.problem = problem
        where = [self.path or "<in memory>"]
        if line is not None:
            where.append(f"line {line}")
        if key is not None:
            where.append(f"key {key!r}")
        super().__init__(f"{', '.join(where)}: {problem}")
