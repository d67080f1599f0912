"""TFDS/ArrayRecord export of SynthWorld: clips round-trip exactly, split by seed, readable without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from worldscape_jax.data.errors import DataFormatError
from worldscape_jax.data.pipeline import PipelineConfig, make_iterator
from worldscape_jax.data.tfds_builder import build_synthworld, make_config, synthworld_array_record_source


def fake_clip(seed: int, frames: int, height: int, width: int, kind: str) -> dict:
    """A stand-in generator with every key of a SynthWorld clip, random but fixed by the seed."""
    rng = np.random.default_rng(seed)
    clip = {
        "video": rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        "depth": rng.uniform(0.5, 9.0, (frames, height, width)).astype(np.float32),
        "c2w": np.tile(np.eye(4, dtype=np.float32), (frames, 1, 1)),
        "intrinsics": rng.uniform(0.3, 1.0, (frames, 4)).astype(np.float32),
        "scene_seed": np.int64(seed),
    }
    if kind == "manipulation":
        clip["hand_keypoints"] = rng.normal(size=(frames, 21, 3)).astype(np.float32)
        clip["hand_keypoints_2d"] = rng.uniform(0, width, (frames, 21, 2)).astype(np.float32)
        clip["pose_video"] = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return clip


def every_third_held_out(seed: int) -> str:
    return "heldout" if seed % 3 == 0 else "train"


@pytest.mark.parametrize("kind", ["navigation", "manipulation"])
def test_round_trip_and_split_by_seed(tmp_path, kind):
    config = make_config(kind, num_clips=7, frames=3, height=6, width=5, first_seed=10)
    dataset_dir = build_synthworld(tmp_path, config, generate=fake_clip, split_fn=every_third_held_out)
    seen = {}
    for split in ("train", "heldout"):
        source = synthworld_array_record_source(dataset_dir, split)
        for index in range(len(source)):
            clip = source[index]
            seed = int(clip["scene_seed"])
            assert every_third_held_out(seed) == split
            expected = fake_clip(seed, 3, 6, 5, kind)
            assert set(clip) == set(expected)
            for key, value in expected.items():
                np.testing.assert_array_equal(clip[key], value)
                assert np.asarray(clip[key]).dtype == value.dtype
            seen[seed] = split
    assert sorted(seen) == list(range(10, 17))


def test_missing_split_and_wrong_directory(tmp_path):
    dataset_dir = build_synthworld(tmp_path, make_config("navigation", 2, 2, 4, 4, first_seed=1),
                                   generate=fake_clip, split_fn=lambda seed: "train")
    with pytest.raises(DataFormatError, match="no split 'heldout'; it has \\['train'\\]"):
        synthworld_array_record_source(dataset_dir, "heldout")
    with pytest.raises(DataFormatError, match="expected a TFDS dataset directory"):
        synthworld_array_record_source(tmp_path, "train")


def test_build_and_read_without_tensorflow(tmp_path):
    """In a fresh interpreter where importing TensorFlow fails, the export and the read both work."""
    script = textwrap.dedent(f"""
        import importlib.abc, importlib.util, sys

        def is_tensorflow(name):
            return name.split(".")[0] == "tensorflow"

        class HideTensorFlow(importlib.abc.MetaPathFinder):  # `import tensorflow` fails as if not installed
            def find_spec(self, name, path=None, target=None):
                if is_tensorflow(name):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        real_find_spec = importlib.util.find_spec  # and probing for it (as etils does) finds nothing
        importlib.util.find_spec = lambda name, *a, **k: None if is_tensorflow(name) else real_find_spec(name, *a, **k)
        sys.meta_path.insert(0, HideTensorFlow())
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from test_tfds_builder import fake_clip, every_third_held_out
        from worldscape_jax.data.tfds_builder import build_synthworld, make_config, synthworld_array_record_source
        d = build_synthworld({str(tmp_path)!r}, make_config("manipulation", 4, 2, 4, 4),
                             generate=fake_clip, split_fn=every_third_held_out)
        clip = synthworld_array_record_source(d, "train")[0]
        assert not any(m.split(".")[0] == "tensorflow" for m in sys.modules)
        print("OK", sorted(clip))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout and "pose_video" in result.stdout


def test_real_synthworld_export_feeds_the_pipeline(tmp_path):
    from worldscape_jax.data.synthworld import split_of

    dataset_dir = build_synthworld(tmp_path, make_config("navigation", num_clips=3, frames=5, height=12, width=16))
    train = synthworld_array_record_source(dataset_dir, "train")
    assert len(train) == sum(split_of(seed) == "train" for seed in range(3))
    config = PipelineConfig(batch_size=2, num_frames=3, height=8, width=8, frame_stride=2, with_depth=True,
                            process_index=0, process_count=1, read_threads=1, prefetch_batches=1)
    batch = next(make_iterator(train, config))
    assert batch["video"].shape == (2, 3, 8, 8, 3) and batch["depth"].shape == (2, 3, 8, 8)
    np.testing.assert_allclose(batch["c2w"][:, 0], np.broadcast_to(np.eye(4), (2, 4, 4)), atol=1e-6)
    assert np.all(batch["depth"] > 0)
