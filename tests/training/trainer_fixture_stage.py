"""A tiny but real training stage for the trainer tests: a per-pixel MLP regression on videos.

The target is a fixed nonlinear function of the input video, so the loss falls as it trains. Its
parameters carry the DiT's logical axis names ('embed', 'mlp') and its activations are constrained
with 'activation_batch' / 'activation_mlp', so fsdp and tensor sharding are exercised for real.
Used as `config.stage = "trainer_fixture_stage:STAGE"` with tests/training on the Python path.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from worldscape_jax.training.data_iter import indexed_batches
from worldscape_jax.training.defaults import trainer_config
from worldscape_jax.training.media import to_uint8

CHANNELS, FRAMES, SIZE = 4, 2, 4


class PixelMLP(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x):
        dense = lambda feats, axes, name: nn.Dense(
            feats, name=name,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]),
        )
        h = nn.gelu(dense(self.hidden, ("embed", "mlp"), "up")(x))
        h = nn.with_logical_constraint(h, ("activation_batch", None, None, None, "activation_mlp"))
        return dense(x.shape[-1], ("mlp", "embed"), "down")(h)


def example(index: int, seed: int = 0) -> dict:
    rng = np.random.default_rng([seed, index])
    video = rng.standard_normal((FRAMES, SIZE, SIZE, CHANNELS)).astype(np.float32)
    mix = np.random.default_rng(1234).standard_normal((CHANNELS, CHANNELS)).astype(np.float32) / 2
    return {"video": video, "target": np.tanh(video @ mix) + 0.5 * video}


class FixtureStage:
    def init_params(self, rng, config):
        model = PixelMLP(config.model.hidden)
        return model.init(rng, jnp.zeros((1, FRAMES, SIZE, SIZE, CHANNELS)))["params"]

    def loss_fn(self, params, batch, rng, config):
        noise = config.model.input_noise * jax.random.normal(rng, batch["video"].shape)
        pred = PixelMLP(config.model.hidden).apply({"params": params}, batch["video"].astype(
            jax.tree.leaves(params)[0].dtype) + noise)
        err = jnp.mean(jnp.square(pred.astype(jnp.float32) - batch["target"]))
        return err, {"mse": err}

    def make_dataset(self, config, process_index, process_count):
        return indexed_batches(lambda i: example(i, config.seed), config.global_batch, process_index, process_count)

    def sample(self, params, rng, config):
        video = jnp.asarray(np.stack([example(i, config.seed)["video"] for i in range(2)]))
        pred = PixelMLP(config.model.hidden).apply({"params": params}, video)
        return jnp.asarray(to_uint8(np.asarray(pred[..., :3]), -2.0, 2.0))


STAGE = FixtureStage()


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """Config for the fixture; `arg` is 'key=value,...' for mesh sizes (e.g. 'fsdp=4,tensor=2')."""
    c = trainer_config("trainer_fixture_stage:STAGE", total_steps=6, global_batch=8)
    c.model = ml_collections.ConfigDict(dict(hidden=16, input_noise=0.1))
    c.optim.lr = 3e-2
    c.optim.warmup_steps = 2
    c.ema.decay = 0.9
    c.log.every_steps = 1
    c.log.progress = False
    c.checkpoint.every_steps = 2
    c.checkpoint.async_save = True
    for item in filter(None, (arg or "").split(",")):
        key, value = item.split("=")
        c.mesh[key] = int(value)
    return c
