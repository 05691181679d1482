"""Rauch-Tung-Striebel smoothing of box tracks with keyframes held fixed.

Each of x, y, z (metres, world) and yaw (radians, unwrapped) follows its own constant-velocity model with white
acceleration noise (Bar-Shalom, Li and Kirubarajan, "Estimation with Applications to Tracking and Navigation", 2001,
section 6.3.2): ``F = [[1, dt], [0, 1]]``, ``Q = q [[dt^3/3, dt^2/2], [dt^2/2, dt]]``. A forward Kalman filter and the
RTS backward pass run over the drive's frames once, vectorised over every (track, coordinate) pair, so the cost is
one small numpy step per frame. Keyframes enter as measurements with a negligible variance and are copied back exactly
afterwards; frames where a track has no measurement are predicted through.
"""

from __future__ import annotations

import numpy as np

#: Acceleration noise densities q for x, y, z [m^2/s^3] and yaw [rad^2/s^3].
DEFAULT_PROCESS_NOISE = np.array([4.0, 4.0, 0.25, 0.5])
KEYFRAME_VARIANCE = 1e-8


def rts_smooth(
    times_s: np.ndarray,
    measurements: np.ndarray,
    variances: np.ndarray,
    process_noise: np.ndarray = DEFAULT_PROCESS_NOISE,
) -> np.ndarray:
    """Smooth many tracks at once.

    Args:
        times_s: (F,) frame times, seconds, increasing.
        measurements: (K,F,D) values per track K, frame F and coordinate D; NaN where a track has no measurement.
        variances: (K,F,D) measurement variances (ignored where the measurement is NaN).
        process_noise: (D,) acceleration noise density per coordinate.

    Returns:
        (K,F,D) smoothed positions; NaN outside each track's first..last measured frame.
    """
    k, f, d = measurements.shape
    z = measurements.transpose(0, 2, 1).reshape(k * d, f)
    r = variances.transpose(0, 2, 1).reshape(k * d, f)
    q = np.tile(np.asarray(process_noise, dtype=np.float64)[:d], k)
    n = k * d
    x = np.zeros((f, n, 2))  # filtered means
    p = np.zeros((f, n, 2, 2))  # filtered covariances
    xp = np.zeros((f, n, 2))  # predicted means
    pp = np.zeros((f, n, 2, 2))
    started = np.zeros(n, dtype=bool)
    mean = np.zeros((n, 2))
    cov = np.tile(np.eye(2) * 1e6, (n, 1, 1))
    big = 1e6
    for i in range(f):
        if i > 0:
            dt = times_s[i] - times_s[i - 1]
            F = np.array([[1.0, dt], [0.0, 1.0]])
            Q = q[:, None, None] * np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
            mean = mean @ F.T
            cov = F @ cov @ F.T + Q
        xp[i], pp[i] = mean, cov
        has = np.isfinite(z[:, i])
        first = has & ~started
        # A track's first measurement initialises position; velocity stays uncertain.
        mean[first] = np.stack([z[first, i], np.zeros(first.sum())], axis=1)
        init = np.zeros((int(first.sum()), 2, 2))
        init[:, 0, 0], init[:, 1, 1] = r[first, i], big
        cov[first] = init
        started |= has
        upd = has & ~first
        if upd.any():
            s = cov[upd, 0, 0] + r[upd, i]
            gain = cov[upd, :, 0] / s[:, None]
            innovation = z[upd, i] - mean[upd, 0]
            mean[upd] = mean[upd] + gain * innovation[:, None]
            cov[upd] = cov[upd] - gain[:, :, None] * cov[upd, 0, :][:, None, :]
        x[i], p[i] = mean, cov
    smoothed = x.copy()
    for i in range(f - 2, -1, -1):
        dt = times_s[i + 1] - times_s[i]
        F = np.array([[1.0, dt], [0.0, 1.0]])
        gain = p[i] @ F.T @ np.linalg.inv(pp[i + 1])
        smoothed[i] = x[i] + np.einsum("nij,nj->ni", gain, smoothed[i + 1] - xp[i + 1])
    out = smoothed[:, :, 0].T.reshape(k, d, f).transpose(0, 2, 1)
    measured = np.isfinite(measurements).any(axis=2)
    first_idx = np.where(measured.any(axis=1), measured.argmax(axis=1), f)
    last_idx = np.where(measured.any(axis=1), f - 1 - measured[:, ::-1].argmax(axis=1), -1)
    frame = np.arange(f)
    outside = (frame[None, :] < first_idx[:, None]) | (frame[None, :] > last_idx[:, None])
    out[outside] = np.nan
    return out
