"""Student stage 2: Self-Forcing with distribution matching distillation and a rolling window (paper §3.3).

One train step holds three networks, as one params pytree {generator, critic, teacher}:
  * the generator (the causal student, from the ODE-init export) rolls out `student.rollout_chunks`
    chunks autoregressively over its own KV cache from a first frame and a camera path (no teacher
    forcing). One exit level, drawn per step and shared by all chunks (Self-Forcing's
    `same_step_across_blocks`), is the only forward with gradients; cache refreshes run without.
  * Rolling window: the rollout is longer than the teacher's clip, so the DMD loss is taken on every
    window of the teacher's length inside it (at tiny: 6 chunks, windows of 1 + 2 latent frames).
    The teacher conditions on a clean first frame, so a window that starts at generated chunk s is given
    the reference frame chunk s was itself conditioned on (the decoded last pixel frame of chunk s - 1,
    re-encoded without gradient) as that first frame, with the control, turn-warp and ray inputs of a
    teacher clip starting there (student.clip_conditions). It is the student's own conditioning, so the
    teacher judges each window exactly as the student saw it.
  * DMD (Self-Forcing model/dmd.py): noise the window at a score level sigma ~ U[0.02, 0.98] (shifted);
    real score = the frozen teacher with camera CFG, fake score = the critic; the generator's loss is
    0.5 || x - sg(x - g) ||^2 with g = (x0_fake - x0_real) / mean|x - x0_real|.
  * The critic (initialised from the teacher) learns the generator's samples by flow matching.
Both losses are summed: each depends only on its own network's params (the other network enters
through stop_gradient), so one gradient carries both updates. The optimizer (`make_optimizer`) updates
the critic every step and the generator every `dmd.generator_every` steps with the mean of its
gradients over those steps (optax.MultiSteps): every rollout's DMD gradient is used, the critic gets
several updates per generator update (Self-Forcing's `dfake_gen_update_ratio`), and the trainer keeps
one optimizer for one params pytree. The teacher's update is zero (optax.set_to_zero: no moments).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from worldscape_jax.data.synthworld import clips as synth_clips
from worldscape_jax.data.synthworld import navigation_scene, render_frames, split_of
from worldscape_jax.diffusion import flow, samplers
from worldscape_jax.geometry.cameras import intrinsics_from_fov
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.vae_config import get_vae_config
from worldscape_jax.training.data_iter import indexed_batches, shuffled_index
from worldscape_jax.inference.loading import load_vae
from worldscape_jax.inference.pixels import to_unit_range
from worldscape_jax.inference.teacher import model_cond
from worldscape_jax.training.init_from import load_init_params
from worldscape_jax.training.optim import make_optimizer as make_base_optimizer
from worldscape_jax.training.stages import student, teacher

FROZEN = ("teacher", "vae")


def _load_boxed(boxed, path: str):
    """`boxed` (flax logical-partitioning boxes) with the values of export `path` inside the boxes."""
    values = load_init_params(path, nn.meta.unbox(boxed))
    is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
    return jax.tree.map(lambda box, v: box.replace_boxed(jnp.asarray(v)) if is_box(box) else jnp.asarray(v),
                        boxed, values, is_leaf=is_box)


def vae_config(config):
    """The VAE's config: the export's, or the preset's when there is no checkpoint (shape checks)."""
    if config.vae.checkpoint:
        return load_vae(config.vae.checkpoint, config.vae.preset)[1]
    return get_vae_config(config.vae.preset)


def init_params(rng, config):
    """{generator: ODE-init export (else the teacher), critic: the teacher, teacher: the teacher, vae}.

    The frozen VAE is in the params (and so an argument of the step) because the rollout decodes and
    re-encodes reference frames; as a closure constant XLA would fold it at compile time."""
    fresh = teacher.init_params(rng, config)
    t = config.teacher.checkpoint
    sources = {"generator": config.student.init_from or t, "critic": t, "teacher": t}
    params = {name: _load_boxed(fresh, path) if path else fresh for name, path in sources.items()}
    if config.vae.checkpoint:
        params["vae"] = jax.tree.map(jnp.asarray, load_vae(config.vae.checkpoint, config.vae.preset)[0])
    else:
        params["vae"] = vae_lib.init_params(vae_config(config), rng)
    return params


def exported_params(params):
    """What launch/export.py writes: the generator alone (a DiT, loadable like the teacher's export)."""
    return params["generator"]


