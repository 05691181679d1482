"""Association affinities (against shapely / the geometry module) and the gated Hungarian assignment."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from sensorlabel.geometry import Boxes
from sensorlabel.geometry.iou import bev_corners_yaw, giou_3d, giou_bev, iou_3d_paired
from sensorlabel.tracking.association import associate, metric_code, paired_affinity


def bev_corners(box7: np.ndarray) -> np.ndarray:
    return bev_corners_yaw(box7[:, :2], box7[:, 4:6], box7[:, 3])


def _random_pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.c_[rng.uniform(-3, 3, (n, 3)), rng.uniform(-np.pi, np.pi, n), rng.uniform(0.5, 5, (n, 3))]
    b = a.copy()
    b[:, :3] += rng.normal(0, 1.5, (n, 3))
    b[:, 3] += rng.normal(0, 0.5, n)
    b[:, 4:] *= rng.uniform(0.7, 1.3, (n, 3))
    b[:3] = a[:3]  # identical boxes
    b[3:6, 3] = a[3:6, 3]  # touching end to end
    b[3:6, 0] = a[3:6, 0] + a[3:6, 4] * np.cos(a[3:6, 3])
    b[3:6, 1] = a[3:6, 1] + a[3:6, 4] * np.sin(a[3:6, 3])
    b[3:6, 2] = a[3:6, 2]
    b[3:6, 4:] = a[3:6, 4:]
    return a, b


def test_iou_3d_equals_geometry_module():
    a, b = _random_pairs(200)
    ref = iou_3d_paired(Boxes.from_yaw(a[:, :3], a[:, 4:], a[:, 3]), Boxes.from_yaw(b[:, :3], b[:, 4:], b[:, 3]))
    assert np.allclose(paired_affinity(a, b, "iou_3d"), ref, atol=1e-9)


def test_every_metric_equals_the_boxes_api_of_the_geometry_module():
    a, b = _random_pairs(60, seed=2)
    ba = Boxes.from_yaw(a[:, :3], a[:, 4:], a[:, 3])
    bb = Boxes.from_yaw(b[:, :3], b[:, 4:], b[:, 3])
    for metric, fn in [("giou_3d", giou_3d), ("giou_bev", giou_bev)]:
        np.testing.assert_allclose(paired_affinity(a, b, metric), np.diag(fn(ba, bb)), atol=1e-9)
    np.testing.assert_allclose(paired_affinity(a, b, "center_distance"), -np.linalg.norm(a[:, :3] - b[:, :3], axis=1))


def test_giou_3d_against_a_direct_computation():
    a, b = _random_pairs(200, seed=1)
    ca, cb = bev_corners(a), bev_corners(b)
    inter = shapely.area(shapely.intersection(shapely.polygons(ca), shapely.polygons(cb)))
    hull = np.array([shapely.MultiPoint(np.concatenate([p, q])).convex_hull.area for p, q in zip(ca, cb)])
    top = np.minimum(a[:, 2] + a[:, 6] / 2, b[:, 2] + b[:, 6] / 2)
    bot = np.maximum(a[:, 2] - a[:, 6] / 2, b[:, 2] - b[:, 6] / 2)
    span = np.maximum(a[:, 2] + a[:, 6] / 2, b[:, 2] + b[:, 6] / 2) - np.minimum(a[:, 2] - a[:, 6] / 2,
                                                                                  b[:, 2] - b[:, 6] / 2)
    i3 = inter * np.clip(top - bot, 0, None)
    u3 = np.prod(a[:, 4:], 1) + np.prod(b[:, 4:], 1) - i3
    c3 = hull * span
    giou = paired_affinity(a, b, "giou_3d")
    assert np.allclose(giou, i3 / u3 - (c3 - u3) / c3, atol=1e-9)
    assert np.allclose(giou[:3], 1.0)
    # Touching end to end: IoU 0, the hull is exactly the union, so GIoU is 0 too.
    assert np.allclose(giou[3:6], 0.0, atol=1e-9)
    assert np.all(giou >= -1.0 - 1e-12) and np.all(giou <= 1.0 + 1e-12)


def test_giou_ranks_disjoint_boxes_iou_cannot():
    a = np.array([[0, 0, 0, 0, 4, 2, 1.5]] * 2, dtype=float)
    b = a.copy()
    b[0, 0] = 5.0  # 1 m gap
    b[1, 0] = 9.0  # 5 m gap
    assert np.all(paired_affinity(a, b, "iou_3d") == 0)
    g = paired_affinity(a, b, "giou_3d")
    assert g[0] > g[1]
    assert paired_affinity(a, b, "center_distance") == pytest.approx([-5.0, -9.0])


def test_associate_prefers_best_total_and_respects_class_and_gates():
    codes = np.array([metric_code("giou_3d"), metric_code("center_distance")])
    thresholds = np.array([-0.2, 1.0])
    cars = np.array([[0, 0, 0, 0, 4, 2, 1.5], [10, 0, 0, 0, 4, 2, 1.5]], dtype=float)
    ped = np.array([[5, 5, 0, 0, 0.6, 0.6, 1.7]])
    tracks = np.concatenate([cars, ped])
    track_class = np.array([0, 0, 1])
    # Detections: car 1 moved slightly, car 0 moved slightly, a pedestrian 0.5 m off, a car 40 m away,
    # and a "Car" exactly on the pedestrian track (wrong class: must not match it).
    dets = np.array([[10.3, 0.1, 0, 0, 4, 2, 1.5], [0.2, -0.1, 0, 0.05, 4, 2, 1.5], [5.3, 5.4, 0, 0, 0.6, 0.6, 1.7],
                     [40, 0, 0, 0, 4, 2, 1.5], [5, 5, 0, 0, 0.6, 0.6, 1.7]])
    det_class = np.array([0, 0, 1, 0, 0])
    res = associate(tracks, track_class, dets, det_class, codes, thresholds)
    assert sorted(map(tuple, res.matches.tolist())) == [(0, 1), (1, 0), (2, 2)]
    assert res.unmatched_detections.tolist() == [3, 4]
    assert res.unmatched_tracks.tolist() == []
    # A pedestrian 1.5 m away is beyond its 1 m gate.
    far = associate(ped, np.array([1]), ped + [1.5, 0, 0, 0, 0, 0, 0], np.array([1]), codes, thresholds)
    assert far.matches.shape == (0, 2)


def test_associate_never_matches_across_streams():
    codes, thresholds = np.array([metric_code("iou_3d")]), np.array([0.1])
    box = np.array([[0, 0, 0, 0, 4, 2, 1.5]], dtype=float)
    res = associate(box, np.array([0]), box, np.array([0]), codes, thresholds,
                    track_stream=np.array([0]), detection_stream=np.array([1]))
    assert res.matches.shape == (0, 2)
    res = associate(box, np.array([0]), box, np.array([0]), codes, thresholds,
                    track_stream=np.array([1]), detection_stream=np.array([1]))
    assert res.matches.tolist() == [[0, 0]] and res.affinity[0] == pytest.approx(1.0)


def test_associate_empty_and_bad_metric():
    codes, thresholds = np.array([0]), np.array([0.1])
    res = associate(np.zeros((0, 7)), np.zeros(0, int), np.ones((2, 7)), np.zeros(2, int), codes, thresholds)
    assert res.unmatched_detections.tolist() == [0, 1] and res.matches.shape == (0, 2)
    with pytest.raises(ValueError, match="unknown association metric"):
        metric_code("mahalanobis")
