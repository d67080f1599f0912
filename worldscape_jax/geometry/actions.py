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

Counts are ASCII digits, and the total number of steps is capped (`max_steps`, default
MAX_ACTION_STEPS) before anything is allocated; a bad string raises ConfigError naming the item.
"""

from __future__ import annotations

import dataclasses
import re

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from worldscape_jax.errors import ConfigError
from worldscape_jax.geometry.cameras import make_pose

KEYS = "wasdqerf."
MAX_ACTION_STEPS = 10_000  # 40001 poses at 4 frames per step: ~40 min of video at 16 fps
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


_ITEM = re.compile(r"([a-z.]+)(?:\*([0-9]+))?")


def parse_actions(text: str, max_steps: int = MAX_ACTION_STEPS) -> list[Action]:
    """Parses "w*8,q*4,wd*6" into Actions; raises ConfigError naming the bad item and why."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("action string", f"expected a non-empty string like 'w*8,q*4'; got {text!r:.80}")
    actions, total = [], 0
    for position, raw in enumerate(text.split(",")):
        item = raw.strip().lower()
        match = _ITEM.fullmatch(item)
        where = f"action string {text!r:.80}, item {position} ({raw.strip()!r:.40})"
        if match is None:
            raise ConfigError(where, f"expected keys from '{KEYS}' optionally followed by '*count' (ASCII digits), "
                                     "e.g. 'wd*6'")
        keys, digits = match.group(1), match.group(2) or "1"
        if len(digits) > len(str(max_steps)):
            raise ConfigError(where, f"count has {len(digits)} digits; at most {max_steps} steps are allowed")
        count = int(digits)
        unknown = sorted(set(keys) - set(KEYS))
        if unknown:
            raise ConfigError(where, f"unknown key(s) {unknown}; valid keys are '{KEYS}'")
        if len(set(keys)) != len(keys):
            raise ConfigError(where, "a key is repeated")
        for a, b in OPPOSITES:
            if a in keys and b in keys:
                raise ConfigError(where, f"opposite keys '{a}' and '{b}' in one step")
        if "." in keys and len(keys) > 1:
            raise ConfigError(where, "'.' (stand still) cannot be combined with other keys")
        if count < 1:
            raise ConfigError(where, "count must be >= 1")
        total += count
        if total > max_steps:
            raise ConfigError(where, f"the string asks for {total}+ steps; at most {max_steps} (max_steps)")
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


def yaw_pitch_rotation(yaw: np.ndarray, pitch: np.ndarray, xp=np) -> np.ndarray:
    """Camera rotation [..., 3, 3] after turning by `yaw` about up (-y) then `pitch` about the camera x.

    NumPy in float64 by default; `xp=jax.numpy` keeps the inputs' dtype and traces under jit.
    """
    if xp is np:
        yaw, pitch = np.asarray(yaw, np.float64), np.asarray(pitch, np.float64)
    cy, sy, cp, sp = xp.cos(yaw), xp.sin(yaw), xp.cos(pitch), xp.sin(pitch)
    zero, one = xp.zeros_like(yaw), xp.ones_like(yaw)
    r_yaw = xp.stack([xp.stack([cy, zero, -sy], -1), xp.stack([zero, one, zero], -1),
                      xp.stack([sy, zero, cy], -1)], -2)
    r_pitch = xp.stack([xp.stack([one, zero, zero], -1), xp.stack([zero, cp, -sp], -1),
                        xp.stack([zero, sp, cp], -1)], -2)
    return r_yaw @ r_pitch


