"""Random-access clip sources for the Grain pipeline (`len(source)`, `source[i] -> clip dict`).

* `SynthWorldSource`: generates SynthWorld clips on the fly from scene seeds (tests, tiny training);
* `synthworld_array_record_source` (in tfds_builder.py): clips exported by launch/make_synthworld.py;
* `RealEstate10KSource`: pose files paired with image folders or mp4s;
* `EgoDexSource`: EgoDex episodes (mp4 + hdf5), video resized to a working size and the hand pose
  video drawn at that size.

A source returns raw clips (uint8 video, absolute c2w, normalised intrinsics); the pipeline picks
frames, resizes, crops and converts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from worldscape_jax.data import clip_ops
from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.formats import egodex, realestate10k


class SynthWorldSource:
    """SynthWorld clips rendered on demand: item i is the clip of scene `scene_seeds[i]`.

    `generate` defaults to `worldscape_jax.data.synthworld.generate_clip`; the trajectory seed of
    item i is `traj_seeds[i]` when given, else `traj_seed_offset + scene_seed`, so an item is the same
    clip every time it is read. With `families`, item i follows the camera-path family
    `families[traj_seed % len(families)]` (repeating a name weights it); else generate_clip's default.
    """

    def __init__(self, scene_seeds: Sequence[int], num_frames: int, height: int, width: int, *,
                 kind: str = "navigation", traj_seed_offset: int = 0, generate: Callable | None = None,
                 traj_seeds: Sequence[int] | None = None, families: Sequence[str] | None = None):
        self.scene_seeds = [int(s) for s in scene_seeds]
        self.num_frames, self.height, self.width, self.kind = num_frames, height, width, kind
        self.traj_seed_offset = traj_seed_offset
        self._generate = generate
        if traj_seeds is not None and len(traj_seeds) != len(self.scene_seeds):
            raise ValueError(f"SynthWorldSource: {len(traj_seeds)} traj_seeds for {len(self.scene_seeds)} scenes")
        if families is not None and not families:
            raise ValueError("SynthWorldSource: families must name at least one family (or be None)")
        self.traj_seeds = None if traj_seeds is None else [int(t) for t in traj_seeds]
        self.families = None if families is None else tuple(families)

    def __len__(self) -> int:
        return len(self.scene_seeds)

    def __getitem__(self, index: int) -> dict:
        generate = self._generate
        if generate is None:
            from worldscape_jax.data.synthworld import generate_clip as generate  # deferred: JAX renderer
        seed = self.scene_seeds[index]
        traj_seed = self.traj_seed_offset + seed if self.traj_seeds is None else self.traj_seeds[index]
        path = {} if self.families is None else {"trajectory": self.families[traj_seed % len(self.families)]}
        clip = generate(seed, self.num_frames, self.height, self.width, kind=self.kind, traj_seed=traj_seed, **path)
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


class EgoDexSource:
    """EgoDex episodes -> clips {video, c2w, intrinsics, pose_video, hand_keypoints, text} at `frame_hw`.

    Frames are resized to `frame_hw` (default 144x256, EgoDex's 16:9 at 1/7.5) as soon as they are
    read, and the pose video is drawn at that size, so a 1080p episode never sits in memory twice.
    A resize leaves normalised intrinsics unchanged; the pipeline then crops to its output size.
    """

    def __init__(self, episodes: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
                 frame_hw: tuple[int, int] = (144, 256), min_confidence: float = 0.0, camera_axes: str = "opencv"):
        self.episodes = [(Path(h), Path(m)) for h, m in episodes]
        self.frame_hw, self.min_confidence, self.camera_axes = tuple(frame_hw), min_confidence, camera_axes

    @classmethod
    def from_folder(cls, root: str | os.PathLike, **kwargs) -> "EgoDexSource":
        """Every `<task>/<idx>.hdf5` under `root` with its `<idx>.mp4`."""
        pairs = [(h, h.with_suffix(".mp4")) for h in sorted(Path(root).rglob("*.hdf5"))]
        if not pairs:
            raise DataFormatError(root, "expected EgoDex episodes (<task>/<idx>.hdf5 + .mp4); found none")
        for hdf5, mp4 in pairs:
            if not mp4.is_file():
                raise DataFormatError(hdf5, f"has no video next to it; expected {mp4}")
        return cls(pairs, **kwargs)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict:
        hdf5, mp4 = self.episodes[index]
        episode = egodex.read_episode(hdf5, mp4, camera_axes=self.camera_axes)
        src_hw = episode["video"].shape[1:3]
        episode["video"] = clip_ops.resize_frames(episode["video"], self.frame_hw)
        episode["pose_video"] = egodex.hand_pose_video(episode["hand_keypoints_2d"], episode["hand_confidences"],
                                                       src_hw, self.frame_hw, self.min_confidence)
        episode["hand_keypoints_2d"] = egodex.scale_pixels(episode["hand_keypoints_2d"], src_hw,
                                                           self.frame_hw).astype(np.float32)
        return episode

    def __repr__(self) -> str:
        return f"EgoDexSource({len(self)} episodes at {self.frame_hw})"


def _frames_for(pose_file: Path, frames_root: Path) -> Path:
    for candidate in (frames_root / pose_file.stem, frames_root / f"{pose_file.stem}.mp4"):
        if candidate.exists():
            return candidate
    raise DataFormatError(pose_file, f"no frames for this clip: expected {frames_root / pose_file.stem}/ "
                                     f"or {frames_root / pose_file.stem}.mp4")


FILE_SOURCES = ("array_record", "realestate10k", "egodex")


def file_source(kind: str, path: str, pose_dir: str = "", where: str = "config.data"):
    """The raw clips of a dataset on disk, as `<where>.source = kind` names it: SynthWorld's ArrayRecord
    export (launch/make_synthworld.py; its train split), RealEstate10K (`<clip>.txt` poses in `pose_dir`,
    default `path`; frames in `path/<clip>/` or `path/<clip>.mp4`) or EgoDex (`path/<task>/<idx>.hdf5 + .mp4`)."""
    if kind not in FILE_SOURCES:
        raise ValueError(f"{where}.source={kind!r}: expected one of {FILE_SOURCES}")
    if not path:
        raise ValueError(f"{where}.path is empty: {where}.source={kind!r} reads its clips from there")
    if kind == "array_record":
        from worldscape_jax.data.tfds_builder import synthworld_array_record_source  # deferred: TFDS is slow to import

        return synthworld_array_record_source(path, "train")
    if kind == "realestate10k":
        return RealEstate10KSource.from_folders(pose_dir or path, path)
    return EgoDexSource.from_folder(path)


class MemoizedSource:
    """`source` with every clip kept in memory once read: for a source that is slow to produce (SynthWorld
    rendered on the fly) and small enough to hold, read again every epoch. Safe under Grain's reader threads
    (two threads may both render a clip once; both get the same clip)."""

    def __init__(self, source):
        self.source = source
        self._clips: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index not in self._clips:
            self._clips[index] = self.source[index]
        return self._clips[index]

    def __repr__(self) -> str:
        return f"MemoizedSource({self.source!r})"


class FirstClips:
    """The first `count` clips of `source`."""

    def __init__(self, source, count: int):
        self.source, self.count = source, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(f"clip {index} of {self!r}")
        return self.source[index]

    def __repr__(self) -> str:
        return f"FirstClips({self.count} of {self.source!r})"


def first_clips(source, count: int, field: str):
    """The first `count` clips of `source` (0: all of them); `field` names the setting in errors."""
    if not 0 <= count <= len(source):
        raise ValueError(f"{field}={count}: the source has {len(source)} clips (0 takes them all)")
    return source if count in (0, len(source)) else FirstClips(source, count)


SOURCES = ("synthworld", *FILE_SOURCES)


def from_config(data, synthworld: Callable[[], Any], where: str = "config.data"):
    """The clip source that a stage config's `data.source` names: `synthworld()` (the stage's own choice of
    scenes and paths, checked to have `data.num_clips` >= 1) or a dataset on disk (`file_source`)."""
    if data.source not in SOURCES:
        raise ValueError(f"{where}.source={data.source!r}: expected one of {SOURCES}")
    if data.source == "synthworld":
        if data.num_clips < 1:
            raise ValueError(f"{where}.num_clips={data.num_clips}: SynthWorld needs a number of clips >= 1")
        return synthworld()
    return file_source(data.source, data.path, data.pose_dir, where)
