"""Held keys and key scripts -> the stream step's actions, against geometry.actions as the reference."""

from __future__ import annotations

import numpy as np
import pytest

from worldscape_jax.geometry.actions import frame_deltas, parse_actions
from worldscape_jax.play.keys import (ACTION_KEYS, chunk_actions, frame_deltas_of, held_keys_to_vector,
                                      script_to_chunks, vector_to_text)


def test_held_keys_ignore_and_count_what_is_not_an_action_key():
    vector, unknown = held_keys_to_vector(["W", "e", "Shift", "w", 5, None, "ArrowUp", "we"])
    assert vector_to_text(vector) == "we"
    assert unknown == 5
    assert held_keys_to_vector([]) == (pytest.approx(np.zeros(8, bool)), 0)
    assert vector_to_text(np.zeros(8, bool)) == "."


@pytest.mark.parametrize("script", ["wd,e,.", "q*2,r", "s,af,ew"])
def test_held_keys_move_the_camera_as_the_same_key_script(script):
    chunks = script_to_chunks(script, frames_per_chunk=1)
    np.testing.assert_allclose(frame_deltas_of(chunks[:, 0]), frame_deltas(parse_actions(script)), atol=1e-12)


def test_opposite_keys_held_together_cancel():
    vector, _ = held_keys_to_vector(["w", "s", "q", "e"])
    np.testing.assert_array_equal(frame_deltas_of(chunk_actions(vector, 2)), np.zeros((8, 4)))


def test_scripts_fill_chunks_and_pad_the_last_with_standing_still():
    chunks = script_to_chunks("w*4", frames_per_chunk=3)
    assert chunks.shape == (2, 3, len(ACTION_KEYS)) and chunks.dtype == bool
    assert [vector_to_text(step) for step in chunks.reshape(-1, 8)] == ["w"] * 4 + ["."] * 2
    with pytest.raises(ValueError, match="item 1"):
        script_to_chunks("w*2,wx", frames_per_chunk=1)
    with pytest.raises(ValueError, match="opposite"):
        script_to_chunks("ws", frames_per_chunk=1)
    with pytest.raises(ValueError, match=r"bool \[frames, 8\]"):
        frame_deltas_of(np.zeros((4, 7), bool))
