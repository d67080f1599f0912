"""Long streams against ground truth (issue 17): does a causal student stay stable far past the window
it was trained on?

A student streams held-out SynthWorld scenes along random key paths of two families for hundreds of
frames; SynthWorld renders the ground truth along the same keys. Per 4-frame block: PSNR against
ground truth, and the same for the stream's first frame held still (the "nothing moves" baseline,
which a stream that drifts to texture falls below); and the detail ratio (`block_detail_ratio`: the
generated block's high-frequency energy over the ground truth's), because PSNR cannot tell a stream that
dissolves into coloured noise from one that blurs: both sit a few dB under the truth, but noise has
more detail than the truth (ratio > 1) and blur less (< 1). Per chunk: whether the clean latents are finite
and how large they are (a blow-up shows as a latent standard deviation far from the VAE's ~1).

The detail ratio counts detail but cannot tell the scene's edges from speckle of the same energy. With a
video feature extractor (`evaluate_long_streams(extractor=...)`, the Kinetics I3D of eval/fvd.py) each
quarter of every stream also gives a few 16-frame windows' features, and the summary scores each quarter
as a set against the ground truth's windows of the same quarter: the kernel video distance (KVD,
unbiased at tens of windows, with a leave-one-stream-out spread) and FVD (biased up at this N: compare
runs only at equal N). A stream that turns to speckle or to blur leaves the distribution of real videos
and scores high there, whatever its PSNR.

Path families (geometry.actions.random_actions, kept inside the scene's free radius):
  keys   a player's presses: every step keeps its keys with probability 0.5, else draws a new move
         and turn (every key, idling and two-key combinations occur);
  holds  the same with probability 0.9: keys held for about ten steps, long pure turns and walks.
Each (family, scene) has its own path, drawn from the scene's seed, so no two scenes share one.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, UInt8
from tqdm import tqdm

from worldscape_jax.data.synthworld.clips import FREE_RADIUS, split_seeds
from worldscape_jax.eval import fvd
from worldscape_jax.eval.image_metrics import ssim
from worldscape_jax.eval.revisit import block_psnr
from worldscape_jax.geometry.actions import integrate, random_actions
from worldscape_jax.inference.pixels import to_unit_range
from worldscape_jax.play.keys import ACTION_KEYS, frame_deltas_of, script_to_chunks
from worldscape_jax.play.scene_start import synthworld_start
from worldscape_jax.streaming.revisit import render_clip
from worldscape_jax.training.media import contact_sheet

FAMILIES = {"keys": 0.5, "holds": 0.9}   # family -> hold probability of random_actions
PATH_MARGIN = 0.25                        # as SynthWorld's own "keys" family: stay this far inside the free radius
VIDEO_WINDOW = 16                         # frames per feature window (FVD's usual clip length)


def long_path(family: str, steps: int, scene_seed: int) -> str:
    """The key script of `family` with `steps` latent steps for the scene `scene_seed`."""
    if family not in FAMILIES:
        raise ValueError(f"long stream: path family {family!r} is unknown; expected one of {sorted(FAMILIES)}")
    seed = int(scene_seed) * len(FAMILIES) + sorted(FAMILIES).index(family)
    return random_actions(steps, seed, hold_probability=FAMILIES[family], max_distance=FREE_RADIUS - PATH_MARGIN)


@dataclasses.dataclass(frozen=True)
class LongStream:
    frames: UInt8[np.ndarray, "f h w 3"]          # frame 0 the given first frame
    latent_std: Float[np.ndarray, " chunks"]       # standard deviation of each chunk's clean latents
    finite: bool                                   # every chunk's latents finite


def stream_engine(engine, scene, chunks: np.ndarray, oracle_truth: np.ndarray | None = None) -> LongStream:
    """Streams the bool actions `chunks` [N, F, 8] from `scene` through a play engine (ModelEngine).

    oracle_truth (a diagnosis, uint8 [1 + N p, H, W, 3]): after every chunk the stream's newest frame, the
    next chunk's reference for a newest_frame student, is replaced by the ground truth's."""
    state = engine.start(scene)
    frames, stds, finite = [scene.first_frame[None]], [], True
    for index, actions in enumerate(chunks):
        state, chunk = engine.step(state, actions)
        if oracle_truth is not None:
            state = _with_newest_frame(state, oracle_truth[(index + 1) * len(chunk)])
        latents = np.asarray(state.stream.chunk_latents, np.float32)
        finite &= bool(np.isfinite(latents).all())
        stds.append(float(np.std(latents)))
        frames.append(chunk)
    return LongStream(np.concatenate(frames), np.asarray(stds), finite)


def _with_newest_frame(state, frame: np.ndarray):
    last = state.stream.last_frame
    newest = jnp.asarray(to_unit_range(frame)[None, None], last.dtype)
    return dataclasses.replace(state, stream=state.stream.replace(last_frame=newest))


def truth_of(scene, chunks: np.ndarray) -> dict:
    """SynthWorld rendered along the keys of `chunks` from the scene's start pose."""
    c2w = integrate(frame_deltas_of(chunks.reshape(-1, len(ACTION_KEYS))), scene.c2w).astype(np.float32)
    return render_clip(scene.seed, c2w, scene.first_frame.shape[0], scene.first_frame.shape[1])


