"""The causal student's stages: ODE pairs, the exit-level truncation, DMD on Gaussians, training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trainer_runs import run_lowering_script

from worldscape_jax.configs import student as student_config
from worldscape_jax.diffusion import flow
from worldscape_jax.inference.teacher import camera_rays
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.training.stages import ode_init, self_forcing, student, teacher
from worldscape_jax.training import loop
from worldscape_jax.training.sharding import unbox


def micro_config(stage: str = "self_forcing"):
    """The tiny student's code at a size that compiles in seconds: random init, 32x32 frames."""
    config = student_config.get_config("tiny" if stage == "self_forcing" else "tiny,ode_init")
    config.model.update(dict(dim=32, ffn_dim=64, num_layers=1, freq_dim=16, num_heads=2))
    config.teacher.checkpoint = ""
    config.vae.checkpoint = ""
    config.init_from = ""
    config.data.height = config.data.width = 32
    config.student.rollout_chunks = 2
    return config


def micro_vae(config, seed=0):
    return (self_forcing.init_params(jax.random.key(seed), config)["vae"], self_forcing.vae_config(config))


# --- ODE pairs -----------------------------------------------------------------------------------------

def _linear_denoise(x, t_frames, cond):
    """A velocity field with a closed-form flow: v = a * x + cond (per frame)."""
    return 0.3 * x + cond["rays"]


def test_ode_trajectory_keeps_the_euler_states_at_the_levels_and_is_deterministic():
    levels = jnp.asarray([1.0, 0.8, 0.5], jnp.float32)
    noise = jax.random.normal(jax.random.key(0), (2, 3, 2, 2, 4))
    first = jnp.ones((2, 1, 2, 2, 4))
    cond = {"rays": jnp.full((2, 3, 2, 2, 4), 0.1)}
    uncond = {"rays": jnp.zeros((2, 3, 2, 2, 4))}
    run = lambda: ode_init.ode_trajectory(_linear_denoise, noise, levels, 3, cond, uncond, 2.0, first)
    states = run()
    np.testing.assert_array_equal(np.asarray(states), np.asarray(run()))  # same key, same pairs

    # naive reference: guided Euler steps of 1/3 of each segment in numpy, frame 0 held clean
    x, expected = np.asarray(noise, np.float64), []
    bounds = [1.0, 0.8, 0.5, 0.0]
    for i in range(3):
        x[:, :1] = 1.0
        expected.append(x.copy())
        grid = np.linspace(bounds[i], bounds[i + 1], 4)
        for s, s_next in zip(grid[:-1], grid[1:]):
            x[:, :1] = 1.0
            v_c, v_u = 0.3 * x + 0.1, 0.3 * x
            x = x + (s_next - s) * (v_u + 2.0 * (v_c - v_u))
    x[:, :1] = 1.0
    expected.append(x)
    np.testing.assert_allclose(np.asarray(states), np.stack(expected), rtol=1e-5, atol=1e-5)


