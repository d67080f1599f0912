"""Camera poses and intrinsics in one convention for the whole project.

Conventions (see ARCHITECTURE.md):
  * OpenCV camera axes: x right, y down, z forward (the optical axis).
  * Poses are 4x4 camera-to-world matrices `c2w` (float32); `w2c = inv(c2w)`.
  * Intrinsics are kept normalised, `[fx/W, fy/H, cx/W, cy/H]`, with pixel (i, j) covering
    [i, i+1) x [j, j+1), so its centre is at (i + 0.5, j + 0.5). Under this convention a resize
    (even an anisotropic one) leaves the normalised intrinsics unchanged; a crop changes them.
  * Clips are made relative to their first frame as CameraCtrl does:
    c2w_rel_i = inv(c2w_0) @ c2w_i, so frame 0 becomes the identity.

Every function accepts numpy or JAX arrays and returns the same kind, so the data pipeline (numpy,
no device) and the model (jit) share one implementation. `validate_c2w` is host-side (numpy) and
raises an error naming the field and the frame.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy")


def _xp(*arrays: Any):
    """numpy for numpy inputs, jax.numpy as soon as one input is a JAX array or tracer."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def invert_pose(pose: Float[Array, "... 4 4"]) -> Float[Array, "... 4 4"]:
    """Inverse of a rigid transform [R t; 0 1] as [R^T, -R^T t; 0 1] (c2w <-> w2c)."""
    xp = _xp(pose)
    rot = pose[..., :3, :3]
    trans = pose[..., :3, 3:]
    rot_t = xp.swapaxes(rot, -1, -2)
    top = xp.concatenate([rot_t, -rot_t @ trans], axis=-1)
    bottom = xp.broadcast_to(xp.asarray([0, 0, 0, 1], pose.dtype), pose.shape[:-2] + (1, 4))
    return xp.concatenate([top, bottom], axis=-2)


def c2w_to_w2c(c2w: Float[Array, "... 4 4"]) -> Float[Array, "... 4 4"]:
    """World-to-camera from camera-to-world."""
    return invert_pose(c2w)


def w2c_to_c2w(w2c: Float[Array, "... 4 4"]) -> Float[Array, "... 4 4"]:
    """Camera-to-world from world-to-camera (RealEstate10K files store w2c)."""
    return invert_pose(w2c)


def make_pose(rotation: Float[Array, "... 3 3"], translation: Float[Array, "... 3"]) -> Float[Array, "... 4 4"]:
    """Assembles [R t; 0 0 0 1] from a rotation and a translation."""
    xp = _xp(rotation, translation)
    rotation = xp.asarray(rotation)
    translation = xp.asarray(translation, rotation.dtype)
    top = xp.concatenate([rotation, translation[..., :, None]], axis=-1)
    bottom = xp.broadcast_to(xp.asarray([0, 0, 0, 1], rotation.dtype), rotation.shape[:-2] + (1, 4))
    return xp.concatenate([top, bottom], axis=-2)


def relative_to_first(c2w: Float[Array, "... f 4 4"]) -> Float[Array, "... f 4 4"]:
    """CameraCtrl's relative poses: inv(c2w_0) @ c2w_i for every frame i (frame 0 -> identity)."""
    return invert_pose(c2w[..., :1, :, :]) @ c2w


def intrinsics_to_pixels(intrinsics: Float[Array, "... 4"], height: int, width: int) -> Float[Array, "... 4"]:
    """Normalised [fx, fy, cx, cy] to pixel units at an image of `height` x `width`."""
    xp = _xp(intrinsics)
    scale = xp.asarray([width, height, width, height], dtype=intrinsics.dtype)
    return intrinsics * scale


def intrinsics_to_normalised(pixel_intrinsics: Float[Array, "... 4"], height: int, width: int) -> Float[Array, "... 4"]:
    """Pixel [fx, fy, cx, cy] at `height` x `width` to the normalised form."""
    xp = _xp(pixel_intrinsics)
    scale = xp.asarray([width, height, width, height], dtype=pixel_intrinsics.dtype)
    return pixel_intrinsics / scale


def intrinsics_matrix(intrinsics: Float[Array, "... 4"], height: int, width: int) -> Float[Array, "... 3 3"]:
    """The 3x3 pixel matrix K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] from normalised intrinsics."""
    xp = _xp(intrinsics)
    fx, fy, cx, cy = xp.moveaxis(intrinsics_to_pixels(intrinsics, height, width), -1, 0)
    zero, one = xp.zeros_like(fx), xp.ones_like(fx)
    rows = [xp.stack([fx, zero, cx], -1), xp.stack([zero, fy, cy], -1), xp.stack([zero, zero, one], -1)]
    return xp.stack(rows, axis=-2)


def intrinsics_from_fov(fov_x_deg: float, height: int, width: int, square_pixels: bool = True) -> np.ndarray:
    """Normalised intrinsics of a centred pinhole with horizontal field of view `fov_x_deg`.

    With square pixels fy (in pixels) equals fx, so the normalised fy is fx * W / H.
    """
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f"fov_x_deg must be in (0, 180), got {fov_x_deg}")
    fx = 0.5 / np.tan(np.deg2rad(fov_x_deg) / 2.0)
    fy = fx * width / height if square_pixels else fx
    return np.asarray([fx, fy, 0.5, 0.5], np.float32)


