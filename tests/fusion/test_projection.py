"""Projection, occlusion and box projection on controlled inputs (no simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from sensorlabel.fusion import (
    CameraView,
    Projection,
    compensate_points,
    project_boxes,
    project_sweep,
    static_pose,
    visible_mask,
)
from sensorlabel.fusion.projection import _project_rows, _SectorIndex, cull_bounds
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.camera import SHEET_MIN_JACOBIAN_DET, FisheyeCamera, PinholeCamera
from sensorlabel.geometry.se3 import SE3

PINHOLE = PinholeCamera(800.0, 810.0, 640.0, 360.0, 1280, 720, [-0.2, 0.05, 0.001, -0.001, 0.0])
FISHEYE = FisheyeCamera(300.0, 300.0, 640.0, 400.0, 1280, 800, [0.05, -0.01, 0.002, 0.0])
# Camera looking along ego +x (OpenCV axes: z forward = ego x, x right = ego -y, y down = ego -z).
CAM_SE3_EGO = SE3(np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]]), np.zeros(3)).compose(
    SE3(np.eye(3), [-1.5, 0.0, -1.6]))


@pytest.mark.parametrize("camera", [PINHOLE, FISHEYE])
def test_float32_rows_agree_with_the_camera_model(camera) -> None:
    rng = np.random.default_rng(0)
    pts = rng.uniform([-30, -20, -5], [30, 20, 60], size=(20000, 3))
    uv_ref, ok_ref = camera.project(pts)
    u, v, ok = _project_rows(camera, pts.T.astype(np.float32))
    near_border = (np.abs(uv_ref[:, 0] + 0.5) < 0.01) | (np.abs(uv_ref[:, 0] - camera.width_px + 0.5) < 0.01) \
        | (np.abs(uv_ref[:, 1] + 0.5) < 0.01) | (np.abs(uv_ref[:, 1] - camera.height_px + 0.5) < 0.01)
    assert ((ok == ok_ref) | near_border).all()
    both = ok & ok_ref
    assert both.sum() > 1000
    assert np.abs(np.stack([u, v], 1)[both] - uv_ref[both]).max() < 0.01


def test_static_projection_matches_the_model_and_handles_empty_input() -> None:
    rng = np.random.default_rng(1)
    pts = rng.uniform([-10, -20, -3], [60, 20, 5], size=(5000, 3))
    view = CameraView("cam", PINHOLE, CAM_SE3_EGO, 0)
    _, (proj,) = project_sweep(pts, 0, SE3.identity(), [view], static_pose())
    uv, ok = PINHOLE.project(CAM_SE3_EGO.transform_points(pts))
    assert set(proj.point_index) == set(np.flatnonzero(ok))
    assert np.abs(proj.uv_px - uv[proj.point_index]).max() < 0.01
    _, (empty,) = project_sweep(np.zeros((0, 3)), 0, SE3.identity(), [view], static_pose())
    assert len(empty) == 0 and len(visible_mask(empty)) == 0
    with pytest.raises(ValueError):
        compensate_points(np.zeros((5, 2)), 0, SE3.identity(), static_pose(), 0)
    with pytest.raises(ValueError):
        compensate_points(np.zeros((5, 3)), np.zeros(4, np.int64), SE3.identity(), static_pose(), 0)


def test_points_behind_never_project() -> None:
    view = CameraView("cam", PINHOLE, CAM_SE3_EGO, 0)
    behind = np.array([[-5.0, 0.0, 1.6], [1.5, 0.0, 1.6], [-50.0, 3.0, 0.0]])
    _, (proj,) = project_sweep(behind, 0, SE3.identity(), [view], static_pose())
    assert len(proj) == 0


def test_depth_buffer_hides_a_wall_behind_a_board() -> None:
    """A dense board 10 m ahead hides the part of a wall at 30 m behind it; the rest of the wall stays."""
    g = np.linspace(-1.0, 1.0, 41)
    board = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    board = np.column_stack([np.full(len(board), 10.0), board[:, 0], 1.6 + board[:, 1]])
    w = np.linspace(-8.0, 8.0, 81)
    wall = np.stack(np.meshgrid(w, np.linspace(-2, 2, 21)), -1).reshape(-1, 2)
    wall = np.column_stack([np.full(len(wall), 30.0), wall[:, 0], 1.6 + wall[:, 1]])
    pts = np.concatenate([board, wall])
    view = CameraView("cam", PINHOLE, CAM_SE3_EGO, 0)
    _, (proj,) = project_sweep(pts, 0, SE3.identity(), [view], static_pose())
    keep = visible_mask(proj)
    idx = proj.point_index
    on_board = idx < len(board)
    assert keep[on_board].all()
    wall_xyz = pts[idx[~on_board]]
    # The camera is 8.5 m from the board and 28.5 m from the wall: the board's shadow is 3.35 times its size; the
    # splat (about 10 px = 0.35 m at the wall) widens it a little.
    shadow = (np.abs(wall_xyz[:, 1]) < 3.2) & (np.abs(wall_xyz[:, 2] - 1.6) < 3.2)
    inner = (np.abs(wall_xyz[:, 1]) < 4.0) & (np.abs(wall_xyz[:, 2] - 1.6) < 4.0)
    assert not keep[~on_board][shadow].any()
    assert keep[~on_board][~inner].all()


def test_visible_mask_ignores_empty_image_rows_and_select_forms_agree() -> None:
    """The rule looks only at the buffer rows between the first and last point: two far points (which hide nothing)
    added in the top and bottom rows leave every other point's visibility unchanged, whatever ran before. Selecting
    with the mask or with its indices gives the same projection."""
    rng = np.random.default_rng(3)
    k = 4000
    uv = np.column_stack([rng.uniform(-0.5, 1279.5, k), rng.uniform(400.0, 600.0, k)]).astype(np.float32)
    depth = rng.uniform(2.0, 60.0, k).astype(np.float32)
    band = Projection("cam", k, np.arange(k), uv, depth, 1280, 720, 800.0)
    full = Projection("cam", k + 2, np.arange(k + 2), np.concatenate([uv, [[10.0, 0.0], [1200.0, 719.0]]]).astype(
        np.float32), np.concatenate([depth, [1e6, 1e6]]).astype(np.float32), 1280, 720, 800.0)
    expected = visible_mask(full)[:k]
    assert 0 < expected.sum() < k
    got = visible_mask(band)
    assert np.array_equal(got, expected)
    by_mask, by_index = band.select(got), band.select(np.flatnonzero(got))
    for field in ("point_index", "uv_px", "depth_m"):
        assert np.array_equal(getattr(by_mask, field), getattr(by_index, field))
    assert by_mask.uv_px.shape == (int(got.sum()), 2) and by_mask.uv_px.dtype == np.float32


def test_box_edges_are_clipped_at_the_near_plane() -> None:
    """A box straddling the camera: no edge sample behind the near plane, 2D box clipped to the image."""
    boxes = Boxes.from_yaw(np.array([[1.5, 0.0, 1.6], [20.0, 0.0, 1.0], [-20.0, 0.0, 1.0]]),
                           np.array([[6.0, 2.0, 1.5], [4.0, 2.0, 1.5], [4.0, 2.0, 1.5]]), np.zeros(3))
    proj = project_boxes(boxes, CAM_SE3_EGO, PINHOLE)
    assert proj.in_image.tolist() == [True, True, False]
    assert np.isnan(proj.edges_uv_px[2]).all() and proj.visible_fraction[2] == 0.0
    straddle = proj.edges_uv_px[0].reshape(-1, 2)
    finite = np.isfinite(straddle).all(axis=1)
    assert finite.any() and not finite.all()
    x1, y1, x2, y2 = proj.box2d_px[0]
    assert (x1, y1, x2, y2) == (0.0, 0.0, 1279.0, 719.0)  # a box around the camera fills the image
    assert 0 < proj.visible_fraction[0] < 1 and proj.visible_fraction[1] == 1.0
    empty = project_boxes(Boxes.empty(), CAM_SE3_EGO, PINHOLE)
    assert empty.box2d_px.shape == (0, 4)


@pytest.mark.parametrize(("order", "scan_fraction"), [("firing", 0.4), ("firing", 0.0), ("firing", 1.0),
                                                      ("random", 0.4)])
def test_sector_index_keeps_every_point_a_camera_sees(order: str, scan_fraction: float,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Projecting a sweep into many cameras at once (sector index) gives exactly the per-camera projections, for
    cameras mounted off the ego axis, looking sideways, backwards, tilted, with a moving ego; with the points in
    firing order (azimuth increasing with the index from behind the car, the seam included: the azimuth
    envelopes restrict each camera to index ranges) and in random order (no envelopes). ``scan_fraction`` 0 forces
    the cell look-up for every camera, 1 the whole-range scan."""
    monkeypatch.setattr(_SectorIndex, "MAX_SCAN_FRACTION", scan_fraction)
    rng = np.random.default_rng(7)
    # A dense ring of points at all ranges (0.5-80 m) and heights, as a lidar sees them.
    n = 60000
    r = np.exp(rng.uniform(np.log(0.5), np.log(80.0), n))
    az = rng.uniform(-np.pi, np.pi, n)
    if order == "firing":  # a spinning lidar starting slightly before the seam, with per-beam azimuth jitter
        az = np.sort(az) + 0.05 + rng.normal(0.0, 0.002, n)
    pts = np.column_stack([r * np.cos(az), r * np.sin(az), rng.uniform(-2.0, 4.0, n)])
    times = np.sort(rng.integers(0, 100_000_000, n))
    views = []
    for i, yaw in enumerate(np.deg2rad([0, 55, -55, 180, 110, -110, 30, -150])):
        look = SE3.from_yaw(yaw, np.array([2.5 * np.cos(yaw + i), 1.2 * np.sin(yaw - i), 1.6]))
        tilt = SE3(np.array([[1.0, 0, 0], [0, np.cos(0.2 * (i % 3 - 1)), -np.sin(0.2 * (i % 3 - 1))],
                             [0, np.sin(0.2 * (i % 3 - 1)), np.cos(0.2 * (i % 3 - 1))]]), np.zeros(3))
        ego_SE3_cam = look.compose(SE3(CAM_SE3_EGO.rotation.T, np.zeros(3))).compose(tilt)
        views.append(CameraView(f"cam{i}", PINHOLE, ego_SE3_cam.inverse(), 30_000_000 + i))

    def pose(t):  # 15 m/s along x with a slow yaw
        s = (np.asarray(t, np.int64) * 1e-9).reshape(-1)
        return SE3.from_yaw(0.3 * s, np.column_stack([15.0 * s, np.zeros_like(s), np.zeros_like(s)]))

    _, together = project_sweep(pts, times, SE3.identity(), views, pose, 50_000_000)
    for view, proj in zip(views, together, strict=True):
        _, (alone,) = project_sweep(pts, times, SE3.identity(), [view], pose, 50_000_000)
        assert len(alone) > 500
        assert np.array_equal(np.sort(proj.point_index), np.sort(alone.point_index)), view.name


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_cull_bounds_hold_every_point_the_camera_sees(margin: float) -> None:
    rng = np.random.default_rng(5)
    pts = rng.uniform([-60, -40, 0.2], [60, 40, 60], size=(200000, 3))
    _, ok = PINHOLE.project(pts)
    xy = pts[ok, :2] / pts[ok, 2:3]
    x_lo, x_hi, y_lo, y_hi = cull_bounds(PINHOLE, margin)
    span = np.array([x_hi - x_lo, y_hi - y_lo]) / (1 + 2 * margin)  # the unwidened span
    assert ok.sum() > 1000
    assert (xy >= [x_lo, y_lo]).all() and (xy <= [x_hi, y_hi]).all()
    # Tight: the seen points reach within 1 % of the span of the unwidened bounds on every side.
    lo_gap = xy.min(axis=0) - [x_lo, y_lo] - margin * span
    hi_gap = [x_hi, y_hi] - xy.max(axis=0) - margin * span
    assert (np.abs(lo_gap) < 0.01 * span).all() and (np.abs(hi_gap) < 0.01 * span).all()
    assert cull_bounds(PINHOLE, margin) is cull_bounds(PINHOLE, margin)  # cached
    assert cull_bounds(FISHEYE, margin) is None  # a fisheye sees 90 degrees off axis: x/z unbounded


