"""Keyboard actions and trajectory families: parsing, sign conventions, closed forms, properties."""

import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.geometry import trajectories
from worldscape_jax.geometry.actions import (HELD_KEY_ORDER, KEYS, Action, ActionConfig, actions_to_c2w,
                                              advance_heading, held_keys_deltas, num_frames_of, parse_actions,
                                              random_actions)
from worldscape_jax.geometry.cameras import validate_c2w

STEP_DEG = np.deg2rad(3.0)


def forward_of(c2w):
    return c2w[..., :3, 2]


def test_parse_action_strings():
    assert parse_actions("w*8,q*4,wd*6") == [Action("w", 8), Action("q", 4), Action("wd", 6)]
    assert parse_actions(" W*2 , e") == [Action("w", 2), Action("e", 1)]
    assert num_frames_of("w*8,q*4") == 1 + 12 * 4


@pytest.mark.parametrize("text, message", [
    ("w*2,x", r"item 1 \('x'\).*unknown key"),
    ("ws", "opposite keys 'w' and 's'"),
    ("qe*3", "opposite keys 'q' and 'e'"),
    ("ww", "repeated"),
    ("w*0", "count must be >= 1"),
    ("w**2", "item 0.*expected keys"),
    ("w*2,", r"item 1 \(''\)"),
    ("", "non-empty"),
    (".w", "cannot be combined"),
])
def test_bad_action_strings_name_the_item_and_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_actions(text)


def test_w_a_s_d_translate_in_the_camera_frame():
    for keys, expected in (("w", [0, 0, 0.08]), ("s", [0, 0, -0.08]), ("d", [0.08, 0, 0]), ("a", [-0.08, 0, 0]),
                           ("wd", [0.08, 0, 0.08])):
        path = actions_to_c2w(keys)
        assert path.shape == (5, 4, 4)
        np.testing.assert_allclose(path[-1, :3, 3], expected, atol=1e-7)
        np.testing.assert_allclose(path[-1, :3, :3], np.eye(3), atol=1e-7)
        np.testing.assert_allclose(np.diff(path[:, :3, 3], axis=0), np.tile(np.asarray(expected) / 4, (4, 1)), atol=1e-7)


def test_yaw_and_pitch_signs_follow_the_documented_convention():
    # Q turns the optical axis from +z towards -x (left), E towards +x; R towards -y (up), F towards +y.
    s, c = np.sin(STEP_DEG), np.cos(STEP_DEG)
    np.testing.assert_allclose(forward_of(actions_to_c2w("q")[-1]), [-s, 0, c], atol=1e-6)
    np.testing.assert_allclose(forward_of(actions_to_c2w("e")[-1]), [s, 0, c], atol=1e-6)
    np.testing.assert_allclose(forward_of(actions_to_c2w("r")[-1]), [0, -s, c], atol=1e-6)
    np.testing.assert_allclose(forward_of(actions_to_c2w("f")[-1]), [0, s, c], atol=1e-6)
    np.testing.assert_allclose(actions_to_c2w("q*30")[-1, :3, 2], [-1, 0, 0], atol=1e-6)  # 90 degrees left
    # after turning left 90 degrees, W walks along world -x
    turned_then_walk = actions_to_c2w("q*30,w*5")
    np.testing.assert_allclose(turned_then_walk[-1, :3, 3], [-0.4, 0, 0], atol=1e-6)


def test_walking_while_turning_matches_the_closed_form_arc():
    path = actions_to_c2w("wq*3")
    n = np.arange(12)
    theta = STEP_DEG / 4  # per frame
    # each frame moves 0.02 along the current heading, then turns
    expected = np.cumsum(0.02 * np.stack([-np.sin(n * theta), np.zeros(12), np.cos(n * theta)], -1), axis=0)
    np.testing.assert_allclose(path[1:, :3, 3], expected, atol=1e-6)


def test_yaw_after_pitch_adds_no_roll_and_poses_are_valid():
    path = actions_to_c2w("r*10,q*10,f*3,e*20")
    validate_c2w(path)
    np.testing.assert_allclose(path[:, 1, 0], 0.0, atol=1e-6)  # the camera x axis stays horizontal