def resize_intrinsics(intrinsics: Float[Array, "... 4"], src_hw: tuple[int, int],
                      dst_hw: tuple[int, int]) -> Float[Array, "... 4"]:
    """Normalised intrinsics after resizing an image from `src_hw` to `dst_hw` (a stretch, no crop).

    A resize maps continuous pixel coordinates u -> u * W'/W, v -> v * H'/H, so fx/W, cx/W (and the
    y terms) are unchanged: the result equals the input. The sizes are checked so that a caller who
    meant a crop finds out.
    """
    for name, (h, w) in (("src_hw", src_hw), ("dst_hw", dst_hw)):
        if h <= 0 or w <= 0:
            raise ValueError(f"resize_intrinsics: {name} must be positive (height, width), got {(h, w)}")
    return intrinsics * 1


def crop_intrinsics(intrinsics: Float[Array, "... 4"], image_hw: tuple[int, int], top: int, left: int,
                    crop_hw: tuple[int, int]) -> Float[Array, "... 4"]:
    """Normalised intrinsics of the crop [top:top+h, left:left+w] of an image of size `image_hw`.

    In pixels the principal point shifts by (left, top) and the focal length stays; the result is
    re-normalised by the crop size.
    """
    height, width = image_hw
    crop_h, crop_w = crop_hw
    if not (0 <= top and 0 <= left and crop_h > 0 and crop_w > 0
            and top + crop_h <= height and left + crop_w <= width):
        raise ValueError(f"crop_intrinsics: crop top={top} left={left} size={crop_hw} does not fit "
                         f"inside the image of size {image_hw}")
    xp = _xp(intrinsics)
    pixels = intrinsics_to_pixels(intrinsics, height, width)
    shift = xp.asarray([0.0, 0.0, left, top], dtype=pixels.dtype)
    return intrinsics_to_normalised(pixels - shift, crop_h, crop_w)


def _normalise(v, xp):
    return v / xp.linalg.norm(v, axis=-1, keepdims=True)


def look_at(eye: Float[Array, "... 3"], target: Float[Array, "... 3"],
            up: Float[Array, "3"] | tuple[float, float, float] = (0.0, -1.0, 0.0)) -> Float[Array, "... 4 4"]:
    """c2w of a camera at `eye` whose optical axis (+z) points at `target`.

    `up` is the world's up direction; the default (0, -1, 0) matches worlds that, like the OpenCV
    camera, point y down (SynthWorld does). The camera's y axis (down in the image) is the component
    of -up orthogonal to the optical axis, so the image is upright. Raises if `up` is parallel to the
    viewing direction.
    """
    xp = _xp(eye, target)
    eye = xp.asarray(eye, xp.float32)
    target = xp.asarray(target, xp.float32)
    up = xp.broadcast_to(xp.asarray(up, xp.float32), eye.shape)
    forward = target - eye
    if xp is np:
        if np.any(np.linalg.norm(forward, axis=-1) < 1e-8):
            raise ValueError("look_at: eye and target coincide; the viewing direction is undefined")
        if np.any(np.linalg.norm(np.cross(forward, up), axis=-1) < 1e-6 * np.linalg.norm(forward, axis=-1)):
            raise ValueError(f"look_at: up {np.asarray(up)} is parallel to the viewing direction")
    z = _normalise(forward, xp)
    x = _normalise(xp.cross(-up, z), xp)  # right = down x forward in a right-handed (x, y, z)
    y = xp.cross(z, x)
    rotation = xp.stack([x, y, z], axis=-1)
    return make_pose(rotation, eye)


def validate_c2w(c2w: np.ndarray, field: str = "c2w", atol: float = 1e-3) -> None:
    """Raises ValueError unless every pose in `c2w` [..., 4, 4] is a proper rigid transform.

    Checks: shape, finite values, last row (0, 0, 0, 1), R^T R = I within `atol`, det R = +1 (no
    reflection). The message names `field` and the first offending frame index.
    """
    c2w = np.asarray(c2w, np.float64)
    if c2w.ndim < 2 or c2w.shape[-2:] != (4, 4):
        raise ValueError(f"{field}: expected [..., 4, 4] poses, got shape {c2w.shape}")
    flat = c2w.reshape(-1, 4, 4)
    for frame, pose in enumerate(flat):
        where = f"{field}[frame {frame}]" if flat.shape[0] > 1 else field
        if not np.all(np.isfinite(pose)):
            raise ValueError(f"{where}: pose has non-finite values:\n{pose}")
        if not np.allclose(pose[3], [0, 0, 0, 1], atol=atol):
            raise ValueError(f"{where}: last row must be (0, 0, 0, 1), got {pose[3]}")
        rot = pose[:3, :3]
        error = np.abs(rot.T @ rot - np.eye(3)).max()
        if error > atol:
            raise ValueError(f"{where}: rotation is not orthonormal (max |R^T R - I| = {error:.3g} > {atol})")
        det = np.linalg.det(rot)
        if det < 0:
            raise ValueError(f"{where}: rotation has det {det:.3f}; expected +1 (a reflection, "
                             "e.g. a flipped axis, is not a camera pose)")


def validate_intrinsics(intrinsics: np.ndarray, field: str = "intrinsics") -> None:
    """Raises ValueError unless `intrinsics` [..., 4] holds finite normalised values with fx, fy > 0."""
    intrinsics = np.asarray(intrinsics, np.float64)
    if intrinsics.ndim < 1 or intrinsics.shape[-1] != 4:
        raise ValueError(f"{field}: expected [..., 4] normalised (fx, fy, cx, cy), got shape {intrinsics.shape}")
    flat = intrinsics.reshape(-1, 4)
    for frame, row in enumerate(flat):
        if not np.all(np.isfinite(row)) or row[0] <= 0 or row[1] <= 0:
            raise ValueError(f"{field}[frame {frame}]: expected finite (fx, fy, cx, cy) with fx, fy > 0, got {row}")
