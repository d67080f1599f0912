"""Attention below the model: the mask description, the XLA reference and the Pallas kernels.

`models/attention.py` registers `flash_attention` as implementation `pallas`: the Mosaic GPU kernel
on CUDA GPUs, splash attention on TPU, and the portable Pallas kernel in interpret mode on CPU (slow;
meant for tests). Nothing here imports the model.
"""

from worldscape_jax.kernels.flash import flash_attention, flash_cached_attention
from worldscape_jax.kernels.mask_spec import MaskSpec

__all__ = ["MaskSpec", "flash_attention", "flash_cached_attention"]
