"""SynthWorld: procedural scenes with exact ground truth (RGB, z-depth, poses, hand keypoints).

Public API: `generate_clip`, `split_of` (clips.py); `navigation_scene`, `Scene` (scenes.py);
`render_frames`, `render_dynamic_frames`, `Frame` (render.py).
"""

from worldscape_jax.data.synthworld.clips import FAMILIES, generate_clip, split_of
from worldscape_jax.data.synthworld.render import Frame, render_dynamic_frames, render_frames
from worldscape_jax.data.synthworld.scenes import Scene, navigation_scene

__all__ = ["FAMILIES", "Frame", "Scene", "generate_clip", "navigation_scene", "render_dynamic_frames",
           "render_frames", "split_of"]
