"""Stage `flow_dit`: the Wan DiT trained with the rectified-flow loss on latents from a simple source.

It exercises the real model path through the trainer (sharded params with the DiT's logical axes,
bf16 compute, per-frame timesteps) before the VAE and SynthWorld feed the camera teacher. The data
are `config.data.num_clips` moving-blob latent clips (moving_blobs.py), read through the Grain pipeline
like every stage's data (pixel sources need a VAE: that is the teacher stage), with a per-class text code; the text is dropped (zeroed)
with probability `config.flow.text_dropout` so the model also learns the unconditional velocity
that classifier-free guidance needs. `sample` runs the Euler/CFG sampler and shows channels 0-2.

Config (configs/flow_dit.py): config.model = the DiT config (configs/dit.py); config.data =
{frames, size, num_clips, seed}; config.flow = {distribution, shift, per_frame, logit_mean, logit_std,
text_dropout}; config.sample = {every_steps, fps, steps, shift, guidance, count}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax.data import pipeline
from worldscape_jax.diffusion import flow, samplers
from worldscape_jax.models.dit import build_dit
from worldscape_jax.training.data_iter import local_batch_size
from worldscape_jax.training.stages import moving_blobs


def _model(config):
    return build_dit(config.model)


def _sampling(config) -> flow.TimestepSampling:
    f = config.flow
    return flow.TimestepSampling(f.distribution, f.shift, f.per_frame, f.logit_mean, f.logit_std)


def init_params(rng, config):
    """DiT params (boxed with logical axis names) for one dummy clip of the configured shape."""
    d, m = config.data, config.model
    x = jnp.zeros((1, d.frames, d.size, d.size, m.in_dim), jnp.float32)
    t = jnp.zeros((1, d.frames), jnp.float32)
    text = jnp.zeros((1, m.text_len, m.text_dim), jnp.float32)
    return _model(config).init(rng, x, t, text)["params"]


def loss_fn(params, batch, rng, config):
    """Flow-matching MSE between the DiT's velocity and eps - x0 at sampled per-frame sigmas."""
    x0 = batch["latents"]
    b, f = x0.shape[:2]
    k_sigma, k_eps, k_drop = jax.random.split(rng, 3)
    sigma = flow.sample_sigmas(k_sigma, b, f, _sampling(config))
    eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
    keep = jax.random.uniform(k_drop, (b, 1, 1)) >= config.flow.text_dropout
    text = jnp.where(keep, batch["text"], 0.0)
    v = _model(config).apply({"params": params}, flow.add_noise(x0, eps, sigma), flow.sigma_to_timestep(sigma), text)
    loss = flow.flow_matching_loss(v, x0, eps)
    return loss, {"fm_loss": loss, "mean_sigma": sigma.mean()}


def make_dataset(config, process_index, process_count):
    """This process's share of each global batch of `config.data.num_clips` moving-blob clips, through the
    Grain pipeline (data/pipeline.py): shuffled by `config.data.seed`, reshuffled every epoch; the
    iterator is saved with every checkpoint."""
    d, m = config.data, config.model
    if d.num_clips < 1:
        raise ValueError(f"config.data.num_clips={d.num_clips}: expected a number of moving-blob clips >= 1")
    source = moving_blobs.MovingBlobsSource(d.num_clips, d.seed, d.frames, d.size, m.in_dim, m.text_len, m.text_dim)
    pipe = pipeline.PipelineConfig(
        batch_size=local_batch_size(config.global_batch, process_count), num_frames=d.frames, height=d.size,
        width=d.size, seed=d.seed, process_index=process_index, process_count=process_count)
    return pipeline.batch_iterator(pipeline.make_epochs(source, pipe), pipe)


def sample(params, rng, config):
    """Euler/CFG samples for the first `config.sample.count` classes, as uint8 RGB [N, F, H, W, 3]."""
    d, m, s = config.data, config.model, config.sample
    text = jnp.asarray(moving_blobs.class_text(len(moving_blobs.DIRECTIONS), m.text_len, m.text_dim)[: s.count])
    noise = jax.random.normal(rng, (s.count, d.frames, d.size, d.size, m.in_dim), jnp.float32)
    model = _model(config)

    def denoise(x_t, t_frames, cond):
        return model.apply({"params": params}, x_t, t_frames, cond)

    run = jax.jit(lambda n, c: samplers.euler_sample(
        denoise, n, flow.inference_sigmas(s.steps, s.shift), c, jnp.zeros_like(c), s.guidance))
    latents = run(noise, text)
    return moving_blobs.to_display(np.asarray(jax.device_get(latents)))
