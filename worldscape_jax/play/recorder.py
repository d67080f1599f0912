"""A played session saved as it happens: `<name>.mp4` and `<name>.keys.jsonl` (one line per chunk).

Frames go straight to ffmpeg and key lines straight to disk, so a recording of any length holds no
frames in memory. The key log's first line describes the scene (source, seed, engine, sizes); each
later line is one chunk: its index, the keys held ("we", or "." for none), the latent frame it starts
at, and the camera pose it ended at, so a session can be replayed as a key script.
"""

from __future__ import annotations

import json
import os

import numpy as np

from worldscape_jax.play.keys import vector_to_text
from worldscape_jax.training.media import Mp4Writer


class Recording:
    """Writes one session's frames and key log into `directory` under `name`."""

    def __init__(self, directory: str | os.PathLike, name: str, scene_info: dict, fps: int = 16):
        os.makedirs(directory, exist_ok=True)
        self.video_path = os.path.join(directory, f"{name}.mp4")
        self.keys_path = os.path.join(directory, f"{name}.keys.jsonl")
        self._video = Mp4Writer(self.video_path, fps)
        self._keys = open(self.keys_path, "w")
        self._keys.write(json.dumps({"scene": scene_info}) + "\n")
        self.chunks = 0

    def add_frames(self, frames: np.ndarray) -> None:
        for frame in frames:
            self._video.write(frame)

    def add_chunk(self, held: np.ndarray, latent_frame: int, c2w: np.ndarray) -> None:
        self._keys.write(json.dumps({"chunk": self.chunks, "keys": vector_to_text(held), "latent_frame": latent_frame,
                                     "c2w": np.round(np.asarray(c2w, np.float64), 5).tolist()}) + "\n")
        self._keys.flush()
        self.chunks += 1

    def close(self) -> dict:
        """Finishes both files; returns their paths and the number of frames and chunks written."""
        self._video.close()
        self._keys.close()
        return {"video": self.video_path, "keys": self.keys_path, "frames": self._video.frames_written,
                "chunks": self.chunks}