def frame_detail(frames: UInt8[np.ndarray, "f h w 3"]) -> np.ndarray:
    """[F] mean absolute 4-neighbour Laplacian of each frame's grey level (0-255, edges replicated)."""
    grey = frames.astype(np.float64).mean(axis=-1)
    padded = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="edge")
    laplacian = (padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
                 - 4.0 * grey)
    return np.abs(laplacian).mean(axis=(1, 2))


def block_detail_ratio(generated: UInt8[np.ndarray, "f h w 3"], truth: UInt8[np.ndarray, "f h w 3"],
                       block: int = 4) -> list[float]:
    """Per block of `block` frames after the first (as `block_psnr`): the generated frames' mean detail
    (`frame_detail`) over the ground truth's. 1 is the truth's sharpness; blur < 1; noise or texture > 1."""
    if generated.shape != truth.shape or (len(truth) - 1) % block:
        raise ValueError(f"block_detail_ratio: generated {generated.shape} and truth {truth.shape} must match "
                         f"and hold 1 + {block} * blocks frames")
    ours, theirs = frame_detail(generated), frame_detail(truth)
    return [float(ours[i:i + block].mean() / max(theirs[i:i + block].mean(), 1e-6))
            for i in range(1, len(truth), block)]


def block_ssim(generated: UInt8[np.ndarray, "f h w 3"], truth: UInt8[np.ndarray, "f h w 3"],
               block: int = 4) -> list[float]:
    """Per block of `block` frames after the first (as `block_psnr`): mean SSIM against the truth. SSIM
    compares local structure (means, contrasts and correlation in 11x11 windows), so speckle that keeps the
    scene's colours, which PSNR rates like blur, scores far below blur of the same PSNR."""
    if generated.shape != truth.shape or (len(truth) - 1) % block:
        raise ValueError(f"block_ssim: generated {generated.shape} and truth {truth.shape} must match "
                         f"and hold 1 + {block} * blocks frames")
    per_frame = np.asarray(ssim(generated.astype(np.float32), truth.astype(np.float32), 255.0), np.float64)
    return [float(per_frame[i:i + block].mean()) for i in range(1, len(truth), block)]


def quarter_windows(frames: int, windows: int, length: int = VIDEO_WINDOW) -> list[list[int]]:
    """Start frames of `windows` evenly spaced `length`-frame windows inside each quarter of the generated
    frames 1 .. frames - 1 (the quarters of `quarter_means`: 4-frame blocks split in four)."""
    starts = []
    for quarter in np.array_split(np.arange(1, frames), 4):
        if len(quarter) < length or windows < 1:
            raise ValueError(f"long stream features: a quarter of {len(quarter)} frames cannot hold {windows} "
                             f"window(s) of {length} frames; use longer streams (--steps) or fewer windows")
        starts.append(np.linspace(quarter[0], quarter[-1] - length + 1, windows).round().astype(int).tolist())
    return starts


def quarter_features(video: UInt8[np.ndarray, "f h w 3"], extractor, windows: int,
                     length: int = VIDEO_WINDOW) -> list:
    """[4 quarters][windows][D] features (`extractor`: videos [B, F, H, W, 3] in [0, 1] -> [B, D]) of the
    windows of `quarter_windows`, rounded to 4 decimals for the JSON."""
    starts = quarter_windows(len(video), windows, length)
    clips = np.stack([video[s:s + length] for quarter in starts for s in quarter]).astype(np.float32) / 255.0
    features = np.asarray(extractor(clips), np.float64)
    return np.round(features.reshape(4, windows, -1), 4).tolist()


