"""Motion-compensated projection of lidar points into cameras, vectorised over points.

A lidar point measured at time ``t_p`` goes to the world with the ego pose at ``t_p`` and comes back into a camera
through the ego pose at the camera's exposure time::

    p_cam = cam_SE3_ego . world_SE3_ego(t_cam)^-1 . world_SE3_ego(t_ref) . p_ref
    p_ref = world_SE3_ego(t_ref)^-1 . world_SE3_ego(t_p) . ego_SE3_lidar . p_lidar

The work is split so that the per-point motion model runs **once per sweep** and each camera costs one affine map:

1. :func:`compensate_points` brings every point into the *reference frame*, the ego frame at a reference time (the
   sweep time), with its own pose. The world itself is never materialised, so float32 stays precise on drives with
   large world coordinates (reference-frame coordinates are tens of metres).
2. Each camera gets ``cam_SE3_ref``: one 3x4 float32 map of the points that can be in its view, applied in the
   same compiled pass that projects them and keeps the ones that land in the image.

Per-point poses are not evaluated point by point. The pose function is sampled at knots ``knot_spacing_ns`` apart
(5 ms: 21 poses per 100 ms sweep) and each point's transform is interpolated linearly between the two knots around its
time (rotation matrices entry-wise). The interpolated map is affine in the point's time, ``A_k + s B_k`` on
interval k, so each point costs one (3,8) multiply-add with its interval's weights (:class:`_PoseTrack`). Points in
firing order (the usual case for a spinning lidar) come as one contiguous run per interval, which the compiled loop
vectorises; points in any other order find their interval by binary search. Over 5 ms at a yaw rate of 1 rad/s the
rotation between knots is 5 mrad and the interpolation error ~3e-6 rad (0.3 mm at 100 m); the translation error is
``a dt^2 / 8`` for an acceleration ``a`` (0.03 mm at 10 m/s^2), far below a pixel. All the poses a sweep needs (the
reference, the knots, every camera time) come from **one** call of the pose function.

Which points can a camera see? :class:`_SectorIndex` gives every compensated point an azimuth bin once per sweep; the
cell keys (horizontal range band, azimuth bin) are computed lazily, when a camera first looks up its cell table (firing
order usually spares that, see below); nothing is sorted. A camera's view is a convex cone whose horizontal extent is
the azimuth interval of its corner rays; seen from the reference origin instead of the camera centre ``c``, the points
of that wedge within a range band lie between the azimuths where the wedge's edges cross the band's circles, so each
band gets its own azimuth interval: a per-camera boolean table over the cells. Where the cloud comes in firing order
(azimuth increasing with the index, as a spinning lidar delivers it), blocks of 64 points have running azimuth envelopes
and each camera looks up its table only over the one or two index ranges that can hold its azimuths (any order stays
correct: the envelopes then span the whole cloud). Points closer than 2.8 m go to every camera. While a camera's index
ranges are a small part of the cloud (firing order), it skips the table and projects the ranges whole (no look-up, no
gather): 10-30 % more points, but cheaper than selecting them. The exact tests run on the candidates only: depth in
front of the near plane, the distortion model's one-to-one domain and the bounds of the image, so the result does not
depend on which candidates were taken.

Memory traffic, not arithmetic, is the cost. The per-point steps (the pose track, a camera's map + projection + image
test + compaction, the depth buffer) are compiled loops (:mod:`sensorlabel.fusion.kernels`) that read each point once
and write only what they keep, instead of ~60 numpy passes per camera; the remaining sweep-sized temporaries live in
per-thread scratch buffers that are reused from sweep to sweep. Results agree with a float64 evaluation of the same
model to float32 rounding: < 1e-3 px and < 2e-5 m on the 120k-point benchmark sweep.

Rolling shutter: with a readout time ``readout_s`` image row ``v`` is exposed at
``t_cam + readout_s * (v / (H - 1) - 0.5)`` (the image timestamp is the middle row, SensorCalibration's convention).
The row depends on the projection, which depends on the row time: the fixed point is found by projecting with the
middle-row pose, then re-projecting with the time of the row found, ``rolling_iterations`` times (the map contracts
by roughly ``speed * readout / depth``, so two iterations are well below 0.01 px for road scenes).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorlabel.fusion import kernels
from sensorlabel.geometry.camera import NEAR_M, SHEET_MIN_JACOBIAN_DET, CameraModel, FisheyeCamera
from sensorlabel.geometry.lie import wrap_angle
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
# Below this many points a sweep is projected without the sector index (building it costs more than it saves).
_INDEX_MIN_POINTS = 4096
# Floating-point errors the projection kernels ignore (points at or behind the camera centre divide by ~0).
_QUIET_FP = {"divide": "ignore", "invalid": "ignore", "over": "ignore"}


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
        uv = self.uv_px
        if keep.dtype == bool and uv.dtype == np.float32 and uv.flags.c_contiguous:
            # Boolean compaction (no index array).
            if keep.shape != (len(self.point_index),):
                raise IndexError(f"keep: expected ({len(self.point_index)},) bool, got {keep.shape}")
            return Projection(self.camera, self.num_points, self.point_index[keep], _compact_uv(uv, keep),
                              self.depth_m[keep], self.width_px, self.height_px, self.focal_px)
        if keep.dtype == bool:
            keep = np.flatnonzero(keep)
        return Projection(self.camera, self.num_points, np.take(self.point_index, keep),
                          np.take(uv, keep, axis=0), np.take(self.depth_m, keep), self.width_px, self.height_px,
                          self.focal_px)


def _compact_uv(uv_px: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The rows of C-contiguous (K,2) float32 ``uv_px`` where the (K,) bool ``keep`` is set, compacted as one 8-byte
    item per (u, v) pair (one boolean pass instead of two strided ones)."""
    return uv_px.view(np.int64).reshape(-1)[keep].view(np.float32).reshape(-1, 2)


