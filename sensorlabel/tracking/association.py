"""Association of predicted tracks with detections: affinities per class, gating and the Hungarian method.

Boxes here are ``box7`` rows ``(x, y, z, yaw, l, w, h)``: geometric centre (m) in a gravity-aligned frame with z up,
heading about +z (rad), size (m), the same layout as the Kalman measurement in :mod:`sensorlabel.tracking.motion`.

Affinity metrics (larger is better):

* ``iou_3d``: volume IoU of gravity-aligned boxes, in [0, 1].
* ``giou_3d``: generalised IoU (Rezatofighi et al., CVPR 2019) in 3D as AB3DMOT (Weng et al., IROS 2020) uses it:
  ``IoU - (C - U) / C`` with ``C`` the bird's-eye convex hull of both boxes times their joint vertical extent, in
  [-1, 1]. Unlike IoU it still ranks boxes that do not overlap, which matters for small, fast or badly predicted
  objects.
* ``giou_bev``: the same in the bird's-eye plane.
* ``center_distance``: minus the 3D distance between centres, in metres (pedestrians: their boxes are small and
  their IoU collapses with a few decimetres of error).

A pair is admissible when both have the same class and the affinity reaches the class threshold (for
``center_distance`` the threshold is a maximum distance in metres). Only pairs whose centres are within the sum of
the boxes' half-diagonals plus ``gate_margin_m`` are evaluated at all, so the polygon work grows with the number of
nearby pairs rather than tracks x detections. The assignment maximises the summed affinity over admissible pairs
with ``scipy.optimize.linear_sum_assignment``.

The bird's-eye intersection and convex-hull areas come from shapely's vectorised routines (a few C calls for all
pairs); a frame has few candidate pairs, so the cost is per call, and this is ~2x faster than the pure-numpy
polygon clipping of :mod:`sensorlabel.geometry.iou` at these sizes. The result equals ``iou_3d`` of that module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


#: Affinity metrics understood by :func:`associate`.
METRICS = ("iou_3d", "giou_3d", "giou_bev", "center_distance")
_METRIC_CODE = {name: i for i, name in enumerate(METRICS)}
_EPS = 1e-9

_CORNER_SIGNS_BEV = np.array([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]])


def metric_code(name: str) -> int:
    """Index of a metric name in :data:`METRICS`.

    Raises:
        ValueError: for an unknown metric.
    """
    try:
        return _METRIC_CODE[name]
    except KeyError:
        raise ValueError(f"unknown association metric {name!r}; expected one of {list(METRICS)}") from None


def bev_corners(box7: np.ndarray) -> np.ndarray:
    """(N, 4, 2) bird's-eye corners, counter-clockwise seen from +z (the order of :class:`Boxes.bev_corners`)."""
    c, s = np.cos(box7[:, 3]), np.sin(box7[:, 3])
    local = _CORNER_SIGNS_BEV[None] * (box7[:, None, 4:6] / 2.0)  # (N, 4, 2)
    x = c[:, None] * local[..., 0] - s[:, None] * local[..., 1] + box7[:, None, 0]
    y = s[:, None] * local[..., 0] + c[:, None] * local[..., 1] + box7[:, None, 1]
    return np.stack([x, y], axis=-1)


