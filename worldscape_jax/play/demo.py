"""The main job: the student streams held-out SynthWorld scenes along a path that leaves and returns.

For each held-out scene a play session (session.py, the page's and headless play's) streams the key
script from the scene's first frame, chunk by chunk, with the engine's cache (MACO by default); the
same keys give the exact camera path, and SynthWorld renders the ground truth along it. Scored per
scene: every clip metric of eval/video_eval.py (PSNR, SSIM, Trajectory Accuracy from the pose
estimator), the revisit figures of eval/revisit.py and PSNR per 4-frame block; frames per second of
the stream with decode. Over scenes: means and standard deviations. Written to `out_dir`:
  generated_vs_truth.mp4   every scene's stream (left) beside its ground truth (right), one row each
  camera_map.png           each scene's top-down map at the end of the path (the revisit), with the
                           sink, local window and selected memory the last chunk attended to
  contact_sheet.png, paths.png, metrics.json, report.md   (eval/report.py), the report extended with
                           the stream's figures; psnr_blocks.png: PSNR per 4-frame block over time
  videos.npz               the uint8 videos and the c2w they were scored with
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from worldscape_jax.data.synthworld.clips import split_seeds
from worldscape_jax.eval.report import side_by_side, write_report
from worldscape_jax.eval.revisit import block_psnr, revisit_pairs, revisit_scores
from worldscape_jax.eval.video_eval import evaluate_clip, summarise
from worldscape_jax.geometry.actions import integrate
from worldscape_jax.play.camera_map import draw_camera_map
from worldscape_jax.play.engines import Engine
from worldscape_jax.play.headless import latency_summary
from worldscape_jax.play.keys import ACTION_KEYS, frame_deltas_of, script_to_chunks
from worldscape_jax.play.scene_start import synthworld_start
from worldscape_jax.play.session import PlaySession
from worldscape_jax.streaming.revisit import render_clip
from worldscape_jax.training.media import write_mp4

DEMO_KEYS = "e*24,w*12,s*12,q*24"   # turn right 72 degrees, walk out 0.96 and back, turn back: 289 frames
REVISIT_GAP = 32                    # pixel frames (8 latent frames) between a first visit and its revisit
SCALARS = ("psnr", "ssim", "revisit_psnr_truth", "first_visit_psnr_truth", "revisit_psnr_first_visit",
           "frames_per_second")


@dataclasses.dataclass(frozen=True)
class SceneStream:
    seed: int
    generated: np.ndarray       # uint8 [F, H, W, 3], frame 0 the given first frame
    truth: np.ndarray           # uint8 [F, H, W, 3]
    c2w: np.ndarray             # [F, 4, 4] the keys' camera path
    intrinsics: np.ndarray      # [F, 4]
    step_seconds: list[float]   # per chunk (the first includes compilation)
    final_map: dict             # camera_map.map_payload after the last chunk


def stream_scene(engine: Engine, script: str, seed: int) -> SceneStream:
    """Streams `script` from SynthWorld scene `seed` and renders its ground truth along the same keys."""
    scene = synthworld_start(seed, engine.height, engine.width)
    chunks = script_to_chunks(script, engine.frames_per_chunk)
    session = PlaySession(engine)
    session.start(scene)
    frames, seconds = [scene.first_frame[None]], []
    for chunk_actions in chunks:
        chunk = session.step([key for key, on in zip(ACTION_KEYS, chunk_actions[0]) if on])
        frames.append(chunk.frames)
        seconds.append(chunk.step_seconds)
    final_map = session.map()
    session.close()
    c2w = integrate(frame_deltas_of(chunks.reshape(-1, len(ACTION_KEYS))), scene.c2w).astype(np.float32)
    truth = render_clip(seed, c2w, engine.height, engine.width)
    return SceneStream(seed, np.concatenate(frames), truth["video"], c2w, truth["intrinsics"], seconds, final_map)


def score_scene(stream: SceneStream, revisit_gap: int) -> dict:
    """The clip metrics of video_eval, the revisit figures, PSNR per block and the stream's speed."""
    result = evaluate_clip(stream.generated, stream.truth, stream.c2w, stream.intrinsics)
    later, earlier = revisit_pairs(stream.c2w, revisit_gap)
    steady = stream.step_seconds[1:]
    pixels_per_chunk = (len(stream.generated) - 1) // len(stream.step_seconds)
    result.update(revisit_scores(stream.generated, stream.truth, later, earlier),
                  name=f"seed {stream.seed}", seed=stream.seed, psnr_per_block=block_psnr(stream.generated, stream.truth),
                  revisit_first_frame=int(later[0]) if len(later) else None,
                  frames_per_second=len(steady) * pixels_per_chunk / sum(steady) if steady else float("nan"),
                  first_chunk_ms=1000.0 * stream.step_seconds[0], chunk_latency=latency_summary(steady),
                  memory={group: len(stream.final_map[group]) for group in ("sink", "local", "selected")})
    return result