def _still_features(first_frame: np.ndarray, extractor, length: int) -> list:
    """Features of the first frame held still for one window (the same in every quarter)."""
    still = np.broadcast_to(first_frame, (1, length, *first_frame.shape)).astype(np.float32) / 255.0
    return np.round(np.asarray(extractor(still), np.float64)[0], 4).tolist()


def evaluate_long_streams(engines: dict, families: list[str], scenes: int, steps: int,
                          first_scene: int = 0, oracle_reference: bool = False, extractor=None,
                          windows: int = 2, window_length: int = VIDEO_WINDOW, first_stream: dict | None = None) -> dict:
    """{family: {scene seed: {"script", "first_frame_blocks", engine name: {"blocks", "detail", "latent_std",
    "finite"}}}}.

    Each scene's ground truth is rendered once and shared by the engines; PSNR per 4-frame block.
    oracle_reference: every chunk's reference frame is the ground truth's (see `stream_engine`).
    extractor: also "truth_features", "still_features" and each engine's "features" (`quarter_features`,
    `windows` per quarter). first_stream: a dict to fill with the first stream's frames, "truth" and each
    engine's (for `plot_stream_sheet`)."""
    seeds = split_seeds("heldout", first_scene + scenes)[first_scene:]
    any_engine = next(iter(engines.values()))
    results: dict = {}
    jobs = [(family, seed) for family in families for seed in seeds]
    for family, seed in tqdm(jobs, desc="long streams", unit="stream"):
        scene = synthworld_start(int(seed), any_engine.height, any_engine.width)
        script = long_path(family, steps, int(seed))
        chunks = script_to_chunks(script, any_engine.frames_per_chunk)
        truth = truth_of(scene, chunks)["video"]
        still = np.broadcast_to(truth[:1], truth.shape)
        entry = {"script": script, "first_frame_blocks": block_psnr(still, truth),
                 "first_frame_ssim": block_ssim(still, truth)}
        if extractor is not None:
            entry["truth_features"] = quarter_features(truth, extractor, windows, window_length)
            entry["still_features"] = _still_features(truth[0], extractor, window_length)
        for name, engine in engines.items():
            stream = stream_engine(engine, scene, chunks, truth if oracle_reference else None)
            entry[name] = {"blocks": block_psnr(stream.frames, truth),
                           "detail": block_detail_ratio(stream.frames, truth),
                           "ssim": block_ssim(stream.frames, truth),
                           "latent_std": stream.latent_std.tolist(), "finite": stream.finite}
            if extractor is not None:
                entry[name]["features"] = quarter_features(stream.frames, extractor, windows, window_length)
            if first_stream is not None and (family, seed) == jobs[0]:
                first_stream.update({"truth": truth, name: stream.frames})
        results.setdefault(family, {})[int(seed)] = entry
    return results


