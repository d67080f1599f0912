"""Export a trained run's parameters (EMA when kept), config and log into a small directory.

  python launch/export.py --workdir runs/vae_tiny --out worldscape_jax/assets/vae_tiny

The config is the one the run was last started with (WORKDIR/config.json, written by the trainer).
A --config given as well must match it (an error names the fields that differ); runs older than
that file need --config, with the overrides they were trained with.
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from worldscape_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Optional: the stage config the run was trained with "
                                          "(checked against WORKDIR/config.json; needed for older runs).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run directory (holds checkpoints/ and metrics.jsonl).")
_OUT = flags.DEFINE_string("out", None, "Export directory.")
_EMA = flags.DEFINE_bool("ema", True, "Export the EMA parameters when the run kept them.")
flags.mark_flags_as_required(["workdir", "out"])


def metadata_summary(config) -> dict:
    return {k: config[k] for k in ("exported_step", "heldout_psnr") if k in config}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from worldscape_jax.training.export import export_params, restore_trained_params
    from worldscape_jax.training.run_config import resolve_run_config
    from worldscape_jax.training.stages import get_stage

    given = None if _CONFIG.value is None else _CONFIG.value.copy_and_resolve_references()
    config = resolve_run_config(_WORKDIR.value, given)
    params, step = restore_trained_params(config, _WORKDIR.value, use_ema=_EMA.value)
    metadata = getattr(get_stage(config.stage), "export_metadata", None)
    if metadata is not None:  # e.g. the VAE's latent statistics, which loading needs
        with config.unlocked():
            config.update(metadata(params, config))
            config.exported_step = step
        print("export: " + ", ".join(f"{k}={v}" for k, v in metadata_summary(config).items()))
    log = os.path.join(_WORKDIR.value, "metrics.jsonl")
    export_params(params, _OUT.value, config, log if os.path.isfile(log) else None)
    size = os.path.getsize(os.path.join(_OUT.value, "params.msgpack"))
    print(f"export: step {step} of {_WORKDIR.value} -> {_OUT.value} ({size / 1e6:.2f} MB of params)")


if __name__ == "__main__":
    cli.run(main)
