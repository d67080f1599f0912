"""How much of each revisited view the attention context has seen: MACO vs the rolling cache vs a full cache.

  python launch/bench_maco_coverage.py                        # 3 held-out scenes x 4 revisit families
  python launch/bench_maco_coverage.py --scenes=8 --chunks=48 --families=reversed_orbit,turn360

A model-free measure for choosing MACO's settings before a student exists (streaming/revisit.py): each
held-out SynthWorld scene is rendered along the revisit paths, the tiny teacher's DiT gives each chunk's
keys, and each cache policy is replayed along the path. For every chunk of the path's second half (the
return), the coverage is the fraction of its view's surface that some frame in its attention context
saw (exact depth and poses). MACO and the rolling cache hold the same number of context chunks
(MacoConfig.rolling()); the full cache holds every earlier chunk (the upper bound). Printed: the mean
coverage per family and policy over scenes, with the standard deviation over scenes.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from absl import app, flags
from tqdm import tqdm

from worldscape_jax import cli

_TEACHER = flags.DEFINE_string("teacher", "asset:teacher_tiny", "Exported teacher whose DiT makes the keys.")
_SCENES = flags.DEFINE_integer("scenes", 3, "Held-out scenes per family.")
_CHUNKS = flags.DEFINE_integer("chunks", 32, "Chunks (latent frames) per path.")
_FAMILIES = flags.DEFINE_list("families", None, "Revisit families (default: all of REVISIT_FAMILIES).")
_OUT = flags.DEFINE_string("out", "", "Optional JSON file for the per-scene figures.")


def policies(chunks: int) -> dict:
    from worldscape_jax.streaming import maco

    config = maco.MacoConfig()
    full = dataclasses.replace(config, local=chunks, budget=0, select=0)
    return {name: maco.MacoPolicy(c, frames_per_chunk=1)
            for name, c in (("maco", config), ("rolling", config.rolling()), ("full", full))}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from worldscape_jax.inference.loading import load_exported, load_vae
    from worldscape_jax.streaming import revisit

    families = _FAMILIES.value or list(revisit.REVISIT_FAMILIES)
    unknown = set(families) - set(revisit.REVISIT_FAMILIES)
    if unknown:
        raise app.UsageError(f"--families: unknown {sorted(unknown)}; expected some of {revisit.REVISIT_FAMILIES}")
    params, config = load_exported(_TEACHER.value, stage="teacher")
    vae = load_vae(config.vae.checkpoint, config.vae.preset)
    named = policies(_CHUNKS.value)
    step = revisit.PIXELS_PER_CHUNK
    results = {f: {p: [] for p in named} for f in families}
    jobs = [(f, s) for f in families for s in range(_SCENES.value)]
    for family, scene in tqdm(jobs, desc="render, keys, replay", unit="clip"):
        seed = revisit.heldout_seed(scene)
        clip = revisit.render_clip(seed, revisit.revisit_path(family, _CHUNKS.value, seed),
                                   config.data.height, config.data.width)
        poses = clip["c2w"][0::step]
        ks, vs = revisit.chunk_keys(params, config, vae, clip)
        for name, policy in named.items():
            records = revisit.replay(policy, ks, vs, poses)
            coverage = [revisit.context_coverage(clip["depth"], clip["c2w"], clip["intrinsics"], step * r["step"],
                                                 [step * f for f in [r["sink"], *r["memory"], *r["local"]]])
                        for r in records[_CHUNKS.value // 2:]]
            results[family][name].append(float(np.mean(coverage)))

    print(f"coverage of the return half's views by their context ({_SCENES.value} held-out scenes, "
          f"{_CHUNKS.value} chunks; mean ± std over scenes)")
    print(f"{'family':<16}" + "".join(f"{name:>20}" for name in named) + f"{'maco - rolling':>20}")
    for family in families:
        row = "".join(f"{np.mean(v):>12.3f} ± {np.std(v):.3f}" for v in results[family].values())
        gain = np.asarray(results[family]["maco"]) - np.asarray(results[family]["rolling"])
        print(f"{family:<16}{row}{np.mean(gain):>+12.3f} ± {np.std(gain):.3f}")
    if _OUT.value:
        os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
        with open(_OUT.value, "w") as f:
            json.dump(dict(chunks=_CHUNKS.value, scenes=_SCENES.value, coverage=results), f, indent=1)


if __name__ == "__main__":
    cli.run(main)
