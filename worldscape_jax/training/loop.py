"""The generic training loop: mesh, sharded init, one jitted step, logs, checkpoints, samples.

`train(config, workdir)` runs the stage named by `config.stage` (training/stages/__init__.py):
  1. build the mesh from `config.mesh` and the optimizer from `config.optim`;
  2. derive the state's shardings from `jax.eval_shape` of the init and the logical axis rules;
  3. restore the newest readable checkpoint (state and Grain iterator) into those shardings, or
     initialise the state with `jax.jit(init, out_shardings=...)`;
  4. compile one train step with explicit in/out shardings and the state donated, count its
     matmul FLOPs (training/flops.py) for the MFU estimate, and run it to `config.total_steps`, logging (JSONL, TensorBoard,
     progress bar), checkpointing and writing sample videos on the configured intervals.
The same code runs on one device, many local devices and many processes (after
`jax.distributed.initialize`): every process executes it, only process 0 writes logs and media.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from worldscape_jax.training import logging as train_logging
from worldscape_jax.training import media, sharding
from worldscape_jax.training.checkpointing import Checkpointer
from worldscape_jax.training.flops import function_flops
from worldscape_jax.training.init_from import load_init_params
from worldscape_jax.training.optim import make_optimizer
from worldscape_jax.training.run_config import write_run_config
from worldscape_jax.training.stages import get_stage
from worldscape_jax.training.step import dtype_from_config, make_train_step
from worldscape_jax.training.train_state import TrainState, cast_floating, create_train_state

Hook = Callable[[int, TrainState], None]


@dataclasses.dataclass
class Setup:
    """What the loop (and benchmarks) need, built once per run."""

    stage: Any
    mesh: jax.sharding.Mesh
    rules: tuple
    state_shardings: Any
    abstract_state: TrainState
    init_state: Callable[[jax.Array], TrainState]
    train_step: Callable


def build(config: Any) -> Setup:
    """Stage, mesh, optimizer, state shardings and the pure step for `config`."""
    stage = get_stage(config.stage)
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.normalize_rules(config.logical_axis_rules)
    tx, schedule = stage_optimizer(stage, config)
    param_dtype = dtype_from_config(config.precision.param_dtype, "param_dtype")
    use_ema = float(config.ema.decay) > 0

    def init_state(rng: jax.Array) -> TrainState:
        param_rng, state_rng = jax.random.split(rng)
        params = cast_floating(sharding.unbox(stage.init_params(param_rng, config)), param_dtype)
        return create_train_state(params, tx, state_rng, use_ema)

    # Init is traced without a mesh in context: the layout comes from out_shardings, and flax would
    # otherwise constrain each boxed param as it is created (rejecting names like ('embed', 'embed')).
    rng = jax.random.key(config.seed)
    param_specs = sharding.logical_param_specs(jax.eval_shape(lambda r: stage.init_params(r, config), rng))
    abstract_state = jax.eval_shape(init_state, rng)
    logical = sharding.state_logical_specs(abstract_state, param_specs, tx)
    state_shardings = sharding.logical_to_shardings(logical, mesh, rules)
    sharding.check_divisible(abstract_state, state_shardings, "state")
    step = make_train_step(stage.loss_fn, config, tx, schedule)
    return Setup(stage, mesh, rules, state_shardings, abstract_state, init_state, step)


def stage_optimizer(stage: Any, config: Any):
    """(tx, schedule): the stage's own `make_optimizer(config)` when it has one (several networks in one
    params pytree, e.g. a frozen teacher), else the optimizer of `config.optim`."""
    if hasattr(stage, "make_optimizer"):
        return stage.make_optimizer(config)
    return make_optimizer(config.optim, config.total_steps)


def initial_state(setup: Setup, config: Any) -> TrainState:
    """A fresh state, created directly in its shardings."""
    init = jax.jit(setup.init_state, out_shardings=setup.state_shardings)
    return init(jax.random.key(config.seed))


def abstract_target(setup: Setup) -> TrainState:
    """ShapeDtypeStructs with shardings: what a checkpoint is restored into."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), setup.abstract_state, setup.state_shardings
    )


def to_global_batch(local: dict, mesh: jax.sharding.Mesh) -> tuple[dict, Any]:
    """Assemble each process's local numpy batch into global arrays split over ('data', 'fsdp')."""
    count = jax.process_count()
    abstract = {k: jax.ShapeDtypeStruct((v.shape[0] * count,) + v.shape[1:], v.dtype) for k, v in local.items()}
    shardings = sharding.batch_shardings(abstract, mesh)
    batch = {
        k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v), abstract[k].shape)
        for k, v in local.items()
    }
    return batch, shardings


def compile_step(setup: Setup, state: TrainState, batch: dict, batch_shardings: Any):
    """jit + lower + compile the step with explicit shardings and the state donated."""
    replicated = sharding.replicated(setup.mesh)
    jitted = jax.jit(
        setup.train_step,
        in_shardings=(setup.state_shardings, batch_shardings),
        out_shardings=(setup.state_shardings, replicated),
        donate_argnums=(0,),
    )
    with jax.set_mesh(setup.mesh), nn.logical_axis_rules(setup.rules):
        return jitted.lower(state, batch).compile()


def step_flops_per_device(setup: Setup, state: TrainState, batch: dict) -> float:
    """Matmul FLOPs of one train step (from its jaxpr, scans included) divided over the devices."""
    with jax.set_mesh(setup.mesh), nn.logical_axis_rules(setup.rules):
        return function_flops(setup.train_step, state, batch) / jax.device_count()


