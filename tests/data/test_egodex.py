"""EgoDex reader: an hdf5 (+ mp4) written here with hand joints at known camera-frame points reads back."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import egodex
from worldscape_jax.data.formats import frames as frame_io

FRAMES, HEIGHT, WIDTH = 3, 48, 64
K = np.array([[40.0, 0, 30.0], [0, 42.0, 25.0], [0, 0, 1]])


def camera_poses(frames: int) -> np.ndarray:
    """A camera yawing about world y while moving along x (proper rotations, written out)."""
    poses = np.tile(np.eye(4), (frames, 1, 1))
    for f in range(frames):
        a = 0.2 * f
        poses[f, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        poses[f, :3, 3] = [0.3 * f, -0.1, 0.05 * f]
    return poses


def keypoint_in_camera(side_index: int, k: int) -> np.ndarray:
    """Camera-frame position of OpenPose keypoint k of a hand: distinct per keypoint and side."""
    return np.array([0.02 * k - 0.2 + 0.3 * side_index, 0.015 * k - 0.1, 1.0 + 0.05 * k])


def write_episode(path, c2w_written=None, skip_key=None, camera_sign=1.0):
    """camera_sign=-1 writes the points in front of an ARKit camera (looking down -z)."""
    c2w = camera_poses(FRAMES) if c2w_written is None else c2w_written
    with h5py.File(path, "w") as file:
        file["camera/intrinsic"] = K
        file["transforms/camera"] = c2w
        file["transforms/hip"] = np.tile(np.eye(4), (FRAMES, 1, 1))  # a body joint the reader ignores
        file.attrs["llm_description"] = "pick up the cube"
        for s, side in enumerate(egodex.SIDES):
            openpose = egodex.openpose_joint_names(side)
            for name in egodex.hand_joint_names(side):
                cam = keypoint_in_camera(s, openpose.index(name)) if name in openpose else np.array([0, 0, -5.0])
                cam = cam * [1, camera_sign, camera_sign]
                poses = np.tile(np.eye(4), (FRAMES, 1, 1))
                poses[:, :3, 3] = np.einsum("fij,j->fi", c2w[:, :3, :3], cam) + c2w[:, :3, 3]
                file[f"transforms/{name}"] = poses
                file[f"confidences/{name}"] = np.full(FRAMES, 0.5 + 0.01 * s)
        if skip_key:
            del file[skip_key]
    return path


def expected_pixels() -> np.ndarray:
    """[2, 21, 2] pixels from K applied to the camera-frame points (same every frame)."""
    cam = np.array([[keypoint_in_camera(s, k) for k in range(21)] for s in range(2)])
    return np.stack([K[0, 0] * cam[..., 0] / cam[..., 2] + K[0, 2], K[1, 1] * cam[..., 1] / cam[..., 2] + K[1, 2]], -1)


def test_joint_names_25_per_hand_21_openpose():
    names = egodex.hand_joint_names("left")
    assert len(names) == 25 == len(set(names))
    openpose = egodex.openpose_joint_names("right")
    assert len(openpose) == 21 and openpose[0] == "rightHand" and openpose[4] == "rightThumbTip"
    assert openpose[5] == "rightIndexFingerKnuckle" and openpose[20] == "rightLittleFingerTip"


def test_keypoints_project_to_expected_pixels(tmp_path):
    episode = egodex.read_episode(write_episode(tmp_path / "0.hdf5"), image_hw=(HEIGHT, WIDTH))
    assert episode["hand_keypoints"].shape == (FRAMES, 2, 21, 3)
    np.testing.assert_allclose(episode["hand_keypoints_2d"], np.broadcast_to(expected_pixels(), (FRAMES, 2, 21, 2)),
                               atol=1e-3)
    np.testing.assert_allclose(episode["hand_depth"][:, 0, 3], 1.15, atol=1e-5)
    np.testing.assert_allclose(episode["hand_confidences"][:, 1], 0.51, atol=1e-6)
    np.testing.assert_allclose(episode["intrinsics"][0], [40 / WIDTH, 42 / HEIGHT, 30 / WIDTH, 25 / HEIGHT], atol=1e-6)
    np.testing.assert_allclose(episode["c2w"], camera_poses(FRAMES), atol=1e-6)
    assert episode["text"] == "pick up the cube"


def test_arkit_axes_option(tmp_path):
    episode = egodex.read_episode(write_episode(tmp_path / "0.hdf5", camera_sign=-1.0), camera_axes="arkit",
                                  image_hw=(HEIGHT, WIDTH))
    np.testing.assert_allclose(episode["hand_keypoints_2d"][0], expected_pixels(), atol=1e-3)
    plain = egodex.read_episode(tmp_path / "0.hdf5", image_hw=(HEIGHT, WIDTH))
    assert np.all(np.isnan(plain["hand_keypoints_2d"]))  # behind an OpenCV camera


def test_with_video_and_frame_count_check(tmp_path):
    video = np.random.default_rng(0).integers(0, 255, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame_io.write_mp4(tmp_path / "0.mp4", video)
    episode = egodex.read_episode(write_episode(tmp_path / "0.hdf5"), tmp_path / "0.mp4")
    assert episode["video"].shape == (FRAMES, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(episode["video"], video)  # the test writer is lossless
    frame_io.write_mp4(tmp_path / "1.mp4", video[:2])
    with pytest.raises(DataFormatError, match=r"1\.mp4.*2 frames.*0\.hdf5.*3 poses"):
        egodex.read_episode(tmp_path / "0.hdf5", tmp_path / "1.mp4")


@pytest.mark.parametrize("key", ["camera/intrinsic", "transforms/camera", "transforms/leftIndexFingerTip",
                                 "confidences/rightHand"])
def test_missing_key_names_file_and_key(tmp_path, key):
    path = write_episode(tmp_path / "ep.hdf5", skip_key=key)
    with pytest.raises(DataFormatError, match=rf"ep\.hdf5, key '{key}': missing"):
        egodex.read_episode(path)


def test_joint_with_wrong_frame_count(tmp_path):
    path = write_episode(tmp_path / "ep.hdf5")
    with h5py.File(path, "a") as file:
        del file["transforms/rightThumbTip"]
        file["transforms/rightThumbTip"] = np.tile(np.eye(4), (FRAMES + 1, 1, 1))
    with pytest.raises(DataFormatError, match=r"key 'transforms/rightThumbTip': expected poses of shape \[3, 4, 4\]"):
        egodex.read_episode(path)


def test_source_draws_the_pose_video_and_feeds_the_pipeline(tmp_path):
    from worldscape_jax.data.pipeline import PipelineConfig, make_iterator
    from worldscape_jax.data.sources import EgoDexSource

    (tmp_path / "task").mkdir()
    frame_io.write_mp4(tmp_path / "task" / "0.mp4", np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8))
    write_episode(tmp_path / "task" / "0.hdf5")
    source = EgoDexSource.from_folder(tmp_path, frame_hw=(HEIGHT // 2, WIDTH // 2))
    clip = source[0]
    assert clip["video"].shape == clip["pose_video"].shape == (FRAMES, HEIGHT // 2, WIDTH // 2, 3)
    wrist_x, wrist_y = expected_pixels()[0, 0] / 2  # left wrist, at half size
    np.testing.assert_array_equal(clip["pose_video"][:, int(wrist_y), int(wrist_x)], [[0, 0, 255]] * FRAMES)
    np.testing.assert_array_equal(clip["pose_video"][:, -1, 0], 0)  # far from both hands: black
    np.testing.assert_allclose(clip["hand_keypoints_2d"][0], expected_pixels() / 2, atol=1e-3)
    config = PipelineConfig(batch_size=1, num_frames=2, height=16, width=16, with_pose_video=True,
                            process_index=0, process_count=1, read_threads=1, prefetch_batches=1)
    batch = next(make_iterator(source, config))
    assert batch["pose_video"].shape == (1, 2, 16, 16, 3)
    assert batch["pose_video"].min() == -1.0 and batch["pose_video"].max() > 0.0  # black background, a drawn hand


def test_folder_without_videos(tmp_path):
    from worldscape_jax.data.sources import EgoDexSource

    write_episode(tmp_path / "0.hdf5")
    with pytest.raises(DataFormatError, match=r"0\.hdf5: has no video next to it"):
        EgoDexSource.from_folder(tmp_path)