def _vertical_overlap_and_span(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top_a, bot_a = a[:, 2] + a[:, 6] / 2, a[:, 2] - a[:, 6] / 2
    top_b, bot_b = b[:, 2] + b[:, 6] / 2, b[:, 2] - b[:, 6] / 2
    overlap = np.maximum(np.minimum(top_a, top_b) - np.maximum(bot_a, bot_b), 0.0)
    span = np.maximum(top_a, top_b) - np.minimum(bot_a, bot_b)
    return overlap, span


def paired_affinity(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Affinity of a[i] with b[i] for one metric.

    Args:
        a, b: (M, 7) box7 rows in the same frame.
        metric: one of :data:`METRICS`.

    Returns:
        (M,) affinities (IoU/GIoU in [-1, 1], or minus the centre distance in metres).

    Raises:
        ValueError: for an unknown metric.
    """
    code = metric_code(metric)
    return _paired_affinity_codes(a, b, np.full(a.shape[0], code))


def _paired_affinity_codes(a: np.ndarray, b: np.ndarray, codes: np.ndarray) -> np.ndarray:
    out = -np.linalg.norm(a[:, :3] - b[:, :3], axis=1)
    polygonal = codes != _METRIC_CODE["center_distance"]
    if not polygonal.any():
        return out
    import shapely

    pa, pb, cp = a[polygonal], b[polygonal], codes[polygonal]
    m = pa.shape[0]
    corners = bev_corners(np.concatenate([pa, pb]))
    ca, cb = corners[:m], corners[m:]
    # shapely's vectorised C routines: a handful of calls for all pairs, faster than dozens of small numpy calls.
    inter_bev = shapely.area(shapely.intersection(shapely.polygons(ca), shapely.polygons(cb)))
    area_a, area_b = pa[:, 4] * pa[:, 5], pb[:, 4] * pb[:, 5]
    overlap_z, span_z = _vertical_overlap_and_span(pa, pb)
    is_bev = cp == _METRIC_CODE["giou_bev"]
    inter = np.where(is_bev, inter_bev, inter_bev * overlap_z)
    union = np.where(is_bev, area_a + area_b, area_a * pa[:, 6] + area_b * pb[:, 6]) - inter
    value = inter / np.maximum(union, _EPS)
    giou = cp != _METRIC_CODE["iou_3d"]
    if giou.any():
        hull = shapely.area(shapely.convex_hull(shapely.multipoints(np.concatenate([ca[giou], cb[giou]], axis=1))))
        enclosing = np.where(is_bev[giou], hull, hull * span_z[giou])
        value[giou] -= (enclosing - union[giou]) / np.maximum(enclosing, _EPS)
    out[polygonal] = value
    return out


@dataclass(frozen=True)
class Association:
    """Result of one association step.

    Attributes:
        matches: (K, 2) int64 pairs (track row, detection row).
        affinity: (K,) affinity of each match.
        unmatched_tracks: (T - K,) track rows.
        unmatched_detections: (D - K,) detection rows.
    """

    matches: np.ndarray
    affinity: np.ndarray
    unmatched_tracks: np.ndarray
    unmatched_detections: np.ndarray


def associate(
    tracks_box7: np.ndarray,
    track_class: np.ndarray,
    detections_box7: np.ndarray,
    detection_class: np.ndarray,
    class_metric: np.ndarray,
    class_threshold: np.ndarray,
    gate_margin_m: float = 3.0,
    track_stream: np.ndarray | None = None,
    detection_stream: np.ndarray | None = None,
) -> Association:
    """Match tracks to detections of the same class, maximising the summed affinity under per-class gates.

    Args:
        tracks_box7: (T, 7) predicted track boxes. track_class: (T,) int class indices.
        detections_box7: (D, 7) detections in the same frame. detection_class: (D,) int class indices.
        class_metric: (C,) metric code per class (index into :data:`METRICS`, see :func:`metric_code`).
        class_threshold: (C,) per class: the minimum IoU/GIoU, or the maximum centre distance in metres.
        gate_margin_m: pairs whose centres are farther apart than the sum of their half-diagonals plus this margin
            are never matched (and never evaluated).
        track_stream, detection_stream: optional (T,) and (D,) int stream ids: independent sequences tracked in
            one batch; pairs from different streams are never matched.

    Returns:
        An :class:`Association`.
    """
    t, d = tracks_box7.shape[0], detections_box7.shape[0]
    if t == 0 or d == 0:
        return Association(np.zeros((0, 2), np.int64), np.zeros(0), np.arange(t), np.arange(d))
    diff = tracks_box7[:, None, :3] - detections_box7[None, :, :3]
    centre_dist2 = np.einsum("tdk,tdk->td", diff, diff)
    half_diag_t = 0.5 * np.sqrt(np.einsum("tk,tk->t", tracks_box7[:, 4:7], tracks_box7[:, 4:7]))
    half_diag_d = 0.5 * np.sqrt(np.einsum("dk,dk->d", detections_box7[:, 4:7], detections_box7[:, 4:7]))
    reach = half_diag_t[:, None] + half_diag_d[None, :] + gate_margin_m
    candidate = (track_class[:, None] == detection_class[None, :]) & (centre_dist2 <= reach * reach)
    if track_stream is not None and detection_stream is not None:
        candidate &= track_stream[:, None] == detection_stream[None, :]
    rows, cols = np.nonzero(candidate)
    codes = class_metric[track_class[rows]]
    affinity = _paired_affinity_codes(tracks_box7[rows], detections_box7[cols], codes)
    threshold = class_threshold[track_class[rows]]
    is_distance = codes == _METRIC_CODE["center_distance"]
    admissible = np.where(is_distance, -affinity <= threshold, affinity >= threshold)
    rows, cols, affinity = rows[admissible], cols[admissible], affinity[admissible]
    # Solve only over the tracks and detections that have an admissible pair. Forbidden entries get a cost larger
    # than any sum of admissible ones (so the assignment maximises the number of matches, then the affinity)
    # but small enough to keep the affinities' precision.
    has_r = np.zeros(t, dtype=bool)
    has_r[rows] = True
    has_c = np.zeros(d, dtype=bool)
    has_c[cols] = True
    used_r, used_c = np.flatnonzero(has_r), np.flatnonzero(has_c)
    sub_r, sub_c = np.cumsum(has_r) - 1, np.cumsum(has_c) - 1
    span = float(np.abs(affinity).max(initial=0.0)) + 1.0
    forbidden = 2.0 * span * (min(used_r.size, used_c.size) + 1)
    cost = np.full((used_r.size, used_c.size), forbidden)
    cost[sub_r[rows], sub_c[cols]] = -affinity
    sr, sc = linear_sum_assignment(cost)
    ok = cost[sr, sc] < forbidden
    sr, sc = sr[ok], sc[ok]
    match_r, match_c = used_r[sr], used_c[sc]
    matches = np.stack([match_r, match_c], axis=1).astype(np.int64)
    track_free = np.ones(t, dtype=bool)
    track_free[match_r] = False
    det_free = np.ones(d, dtype=bool)
    det_free[match_c] = False
    return Association(
        matches=matches,
        affinity=-cost[sr, sc],
        unmatched_tracks=np.flatnonzero(track_free),
        unmatched_detections=np.flatnonzero(det_free),
    )
