"""Keyframe interpolation: the SE(3) geodesic reproduces constant-twist motion exactly; baselines behave as cited."""

import numpy as np
import pytest

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.lie import geodesic_interpolate, se3_exp, se3_log
from sensorlabel.geometry.se3 import SE3
from sensorlabel.propagation.interpolate import (
    KeyframeTrack,
    baseline_copy_last,
    baseline_linear_sensor,
    baseline_linear_world,
    interpolate_world,
)


def arc_pose(t_s, speed=10.0, yaw_rate=0.4, yaw0=0.3, origin=(5.0, -2.0, 0.8)):
    """Exact pose of a car driving a circle at constant speed and yaw rate."""
    t_s = np.asarray(t_s, dtype=float)
    yaw = yaw0 + yaw_rate * t_s
    r = speed / yaw_rate
    x = origin[0] + r * (np.sin(yaw) - np.sin(yaw0))
    y = origin[1] - r * (np.cos(yaw) - np.cos(yaw0))
    return SE3.from_yaw(yaw, np.stack([x, y, np.full_like(x, origin[2])], axis=1))


@pytest.mark.parametrize("seed", range(5))
def test_log_exp_round_trip(seed):
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(50, 3))
    omega = axis / np.linalg.norm(axis, axis=1, keepdims=True) * rng.uniform(0, 3.1, (50, 1))  # principal log: |w| < pi
    twist = np.concatenate([omega, rng.normal(0, 10, (50, 3))], axis=1)
    twist[:5, :3] *= 1e-7  # small-angle branch
    back = se3_log(se3_exp(twist))
    assert np.allclose(back, twist, atol=1e-8)


def test_geodesic_reproduces_circular_arc_where_linear_cuts_the_corner():
    key_t = np.array([0.0, 1.0])
    poses = arc_pose(key_t)
    q = np.linspace(0, 1, 11)
    geo = geodesic_interpolate(poses[np.zeros(11, int)], poses[np.ones(11, int)], q)
    truth = arc_pose(q)
    assert np.abs(geo.translation - truth.translation).max() < 1e-9
    assert np.abs(geo.yaw_rad() - truth.yaw_rad()).max() < 1e-9
    lin = poses.translation[0] + q[:, None] * (poses.translation[1] - poses.translation[0])
    assert np.abs(lin - truth.translation).max() > 0.1  # the chord is off the arc by decimetres


def test_world_interpolation_removes_ego_motion():
    times_ns = (np.arange(21) * 1e8).astype(np.int64)
    t_s = times_ns * 1e-9
    world_SE3_object = arc_pose(t_s)
    world_SE3_ego = arc_pose(t_s, speed=14.0, yaw_rate=-0.2, yaw0=0.0, origin=(0.0, 0.0, 0.0))
    lwh = np.tile([4.5, 1.9, 1.6], (21, 1))
    world_boxes = Boxes(world_SE3_object.translation, lwh, world_SE3_object.as_quat_wxyz(), np.full(21, 7),
                        np.full(21, "Car"))
    boxes_ego = world_boxes.transform(world_SE3_ego.inverse())
    key = np.array([0, 10, 20])
    track = KeyframeTrack.from_ego_boxes(boxes_ego[key], times_ns[key], world_SE3_ego[key])
    q = np.setdiff1d(np.arange(21), key)
    ours = interpolate_world(track, times_ns[q], world_SE3_ego[q])
    assert np.abs(ours.center_m - boxes_ego.center_m[q]).max() < 1e-6
    sensor = baseline_linear_sensor(boxes_ego[key], times_ns[key], times_ns[q])
    world = baseline_linear_world(boxes_ego[key], times_ns[key], world_SE3_ego[key], times_ns[q], world_SE3_ego[q])
    copy = baseline_copy_last(boxes_ego[key], times_ns[key], times_ns[q])
    err = lambda b: np.linalg.norm(b.center_m - boxes_ego.center_m[q], axis=1).mean()
    assert err(ours) < 1e-6 < err(world) < err(sensor)
    assert err(copy) > err(sensor)
    assert np.array_equal(copy.center_m[:9], np.repeat(boxes_ego.center_m[:1], 9, 0))


def test_single_keyframe_holds_still_in_world_and_errors():
    boxes = Boxes.from_yaw([[1.0, 2.0, 0.5]], [[4, 2, 1.5]], [0.2], [3], ["Car"])
    track = KeyframeTrack.from_ego_boxes(boxes, np.array([0]), SE3.identity(1))
    out = track.boxes_world_at(np.array([0, 5, 10]))
    assert np.allclose(out.center_m, [[1.0, 2.0, 0.5]] * 3)
    with pytest.raises(ValueError):
        KeyframeTrack.from_ego_boxes(Boxes.empty(), np.zeros(0), SE3.identity(0))
    two = Boxes.concatenate([boxes, boxes.replace(track_id=np.array([4]))])
    with pytest.raises(ValueError, match="several tracks"):
        KeyframeTrack.from_ego_boxes(two, np.array([0, 1]), SE3.identity(2))
