"""Pallas attention kernels; importing this package registers them as attention implementation `pallas`.

`attention(..., impl="pallas")` runs the Mosaic GPU kernel on CUDA GPUs, splash attention on TPU,
and the portable Pallas kernel in interpret mode on CPU (slow; meant for tests).
"""

from worldscape_jax.kernels.flash import flash_attention, flash_cached_attention
from worldscape_jax.models.attention import register_attention

register_attention("pallas", flash_attention, flash_cached_attention)

__all__ = ["flash_attention", "flash_cached_attention"]