def test_ode_pair_records_round_trip_through_array_record(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter
    records = [{"states": np.random.default_rng(i).normal(size=(5, 3, 2, 2, 4)).astype(np.float32),
                "c2w": np.eye(4, dtype=np.float32)[None].repeat(9, 0) * i} for i in range(3)]
    path = str(tmp_path / "pairs.array_record")
    writer = ArrayRecordWriter(path, "group_size:1")
    for r in records:
        writer.write(ode_init._encode(r))
    writer.close()
    back = ode_init.read_ode_pairs(path)
    for r, b in zip(records, back):
        for k in r:
            np.testing.assert_array_equal(r[k], b[k])


def _ode_batch(config, rng):
    t = 3
    h = config.data.height // config.model.vae_stride[1]
    z = config.model.out_dim
    k1, k2, k3 = jax.random.split(rng, 3)
    clean = jax.random.normal(k1, (2, t, h, h, z))
    eps = jax.random.normal(k2, (2, t, h, h, z))
    sig = jnp.concatenate([student.denoising_sigmas(config), jnp.zeros((1,))])
    states = jnp.stack([(1 - s) * clean + s * eps for s in sig], axis=1).at[:, :, 0].set(clean[:, :1, 0][:, None])
    c2w = jnp.broadcast_to(jnp.eye(4), (2, config.data.frames, 4, 4)).at[:, :, 2, 3].set(
        jnp.linspace(0, 0.5, config.data.frames))
    return {"states": states, "cond": jax.random.normal(k3, (2, t, h, h, config.model.in_dim - z)),
            "c2w": c2w, "intrinsics": jnp.full((2, config.data.frames, 4), 0.5)}


def test_ode_regression_steps_lower_the_loss_on_a_fixed_batch():
    config = micro_config("ode_init")
    params = unbox(ode_init.init_params(jax.random.key(0), config))
    batch = _ode_batch(config, jax.random.key(1))
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    loss = jax.jit(lambda p: ode_init.loss_fn(p, batch, jax.random.key(2), config)[0])
    grad = jax.jit(jax.grad(lambda p: ode_init.loss_fn(p, batch, jax.random.key(2), config)[0]))
    first = float(loss(params))
    for _ in range(8):
        updates, opt = tx.update(grad(params), opt, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.8 * first


# --- exit-level truncation --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chunk_setup():
    config = micro_config()
    params = unbox(teacher.init_params(jax.random.key(0), config))
    h = config.data.height // config.model.vae_stride[1]
    b, z = 1, config.model.out_dim
    cache = student.new_cache(config, b, (h, h))
    cond = jax.random.normal(jax.random.key(1), (b, 1, h, h, config.model.in_dim - z))
    c2w = jnp.broadcast_to(jnp.eye(4), (b, 5, 4, 4))
    rays = camera_rays(config, c2w, jnp.full((b, 5, 4), 0.5))[:, 1:]
    noise = jax.random.normal(jax.random.key(2), (b, 1, h, h, z))
    return config, params, cache, cond, rays, noise


def test_exit_level_truncation_gives_zero_gradient_through_the_earlier_levels(chunk_setup):
    config, params, cache, cond, rays, noise = chunk_setup
    key = jax.random.key(3)
    sigmas = student.denoising_sigmas(config)
    keys = jax.random.split(key, sigmas.shape[0])

    def x0_loss(p, x, sigma):
        return jnp.sum(student._chunk_x0(p, config, x, sigma, cond, rays, cache, 1) ** 2)

    def levels_before_exit(p, level):  # the sampler by hand: every level differentiable
        x = noise
        for i in range(level):
            x0 = student._chunk_x0(p, config, x, sigmas[i], cond, rays, cache, 1)
            x = (1 - sigmas[i + 1]) * x0 + sigmas[i + 1] * jax.random.normal(keys[i], x.shape)
        return x

    # Jitted (op by op the DiT's gradients take a minute); the exit level and sigma are traced, so the
    # student's sampler and the exit forward compile once for both levels.
    sampler_grad = jax.jit(jax.grad(lambda p, level: jnp.sum(
        student.denoise_chunk(p, config, noise, cond, rays, cache, 1, key, level) ** 2)))
    exit_grad = jax.jit(jax.grad(x0_loss))
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])
    for level in (1, 3):
        x_exit = jax.jit(levels_before_exit, static_argnums=1)(params, level)
        # the params' gradient is that of the exit forward alone, at the input the earlier levels produced
        exit_only = flat(exit_grad(params, x_exit, sigmas[level]))
        through_all = flat(jax.jit(jax.grad(lambda p: x0_loss(p, levels_before_exit(p, level), sigmas[level])))(params))
        full = flat(sampler_grad(params, level))
        scale = np.abs(exit_only).max()
        assert np.abs(full - exit_only).max() < 1e-3 * scale, (level, np.abs(full - exit_only).max(), scale)
        assert np.abs(through_all - exit_only).max() > 1e-2 * scale  # the earlier levels would add some


# --- DMD on Gaussians ------------------------------------------------------------------------------------

def _gaussian_x0(x_t, sigma, mean, var):
    """E[x0 | x_t] for x0 ~ N(mean, var), x_t = (1 - s) x0 + s eps (closed form)."""
    a = 1.0 - sigma
    return mean + a * var / (a * a * var + sigma * sigma) * (x_t - a * mean)


def test_dmd_moves_generated_samples_toward_the_real_distribution():
    real_mean, var = 2.0, 1.0
    shift = jnp.zeros(())  # the generator: x = z + shift, z ~ N(0, 1)
    tx = optax.sgd(0.5)
    opt = tx.init(shift)
    key = jax.random.key(0)

    def loss(shift, key):
        kz, ks, ke = jax.random.split(key, 3)
        x = jax.random.normal(kz, (256, 1)) + shift
        sigma = jax.random.uniform(ks, (256, 1), minval=0.02, maxval=0.98)
        x_t = (1 - sigma) * jax.lax.stop_gradient(x) + sigma * jax.random.normal(ke, x.shape)
        fake = _gaussian_x0(x_t, sigma, jax.lax.stop_gradient(shift), var)  # the critic, exact
        return self_forcing.dmd_loss(x, _gaussian_x0(x_t, sigma, real_mean, var), fake)

    for step in range(60):
        grads = jax.grad(loss)(shift, jax.random.fold_in(key, step))
        updates, opt = tx.update(grads, opt)
        shift = optax.apply_updates(shift, updates)
    assert abs(float(shift) - real_mean) < 0.3, float(shift)


