"""Stage `vae`: train the causal VAE (models/vae.py) to reconstruct SynthWorld clips.

Loss = L1 + MSE between the clip and its reconstruction (pixels in [-1, 1]), plus
`config.loss.kl_weight` x KL(q(z|x) || N(0, I)) with z sampled from the posterior. The KL weight is
tiny (1e-6, the Stable-Diffusion / Wan practice): it keeps the latent scale bounded and the
posterior slightly noisy, so that neighbouring latents decode to similar frames, which the DiT needs,
while costing almost nothing in PSNR. Set it to 0 for a plain autoencoder (z = mu, no sampling).
`config.loss.freeze_encoder` trains the decoder alone (started from an export with `config.init_from`),
so that a better decoder can replace the committed one without changing the latents that the teacher
was trained on.

Data: clips from `config.data.source` (`clip_source`: by default the first `config.data.num_clips`
SynthWorld train scenes, F = 1 + 4k frames at height x width, rendered on the fly and kept in memory;
or SynthWorld's ArrayRecord export, RealEstate10K or EgoDex folders) pass through the Grain pipeline
(data/pipeline.py), shuffled by `config.seed` and reshuffled every epoch; `config.data.crop` > 0 trains
on random crop x crop windows of them (evaluation uses whole frames). The trainer checkpoints the
pipeline's iterator, so a resumed run continues with the next batch.
`sample` shows held-out clips with their reconstruction beside them; `heldout_psnr` is the figure to
report, and `latent_statistics` gives the per-channel mean/std that go into the export as
`vae_stats` (read by the teacher stage).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from worldscape_jax.data import pipeline, sources
from worldscape_jax.data.synthworld import generate_clip, split_seeds
from worldscape_jax.inference.pixels import to_uint8
from worldscape_jax.models.vae import WanVAE, check_video
from worldscape_jax.models.vae_config import VAEConfig, vae_config
from worldscape_jax.models.vae_layers import space_time_to_depth
from worldscape_jax.training.data_iter import local_batch_size


def to_signed(video_uint8):
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return jnp.asarray(video_uint8, jnp.float32) / 127.5 - 1.0


def init_params(rng, config):
    """Boxed VAE params. The 'rbg' PRNG is seeded from `rng`: its initialisers compile in seconds on a CPU.

    With the patch shortcut and `config.shortcut_init == "pca"`, the model starts as the best linear
    autoencoder of the training clips' frame groups (`pca_shortcut`), not from noise.
    """
    d = config.data
    seed = jax.random.bits(rng, (), jnp.uint32)
    video = jnp.zeros((1, d.frames, d.height, d.width, 3), jnp.float32)
    vae_cfg = vae_config(config)
    params = WanVAE(vae_cfg).init(jax.random.key(seed, impl="rbg"), video)["params"]
    init = config.shortcut_init
    if init not in ("random", "pca"):
        raise ValueError(f"config.shortcut_init={init!r}: expected 'random' or 'pca'")
    if vae_cfg.patch_shortcut and init == "pca":
        with jax.ensure_compile_time_eval():  # init_params is traced; the clips and the PCA are concrete
            videos = train_videos(config, PCA_CLIPS)
            params = pca_shortcut(params, vae_cfg, videos)
    return params


PCA_CLIPS = 64  # train clips whose frame groups fit the PCA
PCA_LOG_VAR = -10.0  # initial posterior log-variance: sampling noise (std 0.007) far below the latent scale


def frame_group_blocks(videos_uint8: np.ndarray, temporal: int, spatial: int) -> np.ndarray:
    """Every t x s x s block of the clips' frame groups [1, t, t, ...] (frame 0 padded in front with zeros),
    flattened as the shortcut sees them (`space_time_to_depth`): [N, t * s * s * 3]."""
    x = videos_uint8.astype(np.float32) / 127.5 - 1.0
    x = np.concatenate([np.zeros((x.shape[0], temporal - 1, *x.shape[2:]), np.float32), x], axis=1)
    blocks = np.asarray(space_time_to_depth(x, temporal, spatial))
    return blocks.reshape(-1, blocks.shape[-1])


def pca_shortcut(params, vae_cfg: VAEConfig, videos_uint8: np.ndarray):
    """Params whose end-to-end map is the PCA autoencoder of the clips' pixel blocks (z_dim components).

    The shortcut encoder projects each block on the top principal directions and the shortcut decoder
    maps back (mean included); both deep heads are zeroed, so the deep paths start as exact no-ops and
    learn the non-linear remainder. On SynthWorld this starts near 30 dB where random init starts at 8.
    """
    blocks = frame_group_blocks(videos_uint8, vae_cfg.temporal_factor, vae_cfg.spatial_factor)
    mean = blocks.mean(0)
    _, _, directions = np.linalg.svd(blocks - mean, full_matrices=False)
    basis = directions[:vae_cfg.z_dim]  # [z, block]
    z = vae_cfg.z_dim
    enc_kernel = np.zeros((basis.shape[1], 2 * z), np.float32)
    enc_kernel[:, :z] = basis.T
    enc_bias = np.concatenate([-mean @ basis.T, np.full(z, PCA_LOG_VAR)]).astype(np.float32)
    values = {
        ("patch_encoder", "proj", "kernel"): enc_kernel, ("patch_encoder", "proj", "bias"): enc_bias,
        ("patch_decoder", "proj", "kernel"): basis.astype(np.float32),
        ("patch_decoder", "proj", "bias"): mean.astype(np.float32),
    }
    for part in ("encoder", "decoder"):
        for leaf in ("kernel", "bias"):
            shape = nn.meta.unbox(params[part]["head_conv"][leaf]).shape
            values[(part, "head_conv", leaf)] = np.zeros(shape, np.float32)
    return _replace_leaves(params, values)


def _replace_leaves(params, values: dict):
    """`params` with the leaves at the given key paths replaced (boxes, and so logical axis names, kept)."""
    def replace(path, leaf):
        key = tuple(k.key for k in path)
        if key not in values:
            return leaf
        new = jnp.asarray(values.pop(key))
        return leaf.replace_boxed(new) if isinstance(leaf, nn.meta.AxisMetadata) else new

    out = jax.tree_util.tree_map_with_path(replace, params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))
    if values:
        raise ValueError(f"pca_shortcut: params lack {sorted(values)}")
    return out


def loss_fn(params, batch, rng, config):
    """L1 + MSE reconstruction, plus the weighted KL of the posterior when kl_weight > 0."""
    model = WanVAE(vae_config(config))
    video = batch["video"]  # float32 in [-1, 1] (the pipeline's layout)
    mu, log_var, _ = model.apply({"params": params}, video, method=WanVAE.encode_moments)
    if config.loss.freeze_encoder:
        if config.optim.weight_decay:
            raise ValueError(f"config.loss.freeze_encoder needs config.optim.weight_decay = 0 (got "
                             f"{config.optim.weight_decay}): decay would still shrink the frozen encoder")
        # No gradient reaches the encoder, so its params stay exactly as loaded (weight decay is 0 and
        # Adam's update of an all-zero gradient is 0): the latent space, and any DiT trained in it, stay valid.
        mu, log_var = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(log_var)
    kl_weight = config.loss.kl_weight
    if kl_weight > 0:
        log_var = jnp.clip(log_var, -30.0, 20.0)
        z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mu.shape, mu.dtype)
        kl = 0.5 * jnp.mean(jnp.sum(mu ** 2 + jnp.exp(log_var) - 1.0 - log_var, axis=-1))
    else:
        z, kl = mu, jnp.zeros((), mu.dtype)
    recon, _ = model.apply({"params": params}, z, method=WanVAE.decode_latents)
    l1 = jnp.mean(jnp.abs(recon - video))
    mse = jnp.mean((recon - video) ** 2)
    loss = l1 + mse + kl_weight * kl
    psnr = 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))  # peak-to-peak 2 in [-1, 1]
    return loss, {"l1": l1, "mse": mse, "kl": kl, "psnr": psnr}


@functools.lru_cache(maxsize=2)
def _clips(split: str, count: int, frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [count, F, H, W, 3] SynthWorld clips of `split`, rendered once per process."""
    seeds = split_seeds(split, count)
    videos = [generate_clip(s, frames, height, width, traj_seed=s)["video"]  # traj_seed varies the path family
              for s in tqdm(seeds, desc=f"SynthWorld {split} clips")]
    return np.stack(videos)


