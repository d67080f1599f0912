"""Data-layer throughput: Grain batches per second from SynthWorld ArrayRecord vs rendered on the fly.

    JAX_PLATFORMS=cpu python launch/bench_data.py --num_clips=32 --frames=17 --size=64 --out_size=48

Builds a small ArrayRecord export in a temporary folder (timed separately), then times the same
pipeline (batch 4, stride 1, resize + random crop to --out_size, depth included) over both sources,
after one warm-up batch each (the on-the-fly source compiles the renderer then).
"""

import tempfile
import time

from absl import flags

from worldscape_jax import cli

flags.DEFINE_integer("num_clips", 32, "Clips in the export / the on-the-fly source.")
flags.DEFINE_integer("frames", 17, "Frames per stored clip.")
flags.DEFINE_integer("size", 64, "Stored clip height and width.")
flags.DEFINE_integer("out_size", 48, "Batch height and width (resize + crop).")
flags.DEFINE_integer("batches", 20, "Timed batches per source.")
flags.DEFINE_integer("batch_size", 4, "Clips per batch.")
FLAGS = flags.FLAGS


def time_batches(source, config, count: int) -> float:
    """Batches per second over `count` batches after one warm-up batch."""
    from worldscape_jax.data.pipeline import make_iterator

    iterator = make_iterator(source, config)
    next(iterator)
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - start)


def main(argv):
    del argv
    import tensorflow_datasets as tfds

    from worldscape_jax.data import tfds_builder
    from worldscape_jax.data.pipeline import PipelineConfig
    from worldscape_jax.data.sources import SynthWorldSource

    tfds.disable_progress_bar()
    n, f, s = FLAGS.num_clips, FLAGS.frames, FLAGS.size
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        dataset_dir = tfds_builder.build_synthworld(out_dir, tfds_builder.make_config("navigation", n, f, s, s))
        export_s = time.perf_counter() - start
        stored = tfds_builder.synthworld_array_record_source(dataset_dir, "train")
        config = PipelineConfig(batch_size=FLAGS.batch_size, num_frames=f, height=FLAGS.out_size,
                                width=FLAGS.out_size, random_crop=True, with_depth=True, process_index=0,
                                process_count=1)
        stored_rate = time_batches(stored, config, FLAGS.batches)
        live = SynthWorldSource(range(n), f, s, s)
        live_rate = time_batches(live, config, FLAGS.batches)
    frames_per_batch = FLAGS.batch_size * f
    print(f"export: {n} clips of {f}x{s}x{s} in {export_s:.1f} s ({n / export_s:.1f} clips/s, incl. renderer compile)")
    print(f"ArrayRecord source: {stored_rate:.1f} batches/s ({stored_rate * frames_per_batch:.0f} frames/s)")
    print(f"on-the-fly source:  {live_rate:.1f} batches/s ({live_rate * frames_per_batch:.0f} frames/s)")
    print(f"ratio ArrayRecord / on-the-fly: {stored_rate / live_rate:.2f}x")


if __name__ == "__main__":
    cli.run(main)
