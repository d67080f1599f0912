r"""Writes N SynthWorld clips to ArrayRecord through the TFDS builder (no TensorFlow needed).

    python launch/make_synthworld.py --out_dir=/tmp/synthworld --num_clips=64 --frames=17 \
        --height=64 --width=64 --kind=navigation

Prints the dataset directory; pass it to `worldscape_jax.data.tfds_builder.synthworld_array_record_source`.
"""

from absl import flags

from worldscape_jax import cli

flags.DEFINE_string("out_dir", None, "Where the TFDS data directory goes.", required=True)
flags.DEFINE_integer("num_clips", 64, "How many clips (scene seeds first_seed .. first_seed + num_clips - 1).")
flags.DEFINE_integer("frames", 17, "Frames per clip.")
flags.DEFINE_integer("height", 64, "Frame height in pixels.")
flags.DEFINE_integer("width", 64, "Frame width in pixels.")
flags.DEFINE_enum("kind", "navigation", ["navigation", "manipulation"], "Clip kind.")
flags.DEFINE_integer("first_seed", 0, "First scene seed.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import tensorflow_datasets as tfds

    from worldscape_jax.data import tfds_builder
    from worldscape_jax.data.errors import DataFormatError

    tfds.disable_progress_bar()  # one tqdm bar per split from the builder instead of TFDS's nested bars
    config = tfds_builder.make_config(FLAGS.kind, FLAGS.num_clips, FLAGS.frames, FLAGS.height, FLAGS.width,
                                      FLAGS.first_seed)
    dataset_dir = tfds_builder.build_synthworld(FLAGS.out_dir, config)
    for split in tfds_builder.SPLITS:
        try:
            count = len(tfds_builder.synthworld_array_record_source(dataset_dir, split))
        except DataFormatError:  # a small export may leave a split empty
            count = 0
        print(f"{split}: {count} clips")
    print(dataset_dir)


if __name__ == "__main__":
    cli.run(main)
