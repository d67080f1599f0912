"""RealEstate10K camera files and clips.

A pose file (one per clip) has the YouTube URL on its first line, then one line per frame with 19
numbers separated by spaces (research notes, control_memory_metrics.md §1.1):

    timestamp_us fx fy cx cy 0 0 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2

* `timestamp_us`: integer microseconds from the start of the video;
* `fx fy cx cy`: intrinsics normalised by the image size (exactly the project's convention);
* two unused numbers (zeros in the released files);
* `[R | t]`: the 3x4 world-to-camera matrix, row-major, in OpenCV axes (x right, y down, z forward).

We return c2w = inv(w2c) as float32 [N, 4, 4]. Frames come from an image folder (one image per pose
line, sorted by file name) or an mp4 (either one frame per pose line, or the whole video with frames
picked by timestamp). Line numbers in errors are 1-based, as in an editor (line 1 is the URL).
Numbers are parsed strictly (data/checks.py): ASCII decimals within float32's range; focal lengths
in [1e-3, 1e3] and the principal point inside the image (normalised [0, 1]); rotations rigid.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np

from worldscape_jax.data import checks
from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import frames as frame_io
from worldscape_jax.geometry.cameras import c2w_to_w2c, w2c_to_c2w

NUMBERS_PER_LINE = 19
DEFAULT_ROTATION_ATOL = checks.ROTATION_ATOL
FOCAL_RANGE = (1e-3, 1e3)  # normalised fx, fy: fields of view from ~0.06 to ~179.9 degrees
PRINCIPAL_POINT_RANGE = (0.0, 1.0)  # normalised cx, cy: inside the image


@dataclasses.dataclass(frozen=True)
class RealEstate10KPoses:
    """The parsed content of one pose file."""

    url: str
    timestamps_us: np.ndarray  # int64 [N]
    intrinsics: np.ndarray  # float32 [N, 4], normalised (fx, fy, cx, cy)
    c2w: np.ndarray  # float32 [N, 4, 4], OpenCV axes

    def __len__(self) -> int:
        return len(self.timestamps_us)


def parse_pose_text(text: str, path: str | os.PathLike | None = None,
                    rotation_atol: float = DEFAULT_ROTATION_ATOL) -> RealEstate10KPoses:
    """Parses the text of a pose file; raises DataFormatError naming `path`, the line and the problem."""
    lines = checks.split_lines(text)
    while lines and not lines[-1].strip(" \t"):
        lines.pop()
    if not lines:
        raise DataFormatError(path, "the pose file is empty; expected a URL line followed by pose lines", line=1)
    url = _parse_url(lines[0], path)
    if len(lines) < 2:
        raise DataFormatError(path, "expected at least one pose line after the URL", line=2)
    rows = [parse_pose_line(line, path, number, rotation_atol) for number, line in enumerate(lines[1:], start=2)]
    timestamps = np.asarray([row[0] for row in rows], np.int64)
    _check_increasing(timestamps, path)
    intrinsics = np.stack([row[1] for row in rows])
    w2c = np.stack([row[2] for row in rows])
    return RealEstate10KPoses(url=url, timestamps_us=timestamps, intrinsics=intrinsics.astype(np.float32),
                              c2w=w2c_to_c2w(w2c).astype(np.float32))


def read_pose_file(path: str | os.PathLike, rotation_atol: float = DEFAULT_ROTATION_ATOL) -> RealEstate10KPoses:
    """Reads and parses one RealEstate10K pose file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"cannot read the pose file as UTF-8 text ({error})") from error
    return parse_pose_text(text, path, rotation_atol)


def parse_pose_line(line: str, path: str | os.PathLike | None, line_number: int,
                    rotation_atol: float = DEFAULT_ROTATION_ATOL) -> tuple[int, np.ndarray, np.ndarray]:
    """One pose line -> (timestamp_us, normalised intrinsics float64 [4], w2c float64 [4, 4])."""
    tokens = checks.split_fields(line)
    if len(tokens) != NUMBERS_PER_LINE:
        raise DataFormatError(path, f"expected {NUMBERS_PER_LINE} numbers (timestamp fx fy cx cy 0 0 and a 3x4 "
                                    f"world-to-camera matrix); got {len(tokens)} fields", line=line_number)
    timestamp = checks.parse_int(tokens[0], path, line_number, "field 1 (the integer timestamp in microseconds)")
    if not 0 <= timestamp < 2**63:
        raise DataFormatError(path, f"expected a timestamp in [0, 2^63) microseconds; got {timestamp}",
                              line=line_number)
    values = np.asarray([checks.parse_float(tok, path, line_number, f"field {column}")
                         for column, tok in enumerate(tokens[1:], 2)])
    intrinsics = values[:4]
    _check_intrinsics(intrinsics, path, line_number)
    w2c = np.eye(4)
    w2c[:3, :] = values[6:].reshape(3, 4)
    checks.check_rigid(w2c, path, first_line=line_number, atol=rotation_atol)
    return timestamp, intrinsics, w2c


