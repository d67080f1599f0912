"""SynthWorld clips: a scene, a camera path and (for manipulation) a hand, rendered to arrays.

`generate_clip` is the one entry point the data pipeline, the exporters and the evaluations use.
Everything is deterministic in (scene_seed, kind, trajectory, traj_seed, num_frames, height, width).

Camera: a pinhole with a 70 degree horizontal field of view and square pixels, centred principal
point. Navigation clips start at the scene's eye point (the origin) with a heading drawn from
`traj_seed`; the trajectory families are sized to stay inside the scene's free disc, so the camera
never passes through an object ("keys", random presses of every key, drops a move that would leave
the disc). Action strings ("w*8,q*4") are taken literally from the same start
(0.08 units and 3 degrees per step; see geometry/actions.py) and must produce exactly `num_frames`
poses (1 + 4 * steps); a long walk may leave the free disc. Manipulation clips keep the camera on
the table (trajectory "static" by default) and any trajectory is applied from that camera.

Anti-aliasing: `supersample` rays per pixel (default DEFAULT_SUPERSAMPLE = 9) are averaged into each
RGB pixel (see render.py), so edges move smoothly instead of jumping whole pixels between frames;
depth stays the exact z-depth of the pixel-centre ray. 9 is the measured choice: on held-out renders
at 64x64 it separates pure turns from slow walks for the pose estimator (launch/eval_pose_estimator.py)
clearly better than 1, 4 (a 2x2 grid), 5 or 7 rays, at about a ninth of the point-sampled speed
(launch/bench_render.py). supersample=1 gives the point-sampled renders of RENDER_VERSION 1.

Split: `split_of(seed)` is "heldout" for about 10% of seeds, chosen by a hash of the seed
(blake2b of its decimal string, modulo 10 == 0), so the split is fixed and independent of order.
"""

from __future__ import annotations

import hashlib

import numpy as np

from worldscape_jax.data.synthworld import hands, scenes
from worldscape_jax.data.synthworld.render import Frame, render_frames
from worldscape_jax.geometry import trajectories
from worldscape_jax.geometry.actions import (ActionConfig, actions_to_c2w, integrate, num_frames_of, random_actions,
                                             yaw_pitch_rotation)
from worldscape_jax.geometry.cameras import intrinsics_from_fov, make_pose

FOV_X_DEG = 70.0
# Bumped whenever the camera path of a given generate_clip call changes; caches of SynthWorld clips
# key on it with RENDER_VERSION. History: 1 random_walk squeezed its whole tour into any clip (a 9-frame
# clip turned ~100 degrees per frame, which neither a tracker nor a video model can follow); 2 it moves
# at key speed (STEP or TURN per frame, like forward and pan) and short clips show the tour's start.
PATHS_VERSION = 2
FREE_RADIUS = 1.6
NAVIGATION_FAMILIES = ("forward", "pan", "orbit", "there_and_back", "random_walk")
# "keys": random key presses, one per latent frame (every WASD/QERF key, idling and combinations).
FAMILIES = ("static", *NAVIGATION_FAMILIES, "keys")
KINDS = ("navigation", "manipulation")
HELDOUT_MODULUS = 10
DEFAULT_SUPERSAMPLE = 9


def split_of(scene_seed: int) -> str:
    """"heldout" when blake2b(str(seed)) % 10 == 0 (about 10% of seeds), else "train"."""
    digest = hashlib.blake2b(str(int(scene_seed)).encode(), digest_size=8).digest()
    return "heldout" if int.from_bytes(digest, "little") % HELDOUT_MODULUS == 0 else "train"


def split_seeds(split: str, count: int, start: int = 0) -> list[int]:
    """The first `count` SynthWorld scene seeds >= start that belong to `split`."""
    seeds, seed = [], start
    while len(seeds) < count:
        if split_of(seed) == split:
            seeds.append(seed)
        seed += 1
    return seeds


def start_pose(traj_seed: int) -> np.ndarray:
    """The navigation start: the eye point with a heading drawn from `traj_seed`."""
    yaw = np.random.default_rng([traj_seed, 7]).uniform(-np.pi, np.pi)
    return make_pose(yaw_pitch_rotation(yaw, 0.0), np.zeros(3))


def _fitted_step(num_frames: int, distance_budget: float) -> float:
    """The default walking step, shortened when `num_frames` would walk further than the budget."""
    return min(trajectories.STEP, distance_budget / max(num_frames - 1, 1))


