"""Deterministic, checkpointable batch iterators built from an example-by-index function.

Global batch b holds examples b * global_batch ... (b + 1) * global_batch - 1; process p of P takes
the p-th contiguous slice of it. The batches are therefore the same whatever the process count, and
the Grain iterator's state (an index) is all a checkpoint needs to resume at the next batch.
"""

from __future__ import annotations

import functools
from typing import Callable

import grain
import numpy as np

ExampleFn = Callable[[int], dict[str, np.ndarray]]


def local_batch_size(global_batch: int, process_count: int) -> int:
    """This process's share of the global batch (which must divide evenly)."""
    if global_batch <= 0 or global_batch % process_count:
        raise ValueError(
            f"config.global_batch ({global_batch}) must be a positive multiple of the process count ({process_count})"
        )
    return global_batch // process_count


def local_example_indices(batch_index: int, global_batch: int, process_index: int, process_count: int) -> np.ndarray:
    """The example indices of this process's slice of global batch `batch_index`."""
    local = local_batch_size(global_batch, process_count)
    start = batch_index * global_batch + process_index * local
    return np.arange(start, start + local)


def shuffled_index(index: int, count: int, seed: int) -> int:
    """Example `index` of an endless stream that visits `count` items in a fresh seeded order each epoch."""
    epoch, offset = divmod(index, count)
    return int(_epoch_permutation(seed, epoch, count)[offset])


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, count: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(count)


def stack_examples(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack a list of example dicts (same keys) into one batch dict."""
    keys = examples[0].keys()
    for i, ex in enumerate(examples):
        if ex.keys() != keys:
            raise ValueError(f"data_iter: example {i} has keys {sorted(ex)} but example 0 has {sorted(keys)}")
    return {k: np.stack([ex[k] for ex in examples]) for k in keys}


def indexed_batches(
    example_fn: ExampleFn, global_batch: int, process_index: int, process_count: int, num_batches: int = 2**31 - 1
) -> grain.DatasetIterator:
    """A Grain iterator over this process's slices of global batches 0, 1, 2, ..."""
    local_batch_size(global_batch, process_count)

    def make_batch(batch_index: int) -> dict[str, np.ndarray]:
        indices = local_example_indices(int(batch_index), global_batch, process_index, process_count)
        return stack_examples([example_fn(int(i)) for i in indices])

    dataset = grain.MapDataset.range(num_batches).map(make_batch)
    return iter(dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)))
