"""Host-side (numpy) operations on one clip, the steps of the Grain pipeline.

A clip is a dict of numpy arrays whose per-frame entries share a leading frame axis:
  video uint8 [F,H,W,3], c2w [F,4,4], intrinsics [F,4] (normalised), and optionally depth [F,H,W],
  pose_video uint8 [F,H,W,3]; anything else (text_embedding, scene_seed, ...) is per clip.

Steps: pick frames with a stride, resize-to-cover then crop to the target size (updating the
intrinsics: a resize leaves normalised intrinsics unchanged, a crop shifts and re-normalises them),
and convert to the model's batch layout (video in [-1, 1], c2w relative to the first frame).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.geometry.cameras import crop_intrinsics, relative_to_first

PER_FRAME_KEYS = ("video", "c2w", "intrinsics", "depth", "pose_video", "timestamps_us", "hand_keypoints",
                  "hand_keypoints_2d")
IMAGE_KEYS = ("video", "pose_video")  # uint8 RGB, resized bilinearly
REQUIRED_KEYS = ("video", "c2w", "intrinsics")


def check_clip(clip: dict, name: str) -> int:
    """Checks keys, dtypes and that every per-frame entry has the same frame count; returns that count."""
    for key in REQUIRED_KEYS:
        if key not in clip:
            raise DataFormatError(name, f"the clip has no {key!r}; expected keys {REQUIRED_KEYS} at least", key=key)
    frames, height, width = clip["video"].shape[:3]
    expected = {"video": (frames, height, width, 3), "c2w": (frames, 4, 4), "intrinsics": (frames, 4),
                "depth": (frames, height, width), "pose_video": (frames, height, width, 3)}
    for key, shape in expected.items():
        if key in clip and tuple(np.shape(clip[key])) != shape:
            raise DataFormatError(name, f"expected shape {shape} (frames, size from 'video'); got "
                                        f"{tuple(np.shape(clip[key]))}", key=key)
    for key in IMAGE_KEYS:
        if key in clip and clip[key].dtype != np.uint8:
            raise DataFormatError(name, f"expected uint8 RGB frames; got {clip[key].dtype}", key=key)
    return frames


def sample_frame_indices(clip_frames: int, num_frames: int, stride: int, rng: np.random.Generator | None,
                         name: str = "clip") -> np.ndarray:
    """`num_frames` indices `start + stride * k`; the start is uniform over valid starts (0 if rng is None)."""
    if num_frames < 1 or stride < 1:
        raise DataFormatError(name, f"num_frames and stride must be >= 1; got {num_frames}, {stride}")
    span = (num_frames - 1) * stride + 1
    if clip_frames < span:
        raise DataFormatError(name, f"the clip has {clip_frames} frames; {num_frames} frames at stride {stride} "
                                    f"need at least {span}")
    start = 0 if rng is None else int(rng.integers(0, clip_frames - span + 1))
    return start + stride * np.arange(num_frames)


def take_frames(clip: dict, indices: np.ndarray) -> dict:
    """The clip restricted to `indices` (per-frame keys only; per-clip keys are kept as they are)."""
    return {key: (value[indices] if key in PER_FRAME_KEYS else value) for key, value in clip.items()}


def cover_size(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int]:
    """The smallest size with the source's aspect ratio (to a pixel) that covers `dst_hw`."""
    scale = max(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    return max(dst_hw[0], math.ceil(src_hw[0] * scale - 1e-6)), max(dst_hw[1], math.ceil(src_hw[1] * scale - 1e-6))


def crop_offset(size_hw: tuple[int, int], crop_hw: tuple[int, int], rng: np.random.Generator | None) -> tuple[int, int]:
    """Top-left corner of a crop: centred when rng is None, else uniform over valid positions."""
    slack = (size_hw[0] - crop_hw[0], size_hw[1] - crop_hw[1])
    if rng is None:
        return slack[0] // 2, slack[1] // 2
    return int(rng.integers(0, slack[0] + 1)), int(rng.integers(0, slack[1] + 1))


def resize_and_crop(clip: dict, out_hw: tuple[int, int], rng: np.random.Generator | None = None) -> dict:
    """Resizes the clip to cover `out_hw` (keeping the aspect ratio), then crops to `out_hw`.

    Images use bilinear (antialiased) resampling and depth nearest-neighbour, so no depth that no
    surface has is invented at edges. Intrinsics follow: unchanged by the resize, shifted and
    re-normalised by the crop.
    """
    src_hw = clip["video"].shape[1:3]
    size = cover_size(src_hw, out_hw)
    top, left = crop_offset(size, out_hw, rng)
    window = (slice(top, top + out_hw[0]), slice(left, left + out_hw[1]))
    out = dict(clip)
    for key in IMAGE_KEYS:
        if key in clip:
            out[key] = resize_frames(clip[key], size)[:, window[0], window[1]]
    if "depth" in clip:
        depth = np.asarray(clip["depth"], np.float32)
        out["depth"] = np.stack([_resize(frame, size, Image.NEAREST)[window] for frame in depth])
    out["intrinsics"] = crop_intrinsics(np.asarray(clip["intrinsics"], np.float32), size, top, left,
                                        out_hw).astype(np.float32)
    return out


def resize_frames(frames: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """uint8 RGB frames [F, H, W, 3] resized (bilinear, antialiased) to `size_hw` (a stretch if the aspect differs)."""
    return np.stack([_resize(frame, size_hw, Image.BILINEAR) for frame in frames])


def to_model_layout(clip: dict, keys: tuple[str, ...]) -> dict:
    """The batch element: `keys` only, video / pose video as float32 in [-1, 1], c2w relative to frame 0."""
    out = {}
    for key in keys:
        value = clip[key]
        if key in IMAGE_KEYS:
            out[key] = value.astype(np.float32) / 127.5 - 1.0
        elif key == "c2w":
            out[key] = relative_to_first(np.asarray(value, np.float64)).astype(np.float32)
        else:
            out[key] = np.asarray(value, np.float32)
    return out


def _resize(frame: np.ndarray, size_hw: tuple[int, int], resample) -> np.ndarray:
    if frame.shape[:2] == tuple(size_hw):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size_hw[1], size_hw[0]), resample))
