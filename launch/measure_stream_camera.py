"""What a chunk's camera input should be relative to in an endless stream (issue 17 item 5), measured.

  python launch/measure_stream_camera.py            # a 10,000-frame random key path

A random key path (geometry.actions.random_actions: every key, holds, combinations; no distance
limit) of 2,500 steps = 10,000 pixel frames wanders far from its start. For every 4-frame chunk it
compares the two choices of reference camera:
  * first: the stream's first frame (as the teacher's clips are, `relative_to_first`);
  * previous: the newest frame the stream already has (`conditioning.chunk_camera_input`).
Printed per choice and per part of the stream: the largest Plücker moment |o x d| (grows with the
distance from the reference) and the smallest forward component of the ray directions d_z (falls
below 0 once the reference looks elsewhere), beside the range that 9-frame training clips of the same
key statistics show; then the RMS of the committed tiny teacher's camera-encoder features (what the
rays add to the DiT tokens) and of its velocity output, for chunks near the start and near frame
10,000. Last, for the turn warp tied to the first frame, the share of each frame's pixels whose ray
leaves the first frame (painted black).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from worldscape_jax.geometry.actions import actions_to_c2w, random_actions
from worldscape_jax.geometry.cameras import relative_to_first
from worldscape_jax.geometry.plucker import plucker_rays
from worldscape_jax.geometry.reprojection import source_pixels
from worldscape_jax.models.camera_encoder import CameraEncoder
from worldscape_jax.models.conditioning import chunk_camera_input
from worldscape_jax.models.dit import DiTConfig, WanDiT
from worldscape_jax.inference.loading import load_exported, resolve_asset

_STEPS = flags.DEFINE_integer("steps", 2500, "latent steps of the random key path (4 pixel frames each)")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the key path")
_SIZE = 64
INTRINSICS = np.array([1.0, 1.0, 0.5, 0.5], np.float32)  # 53 degrees horizontal field of view


def ray_ranges(rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per chunk [N, frames, H, W, 6]: the largest |o x d| and the smallest d_z."""
    moment = np.linalg.norm(rays[..., :3], axis=-1).reshape(rays.shape[0], -1).max(-1)
    return moment, rays[..., 5].reshape(rays.shape[0], -1).min(-1)


def chunk_rays(c2w: np.ndarray, reference: str) -> np.ndarray:
    """[chunks, 4, H, W, 6] rays of every 4-frame chunk after frame 0, relative to `reference`."""
    chunks = (c2w.shape[0] - 1) // 4
    poses = c2w[1:].reshape(chunks, 4, 4, 4)
    if reference == "first":
        relative = np.asarray(relative_to_first(jnp.asarray(c2w)))[1:].reshape(chunks, 4, 4, 4)
    else:
        previous = c2w[np.arange(chunks) * 4]
        relative = np.linalg.inv(previous)[:, None] @ poses
    rays = jax.jit(plucker_rays, static_argnums=(2, 3))
    return np.concatenate([np.asarray(rays(jnp.asarray(relative[i:i + 250]), jnp.asarray(INTRINSICS), _SIZE, _SIZE))
                           for i in range(0, chunks, 250)])


def training_range(seed: int, clips: int = 50) -> tuple[float, float]:
    """The largest moment and smallest d_z over 9-frame clips (relative to their first frame) of the same keys."""
    moments, dz = [], []
    for i in range(clips):
        c2w = actions_to_c2w(random_actions(2, seed + 1000 + i))
        m, d = ray_ranges(chunk_rays(c2w, "first"))
        moments.append(m.max())
        dz.append(d.min())
    return float(np.max(moments)), float(np.min(dz))


