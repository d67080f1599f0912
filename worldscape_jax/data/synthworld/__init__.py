"""SynthWorld: procedural scenes with exact ground truth (RGB, z-depth, poses, hand keypoints).

Public API: `generate_clip`, `split_of`, `split_seeds` (clips.py); `navigation_scene`, `Scene` (scenes.py);
`render_frames`, `render_dynamic_frames`, `Frame`, `RENDER_VERSION` (render.py; include the version in
the key of any cache of rendered or encoded SynthWorld data: it changes whenever rendered pixels do,
and with it `PATHS_VERSION` (clips.py), which changes whenever a clip's camera path does).
"""

from worldscape_jax.data.synthworld.clips import (DEFAULT_SUPERSAMPLE, FAMILIES, PATHS_VERSION, generate_clip, split_of,
                                             split_seeds)
from worldscape_jax.data.synthworld.render import RENDER_VERSION, Frame, render_dynamic_frames, render_frames
from worldscape_jax.data.synthworld.scenes import Scene, navigation_scene

__all__ = ["DEFAULT_SUPERSAMPLE", "FAMILIES", "Frame", "PATHS_VERSION", "RENDER_VERSION", "Scene", "generate_clip",
           "navigation_scene", "render_dynamic_frames", "render_frames", "split_of", "split_seeds"]
