"""Where the sub-pixel rays of an anti-aliased SynthWorld pixel go: an "n-rooks" rank-1 lattice.

n rays per pixel at offsets (x, y) in pixels from its centre, inside the pixel's square. Sample k
sits at x = k / n and y = (g k mod n) / n (indices centred on 0 for odd n, so that k = 0 is the pixel
centre; half-integer positions (k + 1/2) / n - 1/2 for even n). Because g is coprime to n, all n
samples have distinct x and distinct y, so an axis-aligned edge is located to 1/n pixel, where an
s x s grid of as many rays only reaches 1/s; g is chosen to spread the samples as evenly as possible
(the largest minimum distance between lattice points on the unit torus). n = 2, 3, 4 give diagonals.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def lattice_generator(n: int) -> int:
    """The generator g, coprime to n, of the n-point lattice {(k/n, k g/n mod 1)} whose points lie
    furthest apart on the unit torus (the smallest such g)."""
    k = np.arange(n)
    best, best_gap = 1, -1.0
    for g in range(1, max(n, 2)):
        if np.gcd(g, n) != 1:  # every sample on its own row and column
            continue
        points = np.stack([k / n, np.mod(k * g, n) / n], axis=1)
        delta = np.abs(points[:, None] - points[None])
        delta = np.minimum(delta, 1.0 - delta)
        gap = np.sqrt((delta ** 2).sum(-1))[~np.eye(n, dtype=bool)].min() if n > 1 else 1.0
        if gap > best_gap + 1e-12:
            best, best_gap = g, gap
    return best


def subpixel_offsets(supersample: int) -> np.ndarray:
    """Offsets [n, 2] (x, y), in pixels from the pixel centre, of n = `supersample` rays per pixel."""
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise ValueError(f"SynthWorld render: supersample must be an int >= 1 (rays per pixel), got {supersample!r}")
    n = int(supersample)
    k = np.arange(n)
    generator = lattice_generator(n)
    if n % 2:
        k = k - (n - 1) // 2
        return np.stack([k / n, (np.mod(k * generator + (n - 1) // 2, n) - (n - 1) // 2) / n], axis=1)
    return np.stack([(k + 0.5) / n - 0.5, (np.mod(k * generator, n) + 0.5) / n - 0.5], axis=1)