# --- the Self-Forcing stage in the trainer ----------------------------------------------------------------

def _run(workdir, **fields):
    from worldscape_jax.training.logging import read_jsonl
    from worldscape_jax.training.loop import train
    config = micro_config()
    config.global_batch = 1
    config.data.rollout_examples = 3
    config.dmd.generator_every = 2
    config.log.tensorboard, config.log.progress = False, False
    config.log.every_steps, config.checkpoint.every_steps, config.checkpoint.async_save = 1, 2, False
    config.update(fields)
    state = train(config, str(workdir))
    return read_jsonl(str(workdir / "metrics.jsonl")), state


@pytest.mark.slow  # three rollout compilations: minutes on 2 cores
def test_rollouts_over_maco_without_a_pool_equal_the_rolling_cache_and_with_one_differ():
    """student.cache = maco trains with the inference cache (issue 18 item 6): with budget 0 and the same
    slots it is the rolling rollout exactly; with a pool, memory enters the context and changes chunks."""
    import ml_collections
    config = micro_config()
    config.student.rollout_chunks = 6
    config.student.reference = "newest_frame"
    frames = self_forcing.rollout_frames(config)
    arrays = self_forcing.first_frames_and_paths(config, 1)
    first = jnp.asarray(arrays["first_frame"], jnp.float32) / 127.5 - 1.0
    params = self_forcing.init_params(jax.random.key(0), config)
    vae = (params["vae"], self_forcing.vae_config(config))

    def run(cache, **maco):
        c = config.copy_and_resolve_references()
        c.student.cache = cache
        if maco:
            c.maco = ml_collections.ConfigDict(maco)
        go = jax.jit(lambda p: student.rollout(p, c, vae, first, jnp.asarray(arrays["c2w"]),
                                               jnp.asarray(arrays["intrinsics"]), jax.random.key(1))[0])
        return np.asarray(go(params["generator"]))

    rolling = run("rolling")
    assert rolling.shape[1] == 1 + (frames - 1) // 4
    no_pool = run("maco", local=config.student.cache_slots - 1, budget=0, select=0)
    np.testing.assert_allclose(no_pool, rolling, atol=1e-5)
    # sink + 1 memory + 1 local = 3 context chunks: the rolling cache's context up to latent 3 (latent 1
    # at its own position, just before the window), fewer chunks than the rolling cache's after it
    with_pool = run("maco", local=1, budget=1, select=1, tau_mdl=1.0)
    assert np.isfinite(with_pool).all()
    np.testing.assert_allclose(with_pool[:, :4], rolling[:, :4], atol=1e-5)
    assert np.abs(with_pool[:, 4:] - rolling[:, 4:]).max() > 1e-3


