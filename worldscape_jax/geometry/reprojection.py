"""The first frame re-projected through each later camera's rotation: a turn shown, not described.

For a camera that only turns, frame t is exactly frame 0 seen through the homography K_0 R K_t^-1
(R = R_0^T R_t, the turn since frame 0), whatever the scene's depth: no depth is needed, and no
parallax is missing. `turn_warp` builds that picture for every frame of a clip, sampling frame 0
bilinearly where each pixel's ray lands in it and painting black (-1) where it lands outside frame 0
or behind its camera. For a camera that also travels it is the rotation-compensated first frame: the
travel (parallax, looming) is left for the model to add.

Why a model wants it (not in the paper; `configs/teacher.py:tiny,turn_warp`): Plücker rays say how
the camera moved, but a patch-based DiT then has to learn to resample its latents by fractions of a
latent pixel, and a 1.6 M-parameter teacher at 64x64 does that only to a few tenths of a pixel, which
a pose estimator reads as travel (BENCHMARKS.md, "What would make turns rigid"). Given the turned
picture as a condition, holding a turn rigid is a copy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from worldscape_jax.geometry.cameras import intrinsics_to_pixels, relative_to_first
from worldscape_jax.geometry.plucker import camera_directions

OUTSIDE = -1.0  # the value of pixels whose ray misses frame 0 (black in [-1, 1] video)


def _check(first_frame: Array, c2w: Array, intrinsics: Array) -> None:
    if first_frame.ndim != 4 or first_frame.shape[-1] != 3:
        raise ValueError(f"turn_warp: first_frame must be [B, H, W, 3], got shape {first_frame.shape}")
    batch = first_frame.shape[0]
    if c2w.ndim != 4 or c2w.shape[0] != batch or c2w.shape[-2:] != (4, 4):
        raise ValueError(f"turn_warp: c2w must be [B={batch}, F, 4, 4], got shape {c2w.shape}")
    if intrinsics.shape != (*c2w.shape[:2], 4):
        raise ValueError(f"turn_warp: intrinsics must be [B, F, 4] = {(*c2w.shape[:2], 4)} (fx, fy, cx, cy "
                         f"normalised), got shape {intrinsics.shape}")


def source_pixels(c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"], height: int,
                  width: int) -> tuple[Float[Array, "b f h w 2"], Float[Array, "b f h w"]]:
    """Where each pixel of frame t looks in frame 0 under the turn alone: (x, y) in frame 0's pixel units
    (pixel centres at i + 0.5), and whether the ray points in front of camera 0."""
    relative = relative_to_first(jnp.asarray(c2w, jnp.float32))
    intrinsics = jnp.asarray(intrinsics, jnp.float32)
    d_cam = camera_directions(intrinsics, height, width)  # [b, f, h, w, 3]
    d_first = (relative[:, :, None, None, :3, :3] @ d_cam[..., None])[..., 0]
    fx, fy, cx, cy = jnp.moveaxis(intrinsics_to_pixels(intrinsics[:, :1], height, width), -1, 0)
    z = d_first[..., 2]
    safe_z = jnp.where(z > 1e-6, z, 1.0)
    x = fx[..., None, None] * d_first[..., 0] / safe_z + cx[..., None, None]
    y = fy[..., None, None] * d_first[..., 1] / safe_z + cy[..., None, None]
    return jnp.stack([x, y], axis=-1), z > 1e-6


def bilinear(image: Float[Array, "h w c"], xy: Float[Array, "... 2"]) -> tuple[Array, Array]:
    """`image` sampled bilinearly at pixel positions `xy` (centres at i + 0.5), and whether each position
    lies on the image ([0, W] x [0, H]; within half a pixel of the border the edge pixels are held)."""
    height, width = image.shape[:2]
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width) & (xy[..., 1] >= 0) & (xy[..., 1] <= height)
    col = jnp.clip(xy[..., 0] - 0.5, 0, width - 1)
    row = jnp.clip(xy[..., 1] - 0.5, 0, height - 1)
    c0 = jnp.clip(jnp.floor(col), 0, width - 2)
    r0 = jnp.clip(jnp.floor(row), 0, height - 2)
    wc, wr = (col - c0)[..., None], (row - r0)[..., None]
    c0, r0 = c0.astype(jnp.int32), r0.astype(jnp.int32)
    top = image[r0, c0] * (1 - wc) + image[r0, c0 + 1] * wc
    bottom = image[r0 + 1, c0] * (1 - wc) + image[r0 + 1, c0 + 1] * wc
    return top * (1 - wr) + bottom * wr, inside


def turn_warp_coverage(c2w: Float[Array, "b f 4 4"], intrinsics: Float[Array, "b f 4"], height: int,
                       width: int) -> Float[Array, "b f h w"]:
    """1 where `turn_warp` of the same path has a pixel of frame 0, 0 where it is `OUTSIDE`."""
    xy, in_front = source_pixels(c2w, intrinsics, height, width)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width) & (xy[..., 1] >= 0) & (xy[..., 1] <= height)
    return (inside & in_front).astype(jnp.float32)


@jax.jit
def turn_warp(first_frame: Float[Array, "b h w 3"], c2w: Float[Array, "b f 4 4"],
              intrinsics: Float[Array, "b f 4"]) -> Float[Array, "b f h w 3"]:
    """Frame 0 as each camera of the path would see it after the path's rotation alone.

    first_frame in [-1, 1]; c2w world poses (OpenCV axes; made relative to frame 0 here); normalised
    intrinsics per frame. Frame 0 of the result is `first_frame` itself; pixels whose ray leaves frame 0
    (or points behind its camera) are `OUTSIDE`.
    """
    _check(first_frame, c2w, intrinsics)
    height, width = first_frame.shape[1:3]
    xy, in_front = source_pixels(c2w, intrinsics, height, width)
    values, inside = jax.vmap(bilinear)(first_frame.astype(jnp.float32), xy)
    valid = (inside & in_front)[..., None]
    return jnp.where(valid, values, OUTSIDE)