def test_step_sizes_come_from_the_config():
    config = ActionConfig(translation_per_step=0.5, rotation_deg_per_step=10.0, frames_per_step=2)
    path = actions_to_c2w("w*2,e", config)
    assert path.shape == (1 + 3 * 2, 4, 4)
    np.testing.assert_allclose(path[4, :3, 3], [0, 0, 1.0], atol=1e-6)
    np.testing.assert_allclose(forward_of(path[-1]), [np.sin(np.deg2rad(10)), 0, np.cos(np.deg2rad(10))], atol=1e-6)
    with pytest.raises(ValueError, match="frames_per_step"):
        ActionConfig(frames_per_step=0)


def test_start_pose_is_respected():
    start = actions_to_c2w("q*10,w*3")[-1]
    path = actions_to_c2w("w*2", start_c2w=start)
    np.testing.assert_allclose(path[0], start, atol=1e-6)
    np.testing.assert_allclose(path[-1, :3, 3] - start[:3, 3], 0.16 * forward_of(start), atol=1e-6)


def test_forward_walk_and_pan():
    walk = trajectories.forward_walk(9, step=0.1)
    np.testing.assert_allclose(walk[:, 2, 3], np.arange(9) * 0.1, atol=1e-6)
    panned = trajectories.pan(5, degrees_per_frame=-10.0)  # negative = right
    np.testing.assert_allclose(forward_of(panned[-1]), [np.sin(np.deg2rad(40)), 0, np.cos(np.deg2rad(40))], atol=1e-6)
    np.testing.assert_allclose(panned[:, :3, 3], 0.0, atol=1e-7)


def test_orbit_keeps_its_radius_and_looks_at_the_centre():
    centre = np.asarray([0.5, 0.2, -1.0])
    path = trajectories.orbit(13, center=centre, radius=2.0, degrees=120.0)
    validate_c2w(path)
    offsets = path[:, :3, 3] - centre
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=-1), 2.0, atol=1e-5)
    np.testing.assert_allclose(forward_of(path), -offsets / 2.0, atol=1e-5)
    np.testing.assert_allclose(offsets[:, 1], 0.0, atol=1e-6)
    assert path[1, 0, 3] > path[0, 0, 3]  # starts moving to the camera's right (+x at angle 0)


