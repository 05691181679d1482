"""IoU and GIoU: the vectorised paths against shapely's exact polygons, and analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlabel.geometry import Boxes
from sensorlabel.geometry.iou import (
    center_distance,
    convex_hull_area,
    giou_3d,
    giou_bev,
    iou_3d,
    iou_3d_paired,
    iou_3d_shapely,
    iou_bev,
    iou_bev_shapely,
    polygon_intersection_area,
)

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=40, deadline=None)


def random_scene(rng: np.random.Generator, n: int, spread_m: float = 6.0) -> Boxes:
    """Gravity-aligned boxes crowded enough that many pairs overlap, including near-duplicates."""
    center = np.c_[rng.uniform(-spread_m, spread_m, (n, 2)), rng.uniform(-1, 1, n)]
    lwh = rng.uniform(0.5, 5.0, (n, 3))
    yaw = rng.uniform(-np.pi, np.pi, n)
    # Some boxes are copies of others, a little moved or turned, or exactly aligned with them.
    copy = rng.random(n) < 0.3
    src = rng.integers(0, n, n)
    center[copy] = center[src[copy]] + rng.normal(0, 0.2, (copy.sum(), 3)) * (rng.random((copy.sum(), 1)) < 0.5)
    lwh[copy] = lwh[src[copy]]
    yaw[copy] = yaw[src[copy]] + rng.choice([0.0, np.pi / 2, np.pi, 0.05], copy.sum())
    return Boxes.from_yaw(center, lwh, yaw)


def shapely_giou(a: Boxes, b: Boxes, three_d: bool) -> np.ndarray:
    pa = np.asarray(a.bev_polygons(), dtype=object)[:, None]
    pb = np.asarray(b.bev_polygons(), dtype=object)[None, :]
    inter = shapely.area(shapely.intersection(pa, pb))
    hull = shapely.area(shapely.convex_hull(shapely.union(pa, pb)))
    if not three_d:
        union = shapely.area(pa) + shapely.area(pb) - inter
        return inter / union - (hull - union) / hull
    za = np.c_[a.center_m[:, 2] - a.lwh_m[:, 2] / 2, a.center_m[:, 2] + a.lwh_m[:, 2] / 2]
    zb = np.c_[b.center_m[:, 2] - b.lwh_m[:, 2] / 2, b.center_m[:, 2] + b.lwh_m[:, 2] / 2]
    overlap = np.clip(np.minimum(za[:, None, 1], zb[None, :, 1]) - np.maximum(za[:, None, 0], zb[None, :, 0]), 0, None)
    span = np.maximum(za[:, None, 1], zb[None, :, 1]) - np.minimum(za[:, None, 0], zb[None, :, 0])
    inter3 = inter * overlap
    union3 = a.volume_m3()[:, None] + b.volume_m3()[None, :] - inter3
    enclosing = hull * span
    return inter3 / union3 - (enclosing - union3) / enclosing


@PROPERTY
@given(SEEDS, st.integers(min_value=1, max_value=25), st.integers(min_value=1, max_value=25))
def test_fast_iou_matches_shapely(seed, na, nb):
    rng = np.random.default_rng(seed)
    a, b = random_scene(rng, na), random_scene(rng, nb)
    np.testing.assert_allclose(iou_bev(a, b), iou_bev_shapely(a, b), atol=1e-9)
    np.testing.assert_allclose(iou_3d(a, b), iou_3d_shapely(a, b), atol=1e-9)
    both = Boxes.concatenate([a, b])
    np.testing.assert_allclose(iou_bev(both, both), iou_bev_shapely(both, both), atol=1e-9)
    n = min(na, nb)
    np.testing.assert_allclose(iou_3d_paired(a[:n], b[:n]), np.diag(iou_3d_shapely(a[:n], b[:n])), atol=1e-9)


@PROPERTY
@given(SEEDS, st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=20))
def test_giou_matches_shapely(seed, na, nb):
    rng = np.random.default_rng(seed)
    a, b = random_scene(rng, na, spread_m=10.0), random_scene(rng, nb, spread_m=10.0)
    g_bev, g_3d = giou_bev(a, b), giou_3d(a, b)
    np.testing.assert_allclose(g_bev, shapely_giou(a, b, three_d=False), atol=1e-9)
    np.testing.assert_allclose(g_3d, shapely_giou(a, b, three_d=True), atol=1e-9)
    assert (g_bev > -1).all() and (g_bev <= 1 + 1e-12).all()
    assert (g_bev <= iou_bev(a, b) + 1e-12).all() and (g_3d <= iou_3d(a, b) + 1e-12).all()


@PROPERTY
@given(SEEDS)
def test_convex_hull_area_matches_shapely(seed):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(300, 8, 2)) * rng.uniform(0.01, 50, (300, 1, 2)) + rng.uniform(-100, 100, (300, 1, 2))
    # Snapped to a coarse grid in some sets: repeated and collinear points.
    snap = rng.random(300) < 0.4
    points[snap] = np.round(points[snap] * 0.2) / 0.2
    points[:20, 4:] = points[:20, :4]  # exact duplicates
    # Collinear points on the ray at angle pi from the mean, some with y = -0.0 (a regression: +-pi split them).
    points[20] = [[40, -5], [-5, 0], [5, 0], [45, -0.0], [-0.0, -0.0], [20, 5], [45, -0.0], [20, -0.0]]
    expected = shapely.area(shapely.convex_hull(shapely.multipoints(points)))
    np.testing.assert_allclose(convex_hull_area(points), expected, rtol=1e-9, atol=1e-9)


def unit_squares(centers_xy, yaw=None, z=None, h=None) -> Boxes:
    n = len(centers_xy)
    center = np.c_[np.asarray(centers_xy, dtype=float), np.zeros(n) if z is None else z]
    lwh = np.c_[np.ones((n, 2)), np.ones(n) if h is None else h]
    return Boxes.from_yaw(center, lwh, np.zeros(n) if yaw is None else yaw)


def test_analytic_cases():
    a = unit_squares([[0, 0]])
    # Identical -> 1, offset by half a side -> 1/3, disjoint -> 0, touching along an edge -> 0.
    b = unit_squares([[0, 0], [0.5, 0], [3, 0], [1, 0], [0.5, 0.5]])
    expected = [1.0, 1 / 3, 0.0, 0.0, 0.25 / 1.75]
    for fn in (iou_bev, iou_3d, iou_bev_shapely, iou_3d_shapely):
        np.testing.assert_allclose(fn(a, b)[0], expected, atol=1e-12)
    # A square and the same square turned by 45 degrees overlap in a regular octagon of area 2 (sqrt 2 - 1).
    turned = unit_squares([[0, 0]], yaw=[np.pi / 4])
    octagon = 2 * (np.sqrt(2) - 1)
    np.testing.assert_allclose(iou_bev(a, turned), [[octagon / (2 - octagon)]], atol=1e-12)
    # A box inside a bigger one: IoU is the volume ratio.
    big = Boxes.from_yaw([[0.2, 0.1, 0.0]], [[3.0, 2.0, 2.0]], [0.3])
    np.testing.assert_allclose(iou_3d(a, big), [[1 / 12]], atol=1e-12)
    # Same footprint, shifted up by half the height -> 1/3 in 3D, 1 in BEV.
    up = unit_squares([[0, 0]], z=[0.5])
    np.testing.assert_allclose(iou_3d(a, up), [[1 / 3]], atol=1e-12)
    np.testing.assert_allclose(iou_bev(a, up), [[1.0]], atol=1e-12)
    # Stacked exactly on top: BEV 1, 3D 0.
    np.testing.assert_allclose(iou_3d(a, unit_squares([[0, 0]], z=[1.0])), [[0.0]], atol=1e-12)


def test_giou_analytic_cases():
    a = unit_squares([[0, 0]])
    b = unit_squares([[0, 0], [0.5, 0], [2, 0], [1, 0], [11, 0]])
    # Offset 0.5: IoU 1/3, hull = union -> 1/3. Gap of 1: union 2, hull 3 -> -1/3. Touching: 0. Far apart -> -1.
    np.testing.assert_allclose(giou_bev(a, b)[0], [1.0, 1 / 3, -1 / 3, 0.0, 2 / 12 - 1], atol=1e-12)
    np.testing.assert_allclose(giou_3d(a, b)[0], [1.0, 1 / 3, -1 / 3, 0.0, 2 / 12 - 1], atol=1e-12)
    # Vertically apart by one height: union 2, enclosing 1 x 1 x 3 -> -1/3.
    np.testing.assert_allclose(giou_3d(a, unit_squares([[0, 0]], z=[2.0])), [[-1 / 3]], atol=1e-12)
    # GIoU keeps ranking disjoint boxes by distance where IoU is flat 0.
    far = unit_squares([[2, 0], [3, 0], [5, 0]])
    assert np.all(np.diff(giou_bev(a, far)[0]) < 0)
    assert np.all(iou_bev(a, far) == 0)


def test_identical_boxes_rotated_and_large_coordinates():
    rng = np.random.default_rng(3)
    boxes = Boxes.from_yaw(np.c_[rng.uniform(-1e4, 1e4, (30, 2)), rng.uniform(-5, 5, 30)],
                           rng.uniform(0.3, 12, (30, 3)), rng.uniform(-np.pi, np.pi, 30))
    np.testing.assert_allclose(np.diag(iou_3d(boxes, boxes)), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.diag(giou_3d(boxes, boxes)), 1.0, atol=1e-9)
    np.testing.assert_allclose(iou_3d_paired(boxes, boxes), 1.0, atol=1e-9)
    # Far apart boxes of the same scene do not overlap.
    off = iou_bev(boxes, boxes) - np.diag(np.diag(iou_bev(boxes, boxes)))
    np.testing.assert_allclose(off, iou_bev_shapely(boxes, boxes) - np.eye(30), atol=1e-9)


def test_polygon_intersection_area_of_squares():
    square = np.array([[[0.0, 0], [1, 0], [1, 1], [0, 1]]])
    moved = square + [0.5, 0.5]
    np.testing.assert_allclose(polygon_intersection_area(square, moved), [0.25])
    np.testing.assert_allclose(polygon_intersection_area(square, square), [1.0])
    assert polygon_intersection_area(np.zeros((0, 4, 2)), np.zeros((0, 4, 2))).shape == (0,)


def test_center_distance():
    rng = np.random.default_rng(0)
    a, b = random_scene(rng, 7), random_scene(rng, 4)
    expected = np.linalg.norm(a.center_m[:, None] - b.center_m[None], axis=2)
    np.testing.assert_allclose(center_distance(a, b), expected, atol=1e-12)
    expected_bev = np.linalg.norm(a.center_m[:, None, :2] - b.center_m[None, :, :2], axis=2)
    np.testing.assert_allclose(center_distance(a, b, bev=True), expected_bev, atol=1e-12)


@pytest.mark.parametrize("fn", [iou_bev, iou_3d, giou_bev, giou_3d, center_distance, iou_bev_shapely, iou_3d_shapely])
def test_empty_inputs(fn):
    boxes = unit_squares([[0, 0], [1, 1]])
    assert fn(Boxes.empty(), boxes).shape == (0, 2)
    assert fn(boxes, Boxes.empty()).shape == (2, 0)
    assert fn(Boxes.empty(), Boxes.empty()).shape == (0, 0)


def test_paired_iou_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="2 and 1"):
        iou_3d_paired(unit_squares([[0, 0], [1, 1]]), unit_squares([[0, 0]]))
