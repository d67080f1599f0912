"""Grain pipelines: clip source -> fixed-shape training batches, with a checkpointable iterator.

    source[i] (raw clip)
      -> [process_index::process_count]       per-host shard (multi-host: each host reads its own clips)
      -> shuffle(seed)                        global, deterministic; reshuffled every epoch
      -> repeat(num_epochs)                   None: forever
      -> random_map(ClipToExample)            frames at a stride, resize-to-cover + crop, model layout;
                                              its RNG is seeded by (seed, element index), so it is
                                              reproducible and needs no state of its own
      -> batch(batch_size, drop_remainder)    fixed shapes
      -> to_iter_dataset() -> iterator

`make_epochs` is the first three steps alone (for a source of ready examples, such as latents) and
`batch_iterator` the last two, so a stage can append its own steps (the VAE's random window) between.

Batches: {video float32 [B,F,H,W,3] in [-1, 1], c2w float32 [B,F,4,4] relative to each clip's first
frame, intrinsics float32 [B,F,4] normalised to the output size}, plus depth [B,F,H,W],
pose_video [B,F,H,W,3] in [-1, 1] and text_embedding [B, ...] when asked for (a clip that lacks a
requested key raises DataFormatError rather than being skipped).

Resuming: the iterator is a `grain.DatasetIterator`; `get_state()` is a small JSON-able dict (the
next element index) and `set_state(state)` on a fresh iterator of the same pipeline continues with
exactly the batches the old one would have produced. With Orbax, save it as its own item:

    mngr = ocp.CheckpointManager(dir, item_names=("state", "data_iter"),
                                 item_handlers={"data_iter": grain.checkpoint.CheckpointHandler()})
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data_iter=grain.checkpoint.CheckpointSave(iterator)))
    mngr.restore(step, args=ocp.args.Composite(state=..., data_iter=grain.checkpoint.CheckpointRestore(iterator)))

The handler writes one `process_<i>-of-<n>.json` per host, so each host restores its own shard's position.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import numpy as np

from worldscape_jax.config_fields import BoolField, IntField, check_fields
from worldscape_jax.data import checks, clip_ops
from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.errors import ConfigError

MAX_BATCH_SIZE = 65_536
MAX_FRAMES = 4096  # frames per batch element
MAX_SIDE = 8192  # pixels per side of an output frame
MAX_BATCH_BYTES = 2**34  # one float32 video batch (16 GiB): beyond it a typo, not a plan
MAX_THREADS = 1024


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the batches look like and how clips are drawn."""

    batch_size: int
    num_frames: int
    height: int
    width: int
    frame_stride: int = 1
    random_start: bool = True  # else every clip starts at its frame 0
    random_crop: bool = False  # else centre crop
    with_depth: bool = False
    with_pose_video: bool = False
    with_text_embedding: bool = False
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = None  # None: repeat forever
    process_index: int | None = None  # None: jax.process_index()
    process_count: int | None = None  # None: jax.process_count()
    # > 0: decode in that many worker processes (grain mp_prefetch). Gives the same batches and a
    # resumable state; needs absl flags parsed (true under absl.app.run, else FLAGS.mark_as_parsed()).
    worker_count: int = 0
    read_threads: int = 4  # threads that prepare batches ahead of the consumer (worker_count = 0)
    prefetch_batches: int = 8  # how many batches those threads may prepare ahead

    def __post_init__(self):
        check_fields(self, {
            "batch_size": IntField(1, MAX_BATCH_SIZE), "num_frames": IntField(1, MAX_FRAMES),
            "height": IntField(1, MAX_SIDE), "width": IntField(1, MAX_SIDE),
            "frame_stride": IntField(1, checks.MAX_CLIP_FRAMES), "random_start": BoolField(),
            "random_crop": BoolField(), "with_depth": BoolField(), "with_pose_video": BoolField(),
            "with_text_embedding": BoolField(), "seed": IntField(0, 2**63 - 1), "shuffle": BoolField(),
            "num_epochs": IntField(1, 2**31, optional=True), "process_index": IntField(0, 2**20, optional=True),
            "process_count": IntField(1, 2**20, optional=True), "worker_count": IntField(0, MAX_THREADS),
            "read_threads": IntField(0, MAX_THREADS), "prefetch_batches": IntField(0, MAX_BATCH_SIZE)})
        if (self.num_frames - 1) * self.frame_stride + 1 > checks.MAX_CLIP_FRAMES:
            raise ConfigError("PipelineConfig", f"num_frames {self.num_frames} at stride {self.frame_stride} spans "
                                                f"more than {checks.MAX_CLIP_FRAMES} frames", key="frame_stride")
        video_bytes = self.batch_size * self.num_frames * self.height * self.width * 3 * 4
        if video_bytes > MAX_BATCH_BYTES:
            raise ConfigError("PipelineConfig", f"a batch of {self.batch_size} x {self.num_frames} x {self.height} x "
                                                f"{self.width} float32 frames takes {video_bytes / 2**30:.0f} GiB; the "
                                                f"limit is {MAX_BATCH_BYTES / 2**30:.0f} GiB", key="batch_size")
        if (self.process_index is None) != (self.process_count is None):
            raise ConfigError("PipelineConfig", "set both process_index and process_count, or neither",
                              key="process_index")
        if self.process_index is not None and self.process_index >= self.process_count:
            raise ConfigError("PipelineConfig", f"process_index {self.process_index} must lie in [0, process_count="
                                                f"{self.process_count})", key="process_index")

    def output_keys(self) -> tuple[str, ...]:
        optional = (("depth", self.with_depth), ("pose_video", self.with_pose_video),
                    ("text_embedding", self.with_text_embedding))
        return clip_ops.REQUIRED_KEYS + tuple(key for key, wanted in optional if wanted)


