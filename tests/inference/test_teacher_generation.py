"""The teacher's generation pipeline (inference/teacher.py) and the held-out scenes it is scored on."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldscape_jax.data.synthworld import split_of
from worldscape_jax.inference.heldout import heldout_clips
from worldscape_jax.inference.loading import load_vae
from worldscape_jax.inference.pixels import to_unit_range
from worldscape_jax.inference.teacher import generate
from worldscape_jax.models import vae as vae_lib


def _inputs(cfg, trajectory=None):
    clip = heldout_clips(cfg, 1, trajectory=trajectory)[0]
    return (to_unit_range(clip["video"][None, :1]), jnp.asarray(clip["c2w"][None]),
            jnp.asarray(clip["intrinsics"][None]))


def test_generate_shapes_and_camera_ablation_changes_the_video(toy_teacher_config, teacher_params):
    cfg = toy_teacher_config
    params = jax.tree.map(lambda p: p + 0.02, teacher_params(cfg))
    vae = load_vae(cfg.vae.checkpoint, cfg.vae.preset)
    args = (*_inputs(cfg), jax.random.key(1))
    with_camera = generate(params, cfg, vae, *args, steps=2)
    without = generate(params, cfg, vae, *args, steps=2, camera_scale=0.0)
    chex.assert_shape([with_camera, without], (1, 5, 32, 32, 3))
    chex.assert_tree_all_finite(with_camera)
    assert np.abs(np.asarray(with_camera - without)).max() > 1e-4


def test_turn_warp_teacher_with_the_camera_zeroed_ignores_the_path(toy_turn_warp_config, teacher_params):
    cfg = toy_turn_warp_config
    params = jax.tree.map(lambda p: p + 0.02, teacher_params(cfg))
    vae = load_vae(cfg.vae.checkpoint, cfg.vae.preset)
    first, c2w, intrinsics = _inputs(cfg, trajectory="pan")
    still = jnp.broadcast_to(c2w[:, :1], c2w.shape)

    def video(path, scale):
        return np.asarray(generate(params, cfg, vae, first, path, intrinsics, jax.random.key(1), steps=2,
                                   camera_scale=scale))

    chex.assert_trees_all_close(video(c2w, 0.0), video(still, 0.0), atol=1e-6)
    assert np.abs(video(c2w, 1.0) - video(still, 1.0)).max() > 1e-4


@pytest.mark.parametrize("clean_first", [True, False])
def test_generate_holds_the_clean_first_latent_only_when_configured(toy_teacher_config, teacher_params, clean_first):
    cfg = toy_teacher_config
    cfg.flow.clean_first_latent = clean_first
    vae_params, vae_cfg = vae = load_vae(cfg.vae.checkpoint, cfg.vae.preset)
    first, c2w, intrinsics = _inputs(cfg)
    video = generate(teacher_params(cfg), cfg, vae, first, c2w, intrinsics, jax.random.key(1), steps=2)
    first_decoded = vae_lib.decode(vae_params, vae_lib.encode(vae_params, first, vae_cfg), vae_cfg)
    matches = np.allclose(np.asarray(video[:, :1]), np.asarray(first_decoded), atol=1e-5)
    assert matches == clean_first


def test_heldout_clips_from_an_offset_continue_the_same_sequence(toy_teacher_config):
    cfg = toy_teacher_config
    cfg.data.update(frames=1, height=16, width=16)
    three = heldout_clips(cfg, 3)
    later = heldout_clips(cfg, 2, first=1)
    assert all(split_of(c["scene_seed"]) == "heldout" for c in three)
    assert [c["scene_seed"] for c in later] == [c["scene_seed"] for c in three[1:]]
    np.testing.assert_array_equal(later[1]["video"], three[2]["video"])
    with pytest.raises(ValueError, match="count must be >= 1"):
        heldout_clips(cfg, 0)
