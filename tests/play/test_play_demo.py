"""The streaming demo's per-scene work: a play session streams the keys, SynthWorld renders the ground
truth along the same keys, and the scores are those of the videos. The ground-truth engine stands in for
the model (rendered with 1 ray per pixel against the 9 of the ground truth), so what it generates is
known: the true views, slightly aliased."""

import numpy as np
import pytest

from worldscape_jax.eval.video_eval import clip_psnr
from worldscape_jax.play.demo import score_scene, stream_scene, summarise_streams
from worldscape_jax.play.engines import SynthWorldEngine

KEYS = "e*3,w*2,s*2,q*3"


@pytest.fixture(scope="module")
def stream():
    return stream_scene(SynthWorldEngine(supersample=1), KEYS, seed=5)


def test_the_stream_and_its_ground_truth_follow_the_same_keys(stream):
    assert stream.generated.shape == stream.truth.shape == (41, 64, 64, 3)
    assert stream.c2w.shape == (41, 4, 4) and len(stream.step_seconds) == 10
    np.testing.assert_array_equal(stream.generated[0], stream.truth[0])       # the given first frame
    assert clip_psnr(stream.generated[1:], stream.truth[1:]) > 25.0           # aliased, but the same views
    np.testing.assert_allclose(stream.c2w[-1], stream.c2w[0], atol=1e-5)     # the path returns
    assert stream.final_map["camera"]["x"] == pytest.approx(float(stream.c2w[-1, 0, 3]), abs=1e-5)


def test_scores_name_the_revisits_of_the_retraced_path(stream):
    result = score_scene(stream, revisit_gap=8)
    assert result["revisit_frames"] == 17 and result["revisit_first_frame"] == 24
    assert len(result["psnr_per_block"]) == 10 and result["frames_per_second"] > 0
    assert result["revisit_psnr_first_visit"] > 40.0          # one renderer at one pose: the same picture
    assert result["revisit_psnr_truth"] == pytest.approx(clip_psnr(stream.generated[24:], stream.truth[24:]))
    summary = summarise_streams([result, dict(result, psnr=result["psnr"] + 2.0)])
    assert summary["psnr_mean"] == pytest.approx(result["psnr"] + 1.0) and summary["psnr_std"] == pytest.approx(1.0)
