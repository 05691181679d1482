"""Smooth analytic planar motion for the ego and the objects of a synthetic drive.

A **path** is a planar curve parametrised by arc length ``s`` whose heading is a closed-form sum of smooth turns::

    yaw(s) = yaw0 + curvature0 * s + sum_j dyaw_j * sigmoid((s - s_j) / w_j)

so the curvature is smooth (a constant plus bell-shaped bumps). The position ``r(s) = origin + int_0^s (cos yaw,
sin yaw) du`` is integrated once on nodes every ``spacing_m`` with 5-point Gauss-Legendre quadrature (error far below
1e-9 m) and evaluated in between by cubic Hermite interpolation with the exact tangents (error below 1e-6 m for the
curvatures used). Any time can therefore be evaluated, and every consumer (lidar, cameras, truth) uses the same
function, so the truth is exactly consistent with the sensor data.

A **motion** moves along a path: arc length ``s(t)`` has the closed form of a speed profile with a smooth step
(acceleration or braking) and a sinusoidal variation, and the lateral offset ``d(t)`` from the path has a smooth step
(a lane change). The heading is the direction of the velocity::

    v(t) = v0 + dv * sigmoid((t - tc) / tau) + a * sin(omega t + phi)      (kept >= 0 by construction)
    s(t) = s0 + direction * int_0^t v
    p(t) = r(s) + d(t) n(s)                         n = left normal of the path
    heading = yaw(s) + pi [direction < 0] + atan2(direction * d'(t), v (1 - kappa(s) d(t)))

Everything is vectorised over (motion index, time) pairs. Times are seconds since the drive's start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

_GL_X, _GL_W = np.polynomial.legendre.leggauss(5)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@dataclass(frozen=True, eq=False)
class Paths:
    """M planar paths (see the module docstring). Arrays are indexed by path.

    Attributes:
        origin_xy: (M,2) position at s = 0, world metres.
        yaw0_rad: (M,) heading offset; curvature0: (M,) constant curvature, 1/m.
        turn_s_m, turn_dyaw_rad, turn_width_m: (M,J) centre, total heading change and width of each smooth turn.
        s_min_m, s_max_m: the arc-length range every path is evaluated on (shared by all paths).
        spacing_m: node spacing.
        nodes_xy: (M,G,2) positions at ``s_min_m + i * spacing_m``.
    """

    origin_xy: np.ndarray
    yaw0_rad: np.ndarray
    curvature0: np.ndarray
    turn_s_m: np.ndarray
    turn_dyaw_rad: np.ndarray
    turn_width_m: np.ndarray
    s_min_m: float
    s_max_m: float
    spacing_m: float
    nodes_xy: np.ndarray

    @classmethod
    def build(cls, origin_xy, yaw0_rad, curvature0, turn_s_m, turn_dyaw_rad, turn_width_m,
              s_range_m: tuple[float, float], spacing_m: float = 0.5) -> Paths:
        """Integrate the node positions of M paths over ``s_range_m`` (which must contain 0)."""
        k_lo = int(np.ceil(-s_range_m[0] / spacing_m))
        k_hi = int(np.ceil(s_range_m[1] / spacing_m))
        s_nodes = np.arange(-k_lo, k_hi + 1) * spacing_m
        proto = cls(np.asarray(origin_xy, float).reshape(-1, 2), np.asarray(yaw0_rad, float).reshape(-1),
                    np.asarray(curvature0, float).reshape(-1), np.atleast_2d(np.asarray(turn_s_m, float)),
                    np.atleast_2d(np.asarray(turn_dyaw_rad, float)), np.atleast_2d(np.asarray(turn_width_m, float)),
                    float(s_nodes[0]), float(s_nodes[-1]), float(spacing_m), np.zeros((0, 0, 2)))
        m = len(proto.yaw0_rad)
        # Quadrature of the unit tangent over every node interval, for all paths at once.
        mid = s_nodes[:-1] + spacing_m / 2
        s_q = mid[:, None] + (spacing_m / 2) * _GL_X[None, :]  # (G-1, 5)
        yaw_q = proto.yaw(np.repeat(np.arange(m), s_q.size), np.tile(s_q.reshape(-1), m)).reshape(m, -1, 5)
        inc = (spacing_m / 2) * np.stack([np.cos(yaw_q) @ _GL_W, np.sin(yaw_q) @ _GL_W], axis=-1)  # (M,G-1,2)
        cum = np.concatenate([np.zeros((m, 1, 2)), np.cumsum(inc, axis=1)], axis=1)
        nodes = proto.origin_xy[:, None, :] + cum - cum[:, k_lo: k_lo + 1, :]
        object.__setattr__(proto, "nodes_xy", nodes)
        return proto

    def __len__(self) -> int:
        return len(self.yaw0_rad)

    def yaw(self, path: np.ndarray, s_m: np.ndarray) -> np.ndarray:
        """(Q,) heading of path[q] at arc length s_m[q], radians (not wrapped)."""
        x = (s_m[:, None] - self.turn_s_m[path]) / self.turn_width_m[path]
        return self.yaw0_rad[path] + self.curvature0[path] * s_m + np.sum(self.turn_dyaw_rad[path] * _sigmoid(x), 1)

    def curvature(self, path: np.ndarray, s_m: np.ndarray) -> np.ndarray:
        """(Q,) signed curvature d yaw / d s, 1/m."""
        w = self.turn_width_m[path]
        sig = _sigmoid((s_m[:, None] - self.turn_s_m[path]) / w)
        return self.curvature0[path] + np.sum(self.turn_dyaw_rad[path] * sig * (1 - sig) / w, axis=1)

    def position(self, path: np.ndarray, s_m: np.ndarray) -> np.ndarray:
        """(Q,2) position of path[q] at arc length s_m[q].

        Raises:
            ValueError: an arc length outside [s_min_m, s_max_m].
        """
        s_m = np.asarray(s_m, dtype=np.float64)
        if len(s_m) and (s_m.min() < self.s_min_m or s_m.max() > self.s_max_m):
            raise ValueError(f"arc length outside the simulated path range [{self.s_min_m}, {self.s_max_m}] m: "
                             f"[{s_m.min():.1f}, {s_m.max():.1f}]")
        h = self.spacing_m
        g = self.nodes_xy.shape[1]
        i = np.clip(np.floor((s_m - self.s_min_m) / h).astype(np.int64), 0, g - 2)
        s0 = self.s_min_m + i * h
        u = ((s_m - s0) / h)[:, None]
        yaw0 = self.yaw(path, s0)
        yaw1 = self.yaw(path, s0 + h)
        m0 = h * np.stack([np.cos(yaw0), np.sin(yaw0)], axis=1)
        m1 = h * np.stack([np.cos(yaw1), np.sin(yaw1)], axis=1)
        p0, p1 = self.nodes_xy[path, i], self.nodes_xy[path, i + 1]
        u2, u3 = u * u, u * u * u
        return ((2 * u3 - 3 * u2 + 1) * p0 + (u3 - 2 * u2 + u) * m0 + (-2 * u3 + 3 * u2) * p1 + (u3 - u2) * m1)

    def frame(self, path: np.ndarray, s_m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position (Q,2), unit tangent (Q,2) and unit left normal (Q,2) of the paths at s_m."""
        yaw = self.yaw(path, s_m)
        tangent = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
        normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        return self.position(path, s_m), tangent, normal