def test_domain_rule_with_strong_tangential_distortion() -> None:
    """Where the tangential terms can fold the map inside the radial limit, the float32 kernel applies the exact
    Jacobian rule of ``PinholeCamera.project`` beyond the radius where it provably holds."""
    camera = PinholeCamera(500.0, 500.0, 640.0, 360.0, 1280, 720, [-0.05, 0.0, 0.08, -0.06, 0.0])
    rng = np.random.default_rng(3)
    pts = rng.uniform([-60, -40, 0.2], [60, 40, 20], size=(200000, 3))
    uv_ref, ok_ref = camera.project(pts)
    j00, j01, j11 = camera._jacobian(pts[:, :2] / pts[:, 2:3])
    folded = (np.sum((pts[:, :2] / pts[:, 2:3]) ** 2, axis=1) <= camera.max_normalised_radius2) \
        & (j00 * j11 - j01 * j01 <= SHEET_MIN_JACOBIAN_DET)
    u, v, ok = _project_rows(camera, pts.T.astype(np.float32))
    assert folded.sum() > 100 and not ok[folded].any()
    near_border = (np.abs(uv_ref[:, 0] + 0.5) < 0.01) | (np.abs(uv_ref[:, 0] - camera.width_px + 0.5) < 0.01) \
        | (np.abs(uv_ref[:, 1] + 0.5) < 0.01) | (np.abs(uv_ref[:, 1] - camera.height_px + 0.5) < 0.01)
    assert ((ok == ok_ref) | near_border).all()
    both = ok & ok_ref
    assert np.abs(np.stack([u, v], 1)[both] - uv_ref[both]).max() < 0.01


