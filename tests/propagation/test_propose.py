"""Geometric proposals: the L-shape fit recovers a car's footprint, and clusters become boxes where truth objects are."""

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.iou import iou_bev
from sensorlabel.propagation.propose import lshape_fit, propose_boxes
from sensorlabel.sim import SimConfig, simulate


def test_lshape_fit_recovers_a_partially_seen_car():
    rng = np.random.default_rng(0)
    yaw, l, w = 0.5, 4.5, 1.9
    side = np.stack([rng.uniform(-l / 2, l / 2, 300), np.full(300, -w / 2)], 1)
    back = np.stack([np.full(150, -l / 2), rng.uniform(-w / 2, w / 2, 150)], 1)
    rot = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    xy = np.concatenate([side, back]) @ rot.T + [10.0, 5.0]
    center, length, width, fitted_yaw = lshape_fit(xy)
    assert np.allclose(center, [10.0, 5.0], atol=0.05)
    assert abs(length - l) < 0.1 and abs(width - w) < 0.1
    assert abs((fitted_yaw - yaw + np.pi / 2) % np.pi - np.pi / 2) < np.deg2rad(2)


def test_proposals_land_on_unlabelled_objects_and_skip_labelled_ones():
    sim = simulate(SimConfig(seed=2, num_frames=2, num_cameras=1, image_size_px=(160, 90), range_noise_m=0.0))
    sweep = sim.sweep(0)
    points_ego = sim.sensors[sweep.sensor].ego_SE3_sensor.transform_points(sweep.xyz_sensor.astype(np.float64))
    truth = sim.truth_boxes_ego(0)
    # Cars seen well (>= 100 points within 30 m); a car behind others shows a single edge no fit can place.
    seen = truth.count_points(points_ego) >= 100
    near_cars = truth[(truth.label == "Car") & seen & (np.linalg.norm(truth.center_m[:, :2], axis=1) < 30)]
    assert len(near_cars) >= 2
    proposals = propose_boxes(points_ego)
    assert len(proposals) > 0 and np.all(proposals.track_id == -1)
    best = iou_bev(near_cars, proposals).max(axis=1)
    assert np.all(best >= 0.5)
    # Once every truth object is labelled, nothing is proposed on them.
    labelled = propose_boxes(points_ego, existing_ego=truth)
    if len(labelled):
        assert iou_bev(near_cars, labelled).max() < 0.1
    assert len(propose_boxes(np.zeros((0, 3)))) == 0 and isinstance(propose_boxes(np.zeros((0, 3))), Boxes)
