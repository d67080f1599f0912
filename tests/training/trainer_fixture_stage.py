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

from worldscape_jax.data import pipeline
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


def pipeline_clips(count: int = 5, frames: int = 4, size: int = SIZE + 2) -> list[dict]:
    """Raw clips for the Grain pipeline (uint8 video, poses, intrinsics), larger than the batch shape so
    that the random start and random crop matter."""
    rng = np.random.default_rng(7)
    return [{"video": rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
             "c2w": np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1)),
             "intrinsics": np.tile(np.float32([0.8, 0.8, 0.5, 0.5]), (frames, 1))} for _ in range(count)]


class PipelineFixtureStage(FixtureStage):
    """The same regression, reading its batches through data/pipeline.py: the iterator whose state the
    checkpoint must carry is the Grain pipeline's (shuffled, repeated, random start and crop)."""

    def init_params(self, rng, config):
        return PixelMLP(config.model.hidden).init(rng, jnp.zeros((1, FRAMES, SIZE, SIZE, 3)))["params"]

    def loss_fn(self, params, batch, rng, config):
        video = batch["video"]
        mix = jnp.asarray(np.random.default_rng(1234).standard_normal((3, 3)), jnp.float32) / 2
        pred = PixelMLP(config.model.hidden).apply({"params": params}, video.astype(jax.tree.leaves(params)[0].dtype))
        err = jnp.mean(jnp.square(pred.astype(jnp.float32) - (jnp.tanh(video @ mix) + 0.5 * video)))
        return err, {"mse": err}

    def make_dataset(self, config, process_index, process_count):
        return pipeline.make_iterator(pipeline_clips(), pipeline.PipelineConfig(
            batch_size=config.global_batch // process_count, num_frames=FRAMES, height=SIZE, width=SIZE,
            random_crop=True, seed=config.seed, process_index=process_index, process_count=process_count,
            read_threads=1, prefetch_batches=2))

    def sample(self, params, rng, config):
        return jnp.zeros((1, FRAMES, SIZE, SIZE, 3), jnp.uint8)


PIPELINE_STAGE = PipelineFixtureStage()
