r"""Convert an official Wan2.1 DiT checkpoint to our Flax params, saved as an Orbax checkpoint.

  python launch/convert_wan.py --checkpoint Wan2.1-T2V-1.3B/ --config configs/dit.py:wan1_3b --out ckpt/wan1_3b
  python launch/convert_wan.py --checkpoint Wan2.1-Fun-1.3B-Control/diffusion_pytorch_model.safetensors \
      --config configs/dit.py:wan1_3b,fun_control --out ckpt/wan1_3b_fun_control --dtype bfloat16

--checkpoint takes a `.safetensors`, a torch `.pth`/`.pt`/`.bin` (read without torch), a sharded
`*.index.json`, or a directory holding one of them. Original Wan names and Diffusers names
(`Wan-AI/Wan2.1-T2V-1.3B-Diffusers/transformer`) are detected, or forced with --naming. The run
prints what it read and wrote, names every parameter left at its init (the camera encoder, which
Wan checkpoints do not have), and checks the written checkpoint by restoring it. Load it with
`worldscape_jax.convert.checkpoint_io.load_params_orbax(out)`.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import ml_dtypes
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from worldscape_jax import cli
from worldscape_jax.convert import checkpoint_io
from worldscape_jax.convert.state_dict import ConversionError
from worldscape_jax.convert.torch_zip import TorchFormatError
from worldscape_jax.convert.wan_dit import dit_params_from_state_dict

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Wan DiT weights: file, *.index.json, or directory.")
_CONFIG = config_flags.DEFINE_config_file("config", None, "DiT config, e.g. configs/dit.py:wan1_3b[,fun_control].")
_OUT = flags.DEFINE_string("out", None, "Orbax checkpoint directory to write (must not exist unless --overwrite).")
_NAMING = flags.DEFINE_enum("naming", "auto", ["auto", "original", "diffusers"], "Checkpoint key naming.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "dtype of the written parameters.")
_CONTAINER = flags.DEFINE_string("container", None, "Key of the state dict inside a wrapped training checkpoint.")
_PREFIX = flags.DEFINE_string("prefix", "auto", "Name prefix to strip: 'auto' (module., model., ...), 'none', or a string.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for the parameters that keep their init (camera encoder).")
flags.mark_flags_as_required(["checkpoint", "config", "out"])

DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


def verify_restored(out: str, params) -> int:
    """Restore `out` and check every array equals what was written; returns the number of arrays."""
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    restored = checkpoint_io.load_params_orbax(out, abstract)
    written, _ = jax.tree_util.tree_flatten_with_path(params)
    read = jax.tree.leaves(restored)
    differing = [jax.tree_util.keystr(path) for (path, a), b in zip(written, read) if not np.array_equal(a, b)]
    if len(read) != len(written) or differing:
        raise RuntimeError(f"{out}: the restored checkpoint differs from what was written: {differing[:10]} "
                           f"({len(read)} arrays read, {len(written)} written)")
    return len(written)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every file it writes at INFO
    try:
        convert()
    except (ConversionError, checkpoint_io.CheckpointFormatError, TorchFormatError, FileExistsError) as error:
        sys.exit(f"error: {error}")


def convert() -> None:
    """Read, convert, write, verify, and print the summary."""
    config = _CONFIG.value.model if "model" in _CONFIG.value else _CONFIG.value
    start = time.perf_counter()
    prefix = None if _PREFIX.value == "none" else _PREFIX.value
    state_dict = checkpoint_io.load_state_dict(_CHECKPOINT.value, container=_CONTAINER.value, prefix=prefix)
    read_s = time.perf_counter() - start
    converted = dit_params_from_state_dict(state_dict, config, naming=_NAMING.value, dtype=DTYPES[_DTYPE.value],
                                           source=_CHECKPOINT.value, seed=_SEED.value)
    del state_dict
    out = checkpoint_io.save_params_orbax(converted.params, _OUT.value, force=_OVERWRITE.value)
    arrays = verify_restored(out, converted.params)
    print(converted.report.summary())
    print(f"written: {out} ({_DTYPE.value}, {arrays} arrays, {_size_gb(out):.2f} GB)")
    print(f"verified: restored all {arrays} arrays, identical to the converted params")
    print(f"time: {read_s:.1f} s reading, {time.perf_counter() - start:.1f} s in total")


def _size_gb(directory: str) -> float:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(directory) for f in files) / 1e9


if __name__ == "__main__":
    cli.run(main)
