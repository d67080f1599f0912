"""The camera map: a bounded path log that spans the whole walk, headings, and the drawn picture."""

from __future__ import annotations

import numpy as np
import pytest

from worldscape_jax.geometry.actions import actions_to_c2w
from worldscape_jax.play.camera_map import MAP_COLOURS, PathLog, draw_camera_map, heading_deg, map_payload
from worldscape_jax.play.engines import MemoryView


def pose_at(x: float, z: float) -> np.ndarray:
    pose = np.eye(4, dtype=np.float32)
    pose[0, 3], pose[2, 3] = x, z
    return pose


def test_path_log_stays_bounded_and_spans_the_whole_walk():
    log = PathLog(capacity=64)
    for step in range(10_000):
        log.add(pose_at(step, 0.0))
        assert len(log.points) <= 64
    xs = log.points[:, 0]
    assert xs[0] == 0 and xs[-1] >= 10_000 - 256 and np.all(np.diff(xs) > 0)
    assert len(np.unique(np.diff(xs))) == 1          # evenly spaced: one stride over the whole walk
    with pytest.raises(ValueError, match="even number"):
        PathLog(capacity=3)


def test_heading_turns_right_with_e_and_left_with_q():
    assert heading_deg(actions_to_c2w("e*10")[-1]) == pytest.approx(30.0, abs=1e-4)
    assert heading_deg(actions_to_c2w("q*10")[-1]) == pytest.approx(-30.0, abs=1e-4)
    assert heading_deg(actions_to_c2w("w*10")[-1]) == pytest.approx(0.0, abs=1e-6)


def test_the_drawn_map_marks_memory_entries_where_they_are():
    log = PathLog()
    for pose in actions_to_c2w("w*10"):
        log.add(pose)
    far = (np.asarray([0]), np.asarray([[0.0, 0.0, 0.0]]))             # the sink at the start
    memory = MemoryView(sink=far, local=(np.asarray([10]), np.asarray([[0.0, 0.0, 0.8]])),
                        selected=MemoryView.empty().selected)
    payload = map_payload(log, actions_to_c2w("w*10")[-1], memory)
    assert payload["sink"] == [{"frame": 0, "x": 0.0, "z": 0.0}] and len(payload["local"]) == 1
    image = draw_camera_map(payload, size=200, margin=20)
    # span 1.0 (the minimum) centred on z = 0.4: the start is 0.4 below the centre, 64 pixels
    sink_row, local_row, col = 100 + 64, 100 - 64, 100
    ring = image[sink_row - 4 : sink_row + 5, col - 4 : col + 5].reshape(-1, 3)
    assert any(tuple(pixel) == MAP_COLOURS["sink"] for pixel in ring)
    ring = image[local_row - 4 : local_row + 5, col - 4 : col + 5].reshape(-1, 3)
    assert any(tuple(pixel) == MAP_COLOURS["local"] or tuple(pixel) == MAP_COLOURS["camera"] for pixel in ring)
