"""Keyboard actions (WASD / QE / RF) to camera paths, as in the paper's Figure 1.

Keys, in the camera frame (OpenCV axes: x right, y down, z forward):
  W / S  move forward / back along the camera's optical axis (+z / -z)
  D / A  move right / left along the camera's x axis (+x / -x)
  Q / E  yaw left / right: turn about the vertical axis of the start pose (its -y, "up")
  R / F  pitch up / down: turn about the camera's own x axis
  .      stand still for a step
Keys combine within one step ("wd" moves forward and right, "wq" walks while turning left);
opposite keys in one step ("ws", "qe") are an error, as is a repeated key.

Sign conventions: yaw is a right-handed rotation about "up" (-y), so a positive yaw (Q) turns the
optical axis from +z towards -x (left); pitch is a right-handed rotation about the camera's +x, so a
positive pitch (R) turns the optical axis from +z towards -y (up, since y points down).

Step sizes follow HY-WorldPlay: one step is one latent frame = `frames_per_step` (4) pixel frames,
and moves 0.08 units / turns 3 degrees, spread evenly over its pixel frames. Within each pixel frame
the camera first moves in its current frame, then turns. An action string is a comma-separated list
of `keys*count` items (count in steps, default 1), e.g. "w*8,q*4,wd*6". A path of N steps has
1 + N * frames_per_step poses (the first pose is the start, as Wan's 1 + 4k frames).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from worldscape_jax.geometry.cameras import make_pose

KEYS = "wasdqerf."
OPPOSITES = (("w", "s"), ("a", "d"), ("q", "e"), ("r", "f"))
# (forward, right, yaw, pitch) sign of each key; yaw > 0 turns left, pitch > 0 looks up.
KEY_EFFECTS = {
    "w": (1, 0, 0, 0), "s": (-1, 0, 0, 0), "d": (0, 1, 0, 0), "a": (0, -1, 0, 0),
    "q": (0, 0, 1, 0), "e": (0, 0, -1, 0), "r": (0, 0, 0, 1), "f": (0, 0, 0, -1), ".": (0, 0, 0, 0),
}


@dataclasses.dataclass(frozen=True)
class ActionConfig:
    """Step sizes of the keyboard controls (defaults from HY-WorldPlay, per latent frame)."""

    translation_per_step: float = 0.08      # scene units per step (per latent frame)
    rotation_deg_per_step: float = 3.0      # degrees per step, for yaw and pitch
    frames_per_step: int = 4                # pixel frames per step (Wan's temporal VAE stride)

    def __post_init__(self):
        if self.frames_per_step < 1:
            raise ValueError(f"ActionConfig.frames_per_step must be >= 1, got {self.frames_per_step}")


@dataclasses.dataclass(frozen=True)
class Action:
    """One item of an action string: a set of simultaneous keys held for `steps` steps."""

    keys: str
    steps: int


_ITEM = re.compile(r"^([a-z.]+)(?:\*(\d+))?$")


def parse_actions(text: str) -> list[Action]:
    """Parses "w*8,q*4,wd*6" into Actions; raises ValueError naming the bad item and why."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"action string must be a non-empty string like 'w*8,q*4', got {text!r}")
    actions = []
    for position, raw in enumerate(text.split(",")):
        item = raw.strip().lower()
        match = _ITEM.match(item)
        where = f"action string {text!r}, item {position} ({raw.strip()!r})"
        if match is None:
            raise ValueError(f"{where}: expected keys from '{KEYS}' optionally followed by '*count', e.g. 'wd*6'")
        keys, count = match.group(1), int(match.group(2) or 1)
        unknown = sorted(set(keys) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are '{KEYS}'")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{where}: a key is repeated")
        for a, b in OPPOSITES:
            if a in keys and b in keys:
                raise ValueError(f"{where}: opposite keys '{a}' and '{b}' in one step")
        if "." in keys and len(keys) > 1:
            raise ValueError(f"{where}: '.' (stand still) cannot be combined with other keys")
        if count < 1:
            raise ValueError(f"{where}: count must be >= 1")
        actions.append(Action(keys, count))
    return actions


def frame_deltas(actions: list[Action], config: ActionConfig = ActionConfig()) -> np.ndarray:
    """Per-pixel-frame motion [M, 4]: (forward, right, yaw_rad, pitch_rad), M = steps * frames_per_step."""
    per_frame = np.asarray([config.translation_per_step, config.translation_per_step,
                            np.deg2rad(config.rotation_deg_per_step), np.deg2rad(config.rotation_deg_per_step)],
                           np.float64) / config.frames_per_step
    rows = []
    for action in actions:
        effect = np.sum([KEY_EFFECTS[k] for k in action.keys], axis=0) * per_frame
        rows.append(np.tile(effect, (action.steps * config.frames_per_step, 1)))
    return np.concatenate(rows, axis=0)


