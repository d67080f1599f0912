"""evaluate_clip / summarise / write_report: the numbers agree with the metric functions and the
report files are written with the pictures people look at."""

import json
import os

import numpy as np
import pytest

from worldscape_jax.eval import report, video_eval


def _clip(seed, frames=9, size=24):
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-10, 11, reference.shape)
    generated = np.clip(reference.astype(int) + noise, 0, 255).astype(np.uint8)
    return generated, reference, np.broadcast_to(np.eye(4, dtype=np.float32), (frames, 4, 4)).copy()


def _offset_clip(frames=9, size=24):
    """Frame k of the truth is a random image plus 3k; the generated frame k is the truth plus k, and frame
    0 is off by 50 (it is given, so the clip PSNR must skip it). No value is clipped, so every squared
    error is a constant per frame: the MSE after frame 0 is mean(k^2), the first-frame baseline's mean((3k)^2)."""
    base = np.random.default_rng(0).integers(20, 150, (size, size, 3))
    k = np.arange(frames)[:, None, None, None]
    reference = (base + 3 * k).astype(np.uint8)
    offsets = np.where(k == 0, 50, k)
    generated = (reference + offsets).astype(np.uint8)
    return generated, reference, np.broadcast_to(np.eye(4, dtype=np.float32), (frames, 4, 4)).copy()


def test_evaluate_clip_and_report_files(tmp_path):
    generated, reference, c2w = _offset_clip()
    result = video_eval.evaluate_clip(generated, reference, c2w, np.array([1.0, 1.0, 0.5, 0.5]))
    k = np.arange(1, 9)
    assert result["psnr"] == pytest.approx(10 * np.log10(255.0**2 / np.mean(k**2.0)), abs=1e-6)  # 34.07 dB
    assert result["psnr_first_frame_baseline"] == pytest.approx(10 * np.log10(255.0**2 / np.mean((3.0 * k) ** 2)),
                                                                abs=1e-6)
    np.testing.assert_allclose(result["psnr_per_frame"], 10 * np.log10(255.0**2 / np.r_[50, k] ** 2.0), atol=1e-4)
    assert 0.0 < result["ssim"] < 1.0
    summary = video_eval.summarise([result, result])
    assert summary["num_clips"] == 2 and abs(summary["psnr"] - result["psnr"]) < 1e-9
    paths = report.write_report(str(tmp_path), summary, [result], generated[None], reference[None], c2w[None])
    assert all(os.path.exists(path) for path in paths.values())
    metrics = json.loads(open(paths["metrics.json"]).read(), parse_constant=_reject_non_json)
    assert "aligned_c2w" not in metrics["clips"][0]["trajectory"]
    assert len(metrics["clips"][0]["trajectory"]["turn_evidence"]) == result["trajectory"]["num_blocks"]
    sheet = report.paired_contact_sheet(generated[None], reference[None], max_columns=3)
    np.testing.assert_array_equal(sheet[:24, :24], reference[0])  # ground truth is the first row
    np.testing.assert_array_equal(sheet[26:50, :24], generated[0])


def _reject_non_json(constant):
    raise AssertionError(f"metrics.json holds {constant}, which strict JSON readers reject")


def test_json_ready_turns_nan_and_infinities_into_null_and_drops_arrays():
    ready = report.json_ready({"a": [np.float32(np.nan), 1.5, np.float64(np.inf)], "b": np.zeros(3),
                               "c": {"d": float("nan"), "e": -float("inf")}})
    assert ready == {"a": [None, 1.5, None], "c": {"d": None, "e": None}}


def test_a_still_frame_leaves_the_clip_psnr_finite():
    generated, reference, c2w = _clip(2)
    reference[3] = reference[0]  # a still step: repeating the first frame is exact there
    result = video_eval.evaluate_clip(generated, reference, c2w, np.array([1.0, 1.0, 0.5, 0.5]))
    assert np.isfinite(result["psnr_first_frame_baseline"]) and np.isfinite(result["psnr"])
    frames_after_first = (reference[1:].astype(float) - reference[0].astype(float)) ** 2
    assert abs(result["psnr_first_frame_baseline"] - 10 * np.log10(255.0**2 / frames_after_first.mean())) < 1e-9


def test_set_fvd_needs_two_clips():
    generated, reference, _ = _clip(1)
    assert video_eval.set_fvd(generated[None], reference[None])["fvd"] is None
