"""Evaluation of keyframe propagation against ground truth, with the baselines run in the same call.

Protocol. Ground truth is a set of boxes per frame with stable track ids, in the ego frame of each frame.

* ``protocol="track"`` (default): for each track, the keyframes are its frames at positions 0, k, 2k, ... of its own
  presence, plus its last frame, as an annotator labels an object where it appears, every k frames, and where it
  leaves. Every other frame of the track is filled and scored.
* ``protocol="global"``: keyframes are the drive frames with ``frame % k == 0``; boxes before a track's first or after
  its last keyframe need extrapolation and count too (a method that produces nothing there scores a miss).

Scores on the non-key boxes, per class group: the share with 3D IoU >= 0.7 for cars and >= 0.5 for pedestrians and
cyclists (other classes >= 0.5), the mean centre error (metres) and the mean absolute yaw error (radians, wrapped),
over the boxes a method produced. Methods: ``ours`` (:func:`sensorlabel.propagation.propagate_drive`, which refines by
ICP where the drive has lidar, otherwise world-frame geodesic interpolation) and the baselines ``copy_last``,
``linear_sensor`` (CVAT-style) and ``linear_world`` (SUSTechPOINTS-style).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.iou import iou_3d_paired
from sensorlabel.geometry.lie import wrap_angle
from sensorlabel.geometry.se3 import SE3
from sensorlabel.propagation.interpolate import (
    baseline_copy_last,
    baseline_linear_sensor,
    baseline_linear_world,
)

IOU_THRESHOLDS = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5, "other": 0.5}
_GROUPS = {
    "car": {"car", "regular_vehicle", "vehicle.car"},
    "pedestrian": {"pedestrian", "person", "human.pedestrian.adult", "human.pedestrian.child"},
    "cyclist": {"cyclist", "bicyclist", "motorcyclist", "vehicle.bicycle", "vehicle.motorcycle"},
}
METHODS = ("ours", "copy_last", "linear_sensor", "linear_world")


def class_group(label: str) -> str:
    """Map a dataset's class name to car / pedestrian / cyclist / other (case-insensitive)."""
    name = label.lower()
    for group, names in _GROUPS.items():
        if name in names:
            return group
    return "other"


@dataclass(frozen=True)
class GroundTruth:
    """Boxes with track ids over a drive's frames.

    Attributes:
        frame: (N,) int64 frame index of each box.
        boxes_ego: N boxes, each in the ego frame of its frame, with track_id and label.
        frame_times_ns: (F,) int64.
        world_SE3_ego: batch of F ego poses at the frame times (identity when the source has none).
    """

    frame: np.ndarray
    boxes_ego: Boxes
    frame_times_ns: np.ndarray
    world_SE3_ego: SE3


def keyframe_mask(gt: GroundTruth, interval: int, protocol: str = "track") -> np.ndarray:
    """(N,) bool: which ground-truth boxes are keyframes under the protocol (module docstring)."""
    if protocol == "global":
        return gt.frame % interval == 0
    if protocol != "track":
        raise ValueError(f"protocol must be 'track' or 'global', got {protocol!r}")
    key = np.zeros(len(gt.frame), dtype=bool)
    order = np.lexsort((gt.frame, gt.boxes_ego.track_id))
    tracks = gt.boxes_ego.track_id[order]
    starts = np.flatnonzero(np.r_[True, tracks[1:] != tracks[:-1]])
    ends = np.r_[starts[1:], len(order)]
    rank = np.arange(len(order)) - np.repeat(starts, ends - starts)
    last = np.zeros(len(order), dtype=bool)
    last[ends - 1] = True
    key[order] = (rank % interval == 0) | last
    return key


def baseline_predictions(gt: GroundTruth, key: np.ndarray) -> dict[str, tuple[np.ndarray, Boxes]]:
    """Baseline predictions (indices into gt, boxes) for every non-key box between or around keyframes."""
    out: dict[str, list] = {m: [] for m in METHODS[1:]}
    idx_all: list[np.ndarray] = []
    tid = gt.boxes_ego.track_id
    for track in np.unique(tid):
        sel = np.flatnonzero(tid == track)
        k_idx, q_idx = sel[key[sel]], sel[~key[sel]]
        if len(k_idx) == 0 or len(q_idx) == 0:
            continue
        kt = gt.frame_times_ns[gt.frame[k_idx]]
        qt = gt.frame_times_ns[gt.frame[q_idx]]
        kb = gt.boxes_ego[k_idx]
        out["copy_last"].append(baseline_copy_last(kb, kt, qt))
        out["linear_sensor"].append(baseline_linear_sensor(kb, kt, qt))
        out["linear_world"].append(baseline_linear_world(kb, kt, gt.world_SE3_ego[gt.frame[k_idx]], qt,
                                                         gt.world_SE3_ego[gt.frame[q_idx]]))
        idx_all.append(q_idx)
    idx = np.concatenate(idx_all) if idx_all else np.zeros(0, np.int64)
    return {m: (idx, Boxes.concatenate(parts)) for m, parts in out.items()}


