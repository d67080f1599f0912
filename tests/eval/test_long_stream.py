"""Long-stream evaluation (eval/long_stream.py): paths, per-block PSNR, the summary, the NaN flag.

A stub engine that streams flat grey frames (and chosen latents) stands in for a student, so every
figure has a naive reference computed here from the rendered ground truth."""

import types

import numpy as np
import pytest

from worldscape_jax.data.synthworld.clips import FREE_RADIUS, split_seeds
from worldscape_jax.eval import long_stream
from worldscape_jax.eval.revisit import block_psnr
from worldscape_jax.geometry.actions import actions_to_c2w
from worldscape_jax.play.keys import script_to_chunks
from worldscape_jax.play.scene_start import synthworld_start

SIZE = 32


class GreyEngine:
    """Every chunk is 4 grey frames of `level`; its latents hold `latent` (NaN to fake a blow-up)."""

    height = width = SIZE
    frames_per_chunk = 1

    def __init__(self, level: int, latent: float = 1.0):
        self.level, self.latent = level, latent

    def start(self, scene):
        return types.SimpleNamespace(stream=types.SimpleNamespace(chunk_latents=np.zeros((1, 1, 4, 4, 16))), chunk=0)

    def step(self, state, actions):
        assert actions.shape == (1, 8)
        latents = np.full((1, 1, 4, 4, 16), self.latent) * np.arange(16)  # std grows with `latent`
        state = types.SimpleNamespace(stream=types.SimpleNamespace(chunk_latents=latents), chunk=state.chunk + 1)
        return state, np.full((4, SIZE, SIZE, 3), self.level, np.uint8)


def naive_psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_paths_are_per_scene_and_family_deterministic_and_stay_in_the_free_radius():
    paths = {(f, s): long_path for f in long_stream.FAMILIES for s in (1, 2)
             for long_path in [long_stream.long_path(f, 60, s)]}
    assert len(set(paths.values())) == len(paths)
    assert long_stream.long_path("holds", 60, 1) == paths[("holds", 1)]
    for script in paths.values():
        c2w = actions_to_c2w(script)
        assert len(c2w) == 1 + 4 * 60
        assert np.linalg.norm(c2w[:, :3, 3] - c2w[0, :3, 3], axis=1).max() <= FREE_RADIUS - long_stream.PATH_MARGIN + 1e-6
    with pytest.raises(ValueError, match="unknown"):
        long_stream.long_path("orbit", 10, 1)


def test_block_psnr_summary_and_finite_flag_against_naive_figures(tmp_path):
    engines = {"grey": GreyEngine(128), "broken": GreyEngine(60, latent=np.nan)}
    results = long_stream.evaluate_long_streams(engines, ["keys"], scenes=2, steps=8)
    seeds = [int(s) for s in split_seeds("heldout", 2)]
    assert sorted(results["keys"]) == sorted(seeds)
    curves = []
    for seed in seeds:
        entry = results["keys"][seed]
        scene = synthworld_start(seed, SIZE, SIZE)
        truth = long_stream.truth_of(scene, script_to_chunks(entry["script"], 1))["video"]
        assert len(truth) == 1 + 4 * 8
        grey = np.full_like(truth, 128)
        expected = [naive_psnr(grey[i:i + 4], truth[i:i + 4]) for i in range(1, len(truth), 4)]
        np.testing.assert_allclose(entry["grey"]["blocks"], expected, rtol=1e-9)
        np.testing.assert_allclose(entry["first_frame_blocks"],
                                   [naive_psnr(np.broadcast_to(truth[:1], (4, *truth.shape[1:])), truth[i:i + 4])
                                    for i in range(1, len(truth), 4)], rtol=1e-9)
        np.testing.assert_allclose(entry["grey"]["latent_std"], np.std(np.arange(16)), rtol=1e-6)  # float32
        assert entry["grey"]["finite"] and not entry["broken"]["finite"]
        assert entry["grey"]["detail"] == [0.0] * 8  # flat frames have no detail at all
        curves.append(expected)
    summary = long_stream.summarise_long_streams(results, list(engines))
    row = summary["grey"]["keys"]
    quarters = np.asarray(curves).reshape(2, 4, 2).mean(axis=2)  # 8 blocks -> 4 quarters of 2
    np.testing.assert_allclose(row["quarters_mean"], quarters.mean(0), rtol=1e-9)
    np.testing.assert_allclose(row["drift_mean"], (quarters[:, 0] - quarters[:, 3]).mean(), rtol=1e-9)
    assert row["finite"] and not summary["broken"]["keys"]["finite"]
    assert row["detail_quarters_mean"] == [0.0] * 4
    assert summary["grey"]["all"]["scenes"] == 2
    path = tmp_path / "drift.png"
    long_stream.plot_long_streams(summary, list(engines), str(path), "test")
    from PIL import Image
    picture = np.asarray(Image.open(path).convert("L"), np.float64)
    assert picture.shape[0] > 100 and picture.std() > 5  # drawn, not blank


