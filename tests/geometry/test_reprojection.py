"""The turn warp against a per-pixel float64 homography and against rendered SynthWorld turns."""

import numpy as np
import pytest

from worldscape_jax.data.synthworld import generate_clip
from worldscape_jax.geometry.cameras import make_pose
from worldscape_jax.geometry.reprojection import OUTSIDE, turn_warp


def rotation(yaw_deg, pitch_deg=0.0, roll_deg=0.0):
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    ry = np.asarray([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.asarray([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.asarray([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def k_matrix(intr, height, width):
    return np.asarray([[intr[0] * width, 0, intr[2] * width], [0, intr[1] * height, intr[3] * height], [0, 0, 1]])


def reference_warp(image, c2w, intrinsics):
    """Inverse warping pixel by pixel: x_0 ~ K_0 R_0^T R_t K_t^-1 x_t, bilinear in float64."""
    height, width = image.shape[:2]
    out = np.full((len(c2w), height, width, 3), OUTSIDE)
    k0_inv_free = k_matrix(intrinsics[0], height, width)
    for t in range(len(c2w)):
        homography = k0_inv_free @ c2w[0, :3, :3].T @ c2w[t, :3, :3] @ np.linalg.inv(k_matrix(intrinsics[t], height, width))
        for row in range(height):
            for col in range(width):
                p = homography @ np.asarray([col + 0.5, row + 0.5, 1.0])
                if p[2] <= 0:
                    continue
                x, y = p[0] / p[2], p[1] / p[2]
                if not (0 <= x <= width and 0 <= y <= height):
                    continue
                u, v = min(max(x - 0.5, 0), width - 1), min(max(y - 0.5, 0), height - 1)
                c0, r0 = min(int(np.floor(u)), width - 2), min(int(np.floor(v)), height - 2)
                a, b = u - c0, v - r0
                out[t, row, col] = ((1 - a) * (1 - b) * image[r0, c0] + a * (1 - b) * image[r0, c0 + 1]
                                    + (1 - a) * b * image[r0 + 1, c0] + a * b * image[r0 + 1, c0 + 1])
    return out


def test_matches_per_pixel_homography_for_turns_travel_and_changing_intrinsics():
    rng = np.random.default_rng(0)
    height, width = 9, 12
    image = rng.uniform(-1, 1, (height, width, 3))
    start = make_pose(rotation(20, -5, 3), np.asarray([1.0, 0.2, -3.0]))
    steps = [make_pose(rotation(20 + 6 * i, -5 + 2 * i, 3 - i), np.asarray([1.0 + 0.5 * i, 0.2, -3.0 + i]))
             for i in range(1, 4)]
    c2w = np.stack([start, *steps])
    intrinsics = np.asarray([[0.9, 1.2, 0.5, 0.5], [0.95, 1.25, 0.48, 0.52], [0.8, 1.1, 0.5, 0.47],
                             [1.0, 1.3, 0.55, 0.5]])
    got = np.asarray(turn_warp(image[None].astype(np.float32), c2w[None].astype(np.float32),
                               intrinsics[None].astype(np.float32)))[0]
    want = reference_warp(image, c2w, intrinsics)
    assert (want == OUTSIDE).all(-1).any() and not (want == OUTSIDE).all()  # both kinds of pixel are tested
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_no_turn_gives_the_first_frame_whatever_the_travel():
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, (1, 8, 10, 3)).astype(np.float32)
    r = rotation(30, 10)
    c2w = np.stack([make_pose(r, np.asarray([0.0, 0.0, 0.0])), make_pose(r, np.asarray([2.0, -1.0, 5.0]))])
    got = np.asarray(turn_warp(image, c2w[None].astype(np.float32), np.full((1, 2, 4), 0.7, np.float32)))
    np.testing.assert_allclose(got, np.repeat(image[:, None], 2, axis=1), atol=1e-5)


def test_turn_of_180_degrees_sees_nothing_of_frame_0():
    image = np.zeros((1, 6, 6, 3), np.float32)
    c2w = np.stack([np.eye(4), make_pose(rotation(180), np.zeros(3))])[None].astype(np.float32)
    got = np.asarray(turn_warp(image, c2w, np.full((1, 2, 4), 0.5, np.float32)))
    assert (got[0, 1] == OUTSIDE).all()


@pytest.mark.parametrize("seed", [3, 4])
def test_warp_predicts_rendered_pans(seed):
    """A rendered pure turn is its first frame warped, up to interpolation; the opposite turn is not."""
    clip = generate_clip(seed, 9, 64, 64, trajectory="pan", traj_seed=seed)
    video = clip["video"].astype(np.float32) / 127.5 - 1.0
    relative = np.linalg.inv(clip["c2w"][:1]) @ clip["c2w"]
    opposite = relative.copy()
    opposite[:, :3, :3] = np.swapaxes(relative[:, :3, :3], 1, 2)

    def warp_error(c2w):
        warped = np.asarray(turn_warp(video[None, 0], c2w[None].astype(np.float32), clip["intrinsics"][None]))[0]
        valid = ~(warped == OUTSIDE).all(-1)
        valid[0] = False
        return np.abs(warped - video)[valid].mean(), np.abs(video[:1] - video)[valid].mean(), valid[-1].mean()

    error, still_error, seen = warp_error(clip["c2w"])
    assert seen > 0.5 and error < 0.3 * still_error
    assert error < 0.3 * warp_error(opposite)[0]


@pytest.mark.parametrize("shapes, field", [
    (((2, 8, 8, 3), (2, 3, 4, 4), (2, 3, 3)), "intrinsics"),
    (((2, 8, 8, 3), (1, 3, 4, 4), (1, 3, 4)), "c2w"),
    (((2, 8, 8), (2, 3, 4, 4), (2, 3, 4)), "first_frame"),
])
def test_bad_shapes_name_the_argument(shapes, field):
    args = [np.zeros(s, np.float32) for s in shapes]
    with pytest.raises(ValueError, match=f"turn_warp: {field}"):
        turn_warp(*args)