def make_optimizer(config):
    """(tx, schedule): generator every `dmd.generator_every` steps, critic every step, teacher frozen."""
    generator_tx, schedule = make_base_optimizer(config.optim, config.total_steps)
    critic_tx, _ = make_base_optimizer(_with_lr(config.optim, config.dmd.critic_lr), config.total_steps)
    every = int(config.dmd.generator_every)
    if every < 1:
        raise ValueError(f"config.dmd.generator_every must be >= 1, got {every}")
    transforms = {"generator": optax.MultiSteps(generator_tx, every).gradient_transformation(),
                  "critic": critic_tx, **{name: optax.set_to_zero() for name in FROZEN}}
    return optax.multi_transform(transforms, {name: name for name in transforms}), schedule


def _with_lr(optim, lr):
    optim = optim.copy_and_resolve_references()
    optim.lr = float(lr)
    return optim


def rollout_frames(config) -> int:
    return 1 + student.pixels_per_chunk(config) * config.student.rollout_chunks


def teacher_latent_frames(config) -> int:
    return 1 + (config.teacher.frames - 1) // config.model.vae_stride[0]


def truth_weight(config) -> float:
    """Weight of the ground-truth anchor (`config.dmd.truth_weight`, 0 in older configs): see `loss_fn`."""
    return float(config.dmd.get("truth_weight", 0.0))


def truth_reference(config) -> bool:
    """Whether the teacher's windows start at the ground truth's frame instead of the student's own
    (`config.dmd.truth_reference`, False in older configs): see `loss_fn`."""
    return bool(config.dmd.get("truth_reference", False))


def needs_truth_video(config) -> bool:
    return truth_weight(config) > 0 or truth_reference(config)


def truth_reference_frames(config, video):
    """[N, B, 1, H, W, 3] in [-1, 1]: for each of the rollout's N chunks the ground truth's frame at the
    position of the reference the chunk was conditioned on (pixel frame p s of the path for chunk s)."""
    p = student.pixels_per_chunk(config)
    frames = to_unit_range(video)
    return jnp.stack([frames[:, p * s:p * s + 1] for s in range(config.student.rollout_chunks)])


def truth_pool(config) -> int:
    """Spatial block of the anchor's average pool (`config.dmd.truth_pool`, 1 = every latent pixel): see
    `_truth_mse`. It must divide the latent's height and width."""
    pool = int(config.dmd.get("truth_pool", 1))
    latent_hw = [size // config.model.vae_stride[axis + 1] for axis, size in
                 enumerate((config.data.height, config.data.width))]
    if pool < 1 or any(size % pool for size in latent_hw):
        raise ValueError(f"config.dmd.truth_pool={pool}: expected a positive divisor of the latent's height and "
                         f"width {latent_hw}")
    return pool


def first_frames_and_paths(config, count: int, split: str = "train", first_seed: int = 0,
                           with_video: bool = False) -> dict[str, np.ndarray]:
    """`count` rollout inputs of `split`: the first frame uint8 [N, 1, H, W, 3], c2w and intrinsics of the path;
    with_video also the whole path rendered, "video" uint8 [N, F, H, W, 3] (the ground-truth anchor's target)."""
    d, frames = config.data, rollout_frames(config)
    families = teacher.training_families(config)
    intrinsics = np.tile(intrinsics_from_fov(synth_clips.FOV_X_DEG, d.height, d.width), (frames, 1))
    out = {"first_frame": [], "c2w": [], "intrinsics": [], **({"video": []} if with_video else {})}
    seed = first_seed
    with tqdm(total=count, desc=f"self_forcing: {split} first frames", unit="frame") as bar:
        while len(out["c2w"]) < count:
            if split_of(seed) == split:
                traj_seed = d.seed * 7919 + seed
                c2w = synth_clips.camera_path(families[traj_seed % len(families)], frames, traj_seed,
                                              synth_clips.start_pose(traj_seed), families[0])
                rendered = frames if with_video else 1
                rgb = render_frames(navigation_scene(seed, synth_clips.FREE_RADIUS), c2w[:rendered],
                                    intrinsics[:rendered], d.height, d.width, synth_clips.DEFAULT_SUPERSAMPLE).rgb
                video = np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
                out["first_frame"].append(video[:1])
                if with_video:
                    out["video"].append(video)
                out["c2w"].append(np.asarray(c2w, np.float32))
                out["intrinsics"].append(intrinsics.astype(np.float32))
                bar.update(1)
            seed += 1
    return {k: np.stack(v) for k, v in out.items()}