class _Scratch(threading.local):
    """Per-thread buffers for sweep-sized temporaries, reused from call to call (see the module docstring).

    A buffer handed out stays valid until the next request of the same name in the same thread; nothing that is
    returned to a caller ever lives in one.
    """

    MAX_KEPT_BYTES = 64 << 20

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: int | tuple[int, ...], dtype) -> np.ndarray:
        # Called ~80 times per sweep: the common case (a numpy scalar type, a large enough buffer) stays cheap.
        flat = not isinstance(shape, tuple)
        size = int(shape) if flat else math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or (buf.dtype.type is not dtype and buf.dtype != dtype):
            buf = np.empty(size + size // 4, dtype=dtype)
            if buf.nbytes <= self.MAX_KEPT_BYTES:
                self.buffers[name] = buf
        return buf[:size] if flat else buf[:size].reshape(shape)


_SCRATCH = _Scratch()


def _affine(transform: SE3) -> np.ndarray:
    """(3,4) float32 ``[R | t]`` of a single SE3, or (N,3,4) of a batch."""
    return np.concatenate([transform.rotation, transform.translation[..., None]], axis=-1).astype(np.float32)


def _homogeneous_rows(points: np.ndarray) -> np.ndarray:
    """(N,>=3) points -> fresh (4,N) float32 rows ``[x; y; z; 1]``."""
    out = np.empty((4, len(points)), dtype=np.float32)
    out[:3] = points[:, :3].T
    out[3] = 1.0
    return out


def _flat_records(points: np.ndarray) -> tuple[np.ndarray, int]:
    """(N,>=3) points as one flat float32 array and a record stride: point j is ``flat[stride * j + 0..2]``.

    Float32 rows of a wider record (a sweep's ``xyz_sensor``, the first columns of its point records) are read in
    place: the flat view runs from the first point's x to the last point's z, all inside the memory the points span.
    Anything else is copied into (N,3) float32 records.
    """
    n = len(points)
    row_bytes, col_bytes = points.strides if points.ndim == 2 else (0, 0)
    if points.dtype == np.float32 and col_bytes == 4 and row_bytes >= 12 and row_bytes % 4 == 0 and n:
        stride = row_bytes // 4
        return np.lib.stride_tricks.as_strided(points, shape=((n - 1) * stride + 3,), strides=(4,)), stride
    return np.ascontiguousarray(points[:, :3], dtype=np.float32).reshape(-1), 3


def _knot_times(t_min_ns: int, t_max_ns: int, knot_spacing_ns: int) -> np.ndarray:
    """(S+1,) int64 knot times of a :class:`_PoseTrack` over ``[t_min_ns, t_max_ns]`` (float64 steps rounded half to
    even, in Python: a few dozen knots)."""
    t_min = int(t_min_ns)
    span = max(int(t_max_ns) - t_min, 0)
    n_seg = max(math.ceil(span / knot_spacing_ns), 1)
    step = max(float(span), 1.0) / n_seg
    return np.array([t_min + round(i * step) for i in range(n_seg + 1)], dtype=np.int64)


class _PoseTrack:
    """A transform ``T(t)`` over a time span, applied per point at each point's own time.

    ``T(t) = left . world_SE3_ego(t) . right`` (or its inverse with ``invert``) is sampled at knots ``t_k``,
    ``knot_spacing_ns`` apart, and interpolated linearly between them (see the module docstring). With ``M_k`` the
    3x4 affine map at knot k and ``s = t - t_o`` the time since the middle knot ``t_o``, the map of interval k is
    affine in ``s``: ``M_k + (t - t_k) / L_k (M_{k+1} - M_k) = A_k + s B_k`` with ``B_k = (M_{k+1} - M_k) / L_k`` and
    ``A_k = M_k - (t_k - t_o) B_k`` (float64, then float32), kept as the (3,8) ``[A_k | B_k]`` of each interval; a
    compiled pass maps each point with its interval's weights (:func:`kernels.pose_track_in_order`,
    :func:`kernels.pose_track_any_order`). ``s`` is rounded to float32 (relative 6e-8: a few ns over a 100 ms
    sweep); the middle knot as origin halves the terms ``A_k p`` and ``s B_k p`` that cancel: on the 120k-point
    benchmark sweep the result is within 1.4e-5 m of a float64 evaluation of the same interpolation (rms 9e-7 m).
    """

    def __init__(self, world_SE3_ego: PoseFn, t_min_ns: int, t_max_ns: int, left: SE3, right: SE3,
                 knot_spacing_ns: int = DEFAULT_KNOT_SPACING_NS, invert: bool = False):
        self.knots_ns = _knot_times(t_min_ns, t_max_ns, knot_spacing_ns)
        self.n_seg = len(self.knots_ns) - 1
        poses = left.compose(_call_pose(world_SE3_ego, self.knots_ns)).compose(right)
        if invert:
            poses = poses.inverse()
        affine = np.concatenate([poses.rotation, poses.translation[:, :, None]], axis=2)  # (n_seg+1, 3, 4)
        self.origin_ns = int(self.knots_ns[self.n_seg // 2])
        since_origin_ns = (self.knots_ns - self.origin_ns).astype(np.float64)
        slope = (affine[1:] - affine[:-1]) / np.maximum(np.diff(since_origin_ns), 1.0)[:, None, None]  # B_k per ns
        offset = affine[:-1] - since_origin_ns[:-1, None, None] * slope  # A_k
        self.weights = np.concatenate([offset, slope], axis=2).astype(np.float32)  # (n_seg, 3, 8)

    def apply(self, points: np.ndarray, times_ns: np.ndarray, out: np.ndarray | None = None,
              in_order: bool | None = None) -> np.ndarray:
        """Map (N,>=3) points (x y z in the first columns, e.g. a sweep's point records) with the transform at each
        point's (N,) int64 time, in one compiled pass (:mod:`sensorlabel.fusion.kernels`).

        Args:
            out: (3,N) or (4,N) float32.
            in_order: whether the times are non-decreasing, when the caller knows (else it is checked).

        Returns:
            (3,N) float32 (or ``out`` (4,N) with the fourth row set to 1), written into ``out`` when given.
        """
        times = np.asarray(times_ns, dtype=np.int64)
        n = len(points)
        if out is None:
            out = np.empty((3, n), dtype=np.float32)
        if n == 0:
            return out
        if in_order is None:
            in_order = not np.any(times[1:] < times[:-1])
        if not in_order:
            kernels.pose_track_any_order(points, times, self.knots_ns, self.weights, self.origin_ns, out)
        else:
            flat, stride = _flat_records(points)
            kernels.pose_track_in_order(flat, stride, times, self.knots_ns, self.weights, self.origin_ns, out)
        if len(out) == 4:
            out[3] = 1.0
        return out


def cached_pose(world_SE3_ego: PoseFn, timestamps_ns: np.ndarray) -> PoseFn:
    """A pose function that answers queries for ``timestamps_ns`` from one batched evaluation.

    Pose functions can cost a fraction of a millisecond per call (interpolation, an analytic trajectory); projecting
    one sweep into six cameras asks for the same few poses many times. A query whose times are all among
    ``timestamps_ns`` is answered from the table; any other goes to ``world_SE3_ego``.
    """
    times = np.array(sorted(set(np.asarray(timestamps_ns, dtype=np.int64).reshape(-1).tolist())), dtype=np.int64)
    poses = _call_pose(world_SE3_ego, times)
    row = {t: i for i, t in enumerate(times.tolist())}

    def fn(query_ns: np.ndarray) -> SE3:
        q = np.asarray(query_ns, dtype=np.int64).reshape(-1)
        if 0 < len(q) <= 64:  # the usual few times: a dictionary look-up each
            i = [row.get(t, -1) for t in q.tolist()]
            if -1 not in i:
                return poses[np.array(i, dtype=np.intp)]
        elif len(q) and len(times):
            i = np.minimum(np.searchsorted(times, q), len(times) - 1)
            if np.array_equal(times[i], q):
                return poses[i]
        return world_SE3_ego(q)

    return fn


def _call_pose(world_SE3_ego: PoseFn, times_ns: np.ndarray) -> SE3:
    poses = world_SE3_ego(np.asarray(times_ns, dtype=np.int64))
    if not poses.is_batch or len(poses) != len(times_ns):
        raise ValueError(f"pose function returned {poses.rotation.shape[:-2]} poses for {len(times_ns)} query times")
    return poses


def _sweep_times(points_lidar: np.ndarray, point_times_ns
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, bool] | None]:
    """Validated (P,>=3) points, int64 times (scalar or (P,)) and, when the times vary over the sweep, their span
    ``(t_min_ns, t_max_ns, in_order)`` (None otherwise); one pass over the times when they are in order."""
    pts = np.asarray(points_lidar)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points_lidar: expected (P,3), got {pts.shape}")
    times = np.asarray(point_times_ns, dtype=np.int64)
    if times.ndim > 1 or (times.ndim == 1 and times.shape != (len(pts),)):
        raise ValueError(f"point_times_ns: expected ({len(pts)},) or a scalar, got {times.shape}")
    if times.ndim == 0 or len(times) == 0:
        return pts, times, None
    in_order = not np.any(times[1:] < times[:-1])
    t_min, t_max = (int(times[0]), int(times[-1])) if in_order else (int(times.min()), int(times.max()))
    return pts, times, ((t_min, t_max, in_order) if t_min != t_max else None)


def _compensate_into(pts: np.ndarray, times: np.ndarray, span: tuple[int, int, bool] | None, ego_SE3_lidar: SE3,
                     world_SE3_ego: PoseFn, reference_ns: int, knot_spacing_ns: int, out: np.ndarray) -> np.ndarray:
    """:func:`compensate_points` written into ``out`` (4,P) float32 as homogeneous rows ``[x; y; z; 1]``;
    ``span`` as :func:`_sweep_times` gives it."""
    p = len(pts)
    ref_SE3_world = _call_pose(world_SE3_ego, np.array([int(reference_ns)]))[0].inverse()
    if span is None:
        rows = pts[:, :3].astype(np.float32, copy=False).T
        t = int(times) if times.ndim == 0 else (int(times[0]) if p else int(reference_ns))
        ref_SE3_lidar = ref_SE3_world.compose(_call_pose(world_SE3_ego, np.array([t]))[0]).compose(ego_SE3_lidar)
        affine = _affine(ref_SE3_lidar)
        np.matmul(affine[:, :3], rows, out=out[:3])
        out[:3] += affine[:, 3:]
        out[3] = 1.0
        return out
    track = _PoseTrack(world_SE3_ego, span[0], span[1], ref_SE3_world, ego_SE3_lidar, knot_spacing_ns)
    return track.apply(pts, times, out=out, in_order=span[2])


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
    pts, times, span = _sweep_times(points_lidar, point_times_ns)
    out = np.empty((4, len(pts)), dtype=np.float32)
    return _compensate_into(pts, times, span, ego_SE3_lidar, world_SE3_ego, reference_ns, knot_spacing_ns,
                            out)[:3].T


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


def _jacobian_safe_r2(camera: CameraModel) -> float:
    """Squared normalised radius up to which the Jacobian determinant of the pinhole distortion map provably exceeds
    the ``SHEET_MIN_JACOBIAN_DET`` of ``PinholeCamera.project``'s domain rule, so only points beyond it need the
    exact test.

    The Jacobian is the radial part (eigenvalues ``radial`` and ``d(r radial)/dr``) plus a symmetric tangential
    part whose norm is at most ``r * c(p1, p2)``; by Weyl's inequality both eigenvalues exceed
    ``min(radial eigenvalues) - r c``. Evaluated on a fine grid with a 10 % margin on the determinant.
    """
    r2_max = camera.max_normalised_radius2
    k1, k2, p1, p2, k3 = (float(c) for c in camera.distortion)
    a, b = abs(p1), abs(p2)
    c = math.sqrt((2 * a + 6 * b) ** 2 + 2 * (2 * a + 2 * b) ** 2 + (6 * a + 2 * b) ** 2)
    r = np.linspace(0.0, math.sqrt(r2_max), 4001)
    r2 = r * r
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    slope = radial + 2 * r2 * (k1 + r2 * (2 * k2 + 3 * k3 * r2))
    bound = np.minimum(radial, slope) - r * c
    bad = np.flatnonzero((bound <= 0) | (bound * bound <= SHEET_MIN_JACOBIAN_DET * 1.1))
    if len(bad) == 0:
        return r2_max
    return float(r2[max(bad[0] - 2, 0)])


class _CameraConstants:
    """Per-camera constants of the projection kernels (cull bounds, domain limits; ``kernel``: the constant vector of
    the compiled pinhole kernels, None for a fisheye)."""

    def __init__(self, camera: CameraModel):
        f32 = np.float32
        self.focal = np.array([[camera.fx_px], [camera.fy_px]], dtype=f32)
        self.centre = np.array([[camera.cx_px], [camera.cy_px]], dtype=f32)
        u_lo, v_lo, u_hi, v_hi = kernels.image_bounds_rel(camera.cx_px, camera.cy_px, camera.width_px,
                                                          camera.height_px)
        self.image_lo_rel = np.array([[u_lo], [v_lo]], dtype=f32)
        self.image_hi_rel = np.array([[u_hi], [v_hi]], dtype=f32)
        # Cull bounds per margin: this module's two margins up front, any other on first request (cull_bounds).
        self.bounds = {margin: _normalised_bounds(camera, margin) for margin in (_CULL_MARGIN, _CULL_MARGIN_ROLLING)}
        if isinstance(camera, FisheyeCamera):
            self.kernel = None
        else:
            self.kernel = kernels.pinhole_constants(camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px,
                                                    camera.distortion, NEAR_M, float(camera.max_normalised_radius2),
                                                    _jacobian_safe_r2(camera), camera.width_px, camera.height_px)


_CONSTANTS_CACHE: dict[int, tuple] = {}


def _constants(camera: CameraModel) -> _CameraConstants:
    """Cached :class:`_CameraConstants` (camera models hold arrays and are not hashable, hence the id key; the entry
    keeps the model alive so that the id cannot be reused by another camera)."""
    hit = _CONSTANTS_CACHE.get(id(camera))
    if hit is None or hit[0] is not camera:
        if len(_CONSTANTS_CACHE) > 256:
            _CONSTANTS_CACHE.clear()
        hit = (camera, _CameraConstants(camera))
        _CONSTANTS_CACHE[id(camera)] = hit
    return hit[1]


def cull_bounds(camera: CameraModel, margin: float) -> tuple[float, float, float, float] | None:
    """Bounds of the normalised coordinates x/z and y/z over the image, for a cheap pre-cull of camera-frame points;
    cached per camera and margin.

    Args:
        camera: any of the geometry package's camera models.
        margin: widening of each bound, as a fraction of its span (0.1 = 10 % of the span on each side).

    Returns:
        ``(x_lo, x_hi, y_lo, y_hi)``; None when the field of view reaches 90 degrees (a fisheye), so that x/z is
        unbounded.
    """
    bounds = _constants(camera).bounds
    if margin not in bounds:
        bounds[margin] = _normalised_bounds(camera, margin)
    return bounds[margin]


class _SectorIndex:
    """Azimuth bins of one compensated sweep and, for clouds in firing order, running azimuth envelopes over blocks
    of points, built once per sweep; each camera then gathers its candidates with one table look-up over the index
    ranges that can hold its azimuths (see the module docstring). The cell keys (horizontal range band, azimuth bin)
    the tables are looked up with are computed on the first look-up (:meth:`_keys`).

    Range bands are octaves of the squared horizontal range, read from the float32 exponent bits: band j >= 1 holds
    ``2^(j+2) <= x^2 + y^2 < 2^(j+3)`` (inner radius ``2^((j+2)/2)``: 2.8, 4, 5.7, 8, 11, 16 ... m), band 0 everything
    closer than 2.8 m (it goes to every camera) and the last band everything beyond. Azimuth bins are ``2 pi / BINS``
    wide, counted counter-clockwise from the reference frame's x axis.

    A camera whose index ranges hold at most ``MAX_SCAN_FRACTION`` of the cloud (the usual case for a cloud in firing
    order) skips the look-up: it projects its ranges whole, as contiguous slices of the homogeneous rows (no gather),
    plus the band-0 points outside them; ranges hold 10-30 % more points than the table would pick, and projecting
    them costs less than looking up and gathering. The cell keys are then never needed and never computed.

    Attributes:
        near: (Q,) intp indices of the band-0 points.
        segments: per run of increasing azimuth, ``(first_block, running max, reverse running min)`` of the block
            azimuth bins; None when the cloud is not in firing order (every camera scans all points).
    """

    BINS = 256
    BANDS = 11
    BLOCK = 64
    MAX_SEGMENTS = 8
    MAX_SCAN_FRACTION = 0.4

    def __init__(self, xyz: np.ndarray):
        import cv2

        n = xyz.shape[1]
        self.num_points = n
        x, y = xyz[0], xyz[1]
        r2 = _SCRATCH.get("sector_r2", n, np.float32)
        tmp = _SCRATCH.get("sector_tmp", n, np.float32)
        np.multiply(x, x, out=r2)
        np.multiply(y, y, out=tmp)
        r2 += tmp
        # Azimuth in [0, 2 pi] from the x axis. OpenCV's polynomial arctangent (error < 2e-4 rad, inside the tables'
        # 1 degree pad) costs 60 % of numpy's.
        az = cv2.phase(x, y, angle=tmp).reshape(-1)
        az *= np.float32(self.BINS / (2 * np.pi))
        abin = _SCRATCH.get("sector_bin", n, np.int32)
        with np.errstate(invalid="ignore"):  # NaN coordinates give garbage bins; the clip keeps them in the table
            np.copyto(abin, az, casting="unsafe")
        np.clip(abin, 0, self.BINS - 1, out=abin)
        self._r2, self._abin, self._key = r2, abin, None
        self.near = np.flatnonzero(r2 < np.float32(8.0))  # band 0
        inner_m = [2.0 ** ((j + 2) / 2.0) for j in range(1, self.BANDS)]
        self.radii = np.array([inner_m, inner_m[1:] + [1e7]]).T  # (BANDS-1, 2) circles of bands 1..
        self.segments = self._envelopes(abin)

    def _keys(self) -> np.ndarray:
        """(P,) intp cell ``band * BINS + azimuth_bin`` of every point, computed on first use (a scratch buffer: valid
        during the call)."""
        if self._key is None:
            n = self.num_points
            band = _SCRATCH.get("sector_band", n, np.int32)
            np.right_shift(self._r2.view(np.int32), 23, out=band)
            band -= 127 + 2
            np.clip(band, 0, self.BANDS - 1, out=band)
            self._key = _SCRATCH.get("sector_key", n, np.intp)
            np.multiply(band, self.BINS, out=self._key)
            self._key += self._abin
        return self._key

    def _envelopes(self, abin: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]] | None:
        # reduceat: one pass per envelope, the last (partial) block included; far faster than max(axis=1) on
        # 64-wide rows.
        first = np.arange(0, len(abin), self.BLOCK)
        bmax = np.maximum.reduceat(abin, first)
        bmin = np.minimum.reduceat(abin, first)
        # A run ends where the azimuth drops by more than half a turn (the sweep's seam).
        starts = np.concatenate([[0], np.flatnonzero(bmin[1:] < bmax[:-1] - self.BINS // 2) + 1, [len(bmax)]])
        if len(starts) - 1 > self.MAX_SEGMENTS:
            return None
        return [(int(s), np.maximum.accumulate(bmax[s:e]), np.minimum.accumulate(bmin[s:e][::-1])[::-1])
                for s, e in itertools.pairwise(starts)]

    def _bins(self, azimuth_rad: np.ndarray) -> np.ndarray:
        """int64 azimuth bins (same shape) of finite angles (any shape) in radians."""
        wrapped = np.asarray(azimuth_rad) % (2 * np.pi)
        return np.minimum((wrapped * (self.BINS / (2 * np.pi))).astype(np.int64), self.BINS - 1)

    def _bin_intervals(self, axis_az: float, lo: float, hi: float) -> list[tuple[int, int]]:
        """Azimuth bins of ``axis_az + [lo, hi]`` as one or two inclusive bin intervals."""
        b0, b1 = self._bins(np.array([axis_az + lo, axis_az + hi])).tolist()
        return [(b0, b1)] if b0 <= b1 else [(b0, self.BINS - 1), (0, b1)]

    def tables(self, ref_SE3_cams: SE3, bounds: list
               ) -> list[tuple[tuple, list[tuple[int, int]], np.ndarray] | None]:
        """Every camera's candidate cells, all cameras at once (batched small-array arithmetic; per camera it would
        cost more than the look-ups themselves). The cell tables themselves are built by :meth:`_table` only for a
        camera that looks them up.

        Args:
            ref_SE3_cams: batch of C, camera -> reference frame.
            bounds: C normalised-coordinate bounds (see :func:`cull_bounds`), None for an unbounded view.

        Returns:
            Per camera the arguments of :meth:`_table`, the index ranges (see :meth:`ranges`) of the inclusive
            azimuth-bin intervals that hold every cell of the table and the (Q',) intp band-0 points outside those
            ranges (one broadcast test for all cameras); None (all points) when the sector test does not apply (no
            bounded field of view, or a camera looking steeply up or down).
        """
        out: list = [None] * len(bounds)
        use = [i for i, b in enumerate(bounds) if b is not None]
        if not use:
            return out
        rot, trans = ref_SE3_cams.rotation[use], ref_SE3_cams.translation[use]  # (C,3,3), (C,3)
        corners = np.array([[[x_lo, x_hi, x_lo, x_hi], [y_lo, y_lo, y_hi, y_hi], [1.0, 1.0, 1.0, 1.0]]
                            for x_lo, x_hi, y_lo, y_hi in (bounds[i] for i in use)])  # (C,3,4)
        rays = rot @ corners
        steep = np.any(np.hypot(rays[:, 0], rays[:, 1]) < 0.2 * np.abs(rays[:, 2]), axis=1)
        axis_az = np.arctan2(rot[:, 1, 2], rot[:, 0, 2])  # (C,)
        rel = wrap_angle(np.arctan2(rays[:, 1], rays[:, 0]) - axis_az[:, None])
        lo, hi = rel.min(axis=1), rel.max(axis=1)
        # The view's horizontal wedge: apex at the camera centre, edges along the extreme corner azimuths. Within
        # a band (an annulus about the origin) the points of the wedge lie between the edges' crossings of the
        # band's two circles (azimuth is monotonic along a ray that misses the origin), so those four crossings
        # bound the azimuths seen from the origin. The last band reaches infinity: its outer crossing is taken at
        # 1e7 m, within 1e-6 rad of the edge direction. All cameras and bands at once, (camera, band, edge,
        # circle) arrays.
        cx, cy = trans[:, 0, None, None, None], trans[:, 1, None, None, None]
        dist2 = cx * cx + cy * cy
        edge_az = axis_az[:, None] + np.stack([lo, hi], axis=1)  # (C,2)
        ex, ey = np.cos(edge_az)[:, None, :, None], np.sin(edge_az)[:, None, :, None]
        radius = self.radii[None, :, None, :]  # (1, BANDS-1, 1, 2): inner and outer circle of bands 1..
        along = ex * cx + ey * cy
        with np.errstate(invalid="ignore"):
            t = np.sqrt(along * along - dist2 + radius * radius) - along
        rel = wrap_angle(np.arctan2(cy + t * ey, cx + t * ex) - axis_az[:, None, None, None])
        rel = rel.reshape(len(use), self.BANDS - 1, 4)
        pad = math.radians(1.0)  # absorbs rounding and the float32 coordinates
        b_lo, b_hi = rel.min(axis=2) - pad, rel.max(axis=2) + pad  # (C, BANDS-1)
        everywhere = (self.radii[None, :, 0] ** 2 <= dist2[:, :, 0, 0] * 1.02) | ~(b_hi - b_lo < np.pi) \
            | ~(np.abs(rel).max(axis=2) <= math.radians(150.0))
        b0, b1 = self._bins(axis_az[:, None] + b_lo), self._bins(axis_az[:, None] + b_hi)
        skip = (steep | ~(hi - lo < np.pi)).tolist()
        anywhere = everywhere.any(axis=1).tolist()
        axis_list, lo_list, hi_list = axis_az.tolist(), b_lo.min(axis=1).tolist(), b_hi.max(axis=1).tolist()
        cams = [j for j in range(len(use)) if not skip[j]]
        ranges = self.ranges([[(0, self.BINS - 1)] if anywhere[j] else
                              self._bin_intervals(axis_list[j], lo_list[j], hi_list[j]) for j in cams])
        if not cams:
            return out
        # (camera, range, near point): is the point in the range? Padded with empty ranges.
        width = max(len(r) for r in ranges)
        limits = np.array([r + [(0, 0)] * (width - len(r)) for r in ranges], dtype=np.intp).reshape(len(cams), width, 2)
        outside = ~((self.near >= limits[:, :, :1]) & (self.near < limits[:, :, 1:])).any(axis=1)
        for i, (j, cam_ranges) in enumerate(zip(cams, ranges)):
            out[use[j]] = ((b0[j], b1[j], everywhere[j]), cam_ranges, self.near[outside[i]])
        return out

    def _table(self, b0: np.ndarray, b1: np.ndarray, everywhere: np.ndarray) -> np.ndarray:
        """A camera's (BANDS * BINS,) bool cell table (band 0 excluded: :attr:`near` holds those points) from its
        (BANDS-1,) inclusive azimuth-bin intervals per band (wrapping when b0 > b1) and whole-band flags."""
        bins = np.arange(self.BINS)
        after, before = bins >= b0[:, None], bins <= b1[:, None]
        table = np.zeros((self.BANDS, self.BINS), dtype=bool)
        table[1:] = np.where((b0 <= b1)[:, None], after & before, after | before) | everywhere[:, None]
        return table.reshape(-1)

    def ranges(self, intervals: list[list[tuple[int, int]]]) -> list[list[tuple[int, int]]]:
        """Per camera, sorted disjoint index ranges ``[start, end)`` that hold every point whose azimuth bin is in
        one of its ``intervals``: for a point of block J with bin b in [b0, b1], the running max at J is >= b0 and
        the reverse running min <= b1. One batched search per run for all cameras."""
        n = self.num_points
        whole = [self.segments is None or iv == [(0, self.BINS - 1)] for iv in intervals]
        owner, lows, highs = [], [], []
        for c, iv in enumerate(intervals):
            if not whole[c]:
                for b0, b1 in iv:
                    owner.append(c)
                    lows.append(b0)
                    highs.append(b1)
        found: list[list[tuple[int, int]]] = [[] for _ in intervals]
        if owner:
            for first, run_max, run_min in self.segments:
                starts = np.searchsorted(run_max, lows, side="left").tolist()
                ends = np.searchsorted(run_min, highs, side="right").tolist()
                for c, s, e in zip(owner, starts, ends):
                    if s < e:
                        found[c].append(((first + s) * self.BLOCK, min((first + e) * self.BLOCK, n)))
        out = []
        for c, cam_found in enumerate(found):
            merged: list[tuple[int, int]] = []
            for s, e in sorted(cam_found):
                if merged and s <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
                else:
                    merged.append((s, e))
            out.append([(0, n)] if whole[c] else merged)
        return out

    def candidates(self, cells: tuple[tuple, list[tuple[int, int]], np.ndarray] | None) -> _Candidates | None:
        """Every point of a camera's cells (from :meth:`tables`), each once, or None for all.

        Args:
            cells: the camera's entry of :meth:`tables`.

        Returns:
            A superset of the points of the cells (see the class docstring), as index ranges and single indices.
        """
        if cells is None:
            return None
        table_args, ranges, extra = cells
        if sum(e - s for s, e in ranges) <= self.MAX_SCAN_FRACTION * self.num_points:
            bounds = np.array(ranges, dtype=np.int64).reshape(-1, 2)
            return _Candidates(bounds[:, 0], bounds[:, 1], extra)
        key = self._keys()
        table = self._table(*table_args)
        parts = []
        for s, e in ranges:
            hit = _SCRATCH.get("sector_hit", e - s, bool)
            np.take(table, key[s:e], out=hit)
            found = np.flatnonzero(hit)
            if s:
                found += s
            parts.append(found)
        parts.append(self.near)
        total = sum(len(part) for part in parts)
        no_ranges = np.zeros(0, dtype=np.int64)
        return _Candidates(no_ranges, no_ranges,
                           np.concatenate(parts, out=_SCRATCH.get("sector_candidates", total, np.intp)))


class _Candidates:
    """A camera's candidate points: index ranges of the cloud, then single columns.

    Attributes:
        starts, ends: (S,) int64 ranges ``[starts[i], ends[i])`` of cloud indices, in order.
        indices: (Q,) intp cloud indices of further single points.
    """

    def __init__(self, starts: np.ndarray, ends: np.ndarray, indices: np.ndarray):
        self.starts, self.ends, self.indices = starts, ends, indices

    def __len__(self) -> int:
        return int((self.ends - self.starts).sum()) + len(self.indices)

    def blocks(self, xyz1: np.ndarray) -> list[np.ndarray]:
        """The candidates' columns of the (4,P) cloud ``xyz1`` as (4,M_i) blocks: a slice per range (no gather),
        then the single points gathered into a scratch buffer."""
        gathered = np.take(xyz1, self.indices, axis=1,
                           out=_SCRATCH.get("cam_gather", (xyz1.shape[0], len(self.indices)), xyz1.dtype))
        return [xyz1[:, s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist())] + [gathered]

    def cloud_index(self, local: np.ndarray) -> np.ndarray:
        """(K,) intp cloud indices of the increasing (K,) intp positions ``local`` in the concatenated
        :meth:`blocks`, computed in place in ``local`` where it can be (ranges: one offset per range)."""
        if len(self.starts) == 0:
            return np.take(self.indices, local)
        lengths = (self.ends - self.starts).tolist()
        ends = list(itertools.accumulate(lengths))
        cuts = np.searchsorted(local, ends).tolist()
        first = 0
        for start, end, length, cut in zip(self.starts.tolist(), ends, lengths, cuts):
            offset = start - (end - length)
            if offset:
                local[first:cut] += offset
            first = cut
        if first < len(local):
            local[first:] = np.take(self.indices, local[first:] - ends[-1])
        return local


def _project_xyz(camera: CameraModel, rows: np.ndarray, scratch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The camera model's projection of (3,N) float32 camera-frame rows ``[x; y; z]``, in float32: the pixel
    coordinates *relative to the principal point* (2,N) (add ``_constants(camera).centre`` for pixels) and valid (N,).

    Same formulas and validity rule as the model's ``project`` (front of the near plane, inside the distortion
    model's one-to-one domain, inside the image); ``tests/fusion`` checks that the two agree. A pinhole goes through
    the compiled kernel (:func:`kernels.project_pinhole_rows`). Points that are not valid get arbitrary coordinates.
    With ``scratch`` the coordinates live in this thread's scratch buffer, valid until the next such call.
    """
    if isinstance(camera, FisheyeCamera):
        return _project_fisheye(camera, rows)
    n = rows.shape[1]
    uv = _SCRATCH.get("proj_uv", (2, n), np.float32) if scratch else np.empty((2, n), dtype=np.float32)
    valid = np.empty(n, dtype=bool)
    kernels.project_pinhole_rows(rows, _constants(camera).kernel, uv, valid)
    return uv, valid


def _project_fisheye(camera: FisheyeCamera, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_project_xyz` for the fisheye model."""
    f32 = np.float32
    x, y, z = rows
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.hypot(x, y)
        theta = np.arctan2(r, z)
        k1, k2, k3, k4 = camera.distortion.astype(f32)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        inv_z = np.divide(f32(1.0), np.where(z > NEAR_M, z, f32(1.0)))
        scale = np.where(r > 1e-12, theta_d / np.maximum(r, f32(1e-12)), inv_z)
        k = _constants(camera)
        uv = np.stack([x * scale, y * scale])
        uv *= k.focal
        ok = (z > NEAR_M) & (theta <= camera.max_theta_rad)
        inside = uv >= k.image_lo_rel
        inside &= uv <= k.image_hi_rel
        ok &= inside[0]
        ok &= inside[1]
    return uv, ok


def _project_rows(camera: CameraModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_project_xyz` on (3,N) float32 rows ``[x; y; z]`` in the camera frame, in pixels: u (N,), v (N,),
    valid (N,)."""
    uv, valid = _project_xyz(camera, rows)
    uv += _constants(camera).centre
    return uv[0], uv[1], valid


def _transform(blocks: list[np.ndarray], affine: np.ndarray) -> np.ndarray:
    """(4,M_i) float32 blocks of homogeneous coordinates -> (3,M) float32 camera-frame rows ``[x; y; z]`` (the
    blocks one after the other) with a (3,4) affine map, in a scratch buffer: one BLAS product per block (the
    rows of a slice of the cloud are strided, which BLAS takes as they are).
    """
    m = sum(block.shape[1] for block in blocks)
    rows = _SCRATCH.get("cam_rows", (3, m), np.float32)
    start = 0
    for block in blocks:
        end = start + block.shape[1]
        if end > start:
            np.matmul(affine, block, out=rows if len(blocks) == 1 else rows[:, start:end])
        start = end
    return rows


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
    world_SE3_ego = cached_pose(world_SE3_ego, _pose_times(int(reference_ns), [view], knot_spacing_ns))
    ref_pose, cam_SE3_ref = _camera_maps(world_SE3_ego, int(reference_ns), [view])
    with np.errstate(**_QUIET_FP):
        return _project_view(_homogeneous_rows(pts), None, view, _affine(cam_SE3_ref[0]), ref_pose, world_SE3_ego,
                             rolling_iterations, knot_spacing_ns)


def _rolling_span(view: CameraView) -> tuple[int, int]:
    half_ns = round(view.readout_s * 0.5e9)
    return int(view.timestamp_ns) - half_ns, int(view.timestamp_ns) + half_ns


def _pose_times(reference_ns: int, views: list[CameraView], knot_spacing_ns: int) -> list[int]:
    """Every pose time that projecting into ``views`` asks for (the reference, the image times, the knots over
    each rolling-shutter readout)."""
    times = [int(reference_ns)] + [int(v.timestamp_ns) for v in views]
    for view in views:
        if view.readout_s > 0:
            times.extend(_knot_times(*_rolling_span(view), knot_spacing_ns).tolist())
    return times


def _camera_maps(world_SE3_ego: PoseFn, reference_ns: int, views: list[CameraView]) -> tuple[SE3, SE3]:
    """The reference pose (single SE3) and every camera's ``cam_SE3_ref`` (batch of C) from one pose query:
    ``cam_SE3_ego . world_SE3_ego(t_cam)^-1 . world_SE3_ego(t_ref)``."""
    times = np.array([int(reference_ns)] + [int(v.timestamp_ns) for v in views], dtype=np.int64)
    poses = _call_pose(world_SE3_ego, times)
    cam_SE3_ego = SE3.stack([v.cam_SE3_ego for v in views])
    return poses[0], cam_SE3_ego.compose(poses[1:].inverse()).compose(poses[0])


def _project_view(xyz1: np.ndarray, cand: _Candidates | None, view: CameraView, cam_affine_ref: np.ndarray,
                  ref_pose: SE3, world_SE3_ego: PoseFn, rolling_iterations: int, knot_spacing_ns: int) -> Projection:
    """Project (4,P) homogeneous reference-frame coordinates (rows ``[x; y; z; 1]``) into one camera: all of them, or
    the candidates ``cand`` (every point that can be in the view, from :meth:`_SectorIndex.candidates`), with the
    camera's (3,4) float32 ``cam_SE3_ref`` map (:func:`_affine`). The caller ignores floating-point errors
    (``np.errstate(**_QUIET_FP)``)."""
    num_points = xyz1.shape[1]
    cam = view.camera
    constants = _constants(cam)
    if cand is None:
        cand = _Candidates(np.array([0], dtype=np.int64), np.array([num_points], dtype=np.int64),
                           np.zeros(0, dtype=np.intp))
    if view.readout_s > 0:
        point_index, uv, depth = _project_rolling(xyz1, cand, view, cam_affine_ref, ref_pose, world_SE3_ego,
                                                  rolling_iterations, knot_spacing_ns)
    elif constants.kernel is not None:
        # Global-shutter pinhole: one compiled pass (map, project, test, store what projects).
        m = len(cand)
        point_index = np.empty(m, dtype=np.int64)
        uv = np.empty((m, 2), dtype=np.float32)
        depth = np.empty(m, dtype=np.float32)
        k = kernels.project_candidates(xyz1, cand.starts, cand.ends, cand.indices, cam_affine_ref, constants.kernel,
                                       point_index, uv, depth)
        point_index, uv, depth = point_index[:k], uv[:k], depth[:k]
    else:
        rows = _transform(cand.blocks(xyz1), cam_affine_ref)  # (3,M) camera frame
        uv_rel, valid = _project_xyz(cam, rows, scratch=True)
        uv = _pixels(uv_rel, valid, constants)
        depth = rows[2][valid]
        point_index = cand.cloud_index(np.flatnonzero(valid))
    return Projection(view.name, num_points, point_index.astype(np.int64, copy=False), uv, depth,
                      cam.width_px, cam.height_px, float(cam.fy_px))


def _pixels(uv_rel: np.ndarray, valid: np.ndarray, constants: _CameraConstants) -> np.ndarray:
    """(K,2) float32 pixels of the valid columns of (2,N) ``uv_rel`` (relative to the principal point): interleaved
    first, adding the principal point (two strided passes into a cached buffer), then one boolean compaction of
    8-byte items."""
    uv_all = _SCRATCH.get("cam_uv", (uv_rel.shape[1], 2), np.float32)
    np.add(uv_rel[0], constants.centre[0, 0], out=uv_all[:, 0])
    np.add(uv_rel[1], constants.centre[1, 0], out=uv_all[:, 1])
    return _compact_uv(uv_all, valid)


def _project_rolling(xyz1: np.ndarray, cand: _Candidates, view: CameraView, cam_affine_ref: np.ndarray,
                     ref_pose: SE3, world_SE3_ego: PoseFn, rolling_iterations: int, knot_spacing_ns: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_project_view` of a rolling-shutter camera: (K,) cloud indices, (K,2) pixels, (K,) depths."""
    cam = view.camera
    constants = _constants(cam)
    rows = _transform(cand.blocks(xyz1), cam_affine_ref)  # (3,M) camera frame at the middle row's time
    # The row poses move points by centimetres: cull on depth and on the normalised-coordinate bounds of the image
    # (relaxed by the rolling-shutter margin), then iterate the row time on the rest.
    x, y, z = rows
    keep = z > 0.5 * NEAR_M
    bounds = cull_bounds(cam, _CULL_MARGIN_ROLLING)
    if bounds is not None:
        x_lo, x_hi, y_lo, y_hi = (np.float32(b) for b in bounds)
        keep &= (x >= x_lo * z) & (x <= x_hi * z) & (y >= y_lo * z) & (y <= y_hi * z)
    keep = np.flatnonzero(keep)
    idx = cand.cloud_index(keep.copy())
    sub = np.take(xyz1[:3], idx, axis=1).T  # (K,3) points in the reference frame
    rows = np.take(rows, keep, axis=1)
    uv_rel, valid = _project_xyz(cam, rows, scratch=True)
    if len(idx):
        t_first, t_last = _rolling_span(view)
        t_mid = int(view.timestamp_ns)
        # cam(t)_SE3_ref over the readout: cam_SE3_ego . inverse(ref_SE3_world . world_SE3_ego(t)).
        track = _PoseTrack(world_SE3_ego, t_first, t_last, ref_pose.inverse(), view.cam_SE3_ego.inverse(),
                           knot_spacing_ns, invert=True)
        h = cam.height_px
        cy = constants.centre[1, 0]
        for _ in range(max(int(rolling_iterations), 1)):
            row = np.clip(uv_rel[1] + cy, 0.0, h - 1.0)
            t_row = t_mid + np.round(view.readout_s * 1e9 * (row / max(h - 1, 1) - 0.5)).astype(np.int64)
            rows = track.apply(sub, t_row)
            uv_rel, valid = _project_xyz(cam, rows, scratch=True)
    return np.take(idx, np.flatnonzero(valid)), _pixels(uv_rel, valid, constants), rows[2][valid]


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
    pts, times, span = _sweep_times(points_lidar, point_times_ns)
    p = len(pts)
    if reference_ns is None:
        reference_ns = int(times) if times.ndim == 0 else int(np.median(times)) if p else 0
    query = _pose_times(int(reference_ns), views, knot_spacing_ns)
    if span is not None:
        query.extend(_knot_times(span[0], span[1], knot_spacing_ns).tolist())
    world_SE3_ego = cached_pose(world_SE3_ego, query)
    xyz1 = np.empty((4, p), dtype=np.float32)  # homogeneous rows; the first three are returned
    _compensate_into(pts, times, span, ego_SE3_lidar, world_SE3_ego, reference_ns, knot_spacing_ns, xyz1)
    ref_pose, cam_SE3_ref = _camera_maps(world_SE3_ego, int(reference_ns), views)
    if len(views) > 1 and p >= _INDEX_MIN_POINTS:
        index = _SectorIndex(xyz1)
        cells = index.tables(cam_SE3_ref.inverse(), [
            cull_bounds(v.camera, _CULL_MARGIN_ROLLING if v.readout_s > 0 else _CULL_MARGIN) for v in views])
    else:
        index, cells = None, [None] * len(views)
    affines = _affine(cam_SE3_ref)  # (C,3,4), all cameras at once
    with np.errstate(**_QUIET_FP):
        projections = [_project_view(xyz1, None if index is None else index.candidates(c), v, affines[i],
                                     ref_pose, world_SE3_ego, rolling_iterations, knot_spacing_ns)
                       for i, (v, c) in enumerate(zip(views, cells))]
    return xyz1[:3].T, projections
