"""A random-access source over a TFDS ArrayRecord split whose files are checked when it is opened.

TFDS's `as_data_source` trusts `dataset_info.json`: a truncated shard still counts all its clips in
`len()`, and a damaged record raises Riegeli's RuntimeError, which names no file, only when that
item is read. Here every shard's record count is compared with what the dataset info declares when
the source is made, and any failure to read or decode item i raises DataFormatError naming the shard
file and the record index in it.
"""

from __future__ import annotations

import bisect
import os
import zlib

from array_record.python import array_record_module

from worldscape_jax.data.errors import DataFormatError

# What reading or decoding a damaged record raises (Riegeli, TFDS's deserializer, numpy).
RECORD_ERRORS = (RuntimeError, ValueError, OSError, TypeError, KeyError, IndexError, EOFError, zlib.error)


class CheckedArrayRecordSource:
    """`len(source)` and `source[i] -> clip dict` over `data_source` (a TFDS ArrayRecordDataSource) of `split_info`."""

    def __init__(self, data_source, split_info):
        self._source = data_source
        self._files, self._starts = [], []
        total = 0
        for instruction in split_info.file_instructions:
            found = count_records(instruction.filename)
            if found != instruction.examples_in_shard:
                raise DataFormatError(instruction.filename, f"holds {found} records but the dataset info declares "
                                                            f"{instruction.examples_in_shard} (truncated or replaced?)")
            self._files.append((instruction.filename, instruction.skip))
            self._starts.append(total)
            total += instruction.take
        if total != len(data_source):
            raise DataFormatError(self._files[0][0] if self._files else None,
                                  f"the split's files hold {total} records; TFDS counts {len(data_source)}")
        self._length = total

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict:
        if not -self._length <= index < self._length:
            raise IndexError(f"item {index} of a source of {self._length} clips")
        index %= self._length
        try:
            return self._source[index]
        except RECORD_ERRORS as error:
            filename, record = self.locate(index)
            raise DataFormatError(filename, f"record {record} (item {index}) cannot be read or decoded "
                                            f"({type(error).__name__}: {str(error)[:200]})") from error

    def locate(self, index: int) -> tuple[str, int]:
        """(shard file, record index in it) of item `index`."""
        shard = bisect.bisect_right(self._starts, index) - 1
        filename, skip = self._files[shard]
        return filename, skip + index - self._starts[shard]

    def __repr__(self) -> str:
        return f"CheckedArrayRecordSource({len(self)} clips in {len(self._files)} files)"


def count_records(filename: str | os.PathLike) -> int:
    """How many records an ArrayRecord file holds (read from its footer); DataFormatError if unreadable."""
    if not os.path.isfile(filename):
        raise DataFormatError(filename, "the dataset info lists this ArrayRecord file; it does not exist")
    try:
        reader = array_record_module.ArrayRecordReader(os.fspath(filename))
        count = reader.num_records() if reader.ok() else None
        reader.close()  # raises when the file is damaged past its footer
    except RECORD_ERRORS as error:
        raise DataFormatError(filename, f"is not a readable ArrayRecord file ({type(error).__name__}: "
                                        f"{str(error)[:200]})") from error
    if count is None:
        raise DataFormatError(filename, "is not a readable ArrayRecord file (the reader reports an error)")
    return count
