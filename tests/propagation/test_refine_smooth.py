"""ICP constrained to yaw and translation, the fit-to-points fallback, and the RTS smoother with fixed keyframes."""

import numpy as np

from sensorlabel.geometry.se3 import SE3
from sensorlabel.propagation.refine import (
    build_object_model,
    fit_box_to_points,
    icp_yaw_translation,
    object_frame_points,
)
from sensorlabel.propagation.smooth import rts_smooth


def car_surface(rng, n=1500, lwh=(4.5, 1.9, 1.5)):
    """Points on the visible L of a car's sides plus its roof, object frame."""
    l, w, h = lwh
    side = np.stack([rng.uniform(-l / 2, l / 2, n), np.full(n, -w / 2), rng.uniform(-h / 2 + 0.2, h / 2, n)], 1)
    back = np.stack([np.full(n // 2, -l / 2), rng.uniform(-w / 2, w / 2, n // 2), rng.uniform(-h / 2 + 0.2, h / 2, n // 2)], 1)
    roof = np.stack([rng.uniform(-l / 2, l / 3, n // 2), rng.uniform(-w / 2, w / 2, n // 2), np.full(n // 2, h / 2)], 1)
    return np.concatenate([side, back, roof])


def test_icp_recovers_yaw_and_translation():
    rng = np.random.default_rng(0)
    model = build_object_model([car_surface(rng)], voxel_m=0.05)
    truth = SE3.from_yaw(0.7, np.array([12.0, -3.0, 0.9]))
    observed = truth.transform_points(car_surface(rng, 600)) + rng.normal(0, 0.02, (1200, 3))
    init = SE3.from_yaw(0.7 + np.deg2rad(6), np.array([12.5, -2.6, 1.0]))
    res = icp_yaw_translation(model, observed, init)
    assert np.abs(res.world_SE3_object.translation - truth.translation).max() < 0.05
    assert abs(res.world_SE3_object.yaw_rad() - 0.7) < np.deg2rad(0.5)
    assert res.fitness > 0.9
    # Roll and pitch stay exactly as given: the estimator only turns about z.
    assert np.allclose(res.world_SE3_object.rotation[2], [0, 0, 1], atol=1e-12)


def test_icp_without_model_keeps_initial_pose():
    init = SE3.from_yaw(0.1, np.array([1.0, 2.0, 3.0]))
    res = icp_yaw_translation(np.zeros((0, 3)), np.ones((10, 3)), init)
    assert res.fitness == 0.0 and res.world_SE3_object.allclose(init)


def test_object_frame_points_selects_inside_and_drops_ground():
    pose = SE3.from_yaw(np.pi / 2, np.array([5.0, 5.0, 0.75]))
    lwh = np.array([4.0, 2.0, 1.5])
    local = np.array([[1.9, 0.9, 0.7], [0.0, 0.0, -0.74], [2.5, 0, 0], [0, 0, 0]])
    got = object_frame_points(pose.transform_points(local), pose, lwh)
    assert np.allclose(np.sort(got[:, 0]), [0.0, 1.9])


def test_fit_box_to_points_slides_minimally():
    pose = SE3.from_yaw(0.0, np.array([0.0, 0.0, 0.0]))
    lwh = np.array([4.0, 2.0, 1.5])
    pts = np.array([[2.5, 0.0, 0.0], [0.0, 0.2, 0.0]])  # sticks out 0.5 m at the front
    moved = fit_box_to_points(pose, lwh, pts)
    assert np.allclose(moved.translation, [0.5, 0.0, 0.0])
    assert fit_box_to_points(pose, lwh, np.zeros((0, 3))).allclose(pose)


def test_rts_smoother_reduces_noise_and_keeps_keyframes():
    rng = np.random.default_rng(3)
    t = np.arange(60) * 0.1
    truth = np.stack([2 * t + 0.3 * t**2, -t, 0.2 + 0 * t, 0.05 * t], 1)
    meas = truth + rng.normal(0, 0.15, truth.shape)
    var = np.full_like(meas, 0.15**2)
    meas[::10], var[::10] = truth[::10], 1e-8
    meas[33:37] = np.nan
    out = rts_smooth(t, np.stack([meas, meas]), np.stack([var, var]))
    raw_err = np.nanmean(np.abs(meas - truth)[~np.isnan(meas)])
    assert np.abs(out[0] - truth).mean() < raw_err / 2.5
    assert np.abs(out[0, ::10] - truth[::10]).max() < 1e-3
    assert np.isfinite(out[0, 33:37]).all()
    # Outside a track's measured span the output is NaN.
    partial = meas.copy()
    partial[:5] = np.nan
    out2 = rts_smooth(t, partial[None], var[None])
    assert np.isnan(out2[0, :5]).all() and np.isfinite(out2[0, 5:]).all()
