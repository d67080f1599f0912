"""Revisit paths on SynthWorld, a cache policy replayed along them, and how much of each view its context saw.

Before a trained student exists, a cache policy can still be judged on ground truth: render a held-out
scene along a path that leaves places and returns (`REVISIT_FAMILIES`), take each chunk's keys from a
real DiT pass over the clip's clean latents (`chunk_keys`), replay the policy's updates and contexts
along the path (`replay`), and measure for every chunk the fraction of its view's surface that some
frame in its attention context has seen (`context_coverage`, from SynthWorld's exact depth and poses).
That fraction bounds what memory can give the generator: content no context frame saw must be invented.

Chunks are one latent frame (tiny): chunk i is pixel frames 4i-3 .. 4i, represented by frame 4i (its
camera is the chunk's pose).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from worldscape_jax.data.synthworld import clips, scenes
from worldscape_jax.data.synthworld.render import render_frames
from worldscape_jax.geometry import trajectories
from worldscape_jax.geometry.cameras import intrinsics_from_fov, intrinsics_matrix
from worldscape_jax.streaming import maco
from worldscape_jax.streaming.policy import CacheLayout

REVISIT_FAMILIES = ("reversed_orbit", "there_and_back", "loop", "turn360")
PIXELS_PER_CHUNK = 4


def heldout_seed(index: int) -> int:
    """The scene seed of held-out SynthWorld scene number `index`."""
    seeds = [s for s in range(100 * (index + 1)) if clips.split_of(s) == "heldout"]
    return seeds[index]


def revisit_path(family: str, chunks: int, seed: int, orbit_degrees: float = 180.0) -> np.ndarray:
    """c2w [1 + 4 (chunks - 1), 4, 4] of a path that returns to where it was, from the scene's start pose.

    reversed_orbit: an arc around the start point, then back along it; there_and_back: SynthWorld's
    family (walk and turn out, the same poses back); loop: a random tour through waypoints that returns
    to earlier ones; turn360: a full turn in place, ending at the first view.
    """
    if family not in REVISIT_FAMILIES:
        raise ValueError(f"revisit path: family {family!r} is unknown; expected one of {REVISIT_FAMILIES}")
    if chunks < 4:
        raise ValueError(f"revisit path: chunks must be >= 4, got {chunks}")
    frames = 1 + PIXELS_PER_CHUNK * (chunks - 1)
    start = clips.start_pose(seed)
    if family == "reversed_orbit":
        angle = np.rad2deg(np.arctan2(start[0, 2], start[2, 2]))
        outbound = trajectories.orbit((frames + 1) // 2, center=start[:3, 3], radius=0.6 * clips.FREE_RADIUS,
                                      degrees=orbit_degrees, start_angle_deg=float(angle))
        return trajectories.there_and_back(outbound, frames)
    if family == "there_and_back":
        return clips.family_path("there_and_back", frames, seed, start)
    if family == "loop":
        return trajectories.random_walk(frames, seed, radius=0.75 * (clips.FREE_RADIUS - 0.25), start_c2w=start)
    return trajectories.pan(frames, degrees_per_frame=360.0 / (frames - 1), start_c2w=start)


def render_clip(seed: int, c2w: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """The navigation scene of `seed` rendered along c2w: SynthWorld's clip arrays (video, depth, ...)."""
    intrinsics = np.tile(intrinsics_from_fov(clips.FOV_X_DEG, height, width), (len(c2w), 1))
    rendered = render_frames(scenes.navigation_scene(seed, clips.FREE_RADIUS), c2w, intrinsics, height, width,
                             clips.DEFAULT_SUPERSAMPLE)
    return clips.clip_arrays(rendered, c2w, intrinsics, seed)