def summarise_long_streams(results: dict, engines: list[str]) -> dict:
    """Per engine and family (and over all): mean ± std over scenes of PSNR in each quarter of the stream,
    the drift (first quarter minus last quarter), the last quarter's margin over the first-frame baseline,
    the largest chunk latent std, whether every chunk was finite, and the detail ratio in the first and last
    quarters and SSIM per quarter, for the still first frame too (mean ± std over scenes; runs saved before
    they were measured have none)."""
    summary = {}
    for name in [*engines, "first_frame"]:
        rows = {}
        for family, scenes in [*results.items(), ("all", {f"{f}/{s}": e for f, d in results.items()
                                                           for s, e in d.items()})]:
            curves = np.asarray([_blocks(e, name) for e in scenes.values()], np.float64)
            quarters = quarter_means(curves)
            baseline = np.asarray([e["first_frame_blocks"] for e in scenes.values()], np.float64)
            margin = quarters[:, -1] - quarter_means(baseline)[:, -1]
            row = {"scenes": len(curves), "quarters_mean": quarters.mean(0).tolist(),
                   "quarters_std": quarters.std(0).tolist(), "drift_mean": float((quarters[:, 0] - quarters[:, -1]).mean()),
                   "drift_std": float((quarters[:, 0] - quarters[:, -1]).std()),
                   "last_quarter_over_first_frame_mean": float(margin.mean()),
                   "last_quarter_over_first_frame_std": float(margin.std()),
                   "curve_mean": curves.mean(0).tolist(), "curve_std": curves.std(0).tolist()}
            if name == "first_frame" and all("still_features" in e for e in scenes.values()):
                row.update(video_distances([[[e["still_features"]]] * 4 for e in scenes.values()],
                                           [e["truth_features"] for e in scenes.values()]))
            ssim_curves = [_ssim(e, name) for e in scenes.values()]
            if all(c is not None for c in ssim_curves):
                ssim_curves = np.asarray(ssim_curves, np.float64)
                parts = quarter_means(ssim_curves)
                row.update(ssim_quarters_mean=parts.mean(0).tolist(), ssim_quarters_std=parts.std(0).tolist(),
                           ssim_curve_mean=ssim_curves.mean(0).tolist())
            if name != "first_frame":
                row["finite"] = all(e[name]["finite"] for e in scenes.values())
                row["max_latent_std"] = float(max(max(e[name]["latent_std"]) for e in scenes.values()))
                if all("features" in e[name] for e in scenes.values()):
                    row.update(video_distances([e[name]["features"] for e in scenes.values()],
                                               [e["truth_features"] for e in scenes.values()]))
                if all("detail" in e[name] for e in scenes.values()):
                    detail = np.asarray([e[name]["detail"] for e in scenes.values()], np.float64)
                    parts = quarter_means(detail)
                    row["detail_quarters_mean"] = parts.mean(0).tolist()
                    row["detail_quarters_std"] = parts.std(0).tolist()
                    row["detail_curve_mean"] = detail.mean(0).tolist()
            rows[family] = row
        summary[name] = rows
    return summary


def video_distances(generated: list, truth: list) -> dict:
    """Per quarter, the set of generated windows of every stream ([streams][4][windows][D]) against the
    ground truth's: KVD (`fvd.kernel_distance`) with its leave-one-stream-out (jackknife) standard error, and
    FVD (`fvd.frechet_distance_from_features`)."""
    ours, theirs = np.asarray(generated, np.float64), np.asarray(truth, np.float64)
    streams = len(ours)
    kvd, kvd_se, fvd_values = [], [], []
    for q in range(4):
        pooled = lambda feats, keep: feats[keep, q].reshape(-1, feats.shape[-1])
        everyone = np.arange(streams)
        kvd.append(fvd.kernel_distance(pooled(ours, everyone), pooled(theirs, everyone)))
        fvd_values.append(fvd.frechet_distance_from_features(pooled(ours, everyone), pooled(theirs, everyone)))
        if streams > 2:
            left_out = np.asarray([fvd.kernel_distance(pooled(ours, np.delete(everyone, i)),
                                                       pooled(theirs, np.delete(everyone, i))) for i in everyone])
            kvd_se.append(float(np.sqrt((streams - 1) / streams * np.sum((left_out - left_out.mean()) ** 2))))
        else:
            kvd_se.append(float("nan"))
    return {"kvd_quarters": kvd, "kvd_quarters_se": kvd_se, "fvd_quarters": fvd_values,
            "feature_windows": int(ours.shape[2] * streams)}


def quarter_means(curves: np.ndarray) -> np.ndarray:
    """[scenes, blocks] -> [scenes, 4]: each scene's mean over each quarter of its blocks."""
    return np.stack([q.mean(axis=1) for q in np.array_split(curves, 4, axis=1)], axis=1)


def _block_centres(blocks: int) -> np.ndarray:
    """The middle frame of each 4-frame block after the given first frame (the plots' x axis)."""
    return 1 + 4 * np.arange(blocks) + 1.5


def _ssim(entry: dict, name: str) -> list[float] | None:
    """The SSIM curve of an engine (or the still first frame) in a saved stream; None in runs saved before it."""
    return entry.get("first_frame_ssim") if name == "first_frame" else entry[name].get("ssim")


def _blocks(entry: dict, name: str) -> list[float]:
    return entry["first_frame_blocks"] if name == "first_frame" else entry[name]["blocks"]


