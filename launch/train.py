"""Train any stage: `python launch/train.py --config configs/<stage>.py:<scale> --workdir runs/x`.

Overrides: `--config.optim.lr=1e-4 --config.mesh.fsdp=4`. The same command runs
  * on one device (CPU, GPU or TPU);
  * on many local devices, e.g. 8 virtual CPUs: XLA_FLAGS=--xla_force_host_platform_device_count=8
    with `--config.mesh.fsdp=4 --config.mesh.tensor=2`;
  * as several processes (JAX's multi-controller runtime): each process runs this command with
    `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`, or with `--distributed`
    alone where JAX detects the cluster itself (SLURM, TPU pods, Kubernetes).
Resuming is automatic: rerunning with the same --workdir continues from its newest readable checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from worldscape_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file, e.g. configs/teacher.py:tiny.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics.jsonl, tensorboard/, samples/.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with cluster auto-detection.")
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed() -> None:
    """Start JAX's multi-controller runtime when flags ask for it (before any other JAX call)."""
    import jax

    explicit = [_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value]
    if any(v is not None for v in explicit):
        if any(v is None for v in explicit):
            raise app.UsageError("--coordinator_address, --num_processes and --process_id must be given together")
        if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
            raise app.UsageError(f"--process_id={_PROCESS_ID.value} must be in [0, {_NUM_PROCESSES.value})")
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    initialize_distributed()
    from worldscape_jax.training.loop import train

    train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    cli.run(main)
