"""KITTI tracking evaluation rules: which ground truth counts and which tracker boxes are ignored.

The rules of the KITTI tracking devkit (Geiger et al., CVPR 2012; ``evaluate_tracking.py``), as implemented by
AB3DMOT's 3D evaluation (Weng et al., IROS 2020) and TrackEval's KITTI dataset (``Kitti2DBox``), per class:

1. Only ground truth of the evaluated class and of its neighbouring class is loaded: ``Van`` for ``Car``,
   ``Person_sitting`` for ``Pedestrian``; ``Cyclist`` has none. ``DontCare`` rows are regions, not objects.
2. Ground truth of the neighbouring class, or with ``occluded > 2`` or ``truncated > 0`` (tracking truncation is a
   level 0/1/2), is a *distractor*: neither a miss when untracked nor a true positive when tracked.
3. Tracker boxes are matched to all loaded ground truth (Hungarian, similarity at or above the threshold); a tracker
   box matched to a distractor is removed.
4. An unmatched tracker box is removed when its 2D box is at most ``min_height_px`` = 25 px tall, or when more
   than half of its 2D box lies inside a DontCare region (intersection over the tracker box's area > 0.5).
5. Distractors are removed from the ground truth; ids are relabelled 0..n-1.

The similarity is the 3D IoU of the boxes (gravity-aligned, computed in a z-up frame obtained from KITTI's rect
frame by a fixed rotation); AB3DMOT's default 3D threshold is 0.25 for every class.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from sensorlabel.errors import FormatError
from sensorlabel.eval.matching import box_ioa_2d, paired_iou_3d, same_frame_pairs
from sensorlabel.eval.mot import SequenceData, amota, clear_mot, hota
from sensorlabel.formats.kitti import (
    DONT_CARE,
    KittiLabelTable,
    kitti_to_boxes_rect,
    read_kitti_tracking_labels,
)
from sensorlabel.tracking.kitti_detections import UP_SE3_RECT

#: Neighbouring class per evaluated class (its ground truth becomes a distractor).
KITTI_DISTRACTORS = {"Car": ("Van",), "Pedestrian": ("Person_sitting",), "Cyclist": ()}
#: AB3DMOT's 3D IoU threshold of the KITTI 3D MOT evaluation, per class.
KITTI_IOU_THRESHOLD = {"Car": 0.25, "Pedestrian": 0.25, "Cyclist": 0.25}
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class KittiRules:
    """KITTI's limits (tracking devkit defaults)."""

    max_occlusion: int = 2
    max_truncation: float = 0.0
    min_height_px: float = 25.0
    dont_care_ioa: float = 0.5


def _relabel(per_frame: list[np.ndarray]) -> list[np.ndarray]:
    ids = np.concatenate(per_frame) if per_frame else np.zeros(0, np.int64)
    unique = np.unique(ids)
    return [np.searchsorted(unique, f).astype(np.int64) for f in per_frame]


