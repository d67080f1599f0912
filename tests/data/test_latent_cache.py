"""The resumable ArrayRecord cache of encoded clips: a stopped build resumes at the first missing shard."""

import numpy as np
import pytest

from worldscape_jax.data import latent_cache
from worldscape_jax.data.errors import DataFormatError

NUM_CLIPS, PER_SHARD, BATCH = 7, 3, 2


def _clip(i: int) -> dict:
    return {"x": np.full((2, 3), i, np.float32), "c2w": np.eye(4, dtype=np.float32) * (i + 1)}


def _batches(stop_after: int | None = None, read: list | None = None):
    def batches(start, stop):
        for first in range(start, stop, BATCH):
            ids = list(range(first, min(stop, first + BATCH)))
            if stop_after is not None and ids[-1] >= stop_after:
                raise KeyboardInterrupt  # the user stops the build
            if read is not None:
                read.extend(ids)
            yield {k: np.stack([_clip(i)[k] for i in ids]) for k in ("x", "c2w")}
    return batches


def _encode(batch):
    return {"latents": batch["x"] * 2.0, "c2w": batch["c2w"]}


def test_a_stopped_build_keeps_whole_shards_and_resumes_after_them(tmp_path):
    directory = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        latent_cache.build_cache(directory, NUM_CLIPS, PER_SHARD, _batches(stop_after=4), _encode)
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == [
        "shard-00000-of-00003.array_record"]
    assert not latent_cache.is_complete(directory, NUM_CLIPS, PER_SHARD)
    with pytest.raises(DataFormatError, match="incomplete"):
        latent_cache.CacheSource(directory, NUM_CLIPS, PER_SHARD)
    read = []
    latent_cache.build_cache(directory, NUM_CLIPS, PER_SHARD, _batches(read=read), _encode)
    assert read == list(range(PER_SHARD, NUM_CLIPS))  # the finished shard was not encoded again
    source = latent_cache.CacheSource(directory, NUM_CLIPS, PER_SHARD)
    assert len(source) == NUM_CLIPS
    for i in (0, 2, 3, 6):
        np.testing.assert_array_equal(source[i]["latents"], 2.0 * _clip(i)["x"])
        np.testing.assert_array_equal(source[i]["c2w"], _clip(i)["c2w"])


def test_a_batch_iterator_that_comes_up_short_leaves_no_shard(tmp_path):
    short = lambda start, stop: iter([{"x": np.zeros((1, 2, 3), np.float32), "c2w": np.zeros((1, 4, 4))}])
    with pytest.raises(RuntimeError, match="gave 1 clips, expected 3"):
        latent_cache.build_cache(tmp_path, NUM_CLIPS, PER_SHARD, short, _encode)
    assert not any(tmp_path.iterdir())