@dataclass(frozen=True, eq=False)
class Motions:
    """K motions along paths (see the module docstring); every attribute is a (K,) array.

    Attributes:
        path: index of the path followed. direction: +1 along increasing s, -1 against it.
        s0_m: arc length at t = 0.
        speed0_mps, speed_change_mps, speed_change_time_s, speed_change_tau_s: the smooth speed step.
        speed_amp_mps, speed_omega_rps, speed_phase_rad: the sinusoidal speed variation (omega > 0).
        lateral0_m, lateral_change_m, lateral_change_time_s, lateral_change_tau_s: the lateral offset and its step.
    """

    path: np.ndarray
    direction: np.ndarray
    s0_m: np.ndarray
    speed0_mps: np.ndarray
    speed_change_mps: np.ndarray
    speed_change_time_s: np.ndarray
    speed_change_tau_s: np.ndarray
    speed_amp_mps: np.ndarray
    speed_omega_rps: np.ndarray
    speed_phase_rad: np.ndarray
    lateral0_m: np.ndarray
    lateral_change_m: np.ndarray
    lateral_change_time_s: np.ndarray
    lateral_change_tau_s: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict]) -> Motions:
        """Build from one dict per motion; missing keys take neutral defaults (no speed/lateral change)."""
        defaults = {"direction": 1.0, "speed_change_mps": 0.0, "speed_change_time_s": 0.0, "speed_change_tau_s": 1.0,
                    "speed_amp_mps": 0.0, "speed_omega_rps": 1.0, "speed_phase_rad": 0.0, "lateral0_m": 0.0,
                    "lateral_change_m": 0.0, "lateral_change_time_s": 0.0, "lateral_change_tau_s": 1.0}
        cols = {}
        for f in fields(cls):
            values = [row.get(f.name, defaults.get(f.name)) for row in rows]
            cols[f.name] = np.asarray(values, dtype=np.int64 if f.name == "path" else np.float64)
        return cls(**cols)

    def __len__(self) -> int:
        return len(self.path)

    def speed(self, k: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """(Q,) speed along the path, m/s (>= 0)."""
        sig = _sigmoid((t_s - self.speed_change_time_s[k]) / self.speed_change_tau_s[k])
        return (self.speed0_mps[k] + self.speed_change_mps[k] * sig
                + self.speed_amp_mps[k] * np.sin(self.speed_omega_rps[k] * t_s + self.speed_phase_rad[k]))

    def arc_length(self, k: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """(Q,) arc length s(t), the closed-form integral of :meth:`speed`."""
        tau, tc = self.speed_change_tau_s[k], self.speed_change_time_s[k]
        omega, phase = self.speed_omega_rps[k], self.speed_phase_rad[k]
        travelled = (self.speed0_mps[k] * t_s
                     + self.speed_change_mps[k] * tau * (_softplus((t_s - tc) / tau) - _softplus(-tc / tau))
                     + self.speed_amp_mps[k] / omega * (np.cos(phase) - np.cos(omega * t_s + phase)))
        return self.s0_m[k] + self.direction[k] * travelled

    def lateral(self, k: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Q,) lateral offset d(t) (m, left of the path) and its rate d'(t) (m/s)."""
        tau = self.lateral_change_tau_s[k]
        sig = _sigmoid((t_s - self.lateral_change_time_s[k]) / tau)
        d = self.lateral0_m[k] + self.lateral_change_m[k] * sig
        return d, self.lateral_change_m[k] * sig * (1 - sig) / tau

    def speed_bound_mps(self) -> np.ndarray:
        """(K,) an upper bound of the planar speed of every motion over all time."""
        along = self.speed0_mps + np.abs(self.speed_change_mps) + np.abs(self.speed_amp_mps)
        return along * 1.5 + np.abs(self.lateral_change_m) / (4 * self.lateral_change_tau_s)

    def state(self, paths: Paths, k: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pose of motion k[q] at time t_s[q].

        Args:
            paths: the paths the motions refer to.
            k: (Q,) int motion indices. t_s: (Q,) seconds since the drive's start.

        Returns:
            xy (Q,2) world metres and heading (Q,) radians in (-pi, pi].
        """
        k = np.asarray(k, dtype=np.int64)
        t_s = np.asarray(t_s, dtype=np.float64)
        path = self.path[k]
        s = self.arc_length(k, t_s)
        pos, _, normal = paths.frame(path, s)
        d, d_rate = self.lateral(k, t_s)
        xy = pos + d[:, None] * normal
        direction = self.direction[k]
        along = self.speed(k, t_s) * (1.0 - paths.curvature(path, s) * d)
        heading = paths.yaw(path, s) + np.where(direction < 0, np.pi, 0.0) + np.arctan2(direction * d_rate, along)
        return xy, np.angle(np.exp(1j * heading))
