"""The train step: loss and gradients (optionally over micro-batches), optimizer update, EMA.

`make_train_step` returns a pure `train_step(state, batch) -> (state, metrics)` that loop.py jits
with explicit shardings and donation. Gradient accumulation splits the global batch into
`config.optim.accumulation_steps` micro-batches and scans over them; micro-batch j takes rows
j, j + k, j + 2k, ... so that every device keeps working on its own rows. Because each micro-batch
has the same size, the mean of micro-batch losses equals the full-batch loss and one accumulated
step equals one large-batch step. bf16 compute: the loss sees params cast to
`config.precision.compute_dtype` while the master copy and the gradients stay in the param dtype.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec

from worldscape_jax.training.sharding import BATCH_AXES
from worldscape_jax.training.train_state import TrainState, apply_gradients, cast_floating, step_rng

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_from_config(name: str, field: str) -> jnp.dtype:
    if name not in DTYPES:
        raise ValueError(f"config.precision.{field} must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def split_micro_batches(batch: Any, num_micro: int) -> Any:
    """[B, ...] -> [k, B/k, ...] with micro-batch j = rows j, j + k, ... (strided, device-local)."""

    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(
                f"step: batch size {x.shape[0]} is not divisible by config.optim.accumulation_steps={num_micro}"
            )
        return jnp.swapaxes(x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def _constrain_batch(micro: Any) -> Any:
    """Keep a micro-batch split over the batch mesh axes (no-op without a mesh in context)."""
    if jax.sharding.get_abstract_mesh().empty:
        return micro
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, PartitionSpec(BATCH_AXES)), micro)


def make_grad_fn(loss_fn: Callable, config: Any) -> Callable:
    """(params, batch, rng) -> ((loss, metrics), grads), accumulating over micro-batches if asked."""
    compute_dtype = dtype_from_config(config.precision.compute_dtype, "compute_dtype")
    num_micro = int(config.optim.accumulation_steps)
    if num_micro < 1:
        raise ValueError(f"config.optim.accumulation_steps must be >= 1, got {num_micro}")

    def loss_in_compute_dtype(params, batch, rng):
        loss, metrics = loss_fn(cast_floating(params, compute_dtype), batch, rng, config)
        return loss.astype(jnp.float32), metrics

    value_and_grad = jax.value_and_grad(loss_in_compute_dtype, has_aux=True)
    if num_micro == 1:
        return value_and_grad

    def accumulated(params, batch, rng):
        micro_batches = split_micro_batches(batch, num_micro)

        def body(carry, inputs):
            index, micro = inputs
            (loss, metrics), grads = value_and_grad(params, _constrain_batch(micro), jax.random.fold_in(rng, index))
            return jax.tree.map(jnp.add, carry, grads), (loss, metrics)

        zeros = jax.tree.map(jnp.zeros_like, params)
        grads, (losses, metrics) = jax.lax.scan(body, zeros, (jnp.arange(num_micro), micro_batches))
        grads = jax.tree.map(lambda g: g / num_micro, grads)
        return (losses.mean(), jax.tree.map(jnp.mean, metrics)), grads

    return accumulated


def make_train_step(
    loss_fn: Callable, config: Any, tx: optax.GradientTransformation, schedule: optax.Schedule
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
    """The pure train step for `loss_fn` under `config` (see the module docstring)."""
    grad_fn = make_grad_fn(loss_fn, config)
    ema_decay = float(config.ema.decay)
    ema_start = int(config.ema.start_step)

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        (loss, metrics), grads = grad_fn(state.params, batch, step_rng(state))
        new_state = apply_gradients(state, grads, tx, ema_decay, ema_start)
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(new_state.params),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
        }
        return new_state, metrics

    return train_step
