"""The README's two commands end to end. The main job (launch/demo.sh -> launch/stream_demo.py: a student
streams held-out scenes along a path that returns) runs at random init on a short path: it writes every
file it promises, its JSON is strict, its figures are those of the videos it saved. The teacher's
offline generation (launch/generate.py on the committed tiny teacher and VAE) writes its files, and
zeroing the camera changes the video. Quality figures belong to the evaluation and BENCHMARKS.md."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _reject_non_json(constant):
    raise AssertionError(f"metrics.json holds {constant}, which strict JSON readers reject")


def _launch(script, out, *flags):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, os.path.join(REPO, "launch", script), f"--out={out}", *flags],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _generate(out, *flags):
    return _launch("generate.py", out, "--scenes=1", *flags)


def _clip_psnr_after_first_frame(video, truth):
    """PSNR (peak 255) from the MSE of frames 1.. (frame 0 is given), written out here."""
    error = video[1:].astype(np.float64) - truth[1:].astype(np.float64)
    return 10 * np.log10(255.0**2 / np.mean(error**2))


def test_the_stream_demo_writes_its_files_and_scores_the_streams_it_saved(tmp_path):
    result = _launch("stream_demo.py", tmp_path, "--model=random", "--keys=e*3,w*2,s*2,q*3", "--revisit_gap=8",
                     "--scenes=2")
    for name in ("generated_vs_truth.mp4", "camera_map.png", "contact_sheet.png", "paths.png", "psnr_blocks.png",
                 "metrics.json", "report.md", "videos.npz"):
        assert os.path.getsize(tmp_path / name) > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=_reject_non_json)
    summary, clips = metrics["summary"], metrics["clips"]
    assert summary["num_clips"] == 2 and summary["frames"] == 41 and summary["keys"] == "e*3,w*2,s*2,q*3"
    for key in ("psnr", "ssim", "revisit_psnr_truth", "first_visit_psnr_truth", "revisit_psnr_first_visit",
                "frames_per_second"):
        assert np.isfinite(summary[f"{key}_mean"]) and np.isfinite(summary[f"{key}_std"]), key
    assert np.isfinite(summary["trajectory_accuracy"])
    videos = np.load(tmp_path / "videos.npz")
    assert videos["generated"].shape == videos["truth"].shape == (2, 41, 64, 64, 3)
    assert videos["c2w"].shape == (2, 41, 4, 4)
    np.testing.assert_array_equal(videos["generated"][:, 0], videos["truth"][:, 0])   # the given first frame
    for clip, generated, truth in zip(clips, videos["generated"], videos["truth"]):
        assert clip["revisit_frames"] == 17 and len(clip["psnr_per_block"]) == 10
        assert clip["revisit_psnr_truth"] == pytest.approx(_clip_psnr_after_first_frame(
            generated[23:], truth[23:]), abs=1e-9)                      # frames 24..40 revisit 16..0
        assert clip["memory"]["sink"] == 1
    assert "## Stream" in (tmp_path / "report.md").read_text()
    for needle in ("frames/s", "revisit", "Trajectory Accuracy", "python launch/play.py"):
        assert needle in result.stdout, needle


def test_generate_on_the_committed_teacher_writes_its_files_and_scores_the_videos_it_saved(tmp_path):
    result = _generate(tmp_path)
    for name in ("generated_vs_truth.mp4", "contact_sheet.png", "paths.png", "metrics.json", "report.md",
                 "videos.npz"):
        assert os.path.getsize(tmp_path / name) > 0, name
    summary = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=_reject_non_json)["summary"]
    assert summary["num_clips"] == 1 and summary["actions"] == "w,q" and summary["source"] == "teacher"
    for key in ("psnr", "psnr_first_frame_baseline", "ssim", "trajectory_accuracy", "camera_zeroed_psnr",
                "camera_zeroed_trajectory_accuracy", "trajectory_ground_truth_video_accuracy"):
        assert np.isfinite(summary[key]), key
    videos = np.load(tmp_path / "videos.npz")
    for name in ("generated", "truth", "camera_zeroed"):
        assert videos[name].shape == (1, 9, 64, 64, 3) and videos[name].dtype == np.uint8, name
    assert videos["c2w"].shape == (1, 9, 4, 4) and videos["intrinsics"].shape == (1, 9, 4)
    assert np.mean(videos["generated"] != videos["camera_zeroed"]) > 0.01  # the camera input is used
    truth = videos["truth"][0]
    assert summary["psnr"] == pytest.approx(_clip_psnr_after_first_frame(videos["generated"][0], truth), abs=1e-9)
    assert summary["camera_zeroed_psnr"] == pytest.approx(
        _clip_psnr_after_first_frame(videos["camera_zeroed"][0], truth), abs=1e-9)
    repeated = np.broadcast_to(truth[:1], truth.shape)
    assert summary["psnr_first_frame_baseline"] == pytest.approx(_clip_psnr_after_first_frame(repeated, truth),
                                                                 abs=1e-9)
    for needle in (f"PSNR {summary['psnr']:.2f} dB", "Trajectory Accuracy", "camera zeroed", "rigid rotation"):
        assert needle in result.stdout, needle


def test_vae_ceiling_scores_the_round_trip_of_the_ground_truth(tmp_path):
    _generate(tmp_path, "--vae_ceiling", "--actions=pan")
    summary = json.loads((tmp_path / "metrics.json").read_text())["summary"]
    assert summary["source"] == "vae_reconstruction" and summary["actions"] == "pan"
    assert "camera_zeroed_trajectory_accuracy" not in summary
    videos = np.load(tmp_path / "videos.npz")
    assert "camera_zeroed" not in videos
    assert summary["psnr"] == pytest.approx(
        _clip_psnr_after_first_frame(videos["generated"][0], videos["truth"][0]), abs=1e-9)
