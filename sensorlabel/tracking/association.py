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

The IoU/GIoU values come from :func:`sensorlabel.geometry.iou.iou_paired_yaw` (vectorised numpy on raw arrays, no
:class:`~sensorlabel.geometry.boxes.Boxes` per frame); the centre distance is the gate's own distance. A frame has a
handful of candidate pairs, so the cost is the number of numpy calls, not their size: one geometry call per metric
present in the frame, and nothing at all when there are no tracks, no detections or no candidate pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from sensorlabel.geometry.iou import iou_paired_yaw

#: Affinity metrics understood by :func:`associate`.
METRICS = ("iou_3d", "giou_3d", "giou_bev", "center_distance")
_METRIC_CODE = {name: i for i, name in enumerate(METRICS)}
_CENTER_DISTANCE = _METRIC_CODE["center_distance"]
#: (bird_eye, generalized) of the polygonal metrics, by code.
_POLYGONAL = {_METRIC_CODE["iou_3d"]: (False, False), _METRIC_CODE["giou_3d"]: (False, True),
              _METRIC_CODE["giou_bev"]: (True, True)}


def metric_code(name: str) -> int:
    """Index of a metric name in :data:`METRICS`.

    Raises:
        ValueError: for an unknown metric.
    """
    try:
        return _METRIC_CODE[name]
    except KeyError:
        raise ValueError(f"unknown association metric {name!r}; expected one of {list(METRICS)}") from None


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
    if code == _CENTER_DISTANCE:
        return -np.linalg.norm(a[:, :3] - b[:, :3], axis=1)
    return _polygonal_affinity(a, b, code)


def _polygonal_affinity(a: np.ndarray, b: np.ndarray, code: int) -> np.ndarray:
    bird_eye, generalized = _POLYGONAL[code]
    return iou_paired_yaw(a[:, :3], a[:, 4:7], a[:, 3], b[:, :3], b[:, 4:7], b[:, 3], bird_eye=bird_eye,
                          generalized=generalized)


@dataclass(frozen=True)
class Association:
    """Result of one association step.

    Attributes:
        matches: (K, 2) int64 pairs (track row, detection row), sorted by track row (callers rely on it:
            :meth:`sensorlabel.tracking.tracker.Tracker._match` splits them by group with ``searchsorted``).
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
        return _no_match(t, d)
    diff = tracks_box7[:, None, :3] - detections_box7[None, :, :3]
    centre_dist2 = (diff * diff).sum(axis=2)
    half_diag_t = 0.5 * np.sqrt((tracks_box7[:, 4:7] ** 2).sum(axis=1))
    half_diag_d = 0.5 * np.sqrt((detections_box7[:, 4:7] ** 2).sum(axis=1))
    reach = half_diag_t[:, None] + (half_diag_d + gate_margin_m)[None, :]
    candidate = (track_class[:, None] == detection_class[None, :]) & (centre_dist2 <= reach * reach)
    if track_stream is not None and detection_stream is not None:
        candidate &= track_stream[:, None] == detection_stream[None, :]
    rows, cols = np.nonzero(candidate)
    if rows.size == 0:
        return _no_match(t, d)
    # take() and boolean masks rather than fancy indexing: at a handful of pairs the call overhead is the cost.
    pair_class = track_class.take(rows)
    codes = class_metric.take(pair_class)
    threshold = class_threshold.take(pair_class)
    first = int(codes[0])
    if (codes == first).all():  # one metric in this frame (the usual case): no per-metric selection
        if first == _CENTER_DISTANCE:
            affinity = -np.sqrt(centre_dist2[candidate])
            admissible = -affinity <= threshold
        else:
            affinity = _polygonal_affinity(tracks_box7.take(rows, axis=0), detections_box7.take(cols, axis=0), first)
            admissible = affinity >= threshold
    else:
        affinity = -np.sqrt(centre_dist2[candidate])
        for code in np.unique(codes).tolist():
            if code != _CENTER_DISTANCE:
                sel = codes == code
                affinity[sel] = _polygonal_affinity(tracks_box7.take(rows[sel], axis=0),
                                                    detections_box7.take(cols[sel], axis=0), code)
        admissible = np.where(codes == _CENTER_DISTANCE, -affinity <= threshold, affinity >= threshold)
    if not admissible.all():
        rows, cols, affinity = rows[admissible], cols[admissible], affinity[admissible]
        if rows.size == 0:
            return _no_match(t, d)
    # Forbidden entries get a cost larger than any sum of admissible ones (so the assignment maximises the number
    # of matches, then the affinity) but small enough to keep the affinities' precision. Rows and columns without
    # an admissible pair only ever take forbidden entries, which are dropped.
    span = float(np.abs(affinity).max()) + 1.0
    forbidden = 2.0 * span * (min(t, d) + 1)
    cost = np.full((t, d), forbidden)
    cost[rows, cols] = -affinity
    match_r, match_c = linear_sum_assignment(cost)
    match_cost = cost[match_r, match_c]
    ok = match_cost < forbidden
    if not ok.all():
        match_r, match_c, match_cost = match_r[ok], match_c[ok], match_cost[ok]
    track_free = np.ones(t, dtype=bool)
    track_free[match_r] = False
    det_free = np.ones(d, dtype=bool)
    det_free[match_c] = False
    return Association(
        matches=np.stack([match_r, match_c], axis=1).astype(np.int64, copy=False),
        affinity=-match_cost,
        unmatched_tracks=np.flatnonzero(track_free),
        unmatched_detections=np.flatnonzero(det_free),
    )


def _no_match(t: int, d: int) -> Association:
    return Association(np.zeros((0, 2), np.int64), np.zeros(0), np.arange(t), np.arange(d))
