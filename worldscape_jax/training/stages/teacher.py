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

Data: clips from `config.data.source` (SynthWorld's train split rendered on the fly, its ArrayRecord
export, RealEstate10K or EgoDex folders; `clip_source`) pass through the Grain pipeline
(data/pipeline.py), are encoded once by the VAE into a resumable ArrayRecord latent cache
(data/latent_cache.py, at `latent_cache_dir`), and batches index that cache. The batch holds
latents [B, T, h, w, 16], cond [B, T, h, w, 32], c2w [B, F, 4, 4] (relative to each clip's first
frame) and intrinsics [B, F, 4],
and with the DiT's `camera.turn_warp` also warp [B, T, h, w, 16] (`conditioning.encode_turn_warp`):
input channels that carry the camera, so they are dropped with it and guided with it.
"""

from __future__ import annotations

import hashlib
import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax.data import latent_cache, pipeline, sources, synthworld
from worldscape_jax.data.synthworld import split_of
from worldscape_jax.data.synthworld.clips import FAMILIES
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
    if f.clean_first_latent:
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


def latent_cache_dir(config, vae) -> str:
    """Where the latent cache of `config` lives: `config.data.cache_dir` (or the user cache directory,
    `$XDG_CACHE_HOME/worldscape_jax`, when empty) / teacher_latents_<key>. The key hashes what the
    latents depend on (`cache_key_inputs`), so runs that share data and VAE share one cache."""
    key = json.dumps(cache_key_inputs(config, vae), sort_keys=True, default=str)
    root = config.data.cache_dir or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                                                 "worldscape_jax")
    return os.path.join(os.path.abspath(root), f"teacher_latents_{hashlib.sha1(key.encode()).hexdigest()[:12]}")


def cache_key_inputs(config, vae) -> dict:
    """The data fields that decide which clips are encoded, the VAE (name and a digest of its encoding
    params), SynthWorld's render and path versions, and whether the turn warp is cached. Not the cache's
    location, and nothing that only changes how batches are drawn from it."""
    d = config.data
    data = {k: d[k] for k in ("source", "frames", "height", "width", "num_clips", "seed")}
    if d.source == "synthworld":
        data["families"] = list(training_families(config))
    else:
        data.update(path=os.path.abspath(d.path), pose_dir=os.path.abspath(d.pose_dir or d.path),
                    frame_stride=d.frame_stride)
    contents = {"data": data, "vae": config.vae.to_dict(), "vae_params": _vae_digest(vae),
                "render_version": synthworld.RENDER_VERSION, "paths_version": synthworld.PATHS_VERSION}
    if uses_turn_warp(config):
        contents["turn_warp"] = True
    return contents


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
CLIPS_PER_SHARD = 256  # a stopped cache build loses at most this many clips of work


def _padded(array: np.ndarray, batch: int) -> np.ndarray:
    """`array` [n <= batch, ...] padded with copies of its first clip to `batch` clips, so every call has
    one shape (copies, not zeros: a zero pose has no inverse)."""
    return np.concatenate([array, np.repeat(array[:1], batch - array.shape[0], axis=0)])


def training_families(config) -> tuple[str, ...]:
    """`config.data.families`, checked: camera-path families of SynthWorld that the teacher trains on."""
    families = tuple(config.data.families)
    unknown = [name for name in families if name not in FAMILIES]
    if not families or unknown:
        raise ValueError(f"config.data.families must be a non-empty list of SynthWorld families {FAMILIES}; "
                         f"got {list(families)} (unknown: {unknown})")
    return families


def clip_source(config):
    """The raw clips (uint8 video, c2w, intrinsics) named by `config.data.source`: SynthWorld rendered on
    the fly (train split, `config.data.families`), its ArrayRecord export (launch/make_synthworld.py),
    RealEstate10K (`<clip>.txt` poses in `pose_dir`, default `path`, frames in `path/<clip>/` or
    `path/<clip>.mp4`) or EgoDex (`path/<task>/<idx>.hdf5 + .mp4`)."""
    d = config.data

    def synthworld():
        seeds = [s for s in range(d.seed, d.seed + 4 * d.num_clips) if split_of(s) == "train"][: d.num_clips]
        return sources.SynthWorldSource(seeds, d.frames, d.height, d.width, families=training_families(config),
                                        traj_seeds=[d.seed * 7919 + i for i in range(len(seeds))])

    return sources.from_config(d, synthworld)


def _clip_count(config, source) -> int:
    """`config.data.num_clips` of the source's clips (0: all of them)."""
    wanted = config.data.num_clips
    if wanted > len(source) or wanted < 0:
        raise ValueError(f"config.data.num_clips={wanted}: {pipeline.source_name(source)} has {len(source)} clips "
                         "(0 takes them all)")
    return wanted or len(source)