def store_keyframes(store, frame: np.ndarray, boxes: Boxes, key: np.ndarray | None = None, *,
                    description: str = "", id_attribute: str | None = None) -> dict[int, int]:
    """Write ground-truth keyframe boxes into a label store as human boxes, one store track per ground-truth track.

    Store tracks are created in increasing ground-truth id order for every track of ``boxes`` (also one without a
    key box), with the class of its first box, in one transaction and one edit (:meth:`LabelStore.add_tracks`).

    Args:
        store: a :class:`sensorlabel.drive.labels.LabelStore`.
        frame: (N,) int frame index of each box.
        boxes: N boxes with ground-truth track ids and labels.
        key: (N,) bool, the boxes to write (None: all of them).
        description: text of the edit log for the boxes.
        id_attribute: when given, each store track's attributes hold ``{id_attribute: ground-truth track id}``.

    Returns:
        ``{ground-truth track id: store track id}``.
    """
    truth_ids, first = np.unique(boxes.track_id, return_index=True)
    attributes = None if id_attribute is None else [{id_attribute: t} for t in truth_ids.tolist()]
    store_ids = store.add_tracks(boxes.label[first].tolist(), attributes)
    if key is not None:
        frame, boxes = frame[key], boxes[key]
    mapped = store_ids[np.searchsorted(truth_ids, boxes.track_id)]
    store.put_boxes(frame, boxes.replace(track_id=mapped), source="human", description=description)
    return dict(zip(truth_ids.tolist(), store_ids.tolist()))


