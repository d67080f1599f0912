"""A scene's first frame: a SynthWorld render of any seed, or an image the player uploads.

The stream starts from one clean frame (the sink). SynthWorld gives it with its camera and
intrinsics; an uploaded image is centre-cropped to the model's aspect, resized to its size and given
SynthWorld's field of view and the identity pose (nothing is known about its camera).
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from worldscape_jax.data.synthworld.clips import FOV_X_DEG, generate_clip
from worldscape_jax.geometry.cameras import intrinsics_from_fov

MAX_UPLOAD_PIXELS = 64_000_000


class SceneError(ValueError):
    """A scene cannot start (bad seed, unreadable image); the message says why, for the player."""


@dataclasses.dataclass(frozen=True)
class SceneStart:
    first_frame: UInt8[np.ndarray, "h w 3"]
    intrinsics: Float[np.ndarray, "4"]        # normalised (fx/W, fy/H, cx/W, cy/H)
    c2w: Float[np.ndarray, "4 4"]             # OpenCV axes
    source: str                               # "synthworld" or "upload"
    seed: int | None                          # the SynthWorld scene seed (None for uploads)


def synthworld_start(seed: int, height: int, width: int) -> SceneStart:
    """The first frame of SynthWorld scene `seed` (its start pose, anti-aliased as the training clips)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**31:
        raise SceneError(f"scene seed must be an integer in [0, 2^31), got {seed!r}")
    clip = generate_clip(int(seed), 1, height, width)
    return SceneStart(clip["video"][0], clip["intrinsics"][0], clip["c2w"][0], "synthworld", int(seed))


def upload_start(data: bytes, height: int, width: int) -> SceneStart:
    """An uploaded image (any format PIL reads), centre-cropped to height:width and resized."""
    return SceneStart(fit_image(decode_image(data), height, width),
                      intrinsics_from_fov(FOV_X_DEG, height, width).astype(np.float32),
                      np.eye(4, dtype=np.float32), "upload", None)


def decode_image(data: bytes) -> Image.Image:
    """RGB image from encoded bytes; SceneError naming the problem for anything that is not one."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise SceneError("uploaded image: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise SceneError(f"uploaded image: {image.width}x{image.height} is larger than "
                                 f"{MAX_UPLOAD_PIXELS} pixels")
            image.load()
    except SceneError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise SceneError(f"uploaded image: not a readable image ({type(error).__name__}: {error})") from None
    return image.convert("RGB")


def fit_image(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Centre crop to the aspect height:width, then resize (Lanczos) to [height, width, 3] uint8."""
    scale = min(image.width / width, image.height / height)
    crop_w, crop_h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
    cropped = image.crop((left, top, left + crop_w, top + crop_h))
    return np.asarray(cropped.resize((width, height), Image.Resampling.LANCZOS), np.uint8)