def _examples(config, source):
    """The pipeline's fixed-shape examples of `source` in order, every frame from the start (no random
    crop or start, so a cached clip is the same clip on every process and every rebuild)."""
    d = config.data
    return pipeline.make_examples(source, pipeline.PipelineConfig(
        batch_size=ENCODE_BATCH, num_frames=d.frames, height=d.height, width=d.width, frame_stride=d.frame_stride,
        random_start=False, random_crop=False, seed=d.seed, shuffle=False, num_epochs=1,
        process_index=0, process_count=1))


def _encoder(config, vae, batch_size: int):
    """jitted (video, c2w, intrinsics) -> latents, cond and (with the turn warp) warp, `batch_size` clips a call."""
    vae_params, vae_config = vae
    with_warp = uses_turn_warp(config)

    @jax.jit
    def encode(video, c2w, intrinsics):
        encoded = {"latents": vae_lib.encode(vae_params, video, vae_config),
                   "cond": encode_conditions(vae_params, vae_config, video)}
        if with_warp:
            encoded["warp"] = encode_turn_warp(vae_params, vae_config, video[:, :1], c2w, intrinsics)
        return encoded

    def encode_batch(batch: dict) -> dict:
        count = batch["video"].shape[0]
        padded = {k: _padded(batch[k], batch_size) for k in ("video", "c2w", "intrinsics")}
        encoded = {k: np.asarray(v, np.float32)[:count] for k, v in encode(**padded).items()}
        return {**encoded, "c2w": batch["c2w"], "intrinsics": batch["intrinsics"]}

    return encode_batch


def build_latent_cache(config) -> latent_cache.CacheSource:
    """The training clips encoded by the VAE, in ArrayRecord shards under `latent_cache_dir(config)`;
    built once, resumed shard by shard if a build was stopped, and then read by every run that shares it."""
    source = clip_source(config)
    count = _clip_count(config, source)
    vae = load_vae(config.vae.checkpoint, config.vae.preset)
    directory = latent_cache_dir(config, vae)
    if not latent_cache.is_complete(directory, count, CLIPS_PER_SHARD):
        examples = _examples(config, source)
        print(f"teacher: latent cache {directory} ({count} clips of {pipeline.source_name(source)}; "
              "a stopped build resumes where it stopped)")

        batch_size = min(ENCODE_BATCH, count)

        def batches(start: int, stop: int):
            batched = examples[start:stop].batch(batch_size, drop_remainder=False)
            return iter(batched.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)))

        latent_cache.build_cache(directory, count, CLIPS_PER_SHARD, batches, _encoder(config, vae, batch_size),
                                 description="teacher: encode clips")
    return latent_cache.CacheSource(directory, count, CLIPS_PER_SHARD)


def make_dataset(config, process_index, process_count):
    """Batches of cached clips, reshuffled each epoch by a seeded permutation (a Grain iterator, saved
    with every checkpoint)."""
    cache = build_latent_cache(config)

    def example(index: int) -> dict[str, np.ndarray]:
        return cache[shuffled_index(index, len(cache), config.seed)]

    return indexed_batches(example, config.global_batch, process_index, process_count)


def batch_spec(config, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """The shapes of a batch of cached clips (what `make_dataset` yields) at `config.data`'s size."""
    t, h, w = latent_shape(config)
    m, frames = config.model, config.data.frames
    spec = {
        "latents": jax.ShapeDtypeStruct((batch_size, t, h, w, m.out_dim), jnp.float32),
        "cond": jax.ShapeDtypeStruct((batch_size, t, h, w, 2 * m.out_dim), jnp.float32),
        "c2w": jax.ShapeDtypeStruct((batch_size, frames, 4, 4), jnp.float32),
        "intrinsics": jax.ShapeDtypeStruct((batch_size, frames, 4), jnp.float32),
    }
    if uses_turn_warp(config):
        spec["warp"] = jax.ShapeDtypeStruct((batch_size, t, h, w, m.out_dim), jnp.float32)
    if m.image_branch:
        spec["clip"] = jax.ShapeDtypeStruct((batch_size, m.clip_tokens, m.clip_dim), jnp.float32)
    return spec


def synthetic_batches(config, process_index, process_count):
    """One random batch of `batch_spec`'s shapes, repeated forever: for timing the train step without
    rendering and encoding clips (launch/bench_train.py --synthetic_data). Cameras stand still (identity
    poses, centred unit-focal intrinsics); latents and conditions are standard normal."""
    del process_index
    local = config.global_batch // process_count
    rng = np.random.default_rng(config.seed)
    batch = {}
    for name, s in batch_spec(config, local).items():
        if name == "c2w":
            batch[name] = np.broadcast_to(np.eye(4, dtype=np.float32), s.shape).copy()
        elif name == "intrinsics":
            batch[name] = np.broadcast_to(np.asarray([1.0, 1.0, 0.5, 0.5], np.float32), s.shape).copy()
        else:
            batch[name] = rng.standard_normal(s.shape, np.float32)
    while True:
        yield batch
