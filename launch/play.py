"""Play a WorldScape stream: in the browser with the keyboard, or headless from a key script.

  python launch/play.py                                   # serve http://127.0.0.1:8765/ (127.0.0.1 only)
  python launch/play.py --keys "w*40,e*20,s*40" --out runs/walk     # headless: mp4, sheet, map, metrics
  python launch/play.py --engine synthworld               # walk the real SynthWorld scene (ground truth)

The page shows the stream (hold W/A/S/D to move, Q/E to turn, R/F to look up and down), its frames
per second and key-to-frame latency, the scene seed with "new scene", reset, an image upload to start
from, the live camera map with sink / local window / selected memory, and "record" (mp4 + key log
into --record_dir). Everything lives in worldscape_jax/play/; this file only reads flags.
"""

from __future__ import annotations

from absl import app, flags, logging

from worldscape_jax import cli

_ENGINE = flags.DEFINE_enum("engine", "model", ["model", "synthworld"],
                            "model: the causal student's stream step; synthworld: render the real scene.")
_MEMORY = flags.DEFINE_enum("memory", "maco", ["maco", "rolling"], "For --engine=model: the KV cache, MACO "
                            "(sink, memory pool, local window) or rolling (sink and the most recent frames).")
_MODEL = flags.DEFINE_string("model", "asset:student_tiny", "Exported student (launch/export.py) or asset:NAME "
                             "for --engine=model; 'random' runs the student architecture at random init.")
_PORT = flags.DEFINE_integer("port", 8765, "Port on 127.0.0.1.")
_RECORD_DIR = flags.DEFINE_string("record_dir", "runs/play", "Where the record button writes mp4 + key logs.")
_KEYS = flags.DEFINE_string("keys", None, "Headless: a key script, e.g. 'w*40,e*20,s*40' (counts in latent "
                            "frames; keys from wasdqerf, '.' stands still).")
_OUT = flags.DEFINE_string("out", "runs/walk", "Headless: output directory.")
_SEED = flags.DEFINE_integer("seed", 7, "Headless: the SynthWorld scene seed of the first frame.")
_IMAGE = flags.DEFINE_string("image", None, "Headless: start from this image instead of a SynthWorld scene.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from worldscape_jax.play.engine_factory import make_engine

    engine = make_engine(_ENGINE.value, _MODEL.value, _MEMORY.value)
    if _KEYS.value is None:
        from worldscape_jax.play.server import serve

        serve(engine, _PORT.value, _RECORD_DIR.value)
        return
    from worldscape_jax.play.headless import play_script
    from worldscape_jax.play.scene_start import synthworld_start, upload_start

    if _IMAGE.value:
        with open(_IMAGE.value, "rb") as handle:
            scene = upload_start(handle.read(), engine.height, engine.width)
    else:
        scene = synthworld_start(_SEED.value, engine.height, engine.width)
    metrics = play_script(engine, _KEYS.value, scene, _OUT.value)
    latency = metrics["chunk_latency"]
    print(f"play: {metrics['frames']} frames in {metrics['chunks']} chunks -> {_OUT.value}/ "
          f"(stream.mp4, contact_sheet.png, camera_map.png, metrics.json); first chunk, with compilation: "
          f"{metrics['first_chunk_ms']:.0f} ms")
    if metrics["frames_per_second"] is not None:
        print(f"play: after it {metrics['frames_per_second']:.1f} frames/s, chunk latency mean "
              f"{latency['mean_ms']:.0f} ms, p95 {latency['p95_ms']:.0f} ms")


if __name__ == "__main__":
    cli.run(main)