def yaw_pitch_rotation(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Camera rotation [..., 3, 3] after turning by `yaw` about up (-y) then `pitch` about the camera x."""
    yaw, pitch = np.asarray(yaw, np.float64), np.asarray(pitch, np.float64)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    zero, one = np.zeros_like(yaw), np.ones_like(yaw)
    r_yaw = np.stack([np.stack([cy, zero, -sy], -1), np.stack([zero, one, zero], -1),
                      np.stack([sy, zero, cy], -1)], -2)
    r_pitch = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1),
                        np.stack([zero, sp, cp], -1)], -2)
    return r_yaw @ r_pitch


def integrate(deltas: np.ndarray, start_c2w: np.ndarray | None = None) -> np.ndarray:
    """Poses [1 + M, 4, 4] (float32) from per-frame (forward, right, yaw, pitch) deltas [M, 4]."""
    deltas = np.asarray(deltas, np.float64)
    if deltas.ndim != 2 or deltas.shape[1] != 4:
        raise ValueError(f"integrate: deltas must be [M, 4] (forward, right, yaw, pitch), got {deltas.shape}")
    start = np.eye(4) if start_c2w is None else np.asarray(start_c2w, np.float64)
    yaw, pitch, position = 0.0, 0.0, np.zeros(3)
    poses = [np.eye(4)]
    for forward, right, d_yaw, d_pitch in deltas:
        rotation = yaw_pitch_rotation(yaw, pitch)
        position = position + rotation @ np.asarray([right, 0.0, forward])
        yaw, pitch = yaw + d_yaw, pitch + d_pitch
        poses.append(make_pose(yaw_pitch_rotation(yaw, pitch), position))
    return (start[None] @ np.stack(poses)).astype(np.float32)


def actions_to_c2w(text: str, config: ActionConfig = ActionConfig(), start_c2w: np.ndarray | None = None) -> np.ndarray:
    """The camera path [1 + steps * frames_per_step, 4, 4] of an action string, from `start_c2w`."""
    return integrate(frame_deltas(parse_actions(text), config), start_c2w)


def num_frames_of(text: str, config: ActionConfig = ActionConfig()) -> int:
    """How many poses `actions_to_c2w(text)` returns."""
    return 1 + sum(a.steps for a in parse_actions(text)) * config.frames_per_step


MOVE_KEYS = ("", "w", "s", "a", "d")
TURN_KEYS = ("", "q", "e", "r", "f")


def random_actions(num_steps: int, seed: int, *, hold_probability: float = 0.5, max_distance: float = np.inf,
                   max_pitch_deg: float = 30.0, config: ActionConfig = ActionConfig()) -> str:
    """A random action string of `num_steps` steps, pressed the way a player might press keys.

    Each step keeps the previous step's keys with `hold_probability`, else draws a move (none, W, S,
    A, D) and a turn (none, Q, E, R, F) uniformly ("." when both are none), so every key, idling and
    two-key combinations all occur. A move that would take the camera further than `max_distance`
    from its start, or a pitch beyond +-`max_pitch_deg`, is dropped for that step: the path stays
    where the scene is free and the horizon stays in view.
    """
    if num_steps < 1:
        raise ValueError(f"random_actions: num_steps must be >= 1, got {num_steps}")
    if not 0.0 <= hold_probability <= 1.0:
        raise ValueError(f"random_actions: hold_probability must be in [0, 1], got {hold_probability}")
    rng = np.random.default_rng(seed)
    items, pitch_steps, previous = [], 0, ("", "")
    max_pitch_steps = int(np.floor(max_pitch_deg / config.rotation_deg_per_step + 1e-9))
    for _ in range(num_steps):
        if items and rng.random() < hold_probability:
            move, turn = previous
        else:
            move, turn = MOVE_KEYS[rng.integers(len(MOVE_KEYS))], TURN_KEYS[rng.integers(len(TURN_KEYS))]
        pitch_change = {"r": 1, "f": -1}.get(turn, 0)
        if abs(pitch_steps + pitch_change) > max_pitch_steps:
            turn, pitch_change = "", 0
        if move and _farthest(items + [(move + turn) or "."], config) > max_distance:
            move = ""
        pitch_steps += pitch_change
        previous = (move, turn)
        items.append((move + turn) or ".")
    return ",".join(items)


def _farthest(items: list[str], config: ActionConfig) -> float:
    """Largest distance from the start reached along the path of `items`."""
    positions = actions_to_c2w(",".join(items), config)[:, :3, 3]
    return float(np.max(np.linalg.norm(positions, axis=-1)))