def make_dataset(config, process_index, process_count):
    """Batches of (first frame, camera path) from the train split, reshuffled each epoch."""
    arrays = first_frames_and_paths(config, config.data.rollout_examples, with_video=needs_truth_video(config))
    count = arrays["c2w"].shape[0]

    def example(index: int) -> dict[str, np.ndarray]:
        return {k: v[shuffled_index(index, count, config.seed)] for k, v in arrays.items()}

    return indexed_batches(example, config.global_batch, process_index, process_count)


def windows(config, latents, ref_frames, c2w, intrinsics):
    """Every teacher-length window of the rollout, stacked on the batch axis.

    Returns (generated latents [W B, T - 1, ...], reference frames [W B, 1, H, W, 3], c2w and intrinsics
    [W B, teacher frames, ...]). Window s starts at chunk s and is preceded by its reference frame.
    """
    c, p = config.model.frames_per_chunk, student.pixels_per_chunk(config)
    span = teacher_latent_frames(config) - 1
    if span % c:
        raise ValueError(f"config.teacher.frames={config.teacher.frames}: its {span} generated latent frames are "
                         f"not whole {c}-frame chunks")
    count = config.student.rollout_chunks - span // c + 1
    if count < 1:
        raise ValueError(f"config.student.rollout_chunks={config.student.rollout_chunks} is shorter than the "
                         f"teacher's window ({span // c} chunks)")
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    gen = flat(jnp.stack([latents[:, 1 + c * s:1 + c * s + span] for s in range(count)]))
    refs = flat(ref_frames[:count])
    frames = config.teacher.frames
    cams = [flat(jnp.stack([x[:, p * s:p * s + frames] for s in range(count)])) for x in (c2w, intrinsics)]
    return gen, refs, *cams


def _score_sigma(config, rng, batch: int):
    d = config.dmd
    sampling = flow.TimestepSampling("uniform", float(d.shift), min_sigma=float(d.min_sigma),
                                     max_sigma=float(d.max_sigma))
    return flow.sample_sigmas(rng, batch, 1, sampling)  # one level per window, shared by its frames


def _window_x0(params, config, ref_latent, x_t, sigma, cond, rays, uncond_rays=None, guidance=1.0):
    """x0 of a window [ref (clean, t = 0) | x_t] from a bidirectional DiT (camera CFG when guidance != 1)."""
    x = jnp.concatenate([ref_latent, x_t], axis=1)
    sig = jnp.concatenate([jnp.zeros_like(sigma), jnp.broadcast_to(sigma, x_t.shape[:2])], axis=1)
    z = config.model.out_dim
    camera = {"rays": rays, "warp": cond[..., 2 * z:]}

    def denoise(x_, t_, camera_):
        return student.apply_dit(params, config, x_, t_, model_cond(cond[..., :2 * z], camera_["warp"]),
                                 camera_["rays"])

    uncond = None if guidance == 1.0 else jax.tree.map(jnp.zeros_like, camera)
    v = samplers.guided_velocity(denoise, x, flow.sigma_to_timestep(sig), camera, uncond, guidance)
    return flow.x0_from_velocity(x, v, sig)[:, 1:]


def dmd_loss(x_gen, x0_real, x0_fake):
    """0.5 || x - sg(x - g) ||^2 with g = (x0_fake - x0_real) / mean|x - x0_real| per sample (DMD eq. 8)."""
    axes = tuple(range(1, x_gen.ndim))
    scale = jnp.mean(jnp.abs(x_gen - x0_real), axis=axes, keepdims=True)
    grad = jnp.nan_to_num((x0_fake - x0_real) / jnp.maximum(scale, 1e-6))
    target = jax.lax.stop_gradient(x_gen - grad)
    return 0.5 * jnp.mean(jnp.square(x_gen - target))


