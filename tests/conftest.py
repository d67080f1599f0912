"""Fixtures shared by the training and inference tests: the tiny teacher at a toy size."""

import jax
import pytest

from worldscape_jax.configs import teacher as teacher_config
from worldscape_jax.configs import vae as vae_configs
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training.export import export_params
from worldscape_jax.training.stages import teacher


@pytest.fixture
def toy_teacher_config(tmp_path):
    """The tiny teacher at a toy size, with a random (untrained) tiny VAE exported to tmp_path."""
    vae_dir = str(tmp_path / "vae")
    cfg = teacher_config.get_config("tiny,no_turn_warp")  # the plain teacher; tests opt into the turn warp
    export_params(vae_lib.init_params(get_vae_config("tiny"), jax.random.key(0)), vae_dir, vae_configs.get_config("tiny"))
    cfg.vae.checkpoint = vae_dir
    cfg.data.update(frames=5, height=32, width=32, num_clips=3, cache_dir=str(tmp_path / "cache"))
    cfg.model.num_layers = 1
    cfg.global_batch = 2
    cfg.total_steps = 3
    cfg.optim.warmup_steps = 1
    cfg.checkpoint.every_steps = 0
    cfg.log.every_steps = 1
    cfg.log.tensorboard = False
    cfg.log.progress = False
    cfg.sample.every_steps = 0
    return cfg


@pytest.fixture
def toy_turn_warp_config(toy_teacher_config):
    """`toy_teacher_config` with the turn-warp teacher's model (one block)."""
    toy_teacher_config.model = teacher_config.get_config("tiny,turn_warp").model
    toy_teacher_config.model.num_layers = 1
    return toy_teacher_config


def _plain_teacher_params(cfg, seed=0):
    return jax.tree.map(lambda b: b.value if hasattr(b, "value") else b, teacher.init_params(jax.random.key(seed), cfg),
                        is_leaf=lambda b: hasattr(b, "value"))


@pytest.fixture
def teacher_params():
    """A function (cfg, seed=0) -> fresh teacher params without flax's logical-partitioning boxes."""
    return _plain_teacher_params
