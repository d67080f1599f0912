"""The flow_dit stage trains the real Wan DiT through the generic trainer and writes samples."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from worldscape_jax.configs import flow_dit as flow_dit_config
from worldscape_jax.diffusion import flow
from worldscape_jax.training import loop
from worldscape_jax.training.logging import read_jsonl
from worldscape_jax.training.stages import flow_dit, moving_blobs


def tiny_config():
    config = flow_dit_config.get_config("tiny")
    config.model.update(dict(num_layers=1, dim=32, ffn_dim=64, freq_dim=32, num_heads=2, text_dim=8, text_len=2))
    config.data.size, config.data.frames = 8, 2
    config.global_batch = 2
    config.total_steps, config.optim.warmup_steps = 2, 1
    config.log.every_steps, config.log.tensorboard, config.log.progress = 1, False, False
    config.sample.every_steps, config.sample.steps, config.sample.count = 2, 2, 2
    return config


def test_moving_blobs_move_one_pixel_per_frame_in_their_class_direction():
    clip = moving_blobs.blob_clip(index=6, seed=0, frames=3, size=16, channels=5, text_len=2, text_dim=4)
    assert clip["latents"].shape == (3, 16, 16, 5) and int(clip["label"]) == 6 % 4
    weight = clip["latents"][..., :3].sum(-1) + 1.5  # background is -0.5 per channel
    ys, xs = np.mgrid[0:16, 0:16]
    centroid = [((weight[f] * ys).sum() / weight[f].sum(), (weight[f] * xs).sum() / weight[f].sum()) for f in range(3)]
    step = np.diff(np.array(centroid), axis=0)
    assert np.all(np.sign(np.round(step, 1)) == moving_blobs.DIRECTIONS[clip["label"]])  # down for label 2
    np.testing.assert_allclose(clip["latents"][..., 3:], clip["latents"][..., :3] @ moving_blobs.channel_mix(5), rtol=1e-5)


def test_loss_is_the_flow_matching_mse_of_the_dit_velocity():
    config = tiny_config()
    config.flow.text_dropout = 0.0
    params = jax.jit(lambda r: loop.sharding.unbox(flow_dit.init_params(r, config)))(jax.random.key(0))
    batch = {k: jnp.asarray(v) for k, v in next(flow_dit.make_dataset(config, 0, 1)).items()}
    rng = jax.random.key(3)

    @jax.jit
    def stage_and_reference(params, batch):
        loss, metrics = flow_dit.loss_fn(params, batch, rng, config)
        # Independent recomputation with the same draws.
        k_sigma, k_eps, _ = jax.random.split(rng, 3)
        sigma = flow.sample_sigmas(k_sigma, 2, 2, flow_dit._sampling(config))
        eps = jax.random.normal(k_eps, batch["latents"].shape)
        s = sigma[..., None, None, None]
        x_t = (1 - s) * batch["latents"] + s * eps
        v = flow_dit._model(config).apply({"params": params}, x_t, 1000 * sigma, batch["text"])
        return loss, metrics["mean_sigma"], jnp.mean((v - (eps - batch["latents"])) ** 2), sigma.mean()

    loss, mean_sigma, expected_loss, expected_sigma = stage_and_reference(params, batch)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    assert float(mean_sigma) == float(expected_sigma)


def test_trainer_runs_the_dit_and_writes_samples(tmp_path):
    loop.train(tiny_config(), str(tmp_path))
    records = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records)
    sheet = Image.open(tmp_path / "samples" / "step_0000002.png")
    assert sheet.size == (2 * 8 + 2, 2 * 8 + 2)  # 2 clips x 2 frames of 8x8, 2-pixel gaps
    assert os.path.getsize(tmp_path / "samples" / "step_0000002.mp4") > 0
