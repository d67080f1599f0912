"""One player's stream: a scene, the engine's state, the camera map, counters and an optional recording.

A session is plain host-side orchestration around an engine (no networking): the websocket server
keeps one per connection and headless play drives one from a key script. Everything it holds has a
fixed size however long it runs: the engine state is fixed-shape, the path log is bounded and a
recording is written to disk as frames arrive.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from typing import Any

import numpy as np

from worldscape_jax.play.camera_map import PathLog, map_payload
from worldscape_jax.play.engines import Engine
from worldscape_jax.play.keys import chunk_actions, held_keys_to_vector
from worldscape_jax.play.recorder import Recording
from worldscape_jax.play.scene_start import SceneStart


class SessionError(RuntimeError):
    """An action the session cannot take in its current state (e.g. keys before a scene started)."""


@dataclasses.dataclass(frozen=True)
class Chunk:
    frames: np.ndarray          # uint8 [n, H, W, 3]
    held: np.ndarray            # bool [8]: the keys this chunk was made with
    index: int                  # chunk number since the scene started
    step_seconds: float         # time of the engine step (model + decode + transfer to host)
    unknown_keys: int           # unknown key names ignored so far in this session
    map: dict                   # camera_map.map_payload after the chunk


def _exclusive(method):
    """Runs the method under the session's lock: the server calls sessions from a thread pool, and a
    socket that closes while its chunk is computed must not have the chunk's state land after close()."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class PlaySession:
    def __init__(self, engine: Engine, path_capacity: int = 1024):
        self._lock = threading.RLock()
        self.engine = engine
        self.path_capacity = path_capacity
        self.scene: SceneStart | None = None
        self.state: Any = None
        self.recording: Recording | None = None
        self.unknown_keys = 0
        self.chunks = 0
        self.path = PathLog(path_capacity)

    @_exclusive
    def start(self, scene: SceneStart) -> dict:
        """Starts (or restarts) the stream from `scene`; returns the scene info sent to the player."""
        state = self.engine.start(scene)      # raises before anything changes if the engine refuses it
        self.scene, self.state, self.chunks = scene, state, 0
        self.path = PathLog(self.path_capacity)
        self.path.add(self.engine.pose(state))
        return self.scene_info()

    @_exclusive
    def reset(self) -> dict:
        """Restarts the current scene from its first frame."""
        if self.scene is None:
            raise SessionError("reset: no scene has started yet")
        return self.start(self.scene)

    def scene_info(self) -> dict:
        engine = self.engine
        return {"source": self.scene.source, "seed": self.scene.seed, "engine": engine.name,
                "height": engine.height, "width": engine.width, "frames_per_chunk": engine.frames_per_chunk,
                "pixel_frames_per_chunk": engine.pixel_frames_per_chunk}

    @_exclusive
    def map(self) -> dict:
        return map_payload(self.path, self.engine.pose(self.state), self.engine.memory(self.state))

    @_exclusive
    def pose(self):
        """The camera of the newest frame, c2w [4, 4] (read under the lock: a step donates the old state)."""
        return self.engine.pose(self.state)

    @_exclusive
    def step(self, keys: list[str]) -> Chunk:
        """One chunk made with the keys named in `keys` held (unknown names are ignored and counted)."""
        if self.state is None:
            raise SessionError("keys: start a scene first (a 'start' message with a seed or an image)")
        held, unknown = held_keys_to_vector(keys)
        self.unknown_keys += unknown
        started = time.perf_counter()
        self.state, frames = self.engine.step(self.state, chunk_actions(held, self.engine.frames_per_chunk))
        step_seconds = time.perf_counter() - started
        pose = self.engine.pose(self.state)
        self.path.add(pose)
        if self.recording is not None:
            self.recording.add_frames(frames)
            self.recording.add_chunk(held, self.chunks * self.engine.frames_per_chunk, pose)
        chunk = Chunk(frames, held, self.chunks, step_seconds, self.unknown_keys, self.map())
        self.chunks += 1
        return chunk

    @_exclusive
    def start_recording(self, directory: str, name: str) -> Recording:
        """Records from now on (the current first frame included when no chunk has been played yet)."""
        if self.state is None:
            raise SessionError("record: start a scene first")
        if self.recording is not None:
            raise SessionError("record: already recording; stop first")
        self.recording = Recording(directory, name, self.scene_info())
        if self.chunks == 0:
            self.recording.add_frames(self.scene.first_frame[None])
        return self.recording

    @_exclusive
    def stop_recording(self) -> dict:
        if self.recording is None:
            raise SessionError("record: not recording")
        recording, self.recording = self.recording, None
        return recording.close()

    @_exclusive
    def close(self) -> None:
        """Frees the stream state and finishes a recording that is still open."""
        if self.recording is not None:
            self.stop_recording()
        self.state, self.scene = None, None