def to_host(x: jax.Array) -> np.ndarray:
    """Gather a (possibly multi-process) array to a numpy array on every process."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def write_samples(setup: Setup, config: Any, state: TrainState, workdir: str, step: int) -> None:
    """Sample videos from the EMA (else live) params; process 0 writes mp4 + contact sheet."""
    params = state.ema_params if state.ema_params is not None else state.params
    rng = jax.random.fold_in(jax.random.key(config.seed + 1), step)
    with jax.set_mesh(setup.mesh), nn.logical_axis_rules(setup.rules):
        videos = to_host(setup.stage.sample(params, rng, config))
    if jax.process_index() == 0:
        media.write_samples(os.path.join(workdir, "samples"), f"step_{step:07d}", videos, fps=config.sample.fps)


def write_run_summary(setup: Setup, state: TrainState, workdir: str, config: Any) -> None:
    """Process 0 writes sharding.json (path -> shape and mesh spec per param) and the run's config.json
    (what launch/export.py exports it with), and prints the mesh."""
    if jax.process_index() != 0:
        return
    os.makedirs(workdir, exist_ok=True)
    params = sharding.describe_sharding(state.params)
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    summary = {"mesh": dict(setup.mesh.shape), "processes": jax.process_count(), "params": params}
    with open(os.path.join(workdir, "sharding.json"), "w") as f:
        json.dump(summary, f, indent=1)
    write_run_config(workdir, config)
    print(f"train: {count:,} params on mesh {dict(setup.mesh.shape)} over {jax.process_count()} process(es)")


def _should(every: int, step: int) -> bool:
    return every > 0 and step % every == 0


def restore_or_init(setup: Setup, config: Any, ckpt: Checkpointer, data_iter: Any) -> tuple[TrainState, int]:
    """The newest readable checkpoint (state + iterator), else a fresh state at step 0."""
    restored = ckpt.restore_latest(abstract_target(setup), data_iter)
    if restored is not None:
        return restored
    state = initial_state(setup, config)
    if config.init_from:
        state = start_from_export(state, setup, config.init_from)
    return state, 0


def start_from_export(state: TrainState, setup: Setup, path: str) -> TrainState:
    """`state` with its params (and EMA params) replaced by those of export `path`: fine-tuning, or
    continuing a model under a new recipe. The optimizer state and step stay fresh."""
    loaded = load_init_params(path, setup.abstract_state.params)
    params = jax.device_put(loaded, setup.state_shardings.params)
    ema = None if state.ema_params is None else jax.device_put(loaded, setup.state_shardings.ema_params)
    if jax.process_index() == 0:
        print(f"init_from: params of {path}")
    return state.replace(params=params, ema_params=ema)


def train(config: Any, workdir: str, hooks: Sequence[tuple[int, Hook]] = ()) -> TrainState:
    """Run (or resume) training of `config.stage` in `workdir`; return the final state.

    hooks: (every_steps, fn(step, state)) pairs called after the step, e.g. evaluations.
    """
    setup = build(config)
    data_iter = setup.stage.make_dataset(config, jax.process_index(), jax.process_count())
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.checkpoint.keep, config.checkpoint.async_save)
    writer = train_logging.MetricWriter(workdir, tensorboard=config.log.tensorboard)
    state, step = restore_or_init(setup, config, ckpt, data_iter)
    if step >= config.total_steps and jax.process_index() == 0:
        print(f"train: {workdir} already finished (its checkpoint is at step {step}, config.total_steps is "
              f"{config.total_steps}); nothing to train. Raise --config.total_steps to continue it, or give a "
              "new --workdir for a fresh run.")
    writer.truncate_after(step)
    write_run_summary(setup, state, workdir, config)
    progress = train_logging.Progress(step, config.total_steps, config.global_batch, config.log.progress)
    peak = train_logging.peak_flops_per_device()
    compiled, flops, saved_step = None, None, step
    try:
        while step < config.total_steps:
            batch, batch_shardings = to_global_batch(next(data_iter), setup.mesh)
            if compiled is None:
                compiled = compile_step(setup, state, batch, batch_shardings)
                flops = step_flops_per_device(setup, state, batch)
            state, metrics = compiled(state, batch)
            step += 1
            if _should(config.log.every_steps, step) or step == config.total_steps:
                scalars = train_logging.scalarize(metrics)
                seconds, examples_per_s = progress.rates(step)
                scalars.update(steps_per_s=1.0 / seconds, examples_per_s=examples_per_s)
                utilisation = train_logging.mfu(flops, seconds, peak)
                if utilisation is not None:
                    scalars["mfu"] = utilisation
                writer.write(step, scalars)
                progress.update(step, scalars)
            if _should(config.checkpoint.every_steps, step):
                ckpt.save(step, state, data_iter)
                saved_step = step
            if _should(config.sample.every_steps, step) and hasattr(setup.stage, "sample"):
                write_samples(setup, config, state, workdir, step)
            for every, hook in hooks:
                if _should(every, step):
                    hook(step, state)
            if config.stop_at_step and step >= config.stop_at_step:
                return state  # a preemption: no final save beyond the periodic ones
        if saved_step != step:
            ckpt.save(step, state, data_iter, force=True)
        return state
    finally:
        ckpt.close()
        writer.close()
        progress.close()
