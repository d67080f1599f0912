"""Stage 1 teacher: conditions, a few real training steps at a toy size, wan1_3b lowering on 8 devices."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trainer_runs import run_lowering_script

from worldscape_jax.configs import teacher as teacher_config
from worldscape_jax.configs import vae as vae_configs
from worldscape_jax.data.synthworld import clips, generate_clip, split_of
from worldscape_jax.geometry.cameras import relative_to_first
from worldscape_jax.geometry.reprojection import turn_warp
from worldscape_jax.inference.loading import load_vae
from worldscape_jax.inference.pixels import to_unit_range
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.conditioning import control_video, encode_conditions, first_frame_latent
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training import loop
from worldscape_jax.training.export import export_params
from worldscape_jax.training.logging import read_jsonl
from worldscape_jax.training.loop import train
from worldscape_jax.training.run_config import config_differences, resolve_run_config
from worldscape_jax.training.stages import teacher


def test_control_video_is_first_frame_then_pose_frames_or_black():
    video = jax.random.uniform(jax.random.key(0), (2, 5, 8, 8, 3), minval=-1, maxval=1)
    control = control_video(video)
    np.testing.assert_array_equal(np.asarray(control[:, 0]), np.asarray(video[:, 0]))
    assert np.all(np.asarray(control[:, 1:]) == -1.0)
    pose = jnp.full_like(video, 0.25)
    np.testing.assert_array_equal(np.asarray(control_video(video, pose)[:, 1:]), 0.25)


def test_encode_conditions_layout():
    cfg = get_vae_config("tiny")
    params = vae_lib.init_params(cfg, jax.random.key(0))
    video = jax.random.uniform(jax.random.key(1), (1, 5, 16, 16, 3), minval=-1, maxval=1)
    cond = jax.jit(encode_conditions, static_argnums=1)(params, cfg, video)  # eager op-by-op VAE runs ~30 s
    assert cond.shape == (1, 2, 4, 4, 2 * cfg.z_dim)
    control, first = cond[..., :cfg.z_dim], cond[..., cfg.z_dim:]
    first_alone = jax.jit(vae_lib.encode, static_argnums=2)(params, video[:, :1], cfg)
    np.testing.assert_allclose(np.asarray(first[:, 0]), np.asarray(first_alone[:, 0]), atol=1e-5)
    assert np.all(np.asarray(first[:, 1:]) == 0)
    np.testing.assert_array_equal(np.asarray(first_frame_latent(cond, cfg)), np.asarray(first[:, :1]))
    # the control latent of frame 0 is the first frame's latent (causal encoder)
    np.testing.assert_allclose(np.asarray(control[:, 0]), np.asarray(first[:, 0]), atol=1e-5)


def cached_arrays(config) -> dict[str, np.ndarray]:
    """The latent cache of `config` (built if missing) as arrays stacked over its clips."""
    cache = teacher.build_latent_cache(config)
    clips_ = [cache[i] for i in range(len(cache))]
    return {key: np.stack([clip[key] for clip in clips_]) for key in clips_[0]}


def test_teacher_trains_on_synthworld_latents(toy_teacher_config, tmp_path):
    """Three trainer steps on a fixed batch (two clips, batch two): the flow loss of that batch, averaged
    over fixed noise draws so that only the params differ, falls below the initial params' loss."""
    cfg = toy_teacher_config
    cfg.data.num_clips = 2  # every batch is the same two clips
    cfg.optim.lr = 2e-3
    initial = loop.initial_state(loop.build(cfg), cfg).params
    workdir = str(tmp_path / "run")
    state = train(cfg, workdir)
    losses = [row["fm_loss"] for row in read_jsonl(os.path.join(workdir, "metrics.jsonl"))]
    assert len(losses) == 3 and all(np.isfinite(losses)) and int(state.step) == 3
    assert config_differences(resolve_run_config(workdir, None), cfg) == []  # what export uses
    cache = cached_arrays(cfg)  # reused from disk
    assert cache["latents"].shape == (2, 2, 8, 8, 16) and cache["cond"].shape == (2, 2, 8, 8, 32)
    batch = {k: jnp.asarray(v) for k, v in cache.items()}
    keys = jax.random.split(jax.random.key(123), 16)
    fixed_batch_loss = jax.jit(lambda p: jnp.mean(jax.vmap(lambda k: teacher.loss_fn(p, batch, k, cfg)[0])(keys)))
    before, after = float(fixed_batch_loss(initial)), float(fixed_batch_loss(state.params))
    assert after < 0.95 * before, (before, after)

    d = cfg.data
    seed = [s for s in range(d.seed, d.seed + 12) if split_of(s) == "train"][1]
    clip = generate_clip(seed, d.frames, d.height, d.width, traj_seed=d.seed * 7919 + 1)
    video = to_unit_range(clip["video"][None])
    vae_params, vae_cfg = load_vae(cfg.vae.checkpoint, cfg.vae.preset)
    np.testing.assert_allclose(cache["latents"][1], np.asarray(vae_lib.encode(vae_params, video, vae_cfg))[0],
                               atol=1e-4)  # batched cache encoding equals encoding the clip alone


