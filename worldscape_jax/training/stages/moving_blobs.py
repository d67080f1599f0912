"""A simple latent source for exercising the DiT trainer: coloured blobs moving in latent space.

Each clip is `[F, H, W, C]` latents: channels 0-2 are a picture (a Gaussian blob of a random colour
on a grey background, values in about [-0.5, 0.5]) and the other channels a fixed linear mix of
those three, so the "latent" has real cross-channel structure. The blob moves one latent pixel per
frame in one of four directions (right, left, down, up): the direction is the clip's class, and its
"text embedding" is a fixed random code per class, so text conditioning and guidance matter.
Everything is a pure function of (seed, index): deterministic and resumable.
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], np.float32)  # (dy, dx) per frame
_MIX_SEED, _TEXT_SEED = 1729, 2718


def channel_mix(channels: int) -> np.ndarray:
    """The fixed [3, channels - 3] map from the picture channels to the remaining ones."""
    return np.random.default_rng(_MIX_SEED).standard_normal((3, max(0, channels - 3))).astype(np.float32) / 2


def class_text(num_classes: int, text_len: int, text_dim: int) -> np.ndarray:
    """The fixed text code of each class, [num_classes, text_len, text_dim]."""
    return np.random.default_rng(_TEXT_SEED).standard_normal((num_classes, text_len, text_dim)).astype(np.float32)


def blob_clip(index: int, seed: int, frames: int, size: int, channels: int, text_len: int, text_dim: int) -> dict:
    """Example `index`: {'latents' [F, H, W, C], 'text' [L, E], 'label' []}."""
    if channels < 3:
        raise ValueError(f"moving_blobs: need >= 3 latent channels, got {channels}")
    rng = np.random.default_rng([seed, index])
    label = index % len(DIRECTIONS)
    start = rng.uniform(0.25 * size, 0.75 * size, size=2)
    colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    radius = size / 5
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    centres = start[None] + np.arange(frames)[:, None] * DIRECTIONS[label]
    dist2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    blob = np.exp(-dist2 / (2 * radius**2))[..., None]  # [F, H, W, 1]
    picture = blob * colour - 0.5 * (1 - blob)  # grey -0.5 background, blob tends to its colour
    latents = np.concatenate([picture, picture @ channel_mix(channels)], axis=-1).astype(np.float32)
    text = class_text(len(DIRECTIONS), text_len, text_dim)[label]
    return {"latents": latents, "text": text, "label": np.int32(label)}


class MovingBlobsSource:
    """A random-access source of `count` moving-blob examples (`blob_clip` of index 0 .. count - 1) for the
    Grain pipeline; item i is the same example every time it is read."""

    def __init__(self, count: int, seed: int, frames: int, size: int, channels: int, text_len: int, text_dim: int):
        self.count = count
        self.shape = dict(seed=seed, frames=frames, size=size, channels=channels, text_len=text_len, text_dim=text_dim)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"moving_blobs: example {index} of {self.count}")
        return blob_clip(int(index), **self.shape)

    def __repr__(self) -> str:
        return f"MovingBlobsSource({self.count} clips, {self.shape})"


def to_display(latents: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] of the picture channels (inverse of the [-0.5, 1] picture range)."""
    rgb = (np.asarray(latents[..., :3], np.float32) + 0.5) / 1.5
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)
