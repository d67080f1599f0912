"""Revisit pairs of a camera path and the stream figures computed on them, against hand-made paths and
PSNR written out from its definition."""

import numpy as np
import pytest

from worldscape_jax.eval.revisit import block_psnr, revisit_pairs, revisit_scores
from worldscape_jax.geometry.actions import actions_to_c2w


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_a_path_that_retraces_itself_revisits_each_pose_at_the_mirrored_frame():
    c2w = actions_to_c2w("e*3,w*2,s*2,q*3")          # 41 frames, frame t at the pose of frame 40 - t
    later, earlier = revisit_pairs(c2w, min_gap=8)
    np.testing.assert_array_equal(later, np.arange(24, 41))     # 40 - t <= t - 8
    np.testing.assert_array_equal(earlier, 40 - later)


def test_a_path_that_never_returns_has_no_revisits_and_a_standing_camera_revisits_its_first_frame():
    later, _ = revisit_pairs(actions_to_c2w("w*6,e*6"), min_gap=4)
    assert later.size == 0
    later, earlier = revisit_pairs(actions_to_c2w(".*3"), min_gap=4)
    np.testing.assert_array_equal(later, np.arange(4, 13))
    np.testing.assert_array_equal(earlier, np.zeros(9))          # the first visit, not the latest


def test_revisit_pairs_refuse_bad_input():
    with pytest.raises(ValueError, match=r"c2w must be \[frames, 4, 4\]"):
        revisit_pairs(np.zeros((5, 3, 4)), 2)
    with pytest.raises(ValueError, match="min_gap must be >= 1"):
        revisit_pairs(actions_to_c2w("w*2"), 0)


def test_revisit_scores_and_block_psnr_match_psnr_from_its_definition():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    generated = np.clip(truth.astype(int) + rng.integers(-20, 21, truth.shape), 0, 255).astype(np.uint8)
    later, earlier = np.array([6, 7, 8]), np.array([2, 1, 0])
    scores = revisit_scores(generated, truth, later, earlier)
    assert scores["revisit_frames"] == 3
    assert scores["revisit_psnr_truth"] == pytest.approx(_psnr(generated[6:], truth[6:]))
    assert scores["first_visit_psnr_truth"] == pytest.approx(_psnr(generated[[2, 1, 0]], truth[[2, 1, 0]]))
    assert scores["revisit_psnr_first_visit"] == pytest.approx(_psnr(generated[6:], generated[[2, 1, 0]]))
    assert block_psnr(generated, truth) == pytest.approx([_psnr(generated[1:5], truth[1:5]),
                                                          _psnr(generated[5:9], truth[5:9])])
    assert np.isnan(revisit_scores(generated, truth, np.array([], int), np.array([], int))["revisit_psnr_truth"])
    with pytest.raises(ValueError, match="1 \\+ 4 \\* blocks"):
        block_psnr(generated[:8], truth[:8])
