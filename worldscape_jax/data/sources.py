"""Random-access clip sources for the Grain pipeline (`len(source)`, `source[i] -> clip dict`).

* `SynthWorldSource`: generates SynthWorld clips on the fly from scene seeds (tests, tiny training);
* `synthworld_array_record_source` (in tfds_builder.py): clips exported by launch/make_synthworld.py;
* `RealEstate10KSource`: pose files paired with image folders or mp4s.

A source returns raw clips (uint8 video, absolute c2w, normalised intrinsics); the pipeline picks
frames, resizes, crops and converts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import realestate10k


class SynthWorldSource:
    """SynthWorld clips rendered on demand: item i is the clip of scene `scene_seeds[i]`.

    `generate` defaults to `worldscape_jax.data.synthworld.generate_clip`; the trajectory seed of
    item i is `traj_seed_offset + scene_seed`, so an item is the same clip every time it is read.
    """

    def __init__(self, scene_seeds: Sequence[int], num_frames: int, height: int, width: int, *,
                 kind: str = "navigation", traj_seed_offset: int = 0, generate: Callable | None = None):
        self.scene_seeds = [int(s) for s in scene_seeds]
        self.num_frames, self.height, self.width, self.kind = num_frames, height, width, kind
        self.traj_seed_offset = traj_seed_offset
        self._generate = generate

    def __len__(self) -> int:
        return len(self.scene_seeds)

    def __getitem__(self, index: int) -> dict:
        generate = self._generate
        if generate is None:
            from worldscape_jax.data.synthworld import generate_clip as generate  # deferred: JAX renderer
        seed = self.scene_seeds[index]
        clip = generate(seed, self.num_frames, self.height, self.width, kind=self.kind,
                        traj_seed=self.traj_seed_offset + seed)
        return {key: np.asarray(value) for key, value in clip.items()}

    def __repr__(self) -> str:
        return (f"SynthWorldSource({len(self)} scenes, {self.num_frames}x{self.height}x{self.width}, "
                f"kind={self.kind!r})")


class RealEstate10KSource:
    """RealEstate10K clips from (pose file, frames) pairs; frames are an image folder or an mp4."""

    def __init__(self, pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]], frames_by: str = "index"):
        self.pairs = [(Path(p), Path(f)) for p, f in pairs]
        self.frames_by = frames_by

    @classmethod
    def from_folders(cls, pose_dir: str | os.PathLike, frames_root: str | os.PathLike,
                     frames_by: str = "index") -> "RealEstate10KSource":
        """Pairs `pose_dir/<clip>.txt` with `frames_root/<clip>/` or `frames_root/<clip>.mp4`."""
        pose_files = sorted(Path(pose_dir).glob("*.txt"))
        if not pose_files:
            raise DataFormatError(pose_dir, "expected RealEstate10K pose files (*.txt); found none")
        return cls([(p, _frames_for(p, Path(frames_root))) for p in pose_files], frames_by)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pose_file, frames = self.pairs[index]
        return realestate10k.read_clip(pose_file, frames, frames_by=self.frames_by)

    def __repr__(self) -> str:
        return f"RealEstate10KSource({len(self)} clips)"


def _frames_for(pose_file: Path, frames_root: Path) -> Path:
    for candidate in (frames_root / pose_file.stem, frames_root / f"{pose_file.stem}.mp4"):
        if candidate.exists():
            return candidate
    raise DataFormatError(pose_file, f"no frames for this clip: expected {frames_root / pose_file.stem}/ "
                                     f"or {frames_root / pose_file.stem}.mp4")
