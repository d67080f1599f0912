"""The revisit benchmark (issue 18, the paper's Table 5 extended): the trained student on SynthWorld revisits.

  python launch/bench_revisit.py                              # 4 families x 3 held-out scenes x 100 chunks
  python launch/bench_revisit.py --scenes=5 --chunks=120 --policies=maco,rolling --out=runs/revisit.json
  python launch/bench_revisit.py --from_json=runs/revisit.json      # the tables of a saved (or stopped) run

Each held-out scene is rendered along each revisit path (streaming/revisit.py), and the student streams
the path from the ground-truth first frame under each cache policy: MACO (positions "fixed" and
"original"), the rolling cache with the same number of context chunks (MacoConfig.rolling()), and a
full cache that holds the whole stream. Printed per family and overall, mean ± std over scenes: PSNR
and SSIM of the revisit frames against ground truth, PSNR of the revisit against the first visit,
Memory Symmetry, Trajectory Accuracy and pixel frames per second (streaming/revisit_eval.py says how
each is measured), then MACO minus rolling per scene. Policies take turns scene by scene, so they see
the same load on a shared machine.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax.numpy as jnp
import numpy as np
from absl import app, flags
from tqdm import tqdm

from worldscape_jax import cli

_MODEL = flags.DEFINE_string("model", "asset:student_tiny", "Student export (path or asset:NAME).")
_SCENES = flags.DEFINE_integer("scenes", 3, "Held-out scenes per family.")
_CHUNKS = flags.DEFINE_integer("chunks", 100, "Chunks (latent frames) per path, the first frame included.")
_FAMILIES = flags.DEFINE_list("families", None, "Revisit families (default: all of REVISIT_FAMILIES).")
_POLICIES = flags.DEFINE_list("policies", None, "Policies (default: maco, maco_original, rolling, full).")
_OUT = flags.DEFINE_string("out", "", "Optional JSON file for the per-stream figures (rewritten after each clip).")
_MACO_SIZES = flags.DEFINE_enum("maco_sizes", "trained_span", ["trained_span", "paper"],
                                "MACO sizes for an export without a maco section: trained_span (sink + 2 selected + "
                                "local window = the cache the student was trained with, as the demo and play use) or "
                                "paper (Figure 7: local 6, budget 4, select 2).")
_FROM_JSON = flags.DEFINE_string("from_json", "", "Print the tables of a saved --out file (a whole or stopped run).")


def policies(maco_config, trained, chunks: int, frames_per_chunk: int) -> dict:
    """MACO (both RoPE placements of memory), the same-size rolling cache and a cache for every chunk
    (`trained`: the student config's section, whose sink the full cache keeps)."""
    from worldscape_jax.streaming import RollingPolicy
    from worldscape_jax.streaming.maco import MacoPolicy

    other = "original" if maco_config.positions == "fixed" else "fixed"
    return {"maco": MacoPolicy(maco_config, frames_per_chunk),
            f"maco_{other}": MacoPolicy(dataclasses.replace(maco_config, positions=other), frames_per_chunk),
            "rolling": MacoPolicy(maco_config.rolling(), frames_per_chunk),
            "full": RollingPolicy(slots=chunks * frames_per_chunk, sink=trained.sink_frames)}


def print_table(title: str, groups: dict) -> None:
    from worldscape_jax.streaming.revisit_eval import METRICS

    print(title)
    print(f"{'':<16}" + "".join(f"{m:>22}" for m in METRICS))
    for name, figures in groups.items():
        print(f"{name:<16}" + "".join(f"{mean:>13.3f} ± {std:<6.3f}" for mean, std in figures.values()))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from worldscape_jax.inference.loading import load_exported, load_vae
    from worldscape_jax.inference.pixels import to_unit_range
    from worldscape_jax.streaming import revisit, revisit_eval, student_stream
    from worldscape_jax.streaming.maco import MacoConfig
    from worldscape_jax.training.stages import student

    if _FROM_JSON.value:
        with open(_FROM_JSON.value) as f:
            rows = json.load(f)["rows"]
        done = [f for f in revisit.REVISIT_FAMILIES if any(r["family"] == f for r in rows)]
        return report(rows, done, list(dict.fromkeys(r["policy"] for r in rows)))
    families = _FAMILIES.value or list(revisit.REVISIT_FAMILIES)
    if set(families) - set(revisit.REVISIT_FAMILIES):
        raise app.UsageError(f"--families: unknown {sorted(set(families) - set(revisit.REVISIT_FAMILIES))}; "
                             f"expected some of {revisit.REVISIT_FAMILIES}")
    params, config = load_exported(_MODEL.value)
    if not student.is_student(config):
        raise app.UsageError(f"--model: {_MODEL.value} is a {config.get('stage')!r} export; expected a causal student")
    vae = load_vae(config.vae.checkpoint, config.vae.preset)
    if "maco" in config or _MACO_SIZES.value == "trained_span":
        from worldscape_jax.play.model_engine import student_maco_section
        maco_config = MacoConfig.from_config(student_maco_section(config))
    else:
        maco_config = MacoConfig()
    per_chunk = student.pixels_per_chunk(config)
    named = policies(maco_config, config.student, _CHUNKS.value, config.model.frames_per_chunk)
    if _POLICIES.value:
        if set(_POLICIES.value) - set(named):
            raise app.UsageError(f"--policies: unknown {sorted(set(_POLICIES.value) - set(named))}; expected some of "
                                 f"{sorted(named)}")
        named = {name: named[name] for name in _POLICIES.value}
    streams = {name: student_stream.make_stream(params, config, vae, policy) for name, policy in named.items()}
    print(f"{_MODEL.value}: MACO {maco_config}; rolling {maco_config.context_chunks} context chunks; full "
          f"{_CHUNKS.value} (the student was trained with {config.student.cache_slots}); {_SCENES.value} held-out scenes x "
          f"{len(families)} families x {_CHUNKS.value} chunks")

    rows = []
    jobs = [(f, s) for s in range(_SCENES.value) for f in families]  # scene-major: a stopped run covers every family
    for family, scene in tqdm(jobs, desc="render, stream, measure", unit="clip"):
        seed = revisit.heldout_seed(scene)
        clip = revisit.render_clip(seed, revisit.revisit_path(family, _CHUNKS.value, seed),
                                   config.data.height, config.data.width)
        pairs = revisit_eval.revisit_pairs(clip["c2w"][::per_chunk], min_gap=maco_config.context_chunks)
        first = to_unit_range(clip["video"][:1])[None]
        intrinsics = clip["intrinsics"][0]
        truth = revisit_eval.revisit_metrics(clip["video"], clip["video"], clip["c2w"], intrinsics, [], per_chunk)
        streamed = revisit_eval.stream_along(streams, first, intrinsics, clip["c2w"], per_chunk, seed)
        for name, (video, fps) in streamed.items():
            figures = revisit_eval.revisit_metrics(video, clip["video"], clip["c2w"], intrinsics, pairs, per_chunk)
            rows.append(dict(family=family, scene=scene, seed=seed, policy=name, fps=fps, revisits=len(pairs),
                             memory_symmetry_ground_truth=truth["memory_symmetry"],
                             trajectory_accuracy_ground_truth=truth["trajectory_accuracy"], **figures))
        if _OUT.value:  # after every clip, so that a stopped run keeps what it measured
            save(_OUT.value, dict(model=_MODEL.value, chunks=_CHUNKS.value, scenes=_SCENES.value,
                                  maco=str(maco_config), rows=rows))

    report(rows, families, named)


def save(path: str, results: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


def report(rows: list[dict], families: list[str], named: dict) -> None:
    from worldscape_jax.streaming import revisit_eval

    for family in families:
        family_rows = [r for r in rows if r["family"] == family]
        one = [r for r in family_rows if r["policy"] == next(iter(named))]
        truth = {k: np.mean([r[k] for r in one]) for k in ("revisits", "memory_symmetry_ground_truth",
                                                          "trajectory_accuracy_ground_truth")}
        print_table(f"\n{family}: mean ± std over {len(one)} scenes ({truth['revisits']:.1f} revisit chunks per "
                    f"path; the ground-truth video's Memory Symmetry {truth['memory_symmetry_ground_truth']:.3f}, "
                    f"Trajectory Accuracy {truth['trajectory_accuracy_ground_truth']:.2f})",
                    revisit_eval.summarise(family_rows, "policy"))
    print_table("\nall families: mean ± std over every stream", revisit_eval.summarise(rows, "policy"))
    if "maco" in named and "rolling" in named:
        gains = [dict(family=m["family"], **{k: m[k] - r[k] for k in revisit_eval.METRICS[:-1]},
                      fps=m["fps"] / r["fps"])
                 for m in rows if m["policy"] == "maco"
                 for r in rows if r["policy"] == "rolling" and (r["family"], r["scene"]) == (m["family"], m["scene"])]
        print_table("\nMACO minus rolling, per scene (fps: the ratio MACO / rolling)",
                    revisit_eval.summarise(gains, "family") | revisit_eval.summarise(
                        [dict(g, family="all") for g in gains], "family"))


if __name__ == "__main__":
    cli.run(main)
