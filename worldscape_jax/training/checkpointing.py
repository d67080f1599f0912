"""One Orbax CheckpointManager that saves the train state and the Grain iterator state together.

Each step directory holds two items: `state` (the TrainState pytree, restored straight into its
target shardings) and `data_iter` (the Grain iterator position, one JSON file per process), so a
resumed run sees exactly the batches an uninterrupted one would. Saves are asynchronous; the last
`keep` steps are kept. Restoring walks the steps newest first: a partial or corrupt checkpoint is
skipped, with a warning naming it and the error, for the one before it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from worldscape_jax.training.train_state import TrainState

log = logging.getLogger(__name__)

STATE_ITEM = "state"
DATA_ITEM = "data_iter"


def _abstract_with_shardings(target: Any) -> Any:
    """ShapeDtypeStructs carrying each leaf's sharding: Orbax restores directly into that layout."""

    def to_abstract(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)

    return jax.tree.map(to_abstract, target)


class Checkpointer:
    """Save / restore (TrainState, Grain iterator) pairs under `directory`."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"config.checkpoint.keep must be >= 1, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save, cleanup_tmp_directories=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_names=(STATE_ITEM, DATA_ITEM),
            item_handlers={STATE_ITEM: ocp.StandardCheckpointHandler(), DATA_ITEM: grain.checkpoint.CheckpointHandler()},
        )

    def all_steps(self) -> list[int]:
        """Committed steps, oldest first (uncommitted temporary directories are not listed)."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: TrainState, data_iter: Any | None, force: bool = False) -> bool:
        """Start an (async) save of state and iterator at `step`. Returns whether a save started."""
        items = {STATE_ITEM: ocp.args.StandardSave(state)}
        if data_iter is not None:
            items[DATA_ITEM] = grain.checkpoint.CheckpointSave(data_iter)
        return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

    def _restore_step(self, step: int, target: TrainState, data_iter: Any | None) -> TrainState:
        items = {STATE_ITEM: ocp.args.StandardRestore(_abstract_with_shardings(target))}
        if data_iter is not None:
            items[DATA_ITEM] = grain.checkpoint.CheckpointRestore(data_iter)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored[STATE_ITEM]

    def restore_latest(self, target: TrainState, data_iter: Any | None) -> tuple[TrainState, int] | None:
        """Restore the newest readable checkpoint into `target`'s shapes and shardings.

        `data_iter` is set to the saved position in place. Returns (state, step), or None when no
        checkpoint exists or none could be read (each failure is logged as a warning). Unreadable
        checkpoints newer than the restored one are deleted, since training will write those steps again.
        """
        unreadable = []
        for step in reversed(self.all_steps()):
            try:
                state = self._restore_step(step, target, data_iter)
            except Exception as err:  # noqa: BLE001 - any unreadable checkpoint falls back to the previous
                log.warning(
                    "checkpointing: checkpoint at step %d in %s is partial or corrupt (%s: %s); "
                    "trying the previous one",
                    step,
                    self.directory,
                    type(err).__name__,
                    str(err).splitlines()[0][:300] if str(err) else "",
                )
                unreadable.append(step)
                continue
            self._discard(unreadable)
            return state, step
        return None

    def _discard(self, steps: list[int]) -> None:
        """Delete unreadable checkpoints newer than the restored one, so their steps can be saved again."""
        for step in steps:
            log.warning("checkpointing: deleting unreadable checkpoint at step %d in %s", step, self.directory)
            self._manager.delete(step)

    def wait(self) -> None:
        """Block until any in-flight async save has been committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
