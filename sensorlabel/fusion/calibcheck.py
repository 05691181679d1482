"""Lidar-camera calibration check: an alignment score per frame and camera, and a search for the best correction.

Score (after Levinson and Thrun, "Automatic online calibration of cameras and lasers", RSS 2013):

* **Lidar edges.** Points are ordered along each scan line (by ring, then azimuth). A point whose range is at least
  ``depth_jump_m`` shorter than one of its neighbours (along the scan line, or in the beams above and below) is the
  near side of a depth discontinuity, an object silhouette. Its weight is ``sqrt(min(jump, 5 m))``.
* **Image edges.** ``cv2.Canny`` on the grey image, then a distance transform: ``E(u, v) = exp(-d / sigma_px)`` with
  ``d`` the distance to the nearest image edge (1 on an edge, falling off smoothly, so the score varies smoothly with
  the calibration).
* **Score** = weighted mean of E at the projected lidar edge points, in [0, 1].

Search: a correction ``delta`` (a small rotation applied in the camera frame, ``corrected cam_SE3_ego = delta .
cam_SE3_ego``) on a coarse-to-fine grid: ``grid`` values per axis around the best so far, the step shrinking by
``shrink`` per level. Then, optionally, a 1-D search over the camera time offset at the best rotation. The frame is
flagged when the score with the given calibration is below ``flag_ratio`` times the best score found.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.fusion.projection import CameraView, PoseFn, _call_pose, _project_rows
from sensorlabel.geometry.se3 import SE3


@dataclass(frozen=True)
class CalibCheckConfig:
    """Parameters of the check (see the module docstring).

    Attributes:
        depth_jump_m: smallest range jump that makes a lidar edge.
        sigma_px: fall-off of the image edge map.
        canny_low, canny_high: Canny thresholds.
        min_edge_points: fewer projected edge points than this give no score (NaN).
        search_range_deg: half-width of the first search level per axis.
        grid: grid values per axis and level (odd).
        levels: search levels.
        shrink: step ratio between levels.
        time_offsets_s: camera time offsets tried at the best rotation (empty: no time search).
        flag_ratio: flag when score(given) < flag_ratio * score(best).
    """

    depth_jump_m: float = 0.5
    sigma_px: float = 4.0
    canny_low: int = 50
    canny_high: int = 150
    min_edge_points: int = 30
    search_range_deg: float = 1.0
    grid: int = 5
    levels: int = 4
    shrink: float = 2.5
    time_offsets_s: tuple[float, ...] = ()
    flag_ratio: float = 0.9

    def __post_init__(self) -> None:
        if self.grid < 3 or self.grid % 2 == 0 or self.levels < 1 or self.shrink <= 1 or self.sigma_px <= 0:
            raise ValueError(f"invalid calibration-check config: {self}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["time_offsets_s"] = list(self.time_offsets_s)
        return out


@dataclass(frozen=True)
class CalibCheckResult:
    """Result for one frame and camera.

    Attributes:
        camera: camera name.
        num_edge_points: lidar edge points that project into the image.
        score: alignment score with the given calibration (NaN: too few edge points).
        best_score: the best score found.
        correction_rotvec_rad: (3,) rotation vector of ``delta`` in the camera frame (apply as
            ``delta . cam_SE3_ego``).
        correction_deg: its angle in degrees.
        time_offset_s: best camera time offset (0 without time search).
        flagged: the calibration looks off.
    """

    camera: str
    num_edge_points: int
    score: float
    best_score: float
    correction_rotvec_rad: np.ndarray
    correction_deg: float
    time_offset_s: float
    flagged: bool

    def to_dict(self) -> dict:
        return {"camera": self.camera, "num_edge_points": self.num_edge_points, "score": self.score,
                "best_score": self.best_score, "correction_rotvec_rad": self.correction_rotvec_rad.tolist(),
                "correction_deg": self.correction_deg, "time_offset_s": self.time_offset_s, "flagged": self.flagged}


def lidar_depth_edges(points_lidar: np.ndarray, ring: np.ndarray | None = None, depth_jump_m: float = 0.5,
                      max_gap_rad: float = np.deg2rad(1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Near-side points of depth discontinuities, along the scan lines and across neighbouring beams.

    Neighbours along a scan line find the left and right silhouettes of objects; neighbours in the beams above and
    below (the nearest azimuth in ring +-1) find their tops and bottoms. Both are needed: vertical edges alone do
    not constrain the camera's tilt.

    Args:
        points_lidar: (P,3) points in the lidar frame (the sensor at the origin).
        ring: (P,) beam index, ordered by elevation; None groups points by elevation in 0.2 degree bins.
        depth_jump_m: smallest range jump.
        max_gap_rad: neighbours further apart in azimuth are not compared (a gap in the scan).

    Returns:
        (indices (E,) int64 into the points, weights (E,) float32).
    """
    pts = np.asarray(points_lidar, dtype=np.float64)[:, :3]
    if len(pts) < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    rng = np.linalg.norm(pts, axis=1)
    az = np.arctan2(pts[:, 1], pts[:, 0])
    if ring is None:
        elev = np.arcsin(np.clip(pts[:, 2] / np.maximum(rng, 1e-9), -1, 1))
        ring = np.round(np.rad2deg(elev) / 0.2).astype(np.int64)
    ring = np.asarray(ring).astype(np.int64)
    ring = ring - ring.min()
    order = np.lexsort((az, ring))
    r, a, g = rng[order], az[order], ring[order]
    n = len(r)
    # Neighbour ranges on both sides along the scan line, and in the beams below/above; NaN where there is none.
    same = (g[1:] == g[:-1]) & (np.abs(a[1:] - a[:-1]) < max_gap_rad)
    scan_prev = np.full(n, np.nan)
    scan_next = np.full(n, np.nan)
    scan_prev[1:] = np.where(same, r[:-1], np.nan)
    scan_next[:-1] = np.where(same, r[1:], np.nan)
    key = g * 8.0 + (a + np.pi)  # sorted (ring, azimuth) key; 8 > 2 pi keeps rings apart
    beam = []
    for step in (-1, 1):
        target = (g + step) * 8.0 + (a + np.pi)
        j = np.clip(np.searchsorted(key, target), 1, n - 1)
        j = np.where(np.abs(key[j - 1] - target) < np.abs(key[j] - target), j - 1, j)
        ok = (g[j] == g + step) & (np.abs(a[j] - a) < max_gap_rad)
        beam.append(np.where(ok, r[j], np.nan))
    jump = np.zeros(n)
    with np.errstate(invalid="ignore"):
        for lo, hi in ((scan_prev, scan_next), (beam[0], beam[1])):
            # A jump counts only when it is much larger than the range trend on the other side, so surfaces seen
            # at grazing angles (the road: successive rings 1-5 m apart) are not edges.
            for near_side, other in ((hi, lo), (lo, hi)):
                trend = np.nan_to_num(np.abs(r - other), nan=0.0)
                jump = np.fmax(jump, np.nan_to_num(near_side - r - 2.0 * trend, nan=0.0))
    edge = jump >= depth_jump_m
    return order[edge].astype(np.int64), np.sqrt(np.minimum(jump[edge], 5.0)).astype(np.float32)


