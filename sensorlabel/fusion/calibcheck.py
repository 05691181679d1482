"""Lidar-camera calibration check: an alignment score per frame and camera, and a search for the best correction.

After Levinson and Thrun, "Automatic Online Calibration of Cameras and Lasers", RSS 2013: depth discontinuities
in the lidar sweep should land on edges in the image, and the rotation (and time offset) that best lines them up
over several frames is the calibration correction.

* **Lidar edges** (:func:`lidar_edge_points`). Points are ordered along each scan line (by ring, then azimuth). Where
  a point is at least ``depth_jump_m`` nearer than its neighbour along the scan line or in the beam above or below
  (and the jump is much larger than the range trend on the other side, so that the road seen at grazing angles is
  not an edge), the pair straddles an object silhouette. The silhouette lies somewhere between the two rays, so the
  edge point is put on the *bisecting ray* at the near range rather than on the near return: a return is on average
  half a beam spacing (0.2 degree for 64 beams over 28 degrees) inside the silhouette, and the top edges of walls and
  buildings would otherwise pull the pitch by that much. Weight ``sqrt(min(jump, 5 m))``.
* **Image edges** (:func:`edge_distance`). ``cv2.Canny`` on the grey image, then ``cv2.distanceTransform``: the map
  ``exp(-d / sigma_px)`` is 1 on an edge and falls off smoothly, so the score varies smoothly with the calibration.
* **Score** = weighted mean of that map at the projected lidar edges, over all frames of the check, in [0, 1].

Search (:func:`check_calibration`): a small rotation ``delta`` applied in the camera frame (``corrected cam_SE3_ego
= delta . cam_SE3_ego``) on coarse-to-fine grids over the three axes, each level centred on the best so far with a
sharper edge map (``sigma_px`` per level), then a camera time offset on a line at the best rotation, then the last
rotation level again at the best offset. The calibration is flagged when the best score beats the score with the
given calibration by ``flag_min_gain`` (relative) with a correction of at least ``flag_min_deg``; each frame is
flagged the same way on its own score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.fusion.projection import CameraView, PoseFn, _call_pose, _project_rows, compensate_points
from sensorlabel.geometry.camera import CameraModel
from sensorlabel.geometry.se3 import SE3


@dataclass(frozen=True)
class CalibCheckConfig:
    """Parameters of the check (see the module docstring).

    Attributes:
        depth_jump_m: smallest range jump that makes a lidar edge.
        canny_low, canny_high: Canny thresholds.
        min_edge_points: fewer projected edge points than this (over all frames) give no result (NaN score, not
            flagged): with a few dozen edges (a camera facing open fields) the score has false optima.
        levels: search levels, each ``(half_range_deg, step_deg, sigma_px)``; the first is centred on no correction,
            the next ones on the best so far.
        time_offsets_s: camera time offsets tried at the best rotation (empty: no time search).
        flag_min_gain: relative score gain of the best correction over the given calibration that flags it.
        flag_min_deg: smallest correction angle that flags the calibration.
    """

    depth_jump_m: float = 0.5
    canny_low: int = 50
    canny_high: int = 150
    min_edge_points: int = 200
    levels: tuple[tuple[float, float, float], ...] = ((1.5, 0.25, 6.0), (0.3, 0.1, 3.0), (0.15, 0.05, 1.5))
    time_offsets_s: tuple[float, ...] = (-0.02, -0.015, -0.01, -0.005, 0.0, 0.005, 0.01, 0.015, 0.02)
    flag_min_gain: float = 0.03
    flag_min_deg: float = 0.2

    def __post_init__(self) -> None:
        if not self.levels or any(len(lv) != 3 or lv[0] < 0 or lv[1] <= 0 or lv[2] <= 0 for lv in self.levels):
            raise ValueError(f"invalid calibration-check levels: {self.levels}")
        if self.depth_jump_m <= 0 or self.min_edge_points < 1 or self.flag_min_gain < 0 or self.flag_min_deg < 0:
            raise ValueError(f"invalid calibration-check config: {self}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["levels"] = [list(lv) for lv in self.levels]
        out["time_offsets_s"] = list(self.time_offsets_s)
        return out


@dataclass(frozen=True)
class LidarEdges:
    """Depth-edge points of one sweep.

    Attributes:
        points_lidar: (E,3) float64 edge points in the lidar frame (on the bisecting ray, at the near range).
        point_index: (E,) int64 index of the near return of each edge in the sweep (for its time and for masks).
        weight: (E,) float32 edge weights.
    """

    points_lidar: np.ndarray
    point_index: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.point_index)

    def select(self, keep: np.ndarray) -> LidarEdges:
        """A subset, by (E,) bool mask or index array."""
        return LidarEdges(self.points_lidar[keep], self.point_index[keep], self.weight[keep])


@dataclass(frozen=True)
class CalibFrame:
    """The evidence of one frame for one camera.

    Attributes:
        edges_ref: (E,3) float32 lidar edge points, motion-compensated into the ego frame at ``reference_ns``.
        weight: (E,) float32 edge weights.
        distance_px: (H,W) float32 distance of every pixel to the nearest image edge (:func:`edge_distance`).
        reference_ns: the time of the ``edges_ref`` frame.
        timestamp_ns: the camera image's exposure time.
    """

    edges_ref: np.ndarray
    weight: np.ndarray
    distance_px: np.ndarray
    reference_ns: int
    timestamp_ns: int


@dataclass(frozen=True)
class CalibCheckResult:
    """Result for one camera over the frames of a check.

    Attributes:
        camera: camera name.
        num_edge_points: lidar edge points that project into the images (all frames).
        score: alignment score with the given calibration (NaN: too few edge points).
        best_score: the best score found.
        correction_rotvec_rad: (3,) rotation vector of ``delta`` in the camera frame (apply as
            ``delta . cam_SE3_ego``).
        correction_deg: its angle in degrees.
        time_offset_s: best camera time offset (0 without time search).
        flagged: the calibration looks off.
        frame_scores: (F,) score of each frame with the given calibration.
        frame_best_scores: (F,) score of each frame with the best correction.
        frame_flagged: (F,) bool, the frame's own score flags it.
    """

    camera: str
    num_edge_points: int
    score: float
    best_score: float
    correction_rotvec_rad: np.ndarray
    correction_deg: float
    time_offset_s: float
    flagged: bool
    frame_scores: np.ndarray
    frame_best_scores: np.ndarray
    frame_flagged: np.ndarray

    def to_dict(self) -> dict:
        return {"camera": self.camera, "num_edge_points": self.num_edge_points, "score": self.score,
                "best_score": self.best_score, "correction_rotvec_rad": self.correction_rotvec_rad.tolist(),
                "correction_deg": self.correction_deg, "time_offset_s": self.time_offset_s, "flagged": self.flagged,
                "frame_scores": self.frame_scores.tolist(), "frame_best_scores": self.frame_best_scores.tolist(),
                "frame_flagged": self.frame_flagged.tolist()}


def lidar_edge_points(points_lidar: np.ndarray, ring: np.ndarray | None = None, depth_jump_m: float = 0.5,
                      max_gap_rad: float = np.deg2rad(1.0)) -> LidarEdges:
    """Depth-edge points of a sweep, along the scan lines and across neighbouring beams (see the module docstring).

    Neighbours along a scan line give the left and right silhouettes of objects; neighbours in the beams above and
    below (the nearest azimuth in ring +-1) give their tops and bottoms. Both are needed: vertical edges alone do
    not constrain the camera's tilt.

    Args:
        points_lidar: (P,3) points in the lidar frame (the sensor at the origin); extra columns are ignored.
        ring: (P,) beam index, ordered by elevation; None groups points by elevation in 0.2 degree bins.
        depth_jump_m: smallest range jump.
        max_gap_rad: neighbours further apart in azimuth are not compared (a gap in the scan).

    Returns:
        The :class:`LidarEdges` (a point can make several edges, one per neighbour it jumps to).

    Raises:
        ValueError: points_lidar is not (P,3) or ring is not (P,).
    """
    pts = np.asarray(points_lidar, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points_lidar: expected (P,3), got {pts.shape}")
    pts = pts[:, :3]
    empty = LidarEdges(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if len(pts) < 3:
        return empty
    rng = np.linalg.norm(pts, axis=1)
    az = np.arctan2(pts[:, 1], pts[:, 0])
    if ring is None:
        elev = np.arcsin(np.clip(pts[:, 2] / np.maximum(rng, 1e-9), -1, 1))
        ring = np.round(np.rad2deg(elev) / 0.2).astype(np.int64)
    ring = np.asarray(ring).astype(np.int64).reshape(-1)
    if ring.shape != (len(pts),):
        raise ValueError(f"ring: expected ({len(pts)},), got {ring.shape}")
    ring = ring - ring.min()
    order = np.lexsort((az, ring))
    r, a, g = rng[order], az[order], ring[order]
    n = len(r)
    idx = np.arange(n)
    # Neighbour (index into the sorted order, valid) along the scan line on both sides and in the beams below/above.
    same = np.zeros(n + 1, bool)
    same[1:-1] = (g[1:] == g[:-1]) & (np.abs(a[1:] - a[:-1]) < max_gap_rad)
    scan_prev, scan_next = (np.maximum(idx - 1, 0), same[:-1]), (np.minimum(idx + 1, n - 1), same[1:])
    key = g * 8.0 + (a + np.pi)  # the sorted (ring, azimuth) key; 8 > 2 pi keeps rings apart
    beams = []
    for step in (-1, 1):
        target = (g + step) * 8.0 + (a + np.pi)
        j = np.clip(np.searchsorted(key, target), 1, n - 1)
        j = np.where(np.abs(key[j - 1] - target) < np.abs(key[j] - target), j - 1, j)
        beams.append((j, (g[j] == g + step) & (np.abs(a[j] - a) < max_gap_rad)))
    near, far, jumps = [], [], []
    for (nb, nb_ok), (other, other_ok) in ((scan_prev, scan_next), (scan_next, scan_prev),
                                           (beams[0], beams[1]), (beams[1], beams[0])):
        # A jump counts only when it is much larger than the range trend on the other side, so surfaces seen at
        # grazing angles (the road: successive rings 1-5 m apart) are not edges.
        trend = np.where(other_ok, np.abs(r - r[other]), 0.0)
        jump = r[nb] - r - 2.0 * trend
        hit = nb_ok & (jump >= depth_jump_m)
        near.append(idx[hit])
        far.append(nb[hit])
        jumps.append(jump[hit])
    near, far, jump = np.concatenate(near), np.concatenate(far), np.concatenate(jumps)
    if len(near) == 0:
        return empty
    i_near, i_far = order[near], order[far]
    bisector = pts[i_near] / rng[i_near, None] + pts[i_far] / rng[i_far, None]
    bisector /= np.linalg.norm(bisector, axis=1, keepdims=True)
    return LidarEdges(bisector * rng[i_near, None], i_near.astype(np.int64),
                      np.sqrt(np.minimum(jump, 5.0)).astype(np.float32))


def edge_distance(image_rgb: np.ndarray, config: CalibCheckConfig = CalibCheckConfig()) -> np.ndarray:
    """(H,W) float32 distance in pixels from every pixel to the nearest Canny edge of the image.

    Raises:
        ValueError: the image is not (H,W,3) uint8.
    """
    import cv2

    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image_rgb: expected (H,W,3) uint8, got {img.shape} {img.dtype}")
    gray = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
    gray = cv2.GaussianBlur(gray, (3, 3), 0)
    edges = cv2.Canny(gray, config.canny_low, config.canny_high)
    return cv2.distanceTransform(np.where(edges > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)


def edge_map(image_rgb: np.ndarray, config: CalibCheckConfig = CalibCheckConfig(), sigma_px: float = 2.0) -> np.ndarray:
    """(H,W) float32 image-edge proximity ``exp(-d / sigma_px)`` (1 on a Canny edge)."""
    return np.exp(-edge_distance(image_rgb, config) / np.float32(sigma_px)).astype(np.float32)


def edge_points_ref(
    points_lidar: np.ndarray,
    point_times_ns: np.ndarray | int,
    ego_SE3_lidar: SE3,
    world_SE3_ego: PoseFn,
    reference_ns: int,
    *,
    ring: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    config: CalibCheckConfig = CalibCheckConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """The lidar half of a frame's evidence, the same for every camera: the sweep's depth-edge points,
    motion-compensated into the ego frame at ``reference_ns``.

    Args:
        points_lidar: (P,3) sweep in the lidar frame. point_times_ns: (P,) int64 or one int.
        ego_SE3_lidar: lidar mounting. world_SE3_ego: pose function. reference_ns: the sweep time.
        ring: (P,) beam index (see :func:`lidar_edge_points`).
        exclude: optional (P,) bool of returns to leave out, e.g. points on moving objects (they move between the
            lidar and the camera time).
        config: edge parameters.

    Returns:
        edges_ref (E,3) float32 and their weights (E,).
    """
    edges = lidar_edge_points(points_lidar, ring, config.depth_jump_m)
    if exclude is not None and len(edges):
        edges = edges.select(~np.asarray(exclude, bool)[edges.point_index])
    times = np.asarray(point_times_ns, dtype=np.int64)
    edge_times = times if times.ndim == 0 else times[edges.point_index]
    edges_ref = compensate_points(edges.points_lidar, edge_times, ego_SE3_lidar, world_SE3_ego, int(reference_ns))
    return np.ascontiguousarray(edges_ref, dtype=np.float32), edges.weight


def calibration_frame(
    points_lidar: np.ndarray,
    point_times_ns: np.ndarray | int,
    ego_SE3_lidar: SE3,
    world_SE3_ego: PoseFn,
    reference_ns: int,
    image_rgb: np.ndarray,
    image_timestamp_ns: int,
    *,
    ring: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    config: CalibCheckConfig = CalibCheckConfig(),
) -> CalibFrame:
    """Gather one frame's evidence for the check of one camera: :func:`edge_points_ref` (see its arguments) and the
    image's edge distance (``image_rgb`` (H,W,3) uint8, exposed at ``image_timestamp_ns``). With several cameras,
    compute :func:`edge_points_ref` once and build each camera's :class:`CalibFrame` from it.

    Returns:
        A :class:`CalibFrame`.
    """
    edges_ref, weight = edge_points_ref(points_lidar, point_times_ns, ego_SE3_lidar, world_SE3_ego, reference_ns,
                                        ring=ring, exclude=exclude, config=config)
    return CalibFrame(edges_ref, weight, edge_distance(image_rgb, config), int(reference_ns),
                      int(image_timestamp_ns))


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = img.shape
    u = np.clip(u, 0, w - 1.001)
    v = np.clip(v, 0, h - 1.001)
    u0, v0 = u.astype(np.int64), v.astype(np.int64)
    fu, fv = u - u0, v - v0
    flat = img.reshape(-1)
    i = v0 * w + u0
    return ((flat[i] * (1 - fu) + flat[i + 1] * fu) * (1 - fv) + (flat[i + w] * (1 - fu) + flat[i + w + 1] * fu) * fv)


class _Evidence:
    """The frames of a check in the camera frame (at a given time offset), for fast scoring of many rotations."""

    def __init__(self, frames: list[CalibFrame], camera: CameraModel, cam_SE3_ego: SE3, world_SE3_ego: PoseFn,
                 offset_s: float, keep: list[np.ndarray] | None = None, maps: dict | None = None):
        """``keep`` and ``maps``: those of the evidence at offset 0 (the same edges, the same images)."""
        self.camera = camera
        self.maps: dict[float, list[np.ndarray]] = {} if maps is None else maps  # sigma -> per-frame score maps
        self.points_cam, self.weight, self.frame_of = [], [], []
        self.keep = []
        for f, fr in enumerate(frames):
            t = int(fr.timestamp_ns) + int(round(offset_s * 1e9))
            poses = _call_pose(world_SE3_ego, np.array([t, int(fr.reference_ns)]))
            cam_SE3_ref = cam_SE3_ego.compose(poses[0].inverse()).compose(poses[1])
            p = cam_SE3_ref.rotation.astype(np.float32) @ fr.edges_ref.T \
                + cam_SE3_ref.translation.astype(np.float32)[:, None]
            # The edges that project with the given calibration take part; a fixed set keeps scores comparable.
            k = np.flatnonzero(_project_rows(camera, p)[2]) if keep is None else keep[f]
            self.keep.append(k)
            self.points_cam.append(p[:, k])
            self.weight.append(fr.weight[k])
            self.frame_of.append(np.full(len(k), f))
        self.points_cam = np.concatenate(self.points_cam, axis=1) if frames else np.zeros((3, 0), np.float32)
        self.weight = np.concatenate(self.weight) if frames else np.zeros(0, np.float32)
        self.frame_of = np.concatenate(self.frame_of) if frames else np.zeros(0, np.int64)
        self.distances = [fr.distance_px for fr in frames]
        self.frame_weight = np.bincount(self.frame_of, self.weight, minlength=len(frames))  # (F,)

    def scores(self, rotvecs: np.ndarray, sigma_px: float, per_frame: bool = False) -> np.ndarray:
        """(B,) weighted mean edge proximity for each candidate rotation vector (B,3); with ``per_frame`` (B,F)."""
        maps = self.maps.get(sigma_px)
        if maps is None:
            maps = self.maps[sigma_px] = [np.exp(-d / np.float32(sigma_px)).astype(np.float32) for d in self.distances]
        rotations = Rotation.from_rotvec(np.asarray(rotvecs, np.float64).reshape(-1, 3)).as_matrix().astype(np.float32)
        num_frames = len(maps)
        out = np.zeros((len(rotations), num_frames if per_frame else 1))
        k = self.points_cam.shape[1]
        chunk = max(1, 400_000 // max(k, 1))
        for c0 in range(0, len(rotations), chunk):
            rot = rotations[c0:c0 + chunk]
            b = len(rot)
            rotated = (rot @ self.points_cam).transpose(1, 0, 2).reshape(3, b * k)
            u, v, ok = _project_rows(self.camera, rotated)
            e = np.zeros(b * k, np.float32)
            frame_of = np.tile(self.frame_of, b)
            for f in range(num_frames):
                sel = np.flatnonzero(ok & (frame_of == f))
                e[sel] = _bilinear(maps[f], u[sel], v[sel])
            e = (e.reshape(b, k) * self.weight)
            if per_frame:
                for f in range(num_frames):
                    out[c0:c0 + b, f] = e[:, self.frame_of == f].sum(axis=1) / max(float(self.frame_weight[f]), 1e-12)
            else:
                out[c0:c0 + b, 0] = e.sum(axis=1) / max(float(self.weight.sum()), 1e-12)
        return out if per_frame else out[:, 0]


def _grid(center: np.ndarray, half_range_deg: float, step_deg: float) -> np.ndarray:
    n = int(round(half_range_deg / step_deg))
    offs = np.deg2rad(np.arange(-n, n + 1) * step_deg)
    return np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), axis=-1).reshape(-1, 3) + center


def check_calibration(
    name: str,
    frames: list[CalibFrame],
    camera: CameraModel,
    cam_SE3_ego: SE3,
    world_SE3_ego: PoseFn,
    config: CalibCheckConfig = CalibCheckConfig(),
) -> CalibCheckResult:
    """Score the alignment of one camera over several frames and search for the best correction.

    Args:
        name: camera name (for the result).
        frames: the evidence of each frame (:func:`calibration_frame`), all for this camera.
        camera: the camera model.
        cam_SE3_ego: the calibration to check (ego -> camera).
        world_SE3_ego: pose function.
        config: search parameters.

    Returns:
        A :class:`CalibCheckResult`.
    """
    evidence = _Evidence(frames, camera, cam_SE3_ego, world_SE3_ego, 0.0)
    num_frames = len(frames)
    count = evidence.points_cam.shape[1]
    if count < config.min_edge_points:
        nan = np.full(num_frames, np.nan)
        return CalibCheckResult(name, count, float("nan"), float("nan"), np.zeros(3), 0.0, 0.0, False, nan, nan,
                                np.zeros(num_frames, bool))
    best = np.zeros(3)
    for half, step, sigma in config.levels:
        cand = _grid(best, half, step)
        best = cand[int(np.argmax(evidence.scores(cand, sigma)))]
    half, step, sigma = config.levels[-1]
    best_offset, best_evidence = 0.0, evidence
    if config.time_offsets_s:
        trials = []
        for dt in config.time_offsets_s:
            ev = evidence if dt == 0 else _Evidence(frames, camera, cam_SE3_ego, world_SE3_ego, dt, evidence.keep,
                                                    evidence.maps)
            trials.append((float(ev.scores(best[None], sigma)[0]), float(dt), ev))
        score, best_offset, best_evidence = max(trials, key=lambda t: t[0])
        if best_offset != 0.0:
            cand = _grid(best, half, step)
            best = cand[int(np.argmax(best_evidence.scores(cand, sigma)))]
    given = evidence.scores(np.zeros((1, 3)), sigma, per_frame=True)[0]
    found = best_evidence.scores(best[None], sigma, per_frame=True)[0]
    # The window scores are the frames' scores weighted by their edge weights (both evidences keep the same edges).
    total_weight = max(float(evidence.frame_weight.sum()), 1e-12)
    score0 = float(given @ evidence.frame_weight) / total_weight
    best_score = float(found @ evidence.frame_weight) / total_weight
    correction_deg = float(np.rad2deg(np.linalg.norm(best)))
    big = correction_deg >= config.flag_min_deg or abs(best_offset) > 0
    flagged = bool(big and best_score > score0 * (1 + config.flag_min_gain))
    frame_flagged = big & (found > given * (1 + config.flag_min_gain))
    return CalibCheckResult(name, count, score0, best_score, best, correction_deg, best_offset, flagged, given,
                            found, frame_flagged)


def corrected_view(view: CameraView, result: CalibCheckResult) -> CameraView:
    """The camera view with the correction applied (``delta . cam_SE3_ego``, time shifted by the offset)."""
    delta = SE3(Rotation.from_rotvec(result.correction_rotvec_rad).as_matrix(), np.zeros(3))
    return CameraView(view.name, view.camera, delta.compose(view.cam_SE3_ego),
                      int(view.timestamp_ns) + int(round(result.time_offset_s * 1e9)), view.readout_s)