def summarise_streams(results: list[dict]) -> dict:
    """summarise()'s means, plus mean and standard deviation over scenes of each stream figure."""
    summary = summarise(results)
    for key in SCALARS:
        values = np.asarray([r[key] for r in results], np.float64)
        summary[f"{key}_mean"], summary[f"{key}_std"] = float(np.mean(values)), float(np.std(values))
    summary["revisit_frames_per_scene"] = float(np.mean([r["revisit_frames"] for r in results]))
    return summary


def run_demo(engine: Engine, script: str = DEMO_KEYS, scenes: int = 1, first_scene: int = 0,
             out_dir: str = "runs/demo", revisit_gap: int = REVISIT_GAP) -> dict:
    """Streams, scores and writes held-out scenes first_scene .. first_scene + scenes - 1; returns the summary."""
    if scenes < 1 or first_scene < 0:
        raise ValueError(f"stream demo: scenes must be >= 1 and first_scene >= 0, got {scenes}, {first_scene}")
    seeds = split_seeds("heldout", first_scene + scenes)[first_scene:]
    streams, results = [], []
    for seed in tqdm(seeds, desc="stream + score", unit="scene"):
        streams.append(stream_scene(engine, script, seed))
        results.append(score_scene(streams[-1], revisit_gap))
    summary = summarise_streams(results)
    summary.update(keys=script, frames=len(streams[0].generated), engine=getattr(engine, "label", engine.name),
                   revisit_gap_frames=revisit_gap)
    generated, truth = np.stack([s.generated for s in streams]), np.stack([s.truth for s in streams])
    c2w = np.stack([s.c2w for s in streams])
    write_report(out_dir, summary, results, generated, truth, c2w)
    write_mp4(os.path.join(out_dir, "generated_vs_truth.mp4"), side_by_side(generated, truth), fps=16)
    maps = [draw_camera_map(s.final_map) for s in streams]
    Image.fromarray(np.concatenate(maps, axis=1)).save(os.path.join(out_dir, "camera_map.png"))
    Image.fromarray(plot_block_psnr(results)).save(os.path.join(out_dir, "psnr_blocks.png"))
    np.savez_compressed(os.path.join(out_dir, "videos.npz"), generated=generated, truth=truth, c2w=c2w)
    with open(os.path.join(out_dir, "report.md"), "a") as handle:
        handle.write(stream_report(summary, results))
    return summary


def plot_block_psnr(results: list[dict], width: int = 480, height: int = 200, margin: int = 28) -> np.ndarray:
    """uint8 picture: PSNR per 4-frame block over time, mean over scenes (black) and each scene (grey);
    blocks from the first revisit on are shaded."""
    curves = np.asarray([r["psnr_per_block"] for r in results], np.float64)
    curves = np.where(np.isfinite(curves), curves, np.nan)
    low, high = np.nanmin(curves) - 1.0, np.nanmax(curves) + 1.0
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)

    def point(i, value):
        return (margin + i / max(curves.shape[1] - 1, 1) * (width - 2 * margin),
                height - margin - (value - low) / (high - low) * (height - 2 * margin))

    first = results[0]["revisit_first_frame"]
    if first is not None:
        draw.rectangle([point((first - 1) / 4, high)[0], margin, width - margin, height - margin], fill=(255, 236, 210))
    for curve, colour in [(c, (190, 190, 190)) for c in curves] + [(np.nanmean(curves, 0), (0, 0, 0))]:
        draw.line([point(i, v) for i, v in enumerate(curve) if np.isfinite(v)], fill=colour, width=2)
    draw.text((4, 4), f"PSNR per 4-frame block, {high:.1f} dB top / {low:.1f} dB bottom; shaded: revisits", fill=0)
    draw.text((margin, height - margin + 6), "time (blocks) ->", fill=0)
    return np.asarray(image)


