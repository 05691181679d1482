"""The raw-array paired IoU/GIoU (the tracker's per-frame path) and both convex-hull paths, against shapely."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from sensorlabel.geometry import Boxes
from sensorlabel.geometry.iou import (
    _HULL_SUCCESSOR_MAX,
    bev_corners_yaw,
    convex_hull_area,
    giou_3d,
    iou_3d_paired,
    iou_bev,
    iou_paired_yaw,
)


def box_pairs(seed: int, n: int = 300) -> tuple[np.ndarray, ...]:
    """Box pairs with the degenerate cases of a tracker: identical, turned by pi/2 or pi, touching, far apart."""
    rng = np.random.default_rng(seed)
    c = np.c_[rng.uniform(-6, 6, (n, 2)), rng.uniform(-1, 1, n)]
    lwh = rng.uniform(0.5, 5, (n, 3))
    yaw = rng.uniform(-np.pi, np.pi, n)
    c2 = c + rng.normal(0, 2, (n, 3)) * (rng.random((n, 1)) < 0.7)
    lwh2 = np.where(rng.random((n, 1)) < 0.3, lwh, rng.uniform(0.5, 5, (n, 3)))
    yaw2 = np.where(rng.random(n) < 0.4, yaw + rng.choice([0, np.pi / 2, np.pi, -np.pi / 2], n),
                    rng.uniform(-np.pi, np.pi, n))
    k = n // 4  # snapped to a grid: axis-aligned, touching, collinear edges
    c[:k, :2], c2[:k, :2] = np.round(c[:k, :2]), np.round(c2[:k, :2] * 2) / 2
    lwh[:k, :2], lwh2[:k, :2] = np.round(lwh[:k, :2]) + 1, np.round(lwh2[:k, :2]) + 1
    yaw[:k], yaw2[:k] = 0.0, rng.choice([0, np.pi / 2, np.pi], k)
    c2[k:k + 20], lwh2[k:k + 20] = c[k:k + 20], lwh[k:k + 20]  # the same box, turned by 0, pi/2 or pi
    offset = np.r_[rng.uniform(-1e4, 1e4, 2), 0.0] if seed % 2 else np.zeros(3)  # large coordinates
    return c + offset, lwh, yaw, c2 + offset, lwh2, yaw2


def shapely_paired(c, lwh, yaw, c2, lwh2, yaw2) -> dict[str, np.ndarray]:
    pa = shapely.polygons(bev_corners_yaw(c[:, :2], lwh[:, :2], yaw))
    pb = shapely.polygons(bev_corners_yaw(c2[:, :2], lwh2[:, :2], yaw2))
    inter = shapely.area(shapely.intersection(pa, pb))
    hull = shapely.area(shapely.convex_hull(shapely.union(pa, pb)))
    top = np.minimum(c[:, 2] + lwh[:, 2] / 2, c2[:, 2] + lwh2[:, 2] / 2)
    bottom = np.maximum(c[:, 2] - lwh[:, 2] / 2, c2[:, 2] - lwh2[:, 2] / 2)
    span = np.maximum(c[:, 2] + lwh[:, 2] / 2, c2[:, 2] + lwh2[:, 2] / 2) - np.minimum(c[:, 2] - lwh[:, 2] / 2,
                                                                                      c2[:, 2] - lwh2[:, 2] / 2)
    a2, b2 = lwh[:, 0] * lwh[:, 1], lwh2[:, 0] * lwh2[:, 1]
    u2 = a2 + b2 - inter
    i3 = inter * np.clip(top - bottom, 0, None)
    u3 = a2 * lwh[:, 2] + b2 * lwh2[:, 2] - i3
    return {"iou_bev": inter / u2, "giou_bev": inter / u2 - (hull - u2) / hull,
            "iou_3d": i3 / u3, "giou_3d": i3 / u3 - (hull * span - u3) / (hull * span)}


@pytest.mark.parametrize("seed", range(6))
def test_iou_paired_yaw_matches_shapely(seed):
    args = box_pairs(seed)
    ref = shapely_paired(*args)
    for name, (bird_eye, generalized) in {"iou_bev": (True, False), "giou_bev": (True, True),
                                          "iou_3d": (False, False), "giou_3d": (False, True)}.items():
        got = iou_paired_yaw(*args, bird_eye=bird_eye, generalized=generalized)
        np.testing.assert_allclose(got, ref[name], atol=1e-9, err_msg=name)
    same = slice(len(args[0]) // 4, len(args[0]) // 4 + 20)
    lwh_equal_turned = np.isclose(np.cos(2 * (args[2][same] - args[5][same])), 1.0)  # turned by 0 or pi
    assert np.allclose(iou_paired_yaw(*args, generalized=True)[same][lwh_equal_turned], 1.0)


def test_iou_paired_yaw_equals_the_boxes_api_and_handles_no_pairs():
    c, lwh, yaw, c2, lwh2, yaw2 = box_pairs(7, n=40)
    a, b = Boxes.from_yaw(c, lwh, yaw), Boxes.from_yaw(c2, lwh2, yaw2)
    np.testing.assert_allclose(iou_paired_yaw(c, lwh, yaw, c2, lwh2, yaw2), iou_3d_paired(a, b), atol=1e-12)
    np.testing.assert_allclose(iou_paired_yaw(c, lwh, yaw, c2, lwh2, yaw2, bird_eye=True), np.diag(iou_bev(a, b)),
                               atol=1e-12)
    np.testing.assert_allclose(iou_paired_yaw(c, lwh, yaw, c2, lwh2, yaw2, generalized=True), np.diag(giou_3d(a, b)),
                               atol=1e-12)
    empty = np.zeros((0, 3))
    assert iou_paired_yaw(empty, empty, np.zeros(0), empty, empty, np.zeros(0), generalized=True).shape == (0,)


@pytest.mark.parametrize("num_sets", [1, 50, _HULL_SUCCESSOR_MAX // 64 + 1])  # both paths: successor, peeling
def test_convex_hull_area_paths_match_shapely_on_box_corners_and_point_sets(num_sets):
    rng = np.random.default_rng(num_sets)
    c, lwh, yaw, c2, lwh2, yaw2 = box_pairs(num_sets, n=max(num_sets, 40))
    boxes = np.concatenate([bev_corners_yaw(c[:, :2], lwh[:, :2], yaw), bev_corners_yaw(c2[:, :2], lwh2[:, :2], yaw2)],
                           axis=1)
    points = rng.normal(size=(len(boxes), 8, 2)) * rng.uniform(0.01, 50, (len(boxes), 1, 2))
    points[::3] = np.round(points[::3])  # repeated and collinear points
    points[1::7, 4:] = points[1::7, :4]
    points[2] = [[0, 0], [1, 0], [2, 0], [3, 0], [0, 0], [5, 0], [4, 0], [1, 0]]  # all on one line: area 0
    for pts in (boxes[:num_sets], points[:num_sets]):
        expected = shapely.area(shapely.convex_hull(shapely.multipoints(pts)))
        np.testing.assert_allclose(convex_hull_area(pts), expected, rtol=1e-9, atol=1e-9)


def test_convex_hull_of_a_box_turned_by_pi_is_the_box():
    # The corners come back in another order and off by rounding: each must count once, none may be lost.
    c, lw = np.array([[9276.4, -8615.3], [1.5, -2.0]]), np.array([[4.2, 0.6], [3.0, 1.0]])
    yaw = np.array([0.3, -2.1])
    pts = np.concatenate([bev_corners_yaw(c, lw, yaw), bev_corners_yaw(c, lw, yaw + np.pi)], axis=1)
    np.testing.assert_allclose(convex_hull_area(pts), lw[:, 0] * lw[:, 1], rtol=1e-9)
