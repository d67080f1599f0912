"""EgoDex episodes: `<idx>.mp4` next to `<idx>.hdf5` (research notes, control_memory_metrics.md §2.1).

HDF5 keys read here:
  * `camera/intrinsic` [3, 3]: pixel intrinsics of the video (EgoDex: fx = fy = 736.63, c = (960, 540)
    at 1920x1080);
  * `transforms/camera` [N, 4, 4]: camera-to-world pose;
  * `transforms/<joint>` [N, 4, 4]: world pose of each joint; its translation is the joint position;
  * `confidences/<joint>` [N]: tracking confidence of each joint.

Each hand has 25 joints: the wrist `<side>Hand`, four thumb joints, and five per finger (Metacarpal,
Knuckle, IntermediateBase, IntermediateTip, Tip). The 21 OpenPose / MANO keypoints are the wrist,
the four thumb joints, and for index, middle, ring and little fingers Knuckle, IntermediateBase,
IntermediateTip, Tip (the metacarpals are dropped).

Camera axes: third-party loaders project with u = fx x/z + cx, v = fy y/z + cy and z > 0, i.e. they
treat `transforms/camera` as OpenCV axes; that is our default (`camera_axes="opencv"`). If a real
file shows ARKit axes (x right, y up, z backward), pass `camera_axes="arkit"`, which re-axes the
camera by diag(1, -1, -1). This has not been checked on a real EgoDex file (none can be downloaded
here): check one frame's projected wrist against the video before training on it.

Checks (every failure is a DataFormatError naming the file and the dataset): datasets are plain
numeric arrays whose size is checked before they are read; poses (camera and joints) are rigid;
confidences lie in [0, 1]; the principal point lies inside the image; an episode has >= 1 frame;
the description is a UTF-8 string.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from worldscape_jax.data import checks
from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import frames as frame_io
from worldscape_jax.geometry.cameras import intrinsics_to_normalised, invert_pose

SIDES = ("left", "right")
FINGERS = ("Index", "Middle", "Ring", "Little")
THUMB_JOINTS = ("ThumbKnuckle", "ThumbIntermediateBase", "ThumbIntermediateTip", "ThumbTip")
FINGER_JOINTS = ("Knuckle", "IntermediateBase", "IntermediateTip", "Tip")
EGODEX_IMAGE_HW = (1080, 1920)
ARKIT_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def hand_joint_names(side: str) -> list[str]:
    """The 25 EgoDex joints of one hand (`side` is "left" or "right")."""
    names = [f"{side}Hand"] + [f"{side}{joint}" for joint in THUMB_JOINTS]
    for finger in FINGERS:
        names += [f"{side}{finger}FingerMetacarpal"] + [f"{side}{finger}Finger{j}" for j in FINGER_JOINTS]
    return names


def openpose_joint_names(side: str) -> list[str]:
    """The 21 EgoDex joints of one hand in OpenPose order (wrist, thumb 1-4, index 5-8, ..., little 17-20)."""
    return [name for name in hand_joint_names(side) if not name.endswith("Metacarpal")]


def project_to_pixels(points_world: np.ndarray, c2w: np.ndarray, pixel_intrinsics: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """World points [F, ..., 3] -> (pixels [F, ..., 2], camera depth z [F, ...]) with per-frame c2w [F, 4, 4].

    `pixel_intrinsics` is [3, 3] (shared) or [F, 3, 3]. Pixel (u, v) is in the continuous convention
    where pixel i covers [i, i+1). Points behind the camera (z <= 0) get NaN pixels.
    """
    w2c = invert_pose(np.asarray(c2w, np.float64))
    frames = points_world.shape[0]
    flat = np.asarray(points_world, np.float64).reshape(frames, -1, 3)
    cam = np.einsum("fij,fnj->fni", w2c[:, :3, :3], flat) + w2c[:, None, :3, 3]
    k = np.broadcast_to(np.asarray(pixel_intrinsics, np.float64), (frames, 3, 3))
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = k[:, None, 0, 0] * cam[..., 0] / z + k[:, None, 0, 2]
        v = k[:, None, 1, 1] * cam[..., 1] / z + k[:, None, 1, 2]
    pixels = np.where((z > 0)[..., None], np.stack([u, v], -1), np.nan)
    return pixels.reshape(points_world.shape[:-1] + (2,)), z.reshape(points_world.shape[:-1])


def scale_pixels(pixels: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates [..., 2] (x, y) after resizing the image from `src_hw` to `dst_hw`."""
    return pixels * np.array([dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]])


