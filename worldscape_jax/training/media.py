"""Write sample videos people can look at: an mp4 per sample batch and a contact-sheet PNG.

Videos are uint8 `[N, F, H, W, 3]` (N clips of F frames). The contact sheet has one row per clip
and up to `max_columns` frames per row, picked evenly over time, so a training run leaves a picture
of its progress every few steps.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def check_video_batch(videos: np.ndarray, where: str) -> np.ndarray:
    """Validate a uint8 [N, F, H, W, 3] batch; raise naming `where` otherwise."""
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 video [N, F, H, W, 3], got {videos.dtype} {videos.shape}")
    return videos


def to_uint8(video: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Map floats in [low, high] to uint8 [0, 255], clipping outside values (for display only)."""
    scaled = (np.asarray(video, np.float32) - low) / (high - low)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def contact_sheet(videos: np.ndarray, max_columns: int = 8, gap: int = 2) -> np.ndarray:
    """One row per clip, `max_columns` evenly spaced frames per row, `gap` white pixels between."""
    videos = check_video_batch(videos, "media.contact_sheet")
    n, f, h, w, _ = videos.shape
    cols = np.unique(np.linspace(0, f - 1, min(f, max_columns)).round().astype(int))
    sheet = np.full((n * h + (n - 1) * gap, len(cols) * w + (len(cols) - 1) * gap, 3), 255, np.uint8)
    for r in range(n):
        for c, frame in enumerate(cols):
            y, x = r * (h + gap), c * (w + gap)
            sheet[y : y + h, x : x + w] = videos[r, frame]
    return sheet


def tile_clips(videos: np.ndarray) -> np.ndarray:
    """Place N clips side by side into one video [F, H, N*W, 3], for a single mp4."""
    videos = check_video_batch(videos, "media.tile_clips")
    return np.concatenate(list(videos), axis=2)


class Mp4Writer:
    """H.264 mp4 written frame by frame (constant memory, for streams of any length).

    Frames are uint8 [H, W, 3] of one size; odd sizes are padded to even numbers for yuv420p.
    Use as a context manager or call `close()`; nothing is written until the first frame.
    """

    def __init__(self, path: str | os.PathLike, fps: int = 8):
        self.path, self.fps, self.frames_written = os.fspath(path), fps, 0
        self._writer, self._shape = None, None

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"media.Mp4Writer({self.path}): expected uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        if self._writer is None:
            self._open(frame.shape)
        elif frame.shape != self._shape:
            raise ValueError(f"media.Mp4Writer({self.path}): frame {frame.shape} differs from the first {self._shape}")
        frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
        self._writer.send(np.ascontiguousarray(frame).tobytes())
        self.frames_written += 1

    def _open(self, shape: tuple[int, ...]) -> None:
        import imageio_ffmpeg  # deferred: only video writers need ffmpeg (bundled with the package)

        self._shape = shape
        height, width = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
        self._writer = imageio_ffmpeg.write_frames(self.path, (width, height), fps=self.fps, codec="libx264",
                                                   macro_block_size=1, quality=8)
        self._writer.send(None)  # start the ffmpeg process

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> None:
    """Encode uint8 frames [F, H, W, 3] as H.264 mp4 (sizes padded to even numbers for yuv420p)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"media.write_mp4({path}): expected uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    with Mp4Writer(path, fps) as writer:
        for frame in frames:
            writer.write(frame)


def read_mp4(path: str | os.PathLike) -> np.ndarray:
    """Decode an mp4 to uint8 frames [F, H, W, 3] (for tests and quick looks)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(os.fspath(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader])


def write_samples(directory: str | os.PathLike, name: str, videos: np.ndarray, fps: int = 8) -> tuple[str, str]:
    """Write `<name>.mp4` (clips side by side) and `<name>.png` (contact sheet); return both paths."""
    os.makedirs(directory, exist_ok=True)
    videos = check_video_batch(videos, f"media.write_samples({name})")
    mp4 = os.path.join(directory, f"{name}.mp4")
    png = os.path.join(directory, f"{name}.png")
    write_mp4(mp4, tile_clips(videos), fps=fps)
    Image.fromarray(contact_sheet(videos)).save(png)
    return mp4, png