def plot_long_streams(summary: dict, engines: list[str], path: str, title: str) -> None:
    """PSNR per 4-frame block over time, mean ± std over all scenes and paths, one line per engine and the
    first-frame baseline; the last quarter is shaded. Below it, when the runs measured them, each engine's
    mean SSIM per block, its mean detail ratio per block (1 = the truth's sharpness) and its KVD per quarter with the jackknife error."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_detail = [name for name in engines if "detail_curve_mean" in summary[name]["all"]]
    with_ssim = [name for name in [*engines, "first_frame"] if "ssim_curve_mean" in summary[name]["all"]]
    with_kvd = [name for name in [*engines, "first_frame"] if "kvd_quarters" in summary[name]["all"]]
    ratios = [3] + [2] * bool(with_ssim) + [2] * bool(with_detail) + [2] * bool(with_kvd)
    figure, axes = plt.subplots(len(ratios), 1, figsize=(8, 3.6 + 2.6 * (len(ratios) - 1)), dpi=120, sharex=True,
                                squeeze=False, gridspec_kw={"height_ratios": ratios})
    axis = axes[0, 0]
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(engines)} | {"first_frame": "0.5"}
    for name in [*engines, "first_frame"]:
        row = summary[name]["all"]
        mean, std = np.asarray(row["curve_mean"]), np.asarray(row["curve_std"])
        frames = _block_centres(len(mean))
        label = "first frame held still" if name == "first_frame" else name
        axis.plot(frames, mean, color=colours[name], label=f"{label} (last quarter {row['quarters_mean'][-1]:.2f} dB)")
        axis.fill_between(frames, mean - std, mean + std, color=colours[name], alpha=0.15)
    last = 1 + 4 * len(mean)
    for shaded in axes[:, 0]:
        shaded.axvspan(last * 0.75, last, color="0.9", zorder=0)
    axis.set_ylabel("PSNR vs ground truth per 4-frame block (dB)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    if with_ssim:
        ssim_axis = axes[1, 0]
        for name in with_ssim:
            curve = np.asarray(summary[name]["all"]["ssim_curve_mean"])
            ssim_axis.plot(_block_centres(len(curve)), curve, color=colours[name],
                           label="first frame held still" if name == "first_frame" else name)
        ssim_axis.set_ylabel("SSIM vs ground truth\nper 4-frame block", fontsize=8)
        ssim_axis.legend(fontsize=7)
    if with_detail:
        detail_axis = axes[1 + bool(with_ssim), 0]
        for name in with_detail:
            curve = np.asarray(summary[name]["all"]["detail_curve_mean"])
            detail_axis.plot(_block_centres(len(curve)), curve, color=colours[name], label=name)
        detail_axis.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
        detail_axis.set_ylabel("detail ratio (1 = truth;\n< 1 blur, > 1 texture)", fontsize=8)
        detail_axis.legend(fontsize=7)
    if with_kvd:
        kvd_axis = axes[-1, 0]
        centres = 1 + last / 8 + last / 4 * np.arange(4)
        for name in with_kvd:
            row = summary[name]["all"]
            kvd_axis.errorbar(centres, row["kvd_quarters"], yerr=row["kvd_quarters_se"], color=colours[name],
                              marker="o", capsize=3, label="first frame held still" if name == "first_frame" else name)
        kvd_axis.set_ylabel("KVD vs ground truth per quarter\n(I3D, lower is better)", fontsize=8)
        kvd_axis.legend(fontsize=7)
    axes[-1, 0].set_xlabel("frame")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


SHEET_FRAMES = (0, 4, 8, 16, 32, 64, 100, 150, 200, 300, 400)


def plot_stream_sheet(frames_by_name: dict, path: str, title: str, indices=SHEET_FRAMES) -> None:
    """One row per video of `frames_by_name` ({name: uint8 [F, H, W, 3]}, the ground truth first when given
    as "truth"), the frames `indices` (those inside every video) side by side, labelled: what a stream
    looks like far from its start, which no per-block number shows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(frames_by_name, key=lambda name: name != "truth")
    length = min(len(frames_by_name[name]) for name in names)
    indices = [i for i in indices if i < length]
    videos = np.stack([np.asarray(frames_by_name[name])[indices] for name in names])
    sheet = contact_sheet(videos, max_columns=len(indices))
    h, w = videos.shape[2:4]
    figure, axis = plt.subplots(figsize=(1.0 + 0.75 * len(indices), 0.6 + 0.75 * len(names)), dpi=120)
    axis.imshow(sheet, interpolation="nearest")
    axis.set_xticks([(w + 2) * c + w / 2 for c in range(len(indices))], [str(i) for i in indices], fontsize=7)
    axis.set_yticks([(h + 2) * r + h / 2 for r in range(len(names))], names, fontsize=7)
    axis.set_xlabel("frame", fontsize=8)
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
