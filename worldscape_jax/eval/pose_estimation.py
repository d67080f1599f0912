"""Camera trajectory of a video with known intrinsics: block-wise visual odometry with OpenCV.

Trajectory Accuracy (appendix A.1.1) compares the camera path of a *generated* video with the path
that was asked for, so the path must be recovered from pixels. The video is cut into blocks of
`block_frames` (4: one latent frame of Wan's VAE, the unit in which keyboard controls change; Wan
clips have 1 + 4k frames, so blocks split them exactly). For each block:

1. Frames are turned grey, upsampled (bicubic) so the short side is at least `min_side` (LK gets
   sub-pixel accuracy at 64x64) and blurred by `blur_sigma_px` input pixels (tames what aliasing
   is left). Shi-Tomasi corners (`cv2.goodFeaturesToTrack`) of the block's first frame are tracked
   frame by frame to its last frame with pyramidal Lucas-Kanade (`cv2.calcOpticalFlowPyrLK`, a
   window of `lk_window_px` input pixels) and back; a track is kept if it returns within
   `forward_backward_px`.
2. Model selection, pure turn or travel (in the spirit of Torr's GRIC, which ORB-SLAM also uses to
   choose between homography and fundamental matrix): a pure rotation is fitted to the bearing
   vectors in closed form (Kabsch) and an essential matrix by RANSAC; `turn_evidence` compares
   their truncated squared residuals in units of the tracking noise `selection_sigma_px`. At most
   `selection_threshold` means a pure turn, whose translation is exactly zero: an essential matrix
   cannot tell a direction of travel without parallax. Comparing the two models, rather than
   thresholding the rotation's residual alone, keeps a slow walk past far scenery (where only the
   few near points, such as the floor at the bottom of the frame, show parallax) apart from a turn.
3. Otherwise the essential matrix (`cv2.findEssentialMat`, RANSAC, on normalised coordinates, so
   every frame may have its own intrinsics) and `cv2.recoverPose` give the rotation and the unit
   direction of travel.
4. The block's motion is spread evenly over its frames (constant turn rate, straight line) and blocks
   are chained into camera-to-world poses relative to frame 0 (OpenCV axes). Two-view geometry has no
   scale, so every moving block has length 1; `align_scale` fits one global scale to a reference path
   (least squares on camera centres: a Sim(3) alignment whose rotation and origin are fixed because
   both paths start at the identity). Trajectory Accuracy is scale-free and needs no alignment;
   plots and position errors do.

Failures never raise: a block with fewer than `min_tracks` good tracks, or without an essential
matrix, becomes the identity and is counted in `PoseEstimate.failed_blocks`.

The selection threshold was tuned on anti-aliased ground-truth SynthWorld renders; how well paths are
recovered per size, length and family, and the turn-evidence margins, are in BENCHMARKS.md ("Camera-pose
estimator"). Aliased (point-sampled) or much noisier video jitters at edges like parallax, so turns are
taken for travel: check the estimator on such video (launch/eval_pose_estimator.py) before trusting them.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import cv2
import numpy as np
from jaxtyping import Float, UInt8

from worldscape_jax.eval.trajectory import as_c2w_4x4
from worldscape_jax.geometry.cameras import intrinsics_matrix, relative_to_first


CHIRALITY_MAX_DEPTH = 1e5


@dataclasses.dataclass(frozen=True)
class VOConfig:
    """Knobs of the visual odometry. Pixel thresholds are in pixels of the *input* video."""

    block_frames: int = 4
    min_side: int = 256
    blur_sigma_px: float = 1.2
    max_corners: int = 500
    quality_level: float = 0.005
    min_distance_px: float = 1.0
    block_size: int = 5
    lk_window_px: float = 10.0
    lk_levels: int = 3
    forward_backward_px: float = 0.15
    min_tracks: int = 12
    selection_sigma_px: float = 0.25
    selection_threshold: float = 0.6
    ransac_threshold_px: float = 0.1
    ransac_confidence: float = 0.999

    def __post_init__(self):
        if self.block_frames < 1:
            raise ValueError(f"VOConfig.block_frames must be >= 1, got {self.block_frames}")


@dataclasses.dataclass(frozen=True)
class PoseEstimate:
    """Estimated c2w [F, 4, 4] relative to frame 0 and per-block diagnostics.

    Each block of frames moves one unit (or zero for a pure turn); `failed_blocks` counts blocks that
    became the identity because they had too few tracks or no essential matrix. Per block, for
    diagnosis (NaN where a block failed): `turn_evidence` (see `turn_evidence`; above
    `VOConfig.selection_threshold` means travel) and `rotation_residual_px`, the median distance in
    input pixels of the tracks from the best pure rotation: how far the block is from a rigid turn.
    Ground-truth 64x64 renders of turns sit at 0.03-0.1 px; a video that wobbles shows it here.
    """

    c2w: np.ndarray
    failed_blocks: int
    num_blocks: int
    rotation_only_blocks: np.ndarray
    tracks_per_block: np.ndarray
    turn_evidence: np.ndarray
    rotation_residual_px: np.ndarray


def pixel_intrinsics(normalised: Float[np.ndarray, "4"], width: int, height: int) -> np.ndarray:
    """3x3 K in OpenCV pixel coordinates (pixel centres at integers) from (fx/W, fy/H, cx/W, cy/H).

    The project's normalised cx, cy put pixel centres at i + 0.5 (as the Plücker rays do), hence -0.5.
    """
    k = intrinsics_matrix(np.asarray(normalised, np.float64), height, width)
    k[:2, 2] -= 0.5
    return k


def prepare_frame(frame: np.ndarray, scale: float, blur_sigma_px: float) -> np.ndarray:
    """Grey float32 frame, upsampled by `scale` (bicubic) and blurred by `blur_sigma_px` input pixels."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if scale != 1.0:
        size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_CUBIC)
    if blur_sigma_px > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), blur_sigma_px * scale)
    return np.clip(grey, 0, 255).astype(np.uint8)


