"""Student stage 1: ODE-pair initialisation (CausVid's recipe, reused by Self-Forcing; paper §3.3).

ODE pairs: the frozen teacher integrates its flow with its own deterministic Euler sampler and camera
guidance (`diffusion.samplers.euler_sample`) from noise to a clean clip, and the states it passes at
the student's K denoising levels are kept with the clean end point. They are written once as an
ArrayRecord file (one record per clip) keyed by everything they depend on (teacher params, VAE
params, clips, levels, sampler settings), so a re-run with the same key reads them back.

Training: the block-causal student, initialised from the teacher's params, sees each chunk of a pair
at its own randomly drawn level (latent 0, the given first image, clean at t = 0) in one parallel
forward with block-causal attention, and regresses the clean latent (MSE on x0 over the noisy chunks).
Its conditioning is the student's own (student.py): chunk j is conditioned on the clip that starts at
the pixel frame before it, which for the pairs is the teacher's decoded output.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from worldscape_jax.diffusion import flow, samplers
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.training.data_iter import indexed_batches, shuffled_index
from worldscape_jax.inference.loading import load_exported, load_vae, resolve_asset
from worldscape_jax.inference.teacher import camera_rays, model_cond
from worldscape_jax.training.stages import student, teacher

SAMPLE_BATCH = 16  # clips per teacher sampling call (one compiled shape)
ODE_PAIRS_VERSION = 1  # bump when the pair recipe changes


def init_params(rng, config):
    """The teacher's DiT; the run starts from the teacher's params through `config.init_from`."""
    return teacher.init_params(rng, config)


def teacher_params(config):
    params, _ = load_exported(config.teacher.checkpoint, stage="teacher")
    return params


def _file_digest(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pairs_path(config) -> str:
    """Where the pairs live: named by a hash of everything they depend on."""
    t = config.teacher
    contents = {"teacher": _file_digest(os.path.join(resolve_asset(t.checkpoint), "params.msgpack")),
                "teacher_sampler": {k: t[k] for k in ("ode_steps", "guidance", "shift")},
                "levels": np.asarray(student.denoising_sigmas(config)).round(6).tolist(),
                "clips": os.path.basename(teacher.latent_cache_dir(config, load_vae(config.vae.checkpoint,
                                                                                   config.vae.preset))), "model": config.model.to_dict(),
                "chunk": config.model.frames_per_chunk, "version": ODE_PAIRS_VERSION}
    key = hashlib.sha1(json.dumps(contents, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return os.path.join(config.data.cache_dir, f"ode_pairs_{key}.array_record")


def ode_trajectory(denoise, noise, levels, steps_per_level, cond, uncond, guidance, first_latent):
    """States [K + 1, B, T, ...] of the Euler ODE at `levels` (decreasing, levels[0] = 1) and its clean end.

    Each segment between consecutive levels (and from the last level to 0) is integrated with
    `steps_per_level` Euler steps, so every kept state lies exactly on the sampler's path.
    """
    bounds = jnp.concatenate([levels, jnp.zeros((1,), levels.dtype)])
    states, x = [], noise
    for i in range(levels.shape[0]):
        states.append(x.at[:, :1].set(first_latent))
        x = samplers.euler_sample(denoise, x, jnp.linspace(bounds[i], bounds[i + 1], steps_per_level + 1),
                                  cond, uncond, guidance, clean_prefix=first_latent)
    return jnp.stack([*states, x])


def make_pair_fn(config, vae_config):
    """jit(teacher params, VAE params, clip arrays, rng) -> (states [K + 1, B, T, h, w, z], student cond
    [B, T, h, w, C]). Params are arguments, not constants, so XLA does not fold the networks at compile time."""
    levels = student.denoising_sigmas(config)
    k, c, p = levels.shape[0], config.model.frames_per_chunk, student.pixels_per_chunk(config)
    steps_per_level = max(1, config.teacher.ode_steps // k)

    @jax.jit
    def pairs(t_params, vae_params, cond, warp, c2w, intrinsics, rng):
        vae = (vae_params, vae_config)
        rays = camera_rays(config, c2w, intrinsics)
        first_latent = student.reference_latent(cond, vae_config)
        camera = {"rays": rays, "warp": warp}

        def denoise(x_t, t_frames, camera_):
            return student.apply_dit(t_params, config, x_t, t_frames,
                                     model_cond(cond, camera_["warp"]), camera_["rays"])

        noise = jax.random.normal(rng, first_latent.shape[:1] + cond.shape[1:4] + (config.model.out_dim,))
        states = ode_trajectory(denoise, noise, levels, steps_per_level, camera, jax.tree.map(jnp.zeros_like, camera),
                                config.teacher.guidance, first_latent)
        video = vae_lib.decode(vae_params, states[-1], vae_config)
        student_cond = [model_cond(cond, warp)[:, :1 + c]]
        for j in range(2, (c2w.shape[1] - 1) // p + 1):  # chunk j: the clip from the frame before it
            ref = video[:, (j - 1) * p:(j - 1) * p + 1]
            window = slice((j - 1) * p, j * p + 1)
            student_cond.append(student.chunk_conditions(vae, config, ref, c2w[:, window], intrinsics[:, window],
                                                         first=(video[:, :1], c2w[:, 0]))[0])  # decoded latent 0
        return states, jnp.concatenate(student_cond, axis=1)

    return pairs


def _encode(record: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **record)
    return buffer.getvalue()


def _decode(data: bytes) -> dict:
    with np.load(io.BytesIO(data)) as arrays:
        return dict(arrays)


def build_ode_pairs(config) -> str:
    """Write the ODE pairs once (progress bar) and return their ArrayRecord path."""
    from array_record.python.array_record_module import ArrayRecordWriter

    path = pairs_path(config)
    if os.path.isfile(path):
        return path
    cache = teacher.build_latent_cache(config)
    clips = {k: np.stack([cache[i][k] for i in range(len(cache))]) for k in ("cond", "warp", "c2w", "intrinsics")}
    vae_params, vae_config = load_vae(config.vae.checkpoint, config.vae.preset)
    t_params = teacher_params(config)
    pair_fn = make_pair_fn(config, vae_config)
    count = clips["c2w"].shape[0]
    writer = ArrayRecordWriter(path + ".tmp", "group_size:1")
    rng = jax.random.key(config.data.seed + 1)
    for start in tqdm(range(0, count, SAMPLE_BATCH), desc="ode_init: teacher ODE pairs", unit="batch"):
        rows = np.arange(start, min(start + SAMPLE_BATCH, count))
        padded = np.concatenate([rows, np.repeat(rows[:1], SAMPLE_BATCH - rows.size)])
        arrays = {k: jnp.asarray(clips[k][padded]) for k in ("cond", "warp", "c2w", "intrinsics")}
        states, cond = pair_fn(t_params, vae_params, arrays["cond"], arrays["warp"], arrays["c2w"], arrays["intrinsics"],
                               jax.random.fold_in(rng, start))
        states, cond = np.asarray(states), np.asarray(cond)
        for i, row in enumerate(rows):
            writer.write(_encode({"states": states[:, i], "cond": cond[i], "c2w": clips["c2w"][row],
                                  "intrinsics": clips["intrinsics"][row]}))
    writer.close()
    os.replace(path + ".tmp", path)
    return path


def read_ode_pairs(path: str) -> list[dict]:
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(path)
    try:
        return [_decode(r) for r in reader.read_all()]
    finally:
        reader.close()


def make_dataset(config, process_index, process_count):
    """Batches of ODE pairs, reshuffled each epoch by a seeded permutation."""
    records = read_ode_pairs(build_ode_pairs(config))
    arrays = {k: np.stack([r[k] for r in records]) for k in records[0]}

    def example(index: int) -> dict[str, np.ndarray]:
        return {k: v[shuffled_index(index, len(records), config.seed)] for k, v in arrays.items()}

    return indexed_batches(example, config.global_batch, process_index, process_count)


def loss_fn(params, batch, rng, config):
    """Per-chunk random level, one block-causal forward, MSE of x0 against the clean latent on noisy chunks."""
    states = batch["states"]  # [B, K + 1, T, h, w, z]
    b, k_plus_1, t = states.shape[:3]
    c = config.model.frames_per_chunk
    num_chunks = (t - 1) // c
    chunk_level = jax.random.randint(rng, (b, num_chunks), 0, k_plus_1 - 1)
    frame_level = jnp.concatenate([jnp.full((b, 1), k_plus_1 - 1), jnp.repeat(chunk_level, c, axis=1)], axis=1)
    x_t = jnp.take_along_axis(states, frame_level[:, None, :, None, None, None], axis=1)[:, 0]
    sigma = jnp.concatenate([student.denoising_sigmas(config), jnp.zeros((1,))])[frame_level]
    rays = student.sequence_rays(config, batch["c2w"], batch["intrinsics"])
    cond = batch["cond"]
    if student.reference_mode(config) == "none":  # the pairs keep every chunk's conditioning; this student sees latent 0's
        cond = cond.at[:, 1:].set(0.0)
    v = student.apply_dit(params, config, x_t, flow.sigma_to_timestep(sigma), cond, rays,
                          causal=student.causal_spec(config))
    x0 = flow.x0_from_velocity(x_t, v, sigma)
    clean = states[:, -1]
    err = jnp.square(x0[:, 1:] - clean[:, 1:]).reshape(b, t - 1, -1).mean(-1)
    loss = err.mean()
    return loss, {"x0_mse": loss, "mean_sigma": sigma[:, 1:].mean()}
