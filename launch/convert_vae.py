"""Convert the official Wan2.1 VAE (`Wan2.1_VAE.pth`, or Diffusers' `vae/`) to our Flax params as an Orbax checkpoint.

  python launch/convert_vae.py --checkpoint Wan2.1_VAE.pth --out ckpt/wan2_1_vae
  python launch/convert_vae.py --checkpoint Wan2.1-T2V-1.3B-Diffusers/vae --out ckpt/wan2_1_vae --naming diffusers
  python launch/convert_vae.py --checkpoint my_vae.safetensors --out ckpt/my_vae \
      --config configs/vae.py:wan2_1 --config.model.dim=64        # a VAE of another shape

--config is the VAE stage config (configs/vae.py, `wan2_1` by default); its `model` names the preset
and spells out its shape, and every field can be overridden as in `convert_wan.py`. The torch file is
read without torch. Every tensor must be used and every parameter filled, or the run stops with a
list of every missing / left-over / mis-shaped key; otherwise it prints what it read. Load the result
with `checkpoint_io.load_params_orbax(out)` and use it with `worldscape_jax.models.vae`.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from worldscape_jax import cli
from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.state_dict import ConversionError
from worldscape_jax.convert.torch_zip import TorchFormatError
from worldscape_jax.convert.wan_vae import vae_params_from_state_dict
from worldscape_jax.training.stages.vae import vae_config

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "vae.py")

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Wan VAE weights: .pth, .safetensors, or a directory.")
_CONFIG = config_flags.DEFINE_config_file("config", f"{DEFAULT_CONFIG}:wan2_1",
                                          "VAE config, e.g. configs/vae.py:wan2_1; override with --config.model.X=...")
_OUT = flags.DEFINE_string("out", None, "Orbax checkpoint directory to write.")
_NAMING = flags.DEFINE_enum("naming", "auto", ["auto", "original", "diffusers"], "Checkpoint key naming.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")
flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    start = time.perf_counter()
    try:
        state_dict = checkpoint_io.load_state_dict(_CHECKPOINT.value)
        converted = vae_params_from_state_dict(state_dict, vae_config(_CONFIG.value), naming=_NAMING.value,
                                               source=_CHECKPOINT.value)
        out = checkpoint_io.save_params_orbax(converted.params, _OUT.value, force=_OVERWRITE.value)
    except (ConversionError, checkpoint_io.CheckpointFormatError, TorchFormatError, FileExistsError,
            ValueError) as error:
        sys.exit(f"error: {error}")
    print(converted.report.summary())
    print(f"written: {out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    cli.run(main)