class ClipToExample(grain.transforms.RandomMap):
    """One raw clip -> one fixed-shape batch element (see the module docstring)."""

    def __init__(self, config: PipelineConfig, source_name: str = "clip"):
        self.config = config
        self.source_name = source_name

    def random_map(self, clip: dict, rng: np.random.Generator) -> dict:
        config = self.config
        name = f"{self.source_name} (scene {clip['scene_seed']})" if "scene_seed" in clip else self.source_name
        frames = clip_ops.check_clip(clip, name)
        for key in config.output_keys():
            if key not in clip:
                raise DataFormatError(name, "the pipeline asks for this key but the clip has none", key=key)
        indices = clip_ops.sample_frame_indices(frames, config.num_frames, config.frame_stride,
                                                rng if config.random_start else None, name)
        clip = clip_ops.take_frames(clip, indices)
        clip = clip_ops.resize_and_crop(clip, (config.height, config.width), rng if config.random_crop else None)
        return clip_ops.to_model_layout(clip, config.output_keys())


def shard_bounds(config: PipelineConfig) -> tuple[int, int]:
    """(process_index, process_count), from the config or from JAX."""
    if config.process_index is not None and config.process_count is not None:
        index, count = config.process_index, config.process_count
    else:
        import jax

        index, count = jax.process_index(), jax.process_count()
    if not 0 <= index < count:
        raise ValueError(f"process_index {index} must lie in [0, process_count={count})")
    return index, count


def source_name(source: Any) -> str:
    """A short description of a source for error messages (its repr, or its type for long reprs)."""
    text = repr(source)
    return text if len(text) <= 120 else f"<{type(source).__name__} of {len(source)} clips>"


def make_dataset(source: Sequence[dict] | Any, config: PipelineConfig) -> grain.MapDataset:
    """The batched MapDataset (random access by batch index) for `source` under `config`."""
    return make_examples(source, config).batch(config.batch_size, drop_remainder=True)


def make_epochs(source: Sequence[dict] | Any, config: PipelineConfig) -> grain.MapDataset:
    """The source's items as `config` draws them (this process's shard, shuffled, repeated), untransformed:
    the start of every pipeline, and all of it for a source whose items are already examples (latents)."""
    index, count = shard_bounds(config)
    dataset = grain.MapDataset.source(source)[index::count]
    if len(dataset) == 0:
        raise DataFormatError(source_name(source), f"process {index} of {count} gets no clips from a source of "
                                            f"{len(source)}; expected at least one per process")
    if config.shuffle:
        dataset = dataset.shuffle(seed=config.seed)
    return dataset.repeat(config.num_epochs)


def make_examples(source: Sequence[dict] | Any, config: PipelineConfig) -> grain.MapDataset:
    """The pipeline before batching: fixed-shape examples, random access by example index (a cache that
    encodes every clip once reads these in order, with `shuffle=False, num_epochs=1`)."""
    return make_epochs(source, config).random_map(ClipToExample(config, source_name(source)), seed=config.seed)


def batch_iterator(examples: grain.MapDataset, config: PipelineConfig) -> grain.DatasetIterator:
    """A checkpointable iterator (`get_state` / `set_state`) over batches of `examples` (`make_examples`,
    or `make_epochs` of an example source, with any further steps a stage appends), read as `config` says."""
    read_options = grain.ReadOptions(num_threads=config.read_threads, prefetch_buffer_size=config.prefetch_batches)
    dataset = examples.batch(config.batch_size, drop_remainder=True).to_iter_dataset(read_options)
    if config.worker_count > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.worker_count))
    return iter(dataset)


def make_iterator(source: Sequence[dict] | Any, config: PipelineConfig) -> grain.DatasetIterator:
    """A checkpointable iterator over batches (`get_state` / `set_state`)."""
    return batch_iterator(make_examples(source, config), config)
