"""Which earlier frames a stream's next chunk attends to, sorted into sink, local window and selected memory.

Policy-agnostic: it reads only the attention context a cache policy gives (the absolute latent index of
every valid slot), so the rolling cache and MACO are drawn alike. The sink is the stream's first
`sink_frames` latent frames; the local window is the unbroken run of the most recent frames (back from
the newest); every other attended frame was chosen from memory. With a rolling cache everything after
the sink is the local window; with MACO, the selected pool entries are older and apart from it.

Camera centres come from `FramePoses`, a host-side record of the pose of every latent frame that a
context still holds (pruned to those after each chunk, so its size is bounded by the cache's).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float, Int

from worldscape_jax.play.engines import MemoryView


class FramePoses:
    """Camera centre [3] of each latent frame the stream may still attend to."""

    def __init__(self):
        self._centres: dict[int, np.ndarray] = {}

    def add(self, first_frame: int, c2w_per_frame: Float[np.ndarray, "f 4 4"]) -> None:
        for offset, c2w in enumerate(np.asarray(c2w_per_frame)):
            self._centres[first_frame + offset] = np.asarray(c2w[:3, 3], np.float32)

    def keep_only(self, frames) -> None:
        keep = {int(f) for f in frames}
        self._centres = {f: c for f, c in self._centres.items() if f in keep}

    def centres(self, frames: Int[np.ndarray, "n"]) -> Float[np.ndarray, "n 3"]:
        missing = [int(f) for f in frames if int(f) not in self._centres]
        if missing:
            raise KeyError(f"FramePoses: no pose recorded for latent frames {missing}")
        return np.asarray([self._centres[int(f)] for f in frames], np.float32).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._centres)


def classify_context(frame_index: Int[np.ndarray, "s"], valid: Bool[np.ndarray, "s"], sink_frames: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sink, local, selected) latent frame indices, each ascending, of one context's valid slots."""
    frames = np.unique(np.asarray(frame_index)[np.asarray(valid, bool)])
    sink = frames[frames < sink_frames]
    rest = frames[frames >= sink_frames][::-1]                       # newest first
    breaks = np.flatnonzero(np.diff(rest) != -1)
    run = int(breaks[0]) + 1 if len(breaks) else len(rest)
    return sink, np.sort(rest[:run]), np.sort(rest[run:])


def memory_view(frame_index: Int[np.ndarray, "s"], valid: Bool[np.ndarray, "s"], sink_frames: int,
                poses: FramePoses) -> MemoryView:
    """The MemoryView of a context (see classify_context) with each frame's camera centre."""
    groups = classify_context(frame_index, valid, sink_frames)
    sink, local, selected = ((frames, poses.centres(frames)) for frames in groups)
    return MemoryView(sink=sink, local=local, selected=selected)


def slots_memory_view(slots: Int[np.ndarray, "c"], valid: Bool[np.ndarray, "c"], is_memory: Bool[np.ndarray, "c"],
                      slot_first_frame: Int[np.ndarray, "n"], slot_length: Int[np.ndarray, "n"],
                      slot_position: Float[np.ndarray, "n 3"]) -> MemoryView:
    """The MemoryView of a chunk-slot cache (MACO) from its context slots: slot 0 is the sink, the memory
    slots are the selected entries, the rest the local window. Each chunk is drawn at its own camera, one
    entry per chunk (its first latent frame), so nothing depends on where the context places it in time."""
    def group(mask):
        chosen = np.asarray(slots)[np.asarray(mask, bool) & np.asarray(valid, bool)]
        chosen = chosen[np.asarray(slot_length)[chosen] > 0]
        order = np.argsort(np.asarray(slot_first_frame)[chosen], kind="stable")
        return (np.asarray(slot_first_frame)[chosen][order].astype(np.int64),
                np.asarray(slot_position, np.float32)[chosen][order].reshape(-1, 3))

    first = np.arange(len(slots)) == 0
    return MemoryView(sink=group(first), local=group(~first & ~np.asarray(is_memory, bool)),
                      selected=group(np.asarray(is_memory, bool)))