def kitti_sequence_data(
    gt: KittiLabelTable,
    results: KittiLabelTable,
    cls: str,
    threshold: float | None = None,
    num_frames: int | None = None,
    rules: KittiRules | None = None,
    name: str = "",
) -> SequenceData:
    """Apply KITTI's rules to one sequence and class and return the data for the metrics.

    Args:
        gt: ground-truth rows of the sequence (``label_02``, DontCare rows included).
        results: tracker rows (KITTI tracking results with scores; NaN scores count as 1).
        cls: ``Car``, ``Pedestrian`` or ``Cyclist``.
        threshold: 3D IoU for matching (default :data:`KITTI_IOU_THRESHOLD` of the class).
        num_frames: frames of the sequence (default: the last frame in either table + 1).
        rules: KITTI's limits.
        name: sequence name.

    Returns:
        :class:`SequenceData` with 3D IoU similarities and tracker scores.

    Raises:
        ValueError: an unknown class.
    """
    if cls not in KITTI_DISTRACTORS:
        raise ValueError(f"class {cls!r} is not evaluated; expected one of {sorted(KITTI_DISTRACTORS)}")
    rules = rules or KittiRules()
    thr = KITTI_IOU_THRESHOLD[cls] if threshold is None else threshold
    n_frames = num_frames if num_frames is not None else int(max(gt.frame.max(initial=-1),
                                                                  results.frame.max(initial=-1)) + 1)
    g = gt[np.isin(gt.type, (cls, *KITTI_DISTRACTORS[cls]))]
    dc = gt[gt.type == DONT_CARE]
    t = results[results.type == cls]
    distractor = (g.type != cls) | (g.occluded > rules.max_occlusion) | (g.truncated > rules.max_truncation + _EPS)

    # All same-frame IoUs of the sequence in one vectorised call.
    gi, ti = same_frame_pairs(g.frame, t.frame)
    boxes_g = kitti_to_boxes_rect(g).transform(UP_SE3_RECT) if len(g) else None
    boxes_t = kitti_to_boxes_rect(t).transform(UP_SE3_RECT) if len(t) else None
    iou = paired_iou_3d(boxes_g, boxes_t, gi, ti) if gi.size else np.zeros(0)
    by_frame = np.argsort(g.frame[gi], kind="stable")
    gi, ti, iou = gi[by_frame], ti[by_frame], iou[by_frame]
    # Tracker boxes mostly inside a DontCare region (2D, as KITTI has no 3D box for them).
    tj, dj = same_frame_pairs(t.frame, dc.frame)
    in_dont_care = np.zeros(len(t), dtype=bool)
    if tj.size:
        np.logical_or.at(in_dont_care, tj, box_ioa_2d(t.bbox_2d_px[tj], dc.bbox_2d_px[dj]) > rules.dont_care_ioa + _EPS)
    too_small = (t.bbox_2d_px[:, 3] - t.bbox_2d_px[:, 1]) <= rules.min_height_px + _EPS
    scores = np.where(np.isfinite(t.score), t.score, 1.0)

    g_order, t_order = np.argsort(g.frame, kind="stable"), np.argsort(t.frame, kind="stable")
    g_bounds = np.searchsorted(g.frame[g_order], np.arange(n_frames + 1))
    t_bounds = np.searchsorted(t.frame[t_order], np.arange(n_frames + 1))
    g_pos = np.empty(len(g), np.int64)
    t_pos = np.empty(len(t), np.int64)
    g_pos[g_order] = np.arange(len(g)) - np.repeat(g_bounds[:-1], np.diff(g_bounds))
    t_pos[t_order] = np.arange(len(t)) - np.repeat(t_bounds[:-1], np.diff(t_bounds))
    pair_frame = g.frame[gi]

    gt_ids, trk_ids, sims, trk_scores = [], [], [], []
    pair_bounds = np.searchsorted(pair_frame, np.arange(n_frames + 1)) if gi.size else np.zeros(n_frames + 1, int)
    # The matching of step 3 is a per-frame Hungarian problem (sizes differ per frame).
    for f in range(n_frames):
        rows_g = g_order[g_bounds[f]:g_bounds[f + 1]]
        rows_t = t_order[t_bounds[f]:t_bounds[f + 1]]
        sim = np.zeros((rows_g.size, rows_t.size))
        p = slice(pair_bounds[f], pair_bounds[f + 1])
        sim[g_pos[gi[p]], t_pos[ti[p]]] = iou[p]
        remove = np.zeros(rows_t.size, dtype=bool)
        matched = np.zeros(rows_t.size, dtype=bool)
        if rows_g.size and rows_t.size:
            score = np.where(sim >= thr - _EPS, sim, 0.0)
            r, c = linear_sum_assignment(-score)
            real = score[r, c] > _EPS
            r, c = r[real], c[real]
            matched[c] = True
            remove[c[distractor[rows_g[r]]]] = True
        remove |= ~matched & (too_small[rows_t] | in_dont_care[rows_t])
        keep_g = ~distractor[rows_g]
        gt_ids.append(g.track_id[rows_g[keep_g]])
        trk_ids.append(t.track_id[rows_t[~remove]])
        sims.append(sim[keep_g][:, ~remove])
        trk_scores.append(scores[rows_t[~remove]])
    return SequenceData(_relabel(gt_ids), _relabel(trk_ids), sims, trk_scores, name)


