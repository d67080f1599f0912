"""Stage 1: the camera-controlled image-to-video teacher (paper §2.1, §2.5).

The bidirectional DiT learns the flow-matching velocity of a clip's latents given
  * the control video [first frame, pose frames] and the first-frame latent on channels (48-channel
    Fun-Control layout; `models/conditioning.py`), and
  * the camera path as Plücker rays through the camera encoder.
Conditions are dropped at random (image: zeroed channels; camera: zeroed rays) so that sampling can
use classifier-free guidance on the camera (`inference/teacher.generate`, which this stage's training
samples call; the DiT is fed through the same helpers there). With `config.flow.clean_first_latent` the
first latent frame is also given as itself, clean at timestep 0 and left out of the loss (as
Wan2.2's TI2V and the causal students do), and sampling holds it fixed.

At `tiny` the data are SynthWorld clips of the train split, encoded once by the committed tiny VAE
into a latent cache on disk (`config.data.cache_dir`); batches index that cache. The batch holds
latents [B, T, h, w, 16], cond [B, T, h, w, 32], c2w [B, F, 4, 4] (world) and intrinsics [B, F, 4],
and with the DiT's `camera.turn_warp` also warp [B, T, h, w, 16] (`conditioning.encode_turn_warp`):
input channels that carry the camera, so they are dropped with it and guided with it.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from worldscape_jax.data import synthworld
from worldscape_jax.data.synthworld import generate_clip, split_of
from worldscape_jax.data.synthworld.clips import FAMILIES, NAVIGATION_FAMILIES
from worldscape_jax.diffusion import flow
from worldscape_jax.inference.heldout import heldout_clips
from worldscape_jax.inference.loading import load_vae
from worldscape_jax.inference.pixels import to_uint8, to_unit_range
from worldscape_jax.inference.teacher import (camera_rays, clip_tokens, generate, latent_shape, model_cond,
                                              teacher_model, text_context, uses_turn_warp)
from worldscape_jax.models import vae as vae_lib
from worldscape_jax.models.conditioning import encode_conditions, encode_turn_warp
from worldscape_jax.training.data_iter import indexed_batches, shuffled_index


def init_params(rng, config):
    t, h, w = latent_shape(config)
    m = config.model
    x = jnp.zeros((1, t, h, w, m.out_dim))
    cond = jnp.zeros((1, t, h, w, m.in_dim - m.out_dim))
    c2w = jnp.broadcast_to(jnp.eye(4), (1, config.data.frames, 4, 4))
    intrinsics = jnp.full((1, config.data.frames, 4), 0.5)
    return teacher_model(config).init(rng, x, jnp.zeros((1, t)), text_context(config, 1), cond=cond,
                                      camera=camera_rays(config, c2w, intrinsics), clip=clip_tokens(config, 1))["params"]


def loss_fn(params, batch, rng, config):
    """Flow matching with random condition dropout (per sample)."""
    x0 = batch["latents"]
    b, t = x0.shape[:2]
    k_sigma, k_eps, k_image, k_camera = jax.random.split(rng, 4)
    f, c = config.flow, config.cond
    sigma = flow.sample_sigmas(k_sigma, b, t, flow.TimestepSampling(f.distribution, f.shift, f.per_frame,
                                                                     f.logit_mean, f.logit_std))
    frame_weight = None
    if f.get("clean_first_latent", False):
        sigma = sigma.at[:, 0].set(0.0)  # the given frame: clean, timestep 0, and not scored
        frame_weight = jnp.ones((b, t), jnp.float32).at[:, 0].set(0.0)
    eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
    keep_image = (jax.random.uniform(k_image, (b, 1, 1, 1, 1)) >= c.drop_image).astype(x0.dtype)
    keep_camera = (jax.random.uniform(k_camera, (b, 1, 1, 1, 1)) >= c.drop_camera).astype(x0.dtype)
    camera = camera_rays(config, batch["c2w"], batch["intrinsics"]) * keep_camera
    warp = batch["warp"] * keep_camera * keep_image if uses_turn_warp(config) else None
    v = teacher_model(config).apply({"params": params}, flow.add_noise(x0, eps, sigma),
                                    flow.sigma_to_timestep(sigma), text_context(config, b),
                                    cond=model_cond(batch["cond"] * keep_image, warp), camera=camera,
                                    clip=clip_tokens(config, b, batch))
    loss = flow.flow_matching_loss(v, x0, eps, frame_weight)
    return loss, {"fm_loss": loss, "mean_sigma": sigma[:, -1].mean()}


def sample(params, rng, config):
    """Generated next to ground truth for held-out clips, uint8 [2N, F, H, W, 3]."""
    clips = heldout_clips(config, config.sample.count)
    gt = np.stack([c["video"] for c in clips])
    vae = load_vae(config.vae.checkpoint, config.vae.preset)
    video = generate(params, config, vae, to_unit_range(gt[:, :1]), jnp.asarray(np.stack([c["c2w"] for c in clips])),
                     jnp.asarray(np.stack([c["intrinsics"] for c in clips])), rng)
    return np.concatenate([to_uint8(video), gt], axis=0)


def _cache_path(config, vae) -> str:
    d = config.data
    contents = {"data": d.to_dict(), "vae": config.vae.to_dict(), "vae_params": _vae_digest(vae),
                "render_version": synthworld.RENDER_VERSION, "paths_version": synthworld.PATHS_VERSION}
    if uses_turn_warp(config):  # only then, so that the caches without it keep their names
        contents["turn_warp"] = True
    key = json.dumps(contents, sort_keys=True, default=str)
    return os.path.join(d.cache_dir, f"teacher_latents_{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz")


def _vae_digest(vae) -> str:
    """SHA-1 of what the cached latents depend on: the VAE's shape and latent statistics and its encoding
    params (`encoder`, `quant_conv`, and `patch_encoder` where the VAE has one). A retrained VAE at the
    same path gets a new cache; a decoder-only fine-tune (the VAE stage's `config.loss.freeze_encoder`)
    keeps the old one, which is still exact."""
    params, vae_config = vae
    digest = hashlib.sha1(repr(vae_config).encode())
    for name in (n for n in ENCODING_PARAMS if n in params):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params[name])[0]:
            digest.update(jax.tree_util.keystr(path).encode())
            digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()


ENCODING_PARAMS = ("encoder", "quant_conv", "patch_encoder")  # the VAE params that `vae.encode` reads


ENCODE_BATCH = 16  # clips per VAE call while building the cache (one compiled shape)


def _padded(array: np.ndarray, batch: int) -> np.ndarray:
    """`array` [n <= batch, ...] padded with copies of its first clip to `batch` clips, so every call has
    one shape (copies, not zeros: a zero pose has no inverse)."""
    return np.concatenate([array, np.repeat(array[:1], batch - array.shape[0], axis=0)])


def training_families(config) -> tuple[str, ...]:
    """`config.data.families`, checked: camera-path families of SynthWorld that the teacher trains on."""
    families = tuple(config.data.get("families", NAVIGATION_FAMILIES))
    unknown = [name for name in families if name not in FAMILIES]
    if not families or unknown:
        raise ValueError(f"config.data.families must be a non-empty list of SynthWorld families {FAMILIES}; "
                         f"got {list(families)} (unknown: {unknown})")
    return families


def build_latent_cache(config) -> dict[str, np.ndarray]:
    """Render `config.data.num_clips` train-split clips and encode them with the VAE (cached on disk)."""
    families = training_families(config)
    vae_params, vae_config = vae = load_vae(config.vae.checkpoint, config.vae.preset)
    path = _cache_path(config, vae)
    if os.path.isfile(path):
        with np.load(path) as data:
            return dict(data)
    d = config.data
    with_warp = uses_turn_warp(config)

    @jax.jit
    def encode(video, c2w, intrinsics):
        encoded = {"latents": vae_lib.encode(vae_params, video, vae_config),
                   "cond": encode_conditions(vae_params, vae_config, video)}
        if with_warp:
            encoded["warp"] = encode_turn_warp(vae_params, vae_config, video[:, :1], c2w, intrinsics)
        return encoded

    out = {k: [] for k in ("latents", "cond", "c2w", "intrinsics", *(("warp",) if with_warp else ()))}
    seeds = [s for s in range(d.seed, d.seed + 4 * d.num_clips) if split_of(s) == "train"][: d.num_clips]
    batch, pending = min(ENCODE_BATCH, len(seeds)), []
    for i, seed in enumerate(tqdm(seeds, desc="teacher: render + encode SynthWorld", unit="clip")):
        traj_seed = d.seed * 7919 + i
        clip = generate_clip(seed, d.frames, d.height, d.width, trajectory=families[traj_seed % len(families)],
                             traj_seed=traj_seed)
        out["c2w"].append(clip["c2w"])
        out["intrinsics"].append(clip["intrinsics"])
        pending.append(clip)
        if len(pending) == batch or i == len(seeds) - 1:
            video, c2w, intrinsics = (_padded(np.stack([c[k] for c in pending]), batch)
                                      for k in ("video", "c2w", "intrinsics"))
            encoded = encode(to_unit_range(video), c2w, intrinsics)
            for name, value in encoded.items():
                out[name].extend(np.asarray(value)[:len(pending)])
            pending = []
    arrays = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
    os.makedirs(d.cache_dir, exist_ok=True)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    return arrays


def make_dataset(config, process_index, process_count):
    """Batches of cached clips, reshuffled each epoch by a seeded permutation."""
    arrays = build_latent_cache(config)
    count = arrays["latents"].shape[0]

    def example(index: int) -> dict[str, np.ndarray]:
        clip = shuffled_index(index, count, config.seed)
        return {k: v[clip] for k, v in arrays.items()}

    return indexed_batches(example, config.global_batch, process_index, process_count)