def stream_report(summary: dict, results: list[dict]) -> str:
    """The markdown section report.md gains: the stream's figures, per scene and mean ± std."""
    def both(key, digits=2):
        return f"{summary[key + '_mean']:.{digits}f} ± {summary[key + '_std']:.{digits}f}"

    lines = ["", "## Stream", "",
             f"Keys {summary['keys']!r} ({summary['frames']} frames) on {summary['num_clips']} held-out scene(s), "
             f"engine {summary['engine']}; a revisit is a frame at the pose of one {summary['revisit_gap_frames']}+ "
             "frames earlier (mean ± std over scenes).", "",
             "| figure | value |", "|---|---|",
             f"| frames/s (stream with decode, after the first chunk) | {both('frames_per_second', 1)} |",
             f"| PSNR, all frames after the first (dB) | {both('psnr')} |",
             f"| revisit PSNR vs ground truth (dB) | {both('revisit_psnr_truth')} |",
             f"| first-visit PSNR vs ground truth, same poses (dB) | {both('first_visit_psnr_truth')} |",
             f"| revisit PSNR vs the first visit (dB) | {both('revisit_psnr_first_visit')} |",
             f"| Trajectory Accuracy (fraction of scenes) | {summary['trajectory_accuracy']:.3f} |", "",
             "| scene | frames/s | revisit frames | revisit vs GT | first visit vs GT | revisit vs first visit | "
             "memory at the end (sink / local / selected) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["memory"]
        lines.append(f"| {r['name']} | {r['frames_per_second']:.1f} | {r['revisit_frames']} | "
                     f"{r['revisit_psnr_truth']:.2f} | {r['first_visit_psnr_truth']:.2f} | "
                     f"{r['revisit_psnr_first_visit']:.2f} | {m['sink']} / {m['local']} / {m['selected']} |")
    lines += ["", "![camera map at the end of each path](camera_map.png)", "",
              "![PSNR per 4-frame block](psnr_blocks.png)", ""]
    return "\n".join(lines)


def print_summary(summary: dict, out_dir: str) -> None:
    """The demo's figures on the terminal, and how to play the world interactively."""
    def both(key, digits=2):
        return f"{summary[key + '_mean']:.{digits}f} ± {summary[key + '_std']:.{digits}f}"

    print(f"wrote {out_dir}/: generated_vs_truth.mp4, camera_map.png, contact_sheet.png, paths.png, "
          "psnr_blocks.png, metrics.json, report.md, videos.npz")
    print(f"{summary['num_clips']} held-out scene(s), keys {summary['keys']!r}, {summary['frames']} frames, "
          f"{summary['engine']} (mean ± std over scenes)")
    print(f"stream with decode: {both('frames_per_second', 1)} frames/s")
    print(f"PSNR {both('psnr')} dB; revisits ({summary['revisit_frames_per_scene']:.0f} frames per scene): "
          f"{both('revisit_psnr_truth')} dB vs ground truth (first visit at the same poses "
          f"{both('first_visit_psnr_truth')} dB), {both('revisit_psnr_first_visit')} dB vs the first visit")
    print(f"Trajectory Accuracy {summary['trajectory_accuracy']:.3f} (pose estimator on the ground-truth video: "
          f"{summary['trajectory_ground_truth_video_accuracy']:.3f})")
    print("play it yourself: python launch/play.py  (then open http://127.0.0.1:8765/ and hold W/A/S/D/Q/E/R/F)")
