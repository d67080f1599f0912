"""Families of camera paths, each returning c2w [F, 4, 4] float32 for exactly F frames.

All paths are built from the same yaw/pitch/position convention as `actions.py` (OpenCV axes,
world y down, yaw > 0 turns left) and start at `start_c2w` (identity by default), except `orbit`,
which circles a centre. Families:
  * static        the start pose, F times
  * forward_walk  walking straight ahead (W held)
  * pan           turning in place (Q held for left, E for right)
  * orbit         moving on a horizontal circle around a centre while looking at it
  * there_and_back an outbound path followed by the same poses in reverse (c2w[t] == c2w[F-1-t]);
                  Memory Symmetry compares frame t with frame F-1-t
  * random_walk   turn-then-walk between random waypoints in a disc, then back through earlier
                  waypoints, so the camera revisits places (deterministic by seed)
"""

from __future__ import annotations

import numpy as np

from worldscape_jax.geometry.actions import ActionConfig, integrate, yaw_pitch_rotation
from worldscape_jax.geometry.cameras import look_at, make_pose

DEFAULT = ActionConfig()
STEP = DEFAULT.translation_per_step / DEFAULT.frames_per_step            # 0.02 units per pixel frame
TURN = np.deg2rad(DEFAULT.rotation_deg_per_step) / DEFAULT.frames_per_step  # 0.75 degrees per pixel frame


def _check_frames(num_frames: int) -> None:
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")


def constant_deltas(num_frames: int, forward=0.0, right=0.0, yaw=0.0, pitch=0.0) -> np.ndarray:
    """The same (forward, right, yaw, pitch) delta for each of the F - 1 moves of an F-frame path."""
    return np.tile(np.asarray([forward, right, yaw, pitch], np.float64), (num_frames - 1, 1))


def static(num_frames: int, start_c2w: np.ndarray | None = None) -> np.ndarray:
    """The start pose repeated."""
    _check_frames(num_frames)
    return integrate(constant_deltas(num_frames), start_c2w)


def forward_walk(num_frames: int, step: float = STEP, start_c2w: np.ndarray | None = None) -> np.ndarray:
    """Walks `step` units per frame along the optical axis."""
    _check_frames(num_frames)
    return integrate(constant_deltas(num_frames, forward=step), start_c2w)


def pan(num_frames: int, degrees_per_frame: float = np.rad2deg(TURN), start_c2w: np.ndarray | None = None) -> np.ndarray:
    """Turns in place by `degrees_per_frame` (positive = left, like Q)."""
    _check_frames(num_frames)
    return integrate(constant_deltas(num_frames, yaw=np.deg2rad(degrees_per_frame)), start_c2w)


def orbit(num_frames: int, center=(0.0, 0.0, 0.0), radius: float = 1.0, degrees: float = 90.0,
          start_angle_deg: float = 0.0) -> np.ndarray:
    """Circles `center` at `radius` in its horizontal plane, looking at it, sweeping `degrees`.

    At angle 0 the camera sits at center - radius * z, looking along +z; positive degrees move it
    to its right (counter-clockwise seen from above).
    """
    _check_frames(num_frames)
    if radius <= 0:
        raise ValueError(f"orbit: radius must be > 0, got {radius}")
    center = np.asarray(center, np.float64)
    angles = np.deg2rad(start_angle_deg + np.linspace(0.0, degrees, num_frames))
    eyes = center + radius * np.stack([np.sin(angles), np.zeros_like(angles), -np.cos(angles)], -1)
    return look_at(eyes, np.broadcast_to(center, eyes.shape)).astype(np.float32)


def there_and_back(outbound: np.ndarray, num_frames: int) -> np.ndarray:
    """The first (F+1)//2 poses of `outbound`, then the same poses in reverse: c2w[t] == c2w[F-1-t]."""
    _check_frames(num_frames)
    half = (num_frames + 1) // 2
    if len(outbound) < half:
        raise ValueError(f"there_and_back: outbound path has {len(outbound)} poses, needs >= {half}")
    out = np.asarray(outbound[:half], np.float32)
    return np.concatenate([out, out[: num_frames - half][::-1]], axis=0)


def _tour(rng: np.random.Generator, radius: float, num_new: int, num_revisits: int) -> np.ndarray:
    """Waypoints (x, z): the start, `num_new` random points in the disc, then revisited earlier ones."""
    points = [np.zeros(2)]
    while len(points) < num_new + 1:
        candidate = rng.uniform(-radius, radius, size=2)
        if np.hypot(*candidate) <= radius and np.hypot(*(candidate - points[-1])) > 0.3 * radius:
            points.append(candidate)
    for _ in range(num_revisits):
        choices = [i for i in range(len(points) - 1) if np.any(points[i] != points[-1])]
        points.append(points[int(rng.choice(choices))])
    return np.stack(points)


def random_walk(num_frames: int, seed: int, radius: float = 1.2, num_new: int = 3, num_revisits: int = 2,
                start_c2w: np.ndarray | None = None, key_speed: bool = False) -> np.ndarray:
    """Turn-then-walk through a random tour of waypoints that returns to earlier ones.

    Progress is uniform in "effort" (distance / STEP + turn angle / turn rate), so turns and walks
    take time in proportion. By default the turn rate is 4 TURN and the whole tour takes exactly
    `num_frames` frames, however fast that is. With `key_speed` the camera moves like held keys, one
    STEP or one TURN per frame, and a clip too short for the whole tour shows its beginning.
    """
    _check_frames(num_frames)
    rng = np.random.default_rng(seed)
    points = _tour(rng, radius, num_new, num_revisits)
    states, costs = [(0.0, points[0])], [0.0]  # (yaw, position) key states
    yaw = 0.0
    for target in points[1:]:
        offset = target - states[-1][1]
        new_yaw = np.arctan2(-offset[0], offset[1])  # yaw > 0 faces -x
        turn = (new_yaw - yaw + np.pi) % (2 * np.pi) - np.pi
        yaw = yaw + turn
        states.append((yaw, states[-1][1]))
        costs.append(abs(turn) / (TURN if key_speed else 4 * TURN))
        states.append((yaw, target))
        costs.append(np.hypot(*offset) / STEP)
    progress = np.cumsum(costs)
    end = min(progress[-1], num_frames - 1.0) if key_speed else progress[-1]
    samples = np.linspace(0.0, end, num_frames)
    yaws = np.interp(samples, progress, [s[0] for s in states])
    xs = np.interp(samples, progress, [s[1][0] for s in states])
    zs = np.interp(samples, progress, [s[1][1] for s in states])
    local = make_pose(yaw_pitch_rotation(yaws, np.zeros_like(yaws)), np.stack([xs, np.zeros_like(xs), zs], -1))
    start = np.eye(4) if start_c2w is None else np.asarray(start_c2w, np.float64)
    return (start[None] @ local).astype(np.float32)
