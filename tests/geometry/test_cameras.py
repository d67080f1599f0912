"""Camera utilities against closed forms and independent numpy references."""

import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.geometry import cameras


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_poses(rng, n):
    poses = np.tile(np.eye(4), (n, 1, 1))
    for pose in poses:
        pose[:3, :3] = random_rotation(rng)
        pose[:3, 3] = rng.normal(size=3) * 3
    return poses.astype(np.float32)


def project(point_cam, k):
    uvw = k @ point_cam
    return uvw[:2] / uvw[2]


@pytest.mark.parametrize("as_jax", [False, True])
def test_invert_pose_matches_matrix_inverse(as_jax):
    poses = random_poses(np.random.default_rng(0), 5)
    arg = jnp.asarray(poses) if as_jax else poses
    inverted = cameras.invert_pose(arg)
    assert isinstance(inverted, np.ndarray) != as_jax
    np.testing.assert_allclose(np.asarray(inverted), np.linalg.inv(poses.astype(np.float64)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(cameras.w2c_to_c2w(cameras.c2w_to_w2c(arg))), poses, atol=1e-5)


def test_relative_to_first_is_identity_at_frame_zero_and_matches_reference():
    poses = random_poses(np.random.default_rng(1), 4)
    rel = cameras.relative_to_first(poses)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-5)
    for i in range(4):
        np.testing.assert_allclose(rel[i], np.linalg.inv(poses[0]) @ poses[i], atol=1e-5)


def test_relative_poses_ignore_a_global_rigid_motion():
    rng = np.random.default_rng(2)
    poses = random_poses(rng, 4)
    world_motion = random_poses(rng, 1)[0]
    moved = world_motion[None] @ poses
    np.testing.assert_allclose(cameras.relative_to_first(moved), cameras.relative_to_first(poses), atol=1e-4)


def test_pixel_intrinsics_round_trip_and_matrix():
    intr = np.asarray([0.9, 1.2, 0.5, 0.45], np.float32)
    pix = cameras.intrinsics_to_pixels(intr, 48, 64)
    np.testing.assert_allclose(pix, [0.9 * 64, 1.2 * 48, 32, 0.45 * 48], rtol=1e-6)
    np.testing.assert_allclose(cameras.intrinsics_to_normalised(pix, 48, 64), intr, rtol=1e-6)
    k = cameras.intrinsics_matrix(intr, 48, 64)
    point = np.asarray([0.3, -0.2, 2.0])
    expected = [pix[0] * 0.3 / 2 + pix[2], pix[1] * -0.2 / 2 + pix[3]]
    np.testing.assert_allclose(project(point, k), expected, rtol=1e-5)


def test_resize_keeps_projection_consistent():
    intr = np.asarray([0.8, 1.1, 0.52, 0.47], np.float32)
    point = np.asarray([0.4, 0.1, 3.0])
    src, dst = (40, 60), (100, 90)
    new = cameras.resize_intrinsics(intr, src, dst)
    uv_src = project(point, cameras.intrinsics_matrix(intr, *src))
    uv_dst = project(point, cameras.intrinsics_matrix(new, *dst))
    np.testing.assert_allclose(uv_dst, uv_src * np.asarray([dst[1] / src[1], dst[0] / src[0]]), rtol=1e-5)
    with pytest.raises(ValueError, match="dst_hw"):
        cameras.resize_intrinsics(intr, src, (0, 5))


def test_crop_shifts_the_projection_by_the_crop_origin():
    intr = np.asarray([0.8, 1.1, 0.52, 0.47], np.float32)
    point = np.asarray([-0.3, 0.2, 2.5])
    new = cameras.crop_intrinsics(intr, (64, 96), top=5, left=17, crop_hw=(40, 50))
    uv = project(point, cameras.intrinsics_matrix(intr, 64, 96))
    uv_crop = project(point, cameras.intrinsics_matrix(new, 40, 50))
    np.testing.assert_allclose(uv_crop, uv - np.asarray([17, 5]), rtol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        cameras.crop_intrinsics(intr, (64, 96), top=30, left=0, crop_hw=(40, 50))


def test_fov_intrinsics_put_the_image_edge_at_half_the_fov():
    intr = cameras.intrinsics_from_fov(70.0, 48, 64)
    fx, fy, cx, _ = cameras.intrinsics_to_pixels(intr, 48, 64)
    np.testing.assert_allclose(np.rad2deg(np.arctan((64 - cx) / fx)), 35.0, rtol=1e-5)
    np.testing.assert_allclose(fx, fy, rtol=1e-6)


@pytest.mark.parametrize("as_jax", [False, True])
def test_look_at_points_the_optical_axis_at_the_target_and_keeps_the_image_upright(as_jax):
    eye, target = np.asarray([1.0, -0.5, -2.0]), np.asarray([0.2, 0.3, 1.5])
    pose = cameras.look_at(jnp.asarray(eye) if as_jax else eye, target)
    pose = np.asarray(pose)
    cameras.validate_c2w(pose)
    in_camera = np.linalg.inv(pose) @ np.append(target, 1.0)
    np.testing.assert_allclose(in_camera[:2], 0.0, atol=1e-5)
    assert in_camera[2] > 0
    above_target = np.linalg.inv(pose) @ np.append(target + [0, -1.0, 0], 1.0)  # world up is -y
    assert above_target[1] < 0  # appears above the image centre (image y points down)
    assert abs(above_target[0]) < 1e-5  # no roll


def test_look_at_rejects_up_parallel_to_view():
    with pytest.raises(ValueError, match="parallel"):
        cameras.look_at(np.zeros(3), np.asarray([0.0, 2.0, 0.0]))


def test_validate_c2w_names_field_and_frame():
    poses = random_poses(np.random.default_rng(3), 4)
    cameras.validate_c2w(poses)
    scaled = poses.copy()
    scaled[2, :3, :3] *= 1.1
    with pytest.raises(ValueError, match=r"my_poses\[frame 2\].*orthonormal"):
        cameras.validate_c2w(scaled, field="my_poses")
    flipped = poses.copy()
    flipped[1, :3, 0] *= -1
    with pytest.raises(ValueError, match=r"c2w\[frame 1\].*det"):
        cameras.validate_c2w(flipped)
    bad_row = poses.copy()
    bad_row[3, 3, 3] = 2.0
    with pytest.raises(ValueError, match=r"frame 3.*last row"):
        cameras.validate_c2w(bad_row)
    with pytest.raises(ValueError, match="shape"):
        cameras.validate_c2w(np.zeros((3, 3)))


def test_validate_intrinsics():
    cameras.validate_intrinsics(np.asarray([[0.8, 1.0, 0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"K\[frame 1\]"):
        cameras.validate_intrinsics(np.asarray([[0.8, 1.0, 0.5, 0.5], [0.0, 1.0, 0.5, 0.5]]), field="K")
