"""Headless play: a key script through a play session, written as files instead of shown in a page.

`play_script` drives the same PlaySession as the server with the keys of a script like
"w*40,e*20,s*40" (counts in latent frames) and writes into `out_dir`:
  stream.mp4, stream.keys.jsonl   the stream and its key log (recorder.py, written as it runs)
  contact_sheet.png               8 frames evenly spaced over the stream
  camera_map.png                  the top-down map at the end (path, memory entries, camera)
  metrics.json                    frames per second and per-chunk step latency (the first chunk,
                                  which includes compilation, is reported apart)
Only the contact sheet's frames are kept in memory, so a script of any length runs in constant memory.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from worldscape_jax.play.camera_map import draw_camera_map
from worldscape_jax.play.engines import Engine
from worldscape_jax.play.keys import ACTION_KEYS, script_to_chunks
from worldscape_jax.play.scene_start import SceneStart
from worldscape_jax.play.session import PlaySession
from worldscape_jax.training.media import contact_sheet

SHEET_FRAMES = 8


def latency_summary(seconds: list[float]) -> dict:
    """Mean, median, 95th percentile and max of per-chunk times, in milliseconds."""
    ms = np.asarray(seconds, np.float64) * 1000.0
    if ms.size == 0:
        return {"mean_ms": None, "p50_ms": None, "p95_ms": None, "max_ms": None}
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())}


def play_script(engine: Engine, script: str, scene: SceneStart, out_dir: str, fps: int = 16) -> dict:
    """Plays `script` from `scene` and writes the files above; returns the metrics dict."""
    chunks = script_to_chunks(script, engine.frames_per_chunk)
    total_frames = 1 + len(chunks) * engine.pixel_frames_per_chunk
    keep = set(np.linspace(0, total_frames - 1, min(SHEET_FRAMES, total_frames)).round().astype(int).tolist())
    session = PlaySession(engine)
    scene_info = session.start(scene)
    os.makedirs(out_dir, exist_ok=True)
    session.start_recording(out_dir, "stream")
    kept, step_seconds = {0: scene.first_frame}, []
    for chunk_actions in tqdm(chunks, desc="play", unit="chunk"):
        names = [key for key, on in zip(ACTION_KEYS, chunk_actions[0]) if on]
        chunk = session.step(names)
        first = 1 + chunk.index * engine.pixel_frames_per_chunk
        kept.update({first + i: frame for i, frame in enumerate(chunk.frames) if first + i in keep})
        step_seconds.append(chunk.step_seconds)
    recorded = session.stop_recording()
    final_map = session.map()
    session.close()
    sheet = contact_sheet(np.stack([kept[i] for i in sorted(kept)])[None])
    Image.fromarray(sheet).save(os.path.join(out_dir, "contact_sheet.png"))
    Image.fromarray(draw_camera_map(final_map)).save(os.path.join(out_dir, "camera_map.png"))
    steady = step_seconds[1:]
    metrics = {"scene": scene_info, "script": script, "chunks": len(chunks), "frames": recorded["frames"],
               "frames_per_second": (len(steady) * engine.pixel_frames_per_chunk / sum(steady)) if steady else None,
               "first_chunk_ms": step_seconds[0] * 1000.0 if step_seconds else None,
               "chunk_latency": latency_summary(steady), "chunk_latency_ms": [s * 1000.0 for s in step_seconds],
               "final_camera": final_map["camera"],
               "memory": {group: len(final_map[group]) for group in ("sink", "local", "selected")}}
    with open(os.path.join(out_dir, "metrics.json"), "w") as handle:
        json.dump(metrics, handle, indent=2)
    return metrics
