"""Similarities between ground-truth and tracker boxes of the same frame, vectorised over a whole sequence.

The evaluation computes its own similarities with :mod:`sensorlabel.geometry.iou` (not with the tracker's
association code), so a bug in the tracker's geometry cannot hide itself in the metrics.
"""

from __future__ import annotations

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.iou import iou_3d_paired


def same_frame_pairs(frame_a: np.ndarray, frame_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j) with ``frame_a[i] == frame_b[j]``, without a per-frame loop.

    Args:
        frame_a: (Na,) int frame of each row of a. frame_b: (Nb,) int frame of each row of b.

    Returns:
        (ia, ib) int64 arrays of equal length, grouped by frame.
    """
    if frame_a.size == 0 or frame_b.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order_b = np.argsort(frame_b, kind="stable")
    sorted_b = frame_b[order_b]
    start = np.searchsorted(sorted_b, frame_a, side="left")
    count = np.searchsorted(sorted_b, frame_a, side="right") - start
    ia = np.repeat(np.arange(frame_a.size), count)
    offsets = np.arange(ia.size) - np.repeat(np.cumsum(count) - count, count)
    ib = order_b[np.repeat(start, count) + offsets]
    return ia.astype(np.int64), ib.astype(np.int64)


def paired_iou_3d(boxes_a: Boxes, boxes_b: Boxes, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """3D IoU of the pairs ``(boxes_a[ia[k]], boxes_b[ib[k]])`` (gravity-aligned boxes, z up).

    Returns:
        (K,) IoU values.
    """
    if ia.size == 0:
        return np.zeros(0)
    return iou_3d_paired(boxes_a[ia], boxes_b[ib])


def box_ioa_2d(boxes_px: np.ndarray, regions_px: np.ndarray) -> np.ndarray:
    """Intersection of paired 2D boxes over the area of the first (KITTI's ``boxoverlap(a, b, "a")``).

    Args:
        boxes_px: (K, 4) ``x1 y1 x2 y2``. regions_px: (K, 4) ``x1 y1 x2 y2``.

    Returns:
        (K,) intersection / area of boxes_px (0 for an empty box).
    """
    w = np.minimum(boxes_px[:, 2], regions_px[:, 2]) - np.maximum(boxes_px[:, 0], regions_px[:, 0])
    h = np.minimum(boxes_px[:, 3], regions_px[:, 3]) - np.maximum(boxes_px[:, 1], regions_px[:, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    area = (boxes_px[:, 2] - boxes_px[:, 0]) * (boxes_px[:, 3] - boxes_px[:, 1])
    return np.where(area > 0, inter / np.where(area > 0, area, 1.0), 0.0)
