"""DiTConfig: every configs/dit.py field is carried or refused, and unrolled blocks equal the scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from worldscape_jax.configs import dit as dit_configs
from worldscape_jax.configs.arguments import ConfigArgumentError
from worldscape_jax.models.camera_encoder import pack_frames
from worldscape_jax.models.dit import Causal, DiTConfig, build_dit, unroll_params


def _inputs(cfg: DiTConfig, frames: int = 2):
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (1, frames, 8, 8, cfg.in_dim))
    t = jax.random.uniform(keys[1], (1, frames), minval=0, maxval=1000)
    text = jax.random.normal(keys[2], (1, cfg.text_len, cfg.text_dim))
    s = cfg.vae_stride
    rays = jax.random.normal(keys[3], (1, 1 + s[0] * (frames - 1), 8 * s[1], 8 * s[2], cfg.camera_plucker_channels))
    return x, t, text, pack_frames(rays, s[0])


@pytest.mark.parametrize("arg", ["tiny,control,camera,turn_warp", "tiny,camera,ray_turn", "wan1_3b,fun_control"])
def test_every_declared_field_reaches_the_model_config(arg):
    cfg = dit_configs.get_config(arg)
    model_cfg = DiTConfig.from_config(cfg)
    for key, value in cfg.items():
        if key != "camera":
            assert getattr(model_cfg, key) == (tuple(value) if isinstance(value, (list, tuple)) else value), key
    assert (model_cfg.camera, model_cfg.camera_res_blocks, model_cfg.camera_plucker_channels,
            model_cfg.camera_ray_turn, model_cfg.camera_turn_warp) == (
        cfg.camera.enabled, cfg.camera.res_blocks, cfg.camera.plucker_channels, cfg.camera.ray_turn,
        cfg.camera.turn_warp)


def test_unknown_or_inconsistent_fields_are_refused_by_name():
    cfg = dit_configs.get_config("tiny,camera")
    cfg.scan_layerz = False
    with pytest.raises(ValueError, match="unknown fields.*scan_layerz"):
        DiTConfig.from_config(cfg)
    cfg = dit_configs.get_config("tiny,camera")
    cfg.camera.turn_wrap = True
    with pytest.raises(ValueError, match="unknown camera fields.*turn_wrap"):
        DiTConfig.from_config(cfg)
    cfg = dit_configs.get_config("tiny,camera")
    cfg.camera.ray_turn = True  # without the 9 channels it brings
    with pytest.raises(ValueError, match="plucker_channels=6"):
        DiTConfig.from_config(cfg)
    with pytest.raises(ConfigArgumentError, match="configs/dit.py.*'camrea'"):
        dit_configs.get_config("tiny,camrea")


def test_camera_input_of_the_wrong_width_is_refused():
    cfg = dit_configs.get_config("tiny,camera,ray_turn")
    cfg.num_layers = 1
    model_cfg = DiTConfig.from_config(cfg)
    x, t, text, camera = _inputs(model_cfg)
    with pytest.raises(ValueError, match="plucker_channels=9"):
        jax.eval_shape(build_dit(model_cfg).init, jax.random.key(0), x, t, text, camera=camera[..., :24])


def test_unrolled_blocks_equal_the_scan_and_expose_each_block():
    cfg = dit_configs.get_config("tiny,camera")
    cfg.num_layers = 3
    scanned = build_dit(cfg)
    cfg.scan_layers = False
    unrolled = build_dit(cfg)
    x, t, text, camera = _inputs(scanned.cfg)
    params = meta.unbox(scanned.init(jax.random.key(1), x, t, text, camera=camera))
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)
    flat = {"params": unroll_params(params["params"], cfg.num_layers)}
    # The unrolled model's own init has exactly this tree: the two layouts hold the same parameters.
    own = jax.eval_shape(unrolled.init, jax.random.key(1), x, t, text, camera=camera)
    assert jax.tree.structure(meta.unbox(own)) == jax.tree.structure(flat)
    causal = Causal(window=1, sink=1)
    a = jax.jit(lambda p: scanned.apply(p, x, t, text, camera=camera, causal=causal))(params)
    b, captured = jax.jit(lambda p: unrolled.apply(p, x, t, text, camera=camera, causal=causal,
                                                   capture_intermediates=True, mutable=["intermediates"]))(flat)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    assert np.abs(np.asarray(a)).max() > 1e-2
    inside = captured["intermediates"]["blocks_2"]["self_attn"]["__call__"][0][0]
    assert inside.shape == (1, 2 * 16, cfg.dim)