def test_latent_cache_follows_config_data_families(toy_teacher_config):
    cfg, d = toy_teacher_config, toy_teacher_config.data
    seeds = [s for s in range(d.seed, d.seed + 4 * d.num_clips) if split_of(s) == "train"][: d.num_clips]
    cfg.data.families = clips.NAVIGATION_FAMILIES  # in generate_clip's own order: its default choice
    default = cached_arrays(cfg)
    for i, seed in enumerate(seeds):  # poses are cached relative to each clip's first frame (the pipeline's layout)
        reference = generate_clip(seed, d.frames, d.height, d.width, traj_seed=d.seed * 7919 + i)
        np.testing.assert_allclose(default["c2w"][i], relative_to_first(reference["c2w"]), atol=1e-5)
    cfg.data.families = ("keys",)
    keys = cached_arrays(cfg)
    for i in range(len(seeds)):
        traj_seed = d.seed * 7919 + i
        path = clips.family_path("keys", d.frames, traj_seed, clips.start_pose(traj_seed))
        np.testing.assert_allclose(keys["c2w"][i], relative_to_first(path), atol=1e-5)
    cfg.data.families = ("keys", "fly")
    with pytest.raises(ValueError, match="config.data.families.*'fly'"):
        teacher.build_latent_cache(cfg)


def test_retrained_vae_at_the_same_path_gets_a_new_latent_cache(toy_teacher_config):
    cfg = toy_teacher_config
    first = cached_arrays(cfg)
    retrained = vae_lib.init_params(get_vae_config("tiny"), jax.random.key(7))
    export_params(retrained, cfg.vae.checkpoint, vae_configs.get_config("tiny"))
    second = cached_arrays(cfg)
    assert len(os.listdir(cfg.data.cache_dir)) == 2
    assert not np.allclose(first["latents"], second["latents"])


def test_decoder_only_change_keeps_the_latent_cache(toy_teacher_config):
    cfg = toy_teacher_config
    first = cached_arrays(cfg)
    params, _ = load_vae(cfg.vae.checkpoint, cfg.vae.preset)
    tuned = dict(params, decoder=jax.tree.map(lambda p: p + 0.1, params["decoder"]))
    export_params(tuned, cfg.vae.checkpoint, vae_configs.get_config("tiny"))
    assert not np.array_equal(jax.tree.leaves(load_vae(cfg.vae.checkpoint, cfg.vae.preset)[0]["decoder"])[0],
                              jax.tree.leaves(params["decoder"])[0])
    second = cached_arrays(cfg)
    assert len(os.listdir(cfg.data.cache_dir)) == 1
    np.testing.assert_array_equal(first["latents"], second["latents"])


def test_ray_turn_variant_feeds_nine_channels_per_frame_to_the_camera_encoder(toy_teacher_config):
    with pytest.raises(ValueError, match="unknown variants"):
        teacher_config.get_config("tiny,ray_trun")
    cfg = toy_teacher_config
    cfg.model = teacher_config.get_config("tiny,ray_turn").model
    cfg.model.num_layers = 1
    params = teacher.init_params(jax.random.key(0), cfg)
    kernel = params["camera_encoder"]["proj_in"]["kernel"]
    kernel = getattr(kernel, "value", kernel)
    stride_t, stride_s = cfg.model.vae_stride[0], cfg.model.vae_stride[1]
    assert kernel.shape[2] == 9 * stride_t * stride_s ** 2
    c2w = jnp.broadcast_to(jnp.eye(4), (1, cfg.data.frames, 4, 4))
    intrinsics = jnp.full((1, cfg.data.frames, 4), 0.5)
    assert teacher.camera_rays(cfg, c2w, intrinsics).shape[-1] == 9 * stride_t


