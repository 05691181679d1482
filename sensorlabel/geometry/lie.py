"""The SE(3) exponential and logarithm, geodesic interpolation between poses, and angle wrapping (SO(2)).

``T(alpha) = T0 ∘ exp(alpha · log(T0⁻¹ T1))`` is the constant-body-twist path from T0 to T1: a vehicle moving with
constant speed and yaw rate follows exactly this screw motion, so interpolating keyframes along it reproduces circular
arcs where linear interpolation of the translation cuts the corner.

Closed forms (Barfoot, "State Estimation for Robotics", 2017, eq. 7.83-7.86): with ``W = hat(ω)``, ``θ = |ω|``,
``V = I + (1-cos θ)/θ² W + (θ - sin θ)/θ³ W²``, ``exp(ω, u) = (exp(W), V u)`` and
``V⁻¹ = I - W/2 + (1/θ²)(1 - θ sin θ / (2 (1 - cos θ))) W²``. Small angles use the Taylor series.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.geometry.se3 import SE3

_SMALL = 1e-4


def wrap_angle(angle_rad: np.ndarray) -> np.ndarray:
    """Angles (any shape) wrapped to [-pi, pi)."""
    return (np.asarray(angle_rad) + np.pi) % (2.0 * np.pi) - np.pi


def _hat(omega: np.ndarray) -> np.ndarray:
    w = np.zeros(omega.shape[:-1] + (3, 3))
    w[..., 0, 1], w[..., 0, 2] = -omega[..., 2], omega[..., 1]
    w[..., 1, 0], w[..., 1, 2] = omega[..., 2], -omega[..., 0]
    w[..., 2, 0], w[..., 2, 1] = -omega[..., 1], omega[..., 0]
    return w


def se3_log(transform: SE3) -> np.ndarray:
    """Twists (N,6) = (rotation vector ω [rad], translational part u [m]) of a batch of transforms."""
    omega = Rotation.from_matrix(transform.rotation.reshape(-1, 3, 3)).as_rotvec()
    theta = np.linalg.norm(omega, axis=1)
    w = _hat(omega)
    small = theta < _SMALL
    safe = np.where(small, 1.0, theta)
    coef = np.where(
        small, 1.0 / 12.0 + theta**2 / 720.0,
        (1.0 - safe * np.sin(safe) / (2.0 * (1.0 - np.cos(safe)))) / safe**2,
    )
    v_inv = np.eye(3) - 0.5 * w + coef[:, None, None] * (w @ w)
    u = np.einsum("nij,nj->ni", v_inv, transform.translation.reshape(-1, 3))
    return np.concatenate([omega, u], axis=1)


def se3_exp(twist: np.ndarray) -> SE3:
    """Batch of transforms from twists (N,6) = (ω, u)."""
    twist = np.asarray(twist, dtype=np.float64).reshape(-1, 6)
    omega, u = twist[:, :3], twist[:, 3:]
    theta = np.linalg.norm(omega, axis=1)
    w = _hat(omega)
    small = theta < _SMALL
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    b = np.where(small, 1.0 / 6.0 - theta**2 / 120.0, (safe - np.sin(safe)) / safe**3)
    v = np.eye(3) + a[:, None, None] * w + b[:, None, None] * (w @ w)
    rotation = Rotation.from_rotvec(omega).as_matrix()
    return SE3._trusted(rotation, np.einsum("nij,nj->ni", v, u))


def geodesic_interpolate(start: SE3, end: SE3, alpha: np.ndarray) -> SE3:
    """Poses along the SE(3) geodesics from ``start[i]`` to ``end[i]`` at fractions ``alpha[i]``.

    Args:
        start, end: batches of N transforms ``world_SE3_object``.
        alpha: (N,) fractions; 0 gives start, 1 gives end, values outside [0, 1] extrapolate along the screw.

    Returns:
        Batch of N transforms.
    """
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    rel = start.inverse().compose(end)
    return start.compose(se3_exp(se3_log(rel) * alpha[:, None]))
