"""The procedural hand, the manipulation clip and the pose video."""

import colorsys

import numpy as np
import pytest

from worldscape_jax.data.synthworld import generate_clip
from worldscape_jax.data.synthworld import hands
from worldscape_jax.data.synthworld.pose_video import HAND_EDGES, draw_hand_poses

H, W = 48, 48


def test_bone_lengths_do_not_change_with_the_curl():
    open_hand = hands.bone_lengths(hands.hand_keypoints_local(0.0))
    for curl in (0.3, 0.55, 1.0):
        np.testing.assert_allclose(hands.bone_lengths(hands.hand_keypoints_local(curl)), open_hand, atol=1e-9)
    # the phalanges are exactly the configured segment lengths
    np.testing.assert_allclose(open_hand[[1, 2, 3]], hands.SEGMENT_LENGTHS[0], atol=1e-12)
    np.testing.assert_allclose(open_hand[[5, 6, 7]], hands.SEGMENT_LENGTHS[1], atol=1e-12)


def test_curling_brings_the_fingertips_towards_the_palm_side():
    open_tips = hands.hand_keypoints_local(0.0)[[8, 12, 16, 20]]
    closed_tips = hands.hand_keypoints_local(0.8)[[8, 12, 16, 20]]
    assert np.all(closed_tips[:, 1] > open_tips[:, 1] + 0.02)  # +y is out of the palm
    assert np.all(closed_tips[:, 0] < open_tips[:, 0])


@pytest.fixture(scope="module")
def clip():
    return generate_clip(3, 17, H, W, kind="manipulation")


def test_manipulation_clip_has_all_keys_with_documented_shapes(clip):
    expected = {"video": ((17, H, W, 3), np.uint8), "depth": ((17, H, W), np.float32),
                "c2w": ((17, 4, 4), np.float32), "intrinsics": ((17, 4), np.float32),
                "scene_seed": ((), np.int64), "hand_keypoints": ((17, 21, 3), np.float32),
                "hand_keypoints_2d": ((17, 21, 2), np.float32), "pose_video": ((17, H, W, 3), np.uint8)}
    assert set(clip) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert clip[key].shape == shape and clip[key].dtype == dtype, key


def test_hand_bone_lengths_are_fixed_through_the_clip(clip):
    lengths = hands.bone_lengths(clip["hand_keypoints"].astype(np.float64))
    np.testing.assert_allclose(lengths, np.broadcast_to(lengths[0], lengths.shape), atol=1e-5)


def test_keypoints_2d_are_the_projection_of_the_world_keypoints(clip):
    for f in (0, 8, 16):
        w2c = np.linalg.inv(clip["c2w"][f].astype(np.float64))
        fx, fy, cx, cy = clip["intrinsics"][f] * np.asarray([W, H, W, H])
        cam = (w2c[:3, :3] @ clip["hand_keypoints"][f].T).T + w2c[:3, 3]
        uv = np.stack([fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy], -1)
        np.testing.assert_allclose(clip["hand_keypoints_2d"][f], uv, atol=1e-3)


def test_the_hand_is_visible_in_the_rgb_render(clip):
    """Pixels around the projected wrist/knuckles, in view, hit a hand capsule: depth there is the hand's."""
    hit_hand = 0
    for f in range(17):
        for k in (0, 5, 9, 13):
            u, v = clip["hand_keypoints_2d"][f, k]
            if 0 <= u < W and 0 <= v < H:
                w2c = np.linalg.inv(clip["c2w"][f].astype(np.float64))
                z = (w2c[:3, :3] @ clip["hand_keypoints"][f, k] + w2c[:3, 3])[2]
                hit_hand += abs(clip["depth"][f, int(v), int(u)] - z) < 0.03  # within the capsule radius
    assert hit_hand >= 20


def test_the_box_moves_with_the_grasp_and_stays_where_it_was_put():
    scene, box_index, _, box_center, rotation, carry = hands.manipulation_scene(3, 0)
    wrist, curl, boxes = hands.grasp_motion(41, box_center, rotation, carry)
    s = np.linspace(0, 1, 41)
    held = (s >= hands.PHASES[2]) & (s <= hands.PHASES[5])
    np.testing.assert_allclose(boxes[s < hands.PHASES[2]], box_center[None].repeat((s < hands.PHASES[2]).sum(), 0))
    offsets = boxes[held] - wrist[held]
    np.testing.assert_allclose(offsets, np.broadcast_to(offsets[0], offsets.shape), atol=1e-9)
    assert boxes[held][:, 1].min() < box_center[1] - 0.05  # lifted (world y is down)
    np.testing.assert_allclose(boxes[-1], box_center + carry, atol=1e-9)  # put down, displaced
    assert curl[held].min() > curl[0] + 0.3  # the fingers are closed while holding


def test_pose_video_uses_the_openpose_palette_on_black(clip):
    pose = clip["pose_video"]
    assert (pose.reshape(-1, 3) == 0).all(axis=1).mean() > 0.5  # mostly black background
    palette = {tuple(np.round(np.asarray(colorsys.hsv_to_rgb(e / 20, 1, 1)) * 255).astype(int)) for e in range(20)}
    palette.add((0, 0, 255))
    colours = {tuple(c) for c in pose.reshape(-1, 3) if c.any()}
    assert colours and colours <= palette


def test_draw_hand_poses_paints_edges_then_keypoints_and_skips_invalid_points():
    keypoints = np.full((1, 21, 2), 5.5, np.float32)
    keypoints[0, 0] = [5.5, 5.5]
    keypoints[0, 1:5] = [[25.5, 5.5]] * 4  # edge 0 (0-1) runs along row 5 from x=5.5 to 25.5
    valid = np.zeros((1, 21), bool)
    valid[0, :2] = True
    image = np.asarray(draw_hand_poses(keypoints, valid, 16, 32, line_width=2.0, point_radius=1.0))
    np.testing.assert_array_equal(image[0, 5, 15], [255, 0, 0])      # edge 0: HSV(0) = red
    np.testing.assert_array_equal(image[0, 5, 5], [0, 0, 255])       # keypoint disc drawn on top
    np.testing.assert_array_equal(image[0, 12, 15], [0, 0, 0])       # away from the skeleton
    assert (image[0, :, 27:] == 0).all()  # invalid points 2..4 draw no edges beyond x = 25.5 + 1
    with pytest.raises(ValueError, match="21, 2"):
        draw_hand_poses(np.zeros((1, 20, 2)), None, 8, 8)
    assert len(HAND_EDGES) == 20
