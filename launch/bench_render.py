"""Benchmark of the SynthWorld ray-caster: frames per second at a given size on this machine.

Renders a 64-frame camera path (the default) in indoor, outdoor and manipulation scenes, with the
shipped per-frame `lax.map` renderer and, for comparison, one `vmap` over all frames. Prints the
median and best of several timed runs after a compile run, and the ratio between the two.

    JAX_PLATFORMS=cpu python launch/bench_render.py [--size 64] [--frames 64] [--repeats 7]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax.data.synthworld.clips import FOV_X_DEG, family_path, start_pose
from worldscape_jax.data.synthworld.hands import manipulation_scene
from worldscape_jax.data.synthworld.render import render_dynamic_frames, render_frame, render_frames
from worldscape_jax.data.synthworld.scenes import navigation_scene
from worldscape_jax.geometry.cameras import intrinsics_from_fov


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median, best) seconds of `fn()` over `repeats` runs after one compile/warm-up run."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--frames", type=int, default=64, help="frames per render call")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    size, frames = args.size, args.frames
    c2w = jnp.asarray(family_path("random_walk", frames, 0, start_pose(0)))
    intrinsics = jnp.tile(jnp.asarray(intrinsics_from_fov(FOV_X_DEG, size, size)), (frames, 1))
    vmapped = jax.jit(jax.vmap(render_frame, in_axes=(None, 0, 0, None, None)), static_argnums=(3, 4))
    print(f"device: {jax.devices()[0].device_kind}, {size}x{size}, {frames} frames per call, "
          f"median (best) of {args.repeats} runs")
    for name, seed in (("indoor", 0), ("outdoor", 1)):
        scene = navigation_scene(seed)
        mapped_s, mapped_best = timed(lambda: render_frames(scene, c2w, intrinsics, size, size), args.repeats)
        vmap_s, _ = timed(lambda: vmapped(scene, c2w, intrinsics, size, size), args.repeats)
        print(f"{name:13s} lax.map: {frames / mapped_s:7.0f} frames/s ({frames / mapped_best:.0f} best)   "
              f"vmap: {frames / vmap_s:7.0f} frames/s   lax.map / vmap = {vmap_s / mapped_s:.2f}x")
    scene = manipulation_scene(0, 0)[0]
    scenes = jax.tree.map(lambda x: jnp.broadcast_to(x, (frames,) + x.shape), scene)
    dyn_s, dyn_best = timed(lambda: render_dynamic_frames(scenes, c2w, intrinsics, size, size), args.repeats)
    print(f"{'manipulation':13s} lax.map: {frames / dyn_s:7.0f} frames/s ({frames / dyn_best:.0f} best)"
          f"   (per-frame scene, {scene.counts[3]} capsules)")


if __name__ == "__main__":
    main()