def test_truth_mse_is_the_generated_latents_against_the_encoded_path_without_latent_0():
    config = micro_config()
    arrays = self_forcing.first_frames_and_paths(config, 2, with_video=True)
    assert arrays["video"].shape == (2, self_forcing.rollout_frames(config), 32, 32, 3)
    np.testing.assert_array_equal(arrays["video"][:, :1], arrays["first_frame"])
    vae = micro_vae(config)
    truth = np.asarray(vae_lib.encode(vae[0], jnp.asarray(arrays["video"], jnp.float32) / 127.5 - 1.0, vae[1]))
    latents = truth + np.random.default_rng(0).normal(size=truth.shape).astype(np.float32)
    latents[:, 0] += 100.0  # latent 0 is the given frame: not scored
    expected = np.mean(np.square(latents[:, 1:] - truth[:, 1:]))
    got = self_forcing._truth_mse(jnp.asarray(latents), jnp.asarray(arrays["video"]), vae)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_pooled_truth_mse_compares_block_means_so_detail_inside_a_block_is_free():
    """truth_pool p: the MSE of p x p block means (a naive numpy loop); detail with zero block mean costs
    nothing, a shift of a block's mean costs its square; p = 1 is the full-resolution MSE."""
    config = micro_config()
    arrays = self_forcing.first_frames_and_paths(config, 1, with_video=True)
    vae = micro_vae(config)
    truth = np.asarray(vae_lib.encode(vae[0], jnp.asarray(arrays["video"], jnp.float32) / 127.5 - 1.0, vae[1]))
    b, t, h, w, c = truth.shape
    checker = np.where((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0, 1.0, -1.0)[None, None, :, :, None]
    latents = truth + 0.7 * checker.astype(np.float32)  # zero mean over every 2 x 2 block
    mse = lambda pool: float(self_forcing._truth_mse(jnp.asarray(latents), jnp.asarray(arrays["video"]), vae, pool))
    np.testing.assert_allclose(mse(1), 0.49, rtol=1e-4)
    assert mse(2) < 1e-8
    latents[:, 1:, :2, :2] += 0.5  # one 2 x 2 block of every generated latent frame, every channel
    naive = np.zeros((b, t - 1, h // 2, w // 2, c))
    for i in range(h // 2):
        for j in range(w // 2):
            naive[:, :, i, j] = (latents - truth)[:, 1:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(2, 3))
    np.testing.assert_allclose(mse(2), np.mean(np.square(naive)), rtol=1e-4)
    np.testing.assert_allclose(mse(2), 0.25 / (h // 2 * w // 2), rtol=1e-4)


def test_truth_reference_frames_are_the_paths_frames_where_each_chunk_takes_its_reference():
    config = micro_config()
    config.student.rollout_chunks = 3
    frames = self_forcing.rollout_frames(config)
    video = np.random.default_rng(0).integers(0, 256, (2, frames, 8, 8, 3), dtype=np.uint8)
    got = np.asarray(self_forcing.truth_reference_frames(config, jnp.asarray(video)))
    assert got.shape == (3, 2, 1, 8, 8, 3)
    for chunk, index in enumerate((0, 4, 8)):  # 4 pixel frames per chunk: chunk s follows frame 4 s
        np.testing.assert_allclose(got[chunk, :, 0], video[:, index] / 127.5 - 1.0, atol=1e-6)
    config.dmd.truth_weight = 0.0
    assert not self_forcing.needs_truth_video(config)
    config.dmd.truth_reference = True
    assert self_forcing.needs_truth_video(config)


def test_a_first_frame_chunk_is_latent_one_of_the_clip_from_the_first_frame():
    """reference first_frame: a chunk's channels are latent 1 of the teacher clip from the stream's first
    frame at its camera over the chunk's cameras, built here from their parts ([first frame, black...]
    encoded, then the first frame warped through each turn, encoded); the newest frame is not read; the
    rays are the newest-frame clip's. With a reach they fade by `anchor_weight`. Without `first` it is refused."""
    from worldscape_jax.geometry.actions import actions_to_c2w
    from worldscape_jax.models.conditioning import encode_conditions, encode_turn_warp
    config = micro_config()
    config.student.reference = "first_frame"
    vae = micro_vae(config)
    path = jnp.asarray(actions_to_c2w("q*3,e,w*4")[None])  # the first camera, then turns and a step
    chunk_c2w = path[:, 4:9]  # the newest frame's camera (frame 4) and the chunk's four
    intrinsics = jnp.broadcast_to(jnp.asarray([0.9, 0.9, 0.5, 0.5]), (1, 5, 4))
    first, newest, other = (jax.random.uniform(jax.random.key(i), (1, 1, 32, 32, 3), minval=-1, maxval=1)
                            for i in range(3))

    @jax.jit
    def conditions(vae_params, ref):
        return student.chunk_conditions((vae_params, vae[1]), config, ref, chunk_c2w, intrinsics,
                                        rng=jax.random.key(0), first=(first, path[:, 0]))

    @jax.jit
    def from_parts(vae_params):
        clip_c2w = jnp.concatenate([path[:, :1], chunk_c2w[:, 1:]], axis=1)
        video = jnp.concatenate([first, jnp.zeros((1, 4, 32, 32, 3))], axis=1)
        return jnp.concatenate([encode_conditions(vae_params, vae[1], video),
                                encode_turn_warp(vae_params, vae[1], first, clip_c2w, intrinsics)], axis=-1)[:, 1:]

    cond, rays = conditions(vae[0], newest)
    np.testing.assert_allclose(np.asarray(cond), np.asarray(from_parts(vae[0])), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(conditions(vae[0], other)[0]), np.asarray(cond))
    np.testing.assert_allclose(np.asarray(rays), np.asarray(camera_rays(config, chunk_c2w, intrinsics)[:, 1:]),
                               atol=1e-6)
    with pytest.raises(ValueError, match="first_frame.*first="):
        student.chunk_conditions(vae, config, newest, chunk_c2w, intrinsics)
    # with a reach the channels fade: the chunk's last camera (frame 8) has turned 6 degrees, walked nowhere
    config.student.reference_reach, config.student.reference_reach_deg = 0.6, 21.0
    faded, _ = student.chunk_conditions(vae, config, newest, chunk_c2w, intrinsics, first=(first, path[:, 0]))
    np.testing.assert_allclose(np.asarray(faded), (1 - 6 / 21) * np.asarray(cond), atol=1e-5)
    # reference_outside "dropped": only the warp channels change, scaled by the first view's coverage (< 1
    # somewhere after a 6-degree turn, never above 1)
    config.student.reference_outside = "dropped"
    dropped, _ = student.chunk_conditions(vae, config, newest, chunk_c2w, intrinsics, first=(first, path[:, 0]))
    z = vae[1].z_dim
    np.testing.assert_allclose(np.asarray(dropped[..., :2 * z]), np.asarray(faded[..., :2 * z]), atol=1e-6)
    ratio = np.abs(np.asarray(dropped[..., 2 * z:])) / np.maximum(np.abs(np.asarray(faded[..., 2 * z:])), 1e-9)
    assert ratio.max() <= 1 + 1e-5 and ratio.min() < 0.99


@pytest.mark.slow
def test_truth_reference_makes_the_teachers_windows_start_at_the_ground_truth():
    """With truth_reference the DMD terms are those of the student's rollout judged from the truth's frames:
    the loss changes when the ground truth's frames do, with the same rollout (the first frame is kept)."""
    config = micro_config()
    config.student.rollout_chunks = 3  # two teacher windows: the second starts after generated frame 4
    config.dmd.truth_weight = 0.0
    config.dmd.truth_reference = True
    arrays = self_forcing.first_frames_and_paths(config, 1, with_video=True)
    batch = {k: jnp.asarray(v) for k, v in arrays.items()}
    params = self_forcing.init_params(jax.random.key(0), config)
    loss = jax.jit(lambda b: self_forcing.loss_fn(params, b, jax.random.key(5), config)[1])
    same, moved = loss(batch), loss({**batch, "video": batch["video"].at[:, 1:].set(255 - batch["video"][:, 1:])})
    assert np.isfinite(float(same["dmd_loss"]))
    assert abs(float(same["dmd_loss"]) - float(moved["dmd_loss"])) > 1e-6
    config.dmd.truth_reference = False  # without it the truth's frames are not read at all
    loss = jax.jit(lambda b: self_forcing.loss_fn(params, b, jax.random.key(5), config)[1])
    np.testing.assert_allclose(float(loss(batch)["dmd_loss"]),
                               float(loss({**batch, "video": 255 - batch["video"]})["dmd_loss"]), rtol=1e-6)


@pytest.mark.parametrize("pool", [0, 3])
def test_truth_pool_that_does_not_tile_the_latent_is_refused(pool):
    config = micro_config()
    config.dmd.truth_pool = pool
    with pytest.raises(ValueError, match="config.dmd.truth_pool"):
        self_forcing.truth_pool(config)


@pytest.mark.slow
def test_truth_anchor_adds_its_weight_times_the_rollouts_error_against_the_rendered_path():
    """loss = DMD + critic + w * truth_mse, and truth_mse is the rollout's latents against the encoded
    rendered path, recomputed here from student.rollout and the VAE with numpy."""
    config = micro_config()
    arrays = self_forcing.first_frames_and_paths(config, 1, with_video=True)
    assert arrays["video"].shape[1] == self_forcing.rollout_frames(config)
    np.testing.assert_array_equal(arrays["video"][:, :1], arrays["first_frame"])
    batch = {k: jnp.asarray(v) for k, v in arrays.items()}
    params = self_forcing.init_params(jax.random.key(0), config)
    rng = jax.random.key(5)
    config.dmd.truth_weight = 2.0
    loss, metrics = jax.jit(lambda p, b, r: self_forcing.loss_fn(p, b, r, config))(params, batch, rng)
    parts = metrics["dmd_loss"] + metrics["critic_loss"] + 2.0 * metrics["truth_mse"]
    np.testing.assert_allclose(float(loss), float(parts), rtol=1e-5)
    k_exit, k_roll = jax.random.split(rng, 6)[:2]  # loss_fn's own split of its rng
    exit_level = jax.random.randint(k_exit, (), 0, student.denoising_sigmas(config).shape[0])
    vae = micro_vae(config)
    first = batch["first_frame"].astype(jnp.float32) / 127.5 - 1.0
    latents, _ = jax.jit(lambda p, v: student.rollout(p, config, (v, vae[1]), first, batch["c2w"], batch["intrinsics"],
                                                      k_roll, exit_level))(params["generator"], vae[0])
    truth = vae_lib.encode(vae[0], batch["video"].astype(jnp.float32) / 127.5 - 1.0, vae[1])
    expected = np.mean(np.square(np.asarray(latents)[:, 1:] - np.asarray(truth)[:, 1:]))
    np.testing.assert_allclose(float(metrics["truth_mse"]), expected, rtol=1e-4)


@pytest.mark.slow
def test_self_forcing_stage_resumes_exactly_after_a_kill(tmp_path):
    full, full_state = _run(tmp_path / "full", total_steps=4)
    first, _ = _run(tmp_path / "killed", total_steps=4, stop_at_step=3)  # last checkpoint: step 2
    assert [r["step"] for r in first] == [1, 2, 3]
    resumed, resumed_state = _run(tmp_path / "killed", total_steps=4)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for key in ("dmd_loss", "critic_loss", "param_norm"):
        np.testing.assert_allclose([r[key] for r in resumed], [r[key] for r in full], rtol=1e-5)
    # the generator moved only on its update steps (2 and 4), the critic on every step, the teacher never
    config = micro_config()
    config.global_batch = 1
    setup = loop.build(config)
    p, init = full_state.params, loop.initial_state(setup, config).params  # the trainer's own step-0 params
    moved = lambda a, b: max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
                             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(unbox(b))))
    assert moved(p["teacher"], init["teacher"]) == 0.0 and moved(p["vae"], init["vae"]) == 0.0
    assert moved(p["critic"], init["critic"]) > 0 and moved(p["generator"], init["generator"]) > 0
    for a, b in zip(jax.tree.leaves(resumed_state.params), jax.tree.leaves(full_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_wan1_3b_self_forcing_step_compiles_on_8_virtual_devices():
    report = run_lowering_script("student_lowering.py", "64", "128", "7", timeout=1800)
    assert report["devices"] == 8 and report["compiled"]
    assert report["mesh"] == {"data": 1, "fsdp": 4, "tensor": 2, "context": 1}
    for name in ("generator", "critic", "teacher"):
        assert 1.56e9 < report["params"][name] < 1.64e9  # the Fun-Control DiT + camera encoder, each
    assert "fsdp" in report["q_kernel_spec"] and "tensor" in report["q_kernel_spec"]


def test_committed_tiny_student_config_names_its_ode_pairs_and_teacher_cache():
    """The tiny recipe's data section has every field the teacher's latent cache key reads (its source
    was missing once, and only a real ODE-init run found it)."""
    from worldscape_jax.configs import teacher as teacher_config
    config = student_config.get_config("tiny,ode_init")
    teacher_data = teacher_config.get_config("tiny").data
    missing = set(teacher_data) - set(config.data) - {"families"}  # the student names its own families
    assert not missing, f"configs/student.py data lacks the teacher pipeline's fields {sorted(missing)}"
    path = ode_init.pairs_path(config)
    assert path.startswith(config.data.cache_dir) and path.endswith(".array_record")
    assert student.reference_mode(config) == "none"


@pytest.mark.parametrize("scale", ["tiny", "wan1_3b"])
def test_the_student_configs_maco_section_is_its_trained_span(scale):
    """The exported maco section (what play, the demo and the revisit bench stream with) holds exactly the
    rolling cache's context: sink + select + local chunks = cache_slots frames."""
    from worldscape_jax.play.model_engine import trained_span_maco
    from worldscape_jax.streaming.config import from_student
    from worldscape_jax.streaming.maco import MacoConfig
    config = student_config.get_config(scale)
    maco = MacoConfig.from_config(config.maco)
    assert maco.context_chunks * config.model.frames_per_chunk == config.student.cache_slots
    assert maco == MacoConfig.from_config(trained_span_maco(from_student(config), config.model.frames_per_chunk))
    assert student.rollout_policy(config).slots == config.student.cache_slots  # the default: rolling
    config.student.cache = "maco"
    assert student.rollout_policy(config).config == maco