def test_compensation_matches_each_points_own_pose_in_any_order() -> None:
    """Per-point motion compensation (poses interpolated between knots, float32) against the exact transform at each
    point's own time in float64, for a turning ego at 15 m/s; points in firing order and shuffled (the sorting path)
    give the same result, and the rolling-shutter path (unordered row times) agrees with it."""
    rng = np.random.default_rng(5)
    n = 20000
    pts = rng.uniform([-60.0, -60.0, -2.0], [60.0, 60.0, 4.0], size=(n, 3))
    times = np.sort(rng.integers(0, 100_000_000, n))
    ego_SE3_lidar = SE3.from_yaw(0.02, np.array([1.0, 0.1, 1.8]))

    def pose(t):  # 15 m/s with a yaw rate of 0.5 rad/s
        s = (np.asarray(t, np.int64) * 1e-9).reshape(-1)
        return SE3.from_yaw(0.5 * s, np.column_stack([15.0 * np.cos(0.5 * s), 15.0 * np.sin(0.5 * s), 0.0 * s]))

    reference_ns = 50_000_000
    ref_SE3_lidar = pose(np.array([reference_ns]))[0].inverse().compose(pose(times)).compose(ego_SE3_lidar)
    truth = ref_SE3_lidar.transform_points(pts)
    got = compensate_points(pts, times, ego_SE3_lidar, pose, reference_ns)
    assert got.dtype == np.float32 and got.shape == (n, 3)
    # Knot interpolation: (yaw rate * 5 ms)^2 / 8 * 85 m = 7e-5 m; float32 rounding ~1e-5 m. Ignoring the point
    # times would be off by 1.9 m.
    assert np.abs(got - truth).max() < 2e-4
    perm = rng.permutation(n)
    shuffled = compensate_points(pts[perm], times[perm], ego_SE3_lidar, pose, reference_ns)
    assert np.abs(shuffled - got[perm]).max() < 1e-5
    # A rolling-shutter camera looking along +x: its row times are unordered; compare with a global-shutter
    # camera at each point's row time.
    view = CameraView("cam", PINHOLE, CAM_SE3_EGO, 40_000_000, readout_s=0.03)
    _, (rolling,) = project_sweep(pts, times, ego_SE3_lidar, [view], pose, reference_ns)
    assert len(rolling) > 1000
    row_ns = 40_000_000 + np.round(0.03e9 * (rolling.uv_px[:, 1] / (PINHOLE.height_px - 1) - 0.5)).astype(np.int64)
    cam_SE3_ref = CAM_SE3_EGO.compose(pose(row_ns).inverse()).compose(pose(np.array([reference_ns]))[0])
    uv, ok = PINHOLE.project(cam_SE3_ref.transform_points(truth[rolling.point_index]))
    assert ok.mean() > 0.99
    assert np.abs(uv[ok] - rolling.uv_px[ok]).max() < 0.02  # 35 px off with the middle-row pose only


