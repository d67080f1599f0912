"""The VAE stage's config: flags override the preset's shape, exports carry latent statistics, bad fields are named."""

import numpy as np
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


def test_random_crop_is_a_window_of_every_frame_and_seeded():
    video = np.arange(3 * 8 * 8 * 2, dtype=np.int32).reshape(3, 8, 8, 2)
    crop = vae_stage.random_crop(video, 4, seed=(0, 5))
    assert crop.shape == (3, 4, 4, 2)
    top, left = np.argwhere(video[0, :, :, 0] == crop[0, 0, 0, 0])[0]
    np.testing.assert_array_equal(crop, video[:, top:top + 4, left:left + 4])
    np.testing.assert_array_equal(crop, vae_stage.random_crop(video, 4, seed=(0, 5)))
    offsets = {tuple(np.argwhere(video[0, :, :, 0] == vae_stage.random_crop(video, 4, seed=(0, i))[0, 0, 0, 0])[0])
               for i in range(20)}
    assert len(offsets) > 3  # different examples see different windows


def test_crop_larger_than_the_frame_is_named():
    config = vae_configs.get_config("tiny")
    config.data.crop = 80
    with pytest.raises(ValueError, match="config.data.crop=80"):
        vae_stage.make_dataset(config, 0, 1)


def _small_setup(freeze: bool):
    import jax
    config = vae_configs.get_config("tiny")
    config.model.dim = 4
    config.data.frames, config.data.height, config.data.width = 5, 16, 16
    config.loss.freeze_encoder = freeze
    params = vae_stage.init_params(jax.random.key(0), config)
    video = np.random.default_rng(0).integers(0, 256, (2, 5, 16, 16, 3), dtype=np.uint8)
    return config, params, {"video": video}


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_encoder_stops_every_encoder_gradient_and_only_those(freeze):
    import jax
    config, params, batch = _small_setup(freeze)
    grads = jax.grad(lambda p: vae_stage.loss_fn(p, batch, jax.random.key(1), config)[0])(params)
    norms = {name: float(sum(np.abs(np.asarray(g)).sum() for g in jax.tree.leaves(sub)))
             for name, sub in grads.items()}
    encoding = [n for n in norms if n.startswith("encoder") or n == "quant_conv"]
    decoding = [n for n in norms if n.startswith("decoder") or n == "post_quant_conv"]
    assert encoding and decoding and len(encoding) + len(decoding) == len(norms), sorted(norms)
    assert all(norms[n] > 0 for n in decoding)
    assert all((norms[n] == 0) == freeze for n in encoding), norms


def test_freeze_encoder_with_weight_decay_is_refused():
    import jax
    config, params, batch = _small_setup(True)
    config.optim.weight_decay = 0.01
    with pytest.raises(ValueError, match="weight_decay"):
        vae_stage.loss_fn(params, batch, jax.random.key(1), config)
