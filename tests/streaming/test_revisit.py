"""Revisit paths return where they went, and context coverage against the closed form of a turn in place."""

import numpy as np
import pytest

from worldscape_jax.geometry.actions import yaw_pitch_rotation
from worldscape_jax.geometry.cameras import intrinsics_matrix, make_pose
from worldscape_jax.streaming import revisit


@pytest.mark.parametrize("family", revisit.REVISIT_FAMILIES)
def test_every_revisit_path_comes_back_to_a_view_it_had(family):
    c2w = revisit.revisit_path(family, chunks=12, seed=revisit.heldout_seed(0))
    assert c2w.shape == (1 + 4 * 11, 4, 4)
    first_half, last = c2w[: len(c2w) // 2], c2w[-1]
    position_gap = np.linalg.norm(first_half[:, :3, 3] - last[:3, 3], axis=-1)
    view_gap = np.degrees(np.arccos(np.clip(first_half[:, :3, 2] @ last[:3, 2], -1, 1)))
    if family == "loop":  # back at an earlier waypoint, maybe facing elsewhere
        assert np.min(position_gap) < 0.05
    else:  # back at an earlier pose
        assert np.min(position_gap + 0.01 * view_gap) < 0.05
    if family in ("reversed_orbit", "there_and_back"):
        np.testing.assert_allclose(c2w, c2w[::-1], atol=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        revisit.revisit_path("spiral", 12, 0)


def closed_form_turn_coverage(yaw: float, intrinsics: np.ndarray, size: int) -> float:
    """Fraction of pixels whose ray, seen from the same centre turned by `yaw`, lands inside the image."""
    k = intrinsics_matrix(intrinsics, size, size)
    rows, cols = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    rays = np.stack([cols, rows, np.ones_like(cols)], -1) @ np.linalg.inv(k).T
    turned = rays @ yaw_pitch_rotation(np.asarray(yaw), np.asarray(0.0))  # R^T d: into the turned camera
    uv = (turned @ k.T)[..., :2] / turned[..., 2:]
    inside = (turned[..., 2] > 0) & np.all((uv >= 0) & (uv < size), axis=-1)
    return float(inside.mean())


def test_context_coverage_of_a_turn_in_place_matches_the_closed_form():
    seed, size = revisit.heldout_seed(0), 24
    yaws = np.deg2rad([0.0, 20.0, 50.0, 180.0])
    c2w = make_pose(yaw_pitch_rotation(yaws, np.zeros_like(yaws)), np.zeros((4, 3))).astype(np.float32)
    clip = revisit.render_clip(seed, c2w, size, size)
    depth, intrinsics = clip["depth"], clip["intrinsics"]
    assert revisit.context_coverage(depth, c2w, intrinsics, 0, [0]) == 1.0
    for j in (1, 2, 3):
        got = revisit.context_coverage(depth, c2w, intrinsics, 0, [j])
        np.testing.assert_allclose(got, closed_form_turn_coverage(yaws[j], intrinsics[0], size), atol=0.03)
    both = revisit.context_coverage(depth, c2w, intrinsics, 0, [2, 3])
    assert both == revisit.context_coverage(depth, c2w, intrinsics, 0, [2])  # the back view adds nothing