def hand_pose_video(keypoints_2d: np.ndarray, confidences: np.ndarray, src_hw: tuple[int, int],
                    out_hw: tuple[int, int], min_confidence: float = 0.0) -> np.ndarray:
    """The OpenPose-palette pose video uint8 [F, H, W, 3] of both hands at `out_hw`.

    `keypoints_2d` [F, 2, 21, 2] are pixels at `src_hw`; a keypoint is drawn when it is in front of
    the camera (finite) and its confidence exceeds `min_confidence`. The right hand is drawn over the
    left where they overlap. Drawing is SynthWorld's (`synthworld.pose_video.draw_hand_poses`).
    """
    from worldscape_jax.data.synthworld.pose_video import draw_hand_poses  # JAX; only needed here

    pixels = scale_pixels(np.asarray(keypoints_2d, np.float64), src_hw, out_hw)
    valid = np.all(np.isfinite(pixels), -1) & (np.asarray(confidences) > min_confidence)
    hands = [np.asarray(draw_hand_poses(np.nan_to_num(pixels[:, h]), valid[:, h], *out_hw)) for h in range(2)]
    return np.where(np.any(hands[1] > 0, -1, keepdims=True), hands[1], hands[0])


def read_episode(hdf5_path: str | os.PathLike, mp4_path: str | os.PathLike | None = None, *,
                 camera_axes: Literal["opencv", "arkit"] = "opencv",
                 image_hw: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """One episode -> dict of numpy arrays (F frames, 2 hands: left then right):

      video uint8 [F,H,W,3] (when `mp4_path` is given), c2w float32 [F,4,4] (OpenCV axes),
      intrinsics float32 [F,4] (normalised), hand_keypoints float32 [F,2,21,3] (world),
      hand_keypoints_2d float32 [F,2,21,2] (pixels, NaN behind the camera), hand_depth float32 [F,2,21],
      hand_confidences float32 [F,2,21], and `text` (the llm_description attribute, "" when absent).

    The image size comes from the video, else `image_hw`, else EgoDex's 1080x1920.
    """
    hdf5_path = Path(hdf5_path)
    if camera_axes not in ("opencv", "arkit"):
        raise DataFormatError(hdf5_path, f"camera_axes must be 'opencv' or 'arkit'; got {camera_axes!r}")
    video = None if mp4_path is None else frame_io.read_mp4(mp4_path)[0]
    with _open_hdf5(hdf5_path) as file:
        pixel_k = _read_intrinsic_matrix(file, hdf5_path)
        c2w = _read_transforms(file, hdf5_path, "camera")
        frames = len(c2w)
        keypoints = np.stack([_read_hand(file, hdf5_path, side, frames, "transforms") for side in SIDES], 1)
        confidences = np.stack([_read_hand(file, hdf5_path, side, frames, "confidences") for side in SIDES], 1)
        text = _read_text_attribute(file, hdf5_path, "llm_description")
    if camera_axes == "arkit":
        c2w = c2w @ ARKIT_TO_OPENCV
    if video is not None and len(video) != frames:
        raise DataFormatError(mp4_path, f"has {len(video)} frames but {hdf5_path} has {frames} poses in "
                                        "'transforms/camera'; expected one frame per pose")
    height, width = video.shape[1:3] if video is not None else (image_hw or EGODEX_IMAGE_HW)
    if not (0 <= pixel_k[0, 2] <= width and 0 <= pixel_k[1, 2] <= height):
        raise DataFormatError(hdf5_path, f"expected the principal point (cx, cy) inside the {width}x{height} image; "
                                         f"got ({pixel_k[0, 2]:.6g}, {pixel_k[1, 2]:.6g})", key="camera/intrinsic")
    pixels, depth = project_to_pixels(keypoints, c2w, pixel_k)
    intrinsics = intrinsics_to_normalised(np.array([pixel_k[0, 0], pixel_k[1, 1], pixel_k[0, 2], pixel_k[1, 2]]),
                                          height, width)
    episode = {
        "c2w": c2w.astype(np.float32),
        "intrinsics": np.tile(intrinsics.astype(np.float32), (frames, 1)),
        "hand_keypoints": keypoints.astype(np.float32),
        "hand_keypoints_2d": pixels.astype(np.float32),
        "hand_depth": depth.astype(np.float32),
        "hand_confidences": confidences.astype(np.float32),
        "text": text,
    }
    if video is not None:
        episode["video"] = video
    return episode


def _open_hdf5(path: Path) -> h5py.File:
    if not path.is_file():
        raise DataFormatError(path, "expected an EgoDex .hdf5 file; it does not exist")
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as error:
        raise DataFormatError(path, f"cannot open as HDF5 ({error})") from error


# What h5py raises for a damaged file, dataset or dtype (it maps HDF5's C errors to these).
H5PY_ERRORS = (OSError, RuntimeError, ValueError, TypeError, KeyError, AttributeError)


def _dataset(file: h5py.File, path: Path, key: str, *, max_bytes: int = checks.MAX_ARRAY_BYTES) -> np.ndarray:
    """The numeric dataset `key` as float64, its dtype and size checked before it is read."""
    try:
        node = file.get(key)
        if node is None:
            raise DataFormatError(path, "missing from the HDF5 file (expected EgoDex layout: camera/intrinsic, "
                                        "transforms/<joint>, confidences/<joint>)", key=key)
        if not isinstance(node, h5py.Dataset):
            raise DataFormatError(path, "expected an array; found a group", key=key)
        dtype = node.dtype
        if dtype.kind not in "fiu" or dtype.fields is not None or h5py.check_vlen_dtype(dtype) is not None:
            raise DataFormatError(path, f"expected a plain numeric (float or integer) array; got dtype {dtype}",
                                  key=key)
        checks.check_size(path, node.shape, dtype.itemsize, max_bytes=max_bytes, key=key)
        return np.asarray(node[()], np.float64)
    except DataFormatError:
        raise
    except H5PY_ERRORS as error:
        raise DataFormatError(path, f"cannot read the dataset ({type(error).__name__}: {error})", key=key) from error


def _read_intrinsic_matrix(file: h5py.File, path: Path) -> np.ndarray:
    k = _dataset(file, path, "camera/intrinsic")
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or not (k[0, 0] > 0 and k[1, 1] > 0):
        raise DataFormatError(path, f"expected a finite 3x3 pixel intrinsic matrix with fx, fy > 0; got "
                                    f"shape {k.shape}", key="camera/intrinsic")
    if abs(k[0, 1]) > 1e-6 or not np.allclose(k[2], [0, 0, 1]) or not np.allclose(k[1, 0], 0):
        raise DataFormatError(path, f"expected [[fx,0,cx],[0,fy,cy],[0,0,1]] (no skew); got {k.tolist()}",
                              key="camera/intrinsic")
    if not (k[0, 0] <= checks.FLOAT32_MAX and k[1, 1] <= checks.FLOAT32_MAX and np.all(np.abs(k) <= 1e7)):
        raise DataFormatError(path, f"expected pixel intrinsics below 1e7; got {k.tolist()}", key="camera/intrinsic")
    return k


def _read_transforms(file: h5py.File, path: Path, joint: str, frames: int | None = None) -> np.ndarray:
    key = f"transforms/{joint}"
    poses = _dataset(file, path, key)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or (frames is not None and len(poses) != frames):
        expected = f"[{frames if frames is not None else 'N'}, 4, 4]"
        raise DataFormatError(path, f"expected poses of shape {expected}; got {poses.shape}", key=key)
    if len(poses) == 0:
        raise DataFormatError(path, "the episode has no frames; expected at least one pose", key=key)
    if not np.all(np.abs(poses) <= checks.FLOAT32_MAX):
        raise DataFormatError(path, "expected finite poses within float32's range; found NaN, inf or larger", key=key)
    checks.check_rigid(poses, path, key=key)
    return poses


def _read_hand(file: h5py.File, path: Path, side: str, frames: int, group: str) -> np.ndarray:
    """[F, 21, 3] joint positions (group "transforms") or [F, 21] confidences (group "confidences")."""
    columns = []
    for joint in openpose_joint_names(side):
        if group == "transforms":
            columns.append(_read_transforms(file, path, joint, frames)[:, :3, 3])
            continue
        key = f"confidences/{joint}"
        values = _dataset(file, path, key)
        if values.shape != (frames,):
            raise DataFormatError(path, f"expected confidences of shape [{frames}]; got {values.shape}", key=key)
        bad = ~((values >= 0) & (values <= 1))
        if np.any(bad):
            raise DataFormatError(path, f"expected confidences in [0, 1]; {int(bad.sum())} of {len(values)} are not, "
                                        f"e.g. {values[np.argmax(bad)]!r} at frame {int(np.argmax(bad))}", key=key)
        columns.append(values)
    return np.stack(columns, 1)


def _read_text_attribute(file: h5py.File, path: Path, name: str) -> str:
    """The string attribute `name` ("" when absent); a non-string or non-UTF-8 value is an error."""
    try:
        value = file.attrs.get(name, "")
    except H5PY_ERRORS as error:
        raise DataFormatError(path, f"cannot read the attribute ({type(error).__name__}: {error})",
                              key=f"attrs/{name}") from error
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataFormatError(path, f"expected UTF-8 text; {error}", key=f"attrs/{name}") from error
    if not isinstance(value, str):
        raise DataFormatError(path, f"expected a string; got {type(value).__name__} {str(value)[:40]}",
                              key=f"attrs/{name}")
    return value
