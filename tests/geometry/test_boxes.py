"""Boxes: construction and validation, selection, concatenation, transforms, corners, points in boxes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from sensorlabel.geometry import BOX_EDGES, SE3, Boxes

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=30, deadline=None)


def random_boxes(rng: np.random.Generator, n: int, *, tilted: bool = True, spread_m: float = 20.0) -> Boxes:
    """n boxes with random centres, sizes 0.3-6 m and uniform 3D rotations (or yaw only)."""
    center = rng.uniform(-spread_m, spread_m, (n, 3))
    lwh = rng.uniform(0.3, 6.0, (n, 3))
    if tilted:
        quat_wxyz = Rotation.random(n, random_state=rng).as_quat()[:, [3, 0, 1, 2]].reshape(n, 4)
        return Boxes(center, lwh, quat_wxyz, np.arange(n), np.array(["Car"] * n), rng.uniform(0, 1, n))
    return Boxes.from_yaw(center, lwh, rng.uniform(-np.pi, np.pi, n), np.arange(n))


def brute_force_inside(boxes: Boxes, points: np.ndarray, margin_m: float = 0.0) -> np.ndarray:
    """(N,P) mask by the definition: |R^T (p - c)| <= lwh/2 + margin on every object axis, for every pair."""
    local = np.einsum("nji,npj->npi", boxes.rotation, points[None, :, :3].astype(np.float64) - boxes.center_m[:, None])
    return np.all(np.abs(local) <= boxes.lwh_m[:, None, :] / 2 + margin_m, axis=2)


# ----- construction, validation ---------------------------------------------------------------------------------
def test_empty():
    empty = Boxes.empty()
    assert len(empty) == 0
    assert empty.corners().shape == (0, 8, 3)
    assert empty.bev_corners().shape == (0, 4, 2)
    assert empty.rotation.shape == (0, 3, 3)
    assert empty.volume_m3().shape == (0,)
    points = np.random.default_rng(0).normal(size=(100, 3))
    b, p = empty.point_box_pairs(points)
    assert b.shape == p.shape == (0,)
    assert empty.points_in_boxes(points).shape == (0, 100)
    assert empty.count_points(points).shape == (0,)
    assert len(empty.transform(SE3.from_yaw(1.0, [1.0, 2, 3]))) == 0
    assert len(Boxes.concatenate([])) == 0
    assert len(Boxes.concatenate([empty, empty])) == 0


def test_single_box_fields_and_defaults():
    box = Boxes(np.array([[1.0, 2.0, 3.0]]), np.array([[4.0, 2.0, 1.5]]), np.array([[2.0, 0.0, 0.0, 0.0]]))
    assert len(box) == 1
    np.testing.assert_array_equal(box.quat_wxyz, [[1.0, 0, 0, 0]])  # normalised
    assert box.track_id.tolist() == [-1] and box.score.tolist() == [1.0] and box.label.tolist() == [""]
    np.testing.assert_allclose(box.volume_m3(), [12.0])
    corners = box.corners()[0]
    np.testing.assert_allclose(corners[0], [3.0, 1.0, 3.75])  # (+l/2, -w/2, +h/2)
    np.testing.assert_allclose(corners[6], [-1.0, 3.0, 2.25])  # (-l/2, +w/2, -h/2)
    points = np.array([[1.0, 2.0, 3.0], [3.0, 3.0, 3.75], [3.0001, 2.0, 3.0], [1.0, 2.0, 3.76]])
    np.testing.assert_array_equal(box.points_in_boxes(points), [[True, True, False, False]])
    # Negative quaternion hemisphere is flipped to w >= 0.
    flipped = Boxes(box.center_m, box.lwh_m, -np.array([[0.5, 0.5, 0.5, 0.5]]))
    np.testing.assert_allclose(flipped.quat_wxyz, [[0.5, 0.5, 0.5, 0.5]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(center_m=np.zeros((2, 2))), r"center_m: expected \(N,3\), got \(2, 2\)"),
        (dict(lwh_m=np.ones((3, 3))), r"lwh_m: expected \(2,3\), got \(3, 3\)"),
        (dict(quat_wxyz=np.ones((2, 3))), r"quat_wxyz: expected \(2,4\), got \(2, 3\)"),
        (dict(track_id=np.zeros((2, 1))), r"track_id: expected \(2\), got \(2, 1\)"),
        (dict(label=np.array(["a", "b", "c"])), r"label: expected \(2,\), got \(3,\)"),
        (dict(score=np.ones(1)), r"score: expected \(2\), got \(1,\)"),
        (dict(center_m=np.array([[0, 0, 0], [0, np.nan, 0.0]])), r"center_m\[1\] is not finite"),
        (dict(lwh_m=np.array([[1, 1, 1], [1, np.inf, 1.0]])), r"lwh_m\[1\] is not finite"),
        (dict(quat_wxyz=np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0.0]])), r"quat_wxyz\[1\] is not finite"),
        (dict(score=np.array([0.5, np.nan])), r"score\[1\] is not finite"),
        (dict(lwh_m=np.array([[1, 1, 1], [1, 0, 1.0]])), r"lwh_m\[1\] must be positive: \[1.0, 0.0, 1.0\]"),
        (dict(lwh_m=np.array([[-1, 1, 1], [1, 1, 1.0]])), r"lwh_m\[0\] must be positive"),
        (dict(quat_wxyz=np.array([[1, 0, 0, 0], [0, 0, 0, 0.0]])), r"quat_wxyz\[1\] is zero"),
    ],
)
def test_invalid_boxes_raise_value_error(kwargs, message):
    fields = dict(center_m=np.zeros((2, 3)), lwh_m=np.ones((2, 3)), quat_wxyz=np.tile([1.0, 0, 0, 0], (2, 1)))
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Boxes(**fields)


def test_invalid_points_shape():
    with pytest.raises(ValueError, match=r"\(10, 2\)"):
        Boxes.from_yaw([[0, 0, 0]], [[1, 1, 1]], [0.0]).point_box_pairs(np.zeros((10, 2)))


# ----- selection, concatenation ---------------------------------------------------------------------------------
@PROPERTY
@given(SEEDS, st.integers(min_value=0, max_value=30))
def test_masking_indexing_and_concatenation(seed, n):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n)
    mask = rng.random(n) < 0.5
    picked = boxes[mask]
    assert len(picked) == mask.sum()
    np.testing.assert_array_equal(picked.track_id, np.flatnonzero(mask))
    np.testing.assert_array_equal(picked.center_m, boxes.center_m[mask])
    np.testing.assert_array_equal(picked.quat_wxyz, boxes.quat_wxyz[mask])
    rest = boxes[~mask]
    joined = Boxes.concatenate([picked, Boxes.empty(), rest])
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    for name in ("center_m", "lwh_m", "quat_wxyz", "track_id", "label", "score"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(boxes, name)[order])
    if n:
        one = boxes[n - 1]
        assert len(one) == 1 and one.track_id[0] == n - 1
        np.testing.assert_array_equal(boxes[1:].center_m, boxes.center_m[1:])
    with pytest.raises(ValueError, match=rf"mask: expected \({n},\), got \({n + 1},\)"):
        boxes[np.ones(n + 1, dtype=bool)]


def test_replace_revalidates():
    boxes = Boxes.from_yaw([[0, 0, 0]], [[1, 2, 3]], [0.3], label=["Car"])
    moved = boxes.replace(center_m=[[1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(moved.center_m, [[1, 1, 1]])
    assert moved.label.tolist() == ["Car"]
    with pytest.raises(ValueError, match="must be positive"):
        boxes.replace(lwh_m=[[1.0, -2.0, 3.0]])


# ----- geometry ---------------------------------------------------------------------------------------------------
@PROPERTY
@given(SEEDS, st.integers(min_value=1, max_value=20))
def test_corners_geometry(seed, n):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n)
    corners = boxes.corners()
    assert corners.shape == (n, 8, 3)
    np.testing.assert_allclose(corners.mean(axis=1), boxes.center_m, atol=1e-9)
    edge_len = np.linalg.norm(corners[:, BOX_EDGES[:, 0]] - corners[:, BOX_EDGES[:, 1]], axis=2)  # (N,12)
    # Edges 1,3,5,7 run along x (length l), 0,2,4,6 along y (width w), 8-11 along z (height h).
    np.testing.assert_allclose(edge_len[:, [1, 3, 5, 7]], np.repeat(boxes.lwh_m[:, :1], 4, 1), atol=1e-9)
    np.testing.assert_allclose(edge_len[:, [0, 2, 4, 6]], np.repeat(boxes.lwh_m[:, 1:2], 4, 1), atol=1e-9)
    np.testing.assert_allclose(edge_len[:, 8:], np.repeat(boxes.lwh_m[:, 2:], 4, 1), atol=1e-9)
    # The front face (corners 0,1,4,5) lies along the object's +x axis.
    front = corners[:, [0, 1, 4, 5]].mean(axis=1) - boxes.center_m
    np.testing.assert_allclose(front, boxes.rotation[:, :, 0] * boxes.lwh_m[:, :1] / 2, atol=1e-9)
    # Bird's-eye corners of yaw-only boxes run counter-clockwise (positive shoelace area = l * w).
    flat = random_boxes(rng, n, tilted=False)
    bev = flat.bev_corners()
    area = 0.5 * np.sum(bev[..., 0] * np.roll(bev[..., 1], -1, 1) - np.roll(bev[..., 0], -1, 1) * bev[..., 1], 1)
    np.testing.assert_allclose(area, flat.lwh_m[:, 0] * flat.lwh_m[:, 1], rtol=1e-9)
    np.testing.assert_allclose(flat.yaw_rad, np.arctan2(flat.rotation[:, 1, 0], flat.rotation[:, 0, 0]))
    np.testing.assert_allclose([p.area for p in flat.bev_polygons()], area, rtol=1e-9)


@PROPERTY
@given(SEEDS, st.integers(min_value=0, max_value=20))
def test_transform_then_inverse_returns_the_boxes(seed, n):
    rng = np.random.default_rng(seed)
    boxes_ego = random_boxes(rng, n)
    world_SE3_ego = SE3(Rotation.random(random_state=rng).as_matrix(), rng.uniform(-500, 500, 3))
    boxes_world = boxes_ego.transform(world_SE3_ego)
    # Corners move rigidly with the transform.
    np.testing.assert_allclose(boxes_world.corners(), world_SE3_ego.transform_points(boxes_ego.corners().reshape(-1, 3)
                                                                                     ).reshape(n, 8, 3), atol=1e-8)
    back = boxes_world.transform(world_SE3_ego.inverse())
    np.testing.assert_allclose(back.center_m, boxes_ego.center_m, atol=1e-9)
    np.testing.assert_allclose(back.rotation, boxes_ego.rotation, atol=1e-9)
    np.testing.assert_array_equal(back.lwh_m, boxes_ego.lwh_m)
    np.testing.assert_array_equal(back.track_id, boxes_ego.track_id)
    np.testing.assert_array_equal(back.label, boxes_ego.label)
    # One transform per box.
    if n:
        per_box = SE3(Rotation.random(n, random_state=rng).as_matrix(), rng.uniform(-5, 5, (n, 3)))
        moved = boxes_ego.transform(per_box)
        np.testing.assert_allclose(moved.center_m, per_box.transform_points(boxes_ego.center_m), atol=1e-9)
        np.testing.assert_allclose(moved.transform(per_box.inverse()).rotation, boxes_ego.rotation, atol=1e-9)


# ----- points in boxes ------------------------------------------------------------------------------------------
@PROPERTY
@given(SEEDS, st.integers(min_value=1, max_value=40), st.booleans())
def test_points_in_boxes_matches_brute_force(seed, n, tilted):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n, tilted=tilted, spread_m=15.0)
    # Random points, plus for every box points just inside and just outside each face and near every corner.
    scattered = rng.uniform(-22, 22, (3000, 3))
    signs = rng.choice([-1.0, 1.0], (n, 40, 3))
    face = rng.integers(0, 3, (n, 40))
    local = rng.uniform(-0.5, 0.5, (n, 40, 3))
    np.put_along_axis(local, face[..., None], 0.5, axis=2)
    local *= signs
    near_in = np.einsum("nij,nkj->nki", boxes.rotation, local * (1 - 1e-7) * boxes.lwh_m[:, None]) + boxes.center_m[
        :, None]
    near_out = np.einsum("nij,nkj->nki", boxes.rotation, local * (1 + 1e-7) * boxes.lwh_m[:, None]) + boxes.center_m[
        :, None]
    points = np.concatenate([scattered, near_in.reshape(-1, 3), near_out.reshape(-1, 3),
                             boxes.corners().reshape(-1, 3)])
    expected = brute_force_inside(boxes, points)
    b, p = boxes.point_box_pairs(points)
    got = np.zeros_like(expected)
    got[b, p] = True
    # Corners lie exactly on the boundary: rounding may put them on either side, in both implementations alike.
    num_corner = 8 * n
    np.testing.assert_array_equal(got[:, :-num_corner], expected[:, :-num_corner])
    inside_ids = len(scattered) + np.arange(n * 40).reshape(n, 40)
    assert got[np.arange(n)[:, None], inside_ids].all()
    assert not got[np.arange(n)[:, None], inside_ids + n * 40].any()
    # Pairs come sorted by box then point, without duplicates.
    key = b * len(points) + p
    assert np.all(np.diff(key) > 0)
    np.testing.assert_array_equal(boxes.points_in_boxes(points), got)
    np.testing.assert_array_equal(boxes.count_points(points), got.sum(axis=1))
    # float32 input gives the answer for the float32 values.
    points32 = points.astype(np.float32)
    got32 = boxes.points_in_boxes(points32)
    np.testing.assert_array_equal(got32[:, : len(scattered)], brute_force_inside(boxes, points32)[:, : len(scattered)])


@PROPERTY
@given(SEEDS)
def test_margin_grows_and_shrinks_boxes(seed):
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 10, spread_m=8.0)
    points = rng.uniform(-12, 12, (4000, 3))
    for margin_m in (0.5, -0.2, -10.0):
        np.testing.assert_array_equal(boxes.points_in_boxes(points, margin_m=margin_m),
                                      brute_force_inside(boxes, points, margin_m))
    assert not boxes.points_in_boxes(points, margin_m=-10.0).any()
    assert (boxes.count_points(points, 0.5) >= boxes.count_points(points)).all()


def test_exact_boundary_points_are_inside():
    """Axis-aligned boxes with dyadic numbers: the faces are exactly representable, the test is closed."""
    boxes = Boxes(np.array([[1.0, 2.0, 0.5], [-4.0, -4.0, 0.0]]), np.array([[2.0, 4.0, 1.0], [1.0, 1.0, 1.0]]),
                  np.tile([1.0, 0, 0, 0], (2, 1)))
    points = np.array([[2.0, 2.0, 0.5], [0.0, 4.0, 1.0], [0.0, 0.0, 0.0], [2.0, 4.0, 1.0],  # faces, corners of box 0
                       [2.0 + 2**-40, 2.0, 0.5], [-4.5, -3.5, 0.5], [-4.5, -3.5, 0.5 + 2**-40]])
    np.testing.assert_array_equal(
        boxes.points_in_boxes(points),
        [[True, True, True, True, False, False, False], [False, False, False, False, False, True, False]])


def test_points_far_away_and_non_finite():
    boxes = Boxes.from_yaw([[0.0, 0, 0], [3.0, 0, 0]], [[1.0, 1, 1], [1.0, 1, 1]], [0.0, 0.7])
    points = np.array([[0.0, 0, 0], [np.nan, 0, 0], [0, np.inf, 0], [-np.inf, -np.inf, 0], [1e30, 0, 0],
                       [3.0, 0.0, 0.0], [0.0, 0.0, 1e9]])
    np.testing.assert_array_equal(boxes.count_points(points), [1, 1])
    b, p = boxes.point_box_pairs(points)
    assert b.tolist() == [0, 1] and p.tolist() == [0, 5]


def test_overlapping_boxes_share_points():
    boxes = Boxes.from_yaw([[0.0, 0, 0], [0.5, 0, 0], [0.25, 0, 0]], [[1.0, 1, 1], [1.0, 1, 1], [0.1, 0.1, 0.1]],
                           [0.0, 0.3, 1.0])
    points = np.array([[0.25, 0.0, 0.0], [0.9, 0.0, 0.0], [-0.4, 0, 0]])
    np.testing.assert_array_equal(boxes.points_in_boxes(points), brute_force_inside(boxes, points))
    np.testing.assert_array_equal(boxes.count_points(points), [2, 2, 1])


def test_points_in_boxes_matches_open3d():
    """The fast path returns exactly Open3D's indices (the benchmark's claim, at test size)."""
    import open3d as o3d

    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 12, tilted=True, spread_m=10.0)
    points = rng.uniform(-14, 14, (20000, 3)).astype(np.float32)
    vector = o3d.utility.Vector3dVector(points.astype(np.float64))
    b, p = boxes.point_box_pairs(points)
    for i, rotation in enumerate(boxes.rotation):
        obb = o3d.geometry.OrientedBoundingBox(boxes.center_m[i], rotation, boxes.lwh_m[i])
        expected = np.sort(np.asarray(obb.get_point_indices_within_bounding_box(vector), dtype=np.int64))
        np.testing.assert_array_equal(p[b == i], expected)
    assert len(p) > 100
