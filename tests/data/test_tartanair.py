"""TartanAir reader: NED quaternion poses become OpenCV-axis c2w; sequences written here read back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import tartanair

S = np.sqrt(0.5)
CAMERA_NED = np.array([10.0, 5.0, -2.0])
YAW_EAST = (0.0, 0.0, S, S)  # 90 degrees about NED z (down): forward turns from north to east
PITCH_UP = (0.0, S, 0.0, S)  # 90 degrees about body y (east): forward turns from north to up


def camera_coordinates(c2w_cv: np.ndarray, point_ned) -> np.ndarray:
    """Where a NED world point lands in the OpenCV camera frame (world re-axised with the same M)."""
    point_cv = np.array([point_ned[1], point_ned[2], point_ned[0], 1.0])  # (y, z, x): written out by hand
    return (np.linalg.inv(c2w_cv.astype(np.float64)) @ point_cv)[:3]


def pose_line(position, quaternion) -> str:
    return " ".join(f"{v:.8f}" for v in (*position, *quaternion))


@pytest.mark.parametrize("quaternion, point_ned, expected_cv", [
    ((0, 0, 0, 1), CAMERA_NED + [5, 0, 0], [0, 0, 5]),      # north of a north-facing camera: straight ahead
    ((0, 0, 0, 1), CAMERA_NED + [5, 2, 0], [2, 0, 5]),      # east is to the right (+x)
    ((0, 0, 0, 1), CAMERA_NED + [5, 0, 3], [0, 3, 5]),      # below is down in the image (+y)
    (YAW_EAST, CAMERA_NED + [0, 5, 0], [0, 0, 5]),          # facing east: east is ahead
    (YAW_EAST, CAMERA_NED + [-2, 5, 0], [2, 0, 5]),         # facing east: south is to the right
    (PITCH_UP, CAMERA_NED + [0, 0, -4], [0, 0, 4]),         # looking up: above is ahead
    (PITCH_UP, CAMERA_NED + [3, 0, -4], [0, 3, 4]),         # looking up: the old heading (north) is image-down
])
def test_ned_pose_to_opencv_axes(quaternion, point_ned, expected_cv):
    c2w = tartanair.parse_pose_text(pose_line(CAMERA_NED, quaternion), "pose_left.txt")
    np.testing.assert_allclose(camera_coordinates(c2w[0], point_ned), expected_cv, atol=1e-5)


def test_conversion_gives_proper_rotations():
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(6, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    text = "\n".join(pose_line(rng.normal(size=3), q) for q in quats)
    rot = tartanair.parse_pose_text(text)[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(rot @ np.swapaxes(rot, 1, 2), np.tile(np.eye(3), (6, 1, 1)), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)


def write_sequence(folder, count=3, height=6, width=8, depth_hw=None):
    rng = np.random.default_rng(1)
    (folder / "image_left").mkdir(parents=True)
    (folder / "depth_left").mkdir()
    lines = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
            folder / "image_left" / f"{i:06d}_left.png")
        np.save(folder / "depth_left" / f"{i:06d}_left_depth.npy",
                np.full(depth_hw or (height, width), 1.5 + i, np.float32))
        lines.append(pose_line([i, 0, 0], (0, 0, 0, 1)))
    (folder / "pose_left.txt").write_text("\n".join(lines) + "\n")


def test_read_sequence(tmp_path):
    write_sequence(tmp_path / "P000")
    seq = tartanair.read_sequence(tmp_path / "P000")
    assert seq["video"].shape == (3, 6, 8, 3) and seq["video"].dtype == np.uint8
    np.testing.assert_array_equal(seq["depth"][:, 0, 0], [1.5, 2.5, 3.5])
    # walking north in NED is walking forward: +z in the re-axised world
    np.testing.assert_allclose(seq["c2w"][:, :3, 3], [[0, 0, 0], [0, 0, 1], [0, 0, 2]], atol=1e-6)
    np.testing.assert_allclose(seq["intrinsics"], np.tile([0.5, 2 / 3, 0.5, 0.5], (3, 1)), atol=1e-6)


def test_depth_of_wrong_size_names_the_file(tmp_path):
    write_sequence(tmp_path / "P001", depth_hw=(5, 8))
    with pytest.raises(DataFormatError, match=r"000000_left_depth\.npy.*\(5, 8\).*expected \(6, 8\)"):
        tartanair.read_sequence(tmp_path / "P001")


def test_frame_count_mismatch(tmp_path):
    write_sequence(tmp_path / "P002")
    (tmp_path / "P002" / "pose_left.txt").write_text(pose_line([0, 0, 0], (0, 0, 0, 1)) + "\n")
    with pytest.raises(DataFormatError, match=r"image_left.*3 frames.*pose_left\.txt.*1 poses"):
        tartanair.read_sequence(tmp_path / "P002")


@pytest.mark.parametrize("line, message", [
    ("1 2 3 0 0 0", "expected 7 numbers"),
    ("1 2 3 0 0 0 x", r"finite number as field 7 \(qw\).*'x'"),
    ("1 2 inf 0 0 0 1", "finite"),
    ("1 2 3 0 0 0 2", "unit quaternion.*2.000000"),
])
def test_bad_pose_lines(tmp_path, line, message):
    path = tmp_path / "pose_left.txt"
    path.write_text(pose_line([0, 0, 0], (0, 0, 0, 1)) + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"pose_left\.txt, line 2: .*{message}"):
        tartanair.read_poses(path)
