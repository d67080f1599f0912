"""Reading and writing video frames: image folders and mp4 files, as uint8 [F, H, W, 3] RGB.

mp4 goes through `imageio-ffmpeg`, which ships its own ffmpeg binary (no system ffmpeg needed).
Images go through Pillow. Every problem (missing file, unreadable frame, frames of different sizes,
too few frames, more pixels than `max_pixels`, a video that ends before the frame count its header
declares) raises `DataFormatError` naming the file; `read_mp4(..., allow_partial=True)` turns the
last into a warning saying how many frames were read of how many declared.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from worldscape_jax.data import checks
from worldscape_jax.data.errors import DataFormatError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# What Pillow raises for a damaged or hostile image (its plugins use all of these).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError, ZeroDivisionError,
                Image.DecompressionBombError)


def _ffmpeg():
    """imageio_ffmpeg, imported when a video is read or written: the package carries an ffmpeg binary
    (~30 MB) that nothing else needs (launch/gpu_check.sh runs where it is not installed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg

def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of `folder`, sorted by name (frame order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "expected a folder of frame images; it does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: str | os.PathLike, expected_hw: tuple[int, int] | None = None, *,
               max_pixels: int = checks.MAX_IMAGE_PIXELS) -> np.ndarray:
    """One RGB image as uint8 [H, W, 3]; raises if unreadable, over `max_pixels` or not of size `expected_hw`.

    The size is read from the header and checked before the pixels are decoded.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if not (width >= 1 and height >= 1 and width * height <= max_pixels):
                size_error = f"declares {width}x{height} pixels; expected between 1 and {max_pixels} (max_pixels)"
            else:
                size_error, array = None, np.asarray(image.convert("RGB"))
    except IMAGE_ERRORS as error:
        raise DataFormatError(path, f"cannot read the image ({type(error).__name__}: {error})") from error
    if size_error:
        raise DataFormatError(path, size_error)
    if expected_hw is not None and array.shape[:2] != tuple(expected_hw):
        raise DataFormatError(path, f"image has size (H, W) = {array.shape[:2]}; expected {tuple(expected_hw)} "
                                    "like the first frame")
    return array


def read_image_folder(folder: str | os.PathLike, indices: Sequence[int] | None = None, *,
                      max_frames: int = checks.MAX_CLIP_FRAMES) -> np.ndarray:
    """Frames of an image folder (sorted by file name) as uint8 [F, H, W, 3]; all must share one size.

    `indices` selects frames (in the given order) without decoding the others.
    """
    files = list_images(folder)
    if not files:
        raise DataFormatError(folder, f"expected frame images ({', '.join(IMAGE_SUFFIXES)}); found none")
    if len(files) > max_frames and indices is None:
        raise DataFormatError(folder, f"holds {len(files)} frame images; at most {max_frames} (max_frames) are read "
                                      "as one clip")
    if indices is not None:
        _check_indices(folder, indices, len(files))
        files = [files[i] for i in indices]
    first = read_image(files[0])
    frames = [first] + [read_image(f, first.shape[:2]) for f in files[1:]]
    return np.stack(frames)


def count_images(folder: str | os.PathLike) -> int:
    """How many frame images `folder` holds."""
    return len(list_images(folder))


def mp4_metadata(path: str | os.PathLike) -> dict:
    """ffmpeg's metadata of a video: at least `size` (W, H), `fps` and `nframes` (may be inf)."""
    _require_file(path)
    reader = _ffmpeg().read_frames(os.fspath(path))
    try:
        return next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        raise DataFormatError(path, f"cannot read the video header ({error})") from error
    finally:
        reader.close()


def read_mp4(path: str | os.PathLike, indices: Sequence[int] | None = None, *, allow_partial: bool = False,
             max_frames: int = checks.MAX_CLIP_FRAMES, max_pixels: int = checks.MAX_IMAGE_PIXELS
             ) -> tuple[np.ndarray, float]:
    """Decodes a video to uint8 [F, H, W, 3] RGB and returns it with its frame rate.

    `indices` (sorted or not) selects frames; decoding stops after the last one needed. Reading the
    whole video, a stream that ends before the frame count its header declares is an error (or, with
    `allow_partial`, a warning saying how many frames were read of how many declared).
    """
    _require_file(path)
    reader = _ffmpeg().read_frames(os.fspath(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
        width, height = meta["size"]
        if not (width >= 1 and height >= 1 and width * height <= max_pixels):
            raise DataFormatError(path, f"declares {width}x{height} frames; expected 1 to {max_pixels} pixels")
        wanted = None if indices is None else set(int(i) for i in indices)
        last = None if wanted is None else max(wanted, default=-1)
        frames, decoded = {}, 0
        for index, raw in enumerate(reader):
            decoded = index + 1
            if last is not None and index > last:
                break
            if decoded > max_frames:
                raise DataFormatError(path, f"has more than {max_frames} frames (max_frames)")
            if wanted is None or index in wanted:
                frames[index] = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
    except (OSError, RuntimeError, StopIteration, KeyError, TypeError) as error:
        raise DataFormatError(path, f"cannot decode the video ({type(error).__name__}: {error})") from error
    finally:
        reader.close()
    if indices is None:
        if not frames:
            raise DataFormatError(path, "the video has no frames")
        _check_complete(path, len(frames), meta, allow_partial)
        return np.stack([frames[i] for i in sorted(frames)]), float(meta["fps"])
    missing = [int(i) for i in indices if int(i) not in frames]
    if missing:
        raise DataFormatError(path, f"frame indices {missing} are out of range; the video has {decoded} frames")
    return np.stack([frames[int(i)] for i in indices]), float(meta["fps"])


def _check_complete(path, decoded: int, meta: dict, allow_partial: bool) -> None:
    """Raises (or warns, with `allow_partial`) when fewer frames were decoded than the header declares.

    ffmpeg reports the duration to 1/100 s, so the declared count duration * fps is known to
    within 0.01 * fps frames (plus half a frame of rounding); only a shortfall beyond that counts.
    """
    duration, fps = meta.get("duration"), meta.get("fps")
    if not (isinstance(duration, (int, float)) and isinstance(fps, (int, float)) and duration > 0 and fps > 0
            and np.isfinite(duration * fps)):
        message = (f"the header declares a duration of {duration} s at {fps} fps, so whether all {decoded} frames "
                   "were read cannot be checked (damaged header?)")
    elif decoded >= duration * fps - 0.01 * fps - 0.5:
        return
    else:
        message = (f"the video ends after {decoded} of the {round(duration * fps)} frames its header declares "
                   f"({duration} s at {fps} fps; truncated?)")
    if not allow_partial:
        raise DataFormatError(path, message + "; pass allow_partial=True to read what is there")
    warnings.warn(f"{os.fspath(path)}: {message}; using the {decoded} frames read", stacklevel=3)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = 10.0, lossless: bool = True) -> None:
    """Writes uint8 [F, H, W, 3] frames as H.264 mp4 at `fps` (bit-exact RGB by default; yuv420p if not lossless)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataFormatError(path, f"expected uint8 frames [F, H, W, 3] to write; got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if lossless:  # H.264 in RGB at qp 0: bit-exact, so tests can compare pixels
        options = dict(codec="libx264rgb", pix_fmt_out="rgb24", quality=None, output_params=["-qp", "0"])
    else:
        options = dict(codec="libx264", pix_fmt_out="yuv420p")
    writer = _ffmpeg().write_frames(os.fspath(path), (width, height), fps=fps, macro_block_size=1, **options)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _require_file(path: str | os.PathLike) -> None:
    if not Path(path).is_file():
        raise DataFormatError(path, "expected a video file; it does not exist")


def _check_indices(path, indices: Sequence[int], available: int) -> None:
    """Raises unless every index is within [0, available)."""
    bad = [int(i) for i in indices if not 0 <= int(i) < available]
    if bad:
        raise DataFormatError(path, f"frame indices {bad} are out of range; the source has {available} frames")