@pytest.mark.parametrize("width", [3, 4, 6, 9])
def test_compensation_reads_point_records_of_any_width_alike(width: int) -> None:
    """The compiled pose track reads x y z in place from wider float32 point records (a sweep's ``xyz_sensor``) with
    a loop per record width; every width, a float64 copy and a shuffled order give the same points."""
    rng = np.random.default_rng(11)
    n = 30000
    records = rng.uniform(-50.0, 50.0, size=(n, width)).astype(np.float32)
    times = np.sort(rng.integers(0, 100_000_000, n))

    def pose(t):
        s = (np.asarray(t, np.int64) * 1e-9).reshape(-1)
        return SE3.from_yaw(0.3 * s, np.column_stack([12.0 * s, 0.5 * s, 0.0 * s]))

    lidar = SE3.from_yaw(0.1, np.array([1.0, 0.0, 1.8]))
    got = compensate_points(records[:, :3], times, lidar, pose, 50_000_000)
    contiguous = compensate_points(np.ascontiguousarray(records[:, :3]), times, lidar, pose, 50_000_000)
    as_float64 = compensate_points(records[:, :3].astype(np.float64), times, lidar, pose, 50_000_000)
    assert np.array_equal(got, contiguous) and np.array_equal(got, as_float64)
    truth = pose(np.array([50_000_000]))[0].inverse().compose(pose(times)).compose(lidar).transform_points(
        records[:, :3].astype(np.float64))
    assert np.abs(got - truth).max() < 1e-4
    perm = rng.permutation(n)
    shuffled = compensate_points(records[perm, :3], times[perm], lidar, pose, 50_000_000)
    assert np.abs(shuffled - got[perm]).max() < 1e-5


