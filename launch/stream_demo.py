"""The main job (launch/demo.sh): the tiny student streams held-out SynthWorld scenes with MACO along a
path that leaves a place and returns, and is scored against ground truth.

  python launch/stream_demo.py                          # one scene, keys e*24,w*12,s*12,q*24 (289 frames)
  python launch/stream_demo.py --scenes=8               # the figures of README and BENCHMARKS.md
  python launch/stream_demo.py --memory=rolling         # the same path with the rolling cache (no memory)
  python launch/stream_demo.py --model=random --keys=e*3,w*2,s*2,q*3 --revisit_gap=8   # the machinery, fast

Writes --out (generated_vs_truth.mp4, camera_map.png, contact_sheet.png, paths.png, psnr_blocks.png,
metrics.json, report.md, videos.npz; see worldscape_jax/play/demo.py) and prints the figures and how to
play the world yourself.
"""

from __future__ import annotations

from absl import app, flags, logging

from worldscape_jax import cli
from worldscape_jax.geometry.actions import parse_actions
from worldscape_jax.play.demo import DEMO_KEYS, REVISIT_GAP

_MODEL = flags.DEFINE_string("model", "asset:student_tiny", "Exported student (launch/export.py), asset:NAME, or "
                             "'random' (the student's architecture at random init: tests the machinery only).")
_MEMORY = flags.DEFINE_enum("memory", "maco", ["maco", "rolling"], "The KV cache: MACO (sink, memory pool, local "
                            "window) or rolling (sink and the most recent frames).")
_KEYS = flags.DEFINE_string("keys", DEMO_KEYS, "Key script (counts in latent frames, 4 pixel frames "
                            "each); the default turns right 72 degrees, walks out and back, and turns back.")
_SCENES = flags.DEFINE_integer("scenes", 1, "Number of held-out scenes.", lower_bound=1)
_FIRST_SCENE = flags.DEFINE_integer("first_scene", 0, "Index of the first held-out scene.", lower_bound=0)
_REVISIT_GAP = flags.DEFINE_integer("revisit_gap", REVISIT_GAP, "Pixel frames that must pass before a pose seen again "
                                    "counts as a revisit.", lower_bound=1)
_OUT = flags.DEFINE_string("out", "runs/demo", "Output directory.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed of the stream.")


@flags.validator("keys", message="--keys must be a key script like 'e*24,w*12'")
def _check_keys(keys: str) -> bool:
    try:
        parse_actions(keys)
    except ValueError as e:
        raise flags.ValidationError(f"--keys: {e}") from e
    return True


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from worldscape_jax.play.demo import print_summary, run_demo
    from worldscape_jax.play.model_engine import load_model_engine

    engine = load_model_engine(_MODEL.value, seed=_SEED.value, memory=_MEMORY.value)
    summary = run_demo(engine, _KEYS.value, _SCENES.value, _FIRST_SCENE.value, _OUT.value, _REVISIT_GAP.value)
    print_summary(summary, _OUT.value)


if __name__ == "__main__":
    cli.run(main)
