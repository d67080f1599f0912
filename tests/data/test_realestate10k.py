"""RealEstate10K reader: pose files written here are read back; every malformed input gives DataFormatError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import frames as frame_io
from worldscape_jax.data.formats import realestate10k as re10k

URL = "https://www.youtube.com/watch?v=abcdefghijk"


def random_c2w(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random proper rigid transforms (QR of a Gaussian, sign-fixed to det +1)."""
    poses = np.tile(np.eye(4), (count, 1, 1))
    for pose in poses:
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] *= -1
        pose[:3, :3] = q
        pose[:3, 3] = rng.normal(size=3)
    return poses


def pose_line(timestamp: int, intrinsics, c2w: np.ndarray) -> str:
    w2c = np.linalg.inv(c2w)  # independent of the reader's closed-form inverse
    numbers = [str(timestamp)] + [f"{v:.9f}" for v in intrinsics] + ["0", "0"]
    numbers += [f"{v:.9f}" for v in w2c[:3, :].reshape(-1)]
    return " ".join(numbers)


def write_pose_file(path, c2w: np.ndarray, intrinsics=(0.5, 0.9, 0.5, 0.5), start_us=1_000_000, step_us=33_366):
    lines = [URL] + [pose_line(start_us + i * step_us, intrinsics, pose) for i, pose in enumerate(c2w)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip_c2w_intrinsics_timestamps(tmp_path):
    c2w = random_c2w(np.random.default_rng(0), 5)
    poses = re10k.read_pose_file(write_pose_file(tmp_path / "clip.txt", c2w))
    assert poses.url == URL
    np.testing.assert_array_equal(poses.timestamps_us, 1_000_000 + 33_366 * np.arange(5))
    np.testing.assert_allclose(poses.intrinsics, np.tile([0.5, 0.9, 0.5, 0.5], (5, 1)), atol=1e-7)
    np.testing.assert_allclose(poses.c2w, c2w, atol=1e-6)
    assert poses.c2w.dtype == np.float32 and poses.c2w.shape == (5, 4, 4)


def test_projection_matches_file_matrix(tmp_path):
    """K [R|t] from the file and the parsed (c2w, normalised K) project a world point to the same pixel."""
    rng = np.random.default_rng(1)
    c2w = random_c2w(rng, 1)[0]
    poses = re10k.read_pose_file(write_pose_file(tmp_path / "clip.txt", c2w[None], intrinsics=(0.6, 1.1, 0.45, 0.52)))
    point_cam = np.array([0.3, -0.2, 4.0])
    point_world = c2w[:3, :3] @ point_cam + c2w[:3, 3]
    height, width = 90, 160
    k_file = np.array([[0.6 * width, 0, 0.45 * width], [0, 1.1 * height, 0.52 * height], [0, 0, 1]])
    w2c_file = np.linalg.inv(c2w)[:3, :]
    expected = k_file @ w2c_file @ np.append(point_world, 1.0)
    fx, fy, cx, cy = poses.intrinsics[0] * [width, height, width, height]
    cam = np.linalg.inv(poses.c2w[0].astype(np.float64)) @ np.append(point_world, 1.0)
    got = np.array([fx * cam[0] / cam[2] + cx, fy * cam[1] / cam[2] + cy])
    np.testing.assert_allclose(got, expected[:2] / expected[2], atol=1e-3)


def test_clip_from_image_folder(tmp_path):
    c2w = random_c2w(np.random.default_rng(2), 3)
    write_pose_file(tmp_path / "clip.txt", c2w)
    folder = tmp_path / "frames"
    folder.mkdir()
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    for i, colour in enumerate(colours):
        Image.fromarray(np.broadcast_to(colour, (6, 8, 3)).copy()).save(folder / f"{i:05d}.png")
    clip = re10k.read_clip(tmp_path / "clip.txt", folder)
    assert clip["video"].shape == (3, 6, 8, 3)
    np.testing.assert_array_equal(clip["video"][:, 0, 0], colours)
    np.testing.assert_allclose(clip["c2w"], c2w, atol=1e-6)


def test_clip_from_mp4_by_index_and_by_timestamp(tmp_path):
    levels = np.arange(0, 250, 25, dtype=np.uint8)  # frame i is grey level 25 i
    video = np.broadcast_to(levels[:, None, None, None], (10, 16, 16, 3)).copy()
    frame_io.write_mp4(tmp_path / "clip.mp4", video, fps=10)
    c2w = random_c2w(np.random.default_rng(3), 4)
    write_pose_file(tmp_path / "four.txt", c2w, start_us=200_000, step_us=200_000)  # frames 2, 4, 6, 8 at 10 fps
    clip = re10k.read_clip(tmp_path / "four.txt", tmp_path / "clip.mp4", frames_by="timestamp")
    np.testing.assert_array_equal(clip["video"][:, 8, 8, 0], levels[[2, 4, 6, 8]])
    with pytest.raises(DataFormatError, match=r"clip\.mp4.*10 frames.*four\.txt.*4 pose lines"):
        re10k.read_clip(tmp_path / "four.txt", tmp_path / "clip.mp4")
    write_pose_file(tmp_path / "ten.txt", random_c2w(np.random.default_rng(4), 10))
    clip = re10k.read_clip(tmp_path / "ten.txt", tmp_path / "clip.mp4")
    np.testing.assert_array_equal(clip["video"][:, 8, 8, 0], levels)


def test_frame_count_mismatch_names_both_files(tmp_path):
    write_pose_file(tmp_path / "clip.txt", random_c2w(np.random.default_rng(5), 3))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(DataFormatError, match=r"frames.*2 frames.*clip\.txt.*3 pose lines"):
        re10k.read_clip(tmp_path / "clip.txt", folder)


def test_image_of_wrong_size_names_the_file(tmp_path):
    write_pose_file(tmp_path / "clip.txt", random_c2w(np.random.default_rng(6), 2))
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "0.png")
    Image.fromarray(np.zeros((5, 4, 3), np.uint8)).save(folder / "1.png")
    with pytest.raises(DataFormatError, match=r"1\.png.*\(5, 4\).*expected \(4, 4\)"):
        re10k.read_clip(tmp_path / "clip.txt", folder)


