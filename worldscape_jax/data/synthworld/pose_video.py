"""Pose videos: 21 hand keypoints drawn with the OpenPose hand palette on black (RGB uint8).

Conventions of the OpenPose/DWPose hand drawer (research notes §2.2): 20 edges in the order of
`HAND_EDGES`, edge e coloured HSV(e / 20, 1, 1) * 255, later edges painted over earlier ones, then
every keypoint as a filled disc of colour (0, 0, 255) (blue in RGB, as the ControlNet annotator
returns it). Lines are `line_width` pixels wide, discs have radius `point_radius`; by default these
scale with the image (max(2, round(2 H / 512)) and max(1, 4 H / 512)) so the skeleton survives the
VAE's 8x downsampling at small sizes. A keypoint marked invalid (e.g. behind the camera) and every
edge touching it are skipped. Coordinates are pixels (x right, y down), pixel centres at +0.5.
Drawn in JAX (jitted, vmapped over frames) so streaming can make pose frames on the device.
"""

from __future__ import annotations

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, UInt8

HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
              (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20))
EDGE_COLORS = np.round(np.asarray([colorsys.hsv_to_rgb(e / len(HAND_EDGES), 1.0, 1.0)
                                   for e in range(len(HAND_EDGES))]) * 255.0).astype(np.uint8)  # as cv2 rounds
KEYPOINT_COLOR = (0.0, 0.0, 255.0)


def default_widths(height: int, width: int) -> tuple[float, float]:
    """(line_width, point_radius) in pixels for an image of this size."""
    short = min(height, width)
    return float(max(2, round(2 * short / 512))), float(max(1.0, 4 * short / 512))


def _segment_distance(points, a, b):
    """Distance from points [..., 2] to the segments a-b [E, 2] -> [E, ...]."""
    ab = b - a
    ap = points[None] - a[:, None, None]
    s = jnp.clip(jnp.sum(ap * ab[:, None, None], -1) / jnp.maximum(jnp.sum(ab * ab, -1), 1e-12)[:, None, None], 0, 1)
    return jnp.linalg.norm(ap - s[..., None] * ab[:, None, None], axis=-1)


def _draw_one(keypoints, valid, height, width, line_width, point_radius):
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) + 0.5,
                              jnp.arange(width, dtype=jnp.float32) + 0.5, indexing="ij")
    pixels = jnp.stack([cols, rows], axis=-1)
    edges = np.asarray(HAND_EDGES)
    edge_valid = valid[edges[:, 0]] & valid[edges[:, 1]]
    on_edge = (_segment_distance(pixels, keypoints[edges[:, 0]], keypoints[edges[:, 1]]) <= line_width / 2)
    on_edge = on_edge & edge_valid[:, None, None]
    last_edge = jnp.max(jnp.where(on_edge, jnp.arange(1, len(edges) + 1)[:, None, None], 0), axis=0)
    palette = jnp.concatenate([jnp.zeros((1, 3)), jnp.asarray(EDGE_COLORS, jnp.float32)], axis=0)
    canvas = palette[last_edge]
    near_point = jnp.linalg.norm(pixels[None] - keypoints[:, None, None], axis=-1) <= point_radius
    on_point = jnp.any(near_point & valid[:, None, None], axis=0)
    canvas = jnp.where(on_point[..., None], jnp.asarray(KEYPOINT_COLOR), canvas)
    return jnp.round(canvas).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames=("height", "width", "line_width", "point_radius"))
def _draw(keypoints, valid, height, width, line_width, point_radius):
    return jax.vmap(_draw_one, in_axes=(0, 0, None, None, None, None))(
        keypoints, valid, height, width, line_width, point_radius)


def draw_hand_poses(keypoints_2d: Float[Array, "f 21 2"], valid: Bool[Array, "f 21"] | None, height: int,
                    width: int, line_width: float | None = None,
                    point_radius: float | None = None) -> UInt8[Array, "f h w 3"]:
    """Pose video [F, H, W, 3] uint8 of one hand per frame (keypoints in pixels, OpenPose order)."""
    keypoints_2d = jnp.asarray(keypoints_2d, jnp.float32)
    if keypoints_2d.ndim != 3 or keypoints_2d.shape[1:] != (21, 2):
        raise ValueError(f"draw_hand_poses: keypoints_2d must be [F, 21, 2] pixels, got {keypoints_2d.shape}")
    if valid is None:
        valid = jnp.all(jnp.isfinite(keypoints_2d), axis=-1)
    valid = jnp.asarray(valid, bool)
    if valid.shape != keypoints_2d.shape[:2]:
        raise ValueError(f"draw_hand_poses: valid must be [F, 21] like the keypoints, got {valid.shape}")
    default_line, default_radius = default_widths(height, width)
    keypoints_2d = jnp.where(valid[..., None], keypoints_2d, -1e4)  # NaNs would poison the distances
    return _draw(keypoints_2d, valid, height, width, line_width or default_line, point_radius or default_radius)
