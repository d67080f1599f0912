"""Benchmark of the SynthWorld ray-caster: frames per second at a given size on this machine.

Renders a 64-frame camera path (the default) in indoor, outdoor and manipulation scenes, with the
shipped per-frame `lax.map` renderer and, for comparison, one `vmap` over all frames, once point
sampled (1 ray per pixel, "raw") and once anti-aliased (`--supersample` rays per pixel, by default
what `generate_clip` uses). Prints the median and best of several timed runs after a compile run,
and the ratios between them.

    JAX_PLATFORMS=cpu python launch/bench_render.py [--size 64] [--frames 64] [--repeats 7] [--supersample 9]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from worldscape_jax.data.synthworld.clips import DEFAULT_SUPERSAMPLE, FOV_X_DEG, family_path, start_pose
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


def bench_one(label: str, scene, scenes, c2w, intrinsics, size: int, supersample: int, repeats: int) -> float:
    """Prints and returns frames/s (median) of the shipped renderers at one supersampling."""
    frames = c2w.shape[0]
    vmapped = jax.jit(jax.vmap(render_frame, in_axes=(None, 0, 0, None, None, None)), static_argnums=(3, 4, 5))
    mapped_s, mapped_best = timed(lambda: render_frames(scene, c2w, intrinsics, size, size, supersample), repeats)
    line = f"{label:13s} n={supersample:<2d} lax.map: {frames / mapped_s:7.0f} frames/s ({frames / mapped_best:.0f} best)"
    if scenes is None:
        vmap_s, _ = timed(lambda: vmapped(scene, c2w, intrinsics, size, size, supersample), repeats)
        line += f"   vmap: {frames / vmap_s:7.0f} frames/s   lax.map / vmap = {vmap_s / mapped_s:.2f}x"
    else:
        mapped_s, mapped_best = timed(
            lambda: render_dynamic_frames(scenes, c2w, intrinsics, size, size, supersample), repeats)
        line = (f"{label:13s} n={supersample:<2d} lax.map: {frames / mapped_s:7.0f} frames/s "
                f"({frames / mapped_best:.0f} best)   (per-frame scene, {scene.counts[3]} capsules)")
    print(line)
    return frames / mapped_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--frames", type=int, default=64, help="frames per render call")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case, after one compile run")
    parser.add_argument("--supersample", type=int, default=DEFAULT_SUPERSAMPLE, help="anti-aliased rays per pixel")
    args = parser.parse_args()
    size, frames = args.size, args.frames
    c2w = jnp.asarray(family_path("random_walk", frames, 0, start_pose(0)))
    intrinsics = jnp.tile(jnp.asarray(intrinsics_from_fov(FOV_X_DEG, size, size)), (frames, 1))
    print(f"device: {jax.devices()[0].device_kind}, {size}x{size}, {frames} frames per call, "
          f"median (best) of {args.repeats} runs; n = rays per pixel")
    manipulation = manipulation_scene(0, 0)[0]
    cases = [("indoor", navigation_scene(0), None), ("outdoor", navigation_scene(1), None),
             ("manipulation", manipulation,
              jax.tree.map(lambda x: jnp.broadcast_to(x, (frames,) + x.shape), manipulation))]
    for label, scene, scenes in cases:
        raw = bench_one(label, scene, scenes, c2w, intrinsics, size, 1, args.repeats)
        smooth = bench_one(label, scene, scenes, c2w, intrinsics, size, args.supersample, args.repeats)
        print(f"{label:13s} anti-aliased / raw speed = {smooth / raw:.3f} ({args.supersample} rays per pixel)")


if __name__ == "__main__":
    main()