@pytest.mark.parametrize("num_frames", [1, 8, 9])
def test_there_and_back_is_mirrored(num_frames):
    outbound = actions_to_c2w("wq*3")
    path = trajectories.there_and_back(outbound, num_frames)
    assert len(path) == num_frames
    np.testing.assert_array_equal(path, path[::-1])
    np.testing.assert_array_equal(path[: (num_frames + 1) // 2], outbound[: (num_frames + 1) // 2])
    with pytest.raises(ValueError, match="needs >= "):
        trajectories.there_and_back(outbound[:2], 9)


def test_random_walk_is_deterministic_stays_in_the_disc_and_revisits_places():
    path = trajectories.random_walk(200, seed=3, radius=1.0)
    assert path.shape == (200, 4, 4)
    validate_c2w(path)
    np.testing.assert_array_equal(path, trajectories.random_walk(200, seed=3, radius=1.0))
    assert not np.array_equal(path, trajectories.random_walk(200, seed=4, radius=1.0))
    positions = path[:, :3, 3]
    assert np.linalg.norm(positions[:, [0, 2]], axis=-1).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(positions[:, 1], 0.0, atol=1e-7)
    # a revisit: two frames far apart in time at (almost) the same place, having left it in between
    revisits = 0
    for i in range(0, 200, 5):
        for j in range(i + 40, 200, 5):
            between = np.linalg.norm(positions[i:j] - positions[i], axis=-1).max()
            revisits += np.linalg.norm(positions[j] - positions[i]) < 0.03 and between > 0.5
    assert revisits > 0


def _per_frame_motion(path):
    """Rotation (radians) and translation between consecutive c2w poses."""
    rel = np.linalg.inv(path[:-1].astype(np.float64)) @ path[1:].astype(np.float64)
    angles = np.arccos(np.clip((np.trace(rel[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1))
    return angles, np.linalg.norm(rel[:, :3, 3], axis=-1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_random_walk_at_key_speed_moves_like_held_keys_and_starts_like_the_whole_tour(seed):
    paced = trajectories.random_walk(9, seed, radius=1.0, key_speed=True)
    angles, steps = _per_frame_motion(paced)
    # each frame walks at most STEP or turns at most TURN (a frame where a turn ends may do a part of each)
    assert np.all(steps / trajectories.STEP + angles / trajectories.TURN <= 1.0 + 1e-3), (angles, steps)  # float32 poses
    assert angles.sum() + steps.sum() > 0  # it does move
    whole_angles, whole_steps = _per_frame_motion(trajectories.random_walk(9, seed, radius=1.0))
    assert (whole_steps / trajectories.STEP + whole_angles / trajectories.TURN).max() > 4.0  # squeezed: faster
    # a clip long enough for the whole tour ends where the tour ends
    long = trajectories.random_walk(20000, seed, radius=1.0, key_speed=True)
    end = trajectories.random_walk(2, seed, radius=1.0)[-1]
    np.testing.assert_allclose(long[-1], end, atol=1e-5)


def test_families_reject_bad_frame_counts():
    with pytest.raises(ValueError, match="num_frames"):
        trajectories.forward_walk(0)
    with pytest.raises(ValueError, match="radius"):
        trajectories.orbit(4, radius=0.0)


def test_random_actions_are_seeded_parse_and_press_every_key():
    assert random_actions(12, 3) == random_actions(12, 3) != random_actions(12, 4)
    pressed = set()
    for seed in range(60):
        text = random_actions(6, seed)
        assert sum(action.steps for action in parse_actions(text)) == 6  # parse_actions rejects bad combos
        pressed |= set(text.replace(",", ""))
    assert pressed == set(KEYS)  # every key, "." (idle) included


def test_random_actions_hold_keys_with_the_given_probability():
    held = random_actions(10, 0, hold_probability=1.0).split(",")
    assert held == held[:1] * 10
    steps = [random_actions(400, seed, hold_probability=0.0).split(",") for seed in range(3)]
    repeats = np.mean([a == b for items in steps for a, b in zip(items, items[1:])])
    assert repeats < 0.15  # independent draws repeat by chance only (1 in ~21 for 25 move x turn pairs)


def test_random_actions_stay_within_distance_and_pitch_limits():
    config = ActionConfig()
    for seed in range(20):
        text = random_actions(30, seed, max_distance=0.25, max_pitch_deg=6.0, hold_probability=0.8)
        c2w = actions_to_c2w(text, config)
        assert np.linalg.norm(c2w[:, :3, 3], axis=-1).max() <= 0.25 + 1e-6, text
        pitch_steps = np.cumsum([("r" in item) - ("f" in item) for item in text.split(",")])
        assert np.abs(pitch_steps).max() <= 2, text
    with pytest.raises(ValueError, match="num_steps"):
        random_actions(0, 0)


def test_held_keys_stream_follows_the_action_string_path():
    """Keys held step by step (the streaming form, in jax) trace the path `actions_to_c2w` integrates in
    float64; opposite keys held together cancel."""
    steps = ["wq", "d", "er", "wf", "s", "aq", ".", "w"]
    expected = actions_to_c2w(",".join(steps))
    position, yaw, pitch = jnp.zeros((1, 3)), jnp.zeros(1), jnp.zeros(1)
    poses = []
    for keys in steps:
        held = jnp.asarray([[k in keys for k in HELD_KEY_ORDER]])
        deltas = jnp.repeat(held_keys_deltas(held)[:, None], ActionConfig().frames_per_step, axis=1)
        chunk, position, yaw, pitch = advance_heading(position, yaw, pitch, deltas)
        poses.append(chunk[0])
    np.testing.assert_allclose(np.concatenate(poses), expected[1:], atol=1e-5)
    both = held_keys_deltas(jnp.asarray([[True, False, True, False, True, True, False, False]]))
    np.testing.assert_array_equal(np.asarray(both), 0.0)
