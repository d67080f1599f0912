"""The VAE stage's config: flags override the preset's shape, exports carry latent statistics, bad fields are named."""

import pytest

from worldscape_jax.configs import vae as vae_configs
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training.stages import vae as vae_stage


def test_model_fields_override_the_preset():
    config = vae_configs.get_config("tiny")
    assert vae_stage.vae_config(config) == get_vae_config("tiny")
    config.model.dim = 8
    config.model.dim_mult = [1, 2, 2]
    shape = vae_stage.vae_config(config)
    assert shape.dim == 8 and shape.dim_mult == (1, 2, 2)
    assert shape.z_dim == get_vae_config("tiny").z_dim


def test_exported_latent_statistics_are_used():
    config = vae_configs.get_config("tiny")
    with config.unlocked():
        config.vae_stats = {"mean": [0.5] * 16, "std": [2.0] * 16}
    shape = vae_stage.vae_config(config)
    assert shape.latent_mean == (0.5,) * 16 and shape.latent_std == (2.0,) * 16


def test_unknown_model_field_is_named():
    config = vae_configs.get_config("tiny")
    with config.unlocked():
        config.model.widht = 3
    with pytest.raises(ValueError, match="widht"):
        vae_stage.vae_config(config)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="configs/vae.py"):
        vae_configs.get_config("huge")
