"""SynthWorld renderer and clips against geometry computed independently in the test."""

import numpy as np
import pytest

from worldscape_jax.data.synthworld import clips, generate_clip, render_frames, split_of
from worldscape_jax.data.synthworld.scenes import SceneBuilder, navigation_scene
from worldscape_jax.geometry.actions import yaw_pitch_rotation
from worldscape_jax.geometry.cameras import intrinsics_from_fov, make_pose
from worldscape_jax.geometry.plucker import plucker_rays

H, W = 12, 16


def single_plane_scene(normal, offset):
    builder = SceneBuilder(np.random.default_rng(0))
    builder.add_plane(normal, offset)
    return builder.build()


def test_depth_of_a_fronto_parallel_plane_is_its_distance_everywhere():
    scene = single_plane_scene([0, 0, 1], 5.0)
    intr = intrinsics_from_fov(80.0, H, W)[None]
    out = render_frames(scene, np.eye(4, dtype=np.float32)[None], intr, H, W)
    np.testing.assert_allclose(np.asarray(out.depth), 5.0, rtol=1e-6)
    assert np.all(np.asarray(out.primitive) == 0)


def test_depth_of_the_floor_seen_by_a_pitched_camera_matches_the_closed_form():
    floor_y, pitch = 1.5, np.deg2rad(-30.0)  # looking 30 degrees down
    scene = single_plane_scene([0, 1, 0], floor_y)
    c2w = make_pose(yaw_pitch_rotation(0.3, pitch), np.asarray([0.2, 0.0, -0.4])).astype(np.float32)
    intr = np.asarray([0.7, 0.9, 0.5, 0.5], np.float32)
    depth = np.asarray(render_frames(scene, c2w[None], intr[None], H, W).depth[0])
    for row, col in [(H - 1, 0), (H // 2, W // 2), (H - 1, W - 1), (3, 7)]:
        d_cam = np.asarray([(col + 0.5 - 0.5 * W) / (0.7 * W), (row + 0.5 - 0.5 * H) / (0.9 * H), 1.0])
        d_world = c2w[:3, :3].astype(np.float64) @ d_cam  # un-normalised: its camera z is 1
        t = (floor_y - c2w[1, 3]) / d_world[1]
        expected = t if t > 0 else 0.0  # rays that miss the floor report 0
        np.testing.assert_allclose(depth[row, col], expected, rtol=1e-5, atol=1e-6)


def primitive_distance(scene, index, point):
    """Unsigned distance from `point` to the surface of primitive `index` (numpy reference)."""
    planes, boxes, spheres, _ = scene.counts
    s = {k: np.asarray(v, np.float64) for k, v in vars(scene).items()}
    if index < planes:
        return abs(s["plane_normal"][index] @ point - s["plane_offset"][index])
    index -= planes
    if index < boxes:
        q = np.abs(point - s["box_center"][index]) - s["box_half"][index]
        return abs(np.linalg.norm(np.maximum(q, 0)) + min(q.max(), 0.0))
    index -= boxes
    if index < spheres:
        return abs(np.linalg.norm(point - s["sphere_center"][index]) - s["sphere_radius"][index])
    index -= spheres
    a, b = s["capsule_a"][index], s["capsule_b"][index]
    h = np.clip((point - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
    return abs(np.linalg.norm(point - a - h * (b - a)) - s["capsule_radius"][index])


@pytest.mark.parametrize("seed", [0, 1])
def test_the_plucker_ray_of_a_pixel_hits_the_surface_point_the_renderer_drew(seed):
    scene = navigation_scene(seed)
    c2w = clips.family_path("random_walk", 3, 5, clips.start_pose(2))
    intr = np.tile(intrinsics_from_fov(70.0, H, W), (3, 1))
    out = render_frames(scene, c2w, intr, H, W)
    rays = np.asarray(plucker_rays(c2w, intr, H, W), np.float64)
    depth, primitive = np.asarray(out.depth, np.float64), np.asarray(out.primitive)
    for f in range(3):
        origin = c2w[f, :3, 3].astype(np.float64)
        for row in range(0, H, 3):
            for col in range(0, W, 3):
                moment, direction = rays[f, row, col, :3], rays[f, row, col, 3:]
                np.testing.assert_allclose(np.cross(origin, direction), moment, atol=1e-4)
                distance = depth[f, row, col] / (direction @ c2w[f, :3, 2])  # z-depth -> along the ray
                point = origin + distance * direction
                assert primitive[f, row, col] >= 0
                gap = primitive_distance(scene, primitive[f, row, col], point)
                assert gap < 1e-3 * max(1.0, distance), (f, row, col, gap)


def test_clips_are_deterministic_by_seed_and_differ_across_seeds():
    a = generate_clip(4, 5, H, W, trajectory="random_walk", traj_seed=1)
    b = generate_clip(4, 5, H, W, trajectory="random_walk", traj_seed=1)
    c = generate_clip(6, 5, H, W, trajectory="random_walk", traj_seed=1)
    assert set(a) == {"video", "depth", "c2w", "intrinsics", "scene_seed"}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["video"], c["video"])
    assert a["video"].dtype == np.uint8 and a["video"].shape == (5, H, W, 3)
    assert a["depth"].dtype == np.float32 and a["c2w"].dtype == np.float32 and a["scene_seed"].dtype == np.int64
    assert np.all(a["depth"] > 0)


def test_split_is_fixed_and_about_one_in_ten():
    splits = [split_of(seed) for seed in range(2000)]
    assert set(splits) == {"train", "heldout"}
    assert 0.07 < splits.count("heldout") / 2000 < 0.13
    assert [split_of(seed) for seed in range(50)] == splits[:50]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="num_frames"):
        generate_clip(0, 0, H, W)
    with pytest.raises(ValueError, match="kind"):
        generate_clip(0, 3, H, W, kind="flying")
    with pytest.raises(ValueError, match="gives 9 frames"):
        generate_clip(0, 5, H, W, trajectory="w*2")
    with pytest.raises(ValueError, match="unknown key"):
        generate_clip(0, 5, H, W, trajectory="z")


def test_render_frame_vmaps_to_the_same_result_as_render_frames():
    import jax

    from worldscape_jax.data.synthworld.render import render_frame

    scene = navigation_scene(1)
    c2w = clips.family_path("orbit", 3, 0, clips.start_pose(0))
    intr = np.tile(intrinsics_from_fov(70.0, H, W), (3, 1))
    mapped = render_frames(scene, c2w, intr, H, W)
    vmapped = jax.vmap(render_frame, in_axes=(None, 0, 0, None, None))(scene, c2w, intr, H, W)
    # Two compiled programs (lax.map under jit vs vmap) may fuse and reassociate float32 shading
    # differently: jax 0.12.0.1 differs by 1.6e-5 at one pixel. A wrong axis would differ by ~0.1.
    np.testing.assert_allclose(np.asarray(vmapped.rgb), np.asarray(mapped.rgb), atol=1e-4)
    np.testing.assert_allclose(np.asarray(vmapped.depth), np.asarray(mapped.depth), rtol=1e-5)


def test_every_surface_is_textured_so_motion_shows():
    """Each primitive that fills several pixels shows more than one colour (a pattern, not a flat fill)."""
    scene = navigation_scene(0)
    c2w = clips.family_path("pan", 24, 0, clips.start_pose(0))
    intr = np.tile(intrinsics_from_fov(70.0, 48, 48), (24, 1))
    out = render_frames(scene, c2w[::6], intr[::6], 48, 48)
    rgb, primitive = np.asarray(out.rgb), np.asarray(out.primitive)
    checked = 0
    for index in np.unique(primitive):
        pixels = rgb[primitive == index]
        if len(pixels) >= 200:
            checked += 1
            assert len(np.unique(np.round(pixels, 3), axis=0)) >= 2, f"primitive {index} renders flat"
    assert checked >= 4


@pytest.mark.parametrize("seed", range(6))
def test_texture_colours_differ_enough_to_show_motion(seed):
    from worldscape_jax.data.synthworld.scenes import MIN_CONTRAST

    scene = navigation_scene(seed)
    luma = np.asarray([0.299, 0.587, 0.114])
    contrast = np.abs((np.asarray(scene.color_a) - np.asarray(scene.color_b)) @ luma)[np.asarray(scene.active)]
    assert contrast.min() >= MIN_CONTRAST - 1e-6


def test_synthworld_random_walk_moves_at_the_pace_of_the_other_families():
    from worldscape_jax.geometry import trajectories
    for traj_seed in range(4):
        c2w = clips.family_path("random_walk", 9, traj_seed, clips.start_pose(traj_seed)).astype(np.float64)
        rel = np.linalg.inv(c2w[:-1]) @ c2w[1:]
        angles = np.arccos(np.clip((np.trace(rel[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1))
        effort = np.linalg.norm(rel[:, :3, 3], axis=-1) / trajectories.STEP + angles / trajectories.TURN
        assert effort.max() <= 1.0 + 1e-3, effort  # STEP or TURN per frame, as forward and pan move


def test_synthworld_keys_family_is_a_random_key_sequence_inside_the_free_disc():
    from worldscape_jax.geometry.actions import ActionConfig, actions_to_c2w, random_actions
    for traj_seed in range(12):
        start = clips.start_pose(traj_seed)
        c2w = clips.family_path("keys", 33, traj_seed, start)
        expected = actions_to_c2w(random_actions(8, traj_seed, max_distance=clips.FREE_RADIUS - 0.25), ActionConfig(),
                                  start)
        np.testing.assert_allclose(c2w, expected, atol=1e-6)
        assert np.linalg.norm(c2w[:, :3, 3] - start[:3, 3], axis=-1).max() <= clips.FREE_RADIUS - 0.25 + 1e-5
    assert "keys" in clips.FAMILIES and "keys" not in clips.NAVIGATION_FAMILIES  # the mixed evaluation set stays navigation
    with pytest.raises(ValueError, match="1 \\+ 4 \\* steps"):
        clips.family_path("keys", 10, 0, clips.start_pose(0))