def clip_source(config):
    """The training clips named by `config.data.source`: SynthWorld's first `num_clips` train scenes
    (each on its own camera path, `traj_seed` = its scene seed), rendered on the fly and kept in memory
    once rendered (every epoch reads them again), or the first `num_clips` clips (0: all) of a dataset on
    disk (`sources.file_source`)."""
    d = config.data
    source = sources.from_config(d, lambda: _synthworld_train(d.num_clips, d.frames, d.height, d.width))
    return source if d.source == "synthworld" else sources.first_clips(source, d.num_clips, "config.data.num_clips")


@functools.lru_cache(maxsize=2)
def _synthworld_train(count: int, frames: int, height: int, width: int) -> sources.MemoizedSource:
    """One source per process and shape, so that init (PCA) and the batches share the rendered clips."""
    seeds = split_seeds("train", count)
    return sources.MemoizedSource(sources.SynthWorldSource(seeds, frames, height, width, traj_seeds=seeds))


def train_videos(config, count: int) -> np.ndarray:
    """uint8 [count, F, H, W, 3]: the first `count` training clips (fewer if the source has fewer) as the
    pipeline makes them, whole frames from the first: what the PCA init and the latent statistics read."""
    d = config.data
    examples = pipeline.make_examples(clip_source(config), pipeline.PipelineConfig(
        batch_size=1, num_frames=d.frames, height=d.height, width=d.width, frame_stride=d.frame_stride,
        random_start=False, shuffle=False, num_epochs=1, process_index=0, process_count=1))
    return np.stack([to_uint8(examples[i]["video"]) for i in range(min(count, len(examples)))])