def edge_map(image_rgb: np.ndarray, config: CalibCheckConfig = CalibCheckConfig()) -> np.ndarray:
    """(H,W) float32 image-edge proximity ``exp(-d / sigma_px)`` (1 on a Canny edge)."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2GRAY)
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    edges = cv2.Canny(gray, config.canny_low, config.canny_high)
    dist = cv2.distanceTransform(np.where(edges > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    return np.exp(-dist / config.sigma_px).astype(np.float32)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = img.shape
    u = np.clip(u, 0, w - 1.001)
    v = np.clip(v, 0, h - 1.001)
    u0, v0 = u.astype(np.int64), v.astype(np.int64)
    fu, fv = u - u0, v - v0
    flat = img.reshape(-1)
    i = v0 * w + u0
    return ((flat[i] * (1 - fu) + flat[i + 1] * fu) * (1 - fv) + (flat[i + w] * (1 - fu) + flat[i + w + 1] * fu) * fv)


def _scores(view: CameraView, edges: np.ndarray, points_cam: np.ndarray, weights: np.ndarray,
            rotations: np.ndarray) -> np.ndarray:
    """Score of each candidate rotation (B,3,3) applied to (3,K) camera points; points leaving the image count 0."""
    b, k = len(rotations), points_cam.shape[1]
    rotated = (rotations.astype(np.float32) @ points_cam).transpose(1, 0, 2).reshape(3, b * k)
    u, v, ok = _project_rows(view.camera, rotated)
    e = np.where(ok, _bilinear(edges, u, v), 0.0).reshape(b, k)
    return (e * weights).sum(axis=1) / max(float(weights.sum()), 1e-12)


def _grid_rotations(center_rotvec: np.ndarray, step_rad: float, n: int) -> np.ndarray:
    offs = (np.arange(n) - n // 2) * step_rad
    grid = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), axis=-1).reshape(-1, 3) + center_rotvec
    return grid


def check_calibration(
    points_ref: np.ndarray,
    edge_index: np.ndarray,
    edge_weight: np.ndarray,
    view: CameraView,
    image_rgb: np.ndarray,
    world_SE3_ego: PoseFn,
    reference_ns: int,
    config: CalibCheckConfig = CalibCheckConfig(),
) -> CalibCheckResult:
    """Score the alignment of one camera and search for the best correction.

    Args:
        points_ref: (P,3) motion-compensated points in the ego frame at ``reference_ns``
            (:func:`~sensorlabel.fusion.projection.compensate_points`).
        edge_index, edge_weight: lidar depth edges (:func:`lidar_depth_edges`), indices into ``points_ref``.
        view: the camera with its (possibly wrong) calibration and image time.
        image_rgb: (H,W,3) uint8 image of that camera.
        world_SE3_ego: pose function. reference_ns: the time of ``points_ref``.
        config: search parameters.

    Returns:
        A :class:`CalibCheckResult`.
    """
    edges = edge_map(image_rgb, config)
    pts = np.asarray(points_ref, dtype=np.float32)[np.asarray(edge_index, np.int64)]
    weights_all = np.asarray(edge_weight, np.float32)
    ref_pose = _call_pose(world_SE3_ego, np.array([int(reference_ns)]))[0]

    def cam_points(offset_s: float) -> np.ndarray:
        t = int(view.timestamp_ns) + int(round(offset_s * 1e9))
        cam_SE3_ref = view.cam_SE3_ego.compose(_call_pose(world_SE3_ego, np.array([t]))[0].inverse()).compose(ref_pose)
        return cam_SE3_ref.rotation.astype(np.float32) @ pts.T + cam_SE3_ref.translation.astype(np.float32)[:, None]

    # The edge points that project into the image with the given calibration take part in the search.
    p_cam = cam_points(0.0)
    keep = np.flatnonzero(_project_rows(view.camera, p_cam)[2])
    if len(keep) < config.min_edge_points:
        return CalibCheckResult(view.name, len(keep), float("nan"), float("nan"), np.zeros(3), 0.0, 0.0, False)
    weights = weights_all[keep]
    p_cam = p_cam[:, keep]

    identity = np.eye(3)[None]
    score0 = float(_scores(view, edges, p_cam, weights, identity)[0])
    best_rotvec, best = np.zeros(3), score0
    step = np.deg2rad(config.search_range_deg) / (config.grid // 2)
    for _ in range(config.levels):
        cand = _grid_rotations(best_rotvec, step, config.grid)
        s = _scores(view, edges, p_cam, weights, Rotation.from_rotvec(cand).as_matrix())
        i = int(np.argmax(s))
        if s[i] > best:
            best, best_rotvec = float(s[i]), cand[i]
        step /= config.shrink
    best_dt = 0.0
    if config.time_offsets_s:
        rot = Rotation.from_rotvec(best_rotvec).as_matrix()[None]
        for dt in config.time_offsets_s:
            s = float(_scores(view, edges, cam_points(dt)[:, keep], weights, rot)[0])
            if s > best:
                best, best_dt = s, float(dt)
    flagged = bool(score0 < config.flag_ratio * best)
    return CalibCheckResult(view.name, len(keep), score0, best, best_rotvec,
                            float(np.rad2deg(np.linalg.norm(best_rotvec))), best_dt, flagged)


def corrected_view(view: CameraView, result: CalibCheckResult) -> CameraView:
    """The camera view with the correction applied (``delta . cam_SE3_ego``, time shifted by the offset)."""
    delta = SE3(Rotation.from_rotvec(result.correction_rotvec_rad).as_matrix(), np.zeros(3))
    return CameraView(view.name, view.camera, delta.compose(view.cam_SE3_ego),
                      int(view.timestamp_ns) + int(round(result.time_offset_s * 1e9)), view.readout_s)
