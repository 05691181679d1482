"""Kalman motion models: exactness on their own motion, CTRV against CV on a turn, batching, heading flips."""

from __future__ import annotations

import numpy as np
import pytest

from sensorlabel.geometry.lie import wrap_angle
from sensorlabel.tracking.motion import ConstantTurnRate, ConstantVelocity, MotionNoise, make_motion_model
from tests.tracking.synthetic import turning_path

LWH = np.array([4.2, 1.8, 1.5])


def _box7(path_xyyaw: np.ndarray, z: float = 0.75) -> np.ndarray:
    n = path_xyyaw.shape[0]
    return np.concatenate([path_xyyaw[:, :2], np.full((n, 1), z), path_xyyaw[:, 2:3], np.tile(LWH, (n, 1))], axis=1)


def _filter_and_forecast(model, meas: np.ndarray, horizon: int, dt: float = 0.1) -> np.ndarray:
    """Filter the measurements, then predict ``horizon`` steps ahead with no update; returns the predicted xy."""
    x, P = model.initiate(meas[:1])
    for z in meas[1:]:
        x, P = model.predict(x, P, dt)
        x, P = model.update(x, P, z[None])
    for _ in range(horizon):
        x, P = model.predict(x, P, dt)
    return x[0, :2]


def test_ctrv_predicts_a_turn_better_than_cv():
    # A car turning at 0.4 rad/s and 10 m/s, measured with 5 cm noise for 3 s, then forecast 1 s ahead.
    rng = np.random.default_rng(0)
    errors = {"cv": [], "ctrv": []}
    for trial in range(5):
        path = turning_path(40, 10.0, 0.4, yaw0_rad=0.3 * trial)
        meas = _box7(path[:30])
        meas[:, :2] += rng.normal(0, 0.05, (30, 2))
        for name in errors:
            pred = _filter_and_forecast(make_motion_model(name), meas, horizon=10)
            errors[name].append(np.linalg.norm(pred - path[39, :2]))
    # Over 1 s the turn bends the path by ~2 m (v w t^2 / 2); CV misses it, CTRV follows the arc.
    assert np.mean(errors["ctrv"]) < 0.5
    assert np.mean(errors["cv"]) > 1.5
    assert np.mean(errors["ctrv"]) < 0.25 * np.mean(errors["cv"])


@pytest.mark.parametrize("name", ["cv", "ctrv"])
def test_straight_motion_is_learned_exactly(name):
    path = turning_path(30, 8.0, 0.0, yaw0_rad=0.7)
    pred = _filter_and_forecast(make_motion_model(name), _box7(path[:20]), horizon=10)
    assert np.linalg.norm(pred - path[29, :2]) < 0.05


@pytest.mark.parametrize("cls", [ConstantVelocity, ConstantTurnRate])
def test_batched_equals_one_track_at_a_time(cls):
    rng = np.random.default_rng(1)
    model = cls(MotionNoise())
    meas = np.concatenate([rng.normal(0, 10, (6, 3)), rng.uniform(-3, 3, (6, 1)), rng.uniform(1, 4, (6, 3))], axis=1)
    x, P = model.initiate(meas)
    x[:, 7] = rng.normal(0, 5, 6)
    x[:, 8] = rng.normal(0, 0.5, 6)
    xb, Pb = model.predict(x, P, 0.1)
    zb = meas + rng.normal(0, 0.2, meas.shape)
    xu, Pu = model.update(xb, Pb, zb)
    for i in range(6):
        xi, Pi = model.predict(x[i:i + 1], P[i:i + 1], 0.1)
        xi, Pi = model.update(xi, Pi, zb[i:i + 1])
        assert np.allclose(xi, xu[i:i + 1]) and np.allclose(Pi, Pu[i:i + 1])


@pytest.mark.parametrize("name", ["cv", "ctrv"])
def test_flipped_detection_does_not_turn_the_track(name):
    model = make_motion_model(name)
    x, P = model.initiate(np.array([[0, 0, 0, 0.2, 4, 2, 1.5]]))
    x, P_pred = model.predict(x, P, 0.1)
    x, P = model.update(x, P_pred, np.array([[0, 0, 0, 0.2 + np.pi, 4, 2, 1.5]]))
    assert abs(wrap_angle(x[0, 3] - 0.2)) < 1e-6
    # The covariance shrinks with a measurement and stays symmetric positive definite.
    assert np.trace(P[0]) < np.trace(P_pred[0])
    assert np.allclose(P[0], P[0].T)
    assert np.all(np.linalg.eigvalsh(P[0]) > 0)


def test_empty_batch_and_unknown_model():
    model = ConstantTurnRate()
    x, P = model.initiate(np.zeros((0, 7)))
    x2, P2 = model.predict(x, P, 0.1)
    x3, _ = model.update(x2, P2, np.zeros((0, 7)))
    assert x3.shape == (0, 9)
    with pytest.raises(ValueError, match="unknown motion model"):
        make_motion_model("bicycle")
