"""SynthWorld anti-aliasing: edges land where the closed form puts them, depth stays the centre ray's."""

import numpy as np
import pytest

from worldscape_jax.data.synthworld import RENDER_VERSION, clips, generate_clip, render_frames
from worldscape_jax.data.synthworld.scenes import SceneBuilder, navigation_scene
from worldscape_jax.data.synthworld.supersampling import subpixel_offsets
from worldscape_jax.geometry.cameras import intrinsics_from_fov, make_pose

PLANE_Z, DARK, BRIGHT, CHECKER_FREQUENCY = 5.0, 0.2, 0.8, 0.1
H, W = 6, 24


def edge_scene():
    """An unlit checker wall at z = PLANE_Z: dark for world x < 0, bright for 0 <= x < 10 (at -10 < y < 0)."""
    builder = SceneBuilder(np.random.default_rng(0))
    builder.add_plane([0, 0, 1], PLANE_Z, color=[DARK] * 3, color_b=[BRIGHT] * 3, texture="checker",
                      frequency=CHECKER_FREQUENCY, emissive=True)
    return builder.build()


def sliding_cameras(true_edge_columns, intrinsics):
    """Cameras looking at the wall from y = -2, shifted in x so the edge x = 0 falls at the given image u."""
    fx_px, cx_px = intrinsics[0] * W, intrinsics[2] * W
    shifts = -(np.asarray(true_edge_columns) - cx_px) * PLANE_Z / fx_px  # u = cx + fx (0 - x_cam) / z
    return np.stack([make_pose(np.eye(3), np.asarray([x, -2.0, 0.0])) for x in shifts]).astype(np.float32)


def edge_position_errors(supersample):
    """|estimated - true| edge column (pixels) over a sweep of sub-pixel edge positions."""
    intrinsics = intrinsics_from_fov(70.0, H, W)
    true_u = 10.0 + np.linspace(0.0, 2.0, 41)
    c2w = sliding_cameras(true_u, intrinsics)
    rgb = np.asarray(render_frames(edge_scene(), c2w, np.tile(intrinsics, (len(c2w), 1)), H, W, supersample).rgb)
    brightness = (rgb[..., 0].astype(np.float64) - DARK) / (BRIGHT - DARK)  # 0 left of the edge, 1 right
    # a box-filtered pixel is the covered fraction, so a row's sum counts the pixels right of the edge
    estimated_u = W - brightness.sum(axis=2)
    return np.abs(estimated_u - true_u[:, None])


def test_antialiased_edges_sit_at_their_true_subpixel_position_where_point_sampling_jumps():
    point_sampled = edge_position_errors(1)
    antialiased = edge_position_errors(9)
    assert point_sampled.max() > 0.4  # one ray per pixel: the edge moves in whole pixels
    assert antialiased.max() < 0.5 / 9 + 0.01  # nine rays with distinct x: to 1/9 pixel
    # frame-to-frame jitter: the edge's estimated motion between frames follows the true motion
    assert np.abs(np.diff(antialiased, axis=0)).max() < 1 / 9 + 0.01


def test_antialiasing_approaches_a_dense_reference_and_keeps_the_centre_ray_depth():
    scene = navigation_scene(2)
    c2w = clips.family_path("orbit", 3, 1, clips.start_pose(1))
    intr = np.tile(intrinsics_from_fov(70.0, 16, 16), (3, 1))
    frames = {n: render_frames(scene, c2w, intr, 16, 16, n) for n in (1, 9, 25)}
    error = {n: np.abs(np.asarray(frames[n].rgb) - np.asarray(frames[25].rgb)).mean() for n in (1, 9)}
    assert error[9] < 0.5 * error[1], error
    for n in (9, 25):
        np.testing.assert_allclose(np.asarray(frames[n].depth), np.asarray(frames[1].depth), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(frames[n].primitive), np.asarray(frames[1].primitive))


@pytest.mark.parametrize("n", [1, 2, 5, 8, 9, 13])
def test_subpixel_offsets_are_n_rooks_inside_the_pixel_and_centred(n):
    offsets = subpixel_offsets(n)
    assert offsets.shape == (n, 2)
    assert np.all(np.abs(offsets) < 0.5)
    for axis in range(2):  # every sample on its own column and row, spaced 1/n apart
        np.testing.assert_allclose(np.diff(np.sort(offsets[:, axis])), 1.0 / n, atol=1e-12)
    np.testing.assert_allclose(offsets.mean(axis=0), 0.0, atol=1e-12)
    assert (n % 2 == 1) == bool(np.any(np.all(offsets == 0.0, axis=1)))  # odd n: the centre ray is a sample


def test_generate_clip_supersample_changes_only_the_video_and_rejects_bad_values():
    plain = generate_clip(5, 3, 12, 12, trajectory="pan", supersample=1)
    smooth = generate_clip(5, 3, 12, 12, trajectory="pan")
    assert not np.array_equal(plain["video"], smooth["video"])
    for key in ("depth", "c2w", "intrinsics"):
        np.testing.assert_allclose(smooth[key], plain[key], rtol=1e-6)
    assert isinstance(RENDER_VERSION, int) and RENDER_VERSION >= 2
    for bad in (0, 2.0, True, "9"):
        with pytest.raises(ValueError, match="supersample"):
            generate_clip(5, 3, 12, 12, supersample=bad)
    with pytest.raises(ValueError, match="supersample"):
        render_frames(navigation_scene(0), plain["c2w"], plain["intrinsics"], 12, 12, -1)
