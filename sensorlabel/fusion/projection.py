"""Motion-compensated projection of lidar points into cameras, vectorised over points.

A lidar point measured at time ``t_p`` goes to the world with the ego pose at ``t_p`` and comes back into a camera
through the ego pose at the camera's exposure time::

    p_cam = cam_SE3_ego . world_SE3_ego(t_cam)^-1 . world_SE3_ego(t_p) . ego_SE3_lidar . p_lidar

The work is split so that the per-point motion model runs **once per sweep** and each camera costs one affine map:

1. :func:`compensate_points` brings every point into the *reference frame*, the ego frame at a reference time (the
   sweep time), with its own pose. The world itself is never materialised, so float32 stays precise on drives with
   large world coordinates (reference-frame coordinates are tens of metres).
2. Each camera gets ``cam_SE3_ref = cam_SE3_ego . world_SE3_ego(t_cam)^-1 . world_SE3_ego(t_ref)``: one 3x4 float32
   product on the points that can be in its view.

Per-point poses are not evaluated point by point. The pose function is sampled at knots ``knot_spacing_ns`` apart
(5 ms: 21 poses per 100 ms sweep) and each point's transform is interpolated linearly between the two knots around its
time (rotation matrices entry-wise). Points are grouped by knot interval, which is free when they come in firing
order (the usual case for a spinning lidar) and one radix sort otherwise, so each interval is one BLAS product
``[M_k ; M_{k+1} - M_k] @ [p ; 1]`` followed by ``a + alpha * b``. Over 5 ms at a yaw rate of 1 rad/s the rotation
between knots is 5 mrad and the interpolation error ~3e-6 rad (0.3 mm at 100 m); the translation error is
``a dt^2 / 8`` for an acceleration ``a`` (0.03 mm at 10 m/s^2), far below a pixel.

Which points can a camera see? :class:`_SectorIndex` sorts the compensated sweep once by (horizontal range band,
azimuth bin) with one radix sort of 16-bit keys. A camera's view is a convex cone whose
horizontal extent is the azimuth interval of its corner rays; seen from the reference origin instead of the camera
centre ``c``, a point at horizontal range ``r > |c|`` is at most ``asin(|c| / r)`` further off in azimuth, so each
range band gets its own margin and contributes one or two contiguous slices. Then the exact tests run on those
candidates only: depth in front of the near plane and inside the bounds of the image in normalised coordinates,
and the lens distortion is evaluated on the survivors alone.

Rolling shutter: with a readout time ``readout_s`` image row ``v`` is exposed at
``t_cam + readout_s * (v / (H - 1) - 0.5)`` (the image timestamp is the middle row, SensorCalibration's convention).
The row depends on the projection, which depends on the row time: the fixed point is found by projecting with the
middle-row pose, then re-projecting with the time of the row found, ``rolling_iterations`` times (the map contracts
by roughly ``speed * readout / depth``, so two iterations are well below 0.01 px for road scenes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.camera import NEAR_M, CameraModel, FisheyeCamera
from sensorlabel.geometry.se3 import SE3

logger = logging.getLogger(__name__)

#: ``world_SE3_ego`` as a function of time: (Q,) int64 ns -> SE3 batch of Q.
PoseFn = Callable[[np.ndarray], SE3]

DEFAULT_KNOT_SPACING_NS = 5_000_000
# Margin on the normalised-coordinate bounds of the image for the cheap pre-cull, as a fraction of their span, so
# that it never drops a point that the exact camera model keeps. Global shutter: only the curvature of the distorted
# border between its samples needs it. Rolling shutter: the row poses move points by up to speed * readout / 2.
_CULL_MARGIN = 0.02
_CULL_MARGIN_ROLLING = 0.1


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


def _homogeneous_rows(points: np.ndarray) -> np.ndarray:
    """(N,>=3) points -> (4,N) float32 rows ``[x; y; z; 1]`` (structure of arrays for BLAS and fast row kernels)."""
    rows = np.empty((4, len(points)), dtype=np.float32)
    rows[:3] = points[:, :3].T
    rows[3] = 1.0
    return rows


def _affine(transform: SE3) -> np.ndarray:
    """(3,4) float32 ``[R | t]`` of a single SE3."""
    return np.concatenate([transform.rotation, transform.translation[:, None]], axis=1).astype(np.float32)


class _PoseTrack:
    """A transform ``T(t)`` over a time span, applied per point at each point's own time.

    ``T(t) = left . world_SE3_ego(t) . right`` (or its inverse with ``invert``) is sampled at knots
    ``knot_spacing_ns`` apart and interpolated linearly between them (see the module docstring). For knot interval
    k the weights are the (6,4) float32 stack ``[M_k ; M_{k+1} - M_k]`` of the 3x4 affine maps at its ends.
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
        affine = np.concatenate([poses.rotation, poses.translation[:, :, None]], axis=2)  # (n_seg+1, 3, 4)
        self.weights = np.concatenate([affine[:-1], affine[1:] - affine[:-1]], axis=1).astype(np.float32)

    def apply(self, rows4: np.ndarray, times_ns: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Map (4,N) float32 homogeneous rows with the transform at each point's (N,) int64 time.

        Returns:
            (3,N) float32, written into ``out`` when given (it may be ``rows4[:3]``: each interval is read before it
            is written).
        """
        times = np.asarray(times_ns, dtype=np.int64)
        # Knot-interval coordinate; float32 resolves 10 ns over a 0.1 s span, far below any pose change.
        tau = (times - self.t0_ns).astype(np.float32)
        tau *= np.float32(self.n_seg / self.span_ns)
        n = rows4.shape[1]
        if out is None:
            out = np.empty((3, n), dtype=np.float32)
        order = None
        if np.any(times[1:] < times[:-1]):
            # Out of firing order: group by interval with one radix sort (stable argsort of 16-bit keys).
            seg = np.clip(tau, 0, self.n_seg - 1).astype(np.int16 if self.n_seg < 2 ** 15 else np.int32)
            order = np.argsort(seg, kind="stable")
            rows4, tau = np.take(rows4, order, axis=1), np.take(tau, order)
            bounds = np.searchsorted(seg[order], np.arange(self.n_seg + 1))
            target = np.empty((3, n), dtype=np.float32)
        else:
            knots = np.arange(self.n_seg + 1, dtype=np.float32)
            knots[0], knots[-1] = -np.inf, np.inf  # times outside the span extrapolate the end intervals
            bounds = np.searchsorted(tau, knots)
            target = out
        for k in np.flatnonzero(bounds[1:] > bounds[:-1]):
            s, e = bounds[k], bounds[k + 1]
            terms = self.weights[k] @ rows4[:, s:e]
            alpha = tau[s:e] - np.float32(k)
            np.multiply(terms[3:], alpha, out=terms[3:])
            np.add(terms[:3], terms[3:], out=target[:, s:e])
        if order is not None:
            out[:, order] = target
        return out


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


def _compensate_rows(points_lidar: np.ndarray, point_times_ns: np.ndarray | int, ego_SE3_lidar: SE3,
                     world_SE3_ego: PoseFn, reference_ns: int, knot_spacing_ns: int) -> np.ndarray:
    """:func:`compensate_points` as (4,P) float32 homogeneous rows in the reference frame."""
    pts = np.asarray(points_lidar)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points_lidar: expected (P,3), got {pts.shape}")
    p = len(pts)
    times = np.asarray(point_times_ns, dtype=np.int64)
    if times.ndim == 1 and times.shape != (p,):
        raise ValueError(f"point_times_ns: expected ({p},) or a scalar, got {times.shape}")
    ref_SE3_world = _call_pose(world_SE3_ego, np.array([int(reference_ns)]))[0].inverse()
    rows = _homogeneous_rows(pts)
    if times.ndim == 0 or p == 0 or times.min() == times.max():
        t = int(times) if times.ndim == 0 else (int(times[0]) if p else int(reference_ns))
        ref_SE3_lidar = ref_SE3_world.compose(_call_pose(world_SE3_ego, np.array([t]))[0]).compose(ego_SE3_lidar)
        rows[:3] = _affine(ref_SE3_lidar) @ rows
        return rows
    track = _PoseTrack(world_SE3_ego, int(times.min()), int(times.max()), ref_SE3_world, ego_SE3_lidar,
                       knot_spacing_ns)
    track.apply(rows, times, out=rows[:3])
    return rows


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
    return _compensate_rows(points_lidar, point_times_ns, ego_SE3_lidar, world_SE3_ego, reference_ns,
                            knot_spacing_ns)[:3].T


def _normalised_bounds(camera: CameraModel, margin: float) -> tuple[float, float, float, float] | None:
    """Bounds of x/z and y/z over the image (widened by ``margin`` of their span), for a cheap pre-cull; None when
    the field of view reaches 90 degrees (a fisheye) and a bound on x/z does not exist."""
    if isinstance(camera, FisheyeCamera) and camera.max_theta_rad >= np.deg2rad(80):
        return None
    w, h = camera.width_px, camera.height_px
    s = np.linspace(0, 1, 33)
    border = np.concatenate([
        np.stack([s * (w - 1), np.zeros_like(s)], 1), np.stack([s * (w - 1), np.full_like(s, h - 1)], 1),
        np.stack([np.zeros_like(s), s * (h - 1)], 1), np.stack([np.full_like(s, w - 1), s * (h - 1)], 1),
    ])
    border = np.clip(border + np.sign(border - [w / 2, h / 2]) * 0.5, -0.5, [w - 0.5, h - 0.5])
    rays = camera.unproject(border)
    xy = rays[:, :2] / rays[:, 2:3]
    lo = xy.min(axis=0)
    hi = xy.max(axis=0)
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


_BOUNDS_CACHE: dict[tuple[int, float], tuple] = {}


def _cull_bounds(camera: CameraModel, margin: float = _CULL_MARGIN):
    """Cached :func:`_normalised_bounds` (camera models hold arrays and are not hashable, hence the id key; the
    entry keeps the model alive so that the id cannot be reused by another camera)."""
    key = (id(camera), margin)
    hit = _BOUNDS_CACHE.get(key)
    if hit is None or hit[0] is not camera:
        if len(_BOUNDS_CACHE) > 256:
            _BOUNDS_CACHE.clear()
        hit = (camera, _normalised_bounds(camera, margin))
        _BOUNDS_CACHE[key] = hit
    return hit[1]


class _SectorIndex:
    """The points of one compensated sweep sorted by (horizontal range band, azimuth bin), built once per sweep, so
    that each camera takes a few contiguous slices of candidates instead of testing the whole cloud (see the module
    docstring for the margins).

    Range bands are octaves of the squared horizontal range, read from the float32 exponent bits: band j >= 1 holds
    ``2^(j+2) <= x^2 + y^2 < 2^(j+3)`` (inner radius ``2^((j+2)/2)``: 2.8, 4, 5.7, 8, 11, 16 ... m), band 0 everything
    closer than 2.8 m (it goes to every camera) and the last band everything beyond.

    Attributes:
        rows4: (4,P) float32 homogeneous rows in sorted order. order: (P,) int32 original index of each sorted row.
        starts: (BANDS * BINS + 1,) start of every (band, bin) cell in the sorted order.
    """

    BINS = 256
    BANDS = 11

    def __init__(self, rows4: np.ndarray):
        x, y = rows4[0], rows4[1]
        r2 = x * x
        r2 += y * y
        band = (r2.view(np.int32) >> 23) - (127 + 2)
        np.clip(band, 0, self.BANDS - 1, out=band)
        key = band.astype(np.int16)
        key *= np.int16(self.BINS)
        azimuth = np.arctan2(y, x)
        azimuth += np.float32(np.pi)
        azimuth *= np.float32(self.BINS / (2 * np.pi))
        key += np.minimum(azimuth.astype(np.int16), np.int16(self.BINS - 1))
        self.order = np.argsort(key, kind="stable").astype(np.int32)  # a radix sort on 16-bit keys
        self.rows4 = np.take(rows4, self.order, axis=1)
        counts = np.bincount(key, minlength=self.BANDS * self.BINS)
        self.starts = [0] + np.cumsum(counts).tolist()
        self.inner_m = [0.0] + [2.0 ** ((j + 2) / 2.0) for j in range(1, self.BANDS)]

    def _bin(self, azimuth_rad: float) -> int:
        wrapped = (azimuth_rad + math.pi) % (2 * math.pi)
        return min(int(wrapped * (self.BINS / (2 * math.pi))), self.BINS - 1)

    def slices(self, cam_SE3_ref: SE3, bounds) -> list[tuple[int, int]] | None:
        """Slices ``(start, end)`` of the sorted rows holding every point that can be in the camera's view, or None
        (all points) when the sector test does not apply (no bounded field of view, or a camera looking steeply up
        or down). A few dozen scalar operations: plain ``math`` beats numpy at this size."""
        if bounds is None:
            return None
        ref_SE3_cam = cam_SE3_ref.inverse()
        x_lo, x_hi, y_lo, y_hi = bounds
        corners = np.array([[x_lo, y_lo, 1.0], [x_hi, y_lo, 1.0], [x_lo, y_hi, 1.0], [x_hi, y_hi, 1.0]])
        rays = ref_SE3_cam.rotation @ corners.T
        if np.any(np.hypot(rays[0], rays[1]) < 0.2 * np.abs(rays[2])):
            return None
        axis_az = math.atan2(ref_SE3_cam.rotation[1, 2], ref_SE3_cam.rotation[0, 2])
        rel = (np.arctan2(rays[1], rays[0]) - axis_az + np.pi) % (2 * np.pi) - np.pi
        lo, hi = float(rel.min()), float(rel.max())
        if hi - lo >= np.pi:
            return None
        # The view's horizontal wedge: apex at the camera centre, edges along the extreme corner azimuths. Within
        # a band (an annulus about the origin) the points of the wedge lie between the edges' crossings of the
        # band's two circles (azimuth is monotonic along a ray that misses the origin), so those four crossings
        # bound the azimuths seen from the origin.
        cx, cy = float(ref_SE3_cam.translation[0]), float(ref_SE3_cam.translation[1])
        dist2 = cx * cx + cy * cy
        edges = [(math.cos(axis_az + a), math.sin(axis_az + a)) for a in (lo, hi)]
        pad = math.radians(1.0)  # absorbs rounding and the float32 coordinates
        out = []
        for band in range(self.BANDS):
            base = band * self.BINS
            inner_m = self.inner_m[band]
            if inner_m * inner_m <= dist2 * 1.02:
                out.append((self.starts[base], self.starts[base + self.BINS]))
                continue
            rel_band = []
            for ex, ey in edges:
                along = ex * cx + ey * cy
                for radius in self.inner_m[band:band + 2]:  # the last band reaches infinity: the edge direction
                    t = -along + math.sqrt(along * along - dist2 + radius * radius)
                    az = math.atan2(cy + t * ey, cx + t * ex)
                    rel_band.append((az - axis_az + math.pi) % (2 * math.pi) - math.pi)
                if band + 1 == self.BANDS:
                    rel_band.append((math.atan2(ey, ex) - axis_az + math.pi) % (2 * math.pi) - math.pi)
            b_lo, b_hi = min(rel_band) - pad, max(rel_band) + pad
            if b_hi - b_lo >= math.pi or max(abs(r) for r in rel_band) > math.radians(150.0):
                out.append((self.starts[base], self.starts[base + self.BINS]))
                continue
            b0, b1 = self._bin(axis_az + b_lo), self._bin(axis_az + b_hi)
            if b0 <= b1:
                out.append((self.starts[base + b0], self.starts[base + b1 + 1]))
            else:  # the sector wraps around -x
                out.append((self.starts[base + b0], self.starts[base + self.BINS]))
                out.append((self.starts[base], self.starts[base + b1 + 1]))
        merged: list[tuple[int, int]] = []
        for s, e in sorted(out):
            if e <= s:
                continue
            if merged and s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
            else:
                merged.append((s, e))
        return merged


def _project_rows(camera: CameraModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The camera model's projection on (3,N) float32 rows, in float32: u (N,), v (N,), valid (N,).

    Same formulas and validity rule as the model's ``project`` (front of the near plane, inside the distortion
    model's one-to-one domain, inside the image); ``tests/fusion`` checks that the two agree. Points that are not
    valid get finite garbage coordinates. Zero distortion terms are skipped.
    """
    x, y, z = rows[0], rows[1], rows[2]
    front = z > NEAR_M
    inv_z = np.where(front, z, np.float32(1.0))
    np.reciprocal(inv_z, out=inv_z)
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
        xn = x * inv_z
        yn = y * inv_z
        r2 = xn * xn
        r2 += yn * yn
        ok = front & (r2 <= np.float32(camera.max_normalised_radius2))
        k1, k2, p1, p2, k3 = (float(c) for c in camera.distortion)
        radial = None
        for k in (k3, k2, k1):  # Horner, from the highest non-zero term
            if radial is None:
                if k != 0.0:
                    radial = r2 * np.float32(k)
            else:
                radial += np.float32(k)
                radial *= r2
        if radial is None:
            xd, yd = xn, yn
        else:
            radial += np.float32(1.0)
            xd, yd = xn * radial, yn * radial
        if p1 != 0.0 or p2 != 0.0:
            xy2 = xn * yn
            xy2 *= np.float32(2.0)
            xd = xd + np.float32(p1) * xy2 + np.float32(p2) * (r2 + np.float32(2.0) * xn * xn)
            yd = yd + np.float32(p1) * (r2 + np.float32(2.0) * yn * yn) + np.float32(p2) * xy2
    u = xd * np.float32(camera.fx_px)
    u += np.float32(camera.cx_px)
    v = yd * np.float32(camera.fy_px)
    v += np.float32(camera.cy_px)
    ok &= u >= -0.5
    ok &= u <= camera.width_px - 0.5
    ok &= v >= -0.5
    ok &= v <= camera.height_px - 0.5
    return u, v, ok


def project_points(
    points_ref: np.ndarray,
    view: CameraView,
    world_SE3_ego: PoseFn,
    reference_ns: int,
    *,
    rolling_iterations: int = 2,
    knot_spacing_ns: int = DEFAULT_KNOT_SPACING_NS,
) -> Projection:
    """Project motion-compensated points (see :func:`compensate_points`) into one camera.

    Args:
        points_ref: (P,3) float32 points in the ego frame at ``reference_ns``.
        view: the camera, its mounting, its exposure time and readout.
        world_SE3_ego: pose function.
        reference_ns: the time of the ``points_ref`` frame.
        rolling_iterations: re-projections with the row time when ``view.readout_s > 0`` (1-3).
        knot_spacing_ns: pose sampling interval over the readout.

    Returns:
        The :class:`Projection` of the points that are in front of the camera (z > 0.1 m), in the camera model's
        domain and inside the image.

    Raises:
        ValueError: points_ref is not (P,3).
    """
    pts = np.asarray(points_ref)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points_ref: expected (P,3), got {pts.shape}")
    return _project_view(_homogeneous_rows(pts), None, view, world_SE3_ego, reference_ns, rolling_iterations,
                         knot_spacing_ns)


def _project_view(rows4: np.ndarray, index: _SectorIndex | None, view: CameraView, world_SE3_ego: PoseFn,
                  reference_ns: int, rolling_iterations: int, knot_spacing_ns: int) -> Projection:
    """Project (4,P) homogeneous reference-frame rows into one camera, using the sector index when given."""
    num_points = rows4.shape[1]
    cam = view.camera
    rolling = view.readout_s > 0
    ref_pose = _call_pose(world_SE3_ego, np.array([int(reference_ns)]))[0]
    ego_mid_SE3_world = _call_pose(world_SE3_ego, np.array([int(view.timestamp_ns)]))[0].inverse()
    cam_SE3_ref = view.cam_SE3_ego.compose(ego_mid_SE3_world).compose(ref_pose)
    bounds = _cull_bounds(cam, _CULL_MARGIN_ROLLING if rolling else _CULL_MARGIN)
    affine = _affine(cam_SE3_ref)

    slices = None if index is None else index.slices(cam_SE3_ref, bounds)
    if slices is None:
        rows, cand = rows4, None
        p_cam = affine @ rows
    else:
        rows = index.rows4
        sizes = [e - s for s, e in slices]
        p_cam = np.empty((3, sum(sizes)), dtype=np.float32)
        pos = 0
        for (s, e), n in zip(slices, sizes):
            np.matmul(affine, rows[:, s:e], out=p_cam[:, pos:pos + n])
            pos += n
        cand = np.concatenate([index.order[s:e] for s, e in slices]) if slices else np.zeros(0, np.int32)
    if rolling:
        # The row poses move points by centimetres: cull on depth and on the normalised-coordinate bounds of the
        # image (relaxed by the rolling-shutter margin), then iterate the row time on the rest.
        xc, yc, zc = p_cam
        keep = zc > 0.5 * NEAR_M
        if bounds is not None:
            x_lo, x_hi, y_lo, y_hi = (np.float32(b) for b in bounds)
            keep &= (xc >= x_lo * zc) & (xc <= x_hi * zc) & (yc >= y_lo * zc) & (yc <= y_hi * zc)
        keep = np.flatnonzero(keep)
        p_cam = np.take(p_cam, keep, axis=1)
        idx = keep if cand is None else np.take(cand, keep)
    else:
        # The sector candidates are mostly in view (80-90 %): the exact model runs on all of them at once.
        idx = np.arange(p_cam.shape[1]) if cand is None else cand
    u, v, valid = _project_rows(cam, p_cam)
    if rolling and len(idx):
        sub = np.take(rows4, idx, axis=1)
        half_ns = int(round(view.readout_s * 0.5e9))
        t_mid = int(view.timestamp_ns)
        # cam(t)_SE3_ref over the readout: cam_SE3_ego . inverse(ref_SE3_world . world_SE3_ego(t)).
        track = _PoseTrack(world_SE3_ego, t_mid - half_ns, t_mid + half_ns, ref_pose.inverse(),
                           view.cam_SE3_ego.inverse(), knot_spacing_ns, invert=True)
        h = cam.height_px
        for _ in range(max(int(rolling_iterations), 1)):
            row = np.clip(v, 0.0, h - 1.0)
            t_row = t_mid + np.round(view.readout_s * 1e9 * (row / max(h - 1, 1) - 0.5)).astype(np.int64)
            p_cam = track.apply(sub, t_row)
            u, v, valid = _project_rows(cam, p_cam)
    keep = np.flatnonzero(valid)
    uv = np.empty((len(keep), 2), dtype=np.float32)
    uv[:, 0] = np.take(u, keep)
    uv[:, 1] = np.take(v, keep)
    return Projection(view.name, num_points, np.take(idx, keep).astype(np.int64), uv,
                      np.take(p_cam[2], keep), cam.width_px, cam.height_px, float(cam.fy_px))



def project_sweep(
    points_lidar: np.ndarray,
    point_times_ns: np.ndarray | int,
    ego_SE3_lidar: SE3,
    views: list[CameraView],
    world_SE3_ego: PoseFn,
    reference_ns: int | None = None,
    *,
    rolling_iterations: int = 2,
    knot_spacing_ns: int = DEFAULT_KNOT_SPACING_NS,
) -> tuple[np.ndarray, list[Projection]]:
    """Compensate a sweep once and project it into every camera.

    Args:
        points_lidar: (P,3) points in the lidar frame. point_times_ns: (P,) int64 or one int.
        ego_SE3_lidar: lidar mounting. views: the cameras. world_SE3_ego: pose function.
        reference_ns: reference time (default: the median point time).
        rolling_iterations: see :func:`project_points`. knot_spacing_ns: pose sampling interval.

    Returns:
        points_ref (P,3) float32 (Fortran order) in the ego frame at ``reference_ns`` and one :class:`Projection`
        per view.

    Raises:
        ValueError: shapes do not match.
    """
    times = np.asarray(point_times_ns, dtype=np.int64)
    if reference_ns is None:
        reference_ns = int(times) if times.ndim == 0 else int(np.median(times)) if len(times) else 0
    world_SE3_ego = cached_pose(world_SE3_ego, [int(reference_ns)] + [int(v.timestamp_ns) for v in views])
    rows4 = _compensate_rows(points_lidar, times, ego_SE3_lidar, world_SE3_ego, reference_ns, knot_spacing_ns)
    index = _SectorIndex(rows4) if len(views) > 1 and rows4.shape[1] else None
    projections = [_project_view(rows4, index, v, world_SE3_ego, reference_ns, rolling_iterations, knot_spacing_ns)
                   for v in views]
    return rows4[:3].T, projections
