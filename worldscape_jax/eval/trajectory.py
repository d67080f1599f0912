"""Trajectory Accuracy: does the camera of a generated video move the way the control asked?

Definition (WorldScape paper, appendix A.1.1 "Metrics", Trajectory Accuracy). Both trajectories are
sequences of 3x4 camera poses P_t. Take the frame-wise derivatives, turn each into a 6-DoF vector
v_t = [t_t, r_t] (translation, Euler angles), and score each step by

    sim_t = 1/2 ( |t_gen . t_tgt| / (|t_gen| |t_tgt|) + |r_gen . r_tgt| / (|r_gen| |r_tgt|) ),

raw accuracy = (1 / (T-1)) sum_{t=1}^{T-1} sim_t, and

    Trajectory Accuracy = 1[ raw accuracy >= tau ],  tau = 0.55,

a per-video binary score (averaged over a test set it is the fraction of videos that follow their
trajectory). Both terms use absolute cosines, so the score ignores scale and sign of each step.

What the appendix leaves open, and what this module does (each is an argument you can change):
1. Pose = camera-to-world (c2w, OpenCV axes: the project's convention), expressed relative to the
   first frame (inv(P_0) P_t) for both trajectories. A pose estimated from a generated video lives
   in its own world frame (its first camera), so without this the two derivatives would be in
   different coordinates.
2. "Euler angles extracted from the rotation matrix" of a derivative P_{t+1} - P_t: the difference
   of two rotation matrices is not a rotation, and Euler formulas applied to it give angles near
   +-90 degrees whatever the motion. We read it as the derivative of the 6-DoF pose: r_t =
   euler(R_{t+1}) - euler(R_t), with t_t = c_{t+1} - c_t the change of camera centre. Convention:
   R = Ry(yaw) Rx(pitch) Rz(roll) in OpenCV axes (gimbal lock only when looking straight up or
   down), angles unwrapped over time so a turn past 180 degrees has no 2 pi jump.
3. Zero motion. Cosine is undefined for a zero vector, and many steps of a WASD path have exactly
   zero rotation (walking) or zero translation (turning). A component is "still" when its norm is
   at most `still_rotation_rad` (rotation, radians per step) or `still_translation_frac` times the
   largest step of the same trajectory (translation: relative, so the score stays scale-free).
   Both still -> the term is 1 (they agree nothing moves); exactly one still -> 0; otherwise the
   absolute cosine. Setting both tolerances to 0 gives the literal formula with 0/0 read as 1.
   Defaults: 0.25 degrees per frame (a third of one turn key's 0.75 degrees per frame, HY-WorldPlay's
   3 degrees per latent; pose estimates from 64-128 px video carry ~0.1-0.2 degrees of rotation noise
   per frame while walking) and 10% of the trajectory's largest step.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jaxtyping import Float

from worldscape_jax.geometry.cameras import relative_to_first

TAU = 0.55
STILL_ROTATION_RAD = float(np.deg2rad(0.25))
STILL_TRANSLATION_FRAC = 0.1


@dataclasses.dataclass(frozen=True)
class TrajectoryScore:
    """Per-video result: the binary Trajectory Accuracy, its raw mean similarity and the per-step terms."""

    accuracy: float
    raw: float
    step_similarity: np.ndarray
    translation_term: np.ndarray
    rotation_term: np.ndarray


def as_c2w_4x4(poses: Float[np.ndarray, "t r 4"], name: str) -> np.ndarray:
    """Validates [T, 3, 4] or [T, 4, 4] poses and returns them as float64 [T, 4, 4]."""
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"{name}: expected camera poses [T, 3, 4] or [T, 4, 4], got shape {poses.shape}")
    if not np.all(np.isfinite(poses)):
        raise ValueError(f"{name}: poses contain NaN or inf")
    if poses.shape[1] == 3:
        bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), (poses.shape[0], 1, 4))
        poses = np.concatenate([poses, bottom], axis=1)
    return poses


def euler_yxz(rotations: Float[np.ndarray, "t 3 3"]) -> np.ndarray:
    """(pitch about x, yaw about y, roll about z) in radians with R = Ry(yaw) Rx(pitch) Rz(roll)."""
    pitch = np.arcsin(np.clip(-rotations[:, 1, 2], -1.0, 1.0))
    yaw = np.arctan2(rotations[:, 0, 2], rotations[:, 2, 2])
    roll = np.arctan2(rotations[:, 1, 0], rotations[:, 1, 1])
    return np.stack([pitch, yaw, roll], axis=-1)


def six_dof_derivatives(c2w: Float[np.ndarray, "t 4 4"]) -> tuple[np.ndarray, np.ndarray]:
    """Per-step change of camera centre [T-1, 3] and of unwrapped Euler angles [T-1, 3]."""
    angles = np.unwrap(euler_yxz(c2w[:, :3, :3]), axis=0)
    return np.diff(c2w[:, :3, 3], axis=0), np.diff(angles, axis=0)


def abs_cosine_or_still(generated: np.ndarray, target: np.ndarray, gen_tol: float, tgt_tol: float) -> np.ndarray:
    """|cos| between rows, with the zero-motion rule of this module's docstring (point 3)."""
    gen_norm = np.linalg.norm(generated, axis=-1)
    tgt_norm = np.linalg.norm(target, axis=-1)
    gen_still, tgt_still = gen_norm <= gen_tol, tgt_norm <= tgt_tol
    moving = ~gen_still & ~tgt_still
    denominator = np.where(moving, gen_norm * tgt_norm, 1.0)
    cosine = np.abs(np.sum(generated * target, axis=-1)) / denominator
    return np.where(moving, cosine, np.where(gen_still & tgt_still, 1.0, 0.0))


def trajectory_accuracy(generated_c2w: Float[np.ndarray, "t r 4"], target_c2w: Float[np.ndarray, "t r 4"], *,
                        tau: float = TAU, relative: bool = True,
                        still_rotation_rad: float = STILL_ROTATION_RAD,
                        still_translation_frac: float = STILL_TRANSLATION_FRAC) -> TrajectoryScore:
    """Trajectory Accuracy of one video (appendix A.1.1): 1.0 if the mean 6-DoF |cosine| >= tau, else 0.0."""
    generated = as_c2w_4x4(generated_c2w, "generated_c2w")
    target = as_c2w_4x4(target_c2w, "target_c2w")
    if generated.shape != target.shape:
        raise ValueError(f"generated_c2w has {generated.shape[0]} poses but target_c2w has {target.shape[0]}")
    if generated.shape[0] < 2:
        raise ValueError(f"trajectory accuracy needs at least 2 poses, got {generated.shape[0]}")
    if relative:
        generated, target = relative_to_first(generated), relative_to_first(target)
    gen_t, gen_r = six_dof_derivatives(generated)
    tgt_t, tgt_r = six_dof_derivatives(target)
    translation = abs_cosine_or_still(
        gen_t, tgt_t,
        still_translation_frac * np.linalg.norm(gen_t, axis=-1).max(),
        still_translation_frac * np.linalg.norm(tgt_t, axis=-1).max())
    rotation = abs_cosine_or_still(gen_r, tgt_r, still_rotation_rad, still_rotation_rad)
    similarity = 0.5 * (translation + rotation)
    raw = float(np.mean(similarity))
    return TrajectoryScore(accuracy=float(raw >= tau), raw=raw, step_similarity=similarity,
                           translation_term=translation, rotation_term=rotation)
