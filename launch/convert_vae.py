"""Convert the official Wan2.1 VAE (`Wan2.1_VAE.pth`, or Diffusers' `vae/`) to our Flax params as an Orbax checkpoint.

  python launch/convert_vae.py --checkpoint Wan2.1_VAE.pth --out ckpt/wan2_1_vae
  python launch/convert_vae.py --checkpoint Wan2.1-T2V-1.3B-Diffusers/vae --out ckpt/wan2_1_vae --naming diffusers

The torch file is read without torch. Every tensor must be used and every parameter filled, or the
run stops with a list of every missing / left-over / mis-shaped key. Load the result with
`checkpoint_io.load_params_orbax(out)` and use it with `worldscape_jax.models.vae` and the
`wan2_1` preset.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from absl import app, flags

from worldscape_jax import cli
from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.state_dict import ConversionError
from worldscape_jax.convert.wan_vae import vae_params_from_state_dict
from worldscape_jax.models.vae_config import get_vae_config

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Wan VAE weights: .pth, .safetensors, or a directory.")
_OUT = flags.DEFINE_string("out", None, "Orbax checkpoint directory to write.")
_PRESET = flags.DEFINE_string("preset", "wan2_1", "VAE preset the weights belong to.")
_NAMING = flags.DEFINE_enum("naming", "auto", ["auto", "original", "diffusers"], "Checkpoint key naming.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")
flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.perf_counter()
    try:
        state_dict = checkpoint_io.load_state_dict(_CHECKPOINT.value)
        params = vae_params_from_state_dict(state_dict, get_vae_config(_PRESET.value), naming=_NAMING.value,
                                            source=_CHECKPOINT.value)
        out = checkpoint_io.save_params_orbax(params, _OUT.value, force=_OVERWRITE.value)
    except (ConversionError, checkpoint_io.CheckpointFormatError, FileExistsError, ValueError) as error:
        sys.exit(f"error: {error}")
    count = sum(np.size(a) for a in _leaves(params))
    print(f"converted {len(state_dict)} tensors ({count / 1e6:.1f} M parameters) -> {out} "
          f"in {time.perf_counter() - start:.1f} s")


def _leaves(tree):
    return [leaf for value in tree.values() for leaf in (_leaves(value) if isinstance(value, dict) else [value])]


if __name__ == "__main__":
    cli.run(main)