def test_turn_warp_teacher_caches_the_encoded_warp_and_trains(toy_teacher_config, tmp_path):
    vae = load_vae(toy_teacher_config.vae.checkpoint)
    plain_cache = teacher.latent_cache_dir(toy_teacher_config, vae)
    cfg = toy_teacher_config
    cfg.model = teacher_config.get_config("tiny,turn_warp").model
    cfg.model.num_layers = 1
    assert cfg.model.in_dim == 4 * cfg.model.out_dim
    assert teacher.latent_cache_dir(cfg, vae) != plain_cache
    train(cfg, str(tmp_path / "run"))
    cache = cached_arrays(cfg)
    d = cfg.data
    seed = [s for s in range(d.seed, d.seed + 12) if split_of(s) == "train"][1]
    clip = generate_clip(seed, d.frames, d.height, d.width, traj_seed=d.seed * 7919 + 1)
    vae_params, vae_cfg = load_vae(cfg.vae.checkpoint, cfg.vae.preset)
    warped = turn_warp(to_unit_range(clip["video"][None, 0]), clip["c2w"][None], clip["intrinsics"][None])
    np.testing.assert_allclose(cache["warp"][1], np.asarray(vae_lib.encode(vae_params, warped, vae_cfg))[0], atol=1e-4)


@pytest.mark.parametrize("drop_camera, depends", [(1.0, False), (0.0, True)])
def test_turn_warp_is_dropped_with_the_camera(toy_turn_warp_config, teacher_params, drop_camera, depends):
    cfg = toy_turn_warp_config
    cfg.cond.update(drop_camera=drop_camera, drop_image=0.0)
    params = teacher_params(cfg)
    t, h, w = teacher.latent_shape(cfg)
    rng = np.random.default_rng(0)
    batch = {"latents": jnp.asarray(rng.standard_normal((2, t, h, w, 16)), jnp.float32),
             "cond": jnp.asarray(rng.standard_normal((2, t, h, w, 32)), jnp.float32),
             "warp": jnp.asarray(rng.standard_normal((2, t, h, w, 16)), jnp.float32),
             "c2w": jnp.broadcast_to(jnp.eye(4), (2, cfg.data.frames, 4, 4)),
             "intrinsics": jnp.full((2, cfg.data.frames, 4), 0.5)}
    loss = teacher.loss_fn(params, batch, jax.random.key(2), cfg)[0]
    other = teacher.loss_fn(params, dict(batch, warp=batch["warp"] + 1.0), jax.random.key(2), cfg)[0]
    assert (abs(float(loss) - float(other)) > 1e-6) == depends


class _FrameOffsetModel:
    """A stand-in DiT: velocity = per-frame learnable offsets; records what it was given."""

    seen = {}

    def apply(self, variables, x_t, t_frames, text, **kwargs):
        self.seen.update(x_t=x_t, t_frames=t_frames)
        return jnp.zeros_like(x_t) + variables["params"]["offset"][None, :, None, None, None]


@pytest.mark.parametrize("clean_first", [True, False])
def test_flow_loss_gives_the_first_latent_clean_and_unscored(toy_teacher_config, monkeypatch, clean_first):
    cfg = toy_teacher_config
    cfg.flow.clean_first_latent = clean_first
    model = _FrameOffsetModel()
    monkeypatch.setattr(teacher, "teacher_model", lambda config: model)
    t, h, w = teacher.latent_shape(cfg)
    rng = np.random.default_rng(0)
    batch = {"latents": jnp.asarray(rng.standard_normal((2, t, h, w, 16)), jnp.float32),
             "cond": jnp.zeros((2, t, h, w, 32)), "c2w": jnp.broadcast_to(jnp.eye(4), (2, cfg.data.frames, 4, 4)),
             "intrinsics": jnp.full((2, cfg.data.frames, 4), 0.5)}
    grads = jax.grad(lambda p: teacher.loss_fn(p, batch, jax.random.key(2), cfg)[0])({"offset": jnp.zeros((t,))})
    frame_grads = np.asarray(grads["offset"])
    assert np.all(frame_grads[1:] != 0)
    assert (frame_grads[0] == 0) == clean_first
    first_given = np.array_equal(np.asarray(model.seen["x_t"][:, 0]), np.asarray(batch["latents"][:, 0]))
    assert first_given == clean_first
    assert np.all(np.asarray(model.seen["t_frames"][:, 0]) == 0) == clean_first


def test_wan1_3b_teacher_step_compiles_on_8_virtual_devices():
    report = run_lowering_script("teacher_lowering.py", "81", "480", "832", timeout=900)
    assert report["devices"] == 8 and report["compiled"]
    assert report["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2, "context": 1}
    assert 1.56e9 < report["params"] < 1.64e9  # Fun-Control DiT + the camera encoder
    assert "fsdp" in report["q_kernel_spec"] and "tensor" in report["q_kernel_spec"]