def evaluate_kitti_tracking(
    gt_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    sequences: list[str] | None = None,
    classes: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist"),
    threshold: float | None = None,
    rules: KittiRules | None = None,
) -> dict:
    """Evaluate KITTI tracking results against ``label_02`` ground truth: CLEAR MOT, sAMOTA/AMOTA/AMOTP, HOTA.

    Args:
        gt_dir: folder of ground-truth ``SEQ.txt`` files.
        results_dir: folder of result ``SEQ.txt`` files (KITTI tracking format with a score column).
        sequences: sequence names (default: every result file that has a ground-truth file).
        classes: classes to evaluate; a class with no ground truth in the chosen sequences is skipped.
        threshold: 3D IoU for a true positive (default: :data:`KITTI_IOU_THRESHOLD` per class).
        rules: KITTI's limits.

    Returns:
        ``{"sequences": [...], "threshold": ..., "rules": {...}, "classes": {cls: {metrics}}}``.

    Raises:
        FormatError: a missing folder or file, or a malformed label file.
    """
    gt_dir, results_dir = Path(gt_dir), Path(results_dir)
    for folder in (gt_dir, results_dir):
        if not folder.is_dir():
            raise FormatError(folder, "folder does not exist")
    names = sequences or sorted(p.stem for p in results_dir.glob("*.txt") if (gt_dir / p.name).is_file())
    if not names:
        raise FormatError(results_dir, f"no result SEQ.txt file with a ground-truth file in {gt_dir}")
    tables = {}
    for name in names:
        for folder in (gt_dir, results_dir):
            if not (folder / f"{name}.txt").is_file():
                raise FormatError(folder / f"{name}.txt", "file does not exist")
        tables[name] = (read_kitti_tracking_labels(gt_dir / f"{name}.txt"),
                        read_kitti_tracking_labels(results_dir / f"{name}.txt"))
    out = {"sequences": names, "rules": asdict(rules or KittiRules()), "classes": {}}
    for cls in classes:
        thr = KITTI_IOU_THRESHOLD[cls] if threshold is None else threshold
        data = []
        for name, (gt, res) in tables.items():
            data.append(kitti_sequence_data(gt, res, cls, thr, rules=rules, name=name))
        if sum(sum(len(g) for g in d.gt_ids) for d in data) == 0:
            continue
        metrics = {"iou_threshold": thr, **clear_mot(data, thr)}
        metrics.update({k: v for k, v in amota(data, thr).items() if k in ("sAMOTA", "AMOTA", "AMOTP")})
        metrics.update(hota(data))
        out["classes"][cls] = metrics
    return out


def format_tracking_table(report: dict) -> str:
    """A fixed-width text table of :func:`evaluate_kitti_tracking`'s report, one row per class."""
    cols = ["sAMOTA", "AMOTA", "AMOTP", "MOTA", "MOTP", "HOTA", "IDS", "FRAG", "TP", "FP", "FN", "precision", "recall"]
    lines = ["class       " + " ".join(f"{c:>9}" for c in cols)]
    for cls, m in report["classes"].items():
        cells = [f"{m[c]:>9d}" if isinstance(m[c], int) else f"{m[c]:>9.4f}" for c in cols]
        lines.append(f"{cls:<12}" + " ".join(cells))
    return "\n".join(lines)


def write_report(path: str | os.PathLike, report: dict) -> Path:
    """Write a report as JSON atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, path)
    return path
