"""shuffled_index: every epoch visits every item once, in a seeded order that differs between epochs."""

import numpy as np

from worldscape_jax.training import data_iter
from worldscape_jax.training.data_iter import shuffled_index


def test_each_epoch_is_a_seeded_permutation():
    count = 7
    stream = [shuffled_index(i, count, seed=3) for i in range(3 * count)]
    epochs = [stream[e * count:(e + 1) * count] for e in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(count))
    assert epochs[0] != epochs[1]
    assert stream == [shuffled_index(i, count, seed=3) for i in range(3 * count)]
    assert stream != [shuffled_index(i, count, seed=4) for i in range(3 * count)]
    # Random access: an index's item depends on (index, count, seed) only, not on what was asked before
    # (a resumed iterator starts in the middle of an epoch), so the stream read backwards is the same.
    data_iter._epoch_permutation.cache_clear()
    assert [shuffled_index(i, count, seed=3) for i in reversed(range(3 * count))] == stream[::-1]


def test_orders_are_uniform_over_seeds_and_epochs():
    """Each item is first in about 1/count of the epochs (a chi-square test far from its critical value),
    and successive epochs of one seed are not the same few orders."""
    count, epochs = 4, 2000
    firsts = np.bincount([shuffled_index(e * count, count, seed=11) for e in range(epochs)], minlength=count)
    chi_square = np.sum((firsts - epochs / count) ** 2 / (epochs / count))
    assert chi_square < 16.3, firsts  # p = 0.001 with 3 degrees of freedom
    orders = {tuple(shuffled_index(e * count + i, count, seed=11) for i in range(count)) for e in range(200)}
    assert len(orders) == 24  # all 4! orders occur within 200 epochs
    firsts_by_seed = np.bincount([shuffled_index(0, count, seed=s) for s in range(epochs)], minlength=count)
    assert np.sum((firsts_by_seed - epochs / count) ** 2 / (epochs / count)) < 16.3, firsts_by_seed