def average_pool(latents, pool: int):
    """Latents [B, T, H, W, C] averaged over pool x pool spatial blocks -> [B, T, H / pool, W / pool, C]."""
    b, t, h, w, c = latents.shape
    return latents.reshape(b, t, h // pool, pool, w // pool, pool, c).mean(axis=(3, 5))


def _truth_mse(latents, video, vae, pool: int = 1):
    """Mean squared error of the rollout's generated latents [B, 1 + N c, ...] against the ground-truth path's
    encoding (SynthWorld renders the rollout's own camera path), latent 0 (the given frame) left out.

    With pool > 1 both are first averaged over pool x pool latent pixels: the anchor then holds the layout
    and colours of the path (what drift loses) and leaves the detail to DMD. At full resolution its optimum
    is the mean of the futures the student cannot tell apart, a blur (latents at half the real std)."""
    truth = jax.lax.stop_gradient(vae_lib.encode(vae[0], to_unit_range(video), vae[1]))
    return jnp.mean(jnp.square(average_pool(latents[:, 1:], pool) - average_pool(truth[:, 1:], pool)))


def loss_fn(params, batch, rng, config):
    """DMD on every teacher window of one Self-Forcing rollout + the critic's flow matching on them.

    With `config.dmd.truth_weight` w > 0 the generator's loss also has w times the mean squared error of
    every generated chunk (the exit forward, the only one with gradients) against the ground truth of the
    rollout's path (average-pooled over `config.dmd.truth_pool` latent pixels). DMD alone cannot see drift: each teacher window is conditioned on a frame of the
    student's own rollout, so a degraded stream is judged against a teacher continuing the degradation;
    the anchor penalises the distance from the real path at every chunk of the rollout.

    With `config.dmd.truth_reference` the teacher and the critic judge each window as the continuation of
    the ground truth's frame where the window starts, not of the student's own decoded frame: a stream
    that has drifted or blurred is then scored against a sharp continuation of the real scene (the
    teacher's distribution, so it pulls towards the truth without the mean-of-futures blur of the MSE)."""
    vae = (jax.lax.stop_gradient(params["vae"]), vae_config(config))
    k_exit, k_roll, k_sigma, k_eps, k_sigma_c, k_eps_c = jax.random.split(rng, 6)
    levels = student.denoising_sigmas(config).shape[0]
    exit_level = jax.random.randint(k_exit, (), 0, levels)
    first = to_unit_range(batch["first_frame"])
    latents, refs = student.rollout(params["generator"], config, vae, first, batch["c2w"], batch["intrinsics"],
                                    k_roll, exit_level)
    if truth_reference(config):
        refs = truth_reference_frames(config, batch["video"])
    x_gen, ref_frames, c2w, intrinsics = windows(config, latents, refs, batch["c2w"], batch["intrinsics"])
    cond, rays = jax.lax.stop_gradient(student.clip_conditions(vae, config, ref_frames, c2w, intrinsics))
    ref_latent = student.reference_latent(cond, vae[1])
    frozen = jax.lax.stop_gradient(x_gen)

    sigma = _score_sigma(config, k_sigma, x_gen.shape[0])
    x_t = flow.add_noise(frozen, jax.random.normal(k_eps, x_gen.shape), jnp.broadcast_to(sigma, x_gen.shape[:2]))
    x0_real = _window_x0(jax.lax.stop_gradient(params["teacher"]), config, ref_latent, x_t, sigma, cond, rays,
                         guidance=float(config.teacher.guidance))
    x0_fake = _window_x0(jax.lax.stop_gradient(params["critic"]), config, ref_latent, x_t, sigma, cond, rays)
    generator_loss = dmd_loss(x_gen, x0_real, x0_fake)

    sigma_c = jnp.broadcast_to(_score_sigma(config, k_sigma_c, x_gen.shape[0]), x_gen.shape[:2])
    eps_c = jax.random.normal(k_eps_c, x_gen.shape)
    x_c = jnp.concatenate([ref_latent, flow.add_noise(frozen, eps_c, sigma_c)], axis=1)
    t_c = flow.sigma_to_timestep(jnp.concatenate([jnp.zeros_like(sigma_c[:, :1]), sigma_c], axis=1))
    v_c = student.apply_dit(params["critic"], config, x_c, t_c, cond, rays)
    critic_loss = flow.flow_matching_loss(v_c[:, 1:], frozen, eps_c)

    metrics = {"dmd_loss": generator_loss, "critic_loss": critic_loss, "exit_level": exit_level.astype(jnp.float32),
               "real_fake_gap": jnp.mean(jnp.abs(x0_fake - x0_real)), "latent_std": jnp.std(x_gen)}
    if truth_weight(config) > 0:
        metrics["truth_mse"] = _truth_mse(latents, batch["video"], vae, truth_pool(config))
        generator_loss = generator_loss + truth_weight(config) * metrics["truth_mse"]
    return generator_loss + critic_loss, metrics
