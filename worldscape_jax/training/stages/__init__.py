"""Training stages: each paper stage is one small module the generic trainer (loop.py) runs.

The protocol
------------
A stage is any object (usually a module) with these attributes:

``init_params(rng, config) -> params``
    Fresh parameters. Return them as `model.init(...)["params"]` gives them: leaves may be wrapped
    in flax logical-partitioning boxes (`nn.with_logical_partitioning`), which is how the trainer
    learns each parameter's logical axes. It is only traced under `jax.eval_shape` and `jax.jit`.

``loss_fn(params, batch, rng, config) -> (loss, metrics)``
    A pure, jittable function. `params` arrive unboxed and already cast to
    `config.precision.compute_dtype`; `batch` is the global batch (a dict of arrays sharded over
    ('data', 'fsdp') on the leading axis); `rng` is this step's (and micro-batch's) key.
    `loss` is a scalar; `metrics` a dict of scalars (averaged over micro-batches and logged).

``make_dataset(config, process_index, process_count) -> iterator``
    An iterator of this process's share of each global batch: dicts of numpy arrays whose leading
    axis is `config.global_batch // process_count`. It must be checkpointable, i.e. a Grain
    `DatasetIterator` (see `training/data_iter.py` for an index-based helper), so a resumed run
    continues with the next batch.

``sample(params, rng, config) -> uint8 [N, F, H, W, 3]``  (optional)
    Videos to look at; the trainer writes them as mp4 plus a contact-sheet PNG every
    `config.sample.every_steps` steps.

``make_optimizer(config) -> (tx, schedule)``  (optional)
    The stage's own optimizer, for params that hold several networks (e.g. Self-Forcing's generator,
    critic and frozen teacher: `optax.multi_transform`); the default is `training/optim.py` on `config.optim`.

``exported_params(params) -> params``  (optional)
    What launch/export.py writes (e.g. the generator alone).

Naming a stage
--------------
`config.stage` is either a registered name (`register_stage`), a module under this package
(`"flow_dit"` -> `worldscape_jax.training.stages.flow_dit`), or an importable path
`"package.module"` / `"module:attribute"` (tests define small stages this way).
"""

from __future__ import annotations

import importlib
from typing import Any, Iterator, Protocol, runtime_checkable

import jax


@runtime_checkable
class Stage(Protocol):
    """The three functions every stage provides (see the module docstring)."""

    def init_params(self, rng: jax.Array, config: Any) -> Any: ...

    def loss_fn(self, params: Any, batch: Any, rng: jax.Array, config: Any) -> tuple[jax.Array, dict]: ...

    def make_dataset(self, config: Any, process_index: int, process_count: int) -> Iterator[dict]: ...


REQUIRED = ("init_params", "loss_fn", "make_dataset")
_REGISTRY: dict[str, Any] = {}


def register_stage(name: str, stage: Any) -> None:
    """Make `stage` available as `config.stage = name`."""
    check_stage(stage, name)
    _REGISTRY[name] = stage


def check_stage(stage: Any, name: str) -> Any:
    """Raise naming the missing functions when `stage` does not follow the protocol."""
    missing = [attr for attr in REQUIRED if not callable(getattr(stage, attr, None))]
    if missing:
        raise TypeError(f"training stage {name!r} lacks {missing}; a stage must define {REQUIRED}")
    return stage


def get_stage(name: str) -> Any:
    """Resolve `config.stage` (registered name, stage module name, or 'module[:attribute]')."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, colon, attribute = name.partition(":")
    if "." not in module_name and not colon:
        module_name = f"{__name__}.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"config.stage={name!r}: no registered stage and cannot import {module_name!r} ({err}); "
            f"registered: {sorted(_REGISTRY)}"
        ) from err
    stage = getattr(module, attribute) if attribute else module
    return check_stage(stage, name)