def integrate(deltas: np.ndarray, start_c2w: np.ndarray | None = None) -> np.ndarray:
    """Poses [1 + M, 4, 4] (float32) from per-frame (forward, right, yaw, pitch) deltas [M, 4].

    Frame i moves in the camera frame it starts with, then turns: yaw and pitch are running sums,
    and each move is rotated by the turn reached before it (vectorised: no Python loop over frames).
    """
    deltas = np.asarray(deltas, np.float64)
    if deltas.ndim != 2 or deltas.shape[1] != 4:
        raise ValueError(f"integrate: deltas must be [M, 4] (forward, right, yaw, pitch), got {deltas.shape}")
    start = np.eye(4) if start_c2w is None else np.asarray(start_c2w, np.float64)
    forward, right, d_yaw, d_pitch = deltas.T
    yaw = np.concatenate([[0.0], np.cumsum(d_yaw)])
    pitch = np.concatenate([[0.0], np.cumsum(d_pitch)])
    rotations = yaw_pitch_rotation(yaw, pitch)
    moves = np.stack([right, np.zeros_like(right), forward], -1)
    steps = np.einsum("mij,mj->mi", rotations[:-1], moves)
    positions = np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])
    return (start[None] @ make_pose(rotations, positions)).astype(np.float32)


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
        if move and np.isfinite(max_distance) and _farthest(items + [(move + turn) or "."], config) > max_distance:
            move = ""
        pitch_steps += pitch_change
        previous = (move, turn)
        items.append((move + turn) or ".")
    return ",".join(items)


def _farthest(items: list[str], config: ActionConfig) -> float:
    """Largest distance from the start reached along the path of `items`."""
    positions = actions_to_c2w(",".join(items), config)[:, :3, 3]
    return float(np.max(np.linalg.norm(positions, axis=-1)))


HELD_KEY_ORDER = "wasdqerf"  # the key axis of a held-keys array (streaming, the play page)


def held_keys_deltas(held: Bool[Array, "... 8"], config: ActionConfig = ActionConfig()) -> Float[Array, "... 4"]:
    """Per-pixel-frame motion (forward, right, yaw_rad, pitch_rad) of keys held for one step, jit-friendly.

    `held` is a bool array over HELD_KEY_ORDER (W A S D Q E R F). Unlike an action string, opposite keys
    may both be held (a player can press them): they cancel, as their effects sum.
    """
    if held.shape[-1] != len(HELD_KEY_ORDER):
        raise ValueError(f"held keys: expected a last axis of {len(HELD_KEY_ORDER)} ({HELD_KEY_ORDER.upper()}), "
                         f"got shape {held.shape}")
    effects = np.asarray([KEY_EFFECTS[k] for k in HELD_KEY_ORDER], np.float32)
    per_frame = np.asarray([config.translation_per_step, config.translation_per_step,
                            np.deg2rad(config.rotation_deg_per_step), np.deg2rad(config.rotation_deg_per_step)],
                           np.float32) / config.frames_per_step
    return (held.astype(jnp.float32) @ effects) * per_frame


def advance_heading(position: Float[Array, "b 3"], yaw: Float[Array, "b"], pitch: Float[Array, "b"],
                    deltas: Float[Array, "b m 4"]):
    """`integrate` for a stream, in jax: the next m poses of a path after (position, yaw, pitch).

    Position and angles are relative to the stream's start pose (compose with it for world poses).
    Returns (poses [B, m, 4, 4] relative to the start, position, yaw, pitch after the last frame).
    """
    yaws = yaw[:, None] + jnp.cumsum(deltas[..., 2], axis=1)
    pitches = pitch[:, None] + jnp.cumsum(deltas[..., 3], axis=1)
    before_yaw = jnp.concatenate([yaw[:, None], yaws[:, :-1]], axis=1)  # each frame moves, then turns
    before_pitch = jnp.concatenate([pitch[:, None], pitches[:, :-1]], axis=1)
    move = jnp.stack([deltas[..., 1], jnp.zeros_like(deltas[..., 0]), deltas[..., 0]], axis=-1)
    steps = (yaw_pitch_rotation(before_yaw, before_pitch, xp=jnp) @ move[..., None])[..., 0]
    positions = position[:, None] + jnp.cumsum(steps, axis=1)
    poses = make_pose(yaw_pitch_rotation(yaws, pitches, xp=jnp), positions)
    return poses, positions[:, -1], yaws[:, -1], pitches[:, -1]
