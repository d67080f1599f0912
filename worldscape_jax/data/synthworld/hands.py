"""Manipulation scenes: a procedural 21-keypoint hand that grasps, lifts, moves and releases a box.

The hand (a right hand) is a kinematic chain with fixed bone lengths, keypoints in OpenPose order:
0 wrist; 1-4 thumb (CMC, MCP, IP, tip); 5-8 index, 9-12 middle, 13-16 ring, 17-20 little finger
(MCP, PIP, DIP, tip). In the hand frame x points along the fingers, y out of the palm (the side the
fingers curl towards) and z = x cross y towards the thumb. A single `curl` in [0, 1] bends every
joint by curl times its maximum angle, so bone lengths never change.

Timeline (fractions of the clip): reach the box (0-0.25), close the fingers (0.25-0.35), lift
(0.35-0.5), carry sideways (0.5-0.65), put down (0.65-0.75), open (0.75-0.85), withdraw (0.85-1).
While grasped (0.35-0.75) the box keeps its offset to the wrist. The hand is drawn as capsules
(bones, palm, forearm) in the RGB render; the clip also carries the keypoints (world and pixels)
and the OpenPose pose video.
"""

from __future__ import annotations

import colorsys

import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax.data.synthworld import scenes
from worldscape_jax.data.synthworld.pose_video import HAND_EDGES, draw_hand_poses
from worldscape_jax.data.synthworld.render import Frame, render_dynamic_frames
from worldscape_jax.geometry.cameras import intrinsics_to_pixels, invert_pose, look_at

NUM_KEYPOINTS = 21
# Per finger (thumb, index, middle, ring, little): base point in the hand frame (metres), base
# direction, segment lengths (3 phalanges; for the thumb CMC->MCP->IP->tip) and maximum joint angles.
FINGER_BASES = np.asarray([[0.030, 0.012, 0.028], [0.090, 0.0, 0.028], [0.095, 0.0, 0.006],
                           [0.088, 0.0, -0.014], [0.078, 0.0, -0.033]])
FINGER_SPLAY_DEG = np.asarray([40.0, 8.0, 0.0, -8.0, -16.0])
SEGMENT_LENGTHS = np.asarray([[0.040, 0.032, 0.028], [0.040, 0.024, 0.020], [0.045, 0.028, 0.021],
                              [0.042, 0.026, 0.020], [0.033, 0.019, 0.018]])
MAX_ANGLES_DEG = np.asarray([[25.0, 40.0, 50.0], [70.0, 95.0, 65.0], [70.0, 95.0, 65.0], [70.0, 95.0, 65.0],
                             [70.0, 95.0, 65.0]])
PALM_EDGES = ((5, 9), (9, 13), (13, 17), (1, 5))
FOREARM_LENGTH = 0.22
TABLE_TOP_Y, TABLE_Z, OBJECT_HALF = 0.5, 0.55, 0.04
PHASES = np.asarray([0.0, 0.25, 0.35, 0.5, 0.65, 0.75, 0.85, 1.0])
NUM_HAND_CAPSULES = len(HAND_EDGES) + len(PALM_EDGES) + 1


def hand_keypoints_local(curl: float) -> np.ndarray:
    """The 21 keypoints [21, 3] in the hand frame for a curl in [0, 1] (0 open, 1 fist)."""
    points = [np.zeros(3)]
    palm_normal = np.asarray([0.0, 1.0, 0.0])
    for finger in range(5):
        splay = np.deg2rad(FINGER_SPLAY_DEG[finger])
        along = np.asarray([np.cos(splay), 0.0, np.sin(splay)])
        bend = palm_normal
        if finger == 0:  # the thumb bends across the palm, towards the little finger
            along = along + np.asarray([0.0, 0.35, 0.0])
            along /= np.linalg.norm(along)
            bend = np.asarray([0.2, 0.6, -0.8])
            bend = bend - along * (bend @ along)
            bend /= np.linalg.norm(bend)
        joint = FINGER_BASES[finger]
        points.append(joint)
        angle = 0.0
        for length, max_angle in zip(SEGMENT_LENGTHS[finger], MAX_ANGLES_DEG[finger]):
            angle += curl * np.deg2rad(max_angle)
            joint = joint + length * (np.cos(angle) * along + np.sin(angle) * bend)
            points.append(joint)
    return np.stack(points)


