"""A resumable on-disk cache of encoded clips, as ArrayRecord shards: the teacher's latent cache.

Encoding every training clip with the VAE once, instead of every step, is what makes the tiny teacher
train in an hour on a CPU. `build_cache` runs a batched iterator of pipeline examples through an
encode function and writes the results in shards of `clips_per_shard` clips:

    <directory>/shard-00003-of-00016.array_record     one record per clip: its arrays (np.savez bytes)

A shard appears under its final name only once complete (written to a temporary name, then renamed),
so a build that is stopped resumes at the first missing shard, and the cache is complete exactly when
every shard is there. `CacheSource` reads it back as a random-access source of clip dicts for Grain.
The directory's name is the caller's cache key: this module knows nothing of what the clips are.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Iterator

import grain
import numpy as np
from tqdm import tqdm

from worldscape_jax.data.errors import DataFormatError

EncodeFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
BatchesFn = Callable[[int, int], Iterator[dict[str, np.ndarray]]]


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.array_record"


def shard_paths(directory: str | os.PathLike, num_clips: int, clips_per_shard: int) -> list[Path]:
    count = -(-num_clips // clips_per_shard)
    return [Path(directory) / shard_name(i, count) for i in range(count)]


def is_complete(directory: str | os.PathLike, num_clips: int, clips_per_shard: int) -> bool:
    return all(path.is_file() for path in shard_paths(directory, num_clips, clips_per_shard))


def build_cache(directory: str | os.PathLike, num_clips: int, clips_per_shard: int, batches: BatchesFn,
                encode: EncodeFn, description: str = "encode") -> Path:
    """Writes the missing shards of `directory`; returns it.

    batches(start, stop): an iterator of batch dicts covering clips start .. stop - 1 in order (the last
      batch may be short); encode(batch) -> dict of arrays with the same leading axis, one entry per clip.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = shard_paths(directory, num_clips, clips_per_shard)
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    done = num_clips - sum(min(clips_per_shard, num_clips - i * clips_per_shard) for i in missing)
    with tqdm(total=num_clips, initial=done, desc=description, unit="clip") as progress:
        for index in missing:
            start, stop = index * clips_per_shard, min(num_clips, (index + 1) * clips_per_shard)
            _write_shard(paths[index], batches(start, stop), encode, stop - start, progress)
    return directory


def _write_shard(path: Path, batches: Iterator[dict], encode: EncodeFn, expected: int, progress: tqdm) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter

    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    writer = ArrayRecordWriter(str(partial), "group_size:1")
    written = 0
    try:
        for batch in batches:
            encoded = encode(batch)
            for i in range(len(next(iter(encoded.values())))):
                writer.write(to_record({k: np.asarray(v[i]) for k, v in encoded.items()}))
                written += 1
                progress.update(1)
    finally:
        writer.close()
    if written != expected:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"latent cache {path}: the batches gave {written} clips, expected {expected}")
    os.replace(partial, path)


def to_record(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def from_record(record: bytes, name: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(record), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError) as e:
        raise DataFormatError(name, f"not a cached clip record ({e})") from e


class CacheSource:
    """The clips of a complete cache, by index (random access over its shards)."""

    def __init__(self, directory: str | os.PathLike, num_clips: int, clips_per_shard: int):
        self.directory = Path(directory)
        paths = shard_paths(directory, num_clips, clips_per_shard)
        absent = [p.name for p in paths if not p.is_file()]
        if absent:
            raise DataFormatError(directory, f"the cache is incomplete: {len(absent)} of {len(paths)} shards are "
                                             f"missing ({absent[0]}, ...); build it with build_cache")
        self._source = grain.sources.ArrayRecordDataSource([str(p) for p in paths])
        if len(self._source) != num_clips:
            raise DataFormatError(directory, f"holds {len(self._source)} clips; expected {num_clips}")

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return from_record(self._source[index], f"{self.directory} (clip {index})")

    def __repr__(self) -> str:
        return f"CacheSource({self.directory}, {len(self)} clips)"
