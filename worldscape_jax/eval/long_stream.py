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
from worldscape_jax.eval.revisit import block_psnr
from worldscape_jax.geometry.actions import integrate, random_actions
from worldscape_jax.inference.pixels import to_unit_range
from worldscape_jax.play.keys import ACTION_KEYS, frame_deltas_of, script_to_chunks
from worldscape_jax.play.scene_start import synthworld_start
from worldscape_jax.streaming.revisit import render_clip

FAMILIES = {"keys": 0.5, "holds": 0.9}   # family -> hold probability of random_actions
PATH_MARGIN = 0.25                        # as SynthWorld's own "keys" family: stay this far inside the free radius


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


def evaluate_long_streams(engines: dict, families: list[str], scenes: int, steps: int,
                          first_scene: int = 0, oracle_reference: bool = False) -> dict:
    """{family: {scene seed: {"script", "first_frame_blocks", engine name: {"blocks", "detail", "latent_std",
    "finite"}}}}.

    Each scene's ground truth is rendered once and shared by the engines; PSNR per 4-frame block.
    oracle_reference: every chunk's reference frame is the ground truth's (see `stream_engine`)."""
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
        entry = {"script": script, "first_frame_blocks": block_psnr(still, truth)}
        for name, engine in engines.items():
            stream = stream_engine(engine, scene, chunks, truth if oracle_reference else None)
            entry[name] = {"blocks": block_psnr(stream.frames, truth),
                           "detail": block_detail_ratio(stream.frames, truth),
                           "latent_std": stream.latent_std.tolist(), "finite": stream.finite}
        results.setdefault(family, {})[int(seed)] = entry
    return results


def summarise_long_streams(results: dict, engines: list[str]) -> dict:
    """Per engine and family (and over all): mean ± std over scenes of PSNR in each quarter of the stream,
    the drift (first quarter minus last quarter), the last quarter's margin over the first-frame baseline,
    the largest chunk latent std, whether every chunk was finite, and the detail ratio in the first and last
    quarters (mean ± std over scenes; runs saved before it was measured have none)."""
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
            if name != "first_frame":
                row["finite"] = all(e[name]["finite"] for e in scenes.values())
                row["max_latent_std"] = float(max(max(e[name]["latent_std"]) for e in scenes.values()))
                if all("detail" in e[name] for e in scenes.values()):
                    detail = np.asarray([e[name]["detail"] for e in scenes.values()], np.float64)
                    parts = quarter_means(detail)
                    row["detail_quarters_mean"] = parts.mean(0).tolist()
                    row["detail_quarters_std"] = parts.std(0).tolist()
                    row["detail_curve_mean"] = detail.mean(0).tolist()
            rows[family] = row
        summary[name] = rows
    return summary


def quarter_means(curves: np.ndarray) -> np.ndarray:
    """[scenes, blocks] -> [scenes, 4]: each scene's mean over each quarter of its blocks."""
    return np.stack([q.mean(axis=1) for q in np.array_split(curves, 4, axis=1)], axis=1)


def _block_centres(blocks: int) -> np.ndarray:
    """The middle frame of each 4-frame block after the given first frame (the plots' x axis)."""
    return 1 + 4 * np.arange(blocks) + 1.5


def _blocks(entry: dict, name: str) -> list[float]:
    return entry["first_frame_blocks"] if name == "first_frame" else entry[name]["blocks"]


def plot_long_streams(summary: dict, engines: list[str], path: str, title: str) -> None:
    """PSNR per 4-frame block over time, mean ± std over all scenes and paths, one line per engine and the
    first-frame baseline; the last quarter is shaded. Below it, when the runs measured it, each engine's
    mean detail ratio per block (1 = the truth's sharpness)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_detail = [name for name in engines if "detail_curve_mean" in summary[name]["all"]]
    figure, axes = plt.subplots(2 if with_detail else 1, 1, figsize=(8, 6.2 if with_detail else 3.6), dpi=120,
                                sharex=True, squeeze=False, gridspec_kw={"height_ratios": [3, 2]} if with_detail else None)
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
    if with_detail:
        detail_axis = axes[1, 0]
        for name in with_detail:
            curve = np.asarray(summary[name]["all"]["detail_curve_mean"])
            detail_axis.plot(_block_centres(len(curve)), curve, color=colours[name], label=name)
        detail_axis.axhline(1.0, color="0.3", linestyle="--", linewidth=0.8)
        detail_axis.set_ylabel("detail ratio (1 = truth;\n< 1 blur, > 1 texture)", fontsize=8)
        detail_axis.legend(fontsize=7)
    axes[-1, 0].set_xlabel("frame")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
