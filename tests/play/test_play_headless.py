"""Headless play: a key script writes the stream, its key log, contact sheet, camera map and metrics."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from worldscape_jax.play.camera_map import heading_deg
from worldscape_jax.play.engines import SynthWorldEngine
from worldscape_jax.play.headless import play_script
from worldscape_jax.play.scene_start import synthworld_start
from worldscape_jax.training.media import Mp4Writer, read_mp4


def test_a_key_script_writes_every_file(tmp_path):
    engine = SynthWorldEngine(supersample=1)
    scene = synthworld_start(5, 64, 64)
    metrics = play_script(engine, "w*2,e*3", scene, str(tmp_path))
    for name in ("stream.mp4", "stream.keys.jsonl", "contact_sheet.png", "camera_map.png", "metrics.json"):
        assert os.path.getsize(tmp_path / name) > 0, name
    assert metrics["chunks"] == 5 and metrics["frames"] == 1 + 5 * 4
    assert read_mp4(tmp_path / "stream.mp4").shape == (21, 64, 64, 3)
    assert len(metrics["chunk_latency_ms"]) == 5 and metrics["frames_per_second"] > 0
    assert metrics["final_camera"]["heading_deg"] == pytest.approx(heading_deg(scene.c2w) + 9.0, abs=1e-3)
    lines = [json.loads(line) for line in open(tmp_path / "stream.keys.jsonl")]
    assert [line["keys"] for line in lines[1:]] == ["w", "w", "e", "e", "e"]
    assert json.load(open(tmp_path / "metrics.json"))["script"] == "w*2,e*3"


def test_mp4_writer_takes_frames_one_at_a_time(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 17, 33, 3), dtype=np.uint8)
    with Mp4Writer(tmp_path / "a.mp4", fps=4) as writer:
        for frame in frames:
            writer.write(frame)
        with pytest.raises(ValueError, match="differs from the first"):
            writer.write(frames[0, :16])
    assert writer.frames_written == 5
    assert read_mp4(tmp_path / "a.mp4").shape == (5, 18, 34, 3)     # padded to even sizes for yuv420p