def match_automated(records, id_map: dict[int, int], frame: np.ndarray, track_id: np.ndarray,
                    candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair ground-truth boxes with the automated (non-human) boxes a store holds at their (frame, track).

    Args:
        records: the store's BoxRecords (``LabelStore.query()``).
        id_map: ``{ground-truth track id: store track id}`` (:func:`store_keyframes`).
        frame: (N,) frame index of each ground-truth box.
        track_id: (N,) ground-truth track id of each box.
        candidates: (K,) int indices of the ground-truth boxes to pair.

    Returns:
        ((M,) the candidates that have an automated box, (M,) that box's row in ``records``).
    """
    back = {v: k for k, v in id_map.items()}
    auto = np.flatnonzero(records.source != "human")
    lookup = {(f, back.get(t, -2)): r for f, t, r in zip(records.frame[auto].tolist(),
                                                          records.boxes.track_id[auto].tolist(), auto.tolist())}
    candidates = np.asarray(candidates, dtype=np.int64)
    hit = np.array([lookup.get(ft, -1) for ft in zip(frame[candidates].tolist(), track_id[candidates].tolist())],
                   dtype=np.int64)
    found = hit >= 0
    return candidates[found], hit[found]


def _ours(gt: GroundTruth, key: np.ndarray, drive, config) -> tuple[np.ndarray, Boxes]:
    """Run propagate_drive on a scratch label store holding only the keyframes as human boxes."""
    from sensorlabel.drive.labels import LabelStore
    from sensorlabel.propagation.propagate import propagate_drive

    with tempfile.TemporaryDirectory(prefix="sensorlabel-eval-") as tmp:
        store = LabelStore(Path(tmp) / "labels.sqlite")
        try:
            # Tracks are created in ground-truth id order, so store ids keep that order.
            id_map = store_keyframes(store, gt.frame[key], gt.boxes_ego[key])
            propagate_drive(_DriveView(drive, gt), config, labels=store)
            rec = store.query()
        finally:
            store.close()
    found, rows = match_automated(rec, id_map, gt.frame, gt.boxes_ego.track_id, np.flatnonzero(~key))
    return found, rec.boxes[rows]


class _DriveView:
    """The slice of the Drive API that propagation reads, over ground truth (and a drive's sweeps if given)."""

    def __init__(self, drive, gt: GroundTruth):
        self._drive = drive
        self._gt = gt
        self.frame_timestamps_ns = gt.frame_times_ns
        self.lidar_names = drive.lidar_names if drive is not None else []
        self.sensors = drive.sensors if drive is not None else {}
        self.path = drive.path if drive is not None else None

    def world_SE3_ego(self, timestamps_ns):
        if self._drive is not None:
            return self._drive.world_SE3_ego(timestamps_ns)
        from sensorlabel.geometry.se3 import interpolate_poses

        return interpolate_poses(self._gt.frame_times_ns, self._gt.world_SE3_ego, timestamps_ns, extrapolate=True)

    def frame_sweep(self, frame: int):
        return self._drive.frame_sweep(frame) if self._drive is not None else None


def score_boxes(gt: GroundTruth, idx: np.ndarray, pred: Boxes, candidates: np.ndarray) -> dict:
    """Scores per class group over the candidate (non-key) boxes; missing predictions count as failures."""
    result = {}
    # One class_group call per distinct label, not per box.
    names, inverse = np.unique(np.asarray(gt.boxes_ego.label, dtype=str), return_inverse=True)
    name_groups = [class_group(str(n)) for n in names]
    groups = np.array(name_groups, dtype=str)[inverse]
    thresholds = np.array([IOU_THRESHOLDS[g] for g in name_groups], dtype=np.float64)[inverse]
    iou = np.zeros(len(gt.frame))
    produced = np.zeros(len(gt.frame), dtype=bool)
    center_err = np.full(len(gt.frame), np.nan)
    yaw_err = np.full(len(gt.frame), np.nan)
    if len(idx):
        truth = gt.boxes_ego[idx]
        iou[idx] = iou_3d_paired(pred, truth)
        produced[idx] = True
        center_err[idx] = np.linalg.norm(pred.center_m - truth.center_m, axis=1)
        yaw_err[idx] = np.abs(wrap_angle(pred.yaw_rad - truth.yaw_rad))
    for group in ("car", "pedestrian", "cyclist", "other", "all"):
        sel = candidates & ((groups == group) if group != "all" else True)
        n = int(sel.sum())
        if n == 0:
            continue
        made = sel & produced
        result[group] = {
            "boxes": n,
            "share_iou_ok": float(np.mean(iou[sel] >= thresholds[sel])),
            "coverage": float(made.sum() / n),
            "mean_iou": float(np.mean(iou[sel])),
            "mean_center_error_m": float(np.nanmean(center_err[made])) if made.any() else None,
            "mean_yaw_error_rad": float(np.nanmean(yaw_err[made])) if made.any() else None,
        }
    return result


def evaluate_propagation(
    gt: GroundTruth,
    intervals: tuple[int, ...] = (5, 10, 20),
    *,
    drive=None,
    protocol: str = "track",
    config=None,
    methods: tuple[str, ...] = METHODS,
) -> dict:
    """Score our propagation and the baselines for each keyframe interval.

    Args:
        gt: ground truth over the drive.
        intervals: keyframe intervals k.
        drive: an opened Drive whose sweeps ICP may use (None for labels-only evaluation).
        protocol: "track" or "global" (module docstring).
        config: a PropagationConfig for ``ours`` (default settings when None).

    Returns:
        ``{str(k): {method: {group: scores}}}``.
    """
    from sensorlabel.propagation.propagate import PropagationConfig

    config = config or PropagationConfig()
    out: dict = {}
    for k in intervals:
        key = keyframe_mask(gt, k, protocol)
        candidates = ~key
        res: dict = {}
        if "ours" in methods:
            idx, pred = _ours(gt, key, drive, config)
            res["ours"] = score_boxes(gt, idx, pred, candidates)
        for name, (idx, pred) in baseline_predictions(gt, key).items():
            if name in methods:
                res[name] = score_boxes(gt, idx, pred, candidates)
        out[str(k)] = res
    return out


def format_table(results: dict) -> str:
    """A plain-text table of share / centre error / yaw error per interval, method and class group."""
    lines = [f"{'k':>3} {'method':<14} {'class':<11} {'boxes':>6} {'IoU-ok':>7} {'cover':>6} {'ctr err m':>9} {'yaw err':>8}"]
    for k, by_method in results.items():
        for method, groups in by_method.items():
            for group, s in groups.items():
                ce = "-" if s["mean_center_error_m"] is None else f"{s['mean_center_error_m']:.3f}"
                ye = "-" if s["mean_yaw_error_rad"] is None else f"{s['mean_yaw_error_rad']:.4f}"
                lines.append(f"{k:>3} {method:<14} {group:<11} {s['boxes']:>6} {s['share_iou_ok']:>7.3f} "
                             f"{s['coverage']:>6.3f} {ce:>9} {ye:>8}")
    return "\n".join(lines)
