"""Synthetic tracking scenes with exact ground truth (straight and turning objects, noisy detections)."""

from __future__ import annotations

import numpy as np

DT_S = 0.1


def turning_path(num_frames: int, speed_mps: float, yaw_rate_radps: float, start_xy=(0.0, 0.0), yaw0_rad=0.0,
                 dt_s: float = DT_S) -> np.ndarray:
    """(F, 3) exact (x, y, yaw) of a constant-turn-rate object (straight when the rate is 0)."""
    t = np.arange(num_frames) * dt_s
    yaw = yaw0_rad + yaw_rate_radps * t
    if abs(yaw_rate_radps) < 1e-12:
        x = start_xy[0] + speed_mps * t * np.cos(yaw0_rad)
        y = start_xy[1] + speed_mps * t * np.sin(yaw0_rad)
    else:
        r = speed_mps / yaw_rate_radps
        x = start_xy[0] + r * (np.sin(yaw) - np.sin(yaw0_rad))
        y = start_xy[1] - r * (np.cos(yaw) - np.cos(yaw0_rad))
    return np.stack([x, y, yaw], axis=1)


def make_scene(seed: int = 0, num_frames: int = 60, pos_noise_m: float = 0.1, yaw_noise_rad: float = 0.03):
    """Six objects (cars driving straight and turning, pedestrians walking) and noisy detections of all of them.

    Returns:
        truth: list per frame of (ids (N,), box7 (N,7), labels (N,)), detections: list per frame of
        (box7 (N,7), labels, scores).
    """
    rng = np.random.default_rng(seed)
    objects = [  # label, lwh, z, speed, yaw rate, start, yaw0
        ("Car", (4.2, 1.8, 1.5), 0.75, 10.0, 0.0, (0.0, 0.0), 0.0),
        ("Car", (4.5, 1.9, 1.6), 0.8, 8.0, 0.35, (5.0, 12.0), np.pi / 2),
        ("Car", (3.9, 1.7, 1.5), 0.75, 12.0, -0.25, (-20.0, -8.0), 0.1),
        ("Car", (4.0, 1.8, 1.5), 0.75, 0.0, 0.0, (15.0, -6.0), 1.0),
        ("Pedestrian", (0.6, 0.6, 1.75), 0.9, 1.4, 0.0, (3.0, 5.0), -np.pi / 2),
        ("Pedestrian", (0.6, 0.6, 1.7), 0.85, 1.2, 0.0, (8.0, 3.0), np.pi),
    ]
    truth, detections = [], []
    paths = [turning_path(num_frames, o[3], o[4], o[5], o[6]) for o in objects]
    for f in range(num_frames):
        box7 = np.array([[p[f, 0], p[f, 1], o[2], p[f, 2], *o[1]] for o, p in zip(objects, paths)])
        labels = np.array([o[0] for o in objects])
        truth.append((np.arange(len(objects)), box7, labels))
        noisy = box7.copy()
        noisy[:, :3] += rng.normal(0, pos_noise_m, (len(objects), 3))
        noisy[:, 3] += rng.normal(0, yaw_noise_rad, len(objects))
        noisy[:, 4:] *= rng.uniform(0.95, 1.05, (len(objects), 3))
        order = rng.permutation(len(objects))  # detectors give no order
        detections.append((noisy[order], labels[order], rng.uniform(0.5, 1.0, len(objects))))
    return truth, detections
