"""TartanAir (v1) sequences: pose_left.txt, image_left/*.png, depth_left/*.npy.

Poses. Each line of `pose_left.txt` is `tx ty tz qx qy qz qw`: the camera-to-world pose of the left
camera, a translation and a unit quaternion (scalar last, Hamilton convention, rotating body
vectors into the world). Both the world and the camera body frame are NED: x forward (north),
y right (east), z down.

Axis conversion. OpenCV camera axes are x right, y down, z forward, so an OpenCV vector is the NED
vector permuted: (x, y, z)_cv = (y, z, x)_ned = M (x, y, z)_ned with

    M = [[0, 1, 0],
         [0, 0, 1],
         [1, 0, 0]]   (a rotation: det M = +1).

We apply M to the camera frame *and* to the world frame, c2w_cv = M4 @ c2w_ned @ M4^T (M4 = M padded
to 4x4). The camera part makes the optical axis +z; the world part keeps the world right-handed
with "down" along +y, the same as SynthWorld's worlds, so gravity points the same way in every source.
A point p_cam_ned seen by the camera maps to p_cam_cv = M p_cam_ned: straight ahead lands on +z,
to the right on +x, below on +y.

Intrinsics: v1 cameras are 640x480 with fx = fy = 320, cx = 320, cy = 240 (90 degree FOV), that is
(0.5, 2/3, 0.5, 0.5) normalised; pass other values for other data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from worldscape_jax.data import checks
from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import frames as frame_io
from worldscape_jax.data.formats.npy import read_npy

NED_TO_OPENCV = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float64)
TARTANAIR_V1_INTRINSICS = np.array([320 / 640, 320 / 480, 320 / 640, 240 / 480], np.float32)
QUATERNION_NORM_ATOL = 1e-3
POSE_FIELDS = ("tx", "ty", "tz", "qx", "qy", "qz", "qw")
MAX_DEPTH_M = 1e6  # TartanAir's sky is far but finite; 1e38 is a corrupt value, not a distance


def quaternion_to_rotation(quaternion: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] from unit quaternions [..., 4] stored (qx, qy, qz, qw)."""
    x, y, z, w = np.moveaxis(np.asarray(quaternion, np.float64), -1, 0)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return np.stack([np.stack(row, -1) for row in rows], -2)


def ned_to_opencv_c2w(c2w_ned: np.ndarray) -> np.ndarray:
    """Re-expresses NED camera-to-world poses [..., 4, 4] in OpenCV camera axes and a y-down world."""
    return NED_TO_OPENCV @ c2w_ned @ NED_TO_OPENCV.T


def parse_pose_text(text: str, path: str | os.PathLike | None = None) -> np.ndarray:
    """The text of pose_left.txt -> OpenCV-axis c2w float32 [N, 4, 4]."""
    rows = []
    for number, line in enumerate(checks.split_lines(text), start=1):
        if line.strip(" \t"):
            rows.append(_parse_pose_line(line, path, number))
    if not rows:
        raise DataFormatError(path, "expected pose lines 'tx ty tz qx qy qz qw'; the file has none")
    values = np.stack(rows)
    c2w_ned = np.tile(np.eye(4), (len(values), 1, 1))
    c2w_ned[:, :3, :3] = quaternion_to_rotation(values[:, 3:] / np.linalg.norm(values[:, 3:], axis=-1, keepdims=True))
    c2w_ned[:, :3, 3] = values[:, :3]
    return ned_to_opencv_c2w(c2w_ned).astype(np.float32)


def read_poses(path: str | os.PathLike) -> np.ndarray:
    """Reads pose_left.txt -> OpenCV-axis c2w float32 [N, 4, 4]."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataFormatError(path, f"cannot read the pose file ({error})") from error
    return parse_pose_text(text, path)


def read_depth(path: str | os.PathLike, expected_hw: tuple[int, int] | None = None, *,
               max_depth: float = MAX_DEPTH_M, max_bytes: int = checks.MAX_ARRAY_BYTES) -> np.ndarray:
    """One depth map (metres along the optical axis) from a .npy file as float32 [H, W].

    The header is checked against the file's size before anything is allocated; every depth must be
    finite and in (0, max_depth].
    """
    depth = read_npy(path, ndim=2, max_bytes=max_bytes)
    if expected_hw is not None and depth.shape != tuple(expected_hw):
        raise DataFormatError(path, f"depth has size {depth.shape}; expected {tuple(expected_hw)} like the images")
    with np.errstate(invalid="ignore"):
        bad = ~((depth > 0) & (depth <= max_depth))
    if np.any(bad):
        row, col = np.unravel_index(int(np.argmax(bad)), depth.shape)
        raise DataFormatError(path, f"expected finite depths in (0, {max_depth:g}] metres; {int(bad.sum())} are not, "
                                    f"e.g. {depth[row, col]!r} at pixel (row {row}, column {col})")
    return depth.astype(np.float32)


def read_sequence(folder: str | os.PathLike, camera: str = "left",
                  intrinsics: np.ndarray = TARTANAIR_V1_INTRINSICS) -> dict[str, np.ndarray]:
    """A trajectory folder (P000 etc.) -> {video uint8, depth float32, c2w float32, intrinsics float32}.

    Frames come from image_<camera>/*.png and depth_<camera>/*.npy (sorted by name); their counts and
    sizes must match the pose file.
    """
    folder = Path(folder)
    pose_path = folder / f"pose_{camera}.txt"
    c2w = read_poses(pose_path)
    video = frame_io.read_image_folder(folder / f"image_{camera}")
    depth_files = sorted((folder / f"depth_{camera}").glob("*.npy"))
    for name, count in (("image", len(video)), ("depth", len(depth_files))):
        if count != len(c2w):
            raise DataFormatError(folder / f"{name}_{camera}", f"has {count} frames but {pose_path} has "
                                                                f"{len(c2w)} poses; expected one per pose")
    depth = np.stack([read_depth(p, video.shape[1:3]) for p in depth_files])
    intrinsics = np.broadcast_to(np.asarray(intrinsics, np.float32), (len(c2w), 4)).copy()
    return {"video": video, "depth": depth, "c2w": c2w, "intrinsics": intrinsics}


def _parse_pose_line(line: str, path, number: int) -> np.ndarray:
    tokens = checks.split_fields(line)
    if len(tokens) != 7:
        raise DataFormatError(path, f"expected 7 numbers 'tx ty tz qx qy qz qw'; got {len(tokens)} fields",
                              line=number)
    values = np.asarray([checks.parse_float(token, path, number, f"field {column} ({name})")
                         for column, (token, name) in enumerate(zip(tokens, POSE_FIELDS), start=1)])
    norm = np.linalg.norm(values[3:])
    if abs(norm - 1.0) > QUATERNION_NORM_ATOL:
        raise DataFormatError(path, f"expected a unit quaternion (qx qy qz qw); its norm is {norm:.6f}",
                              line=number)
    return values
