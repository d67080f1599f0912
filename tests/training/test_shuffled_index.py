"""shuffled_index: every epoch visits every item once, in a seeded order that differs between epochs."""

import numpy as np

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
    expected = np.random.default_rng((3, 1)).permutation(count)
    assert epochs[1] == expected.tolist()
