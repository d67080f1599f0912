"""Sorting a cache context into sink, local window and selected memory, and the bounded pose record."""

from __future__ import annotations

import numpy as np
import pytest

from worldscape_jax.geometry.actions import actions_to_c2w
from worldscape_jax.play.memory_view import FramePoses, classify_context, memory_view, slots_memory_view


def test_a_rolling_context_is_the_sink_and_one_local_window():
    sink, local, selected = classify_context(np.asarray([0, 9, 6, 7, 8, 3]), np.asarray([1, 1, 1, 1, 1, 0], bool), 1)
    assert sink.tolist() == [0] and local.tolist() == [6, 7, 8, 9] and selected.tolist() == []


def test_older_frames_apart_from_the_window_are_selected_memory():
    frames = np.asarray([0, 1, 40, 41, 12, 13, 27, 28, 29])
    sink, local, selected = classify_context(frames, np.ones(9, bool), sink_frames=2)
    assert sink.tolist() == [0, 1] and local.tolist() == [40, 41] and selected.tolist() == [12, 13, 27, 28, 29]
    # only the sink yet: nothing else
    assert [g.tolist() for g in classify_context(np.asarray([0, 5]), np.asarray([True, False]), 1)] == [[0], [], []]


def test_memory_view_places_each_frame_at_its_camera():
    poses = FramePoses()
    path = actions_to_c2w("w*12")[::4]                       # the pose of each latent frame 0..12
    for frame, c2w in enumerate(path):
        poses.add(frame, c2w[None])
    view = memory_view(np.asarray([0, 3, 4, 10, 11, 12]), np.ones(6, bool), 1, poses)
    assert view.selected[0].tolist() == [3, 4] and view.local[0].tolist() == [10, 11, 12]
    np.testing.assert_allclose(view.selected[1][:, 2], [0.24, 0.32], atol=1e-5)   # 0.08 units per latent frame
    poses.keep_only([0, 10, 11, 12])
    assert len(poses) == 4
    with pytest.raises(KeyError, match=r"\[3\]"):
        poses.centres(np.asarray([3]))


def test_a_chunk_slot_context_is_drawn_at_each_chunks_camera():
    # 6 slots: 0 sink, 1-3 pool, 4-5 local; the context picks the sink, pool slots 3 and 1, and the local pair
    first_frame = np.asarray([0, 4, 8, 12, 20, 21])
    length = np.asarray([1, 1, 1, 0, 1, 1])              # slot 3 is free
    position = np.arange(18, dtype=np.float32).reshape(6, 3)
    view = slots_memory_view(np.asarray([0, 3, 1, 5, 4]), np.asarray([True, True, True, True, True]),
                             np.asarray([False, True, True, False, False]), first_frame, length, position)
    assert view.sink[0].tolist() == [0] and view.selected[0].tolist() == [4] and view.local[0].tolist() == [20, 21]
    np.testing.assert_array_equal(view.selected[1], position[[1]])
    np.testing.assert_array_equal(view.local[1], position[[4, 5]])
