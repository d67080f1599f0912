"""evaluate_clip / summarise / write_report: the numbers agree with the metric functions and the
report files are written with the pictures people look at."""

import json
import os

import numpy as np

from worldscape_jax.eval import report, video_eval
from worldscape_jax.eval.image_metrics import psnr


def _clip(seed, frames=9, size=24):
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-10, 11, reference.shape)
    generated = np.clip(reference.astype(int) + noise, 0, 255).astype(np.uint8)
    return generated, reference, np.broadcast_to(np.eye(4, dtype=np.float32), (frames, 4, 4)).copy()


def test_evaluate_clip_and_report_files(tmp_path):
    generated, reference, c2w = _clip(0)
    result = video_eval.evaluate_clip(generated, reference, c2w, np.array([1.0, 1.0, 0.5, 0.5]))
    frame_mse = 10.0 ** (-np.asarray(psnr(generated, reference, 255.0), np.float64)[1:] / 10.0) * 255.0**2
    expected_psnr = 10.0 * np.log10(255.0**2 / np.mean(frame_mse))  # from the per-frame PSNRs
    assert abs(result["psnr"] - expected_psnr) < 1e-3
    assert 0.0 < result["ssim"] < 1.0
    assert result["psnr_first_frame_baseline"] < result["psnr"]  # noise of +-10 beats unrelated frames
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


def test_json_ready_turns_nan_into_null_and_drops_arrays():
    ready = report.json_ready({"a": [np.float32(np.nan), 1.5], "b": np.zeros(3), "c": {"d": float("nan")}})
    assert ready == {"a": [None, 1.5], "c": {"d": None}}


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
