"""Plücker ray embeddings of cameras, exactly as CameraCtrl's `ray_condition` computes them.

For pixel (i, j) (column i, row j) the ray passes through the pixel centre (i + 0.5, j + 0.5). Its
camera-frame direction ((u - cx) / fx, (v - cy) / fy, 1) is normalised to unit length *before* it is
rotated to the world, d = R_c2w d_cam; the origin is the camera centre o = t_c2w. The embedding is
[o x d, d]: the moment first, then the direction, 6 channels per pixel. No scale normalisation.

`ray_turn` is an optional extra (not in CameraCtrl or the paper): d - d_cam, how far each pixel's ray
has turned since the reference camera. Plücker rays carry no pixel position, so from them alone a
token cannot tell which way its own pixels' rays pointed at frame 0; for a small turn by omega,
d - d_cam ~ omega x d_cam is the pixel's motion at infinity, the whole image motion of a pure turn.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from worldscape_jax.geometry.cameras import intrinsics_to_pixels


def camera_directions(intrinsics: Float[Array, "... 4"], height: int, width: int) -> Float[Array, "... h w 3"]:
    """Unit camera-frame ray directions through every pixel centre (OpenCV axes)."""
    fx, fy, cx, cy = jnp.moveaxis(intrinsics_to_pixels(intrinsics, height, width), -1, 0)
    rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) + 0.5,
                              jnp.arange(width, dtype=jnp.float32) + 0.5, indexing="ij")
    x = (cols - cx[..., None, None]) / fx[..., None, None]
    y = (rows - cy[..., None, None]) / fy[..., None, None]
    d = jnp.stack([x, y, jnp.ones_like(x)], axis=-1)
    return d / jnp.linalg.norm(d, axis=-1, keepdims=True)


def world_rays(c2w: Float[Array, "... 4 4"], intrinsics: Float[Array, "... 4"], height: int,
               width: int) -> tuple[Float[Array, "... h w 3"], Float[Array, "... h w 3"]]:
    """Ray origins and unit world directions of every pixel: (o [..., H, W, 3], d [..., H, W, 3])."""
    c2w = jnp.asarray(c2w, jnp.float32)
    d_cam = camera_directions(jnp.asarray(intrinsics, jnp.float32), height, width)
    rotation = c2w[..., None, None, :3, :3]
    d_world = (rotation @ d_cam[..., None])[..., 0]
    origin = jnp.broadcast_to(c2w[..., None, None, :3, 3], d_world.shape)
    return origin, d_world


def _check_camera(name: str, c2w: Array, intrinsics: Array) -> None:
    if c2w.shape[-2:] != (4, 4):
        raise ValueError(f"{name}: c2w must be [..., 4, 4], got shape {c2w.shape}")
    if intrinsics.shape[-1] != 4:
        raise ValueError(f"{name}: intrinsics must be [..., 4] (fx, fy, cx, cy), got shape {intrinsics.shape}")


@functools.partial(jax.jit, static_argnames=("height", "width"))
def plucker_rays(c2w: Float[Array, "... 4 4"], intrinsics: Float[Array, "... 4"], height: int,
                 width: int) -> Float[Array, "... h w 6"]:
    """Plücker embedding [o x d, d] of every pixel ray, [..., H, W, 6] float32.

    c2w [..., 4, 4] and normalised intrinsics [..., 4] share their leading dims (or broadcast).
    Make the poses relative to the clip's first frame (`cameras.relative_to_first`) beforehand, as
    CameraCtrl does; this function does not.
    """
    _check_camera("plucker_rays", c2w, intrinsics)
    origin, direction = world_rays(c2w, intrinsics, height, width)
    return jnp.concatenate([jnp.cross(origin, direction), direction], axis=-1)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def ray_turn(c2w: Float[Array, "... 4 4"], intrinsics: Float[Array, "... 4"], height: int,
             width: int) -> Float[Array, "... h w 3"]:
    """d - d_cam per pixel, [..., H, W, 3]: the turn of each pixel's ray relative to the reference frame.

    Zero wherever the camera has not rotated (however far it travelled); bounded by 2. Like
    `plucker_rays`, it expects poses already relative to the clip's first frame.
    """
    _check_camera("ray_turn", c2w, intrinsics)
    _, direction = world_rays(c2w, intrinsics, height, width)  # jit folds its d_cam and this one into one
    return direction - camera_directions(jnp.asarray(intrinsics, jnp.float32), height, width)
