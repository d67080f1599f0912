"""Benchmark the play page in headless Chromium: frames per second and key-to-frame latency.

  python launch/bench_play.py                          # the student's stream step (--model), tiny scale
  python launch/bench_play.py --engine synthworld      # the ground-truth renderer as the engine

Serves the page on 127.0.0.1, opens it in Debian's chromium (Playwright, no browser download),
then presses keys one after another (W, E, A, Q, ... each held for --hold_s): key-to-frame latency is
the time from a key going down to the page drawing the first frame of a chunk made with it (measured
by the page itself, performance.now()); frames per second is what the page drew over the whole timed
window; the interval between chunks arriving is reported beside them. The first chunks (compilation)
are excluded by a warm-up.
"""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
from absl import app, flags, logging

from worldscape_jax import cli

_ENGINE = flags.DEFINE_enum("engine", "model", ["model", "synthworld"], "What makes the frames.")
_MEMORY = flags.DEFINE_enum("memory", "maco", ["maco", "rolling"], "For --engine=model: the KV cache, MACO "
                            "(sink, memory pool, local window) or rolling (sink and the most recent frames).")
_MODEL = flags.DEFINE_string("model", "asset:student_tiny", "For --engine=model: export, asset:NAME or 'random'.")
_PRESSES = flags.DEFINE_integer("presses", 12, "Key presses timed.")
_HOLD_S = flags.DEFINE_float("hold_s", 0.6, "How long each key is held.")
_WARMUP_FRAMES = flags.DEFINE_integer("warmup_frames", 24, "Frames drawn before timing starts.")
_SCREENSHOT = flags.DEFINE_string("screenshot", "", "Optional PNG path: the page after the last key press "
                                  "(docs/play_page.png is taken this way).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from playwright.sync_api import sync_playwright

    from worldscape_jax.play.engine_factory import make_engine
    from worldscape_jax.play.server import BackgroundServer

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("bench_play: needs Debian's chromium (apt-get install -y chromium)")
    engine = make_engine(_ENGINE.value, _MODEL.value, _MEMORY.value)
    server = BackgroundServer(engine, tempfile.mkdtemp(prefix="bench_play_"))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_function(f"window.play && play.scene && play.framesDrawn >= {_WARMUP_FRAMES.value}",
                                   timeout=600_000)
            page.focus("#stream")
            start = page.evaluate("({frames: play.framesDrawn, t: performance.now(), chunks: play.chunksReceived})")
            for press in range(_PRESSES.value):
                key = "weaq"[press % 4]
                page.keyboard.down(key)
                page.wait_for_timeout(_HOLD_S.value * 1000)
                page.keyboard.up(key)
            end = page.evaluate("({frames: play.framesDrawn, t: performance.now(), chunks: play.chunksReceived, "
                                "latencies: play.latencies, errors: play.errors})")
            if _SCREENSHOT.value:
                page.screenshot(path=_SCREENSHOT.value)
            browser.close()
    finally:
        server.close()
    seconds = (end["t"] - start["t"]) / 1000.0
    latencies = np.asarray(end["latencies"], np.float64)
    fps = (end["frames"] - start["frames"]) / seconds
    chunk_ms = seconds * 1000.0 / max(1, end["chunks"] - start["chunks"])
    print(f"bench_play: engine={engine.name} ({_MODEL.value if _ENGINE.value == 'model' else 'ground truth'}), "
          f"{engine.width}x{engine.height}, {engine.pixel_frames_per_chunk} frames per chunk, "
          f"{seconds:.1f} s timed, {len(latencies)} key presses measured")
    print(f"  frames per second in the page: {fps:.1f} (target >= 16: {'met' if fps >= 16 else 'NOT met'})")
    print(f"  key-to-frame latency: mean {latencies.mean():.0f} ms, p50 {np.percentile(latencies, 50):.0f} ms, "
          f"p95 {np.percentile(latencies, 95):.0f} ms, max {latencies.max():.0f} ms "
          f"(target < 250 ms: {_verdict(latencies)})")
    print(f"  chunks received: one every {chunk_ms:.0f} ms; page errors: {end['errors'] or 'none'}")


def _verdict(latencies: np.ndarray) -> str:
    met = [name for name, q in (("p50", 50), ("p95", 95)) if np.percentile(latencies, q) < 250]
    return f"met at {' and '.join(met)}" if met else "NOT met at p50"


if __name__ == "__main__":
    cli.run(main)