def report_ranges(c2w: np.ndarray) -> dict[str, np.ndarray]:
    train_moment, train_dz = training_range(_SEED.value)
    print(f"training clips (9 frames, relative to their first): max |o x d| {train_moment:.3f}, min d_z {train_dz:.3f}")
    out = {}
    for reference in ("first", "previous"):
        rays = chunk_rays(c2w, reference)
        out[reference] = rays
        moment, dz = ray_ranges(rays)
        outside = (moment > train_moment * 1.001) | (dz < train_dz - 1e-3)
        for name, part in (("frames 1-400", slice(0, 100)), ("frames 4000-4400", slice(1000, 1100)),
                           ("frames 9600-10000", slice(-100, None))):
            print(f"  {reference:8s} {name:18s}: max |o x d| {moment[part].max():8.3f}, min d_z {dz[part].min():7.3f}, "
                  f"chunks outside the training range {outside[part].mean() * 100:5.1f}%")
    return out


def report_teacher_features(rays: dict[str, np.ndarray]) -> None:
    params, config = load_exported(resolve_asset("asset:teacher_tiny"))
    params = params.get("params", params)
    cfg = DiTConfig.from_config(config.model)
    encoder = CameraEncoder(cfg.dim, cfg.vae_stride[1], cfg.patch_size[1:], cfg.camera_res_blocks, cfg.dtype)
    encode = jax.jit(lambda packed: encoder.apply({"params": params["camera_encoder"]}, packed))
    model = WanDiT(cfg)
    latent = _SIZE // cfg.vae_stride[1]
    noise = jax.random.normal(jax.random.key(0), (1, 1, latent, latent, cfg.out_dim))
    cond = jnp.zeros((1, 1, latent, latent, cfg.in_dim - cfg.out_dim))
    text = jnp.zeros((1, cfg.text_len, cfg.text_dim))
    velocity = jax.jit(lambda camera: model.apply({"params": params}, noise, jnp.full((1, 1), 500.0), text, cond=cond,
                                                  camera=camera))
    for reference, r in rays.items():
        packed = r.reshape(r.shape[0], 4, _SIZE, _SIZE, 6).transpose(0, 2, 3, 4, 1).reshape(r.shape[0], 1, _SIZE, _SIZE, 24)
        for name, index in (("near the start", np.arange(0, 12)), ("near frame 10,000", np.arange(r.shape[0] - 12, r.shape[0]))):
            feats = np.stack([np.asarray(encode(jnp.asarray(packed[i:i + 1]))) for i in index])
            v = np.stack([np.asarray(velocity(jnp.asarray(packed[i:i + 1]))) for i in index])
            print(f"  teacher camera features, {reference:8s} {name:18s}: RMS {np.sqrt((feats ** 2).mean()):8.3f} "
                  f"(max {np.abs(feats).max():8.2f}); velocity RMS {np.sqrt((v ** 2).mean()):.3f}")


def report_turn_warp(c2w: np.ndarray) -> None:
    frames = c2w[None, ::4]  # every latent frame's first pixel frame is enough for the share
    _, in_front = source_pixels(jnp.asarray(frames), jnp.broadcast_to(INTRINSICS, (*frames.shape[:2], 4)), _SIZE, _SIZE)
    xy, _ = source_pixels(jnp.asarray(frames), jnp.broadcast_to(INTRINSICS, (*frames.shape[:2], 4)), _SIZE, _SIZE)
    xy = np.asarray(xy[0])
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= _SIZE) & (xy[..., 1] >= 0) & (xy[..., 1] <= _SIZE) & np.asarray(in_front[0])
    black = 1.0 - inside.reshape(inside.shape[0], -1).mean(-1)
    print(f"turn warp tied to the first frame: black share of a frame, median {np.median(black) * 100:.1f}%, "
          f"frames more than half black {np.mean(black > 0.5) * 100:.1f}% (over {black.size} latent frames)")


def main(argv):
    del argv
    c2w = actions_to_c2w(random_actions(_STEPS.value, _SEED.value, max_distance=np.inf))
    distance = np.linalg.norm(c2w[:, :3, 3] - c2w[0, :3, 3], axis=-1)
    print(f"random key path: {c2w.shape[0]} frames, distance from the start: median {np.median(distance):.2f}, "
          f"max {distance.max():.2f} units")
    rays = report_ranges(c2w)
    report_teacher_features(rays)
    report_turn_warp(c2w)


if __name__ == "__main__":
    app.run(main)
