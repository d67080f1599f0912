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


def _small_setup(freeze: bool, shortcut: bool = False):
    import jax
    config = vae_configs.get_config("tiny")
    config.model.dim = 4
    config.model.patch_shortcut = shortcut
    config.shortcut_init = "random"
    config.data.frames, config.data.height, config.data.width = 5, 16, 16
    config.loss.freeze_encoder = freeze
    params = vae_stage.init_params(jax.random.key(0), config)
    video = np.random.default_rng(0).integers(0, 256, (2, 5, 16, 16, 3), dtype=np.uint8)
    return config, params, {"video": video.astype(np.float32) / 127.5 - 1.0}  # the pipeline's layout


@pytest.mark.parametrize("shortcut", [False, True])
@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_encoder_stops_every_encoder_gradient_and_only_those(freeze, shortcut):
    import jax
    config, params, batch = _small_setup(freeze, shortcut)
    grads = jax.grad(lambda p: vae_stage.loss_fn(p, batch, jax.random.key(1), config)[0])(params)
    norms = {name: float(sum(np.abs(np.asarray(g)).sum() for g in jax.tree.leaves(sub)))
             for name, sub in grads.items()}
    encoding = [n for n in norms if n in ("encoder", "quant_conv", "patch_encoder")]
    decoding = [n for n in norms if n in ("decoder", "post_quant_conv", "patch_decoder")]
    assert ("patch_encoder" in encoding) == shortcut
    assert encoding and decoding and len(encoding) + len(decoding) == len(norms), sorted(norms)
    assert all(norms[n] > 0 for n in decoding)
    assert all((norms[n] == 0) == freeze for n in encoding), norms


def test_freeze_encoder_with_weight_decay_is_refused():
    import jax
    config, params, batch = _small_setup(True)
    config.optim.weight_decay = 0.01
    with pytest.raises(ValueError, match="weight_decay"):
        vae_stage.loss_fn(params, batch, jax.random.key(1), config)


def test_pca_init_reconstructs_like_a_numpy_pca_of_the_frame_group_blocks():
    """With the shortcut and PCA init, encode -> decode is the PCA projection of every 4x4x4 block
    (frame 0 a block padded with zeros in front), computed here by an explicit loop over blocks."""
    import flax.linen as nn
    import jax
    from worldscape_jax.models import vae
    config, params, _ = _small_setup(False, shortcut=True)
    vae_cfg = vae_stage.vae_config(config)
    rng = np.random.default_rng(3)
    videos = np.clip(rng.normal(128, 60, (6, 5, 16, 16, 3)), 0, 255).astype(np.uint8)
    params = nn.meta.unbox(vae_stage.pca_shortcut(params, vae_cfg, videos))
    signed = videos.astype(np.float64) / 127.5 - 1.0
    padded = np.concatenate([np.zeros((6, 3, 16, 16, 3)), signed], axis=1)
    index = list(np.ndindex(6, 2, 4, 4))
    blocks = np.stack([padded[n, 4 * g:4 * g + 4, 4 * i:4 * i + 4, 4 * j:4 * j + 4].reshape(-1)
                       for n, g, i, j in index])
    mean = blocks.mean(0)
    _, _, vt = np.linalg.svd(blocks - mean, full_matrices=False)
    projected = (blocks - mean) @ vt[:16].T @ vt[:16] + mean
    expected = np.zeros_like(padded)
    for row, (n, g, i, j) in enumerate(index):
        expected[n, 4 * g:4 * g + 4, 4 * i:4 * i + 4, 4 * j:4 * j + 4] = projected[row].reshape(4, 4, 4, 3)
    latents = vae.encode(params, jax.numpy.asarray(signed, np.float32), vae_cfg)
    recon = vae.decode(params, latents, vae_cfg, clip=False)
    np.testing.assert_allclose(recon, expected[:, 3:], atol=2e-4)
    residual = np.mean((expected[:, 3:] - signed) ** 2)
    assert 0 < residual < np.mean((signed - signed.mean()) ** 2)  # a real, lossy projection


def test_unknown_shortcut_init_is_named():
    import jax
    config, _, _ = _small_setup(False, shortcut=True)
    config.shortcut_init = "kmeans"
    with pytest.raises(ValueError, match="config.shortcut_init='kmeans'"):
        vae_stage.init_params(jax.random.key(0), config)


def test_trains_from_the_pipeline_and_resumes_with_the_next_batch(tmp_path):
    """Two steps on SynthWorld clips read through data/pipeline.py give finite losses; the step-2
    checkpoint holds the pipeline's position, so a restored iterator yields the third batch."""
    from worldscape_jax.training import loop
    from worldscape_jax.training.checkpointing import Checkpointer
    from worldscape_jax.training.logging import read_jsonl
    config, _, _ = _small_setup(False)
    config.data.num_clips, config.data.crop, config.global_batch = 3, 8, 2
    config.total_steps, config.optim.warmup_steps, config.checkpoint.every_steps = 2, 1, 2
    config.checkpoint.async_save, config.sample.every_steps = False, 0
    config.log.every_steps, config.log.tensorboard, config.log.progress = 1, False, False
    loop.train(config, str(tmp_path))
    records = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in records] == [1, 2] and all(np.isfinite(r["loss"]) for r in records)

    uninterrupted = vae_stage.make_dataset(config, 0, 1)
    batches = [next(uninterrupted)["video"] for _ in range(3)]
    assert batches[0].shape == (2, 5, 8, 8, 3) and batches[0].dtype == np.float32
    restored = vae_stage.make_dataset(config, 0, 1)
    setup = loop.build(config)
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2)
    _, step = ckpt.restore_latest(loop.abstract_target(setup), restored)
    ckpt.close()
    assert step == 2
    resumed = next(restored)["video"]
    np.testing.assert_array_equal(resumed, batches[2])
    assert not np.array_equal(resumed, batches[0])


@pytest.mark.parametrize("source, path, message", [
    ("imagenet", "", "config.data.source='imagenet'"), ("realestate10k", "", "config.data.path is empty"),
    ("synthworld", "", "config.data.num_clips=0")])
def test_bad_data_source_settings_are_named(source, path, message):
    config = vae_configs.get_config("tiny")
    config.data.source, config.data.path, config.data.num_clips = source, path, 0
    with pytest.raises(ValueError, match=message):
        vae_stage.clip_source(config)


def test_an_epoch_of_the_pipeline_is_the_recipes_synthworld_train_clips():
    """The batches hold exactly the clips the committed recipe trains on (train scenes, traj_seed = scene
    seed, whole frames at the rendered size), each once per epoch, in [-1, 1]."""
    from worldscape_jax.data.synthworld import generate_clip, split_seeds
    config = vae_configs.get_config("tiny")
    config.data.frames, config.data.height, config.data.width = 5, 16, 16
    config.data.num_clips, config.data.crop, config.global_batch = 3, 0, 3
    epoch = next(vae_stage.make_dataset(config, 0, 1))["video"]
    expected = [generate_clip(s, 5, 16, 16, traj_seed=s)["video"] for s in split_seeds("train", 3)]
    got = np.round((epoch + 1.0) * 127.5).astype(np.uint8)
    assert sorted(v.tobytes() for v in got) == sorted(v.tobytes() for v in expected)