def _saved_run(path, name: str, baseline: float) -> str:
    """A minimal saved run of launch/long_stream.py (one model, one family) with a given first-frame level."""
    import json

    def row(level):
        return {"scenes": 2, "quarters_mean": [level] * 4, "quarters_std": [0.5] * 4, "drift_mean": 0.0,
                "drift_std": 0.0, "last_quarter_over_first_frame_mean": level - baseline,
                "last_quarter_over_first_frame_std": 0.0, "curve_mean": [level] * 8, "curve_std": [0.5] * 8}

    summary = {name: {"keys": row(20.0), "all": row(20.0)}, "first_frame": {"keys": row(baseline), "all": row(baseline)}}
    path.write_text(json.dumps({"models": {name: "export"}, "memory": "rolling", "steps": 8, "summary": summary}))
    return str(path)


def test_saved_runs_merge_only_when_they_share_the_baseline(tmp_path):
    """--from_json prints and plots two runs together, and refuses runs over other scenes or a name used twice."""
    import subprocess
    import sys

    a = _saved_run(tmp_path / "a.json", "alpha", 14.0)
    b = _saved_run(tmp_path / "b.json", "beta", 14.0)
    other = _saved_run(tmp_path / "other.json", "gamma", 12.0)
    plot = tmp_path / "merged.png"

    def merge(*paths):
        return subprocess.run([sys.executable, "launch/long_stream.py", f"--from_json={','.join(paths)}",
                               f"--plot={plot}"], capture_output=True, text=True, timeout=120)

    done = merge(a, b)
    assert done.returncode == 0, done.stderr
    assert "alpha" in done.stdout and "beta" in done.stdout and plot.exists()
    refused = merge(a, other)
    assert refused.returncode != 0 and "other.json" in refused.stderr + refused.stdout
    twice = merge(a, a)
    assert twice.returncode != 0 and "'alpha' appears in two runs" in twice.stderr + twice.stdout


def test_a_saved_run_with_its_streams_is_summarised_again_with_the_detail_ratio(tmp_path):
    """A run saved before the detail ratio existed in its summary, but whose streams hold it, prints it merged."""
    import json
    import subprocess
    import sys

    entry = {"script": "w*8", "first_frame_blocks": [14.0] * 8,
             "delta": {"blocks": [15.0] * 8, "detail": [0.5] * 4 + [1.5] * 4, "latent_std": [1.0] * 8, "finite": True}}
    streams = {"keys": {"1": entry, "2": entry}}
    summary = long_stream.summarise_long_streams(streams, ["delta"])
    for row in summary["delta"].values():  # as a run written before the ratio was summarised
        for key in [k for k in row if k.startswith("detail")]:
            del row[key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"models": {"delta": "export"}, "memory": "rolling", "steps": 8, "summary": summary,
                                "streams": streams}))
    done = subprocess.run([sys.executable, "launch/long_stream.py", f"--from_json={path}",
                           f"--plot={tmp_path / 'p.png'}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "detail ratio q1 0.50±0.00 q4 1.50±0.00" in done.stdout


def test_paired_gaps_between_saved_runs_match_the_per_stream_differences(tmp_path):
    """--paired_with prints each model's quarter PSNR minus the named model's, paired by stream, and refuses
    a name that no saved run holds."""
    import json
    import subprocess
    import sys

    def saved(name, blocks_by_seed):
        streams = {"keys": {seed: {"script": "w*8", "first_frame_blocks": [14.0] * 8,
                                   name: {"blocks": blocks, "latent_std": [1.0] * 8, "finite": True}}
                            for seed, blocks in blocks_by_seed.items()}}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"models": {name: "export"}, "memory": "rolling", "steps": 8, "streams": streams,
                                    "summary": long_stream.summarise_long_streams(streams, [name])}))
        return str(path)

    base = saved("base", {"1": [15.0] * 8, "2": [15.0] * 8})
    other = saved("other", {"1": [16.0] * 6 + [18.0] * 2, "2": [15.0] * 6 + [14.0] * 2})

    def merge(paired_with):
        return subprocess.run([sys.executable, "launch/long_stream.py", f"--from_json={base},{other}",
                               f"--paired_with={paired_with}", f"--plot={tmp_path / 'p.png'}"],
                              capture_output=True, text=True, timeout=120)

    done = merge("base")
    assert done.returncode == 0, done.stderr
    # stream 1: +1 and +3 dB; stream 2: 0 and -1 dB (first and last quarters)
    assert "other - base, first quarter: +0.50 ± 0.50 dB, ahead in 1 of 2" in done.stdout
    assert "other - base, last quarter: +1.00 ± 2.00 dB, ahead in 1 of 2" in done.stdout
    refused = merge("nobody")
    assert refused.returncode != 0 and "'nobody'" in refused.stderr + refused.stdout


