"""Plücker rays against closed forms written independently in the test."""

import jax
import numpy as np
import pytest

from worldscape_jax.geometry.cameras import make_pose
from worldscape_jax.geometry.plucker import plucker_rays, ray_turn
from worldscape_jax.models.conditioning import camera_input


def reference_ray(c2w, intr, height, width, row, col):
    """CameraCtrl's ray for one pixel, step by step in float64."""
    fx, fy, cx, cy = intr[0] * width, intr[1] * height, intr[2] * width, intr[3] * height
    d_cam = np.asarray([(col + 0.5 - cx) / fx, (row + 0.5 - cy) / fy, 1.0])
    d_cam /= np.linalg.norm(d_cam)
    d = c2w[:3, :3] @ d_cam
    o = c2w[:3, 3]
    return np.concatenate([np.cross(o, d), d])


def rot_y(deg):
    a = np.deg2rad(deg)
    return np.asarray([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


INTR = np.asarray([0.9, 1.3, 0.5, 0.5], np.float32)


def test_identity_pose_gives_zero_moment_and_pinhole_directions():
    rays = np.asarray(plucker_rays(np.eye(4, dtype=np.float32), INTR, 5, 7))
    assert rays.shape == (5, 7, 6)
    np.testing.assert_allclose(rays[..., :3], 0.0, atol=1e-7)
    for row, col in [(0, 0), (2, 3), (4, 6), (1, 5)]:
        x = (col + 0.5 - 0.5 * 7) / (0.9 * 7)
        y = (row + 0.5 - 0.5 * 5) / (1.3 * 5)
        np.testing.assert_allclose(rays[row, col, 3:], np.asarray([x, y, 1.0]) / np.sqrt(x * x + y * y + 1), atol=1e-6)
    np.testing.assert_allclose(rays[2, 3, 3:], [0, 0, 1], atol=1e-7)  # centre pixel of an odd grid


def test_known_translation_gives_moment_t_cross_d():
    t = np.asarray([1.0, -2.0, 0.5])
    rays = np.asarray(plucker_rays(make_pose(np.eye(3, dtype=np.float32), t.astype(np.float32)), INTR, 5, 7))
    np.testing.assert_allclose(rays[..., :3], np.cross(t, rays[..., 3:]), atol=1e-6)
    np.testing.assert_allclose(rays[2, 3], [-2.0 * 1 - 0.5 * 0, 0.5 * 0 - 1.0 * 1, 0, 0, 0, 1], atol=1e-6)


def test_rotation_turns_the_optical_axis():
    pose = make_pose(rot_y(90).astype(np.float32), np.zeros(3, np.float32))
    rays = np.asarray(plucker_rays(pose, INTR, 5, 7))
    np.testing.assert_allclose(rays[2, 3, 3:], [1, 0, 0], atol=1e-6)  # +z turned 90 deg about y is +x


def test_batched_random_poses_match_reference_and_properties():
    rng = np.random.default_rng(0)
    poses, intrs = [], []
    for _ in range(3):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        q = q * np.sign(np.diag(r)) * np.sign(np.linalg.det(q * np.sign(np.diag(r))))
        poses.append(make_pose(q, rng.normal(size=3)))
        intrs.append([rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)])
    poses = np.asarray(poses, np.float32)[None]  # [1, 3, 4, 4]: two leading dims
    intrs = np.asarray(intrs, np.float32)[None]
    rays = np.asarray(plucker_rays(poses, intrs, 6, 8))
    assert rays.shape == (1, 3, 6, 8, 6)
    for f in range(3):
        for row, col in [(0, 0), (5, 7), (3, 2)]:
            np.testing.assert_allclose(rays[0, f, row, col], reference_ray(poses[0, f].astype(np.float64),
                                       intrs[0, f], 6, 8, row, col), atol=2e-5)
    moment, direction = rays[..., :3], rays[..., 3:]
    np.testing.assert_allclose(np.linalg.norm(direction, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.sum(moment * direction, axis=-1), 0.0, atol=1e-5)
    # The moment is a property of the line: any other point on it gives the same o' x d.
    shifted = poses[0, 0, :3, 3] + 2.5 * direction[0, 0]
    np.testing.assert_allclose(np.cross(shifted, direction[0, 0]), moment[0, 0], atol=1e-4)


def test_intrinsics_broadcast_against_poses_and_jit_cache():
    poses = np.tile(np.eye(4, dtype=np.float32), (4, 1, 1))
    poses[:, 0, 3] = np.arange(4)
    rays = plucker_rays(poses, INTR, 4, 4)
    assert rays.shape == (4, 4, 4, 6) and rays.dtype == np.float32
    assert isinstance(rays, jax.Array)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="c2w"):
        plucker_rays(np.eye(3, dtype=np.float32), INTR, 4, 4)
    with pytest.raises(ValueError, match="intrinsics"):
        plucker_rays(np.eye(4, dtype=np.float32), INTR[:3], 4, 4)


def test_ray_turn_is_zero_for_travel_and_the_rotated_minus_pinhole_ray_for_turns():
    travel = make_pose(np.eye(3, dtype=np.float32), np.asarray([0.4, -0.1, 2.0], np.float32))
    np.testing.assert_allclose(np.asarray(ray_turn(travel, INTR, 5, 7)), 0.0, atol=1e-7)
    rotation = rot_y(3.0) @ np.asarray([[1, 0, 0], [0, np.cos(0.02), -np.sin(0.02)], [0, np.sin(0.02), np.cos(0.02)]])
    turn = np.asarray(ray_turn(make_pose(rotation.astype(np.float32), np.ones(3, np.float32)), INTR, 5, 7))
    for row, col in [(0, 0), (2, 3), (4, 6)]:
        d = reference_ray(make_pose(rotation, np.zeros(3)), INTR, 5, 7, row, col)[3:]
        d_cam = reference_ray(np.eye(4), INTR, 5, 7, row, col)[3:]
        np.testing.assert_allclose(turn[row, col], d - d_cam, atol=1e-6)
        # small turn omega: the ray moves by ~ omega x d_cam (first order)
        omega = np.asarray([0.02, np.deg2rad(3.0), 0.0])
        np.testing.assert_allclose(turn[row, col], np.cross(omega, d_cam), atol=2e-3)


def test_camera_input_with_ray_turn_appends_three_channels_per_frame_after_the_plucker_ones():
    angles = np.deg2rad(np.arange(5) * 2.0)
    c2w = np.stack([make_pose(rot_y(np.rad2deg(a)), np.asarray([0.1 * a, 0, a])) for a in angles])[None]
    intr = np.broadcast_to(INTR, (1, 5, 4))
    plain = np.asarray(camera_input(c2w.astype(np.float32), intr, 8, 8, 4))
    turned = np.asarray(camera_input(c2w.astype(np.float32), intr, 8, 8, 4, with_ray_turn=True))
    assert plain.shape == (1, 2, 8, 8, 24) and turned.shape == (1, 2, 8, 8, 36)
    np.testing.assert_array_equal(turned[..., :24], plain)  # channel c * stride + k: Plücker first
    last = np.asarray(ray_turn(c2w[0, -1].astype(np.float32), INTR, 8, 8))
    np.testing.assert_allclose(turned[0, 1, ..., 24 + 3::4], last, atol=1e-6)  # frame 4 is group 1's last


@pytest.mark.parametrize("function", [plucker_rays, ray_turn])
def test_bad_pose_or_intrinsics_shapes_are_named(function):
    with pytest.raises(ValueError, match=rf"{function.__name__}: c2w must be \[..., 4, 4\]"):
        function(np.eye(4, dtype=np.float32)[:3], INTR, 5, 7)
    with pytest.raises(ValueError, match=rf"{function.__name__}: intrinsics must be \[..., 4\]"):
        function(np.eye(4, dtype=np.float32), INTR[:3], 5, 7)