def family_path(family: str, num_frames: int, traj_seed: int, start_c2w: np.ndarray,
                free_radius: float = FREE_RADIUS) -> np.ndarray:
    """c2w [F, 4, 4] of a trajectory family, sized to stay inside the free disc around the start."""
    margin = 0.25
    if family == "static":
        return trajectories.static(num_frames, start_c2w)
    if family == "forward":
        step = _fitted_step(num_frames, 2 * (free_radius - margin))
        back = start_c2w @ make_pose(np.eye(3), np.asarray([0.0, 0.0, -0.5 * step * (num_frames - 1)]))
        return trajectories.forward_walk(num_frames, step, back)
    if family == "pan":
        return trajectories.pan(num_frames, start_c2w=start_c2w)
    if family == "orbit":
        start_angle = np.rad2deg(np.arctan2(start_c2w[0, 2], start_c2w[2, 2]))
        return trajectories.orbit(num_frames, center=start_c2w[:3, 3], radius=0.6 * free_radius,
                                  degrees=min(120.0, 1.5 * (num_frames - 1)), start_angle_deg=float(start_angle))
    if family == "there_and_back":
        half = (num_frames + 1) // 2
        step = _fitted_step(half, free_radius - margin)
        outbound = integrate(
            trajectories.constant_deltas(half, forward=step, yaw=0.5 * trajectories.TURN), start_c2w)
        return trajectories.there_and_back(outbound, num_frames)
    if family == "random_walk":
        return trajectories.random_walk(num_frames, traj_seed, radius=0.75 * (free_radius - margin),
                                        start_c2w=start_c2w, key_speed=True)
    if family == "keys":
        config = ActionConfig()
        if (num_frames - 1) % config.frames_per_step:
            raise ValueError(f"trajectory family 'keys' presses one key per {config.frames_per_step} frames, so "
                             f"num_frames must be 1 + {config.frames_per_step} * steps, got {num_frames}")
        keys = random_actions((num_frames - 1) // config.frames_per_step, traj_seed,
                              max_distance=free_radius - margin, config=config)
        return actions_to_c2w(keys, config, start_c2w)
    raise ValueError(f"trajectory family {family!r} is unknown; expected one of {FAMILIES} or an action string")


def camera_path(trajectory: str | None, num_frames: int, traj_seed: int, start_c2w: np.ndarray,
                default_family: str) -> np.ndarray:
    """Resolves `trajectory` (None, a family name, or an action string) to c2w [F, 4, 4]."""
    if trajectory is None:
        trajectory = default_family
    if trajectory in FAMILIES:
        return family_path(trajectory, num_frames, traj_seed, start_c2w)
    frames = num_frames_of(trajectory)  # raises a clear error for a malformed action string
    if frames != num_frames:
        raise ValueError(f"trajectory {trajectory!r} gives {frames} frames (1 + 4 per step) but num_frames="
                         f"{num_frames}; adjust the counts or num_frames")
    return actions_to_c2w(trajectory, ActionConfig(), start_c2w)


def _check_arguments(scene_seed, num_frames, height, width, kind, supersample):
    for name, value, low in (("scene_seed", scene_seed, 0), ("num_frames", num_frames, 1),
                             ("height", height, 1), ("width", width, 1), ("supersample", supersample, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"generate_clip: {name} must be an int >= {low}, got {value!r}")
    if kind not in KINDS:
        raise ValueError(f"generate_clip: kind must be one of {KINDS}, got {kind!r}")


def clip_arrays(frames: Frame, c2w: np.ndarray, intrinsics: np.ndarray, scene_seed: int) -> dict[str, np.ndarray]:
    """The keys every clip has, as numpy arrays of the documented dtypes."""
    return {
        "video": np.clip(np.round(np.asarray(frames.rgb) * 255.0), 0, 255).astype(np.uint8),
        "depth": np.asarray(frames.depth, np.float32),
        "c2w": np.asarray(c2w, np.float32),
        "intrinsics": np.asarray(intrinsics, np.float32),
        "scene_seed": np.asarray(scene_seed, np.int64),
    }


def generate_clip(scene_seed: int, num_frames: int, height: int, width: int, *, kind: str = "navigation",
                  trajectory: str | None = None, traj_seed: int = 0,
                  supersample: int = DEFAULT_SUPERSAMPLE) -> dict[str, np.ndarray]:
    """Renders one clip. Returns numpy arrays:

    video uint8 [F, H, W, 3]; depth float32 [F, H, W] (z-depth, metres); c2w float32 [F, 4, 4]
    (world poses, OpenCV axes); intrinsics float32 [F, 4] (normalised); scene_seed int64 scalar;
    for kind="manipulation" also hand_keypoints float32 [F, 21, 3] (world), hand_keypoints_2d
    float32 [F, 21, 2] (pixels, x right, y down) and pose_video uint8 [F, H, W, 3].

    `trajectory`: None (navigation: the family number `traj_seed % 5` of NAVIGATION_FAMILIES;
    manipulation: "static"), a family name from FAMILIES, or an action string like "w*8,q*4".
    `supersample`: rays per pixel averaged into the RGB (anti-aliasing; 1 = point sampling). It
    changes only `video` (and nothing of the pose video); depth is always the pixel-centre ray's.
    """
    _check_arguments(scene_seed, num_frames, height, width, kind, supersample)
    intrinsics = np.tile(intrinsics_from_fov(FOV_X_DEG, height, width), (num_frames, 1))
    if kind == "manipulation":
        c2w = camera_path(trajectory, num_frames, traj_seed, hands.manipulation_camera(), "static")
        frames, hand = hands.render_manipulation(scene_seed, c2w, intrinsics, height, width, traj_seed, supersample)
        return {**clip_arrays(frames, c2w, intrinsics, scene_seed), **hand}
    default = NAVIGATION_FAMILIES[traj_seed % len(NAVIGATION_FAMILIES)]
    c2w = camera_path(trajectory, num_frames, traj_seed, start_pose(traj_seed), default)
    frames = render_frames(scenes.navigation_scene(scene_seed, FREE_RADIUS), c2w, intrinsics, height, width,
                           supersample)
    return clip_arrays(frames, c2w, intrinsics, scene_seed)
