"""The training state as one explicit pytree: step, params, optimizer state, EMA params, RNG.

Params are the fp32 master weights (or whatever `param_dtype` the config asks for); the loss sees a
copy cast to the compute dtype (`cast_floating`), so gradients come back in the master dtype. The
RNG is the run's base key stored as raw uint32 key data (checkpointable as a plain array); each step
derives its own key with `step_rng`, so a resumed run draws exactly the keys an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes. `ema_params` is None when EMA is off."""

    step: Array
    params: PyTree
    opt_state: PyTree
    ema_params: PyTree | None
    rng: Array


def create_train_state(params: PyTree, tx: optax.GradientTransformation, rng: jax.Array, use_ema: bool) -> TrainState:
    """A fresh state at step 0. `rng` may be a typed key or raw key data; it is stored as raw data."""
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if use_ema else None,
        rng=rng,
    )


def step_rng(state: TrainState) -> jax.Array:
    """This step's key: fold_in(base key, step). Depends only on the seed and the step number."""
    return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)


def cast_floating(tree: PyTree, dtype: jnp.dtype) -> PyTree:
    """Cast every floating-point leaf to `dtype` (integer and bool leaves are left as they are)."""

    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def ema_update(ema_params: PyTree, params: PyTree, decay: Array) -> PyTree:
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf in the EMA's dtype."""
    return jax.tree.map(lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype), ema_params, params)


def ema_decay_at(step: Array, decay: float, start_step: int) -> Array:
    """The EMA decay for this step: 0 (copy the params) before `start_step`, `decay` from then on."""
    return jnp.where(step >= start_step, jnp.float32(decay), jnp.float32(0.0))


def apply_gradients(
    state: TrainState,
    grads: PyTree,
    tx: optax.GradientTransformation,
    ema_decay: float = 0.0,
    ema_start_step: int = 0,
) -> TrainState:
    """One optimizer update, then the EMA update (if the state has EMA params), then step + 1."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
        ema = ema_update(ema, params, ema_decay_at(state.step, ema_decay, ema_start_step))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