def naive_detail(frame: np.ndarray) -> float:
    """Mean |4-neighbour Laplacian| of the grey frame, pixel by pixel with replicated edges."""
    grey = frame.astype(np.float64).mean(axis=-1)
    h, w = grey.shape
    at = lambda i, j: grey[min(max(i, 0), h - 1), min(max(j, 0), w - 1)]  # noqa: E731
    return float(np.mean([[abs(at(i - 1, j) + at(i + 1, j) + at(i, j - 1) + at(i, j + 1) - 4 * grey[i, j])
                           for j in range(w)] for i in range(h)]))


def test_detail_ratio_against_naive_figures_is_one_for_the_truth_below_for_blur_above_for_noise():
    rng = np.random.default_rng(0)
    truth = synthworld_start(int(split_seeds("heldout", 1)[0]), SIZE, SIZE)
    clip = long_stream.truth_of(truth, script_to_chunks("w*2", 1))["video"]  # 9 frames: 2 blocks
    np.testing.assert_allclose(long_stream.frame_detail(clip[:3]), [naive_detail(f) for f in clip[:3]], rtol=1e-9)
    assert long_stream.block_detail_ratio(clip, clip) == [1.0, 1.0]
    blurred = clip.astype(np.float64)
    blurred = (blurred + np.roll(blurred, 1, 1) + np.roll(blurred, 1, 2) + np.roll(blurred, (1, 1), (1, 2))) / 4
    noisy = np.clip(clip + rng.normal(0, 25, clip.shape), 0, 255)
    assert max(long_stream.block_detail_ratio(blurred.astype(np.uint8), clip)) < 0.9
    assert min(long_stream.block_detail_ratio(noisy.astype(np.uint8), clip)) > 1.5
    expected = [np.mean([naive_detail(f) for f in noisy.astype(np.uint8)[i:i + 4]])
                / np.mean([naive_detail(f) for f in clip[i:i + 4]]) for i in (1, 5)]
    np.testing.assert_allclose(long_stream.block_detail_ratio(noisy.astype(np.uint8), clip), expected, rtol=1e-9)
    with pytest.raises(ValueError, match="must match"):
        long_stream.block_detail_ratio(clip[:5], clip)


def mean_colour_features(clips: np.ndarray) -> np.ndarray:
    """A stand-in video feature: each frame's mean colour, [B, F, H, W, 3] -> [B, 3 F]."""
    return clips.mean(axis=(2, 3)).reshape(len(clips), -1)


def test_quarter_windows_are_evenly_spread_inside_each_quarter_and_too_short_quarters_are_refused():
    starts = long_stream.quarter_windows(401, 3)
    assert starts[0] == [1, 43, 85] and starts[3][-1] == 400 - 16 + 1
    for quarter, first in zip(starts, (1, 101, 201, 301)):
        assert quarter[0] == first and quarter[-1] + 16 <= first + 100
    with pytest.raises(ValueError, match="cannot hold 1 window"):
        long_stream.quarter_windows(33, 1)  # quarters of 8 frames


