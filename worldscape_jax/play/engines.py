"""What one chunk of a played stream is: the interface a play session drives, and the ground-truth engine.

An engine turns a scene's first frame into a stream state and advances it one chunk per call:

    state = engine.start(scene)                         # SceneStart -> the engine's state
    state, frames = engine.step(state, actions)         # bool [frames_per_chunk, 8] -> uint8 [n, H, W, 3]
    engine.pose(state)                                  # c2w [4, 4] of the newest frame
    engine.memory(state)                                # MemoryView: what the next chunk attends to

`ModelEngine` (model_engine.py) is the causal student's jitted stream step. `SynthWorldEngine` here
renders the real SynthWorld scene along the keys' camera path: the ground truth a player can compare
the model with, and a stand-in for the model where none is needed (it has no memory, so its
MemoryView is empty).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax.numpy as jnp
import numpy as np
from jaxtyping import Bool, Float, Int, UInt8

from worldscape_jax.data.synthworld import scenes
from worldscape_jax.data.synthworld.clips import DEFAULT_SUPERSAMPLE, FREE_RADIUS
from worldscape_jax.data.synthworld.render import render_frames
from worldscape_jax.geometry.actions import ActionConfig, integrate
from worldscape_jax.play.keys import ACTION_KEYS, frame_deltas_of
from worldscape_jax.play.scene_start import SceneError, SceneStart


@dataclasses.dataclass(frozen=True)
class MemoryView:
    """Which latent frames the next chunk attends to, with their camera centres (for the map).

    Each group is (frame indices [n], camera centres [n, 3]); frame indices are absolute latent
    frame numbers of the stream (0 is the first image, the sink).
    """

    sink: tuple[Int[np.ndarray, "n"], Float[np.ndarray, "n 3"]]
    local: tuple[Int[np.ndarray, "n"], Float[np.ndarray, "n 3"]]
    selected: tuple[Int[np.ndarray, "n"], Float[np.ndarray, "n 3"]]

    @staticmethod
    def empty() -> "MemoryView":
        none = (np.zeros(0, np.int64), np.zeros((0, 3), np.float32))
        return MemoryView(none, none, none)


class Engine(Protocol):
    name: str
    height: int
    width: int
    frames_per_chunk: int       # latent frames per chunk
    pixel_frames_per_chunk: int  # frames one step returns

    def start(self, scene: SceneStart) -> Any: ...
    def step(self, state: Any, actions: Bool[np.ndarray, "c 8"]) -> tuple[Any, UInt8[np.ndarray, "n h w 3"]]: ...
    def pose(self, state: Any) -> Float[np.ndarray, "4 4"]: ...
    def memory(self, state: Any) -> MemoryView: ...


def check_actions(actions: np.ndarray, frames_per_chunk: int) -> np.ndarray:
    """bool [frames_per_chunk, 8]; ValueError naming the expected shape otherwise."""
    actions = np.asarray(actions)
    if actions.shape != (frames_per_chunk, len(ACTION_KEYS)) or actions.dtype != bool:
        raise ValueError(f"stream step: actions must be bool [{frames_per_chunk}, {len(ACTION_KEYS)}] over "
                         f"{ACTION_KEYS!r}, got {actions.dtype} {actions.shape}")
    return actions


@dataclasses.dataclass(frozen=True)
class GroundTruthState:
    scene: Any                       # the SynthWorld Scene pytree
    c2w: Float[np.ndarray, "4 4"]
    intrinsics: Float[np.ndarray, "4"]
    latent_frame: int                # latent frames so far (the first image is frame 0)


class SynthWorldEngine:
    """Renders the SynthWorld scene of the start's seed along the keys' path (no model, no memory).

    Anti-aliased like the training clips by default (9 rays per pixel), so the pose estimator reads
    its turns as it does on the data; supersample=1 renders about nine times faster.
    """

    name = "synthworld"

    def __init__(self, height: int = 64, width: int = 64, frames_per_chunk: int = 1,
                 supersample: int = DEFAULT_SUPERSAMPLE,
                 action_config: ActionConfig = ActionConfig()):
        self.height, self.width, self.frames_per_chunk = height, width, frames_per_chunk
        self.supersample, self.action_config = supersample, action_config
        self.pixel_frames_per_chunk = frames_per_chunk * action_config.frames_per_step

    def start(self, scene: SceneStart) -> GroundTruthState:
        if scene.source != "synthworld" or scene.seed is None:
            raise SceneError("the synthworld engine renders SynthWorld scenes only; start from a seed "
                             "(an uploaded image has no scene behind it)")
        return GroundTruthState(scenes.navigation_scene(scene.seed, FREE_RADIUS), np.asarray(scene.c2w, np.float32),
                                np.asarray(scene.intrinsics, np.float32), 0)

    def step(self, state: GroundTruthState, actions: np.ndarray) -> tuple[GroundTruthState, np.ndarray]:
        deltas = frame_deltas_of(check_actions(actions, self.frames_per_chunk), self.action_config)
        c2w = integrate(deltas, state.c2w)[1:]
        intrinsics = np.broadcast_to(state.intrinsics, (len(c2w), 4))
        rgb = render_frames(state.scene, jnp.asarray(c2w), jnp.asarray(intrinsics), self.height, self.width,
                            self.supersample).rgb
        frames = np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
        return dataclasses.replace(state, c2w=c2w[-1], latent_frame=state.latent_frame + self.frames_per_chunk), frames

    def pose(self, state: GroundTruthState) -> np.ndarray:
        return state.c2w

    def memory(self, state: GroundTruthState) -> MemoryView:
        return MemoryView.empty()