def read_clip(pose_file: str | os.PathLike, frames_path: str | os.PathLike, *,
              frames_by: Literal["index", "timestamp"] = "index",
              rotation_atol: float = DEFAULT_ROTATION_ATOL) -> dict[str, np.ndarray]:
    """One clip: {video uint8 [N,H,W,3], c2w float32 [N,4,4], intrinsics float32 [N,4], timestamps_us int64 [N]}.

    `frames_path` is an image folder or an mp4. With `frames_by="index"` the source must hold exactly
    one frame per pose line. With `frames_by="timestamp"` (mp4 only) the frame shown at each pose's
    timestamp is taken: index = round(timestamp_us * fps / 1e6).
    """
    poses = read_pose_file(pose_file, rotation_atol)
    video = _read_frames(poses, Path(frames_path), frames_by, pose_file)
    return {"video": video, "c2w": poses.c2w, "intrinsics": poses.intrinsics, "timestamps_us": poses.timestamps_us}


def format_pose_text(url: str, timestamps_us: np.ndarray, intrinsics: np.ndarray, c2w: np.ndarray) -> str:
    """The text of a pose file for these cameras (the inverse of `parse_pose_text`), e.g. to export
    SynthWorld trajectories to tools that read RealEstate10K."""
    if "\n" in url or not url.strip():
        raise ValueError(f"url must be one non-empty line; got {url!r}")
    w2c = c2w_to_w2c(np.asarray(c2w, np.float64))
    lines = [url.strip()]
    for timestamp, k, pose in zip(np.asarray(timestamps_us), np.asarray(intrinsics, np.float64), w2c, strict=True):
        numbers = [f"{v:.9g}" for v in k] + ["0", "0"] + [f"{v:.9g}" for v in pose[:3].reshape(-1)]
        lines.append(" ".join([str(int(timestamp))] + numbers))
    return "\n".join(lines) + "\n"


def count_source_frames(frames_path: Path) -> int:
    """Number of frames in an image folder or an mp4 (decodes the mp4 when its header has no count)."""
    if frames_path.is_dir():
        return frame_io.count_images(frames_path)
    meta = frame_io.mp4_metadata(frames_path)
    count = meta.get("nframes", math.inf)
    if not math.isfinite(count):
        count = len(frame_io.read_mp4(frames_path)[0])
    return int(count)


def _read_frames(poses: RealEstate10KPoses, frames_path: Path, frames_by: str, pose_file) -> np.ndarray:
    if frames_by == "index":
        if frames_path.is_dir():
            video = frame_io.read_image_folder(frames_path)
        else:
            video, _ = frame_io.read_mp4(frames_path)
        if len(video) != len(poses):
            raise DataFormatError(frames_path, f"has {len(video)} frames but the pose file {os.fspath(pose_file)} "
                                               f"has {len(poses)} pose lines; expected one frame per pose line")
        return video
    if frames_by == "timestamp":
        if frames_path.is_dir():
            raise DataFormatError(frames_path, "frames_by='timestamp' needs an mp4 (its frame rate); got a folder")
        fps = frame_io.mp4_metadata(frames_path)["fps"]
        indices = np.rint(poses.timestamps_us.astype(np.float64) * fps / 1e6).astype(np.int64)
        return frame_io.read_mp4(frames_path, indices.tolist())[0]
    raise DataFormatError(pose_file, f"frames_by must be 'index' or 'timestamp'; got {frames_by!r}")


def _parse_url(line: str, path) -> str:
    url = line.strip()
    if not url:
        raise DataFormatError(path, "expected the video URL on the first line; it is empty", line=1)
    if len(url.split()) == NUMBERS_PER_LINE:
        raise DataFormatError(path, "expected the video URL on the first line; found what looks like a pose line",
                              line=1)
    return url


def _check_intrinsics(intrinsics: np.ndarray, path, line_number: int) -> None:
    fx, fy, cx, cy = intrinsics
    low, high = FOCAL_RANGE
    if not (low <= fx <= high and low <= fy <= high):
        raise DataFormatError(path, f"expected positive focal lengths fx, fy in [{low}, {high}] (normalised by the "
                                    f"image size); got {fx:.4g}, {fy:.4g}", line=line_number)
    low, high = PRINCIPAL_POINT_RANGE
    if not (low <= cx <= high and low <= cy <= high):
        raise DataFormatError(path, f"expected the principal point cx, cy in [{low}, {high}] (normalised: inside "
                                    f"the image); got {cx:.4g}, {cy:.4g}", line=line_number)


def _check_increasing(timestamps: np.ndarray, path) -> None:
    steps = np.diff(timestamps)
    if np.any(steps <= 0):
        bad = int(np.argmax(steps <= 0))
        raise DataFormatError(path, f"timestamps must increase strictly; {timestamps[bad + 1]} follows "
                                    f"{timestamps[bad]}", line=bad + 3)
