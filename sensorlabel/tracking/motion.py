"""Kalman motion models for 3D boxes, batched over tracks.

Every model filters a box state whose first seven entries are the measurement ``box7 = (x, y, z, yaw, l, w, h)``
(centre in metres in a gravity-aligned world or ego frame with z up, heading about +z in radians, size in metres),
followed by the model's motion entries:

* :class:`ConstantVelocity` (CV): ``(x, y, z, yaw, l, w, h, vx, vy, vz)``, a linear Kalman filter, as in
  AB3DMOT (Weng et al., IROS 2020). The heading is a random walk: the box may move in any direction.
* :class:`ConstantTurnRate` (CTRV): ``(x, y, z, yaw, l, w, h, v, yaw_rate)``, an extended Kalman filter whose
  speed is along the box heading and whose heading turns at a constant rate. It predicts cars and cyclists through
  turns better than CV, and it is wrong for pedestrians, whose box heading says little about where they go.

All arrays carry the track axis first: ``x (M, d)``, ``P (M, d, d)``; one call predicts or updates M tracks with
batched ``matmul`` / ``einsum`` / ``linalg.solve``; there is no per-track Python loop. The measurement model is
linear (``H = [I_7 0]``) for both, so the update is shared.

Heading ambiguity: detectors often flip a box by pi. Before an update the detected yaw is turned by pi when it
differs from the predicted yaw by more than pi/2 (AB3DMOT's orientation correction), so a flipped detection does
not spin the track around.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.lie import wrap_angle

#: Measurement layout shared by all models.
MEAS_DIM = 7
YAW = 3


@dataclass(frozen=True)
class MotionNoise:
    """Standard deviations of the measurement and process noise (SI units).

    Attributes:
        position_m: measurement noise of the centre.
        yaw_rad: measurement noise of the heading.
        size_m: measurement noise of l, w, h.
        accel_mps2: process noise: random acceleration (CV on x, y, z; CTRV along the heading).
        yaw_accel_radps2: process noise of the turn rate (CTRV) or of the heading rate (CV random walk).
        size_rate_mps: process noise of the size (a slow random walk, so the size settles on the mean).
        vertical_mps: process noise of the height of the centre for CTRV, which has no vertical velocity.
        init_speed_mps: initial standard deviation of the velocity of a new track.
        init_yaw_rate_radps: initial standard deviation of the turn rate of a new track (CTRV).
    """

    position_m: float = 0.25
    yaw_rad: float = 0.2
    size_m: float = 0.15
    accel_mps2: float = 3.0
    yaw_accel_radps2: float = 1.5
    size_rate_mps: float = 0.05
    vertical_mps: float = 0.3
    init_speed_mps: float = 10.0
    init_yaw_rate_radps: float = 0.5


class MotionModel(ABC):
    """Base: shared initiation and linear update over the box7 measurement. Subclasses define the motion."""

    name: str = ""
    state_dim: int = MEAS_DIM

    def __init__(self, noise: MotionNoise | None = None):
        self.noise = noise or MotionNoise()
        n = self.noise
        self.R = np.diag([n.position_m**2] * 3 + [n.yaw_rad**2] + [n.size_m**2] * 3)
        self._P0 = np.diag(np.concatenate([np.diag(self.R), self._init_motion_var()]))  # (d, d) prior of new tracks

    # ----- provided by the models -------------------------------------------------------------------------------
    @abstractmethod
    def _init_motion_var(self) -> np.ndarray:
        """(d - 7,) initial variances of the motion entries."""

    @abstractmethod
    def predict(self, x: np.ndarray, P: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Propagate M states by dt_s seconds.

        Args:
            x: (M, d) states. P: (M, d, d) covariances.
            dt_s: time step in seconds (may be 0 or negative for a replay backwards).

        Returns:
            (x, P) predicted, new arrays.
        """

    @abstractmethod
    def velocity_xy(self, x: np.ndarray) -> np.ndarray:
        """(M, 2) horizontal velocity in m/s in the tracking frame."""

    # ----- shared ------------------------------------------------------------------------------------------------
    def initiate(self, box7: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from M measurements: motion entries zero with a wide prior.

        Args:
            box7: (M, 7) measurements (x, y, z, yaw, l, w, h).

        Returns:
            x (M, d) and P (M, d, d).
        """
        box7 = np.asarray(box7, dtype=np.float64).reshape(-1, MEAS_DIM)
        m = box7.shape[0]
        x = np.zeros((m, self.state_dim))
        x[:, :MEAS_DIM] = box7
        x[:, YAW] = wrap_angle(x[:, YAW])
        return x, np.broadcast_to(self._P0, (m, self.state_dim, self.state_dim)).copy()

    def update(self, x: np.ndarray, P: np.ndarray, box7: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kalman update of M states with their matched measurements (row i with row i).

        Args:
            x: (M, d) predicted states. P: (M, d, d) predicted covariances.
            box7: (M, 7) measurements.

        Returns:
            (x, P) updated, new arrays; yaw wrapped to [-pi, pi).
        """
        if x.shape[0] == 0:
            return x.copy(), P.copy()
        innovation = np.asarray(box7, dtype=np.float64) - x[:, :MEAS_DIM]
        dyaw = wrap_angle(innovation[:, YAW])
        # A detection facing the other way is the same object seen flipped: turn it by pi (AB3DMOT).
        innovation[:, YAW] = np.where(np.abs(dyaw) > np.pi / 2, wrap_angle(dyaw + np.pi), dyaw)
        S = P[:, :MEAS_DIM, :MEAS_DIM] + self.R
        PHt = P[:, :, :MEAS_DIM]  # (M, d, 7)
        # K = P H^T S^-1; S is symmetric, so K^T = S^-1 (H P).
        K = np.swapaxes(np.linalg.solve(S, np.swapaxes(PHt, 1, 2)), 1, 2)  # (M, d, 7)
        x_new = x + np.einsum("mij,mj->mi", K, innovation)
        x_new[:, YAW] = wrap_angle(x_new[:, YAW])
        P_new = P - K @ P[:, :MEAS_DIM, :]
        P_new = 0.5 * (P_new + np.swapaxes(P_new, 1, 2))
        return x_new, P_new


class ConstantVelocity(MotionModel):
    """Linear constant-velocity Kalman filter over ``(x, y, z, yaw, l, w, h, vx, vy, vz)``."""

    name = "cv"
    state_dim = 10

    def __init__(self, noise: MotionNoise | None = None):
        super().__init__(noise)
        self._transition_cache: tuple[float, np.ndarray, np.ndarray] | None = None

    def _init_motion_var(self) -> np.ndarray:
        return np.full(3, self.noise.init_speed_mps**2)

    def transition(self, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(F (10, 10), Q (10, 10)) for one step; the same for every track (cached for the last step length)."""
        cached = self._transition_cache
        if cached is not None and cached[0] == dt_s:
            return cached[1], cached[2]
        n = self.noise
        F = np.eye(self.state_dim)
        F[0, 7] = F[1, 8] = F[2, 9] = dt_s
        # Piecewise-constant white acceleration on x, y, z.
        G = np.zeros((self.state_dim, 3))
        G[[0, 1, 2], [0, 1, 2]] = 0.5 * dt_s**2
        G[[7, 8, 9], [0, 1, 2]] = dt_s
        Q = (G * n.accel_mps2**2) @ G.T
        Q[YAW, YAW] += (n.yaw_accel_radps2 * dt_s) ** 2
        Q[[4, 5, 6], [4, 5, 6]] += (n.size_rate_mps * abs(dt_s)) ** 2
        self._transition_cache = (dt_s, F, Q)
        return F, Q

    def predict(self, x: np.ndarray, P: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        F, Q = self.transition(dt_s)
        x_new = x @ F.T
        x_new[:, YAW] = wrap_angle(x_new[:, YAW])
        return x_new, F @ P @ F.T + Q

    def velocity_xy(self, x: np.ndarray) -> np.ndarray:
        return x[:, 7:9].copy()


class ConstantTurnRate(MotionModel):
    """Extended Kalman filter, constant turn rate and velocity (CTRV) over ``(x, y, z, yaw, l, w, h, v, yaw_rate)``.

    The speed ``v`` (m/s, signed) is along the box heading; the heading turns at ``yaw_rate`` (rad/s). For a turn
    rate near zero the exact arc formulas are replaced by their straight-line limits (and likewise the Jacobian).
    """

    name = "ctrv"
    state_dim = 9
    _SMALL_RATE = 1e-4

    def _init_motion_var(self) -> np.ndarray:
        return np.array([self.noise.init_speed_mps**2, self.noise.init_yaw_rate_radps**2])

    def predict(self, x: np.ndarray, P: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        n = self.noise
        m = x.shape[0]
        yaw, v, rate = x[:, YAW], x[:, 7], x[:, 8]
        small = np.abs(rate) < self._SMALL_RATE
        w = np.where(small, 1.0, rate)  # safe divisor; the small-rate rows take the limits below
        yaw1 = yaw + rate * dt_s
        s0, c0, s1, c1 = np.sin(yaw), np.cos(yaw), np.sin(yaw1), np.cos(yaw1)
        dx = np.where(small, v * c0 * dt_s, v / w * (s1 - s0))
        dy = np.where(small, v * s0 * dt_s, v / w * (c0 - c1))
        x_new = x.copy()
        x_new[:, 0] += dx
        x_new[:, 1] += dy
        x_new[:, YAW] = wrap_angle(yaw1)

        F = np.broadcast_to(np.eye(self.state_dim), (m, self.state_dim, self.state_dim)).copy()
        F[:, 0, YAW] = -dy
        F[:, 1, YAW] = dx
        F[:, 0, 7] = np.where(small, c0 * dt_s, (s1 - s0) / w)
        F[:, 1, 7] = np.where(small, s0 * dt_s, (c0 - c1) / w)
        F[:, 0, 8] = np.where(small, -0.5 * v * dt_s**2 * s0, -v / w**2 * (s1 - s0) + v / w * dt_s * c1)
        F[:, 1, 8] = np.where(small, 0.5 * v * dt_s**2 * c0, -v / w**2 * (c0 - c1) + v / w * dt_s * s1)
        F[:, YAW, 8] = dt_s

        # Process noise: longitudinal acceleration and turn-rate acceleration, plus z and size random walks.
        G = np.zeros((m, self.state_dim, 2))
        G[:, 0, 0] = 0.5 * dt_s**2 * c0
        G[:, 1, 0] = 0.5 * dt_s**2 * s0
        G[:, 7, 0] = dt_s
        G[:, YAW, 1] = 0.5 * dt_s**2
        G[:, 8, 1] = dt_s
        Q = np.einsum("mik,k,mjk->mij", G, np.array([n.accel_mps2**2, n.yaw_accel_radps2**2]), G)
        Q[:, 2, 2] += (n.vertical_mps * abs(dt_s)) ** 2
        Q[:, [4, 5, 6], [4, 5, 6]] += (n.size_rate_mps * abs(dt_s)) ** 2
        return x_new, F @ P @ np.swapaxes(F, 1, 2) + Q

    def velocity_xy(self, x: np.ndarray) -> np.ndarray:
        return x[:, 7:8] * np.stack([np.cos(x[:, YAW]), np.sin(x[:, YAW])], axis=1)


#: Motion models by the name used in configurations.
MOTION_MODELS: dict[str, type[MotionModel]] = {"cv": ConstantVelocity, "ctrv": ConstantTurnRate}


def make_motion_model(name: str, noise: MotionNoise | None = None) -> MotionModel:
    """A motion model by name ("cv" or "ctrv").

    Raises:
        ValueError: for an unknown name.
    """
    try:
        return MOTION_MODELS[name](noise)
    except KeyError:
        raise ValueError(f"unknown motion model {name!r}; expected one of {sorted(MOTION_MODELS)}") from None
