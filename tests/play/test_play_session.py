"""A play session over a long stream holds constant memory, and frees its state when closed."""

from __future__ import annotations

import tracemalloc

import numpy as np

from worldscape_jax.play.engines import MemoryView, check_actions
from worldscape_jax.play.scene_start import SceneStart
from worldscape_jax.play.session import PlaySession


class CountingEngine:
    """A stand-in engine whose step is free: frames of the chunk number, the camera walks +z."""

    name, height, width, frames_per_chunk, pixel_frames_per_chunk = "counting", 8, 8, 1, 4

    def start(self, scene):
        return (0, np.eye(4, dtype=np.float32))

    def step(self, state, actions):
        check_actions(actions, self.frames_per_chunk)
        chunk, pose = state
        pose = pose.copy()
        pose[2, 3] += 0.08
        return (chunk + 1, pose), np.full((4, 8, 8, 3), chunk % 256, np.uint8)

    def pose(self, state):
        return state[1]

    def memory(self, state):
        return MemoryView.empty()


def test_a_long_stream_keeps_constant_memory_and_close_frees_the_state(tmp_path):
    scene = SceneStart(np.zeros((8, 8, 3), np.uint8), np.asarray([0.7, 0.7, 0.5, 0.5], np.float32),
                       np.eye(4, dtype=np.float32), "synthworld", 0)
    session = PlaySession(CountingEngine(), path_capacity=256)
    session.start(scene)
    session.start_recording(str(tmp_path), "long")
    for _ in range(1000):      # the path log fills up and the mp4 encoder reaches its steady state
        session.step(["w"])
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(4000):
        chunk = session.step(["w", "Shift"])
    grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 256 * 1024, f"4000 more chunks grew Python memory by {grown} bytes"
    assert len(chunk.map["path"]) <= 256 and chunk.map["camera"]["z"] > 0.08 * 4999
    assert chunk.unknown_keys == 4000
    session.close()
    assert session.state is None and session.recording is None