def bone_lengths(keypoints: np.ndarray) -> np.ndarray:
    """Lengths [..., 20] of the OpenPose hand edges."""
    edges = np.asarray(HAND_EDGES)
    return np.linalg.norm(keypoints[..., edges[:, 1], :] - keypoints[..., edges[:, 0], :], axis=-1)


def _smooth_keys(s: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Piecewise smoothstep through `keys` [len(PHASES), D] at the PHASES fractions."""
    segment = np.clip(np.searchsorted(PHASES, s, side="right") - 1, 0, len(PHASES) - 2)
    local = (s - PHASES[segment]) / (PHASES[segment + 1] - PHASES[segment])
    eased = (local * local * (3 - 2 * local))[:, None]
    return keys[segment] * (1 - eased) + keys[segment + 1] * eased


def grasp_motion(num_frames: int, object_center: np.ndarray, hand_rotation: np.ndarray, carry: np.ndarray):
    """Wrist positions [F, 3], curls [F] and box centres [F, 3] for the reach-grasp-carry-release timeline."""
    s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    top = object_center - np.asarray([0.0, OBJECT_HALF, 0.0])
    grasp = top - hand_rotation @ np.asarray([0.075, 0.035, 0.0])  # palm over the box, fingers around it
    start = grasp + np.asarray([0.16, -0.08, -0.04])
    lift = np.asarray([0.0, -0.06, 0.0])
    keys = np.stack([start, grasp, grasp, grasp + lift, grasp + lift + carry, grasp + carry, grasp + carry,
                     grasp + carry + np.asarray([0.16, -0.08, 0.02])])
    curls = np.asarray([0.05, 0.05, 0.55, 0.55, 0.55, 0.55, 0.05, 0.05])[:, None]
    wrist = _smooth_keys(s, keys)
    curl = _smooth_keys(s, curls)[:, 0]
    held = (s >= PHASES[2]) & (s <= PHASES[5])
    after = s > PHASES[5]
    offset = object_center - grasp
    box = np.where(held[:, None], wrist + offset, object_center)
    box = np.where(after[:, None], grasp + carry + offset, box)
    return wrist, curl, box


def hand_capsules(keypoints: np.ndarray, hand_rotation: np.ndarray):
    """Capsule end points and radii for the bones, palm and forearm of one hand pose."""
    pairs = list(HAND_EDGES) + list(PALM_EDGES)
    a = [keypoints[i] for i, _ in pairs] + [keypoints[0]]
    b = [keypoints[j] for _, j in pairs] + [keypoints[0] - FOREARM_LENGTH * hand_rotation[:, 0]]
    radius = [0.011 if i == 0 else 0.008 for i, _ in HAND_EDGES] + [0.011] * len(PALM_EDGES) + [0.028]
    return np.stack(a), np.stack(b), np.asarray(radius, np.float32)


def manipulation_scene(scene_seed: int, traj_seed: int):
    """(Scene, box index, first hand capsule index, box centre, hand rotation, carry vector)."""
    rng = np.random.default_rng(scene_seed)
    builder = scenes.indoor_scene(rng, free_radius=1.6, num_capsules=scenes.NUM_CAPSULES + NUM_HAND_CAPSULES)
    table_half = np.asarray([0.45, 0.5 * (scenes.EYE_HEIGHT - TABLE_TOP_Y), 0.35])
    builder.add_box([0.0, TABLE_TOP_Y + table_half[1], TABLE_Z], table_half, texture="stripes")
    motion_rng = np.random.default_rng([scene_seed, traj_seed, 11])
    box_center = np.asarray([motion_rng.uniform(-0.08, 0.08), TABLE_TOP_Y - OBJECT_HALF,
                             TABLE_Z + motion_rng.uniform(-0.08, 0.05)])
    builder.add_box(box_center, np.full(3, OBJECT_HALF), texture="checker", frequency=30.0)
    box_index = scenes.NUM_PLANES + len(builder.boxes) - 1
    yaw = motion_rng.uniform(-1.9, -1.3)  # fingers point left: the arm comes in from the right
    fingers = np.asarray([np.sin(yaw), 0.0, np.cos(yaw)])
    palm_normal = np.asarray([0.0, 1.0, 0.0])  # palm down (world y points down)
    hand_rotation = np.stack([fingers, palm_normal, np.cross(fingers, palm_normal)], axis=-1)
    first_capsule = len(builder.capsules)
    skin = np.asarray(colorsys.hsv_to_rgb(motion_rng.uniform(0.03, 0.09), motion_rng.uniform(0.3, 0.6),
                                          motion_rng.uniform(0.55, 0.9)), np.float32)
    for _ in range(NUM_HAND_CAPSULES):
        builder.add_capsule(np.zeros(3), np.asarray([0.0, 0.0, 0.1]), 0.01, color=skin, color_b=0.8 * skin,
                            texture="waves", frequency=20.0)
    carry = np.asarray([motion_rng.uniform(-0.03, 0.03), 0.0,
                        motion_rng.choice([-1.0, 1.0]) * motion_rng.uniform(0.05, 0.09)])
    return builder.build(), box_index, first_capsule, box_center, hand_rotation, carry


def manipulation_camera() -> np.ndarray:
    """The table-top camera: 0.3 m above the table's near half, looking down 45 degrees at its centre."""
    return look_at(np.asarray([0.0, TABLE_TOP_Y - 0.3, TABLE_Z - 0.3]), np.asarray([0.0, TABLE_TOP_Y, TABLE_Z]))


def project_points(points: np.ndarray, c2w: np.ndarray, intrinsics: np.ndarray, height: int, width: int):
    """Pixels [F, N, 2] of world points [F, N, 3]; NaN where a point is not in front of the camera."""
    cam = np.einsum("fij,fnj->fni", invert_pose(c2w.astype(np.float64))[:, :3, :3], points) \
        + invert_pose(c2w.astype(np.float64))[:, None, :3, 3]
    fx, fy, cx, cy = np.moveaxis(intrinsics_to_pixels(intrinsics.astype(np.float64), height, width), -1, 0)
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([fx[:, None] * cam[..., 0] / z + cx[:, None], fy[:, None] * cam[..., 1] / z + cy[:, None]], -1)
    return np.where((z > 1e-6)[..., None], uv, np.nan).astype(np.float32)


def render_manipulation(scene_seed: int, c2w: np.ndarray, intrinsics: np.ndarray, height: int, width: int,
                        traj_seed: int, supersample: int = 1) -> tuple[Frame, dict[str, np.ndarray]]:
    """The frames of a manipulation clip seen along `c2w`, and its hand arrays (hand_keypoints,
    hand_keypoints_2d, pose_video); `clips.generate_clip` chooses the camera path and assembles the clip."""
    num_frames = len(c2w)
    scene, box_index, first_capsule, box_center, rotation, carry = manipulation_scene(scene_seed, traj_seed)
    wrist, curl, boxes = grasp_motion(num_frames, box_center, rotation, carry)
    keypoints = np.stack([w + hand_keypoints_local(c) @ rotation.T for w, c in zip(wrist, curl)])
    capsules = [hand_capsules(k, rotation) for k in keypoints]
    hand_slots = slice(first_capsule, first_capsule + NUM_HAND_CAPSULES)
    per_frame = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_frames,) + x.shape), scene)
    box_slot = box_index - scenes.NUM_PLANES
    per_frame = per_frame.replace(
        box_center=per_frame.box_center.at[:, box_slot].set(jnp.asarray(boxes, jnp.float32)),
        capsule_a=per_frame.capsule_a.at[:, hand_slots].set(jnp.asarray(np.stack([c[0] for c in capsules]), jnp.float32)),
        capsule_b=per_frame.capsule_b.at[:, hand_slots].set(jnp.asarray(np.stack([c[1] for c in capsules]), jnp.float32)),
        capsule_radius=per_frame.capsule_radius.at[:, hand_slots].set(jnp.asarray(np.stack([c[2] for c in capsules]))),
    )
    frames = render_dynamic_frames(per_frame, c2w, intrinsics, height, width, supersample)
    keypoints_2d = project_points(keypoints, c2w, intrinsics, height, width)
    return frames, {
        "hand_keypoints": keypoints.astype(np.float32),
        "hand_keypoints_2d": keypoints_2d,
        "pose_video": np.asarray(draw_hand_poses(keypoints_2d, None, height, width)),
    }
