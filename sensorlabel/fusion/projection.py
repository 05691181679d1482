"""Motion-compensated projection of lidar points into cameras, vectorised over points.

A lidar point measured at time ``t_p`` goes to the world with the ego pose at ``t_p`` and comes back into a camera
through the ego pose at the camera's exposure time::

    p_cam = cam_SE3_ego . world_SE3_ego(t_cam)^-1 . world_SE3_ego(t_p) . ego_SE3_lidar . p_lidar

To keep float32 precise on drives with large world coordinates, the world is never materialised: points are first
brought into the *reference frame*, the ego frame at a reference time (the sweep time), where coordinates are tens of
metres, and each camera gets ``cam_SE3_ref(t) = cam_SE3_ego . world_SE3_ego(t)^-1 . world_SE3_ego(t_ref)``.

Arrays are processed as structures of arrays, (3, P) rows, internally: numpy's element-wise kernels run many times
faster on long contiguous rows than on (P, 3) arrays whose inner dimension is 3. ``compensate_points`` returns a
(P, 3) Fortran-ordered array (a transposed view of its (3, P) rows) so that the next stage gets its rows for free.

Per-point poses are not evaluated point by point. The pose function is sampled at knots a few milliseconds apart
over the times in use and interpolated linearly between knots (rotation matrices entry-wise). Over 2 ms at a yaw rate
of 1 rad/s the rotation between knots is 2 mrad and the first-order interpolation error is ~5e-7 rad, far below a
pixel; translation is exact for the piecewise-linear trajectories that ``interpolate_poses`` produces within a knot.

Rolling shutter: with a readout time ``readout_s`` image row ``v`` is exposed at
``t_cam + readout_s * (v / (H - 1) - 0.5)`` (the image timestamp is the middle row, SensorCalibration's convention).
The row depends on the projection, which depends on the row time: the fixed point is found by projecting with the
middle-row pose, then re-projecting with the time of the row found, ``rolling_iterations`` times (the map contracts
by roughly ``speed * readout / depth``, so two iterations are well below 0.01 px for road scenes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.camera import NEAR_M, CameraModel, FisheyeCamera
from sensorlabel.geometry.se3 import SE3

logger = logging.getLogger(__name__)

#: ``world_SE3_ego`` as a function of time: (Q,) int64 ns -> SE3 batch of Q.
PoseFn = Callable[[np.ndarray], SE3]

DEFAULT_KNOT_SPACING_NS = 2_000_000
_RANGE_M = 250.0
_POLY_TOL_M = 2e-4
# Cull margin on the normalised-coordinate bounds of the image, so that the cheap pre-cull never drops a point
# that the exact camera model would keep (distortion and the rolling-shutter pose spread are both inside it).
_CULL_MARGIN = 0.1


def static_pose(world_SE3_ego: SE3 | None = None) -> PoseFn:
    """A pose function for a motionless ego (or a drive without poses): the same pose at every time.

    Args:
        world_SE3_ego: single SE3, identity when None.
    """
    pose = SE3.identity() if world_SE3_ego is None else world_SE3_ego

    def fn(timestamps_ns: np.ndarray) -> SE3:
        n = np.asarray(timestamps_ns).reshape(-1).shape[0]
        return SE3._trusted(np.broadcast_to(pose.rotation, (n, 3, 3)).copy(),
                            np.broadcast_to(pose.translation, (n, 3)).copy())

    return fn


@dataclass(frozen=True)
class CameraView:
    """One camera image to project into.

    Attributes:
        name: camera name.
        camera: the camera model (any of the geometry package's models).
        cam_SE3_ego: single SE3, ego -> camera (the inverse of the calibration's ego_SE3_sensor).
        timestamp_ns: exposure time of the middle image row.
        readout_s: rolling-shutter readout time from the first to the last row (0 = global shutter).
    """

    name: str
    camera: CameraModel
    cam_SE3_ego: SE3
    timestamp_ns: int
    readout_s: float = 0.0

    @classmethod
    def from_calibration(cls, calibration, timestamp_ns: int) -> CameraView:
        """From a :class:`~sensorlabel.drive.sensors.SensorCalibration` of kind camera and an image time.

        Raises:
            ValueError: the calibration is not a camera.
        """
        if calibration.kind != "camera" or calibration.camera is None:
            raise ValueError(f"sensor {calibration.name!r} is not a camera (kind {calibration.kind!r})")
        return cls(calibration.name, calibration.camera, calibration.ego_SE3_sensor.inverse(), int(timestamp_ns),
                   float(calibration.readout_s))


@dataclass(frozen=True)
class Projection:
    """The points of one cloud that project into one camera.

    Attributes:
        camera: camera name.
        num_points: P, the size of the projected cloud.
        point_index: (K,) int64 indices into the cloud of the points that project.
        uv_px: (K,2) float32 pixel coordinates (OpenCV convention, origin at the top-left pixel's centre).
        depth_m: (K,) float32 depth along the optical axis (camera z).
        width_px, height_px: image size.
        focal_px: the camera's focal length (fy), pixels per radian near the image centre.
    """

    camera: str
    num_points: int
    point_index: np.ndarray
    uv_px: np.ndarray
    depth_m: np.ndarray
    width_px: int
    height_px: int
    focal_px: float

    def __len__(self) -> int:
        return len(self.point_index)

    @property
    def valid(self) -> np.ndarray:
        """(P,) bool: the point projects into this camera."""
        mask = np.zeros(self.num_points, dtype=bool)
        mask[self.point_index] = True
        return mask

    def select(self, keep: np.ndarray) -> Projection:
        """Keep a subset: ``keep`` is a (K,) bool mask or an index array into this projection."""
        keep = np.asarray(keep)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        return Projection(self.camera, self.num_points, np.take(self.point_index, keep),
                          np.take(self.uv_px, keep, axis=0), np.take(self.depth_m, keep), self.width_px, self.height_px,
                          self.focal_px)


class _PoseTrack:
    """A transform ``T(t)`` over a time span, applied per point at each point's own time.

    ``T(t) = left . world_SE3_ego(t) . right`` (or its inverse with ``invert``), sampled at knots ``knot_spacing_ns``
    apart. When a cubic polynomial in time fits the 12 entries of the sampled [R | t] to within ``_POLY_TOL_M`` of
    point displacement (rotation residual times ``_RANGE_M`` plus translation residual, at every knot), points are
    mapped as ``sum_j tau^j (A_j p + b_j)``: one BLAS product for all terms, then Horner in tau. Otherwise (jerky pose
    data) the knots are interpolated linearly per point.
    """

    def __init__(self, world_SE3_ego: PoseFn, t_min_ns: int, t_max_ns: int, left: SE3, right: SE3,
                 knot_spacing_ns: int = DEFAULT_KNOT_SPACING_NS, invert: bool = False):
        span = max(int(t_max_ns) - int(t_min_ns), 0)
        n_seg = max(int(np.ceil(span / knot_spacing_ns)), 1)
        self.t0_ns = int(t_min_ns)
        self.span_ns = max(float(span), 1.0)
        self.n_seg = n_seg
        knots = self.t0_ns + np.round(np.arange(n_seg + 1) * (self.span_ns / n_seg)).astype(np.int64)
        poses = left.compose(_call_pose(world_SE3_ego, knots)).compose(right)
        if invert:
            poses = poses.inverse()
        table = np.concatenate([poses.rotation, poses.translation[:, :, None]], axis=2).reshape(-1, 12)
        self.table = table.astype(np.float32)
        self.coeffs = None
        if n_seg >= 2:
            tau = np.linspace(-1.0, 1.0, n_seg + 1)
            vander = np.vander(tau, min(4, n_seg + 1), increasing=True)
            coeffs, *_ = np.linalg.lstsq(vander, table, rcond=None)
            resid = np.abs(vander @ coeffs - table).reshape(-1, 3, 4)
            err = resid[:, :, :3].sum(axis=2) * _RANGE_M + resid[:, :, 3]
            if err.max() < _POLY_TOL_M:
                self.coeffs = coeffs.reshape(-1, 3, 4)

    def apply(self, rows: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
        """Map (3,N) float32 point rows with the transform at each point's time; returns (3,N) float32."""
        x = (np.asarray(times_ns, dtype=np.int64) - self.t0_ns).astype(np.float64) * (1.0 / self.span_ns)
        if self.coeffs is not None:
            tau = (2.0 * x - 1.0).astype(np.float32)
            deg = len(self.coeffs)
            lin = self.coeffs[:, :, :3].reshape(deg * 3, 3).astype(np.float32)
            terms = lin @ rows + self.coeffs[:, :, 3].reshape(deg * 3, 1).astype(np.float32)
            out = terms[3 * (deg - 1):]
            for j in range(deg - 2, -1, -1):
                out = out * tau + terms[3 * j:3 * j + 3]
            return out
        xs = x * self.n_seg
        seg = np.clip(np.floor(xs).astype(np.int64), 0, self.n_seg - 1)
        alpha = (xs - seg).astype(np.float32)
        m = self.table[seg].T * (1 - alpha) + self.table[seg + 1].T * alpha  # (12, N)
        return np.stack([m[4 * i] * rows[0] + m[4 * i + 1] * rows[1] + m[4 * i + 2] * rows[2] + m[4 * i + 3]
                         for i in range(3)])


def cached_pose(world_SE3_ego: PoseFn, timestamps_ns: np.ndarray) -> PoseFn:
    """A pose function that answers single-time queries for ``timestamps_ns`` from one batched evaluation.

    Pose functions can cost milliseconds per call (interpolation, an analytic trajectory); projecting one sweep into
    six cameras asks for the same few single poses many times.
    """
    times = np.unique(np.asarray(timestamps_ns, dtype=np.int64).reshape(-1))
    poses = _call_pose(world_SE3_ego, times)
    table = {int(t): i for i, t in enumerate(times)}

    def fn(query_ns: np.ndarray) -> SE3:
        q = np.asarray(query_ns, dtype=np.int64).reshape(-1)
        if len(q) == 1 and int(q[0]) in table:
            i = table[int(q[0])]
            return poses[i:i + 1]
        return world_SE3_ego(q)

    return fn


def _call_pose(world_SE3_ego: PoseFn, times_ns: np.ndarray) -> SE3:
    poses = world_SE3_ego(np.asarray(times_ns, dtype=np.int64))
    if not poses.is_batch or len(poses) != len(times_ns):
        raise ValueError(f"pose function returned {poses.rotation.shape[:-2]} poses for {len(times_ns)} query times")
    return poses


def _rigid_rows(transform: SE3, rows: np.ndarray) -> np.ndarray:
    """(3,N) float32 rows mapped by a single SE3."""
    return transform.rotation.astype(np.float32) @ rows + transform.translation.astype(np.float32)[:, None]


def compensate_points(
    points_lidar: np.ndarray,
    point_times_ns: np.ndarray | int,
    ego_SE3_lidar: SE3,
    world_SE3_ego: PoseFn,
    reference_ns: int,
    *,
    knot_spacing_ns: int = DEFAULT_KNOT_SPACING_NS,
) -> np.ndarray:
    """Motion-compensate a sweep into the ego frame at ``reference_ns``.

    Args:
        points_lidar: (P,3) points in the lidar frame as measured (extra columns are ignored).
        point_times_ns: (P,) int64 measurement time of every point, or one int for the whole sweep.
        ego_SE3_lidar: single SE3, the lidar mounting.
        world_SE3_ego: pose function (see :data:`PoseFn`).
        reference_ns: the time of the reference ego frame (usually the sweep timestamp).
        knot_spacing_ns: pose sampling interval for per-point times.

    Returns:
        (P,3) float32 (Fortran order) points in the ego frame at ``reference_ns`` ("ref" frame): where each
        measured point was, seen from the ego at the reference time.

    Raises:
        ValueError: shapes do not match.
    """
    pts = np.asarray(points_lidar)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points_lidar: expected (P,3), got {pts.shape}")
    p = len(pts)
    times = np.asarray(point_times_ns, dtype=np.int64)
    if times.ndim == 1 and times.shape != (p,):
        raise ValueError(f"point_times_ns: expected ({p},) or a scalar, got {times.shape}")
    ref_SE3_world = _call_pose(world_SE3_ego, np.array([int(reference_ns)]))[0].inverse()
    rows = np.ascontiguousarray(pts[:, :3].T, dtype=np.float32)
    if times.ndim == 0 or p == 0 or times.min() == times.max():
        t = int(times) if times.ndim == 0 else (int(times[0]) if p else int(reference_ns))
        ref_SE3_lidar = ref_SE3_world.compose(_call_pose(world_SE3_ego, np.array([t]))[0]).compose(ego_SE3_lidar)
        return _rigid_rows(ref_SE3_lidar, rows).T
    track = _PoseTrack(world_SE3_ego, int(times.min()), int(times.max()), ref_SE3_world, ego_SE3_lidar,
                       knot_spacing_ns)
    return track.apply(rows, times).T


def _normalised_bounds(camera: CameraModel) -> tuple[float, float, float, float] | None:
    """Bounds of x/z and y/z over the image (with margin), for a cheap pre-cull; None when the field of view
    reaches 90 degrees (a fisheye) and a bound on x/z does not exist."""
    if isinstance(camera, FisheyeCamera) and camera.max_theta_rad >= np.deg2rad(80):
        return None
    w, h = camera.width_px, camera.height_px
    s = np.linspace(0, 1, 17)
    border = np.concatenate([
        np.stack([s * (w - 1), np.zeros_like(s)], 1), np.stack([s * (w - 1), np.full_like(s, h - 1)], 1),
        np.stack([np.zeros_like(s), s * (h - 1)], 1), np.stack([np.full_like(s, w - 1), s * (h - 1)], 1),
    ])
    border = np.clip(border + np.sign(border - [w / 2, h / 2]) * 0.5, -0.5, [w - 0.5, h - 0.5])
    rays = camera.unproject(border)
    xy = rays[:, :2] / rays[:, 2:3]
    lo = xy.min(axis=0)
    hi = xy.max(axis=0)
    pad = (hi - lo) * _CULL_MARGIN
    lo, hi = lo - pad, hi + pad
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


_BOUNDS_CACHE: dict[int, tuple] = {}


def _cull_bounds(camera: CameraModel):
    """Cached :func:`_normalised_bounds` (camera models hold arrays and are not hashable, hence the id key; the
    entry keeps the model alive so that the id cannot be reused by another camera)."""
    key = id(camera)
    hit = _BOUNDS_CACHE.get(key)
    if hit is None or hit[0] is not camera:
        if len(_BOUNDS_CACHE) > 256:
            _BOUNDS_CACHE.clear()
        hit = (camera, _normalised_bounds(camera))
        _BOUNDS_CACHE[key] = hit
    return hit[1]


class _AzimuthIndex:
    """Points of one cloud sorted into azimuth sectors (in the cloud's ego frame), built once per sweep, so that each
    camera only transforms the points in its own horizontal sector instead of the whole cloud.

    Points within ``near_m`` of the ego's vertical axis are kept apart and go to every camera: seen from a camera
    mounted up to ``near_m / 4`` off that axis, a point further out has an azimuth within asin(1/4) = 14.5 degrees of
    its azimuth from the axis, which is the sector margin.
    """

    BINS = 90

    def __init__(self, points_ref: np.ndarray, near_m: float = 8.0):
        rows = np.asarray(points_ref).T
        x, y = rows[0], rows[1]
        self.near_m = near_m
        az = np.arctan2(y, x)
        bins = np.minimum(((az + np.pi) * (self.BINS / (2 * np.pi))).astype(np.int16), self.BINS - 1)
        bins[x * x + y * y < near_m * near_m] = self.BINS
        self.order = np.argsort(bins, kind="stable").astype(np.int64)
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(bins, minlength=self.BINS + 1))])

    def candidates(self, cam_SE3_ref: SE3, bounds) -> np.ndarray | None:
        """Indices of the points that can be in the camera's view, or None (all points) when the sector test does
        not apply (a camera looking up or down, far off the axis, or a field of view of 90 degrees or more)."""
        if bounds is None:
            return None
        ref_SE3_cam = cam_SE3_ref.inverse()
        if np.hypot(*ref_SE3_cam.translation[:2]) > self.near_m / 4:
            return None
        x_lo, x_hi, y_lo, y_hi = bounds
        s = np.linspace(0.0, 1.0, 9)
        xs, ys = x_lo + s * (x_hi - x_lo), y_lo + s * (y_hi - y_lo)
        border = np.concatenate([np.stack([xs, np.full(9, y_lo)], 1), np.stack([xs, np.full(9, y_hi)], 1),
                                 np.stack([np.full(9, x_lo), ys], 1), np.stack([np.full(9, x_hi), ys], 1)])
        rays = ref_SE3_cam.rotation @ np.concatenate([border, np.ones((len(border), 1))], axis=1).T
        if np.any(np.hypot(rays[0], rays[1]) < 0.2 * np.abs(rays[2])):
            return None
        az = np.arctan2(rays[1], rays[0])
        axis_az = np.arctan2(ref_SE3_cam.rotation[1, 2], ref_SE3_cam.rotation[0, 2])
        rel = (az - axis_az + np.pi) % (2 * np.pi) - np.pi
        margin = np.arcsin(0.25) + np.deg2rad(2.0)
        lo, hi = rel.min() - margin, rel.max() + margin
        if hi - lo >= 2 * np.pi - 1e-6:
            return None
        width = 2 * np.pi / self.BINS
        b0 = int(np.floor((axis_az + lo + np.pi) / width))
        b1 = int(np.floor((axis_az + hi + np.pi) / width))
        wanted = np.arange(b0, b1 + 1) % self.BINS
        parts = [self.order[self.starts[b]:self.starts[b + 1]] for b in np.unique(wanted)]
        parts.append(self.order[self.starts[self.BINS]:])
        return np.concatenate(parts)