def chunk_keys(params, config, vae, clip: dict) -> tuple[np.ndarray, np.ndarray]:
    """Keys and values [N, L, 1, 1, T, H, Dh] of every latent frame of the clip, from a teacher's DiT.

    Each latent frame goes through the DiT alone at t = 0 with an empty cache, its conditioning and camera
    inputs zeroed (the dropout mode the teacher was trained with), so the keys carry the frame's content.
    The MACO gate reads the first layer's keys, which no context changes, so a policy replayed on these
    keys admits and prunes exactly as in a stream over the same latents.
    """
    from worldscape_jax.inference.pixels import to_unit_range
    from worldscape_jax.inference.teacher import camera_rays, teacher_model, text_context
    from worldscape_jax.models import vae as vae_lib
    from worldscape_jax.models.kv_cache import init_kv_cache

    latents = vae_lib.encode(vae[0], to_unit_range(clip["video"][None]), vae[1])
    camera = jnp.zeros_like(camera_rays(config, jnp.asarray(clip["c2w"][None]), jnp.asarray(clip["intrinsics"][None])))
    m = config.model
    cond = jnp.zeros((*latents.shape[:-1], m.in_dim - m.out_dim))
    model, text = teacher_model(config), text_context(config, 1)
    tokens = (latents.shape[2] // m.patch_size[1]) * (latents.shape[3] // m.patch_size[2])
    empty = init_kv_cache(m.num_layers, 1, 1, tokens, m.num_heads, m.dim // m.num_heads)

    @jax.jit
    def keys(i):
        sl = lambda x: jax.lax.dynamic_slice_in_dim(x, i, 1, axis=1)
        _, kv = model.apply({"params": params}, sl(latents), jnp.zeros((1, 1)), text, cond=sl(cond),
                            camera=sl(camera), cache=empty, start_frame=i)
        return kv

    kv = [jax.device_get(keys(jnp.int32(i))) for i in range(latents.shape[1])]
    return np.stack([k for k, _ in kv]), np.stack([v for _, v in kv])


def replay(policy: maco.MacoPolicy, ks: np.ndarray, vs: np.ndarray, poses: Float[np.ndarray, "n 4 4"]
           ) -> list[dict[str, Any]]:
    """Per chunk i: the context MACO gives it (sink, memory, local: chunk indices), then the update with
    chunk i, and what the update did (the chunk that left the window, S_mdl, admitted, pruned, the pool)."""

    @jax.jit
    def step(state, k, v, i, pose):
        slots, valid, is_memory = policy.context_slots(state, pose)
        frames = jnp.take_along_axis(state.frame, slots, axis=1)
        return policy.update(state, k, v, i, pose), frames[0], valid[0], is_memory[0]

    layers, _, _, tokens, heads, head_dim = ks.shape[1:]
    state = policy.init(CacheLayout(layers, 1, tokens, heads, head_dim))
    records = []
    for i in range(len(ks)):
        state, frames, valid, is_memory = jax.device_get(step(state, ks[i], vs[i], jnp.int32(i), poses[i][None]))
        role, frame = np.asarray(state.role[0]), np.asarray(state.frame[0])
        records.append(dict(
            step=i, sink=int(frames[0]) if valid[0] else None,
            memory=[int(f) for f in frames[valid & is_memory]],
            local=[int(f) for f in frames[1:][(valid & ~is_memory)[1:]]],
            pool=sorted(int(f) for f in frame[role == maco.MEMORY]),
            left=int(state.left_frame[0]), s_mdl=float(state.s_mdl[0]), admitted=bool(state.admitted[0]),
            pruned=int(state.pruned_frame[0])))
    return records


def context_coverage(depth: Float[np.ndarray, "f h w"], c2w: Float[np.ndarray, "f 4 4"],
                     intrinsics: Float[np.ndarray, "f 4"], query: int, context: list[int],
                     tolerance: float = 0.05) -> float:
    """Fraction of frame `query`'s pixels whose surface point some `context` frame sees.

    A point is seen by a frame if it projects inside it, in front of it, and no more than `tolerance`
    (relative) behind that frame's depth at the pixel it lands in (not hidden behind something nearer;
    one-sided, since a slanted surface's depth at the pixel centre may lie beyond the point).
    """
    height, width = depth.shape[1:]
    k = intrinsics_matrix(intrinsics[query], height, width)
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    pixels = np.stack([cols, rows, np.ones_like(cols)], -1) @ np.linalg.inv(k).T  # z = 1 camera rays
    points = pixels * depth[query][..., None]
    world = points @ c2w[query][:3, :3].T + c2w[query][:3, 3]
    seen = np.zeros((height, width), bool)
    for j in context:
        w2c = np.linalg.inv(c2w[j])
        cam = world @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[..., 2]
        uv = (cam @ intrinsics_matrix(intrinsics[j], height, width).T)[..., :2] / np.maximum(z, 1e-6)[..., None]
        col, row = np.floor(uv[..., 0]).astype(int), np.floor(uv[..., 1]).astype(int)
        inside = (z > 1e-3) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        there = depth[j][np.clip(row, 0, height - 1), np.clip(col, 0, width - 1)]
        seen |= inside & (z <= there * (1.0 + tolerance))
    return float(seen.mean())