def test_nan_points_never_project_and_leave_the_others_alone() -> None:
    """NaN coordinates (a dropped return) fail every test of the compiled kernels; the other points project as
    without them, in every camera of a multi-camera sweep (the sector index and the candidate kernel)."""
    rng = np.random.default_rng(12)
    n = 20000
    pts = rng.uniform([-60.0, -60.0, -2.0], [60.0, 60.0, 4.0], size=(n, 3)).astype(np.float32)
    bad = rng.choice(n, 500, replace=False)
    with_nan = pts.copy()
    with_nan[bad[:250], 0] = np.nan
    with_nan[bad[250:]] = np.nan
    views = [CameraView(f"cam{i}", PINHOLE, CAM_SE3_EGO.compose(SE3.from_yaw(-i * np.pi / 3, np.zeros(3))), 0)
             for i in range(6)]
    _, clean = project_sweep(pts, 0, SE3.identity(), views, static_pose())
    _, dirty = project_sweep(with_nan, 0, SE3.identity(), views, static_pose())
    seen = 0
    for a, b in zip(clean, dirty, strict=True):
        assert not np.isin(b.point_index, bad).any()
        keep = ~np.isin(a.point_index, bad)
        assert np.array_equal(a.point_index[keep], b.point_index)
        assert np.array_equal(a.uv_px[keep], b.uv_px)
        assert np.isfinite(b.uv_px).all() and np.isfinite(b.depth_m).all()
        seen += len(b)
    assert seen > 5000
