"""Per-frame image metrics against ground truth, in JAX: PSNR, SSIM, and depth errors.

Videos are `[F, H, W, C]` (channels-last, as everywhere in the project). Every function returns one
value per frame, so callers can plot a metric over a clip or average it; `max_value` is the dynamic
range of the pixels (255 for uint8 frames, 1 for frames in [0, 1]).

SSIM follows Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 2004: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, statistics taken only where the window fits inside the image ("valid" filtering, as in the
authors' reference code), the SSIM map averaged over positions and channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_same_video_shape(a, b, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")
    if a.ndim != 4:
        raise ValueError(f"{name_a} must be a video [F, H, W, C], got shape {a.shape}")


def mse(video: Float[Array, "f h w c"], reference: Float[Array, "f h w c"]) -> Float[Array, "f"]:
    """Mean squared error per frame, in the units of the inputs."""
    _check_same_video_shape(video, reference, "video", "reference")
    diff = jnp.asarray(video, jnp.float32) - jnp.asarray(reference, jnp.float32)
    return jnp.mean(diff * diff, axis=(1, 2, 3))


def psnr(video: Float[Array, "f h w c"], reference: Float[Array, "f h w c"], max_value: float) -> Float[Array, "f"]:
    """Peak signal-to-noise ratio per frame: 10 log10(max_value^2 / MSE), +inf for identical frames."""
    if max_value <= 0:
        raise ValueError(f"psnr: max_value must be positive (255 for uint8, 1 for [0, 1]), got {max_value}")
    return 10.0 * jnp.log10(max_value**2 / mse(video, reference))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of `size` taps; SSIM's 2-D window is its outer product with itself."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return (taps / taps.sum()).astype(np.float32)


def _filter_valid(images: Float[Array, "f h w c"], taps: np.ndarray) -> Float[Array, "f h2 w2 c"]:
    """Separable 'valid' filtering of each channel with the outer product of `taps` with itself."""
    size = taps.shape[0]
    frames, height, width, channels = images.shape
    planes = jnp.transpose(images, (0, 3, 1, 2)).reshape(frames * channels, height, width, 1)
    dn = ("NHWC", "HWIO", "NHWC")
    rows = jax.lax.conv_general_dilated(planes, jnp.asarray(taps).reshape(size, 1, 1, 1), (1, 1), "VALID",
                                        dimension_numbers=dn, precision=jax.lax.Precision.HIGHEST)
    both = jax.lax.conv_general_dilated(rows, jnp.asarray(taps).reshape(1, size, 1, 1), (1, 1), "VALID",
                                        dimension_numbers=dn, precision=jax.lax.Precision.HIGHEST)
    out_h, out_w = both.shape[1], both.shape[2]
    return jnp.transpose(both.reshape(frames, channels, out_h, out_w), (0, 2, 3, 1))


def ssim_map(video: Float[Array, "f h w c"], reference: Float[Array, "f h w c"], max_value: float) -> Float[Array, "f h2 w2 c"]:
    """The SSIM index at every position where the 11x11 window fits (Wang et al. 2004, eq. 13)."""
    _check_same_video_shape(video, reference, "video", "reference")
    if min(video.shape[1], video.shape[2]) < SSIM_WINDOW:
        raise ValueError(f"ssim: frames must be at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {video.shape[1:3]}")
    if max_value <= 0:
        raise ValueError(f"ssim: max_value must be positive, got {max_value}")
    x = jnp.asarray(video, jnp.float32)
    y = jnp.asarray(reference, jnp.float32)
    taps = gaussian_window()
    mu_x, mu_y = _filter_valid(x, taps), _filter_valid(y, taps)
    var_x = _filter_valid(x * x, taps) - mu_x * mu_x
    var_y = _filter_valid(y * y, taps) - mu_y * mu_y
    cov = _filter_valid(x * y, taps) - mu_x * mu_y
    c1 = (SSIM_K1 * max_value) ** 2
    c2 = (SSIM_K2 * max_value) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def ssim(video: Float[Array, "f h w c"], reference: Float[Array, "f h w c"], max_value: float) -> Float[Array, "f"]:
    """Mean SSIM per frame (map averaged over positions and channels)."""
    return jnp.mean(ssim_map(video, reference, max_value), axis=(1, 2, 3))


def depth_errors(pred: Float[Array, "*s"], target: Float[Array, "*s"], valid: Bool[Array, "*s"] | None = None,
                 median_scale: bool = False) -> dict[str, Float[Array, ""]]:
    """Standard monocular-depth errors over the valid pixels (target > 0 and `valid`).

    abs_rel = mean(|pred - target| / target); delta_1.25 = fraction with max(pred/target, target/pred)
    < 1.25. With `median_scale`, pred is first multiplied by median(target) / median(pred), the usual
    alignment for depth known only up to scale.
    """
    if pred.shape != target.shape:
        raise ValueError(f"depth_errors: pred shape {pred.shape} != target shape {target.shape}")
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    mask = target > 0
    if valid is not None:
        if valid.shape != target.shape:
            raise ValueError(f"depth_errors: valid shape {valid.shape} != target shape {target.shape}")
        mask = mask & valid
    if not bool(jnp.any(mask)):
        raise ValueError("depth_errors: no valid pixel (target must be > 0 somewhere inside `valid`)")
    if median_scale:
        pred = pred * _masked_median(target, mask) / _masked_median(pred, mask)
    safe_pred = jnp.where(mask, jnp.maximum(pred, 1e-12), 1.0)
    safe_target = jnp.where(mask, target, 1.0)
    count = jnp.sum(mask)
    abs_rel = jnp.sum(jnp.where(mask, jnp.abs(safe_pred - safe_target) / safe_target, 0.0)) / count
    ratio = jnp.maximum(safe_pred / safe_target, safe_target / safe_pred)
    delta = jnp.sum(jnp.where(mask, ratio < 1.25, False)) / count
    return {"abs_rel": abs_rel, "delta_1.25": delta}


def _masked_median(values, mask):
    return jnp.median(values[np.asarray(mask)])
