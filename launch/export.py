"""Export a trained run's parameters (EMA when kept), config and log into a small directory.

  python launch/export.py --config configs/vae.py:tiny --workdir runs/vae_tiny \
      --out worldscape_jax/assets/vae_tiny
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "The stage config the run was trained with.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run directory (holds checkpoints/ and metrics.jsonl).")
_OUT = flags.DEFINE_string("out", None, "Export directory.")
_EMA = flags.DEFINE_bool("ema", True, "Export the EMA parameters when the run kept them.")
flags.mark_flags_as_required(["config", "workdir", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from worldscape_jax.training.export import export_params, restore_trained_params

    params, step = restore_trained_params(_CONFIG.value, _WORKDIR.value, use_ema=_EMA.value)
    log = os.path.join(_WORKDIR.value, "metrics.jsonl")
    export_params(params, _OUT.value, _CONFIG.value, log if os.path.isfile(log) else None)
    size = os.path.getsize(os.path.join(_OUT.value, "params.msgpack"))
    print(f"export: step {step} of {_WORKDIR.value} -> {_OUT.value} ({size / 1e6:.2f} MB of params)")


if __name__ == "__main__":
    app.run(main)
