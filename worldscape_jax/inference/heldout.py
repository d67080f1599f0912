"""The held-out SynthWorld scenes that evaluations and training samples generate from."""

from __future__ import annotations

from worldscape_jax.data.synthworld import generate_clip, split_seeds


def heldout_clips(config, count: int, trajectory: str | None = None, first: int = 0) -> list[dict]:
    """Held-out SynthWorld clips number first .. first + count - 1 at the size of `config.data` (frames,
    height, width), in seed order, so that every evaluation of a model sees the same scenes.

    `trajectory` is an action string or family name for every clip (None: each scene's own family).
    """
    if count < 1 or first < 0:
        raise ValueError(f"held-out clips: count must be >= 1 and first >= 0; got count={count}, first={first}")
    d = config.data
    return [generate_clip(s, d.frames, d.height, d.width, trajectory=trajectory, traj_seed=s)
            for s in split_seeds("heldout", first + count)[first:]]
