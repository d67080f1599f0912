"""Keys held by a player -> the stream step's action array, and key scripts for headless play.

The stream step takes, per latent frame of a chunk, a bool vector over `ACTION_KEYS` (W A S D Q E R F,
geometry/actions.py semantics). A browser sends the names of the keys held at a chunk boundary;
anything else is ignored and counted, never an error, since a player's keyboard has many more keys.
Opposite keys held together cancel (their effects add up to zero), as they would on a gamepad.
"""

from __future__ import annotations

import numpy as np

from worldscape_jax.geometry.actions import OPPOSITES, Action, ActionConfig, frame_deltas, parse_actions

ACTION_KEYS = "wasdqerf"


def held_keys_to_vector(keys: list[str]) -> tuple[np.ndarray, int]:
    """(bool [8] over ACTION_KEYS, the number of names that are not action keys).

    Names are compared case-insensitively ("W" and "w" are the same key); repeats count once.
    """
    vector = np.zeros(len(ACTION_KEYS), bool)
    unknown = 0
    for name in keys:
        key = name.lower() if isinstance(name, str) else None
        if key is not None and len(key) == 1 and key in ACTION_KEYS:
            vector[ACTION_KEYS.index(key)] = True
        else:
            unknown += 1
    return vector, unknown


def chunk_actions(held: np.ndarray, frames_per_chunk: int) -> np.ndarray:
    """The keys held at a chunk boundary, held for every latent frame of the chunk: bool [fpc, 8]."""
    return np.broadcast_to(np.asarray(held, bool), (frames_per_chunk, len(ACTION_KEYS))).copy()


def vector_to_text(held: np.ndarray) -> str:
    """'we' for W and E held; '.' for none (the key-script notation of geometry/actions.py)."""
    text = "".join(key for key, on in zip(ACTION_KEYS, np.asarray(held, bool)) if on)
    return text or "."


def script_to_chunks(script: str, frames_per_chunk: int) -> np.ndarray:
    """A key script like "w*40,e*20,s*40" (counts in latent frames) -> actions bool [chunks, fpc, 8].

    The script is validated by geometry.actions.parse_actions (unknown keys, opposite keys in one
    item and bad counts are errors naming the item). A last chunk that the script does not fill is
    padded with standing still.
    """
    steps = [vector for action in parse_actions(script) for vector in [_item_vector(action.keys)] * action.steps]
    chunks = -(-len(steps) // frames_per_chunk)
    steps += [np.zeros(len(ACTION_KEYS), bool)] * (chunks * frames_per_chunk - len(steps))
    return np.stack(steps).reshape(chunks, frames_per_chunk, len(ACTION_KEYS))


def _item_vector(keys: str) -> np.ndarray:
    return np.asarray([key in keys for key in ACTION_KEYS], bool)


def frame_deltas_of(actions: np.ndarray, config: ActionConfig = ActionConfig()) -> np.ndarray:
    """Per-pixel-frame (forward, right, yaw, pitch) [fpc * frames_per_step, 4] of bool actions [fpc, 8].

    geometry.actions.frame_deltas for held keys, where opposites may be held together (they cancel).
    """
    actions = np.asarray(actions, bool)
    if actions.ndim != 2 or actions.shape[1] != len(ACTION_KEYS):
        raise ValueError(f"frame_deltas_of: actions must be bool [frames, {len(ACTION_KEYS)}] over "
                         f"{ACTION_KEYS!r}, got shape {actions.shape}")
    return frame_deltas([Action(_without_opposites(vector_to_text(step)), 1) for step in actions], config)


def _without_opposites(keys: str) -> str:
    for a, b in OPPOSITES:
        if a in keys and b in keys:
            keys = keys.replace(a, "").replace(b, "")
    return keys or "."