def test_video_distances_per_quarter_against_hand_computed_kvd_fvd_and_jackknife(tmp_path):
    """evaluate_long_streams with a feature extractor stores each window's features, and the summary's KVD,
    its leave-one-stream-out error and FVD are those of the pooled windows, recomputed here."""
    from worldscape_jax.eval import fvd

    engines = {"grey": GreyEngine(128)}
    results = long_stream.evaluate_long_streams(engines, ["keys"], scenes=3, steps=8, extractor=mean_colour_features,
                                                windows=2, window_length=4)
    ours, theirs, still = [], [], []
    for seed, entry in results["keys"].items():
        truth = long_stream.truth_of(synthworld_start(seed, SIZE, SIZE), script_to_chunks(entry["script"], 1))["video"]
        starts = long_stream.quarter_windows(len(truth), 2, 4)
        assert starts == [[1, 5], [9, 13], [17, 21], [25, 29]]
        expected = [[mean_colour_features(truth[None, s:s + 4] / 255.0)[0] for s in q] for q in starts]
        np.testing.assert_allclose(entry["truth_features"], expected, atol=1e-4)
        np.testing.assert_allclose(entry["grey"]["features"], np.full((4, 2, 12), 128 / 255.0), atol=1e-4)
        np.testing.assert_allclose(entry["still_features"], np.tile(truth[0].mean(axis=(0, 1)) / 255.0, 4), atol=1e-4)
        ours.append(entry["grey"]["features"])
        theirs.append(entry["truth_features"])
        still.append([[entry["still_features"]]] * 4)
    summary = long_stream.summarise_long_streams(results, ["grey"])
    ours, theirs, still = (np.asarray(x) for x in (ours, theirs, still))
    for name, feats in (("grey", ours), ("first_frame", still)):
        row = summary[name]["keys"]
        for q in range(4):
            x, y = feats[:, q].reshape(-1, 12), theirs[:, q].reshape(-1, 12)
            assert row["kvd_quarters"][q] == pytest.approx(fvd.kernel_distance(x, y), rel=1e-9)
            assert row["fvd_quarters"][q] == pytest.approx(fvd.frechet_distance_from_features(x, y), rel=1e-9)
            left_out = [fvd.kernel_distance(np.delete(feats, i, 0)[:, q].reshape(-1, 12),
                                            np.delete(theirs, i, 0)[:, q].reshape(-1, 12)) for i in range(3)]
            jackknife = np.sqrt(2 / 3 * np.sum((np.asarray(left_out) - np.mean(left_out)) ** 2))
            assert row["kvd_quarters_se"][q] == pytest.approx(jackknife, rel=1e-9)
    assert summary["grey"]["keys"]["feature_windows"] == 6
    assert min(summary["grey"]["keys"]["kvd_quarters"]) > max(summary["first_frame"]["keys"]["kvd_quarters"])
    sheet = tmp_path / "sheet.png"
    first = {}
    long_stream.evaluate_long_streams(engines, ["keys"], scenes=1, steps=8, first_stream=first)
    assert sorted(first) == ["grey", "truth"] and first["grey"].shape == first["truth"].shape == (33, SIZE, SIZE, 3)
    long_stream.plot_stream_sheet(first, str(sheet), "stub")
    assert sheet.stat().st_size > 5_000
    plot = tmp_path / "kvd.png"
    long_stream.plot_long_streams(summary, ["grey"], str(plot), "stub")
    assert plot.stat().st_size > 10_000


def test_block_ssim_is_one_for_the_truth_ranks_speckle_below_blur_of_the_same_psnr_and_is_summarised():
    """block_ssim is each block's mean of per-frame SSIM; at matched PSNR, structure-destroying speckle
    scores below blur (what PSNR cannot tell); the summary's SSIM quarters are the per-scene block means."""
    from worldscape_jax.eval.image_metrics import ssim

    rng = np.random.default_rng(0)
    scene = synthworld_start(int(split_seeds("heldout", 1)[0]), SIZE, SIZE)
    clip = long_stream.truth_of(scene, script_to_chunks("w*2", 1))["video"]
    assert long_stream.block_ssim(clip, clip) == pytest.approx([1.0, 1.0], abs=1e-5)
    as_float = clip.astype(np.float64)
    blurred = (as_float + np.roll(as_float, 1, 1) + np.roll(as_float, 1, 2) + np.roll(as_float, (1, 1), (1, 2))) / 4
    noise_std = np.sqrt(np.mean((blurred - as_float) ** 2))
    speckled = as_float + rng.normal(0, noise_std, clip.shape)
    blurred, speckled = (np.clip(np.round(v), 0, 255).astype(np.uint8) for v in (blurred, speckled))
    assert abs(np.mean(block_psnr(blurred, clip)) - np.mean(block_psnr(speckled, clip))) < 0.5
    assert max(long_stream.block_ssim(speckled, clip)) < min(long_stream.block_ssim(blurred, clip)) - 0.05
    per_frame = np.asarray(ssim(speckled.astype(np.float32), clip.astype(np.float32), 255.0))
    np.testing.assert_allclose(long_stream.block_ssim(speckled, clip), [per_frame[1:5].mean(), per_frame[5:9].mean()],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="block_ssim"):
        long_stream.block_ssim(clip[:5], clip)

    results = long_stream.evaluate_long_streams({"grey": GreyEngine(128)}, ["keys"], scenes=2, steps=8)
    summary = long_stream.summarise_long_streams(results, ["grey"])
    for name, key in (("grey", None), ("first_frame", "first_frame_ssim")):
        curves = np.asarray([e[name]["ssim"] if key is None else e[key] for e in results["keys"].values()])
        expected = [curves[:, q * 2:(q + 1) * 2].mean() for q in range(4)]
        np.testing.assert_allclose(summary[name]["keys"]["ssim_quarters_mean"], expected, rtol=1e-9)