def lk_window(config: VOConfig, scale: float) -> int:
    """LK window side in pixels of the upsampled frames: `lk_window_px` input pixels, odd, at least 5."""
    return max(5, 2 * round(config.lk_window_px * scale / 2) + 1)


def _lk(grey_a: np.ndarray, grey_b: np.ndarray, points: np.ndarray, config: VOConfig,
        scale: float) -> tuple[np.ndarray, np.ndarray]:
    window = lk_window(config, scale)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        grey_a, grey_b, points, None, winSize=(window, window), maxLevel=config.lk_levels,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.003))
    return moved, status.ravel() == 1


def track_through(greys: list[np.ndarray], config: VOConfig, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Corners of greys[0] and where they are in greys[-1], tracked frame by frame there and back.

    A track is kept when it survives every LK step both ways and returns within `forward_backward_px`
    (input pixels) of where it started. Returns two [N, 2] arrays in the (upsampled) image's pixels.
    """
    corners = cv2.goodFeaturesToTrack(greys[0], config.max_corners, config.quality_level,
                                      config.min_distance_px * scale, blockSize=config.block_size)
    if corners is None or len(corners) < config.min_tracks:
        return np.zeros((0, 2)), np.zeros((0, 2))
    alive = np.ones(len(corners), bool)
    points = corners
    for grey_a, grey_b in zip(greys[:-1], greys[1:]):
        points, ok = _lk(grey_a, grey_b, points, config, scale)
        alive &= ok
    end = points
    for grey_a, grey_b in zip(greys[:0:-1], greys[-2::-1]):
        points, ok = _lk(grey_a, grey_b, points, config, scale)
        alive &= ok
    error = np.linalg.norm((points - corners).reshape(-1, 2), axis=1)
    keep = alive & (error < config.forward_backward_px * scale)
    return corners.reshape(-1, 2)[keep].astype(np.float64), end.reshape(-1, 2)[keep].astype(np.float64)


def _normalised_points(points: np.ndarray, k: np.ndarray) -> np.ndarray:
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    return (homogeneous @ np.linalg.inv(k).T)[:, :2]


def fit_rotation(bearings_a: np.ndarray, bearings_b: np.ndarray) -> np.ndarray:
    """Rotation R minimising sum |b_b - R b_a|^2 over unit bearing vectors (Kabsch, proper rotation)."""
    u, _, vt = np.linalg.svd(bearings_b.T @ bearings_a)
    sign = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, sign]) @ vt


def _unit_bearings(normalised: np.ndarray) -> np.ndarray:
    rays = np.concatenate([normalised, np.ones((len(normalised), 1))], axis=1)
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def rotation_only_fit(norm_a: np.ndarray, norm_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pure-rotation model (x_b = R x_a) and each track's error under it, in normalised image units.

    Fitted on all tracks, then refitted on the 80% that fit best, so a few bad tracks do not bend it.
    """
    bearings_a, bearings_b = _unit_bearings(norm_a), _unit_bearings(norm_b)
    rotation = fit_rotation(bearings_a, bearings_b)
    error = _rotation_error(rotation, bearings_a, norm_b)
    inliers = error <= np.quantile(error, 0.8)
    rotation = fit_rotation(bearings_a[inliers], bearings_b[inliers])
    return rotation, _rotation_error(rotation, bearings_a, norm_b)


def _rotation_error(rotation: np.ndarray, bearings_a: np.ndarray, norm_b: np.ndarray) -> np.ndarray:
    rotated = bearings_a @ rotation.T
    predicted = rotated[:, :2] / np.maximum(rotated[:, 2:3], 1e-9)
    return np.linalg.norm(predicted - norm_b, axis=1)


def sampson_distance(essential: np.ndarray, norm_a: np.ndarray, norm_b: np.ndarray) -> np.ndarray:
    """First-order distance of each correspondence to the epipolar constraint x_b^T E x_a = 0 (normalised units)."""
    homogeneous_a = np.concatenate([norm_a, np.ones((len(norm_a), 1))], axis=1)
    homogeneous_b = np.concatenate([norm_b, np.ones((len(norm_b), 1))], axis=1)
    line_b, line_a = homogeneous_a @ essential.T, homogeneous_b @ essential
    residual = np.sum(homogeneous_b * line_b, axis=1)
    gradient = line_b[:, 0] ** 2 + line_b[:, 1] ** 2 + line_a[:, 0] ** 2 + line_a[:, 1] ** 2
    return np.abs(residual) / np.sqrt(np.maximum(gradient, 1e-30))


def fit_essential(norm_a: np.ndarray, norm_b: np.ndarray, threshold: float,
                  config: VOConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(E, RANSAC inlier mask) for normalised correspondences, or None when RANSAC finds too few inliers.

    `threshold` is the RANSAC epipolar distance in normalised image units. Tracks that fit a pure
    rotation exactly leave the five-point polynomial without a leading term; OpenCV 5 then fails an
    assertion in `solvePoly` where OpenCV 4 returned no matrix. Both mean "no essential matrix".
    """
    try:
        essential, mask = cv2.findEssentialMat(norm_a, norm_b, np.eye(3), cv2.RANSAC, config.ransac_confidence,
                                               threshold)
    except cv2.error as error:
        if "solvePoly" not in str(error):
            raise
        return None
    if essential is None or essential.shape[0] < 3 or mask is None or int(mask.sum()) < config.min_tracks:
        return None
    return essential[:3], mask


def essential_motion(norm_a: np.ndarray, norm_b: np.ndarray, essential: np.ndarray, mask: np.ndarray,
                     config: VOConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(R, unit t) with x_b = R x_a + t from an essential matrix (cheirality test), or None when too few
    RANSAC inliers lie in front of both cameras."""
    # distanceThresh bounds triangulated depth in baselines; the default (50) rejects almost every
    # point when the camera moves a few centimetres past scenery metres away.
    inliers, rotation, translation, _, _ = cv2.recoverPose(essential, norm_a, norm_b, np.eye(3),
                                                          distanceThresh=CHIRALITY_MAX_DEPTH, mask=mask)
    if inliers < config.min_tracks // 2:
        return None
    return rotation, translation.ravel() / max(np.linalg.norm(translation), 1e-12)


def turn_evidence(rotation_error_px: np.ndarray, essential_error_px: np.ndarray | None, sigma_px: float) -> float:
    """How much better the essential matrix explains the tracks than a pure rotation (GRIC-style).

    Mean truncated squared residual of the rotation-only model (2-D transfer error, capped at 4 as in
    Torr's GRIC for a 2-dimensional model) minus that of the essential model (1-D Sampson distance,
    capped at 2), both in units of the tracking noise `sigma_px`. Noise alone gives a small value;
    parallax of near points raises it, even when most tracks lie on far scenery that shows none.
    Without an essential matrix every track counts at its cap.
    """
    rotation_term = np.mean(np.minimum((rotation_error_px / sigma_px) ** 2, 4.0))
    if essential_error_px is None:
        return float(rotation_term - 2.0)
    return float(rotation_term - np.mean(np.minimum((essential_error_px / sigma_px) ** 2, 2.0)))


class BlockMotion(NamedTuple):
    """One block's motion x_b = R x_a + t (|t| in {0, 1}) and the figures the choice was made on."""

    rotation: np.ndarray
    translation: np.ndarray
    pure_turn: bool
    turn_evidence: float
    rotation_residual_px: float


def block_motion(norm_a: np.ndarray, norm_b: np.ndarray, focal_input_px: float,
                 config: VOConfig) -> BlockMotion | None:
    """Motion of one block, or None when it travels but no essential matrix explains it.

    Pure turn when `turn_evidence` (rotation-only vs essential-matrix residuals, in units of
    `selection_sigma_px` input pixels) is at most `selection_threshold`; then t is exactly zero,
    because an essential matrix cannot tell a direction of travel without parallax.
    """
    rotation, error = rotation_only_fit(norm_a, norm_b)
    rotation_error_px = error * focal_input_px
    essential = fit_essential(norm_a, norm_b, config.ransac_threshold_px / focal_input_px, config)
    essential_error = None if essential is None else sampson_distance(essential[0], norm_a, norm_b) * focal_input_px
    evidence = turn_evidence(rotation_error_px, essential_error, config.selection_sigma_px)
    residual = float(np.median(rotation_error_px))
    if evidence <= config.selection_threshold:
        return BlockMotion(rotation, np.zeros(3), True, evidence, residual)
    motion = None if essential is None else essential_motion(norm_a, norm_b, *essential, config)
    return None if motion is None else BlockMotion(*motion, False, evidence, residual)


def block_poses(rotation: np.ndarray, translation: np.ndarray, num_steps: int) -> list[np.ndarray]:
    """Poses of the block's frames 1..n in the frame of its first camera, given x_b = R x_a + t.

    The camera turns at a constant rate (the rotation vector of R^T split evenly) and its centre moves
    on a straight line to -R^T t, as a key held for the block would move it.
    """
    orientation_b = rotation.T
    centre_b = -rotation.T @ translation
    rotation_vector = cv2.Rodrigues(orientation_b)[0].ravel()
    poses = []
    for step in range(1, num_steps + 1):
        fraction = step / num_steps
        pose = np.eye(4)
        pose[:3, :3] = cv2.Rodrigues(rotation_vector * fraction)[0]
        pose[:3, 3] = centre_b * fraction
        poses.append(pose)
    return poses


def _check_video(video: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"estimate_trajectory: video must be uint8 [F, H, W, 3], got {video.dtype} {video.shape}")
    if video.shape[0] < 2:
        raise ValueError(f"estimate_trajectory: need at least 2 frames, got {video.shape[0]}")
    intrinsics = np.asarray(intrinsics, np.float64)
    if intrinsics.shape == (4,):
        intrinsics = np.broadcast_to(intrinsics, (video.shape[0], 4))
    if intrinsics.shape != (video.shape[0], 4):
        raise ValueError(f"estimate_trajectory: intrinsics must be [4] or [F={video.shape[0]}, 4] normalised "
                         f"(fx/W, fy/H, cx/W, cy/H), got shape {intrinsics.shape}")
    return intrinsics


def keyframes(num_frames: int, block_frames: int) -> list[int]:
    """0, B, 2B, ... and the last frame: the block boundaries (Wan's 1 + 4k frames split exactly at B=4)."""
    marks = list(range(0, num_frames - 1, block_frames))
    return marks + [num_frames - 1]


def estimate_trajectory(video: UInt8[np.ndarray, "f h w 3"], intrinsics: Float[np.ndarray, "*f 4"],
                        config: VOConfig = VOConfig()) -> PoseEstimate:
    """Camera-to-world poses of every frame relative to frame 0, from pixels and known intrinsics.

    The motion of each block of `block_frames` frames (one latent frame of Wan's VAE, the unit in
    which controls change) is measured between its first and last frame, where the baseline is
    largest, and spread evenly over its frames. `block_frames=1` is plain frame-to-frame odometry.
    """
    intrinsics = _check_video(video, intrinsics)
    num_frames, height, width = video.shape[:3]
    scale = max(1.0, config.min_side / min(height, width))
    size = (round(width * scale), round(height * scale))
    greys = [prepare_frame(frame, scale, config.blur_sigma_px) for frame in video]
    marks = keyframes(num_frames, config.block_frames)
    poses, failed = [np.eye(4)], 0
    num_blocks = len(marks) - 1
    rotation_only = np.zeros(num_blocks, bool)
    tracks = np.zeros(num_blocks, int)
    evidence, residual = np.full(num_blocks, np.nan), np.full(num_blocks, np.nan)
    for block, (first, last) in enumerate(zip(marks[:-1], marks[1:])):
        points_a, points_b = track_through(greys[first:last + 1], config, scale)
        tracks[block] = len(points_a)
        motion = None
        if len(points_a) >= config.min_tracks:
            k_a, k_b = (pixel_intrinsics(intrinsics[i], *size) for i in (first, last))
            focal_input_px = float(k_b[0, 0]) / scale
            motion = block_motion(_normalised_points(points_a, k_a), _normalised_points(points_b, k_b),
                                  focal_input_px, config)
        if motion is None:
            failed += 1
            motion = BlockMotion(np.eye(3), np.zeros(3), False, np.nan, np.nan)
        rotation_only[block] = motion.pure_turn
        evidence[block], residual[block] = motion.turn_evidence, motion.rotation_residual_px
        start = poses[-1]
        poses.extend(start @ pose for pose in block_poses(motion.rotation, motion.translation, last - first))
    return PoseEstimate(c2w=np.stack(poses).astype(np.float32), failed_blocks=failed, num_blocks=num_blocks,
                        rotation_only_blocks=rotation_only, tracks_per_block=tracks, turn_evidence=evidence,
                        rotation_residual_px=residual)


def align_scale(estimated_c2w: Float[np.ndarray, "f r 4"], reference_c2w: Float[np.ndarray, "f r 4"]
                ) -> tuple[np.ndarray, float]:
    """Estimated poses in the reference's world frame and scale: s = argmin sum |s c_est - c_ref|^2.

    Both paths are taken relative to their first frame (so rotation and origin agree by construction),
    the scale is fitted on camera centres in closed form, and the result is mapped back through the
    reference's first pose. Returns (c2w [F, 4, 4] float32, s); s = 0 when the estimate never moves.
    """
    estimated = relative_to_first(as_c2w_4x4(estimated_c2w, "estimated_c2w"))
    reference = as_c2w_4x4(reference_c2w, "reference_c2w")
    if estimated.shape != reference.shape:
        raise ValueError(f"align_scale: {estimated.shape[0]} estimated poses vs {reference.shape[0]} reference poses")
    centres_est = estimated[:, :3, 3]
    centres_ref = relative_to_first(reference)[:, :3, 3]
    norm = float(np.sum(centres_est * centres_est))
    scale = float(np.sum(centres_est * centres_ref)) / norm if norm > 0 else 0.0
    scaled = estimated.copy()
    scaled[:, :3, 3] *= scale
    return (reference[0][None] @ scaled).astype(np.float32), scale
