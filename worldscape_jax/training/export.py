"""Export a trained run's parameters as one small, self-describing directory (read back by
`inference/loading.load_exported`).

A training run's Orbax checkpoints hold everything needed to resume (optimizer state, EMA, data
iterator); a model that ships inside the repository needs only its parameters, its config and the
log of how it was trained. An export directory holds:

  params.msgpack   the parameters (EMA when the run kept them), float32, flax msgpack
  manifest.json    the size and SHA-256 of params.msgpack, which loading checks
  config.json      the stage config the run was trained with
  metrics.jsonl    the run's training log (copied)
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

from worldscape_jax.errors import CheckpointError
from worldscape_jax.inference.loading import CONFIG_FILE, LOG_FILE, MANIFEST_FILE, PARAMS_FILE, manifest_of
from worldscape_jax.training.checkpointing import Checkpointer
from worldscape_jax.training.loop import abstract_target, build


def export_params(params: Any, directory: str | os.PathLike, config: ml_collections.ConfigDict,
                  log_file: str | os.PathLike | None = None) -> str:
    """Writes params (as float32 numpy) with their checksum, the config and optionally the training log
    to `directory`."""
    os.makedirs(directory, exist_ok=True)
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
    data = flax.serialization.msgpack_serialize(host)
    with open(os.path.join(directory, PARAMS_FILE), "wb") as f:
        f.write(data)
    with open(os.path.join(directory, MANIFEST_FILE), "w") as f:
        json.dump(manifest_of(data), f, indent=1)
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    if log_file is not None:
        shutil.copyfile(log_file, os.path.join(directory, LOG_FILE))
    return directory


def restore_trained_params(config: ml_collections.ConfigDict, workdir: str | os.PathLike, use_ema: bool = True):
    """The params (EMA when kept and `use_ema`) of the newest readable checkpoint of a run, and its step."""
    setup = build(config)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep, async_save=False)
    restored = ckpt.restore_latest(abstract_target(setup), None)
    if restored is None:
        raise CheckpointError(os.path.join(workdir, "checkpoints"), "no readable checkpoint (is --workdir a run "
                                                                    "directory of this config's stage?)")
    state, step = restored
    params = state.ema_params if (use_ema and state.ema_params is not None) else state.params
    select = getattr(setup.stage, "exported_params", None)  # e.g. the generator of {generator, critic, teacher}
    return (params if select is None else select(params)), step
