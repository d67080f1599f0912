"""Configuration of the Wan2.1 causal 3-D VAE, with the `wan2_1` and `tiny` presets.

The latent statistics (`latent_mean`, `latent_std`) turn the encoder's raw mean into the unit-scale
latents the DiT sees: z = (mu - mean) / std, and back with mu = z * std + mean (Wan multiplies by
1/std, the same thing).
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Per-channel statistics of the official Wan2.1 VAE latents (WanVAE in wan/modules/vae.py).
WAN2_1_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN2_1_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Shape of a Wan-style causal VAE (hashable, so it can be a static jit argument).

    dim: base width; stage i of the encoder has width dim * dim_mult[i].
    dim_mult: width multipliers; len(dim_mult) - 1 stages halve H and W.
    num_res_blocks: residual blocks per encoder stage (the decoder has one more per stage, as in Wan).
    temporal_downsample: per downsampling stage, whether it also halves time (after frame 0).
      The decoder upsamples time in the reverse order.
    z_dim: latent channels.
    latent_mean, latent_std: per-channel latent statistics used by normalize/denormalize.
    patch_shortcut: add a linear path from every 4 x s x s pixel block (s = spatial_factor) straight to
      the latent moments, and from each latent back to its block, beside the deep encoder and decoder
      (DC-AE's residual autoencoding; Wan2.2's VAE puts such shortcuts in its resamplers). Off in
      Wan2.1, whose checkpoint has no such parameters.
    """

    dim: int = 96
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    z_dim: int = 16
    latent_mean: tuple[float, ...] = WAN2_1_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN2_1_LATENT_STD
    patch_shortcut: bool = False

    def __post_init__(self):
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"VAEConfig.temporal_downsample needs len(dim_mult) - 1 = {len(self.dim_mult) - 1} "
                             f"entries, got {self.temporal_downsample}")
        for name in ("latent_mean", "latent_std"):
            if len(getattr(self, name)) != self.z_dim:
                raise ValueError(f"VAEConfig.{name} needs z_dim = {self.z_dim} values, got {len(getattr(self, name))}")
        if min(self.latent_std) <= 0:
            raise ValueError(f"VAEConfig.latent_std must be positive, got {self.latent_std}")

    @classmethod
    def from_config(cls, model: Any, stats: Any = None) -> "VAEConfig":
        """The preset `model.preset` with every other field of `model` (configs/vae.py's `config.model`)
        overriding it, and the latent statistics from `stats` ({mean, std}: an export's `vae_stats`).
        A field this class does not have is refused by name, never dropped."""
        overrides = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in dict(model).items()}
        preset = overrides.pop("preset", None)
        fields = {f.name for f in dataclasses.fields(cls)} - {"latent_mean", "latent_std"}
        unknown = sorted(set(overrides) - fields)
        if preset is None or unknown:
            raise ValueError(f"VAE config: config.model needs `preset` and any of {sorted(fields)} "
                             f"(models/vae_config.py VAEConfig); got unknown fields {unknown}, preset {preset!r}")
        if stats is not None:
            overrides.update(latent_mean=tuple(stats["mean"]), latent_std=tuple(stats["std"]))
        return dataclasses.replace(get_vae_config(preset), **overrides)

    @property
    def temporal_factor(self) -> int:
        """Pixel frames per latent frame after the first (4 for Wan)."""
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent along H and W (8 for Wan)."""
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_upsample(self) -> tuple[bool, ...]:
        return tuple(reversed(self.temporal_downsample))


def wan2_1() -> VAEConfig:
    """The official Wan2.1 VAE (Wan2.1_VAE.pth): 4x8x8 compression, 16 latent channels."""
    return VAEConfig()


def tiny() -> VAEConfig:
    """The same design sized for 64x64 SynthWorld frames on a CPU.

    Strides: 4x4 in space (two downsampling stages, not Wan's three), so a 64x64 frame becomes a
    16x16 latent and the tiny DiT's (1, 2, 2) patch gives 8x8 = 64 tokens per latent frame; an 8x
    stride would leave 8x8 latents and only 16 tokens, too coarse for the camera and memory tests.
    Time keeps Wan's 4x (both stages halve time), so F = 1 + 4k pixel frames give 1 + k latents and
    the chunk arithmetic of the streaming code is identical at both scales.
    Widths 16/32/64 with one residual block per stage (1.9 M parameters), narrow enough for a CPU to
    train it in one session (a width-32 step is ~3x slower; BENCHMARKS.md); 16 latent channels match
    the DiT's in_dim. The latent statistics stay 0/1 here; the trained export carries the measured
    ones (`vae_stats`). With the patch shortcut: a deep path this narrow reconstructs worse on its own
    than a linear PCA of the 4x4x4 pixel blocks, so the shortcut, started as that PCA (the VAE stage's
    `shortcut_init`), leaves the deep path only what is non-linear.
    """
    return VAEConfig(dim=16, dim_mult=(1, 2, 4), num_res_blocks=1, temporal_downsample=(True, True),
                     z_dim=16, latent_mean=(0.0,) * 16, latent_std=(1.0,) * 16, patch_shortcut=True)


PRESETS = {"wan2_1": wan2_1, "tiny": tiny}


def get_vae_config(name: str) -> VAEConfig:
    """A preset by name: 'wan2_1' or 'tiny'."""
    if name not in PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; available: {sorted(PRESETS)}")
    return PRESETS[name]()


def vae_config(config) -> VAEConfig:
    """The VAEConfig of a VAE stage config (configs/vae.py) or of its export: the preset named by
    `config.model.preset`, with any other `config.model` field overriding it (e.g. `--config.model.dim=16`)
    and the export's measured `vae_stats` as latent statistics, so loading rebuilds the trained shape."""
    return VAEConfig.from_config(config.model, config.vae_stats)
