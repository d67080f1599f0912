"""SynthWorld as a tensorflow-datasets builder writing ArrayRecord, without TensorFlow.

TFDS can build and read datasets without TensorFlow only when every feature is a `Tensor`
(research notes, jax_anchors.md §7: `Image` / `Video` features need TF to encode). So frames are
stored as uint8 `Tensor`s (zlib-compressed), and `tfds.core.DatasetInfo(builder=self, ...)` is used
directly (the `dataset_info_from_configs` helper looks for package metadata an ad-hoc builder lacks).

Layout written by `build_synthworld(out_dir, ...)`:
    <out_dir>/synthworld/<config name>/1.0.0/{dataset_info.json, features.json,
                                              synthworld-train.array_record-*, synthworld-heldout.array_record-*}
Splits: each scene seed goes to `split_of(seed)` ("train" or "heldout", a fixed hash of the seed), so
a seed is held out in every export. Read back with `synthworld_array_record_source(dataset_dir, split)`,
a random-access source of clip dicts for the Grain pipeline.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from worldscape_jax.data.array_record_source import CheckedArrayRecordSource
from worldscape_jax.config_fields import ChoiceField, IntField, check_fields
from worldscape_jax.data import checks
from worldscape_jax.data.errors import DataFormatError

SPLITS = ("train", "heldout")
KINDS = ("navigation", "manipulation")


@dataclasses.dataclass(kw_only=True)
class SynthWorldConfig(tfds.core.BuilderConfig):
    """Which clips to write: `num_clips` scene seeds from `first_seed`, each `frames` x `height` x `width`."""

    kind: str = "navigation"
    num_clips: int = 8
    frames: int = 16
    height: int = 64
    width: int = 64
    first_seed: int = 0

    def __post_init__(self):
        check_fields(self, {"kind": ChoiceField(KINDS), "num_clips": IntField(1, 10**7),
                            "frames": IntField(1, checks.MAX_CLIP_FRAMES), "height": IntField(1, 8192),
                            "width": IntField(1, 8192), "first_seed": IntField(0, 2**62)})


def make_config(kind: str, num_clips: int, frames: int, height: int, width: int,
                first_seed: int = 0) -> SynthWorldConfig:
    """A config whose name spells out its shape, so different exports live in different folders."""
    name = f"{kind}_{frames}x{height}x{width}_n{num_clips}_s{first_seed}"
    return SynthWorldConfig(name=name, kind=kind, num_clips=num_clips, frames=frames, height=height, width=width,
                            first_seed=first_seed, description=f"{num_clips} SynthWorld {kind} clips")


def clip_features(config: SynthWorldConfig) -> tfds.features.FeaturesDict:
    """Tensor features only (TF-free); big arrays zlib-compressed."""
    f, h, w = config.frames, config.height, config.width
    zlib = tfds.features.Encoding.ZLIB
    features = {
        "video": tfds.features.Tensor(shape=(f, h, w, 3), dtype=np.uint8, encoding=zlib),
        "depth": tfds.features.Tensor(shape=(f, h, w), dtype=np.float32, encoding=zlib),
        "c2w": tfds.features.Tensor(shape=(f, 4, 4), dtype=np.float32),
        "intrinsics": tfds.features.Tensor(shape=(f, 4), dtype=np.float32),
        "scene_seed": tfds.features.Tensor(shape=(), dtype=np.int64),
    }
    if config.kind == "manipulation":
        features.update({
            "hand_keypoints": tfds.features.Tensor(shape=(f, 21, 3), dtype=np.float32),
            "hand_keypoints_2d": tfds.features.Tensor(shape=(f, 21, 2), dtype=np.float32),
            "pose_video": tfds.features.Tensor(shape=(f, h, w, 3), dtype=np.uint8, encoding=zlib),
        })
    return tfds.features.FeaturesDict(features)


class SynthWorld(tfds.core.GeneratorBasedBuilder):
    """Writes SynthWorld clips; `generate(seed, frames, height, width, kind=...)` defaults to generate_clip."""

    name = "synthworld"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Tensor-only features: video, depth, c2w, intrinsics, scene_seed (+ hands).",
                     "1.1.0": "Anti-aliased renders (RENDER_VERSION 2); random_walk paths paced (PATHS_VERSION 2)."}

    def __init__(self, *, config: SynthWorldConfig, generate: Callable | None = None,
                 split_fn: Callable[[int], str] | None = None, **kwargs):
        self._generate = generate
        self._split_fn = split_fn
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=self.builder_config.description,
                                     features=clip_features(self.builder_config))

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded
        config = self.builder_config
        seeds = range(config.first_seed, config.first_seed + config.num_clips)
        split_fn = self._split_fn or _default_split_fn()
        by_split = {split: [s for s in seeds if split_fn(s) == split] for split in SPLITS}
        unknown = [s for s in seeds if split_fn(s) not in SPLITS]
        if unknown:
            raise ValueError(f"split_fn put seeds {unknown[:5]} outside {SPLITS}")
        return {split: self._generate_examples(split, chosen) for split, chosen in by_split.items() if chosen}

    def _generate_examples(self, split: str, seeds: list[int]) -> Iterable[tuple[int, dict]]:
        config = self.builder_config
        generate = self._generate or _default_generate()
        for seed in tqdm(seeds, desc=f"SynthWorld {config.kind} {split}", unit="clip"):
            clip = generate(seed, config.frames, config.height, config.width, kind=config.kind)
            yield seed, {key: np.asarray(clip[key]) for key in self.info.features.keys()}


def build_synthworld(out_dir: str | os.PathLike, config: SynthWorldConfig, *, generate: Callable | None = None,
                     split_fn: Callable[[int], str] | None = None) -> str:
    """Writes the clips of `config` under `out_dir` as ArrayRecord; returns the dataset directory."""
    builder = SynthWorld(config=config, data_dir=os.fspath(out_dir), file_format="array_record",
                         generate=generate, split_fn=split_fn)
    builder.download_and_prepare()
    return os.fspath(builder.data_dir)


def synthworld_array_record_source(dataset_dir: str | os.PathLike, split: str = "train"):
    """Random-access source of clip dicts (numpy) from a directory written by `build_synthworld`.

    Needs neither TensorFlow nor this builder class: TFDS reads the features from the directory.
    Every shard's record count is checked now, and an unreadable record raises DataFormatError
    naming its file and index (`CheckedArrayRecordSource`).
    """
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isfile(os.path.join(dataset_dir, "dataset_info.json")):
        raise DataFormatError(dataset_dir, "expected a TFDS dataset directory (with dataset_info.json), e.g. "
                                           "<out_dir>/synthworld/<config>/1.0.0 as written by make_synthworld")
    builder = tfds.builder_from_directory(dataset_dir)
    if split not in builder.info.splits:
        raise DataFormatError(dataset_dir, f"has no split {split!r}; it has {sorted(builder.info.splits)}")
    return CheckedArrayRecordSource(builder.as_data_source(split=split), builder.info.splits[split])


def _default_generate() -> Callable:
    from worldscape_jax.data.synthworld import generate_clip

    return generate_clip


def _default_split_fn() -> Callable[[int], str]:
    from worldscape_jax.data.synthworld import split_of

    return split_of