def make_dataset(config, process_index, process_count):
    """This process's share of each batch {'video': float32 [B, F, H, W, 3] in [-1, 1], c2w, intrinsics}
    through the Grain pipeline (data/pipeline.py): clips shuffled by `config.seed` and reshuffled every
    epoch, whole frames resized to cover height x width (a no-op for SynthWorld, rendered at that size),
    then a random crop x crop window when `config.data.crop` > 0. The iterator is saved with every checkpoint."""
    d = config.data
    crop = int(d.crop)
    if crop and not 0 < crop <= min(d.height, d.width):
        raise ValueError(f"config.data.crop={crop}: must be 0 (whole frames) or at most "
                         f"min(height, width) = {min(d.height, d.width)}")
    check_video(np.zeros((1, d.frames, crop or d.height, crop or d.width, 3)), vae_config(config),
                where="config.data")
    pipe = pipeline.PipelineConfig(
        batch_size=local_batch_size(config.global_batch, process_count), num_frames=d.frames, height=d.height,
        width=d.width, frame_stride=d.frame_stride, random_crop=True, seed=config.seed,
        process_index=process_index, process_count=process_count)
    examples = pipeline.make_examples(clip_source(config), pipe)
    if crop:
        examples = examples.random_map(RandomWindow(crop), seed=config.seed)
    return pipeline.batch_iterator(examples, pipe)


class RandomWindow(grain.transforms.RandomMap):
    """A pipeline step: the example's video cut to a size x size window (`random_crop`) at a random offset."""

    def __init__(self, size: int):
        self.size = size

    def random_map(self, example: dict, rng: np.random.Generator) -> dict:
        return {**example, "video": random_crop(example["video"], self.size, rng)}


def random_crop(video: np.ndarray, size: int, seed) -> np.ndarray:
    """A size x size window of every frame of `video` [F, H, W, C], at an offset drawn from `seed` (a
    seed or a numpy Generator).

    Training on crops costs (size / H)^2 of a whole-frame step; the VAE is convolutional, and its
    only attention (the middle block) has no positional terms, so it runs on whole frames afterwards."""
    rng = np.random.default_rng(seed)
    top = int(rng.integers(0, video.shape[1] - size + 1))
    left = int(rng.integers(0, video.shape[2] - size + 1))
    return video[:, top:top + size, left:left + size]


@functools.partial(jax.jit, static_argnames="vae_cfg")
def _reconstruct(params, video, vae_cfg: VAEConfig):
    model = WanVAE(vae_cfg)
    mu, _, _ = model.apply({"params": params}, video, method=WanVAE.encode_moments)
    return jnp.clip(model.apply({"params": params}, mu, method=WanVAE.decode_latents)[0], -1.0, 1.0)


def heldout_psnr(params, config, count: int | None = None) -> float:
    """Mean PSNR (dB) of the posterior-mean reconstruction over held-out clips (images in [0, 1] terms)."""
    d = config.data
    videos = _clips("heldout", count or d.heldout_clips, d.frames, d.height, d.width)
    psnrs = []
    for video in videos:
        x = to_signed(video[None])
        mse = float(jnp.mean((_reconstruct(params, x, vae_config(config)) - x) ** 2))
        psnrs.append(10.0 * np.log10(4.0 / max(mse, 1e-10)))
    return float(np.mean(psnrs))


def latent_statistics(params, config, count: int = 16) -> dict[str, list[float]]:
    """Per-channel mean and std of the raw posterior mean over train clips: the export's `vae_stats`."""
    d = config.data
    model = WanVAE(vae_config(config))
    encode = jax.jit(lambda x: model.apply({"params": params}, x, method=WanVAE.encode_moments)[0])
    mus = np.concatenate([np.asarray(encode(to_signed(v[None]))).reshape(-1, model.config.z_dim)
                          for v in train_videos(config, count)])
    return {"mean": mus.mean(0).tolist(), "std": mus.std(0).tolist()}


def sample(params, rng, config):
    """Held-out clips (left) beside their reconstructions (right), uint8 [N, F, H, 2W, 3]."""
    del rng
    d = config.data
    videos = _clips("heldout", config.sample.count, d.frames, d.height, d.width)
    recon = np.asarray(_reconstruct(params, to_signed(videos), vae_config(config)))
    recon = np.clip(np.round((recon + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.concatenate([videos, recon], axis=3)


def export_metadata(params, config) -> dict:
    """Written into the export's config: the latent statistics (so `encode` normalises latents to
    ~N(0, 1), the space the DiT works in) and the held-out reconstruction PSNR."""
    return {"vae_stats": latent_statistics(params, config), "heldout_psnr": heldout_psnr(params, config)}