def _project_rows(camera: CameraModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The camera model's projection on (3,N) float32 rows, in float32: u (N,), v (N,), valid (N,).

    Same formulas and validity rule as the model's ``project`` (front of the near plane, inside the distortion
    model's one-to-one domain, inside the image); ``tests/fusion`` checks that the two agree.
    """
    x, y, z = rows
    front = z > NEAR_M
    inv_z = 1.0 / np.where(front, z, np.float32(1.0))
    if isinstance(camera, FisheyeCamera):
        r = np.hypot(x, y)
        theta = np.arctan2(r, z)
        k1, k2, k3, k4 = camera.distortion.astype(np.float32)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, np.float32(1e-12)), inv_z)
        xd, yd = x * scale, y * scale
        ok = front & (theta <= camera.max_theta_rad)
    else:
        xn, yn = x * inv_z, y * inv_z
        r2 = xn * xn + yn * yn
        k1, k2, p1, p2, k3 = camera.distortion.astype(np.float32)
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xy2 = 2 * xn * yn
        xd = xn * radial + p1 * xy2 + p2 * (r2 + 2 * xn * xn)
        yd = yn * radial + p1 * (r2 + 2 * yn * yn) + p2 * xy2
        # The model's monotonic-domain limit (PinholeCamera computes it at construction).
        ok = front & (r2 <= camera._r2_max)
    u = xd * np.float32(camera.fx_px) + np.float32(camera.cx_px)
    v = yd * np.float32(camera.fy_px) + np.float32(camera.cy_px)
    ok &= (u >= -0.5) & (u <= camera.width_px - 0.5) & (v >= -0.5) & (v <= camera.height_px - 0.5)
    return u, v, ok


def project_points(
    points_ref: np.ndarray,
    view: CameraView,
    world_SE3_ego: PoseFn,
    reference_ns: int,
    *,
    rolling_iterations: int = 2,
    knot_spacing_ns: int = DEFAULT_KNOT_SPACING_NS,
    azimuth_index: _AzimuthIndex | None = None,
) -> Projection:
    """Project motion-compensated points (see :func:`compensate_points`) into one camera.

    Args:
        points_ref: (P,3) float32 points in the ego frame at ``reference_ns`` (Fortran order is fastest).
        view: the camera, its mounting, its exposure time and readout.
        world_SE3_ego: pose function.
        reference_ns: the time of the ``points_ref`` frame.
        rolling_iterations: re-projections with the row time when ``view.readout_s > 0`` (1-3).
        knot_spacing_ns: pose sampling interval over the readout.
        azimuth_index: optional index of ``points_ref`` by azimuth (built once per sweep by :func:`project_sweep`)
            that restricts the work to the points in the camera's horizontal sector.

    Returns:
        The :class:`Projection` of the points that are in front of the camera (z > 0.1 m), in the camera model's
        domain and inside the image.

    Raises:
        ValueError: points_ref is not (P,3).
    """
    pts = np.asarray(points_ref)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_ref: expected (P,3), got {pts.shape}")
    rows_all = np.ascontiguousarray(pts.T, dtype=np.float32)
    cam = view.camera
    ref_pose = _call_pose(world_SE3_ego, np.array([int(reference_ns)]))[0]
    ego_mid_SE3_world = _call_pose(world_SE3_ego, np.array([int(view.timestamp_ns)]))[0].inverse()
    cam_SE3_ref = view.cam_SE3_ego.compose(ego_mid_SE3_world).compose(ref_pose)
    rot = cam_SE3_ref.rotation.astype(np.float32)
    trans = cam_SE3_ref.translation.astype(np.float32)

    # Cheap cull on the depth row of the transform alone, then on normalised coordinates. With a rolling shutter
    # the row pose moves points by centimetres, so the near test is relaxed here and made exact by the model.
    near = NEAR_M if view.readout_s == 0 else 0.5 * NEAR_M
    candidates = None if azimuth_index is None else azimuth_index.candidates(cam_SE3_ref, _cull_bounds(cam))
    if candidates is not None:
        rows_all = np.take(rows_all, candidates, axis=1)
    z = rot[2] @ rows_all + trans[2]
    idx = np.flatnonzero(z > near)
    sub = np.take(rows_all, idx, axis=1)  # np.take: several times faster than fancy indexing on axis 1
    if candidates is not None:
        idx = candidates[idx]
    p_cam = rot @ sub + trans[:, None]
    bounds = _cull_bounds(cam)
    if bounds is not None:
        x_lo, x_hi, y_lo, y_hi = bounds
        xc, yc, zc = p_cam
        keep = np.flatnonzero((xc >= x_lo * zc) & (xc <= x_hi * zc) & (yc >= y_lo * zc) & (yc <= y_hi * zc))
        idx, sub, p_cam = idx[keep], np.take(sub, keep, axis=1), np.take(p_cam, keep, axis=1)

    u, v, valid = _project_rows(cam, p_cam)
    if view.readout_s > 0 and len(idx):
        half_ns = int(round(view.readout_s * 0.5e9))
        t_mid = int(view.timestamp_ns)
        # ego(t)_SE3_ref over the readout: the inverse of ref_SE3_world . world_SE3_ego(t).
        track = _PoseTrack(world_SE3_ego, t_mid - half_ns, t_mid + half_ns, ref_pose.inverse(), SE3.identity(),
                           knot_spacing_ns, invert=True)
        h = cam.height_px
        for _ in range(max(int(rolling_iterations), 1)):
            row = np.clip(v, 0.0, h - 1.0)
            t_row = t_mid + np.round(view.readout_s * 1e9 * (row / max(h - 1, 1) - 0.5)).astype(np.int64)
            p_cam = _rigid_rows(view.cam_SE3_ego, track.apply(sub, t_row))
            u, v, valid = _project_rows(cam, p_cam)
    keep = np.flatnonzero(valid)
    uv = np.empty((len(keep), 2), dtype=np.float32)
    uv[:, 0] = u[keep]
    uv[:, 1] = v[keep]
    return Projection(view.name, len(pts), idx[keep].astype(np.int64), uv, p_cam[2, keep].astype(np.float32),
                      cam.width_px, cam.height_px, float(cam.fy_px))


def project_sweep(
    points_lidar: np.ndarray,
    point_times_ns: np.ndarray | int,
    ego_SE3_lidar: SE3,
    views: list[CameraView],
    world_SE3_ego: PoseFn,
    reference_ns: int | None = None,
    *,
    rolling_iterations: int = 2,
) -> tuple[np.ndarray, list[Projection]]:
    """Compensate a sweep once and project it into every camera.

    Args:
        points_lidar: (P,3) points in the lidar frame. point_times_ns: (P,) int64 or one int.
        ego_SE3_lidar: lidar mounting. views: the cameras. world_SE3_ego: pose function.
        reference_ns: reference time (default: the median point time).

    Returns:
        points_ref (P,3) float32 in the ego frame at ``reference_ns`` and one :class:`Projection` per view.
    """
    times = np.asarray(point_times_ns, dtype=np.int64)
    if reference_ns is None:
        reference_ns = int(times) if times.ndim == 0 else int(np.median(times)) if len(times) else 0
    world_SE3_ego = cached_pose(world_SE3_ego, [int(reference_ns)] + [int(v.timestamp_ns) for v in views])
    points_ref = compensate_points(points_lidar, times, ego_SE3_lidar, world_SE3_ego, reference_ns)
    index = _AzimuthIndex(points_ref) if len(views) > 1 else None
    return points_ref, [
        project_points(points_ref, v, world_SE3_ego, reference_ns, rolling_iterations=rolling_iterations,
                       azimuth_index=index) for v in views
    ]