def good_line() -> str:
    return pose_line(0, (0.5, 0.9, 0.5, 0.5), np.eye(4))


@pytest.mark.parametrize("line, message", [
    (" ".join(good_line().split()[:18]), "expected 19 numbers.*got 18"),
    (good_line().replace("0.500000000", "abc", 1), "field 2.*'abc'"),
    ("1.5 " + " ".join(good_line().split()[1:]), "integer timestamp"),
    (good_line().replace("0.900000000", "nan", 1), "finite number as field 3"),
    (good_line().replace("0.500000000", "-0.5", 1), "positive focal"),
])
def test_malformed_line_names_file_line_and_expectation(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"{URL}\n{good_line()}\n{line}\n")
    with pytest.raises(DataFormatError, match=rf"bad\.txt, line 3: .*{message}"):
        re10k.read_pose_file(path)


def test_non_orthonormal_and_reflected_rotations_are_rejected(tmp_path):
    scaled = np.diag([1.1, 1.0, 1.0, 1.0])
    reflected = np.diag([-1.0, 1.0, 1.0, 1.0])
    for name, pose, message in (("scaled", scaled, "orthonormal"), ("reflected", reflected, "det \\+1")):
        tokens = good_line().split()
        tokens[7:] = [f"{v:.6f}" for v in pose[:3, :].reshape(-1)]  # written directly as w2c
        path = tmp_path / f"{name}.txt"
        path.write_text(f"{URL}\n{' '.join(tokens)}\n")
        with pytest.raises(DataFormatError, match=rf"{name}\.txt, line 2: .*{message}"):
            re10k.read_pose_file(path)


def test_timestamps_must_increase(tmp_path):
    path = write_pose_file(tmp_path / "clip.txt", np.tile(np.eye(4), (3, 1, 1)), step_us=0)
    with pytest.raises(DataFormatError, match=r"line 3: timestamps must increase"):
        re10k.read_pose_file(path)


def test_empty_and_url_only_files(tmp_path):
    with pytest.raises(DataFormatError, match="empty"):
        re10k.parse_pose_text("", "x.txt")
    with pytest.raises(DataFormatError, match="line 2: expected at least one pose line"):
        re10k.parse_pose_text(URL + "\n", "x.txt")
    with pytest.raises(DataFormatError, match="line 1: .*URL"):
        re10k.parse_pose_text(good_line() + "\n" + good_line(), "x.txt")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_format_then_parse_is_the_identity(seed, count):
    rng = np.random.default_rng(seed)
    c2w = random_c2w(rng, count)
    c2w[:, :3, 3] *= 10.0 ** rng.uniform(-3, 3)
    timestamps = np.cumsum(rng.integers(1, 10**6, count))
    intrinsics = np.concatenate([rng.uniform(0.1, 2.0, (count, 2)), rng.uniform(0.0, 1.0, (count, 2))], 1)
    poses = re10k.parse_pose_text(re10k.format_pose_text(URL, timestamps, intrinsics, c2w), "written.txt")
    np.testing.assert_array_equal(poses.timestamps_us, timestamps)
    np.testing.assert_allclose(poses.intrinsics, intrinsics, rtol=1e-6)
    np.testing.assert_allclose(poses.c2w, c2w, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(c2w).max()))


number_tokens = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "1", "-1", "0.5", "nan", "inf", "1e999", "1_0", "", "+", "0x10", "٣"]),
    st.text(max_size=6),
)
random_lines = st.one_of(
    st.text(max_size=200),
    st.lists(number_tokens, min_size=0, max_size=25).map(" ".join),
    st.lists(number_tokens, min_size=19, max_size=19).map(" ".join),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(random_lines, min_size=0, max_size=4), st.booleans())
def test_random_lines_parse_or_raise_data_format_error(lines, with_good_line):
    body = ([good_line()] if with_good_line else []) + lines
    text = "\n".join([URL] + body)
    try:
        poses = re10k.parse_pose_text(text, "random.txt")
    except DataFormatError as error:
        assert "random.txt" in str(error)
        return
    assert np.all(np.isfinite(poses.c2w)) and len(poses) == poses.c2w.shape[0] >= 1
