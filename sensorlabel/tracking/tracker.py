"""Online 3D multi-object tracker (tracking by detection, after AB3DMOT, Weng et al., IROS 2020).

Per frame: predict every track with its class's Kalman motion model, associate the predictions with the frame's
detections (per-class affinity and gate, Hungarian method), update the matched tracks, start a tentative track for
every unmatched detection, drop tracks that have missed ``max_age`` frames in a row, and output the confirmed
tracks. A track is confirmed once it has been matched ``min_hits`` times; in the first ``min_hits`` frames of a
sequence every track is output, so a sequence's first objects are not lost to the warm-up (AB3DMOT's rule).

All tracks of one motion model live in one array group, so prediction and update are single batched calls;
association is one assignment over all tracks and detections with cross-class pairs forbidden. There is no
per-track Python loop.

Speed: a KITTI frame holds about five boxes, so a frame's cost is the number of numpy calls, not their size. The
per-frame path therefore works on raw arrays only (no Boxes, no shapely, no quaternions), keeps the states and the
bookkeeping in preallocated arrays (one int64 table for the bookkeeping, gathered and scattered in one call), skips
association when there are no tracks or no detections, and takes the single-group path when every track shares
one motion model; ``benchmarks/bench_tracking.py`` measures it.

Frames: the tracker works in any gravity-aligned frame with z up. With ego poses, :func:`track_sequence` moves the
detections into the world frame (``world_SE3_ego``), tracks there, so the ego's own motion is not mistaken for the
objects', and returns the tracks in each frame's ego frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3
from sensorlabel.tracking.association import associate, metric_code
from sensorlabel.tracking.motion import MEAS_DIM, MOTION_MODELS, MotionModel, MotionNoise, make_motion_model


@dataclass(frozen=True)
class ClassTrackingConfig:
    """How one class is associated and managed.

    Attributes:
        metric: association affinity, one of ``iou_3d``, ``giou_3d``, ``giou_bev``, ``center_distance``.
        threshold: minimum IoU/GIoU for a match, or the maximum centre distance in metres for ``center_distance``.
        motion_model: ``cv`` (constant velocity) or ``ctrv`` (constant turn rate and velocity).
        min_hits: matches before a track is output.
        max_age: consecutive missed frames after which a track is dropped.

    Raises:
        ValueError: for an unknown metric or motion model, or non-positive counts.
    """

    metric: str = "giou_3d"
    threshold: float = -0.2
    motion_model: str = "ctrv"
    min_hits: int = 3
    max_age: int = 3

    def __post_init__(self) -> None:
        metric_code(self.metric)
        if self.motion_model not in MOTION_MODELS:
            raise ValueError(f"motion_model: unknown {self.motion_model!r}; expected one of {sorted(MOTION_MODELS)}")
        if self.min_hits < 1 or self.max_age < 1:
            raise ValueError(f"min_hits and max_age must be >= 1, got {self.min_hits} and {self.max_age}")


def default_class_configs() -> dict[str, ClassTrackingConfig]:
    """Per-class defaults for KITTI-like classes.

    Cars and cyclists move along their heading: CTRV, GIoU 3D (it still ranks a prediction that misses the
    detection by a little). Pedestrians: small boxes whose IoU collapses with decimetres of error and whose box
    heading says little about their motion, so constant velocity and a centre distance gate. GIoU -0.4, max age 5
    and coasting one frame (:class:`TrackerConfig`) were chosen on the KITTI benchmark of
    ``benchmarks/bench_tracking.py`` (constant velocity, sensor frame: Car MOTA 0.82, against 0.67 with GIoU -0.2,
    max age 3 and no coasting).
    """
    return {
        "Car": ClassTrackingConfig("giou_3d", -0.4, "ctrv", 3, 5),
        "Van": ClassTrackingConfig("giou_3d", -0.4, "ctrv", 3, 5),
        "Truck": ClassTrackingConfig("giou_3d", -0.4, "ctrv", 3, 5),
        "Cyclist": ClassTrackingConfig("giou_3d", -0.4, "ctrv", 3, 5),
        "Pedestrian": ClassTrackingConfig("center_distance", 1.5, "cv", 3, 5),
    }


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker configuration; written beside every output it produced (:meth:`to_dict`).

    Attributes:
        classes: per-class settings by label.
        default: settings for labels not in ``classes``.
        noise: Kalman noise levels shared by the motion models.
        gate_margin_m: pairs with centres farther apart than their half-diagonals plus this are never matched.
        coast_output_frames: also output confirmed tracks that have missed up to this many frames (their
            prediction); 0 outputs only tracks matched in the current frame.
    """

    classes: Mapping[str, ClassTrackingConfig] = field(default_factory=default_class_configs)
    default: ClassTrackingConfig = field(default_factory=ClassTrackingConfig)
    noise: MotionNoise = field(default_factory=MotionNoise)
    gate_margin_m: float = 3.0
    coast_output_frames: int = 1

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        out = asdict(self)
        out["classes"] = {k: asdict(v) for k, v in self.classes.items()}
        return out


@dataclass(frozen=True)
class TrackOutput:
    """Tracks output for one frame, in the frame the detections were given in.

    Attributes:
        box7: (N, 7) filtered boxes (x, y, z, yaw, l, w, h).
        track_id: (N,) int64 track ids (unique over the tracker's life).
        label: (N,) str class names.
        score: (N,) float64 score of the detection that last updated each track.
        detection_index: (N,) int64 row of this frame's detection that updated the track, -1 when coasting.
        velocity_xy: (N, 2) estimated horizontal velocity in m/s.
        last_detection_id: (N,) int64 caller's id (``detection_ids`` of :meth:`Tracker.update`) of the detection
            that last updated the track, in this frame or an earlier one.
        stream: (N,) int64 stream (independent sequence) of each track; 0 when a single sequence is tracked.
    """

    box7: np.ndarray
    track_id: np.ndarray
    label: np.ndarray
    score: np.ndarray
    detection_index: np.ndarray
    velocity_xy: np.ndarray
    last_detection_id: np.ndarray
    stream: np.ndarray

    def __len__(self) -> int:
        return self.box7.shape[0]

    def to_boxes(self) -> Boxes:
        """The tracks as :class:`Boxes` (gravity-aligned, yaw about +z)."""
        return Boxes.from_yaw(self.box7[:, :3], self.box7[:, 4:7], self.box7[:, 3], self.track_id, self.label,
                              self.score)


# Columns of _TrackGroup.meta (int64 bookkeeping, one row per track, gathered and scattered in one call).
_TRACK_ID, _CLS, _HITS, _MISSES, _DET_INDEX, _DET_ID, _STREAM = range(7)


class _TrackGroup:
    """The tracks of one motion model: Kalman states plus bookkeeping, one row per track (mutable, internal).

    Rows live in preallocated arrays that grow by doubling; ``x``, ``P``, ``meta`` and ``score`` are views of the
    first ``n`` rows, so a frame costs a fixed number of numpy calls whatever the number of tracks.
    """

    def __init__(self, model: MotionModel, capacity: int = 64):
        d = model.state_dim
        self.model = model
        self.n = 0
        self._x = np.zeros((capacity, d))
        self._P = np.zeros((capacity, d, d))
        self._meta = np.zeros((capacity, 7), np.int64)
        self._score = np.zeros(capacity)

    def __len__(self) -> int:
        return self.n

    @property
    def x(self) -> np.ndarray:
        """(n, d) states (a view)."""
        return self._x[:self.n]

    @property
    def P(self) -> np.ndarray:
        """(n, d, d) covariances (a view)."""
        return self._P[:self.n]

    @property
    def meta(self) -> np.ndarray:
        """(n, 7) int64 track_id, class, hits, misses, detection row (-1 none), detection id, stream (a view)."""
        return self._meta[:self.n]

    @property
    def score(self) -> np.ndarray:
        """(n,) score of the detection that last updated each track (a view)."""
        return self._score[:self.n]

    def append(self, x: np.ndarray, P: np.ndarray, meta: np.ndarray, score: np.ndarray) -> None:
        n, k = self.n, x.shape[0]
        if n + k > self._x.shape[0]:
            cap = max(2 * self._x.shape[0], n + k)
            for name in ("_x", "_P", "_meta", "_score"):
                old = getattr(self, name)
                grown = np.zeros((cap, *old.shape[1:]), old.dtype)
                grown[:n] = old[:n]
                setattr(self, name, grown)
        self._x[n:n + k] = x
        self._P[n:n + k] = P
        self._meta[n:n + k] = meta
        self._score[n:n + k] = score
        self.n = n + k

    def keep(self, mask: np.ndarray) -> None:
        k = int(np.count_nonzero(mask))
        if k == self.n:
            return
        for name in ("_x", "_P", "_meta", "_score"):
            arr = getattr(self, name)
            arr[:k] = arr[:self.n][mask]
        self.n = k


class Tracker:
    """Online multi-object tracker over box7 detections; feed frames in time order with :meth:`update`.

    Args:
        config: a :class:`TrackerConfig` (defaults per class from :func:`default_class_configs`).
    """

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()
        self._model_names = sorted(MOTION_MODELS)
        self._groups = [_TrackGroup(make_motion_model(name, self.config.noise)) for name in self._model_names]
        self._names = np.zeros(0, dtype=str)  # class name by class index
        self._metric = np.zeros(0, np.int64)
        self._threshold = np.zeros(0)
        self._min_hits = np.zeros(0, np.int64)
        self._max_age = np.zeros(0, np.int64)
        self._group_of_class = np.zeros(0, np.int64)
        self._sorted_names = np.zeros(0, dtype=str)
        self._sorted_index = np.zeros(0, np.int64)
        for name in self.config.classes:
            self._add_class(name)
        self._next_id = 0
        self._frame_count = 0
        self._last_time_s: float | None = None

    # ----- classes ----------------------------------------------------------------------------------------------
    def _add_class(self, name: str) -> None:
        """Give class ``name`` the next class index, with its config (``default`` for a name not in ``classes``)."""
        cfg = self.config.classes.get(name, self.config.default)
        self._names = np.append(self._names, name)
        self._metric = np.append(self._metric, metric_code(cfg.metric))
        self._threshold = np.append(self._threshold, cfg.threshold)
        self._min_hits = np.append(self._min_hits, cfg.min_hits)
        self._max_age = np.append(self._max_age, cfg.max_age)
        self._group_of_class = np.append(self._group_of_class, self._model_names.index(cfg.motion_model))
        order = np.argsort(self._names)
        self._sorted_names = self._names[order]
        self._sorted_index = order.astype(np.int64)

    def _classes_of(self, labels: np.ndarray) -> np.ndarray:
        """(D,) class indices of labels (vectorised lookup in the sorted known names; unknown labels are added)."""
        if labels.shape[0] == 0:
            return np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_names, labels), max(len(self._sorted_names) - 1, 0))
        known = self._sorted_names[pos] == labels if len(self._sorted_names) else np.zeros(labels.shape, bool)
        if not known.all():
            for name in np.unique(labels[~known]).tolist():
                self._add_class(name)
            return self._classes_of(labels)
        return self._sorted_index[pos]

    # ----- the per-frame steps (separate methods so a benchmark can swap in a per-track baseline) ----------------
    def _predict(self, group: _TrackGroup, dt_s: float) -> None:
        group.x[:], group.P[:] = group.model.predict(group.x, group.P, dt_s)

    def _correct(self, group: _TrackGroup, rows: np.ndarray, box7: np.ndarray) -> None:
        group.x[rows], group.P[rows] = group.model.update(group.x.take(rows, axis=0), group.P.take(rows, axis=0), box7)

    def _associate(self, tracks_box7, track_class, detections_box7, detection_class, track_stream, detection_stream):
        """One :class:`~sensorlabel.tracking.association.Association` of the frame.

        An override must return ``matches`` sorted by track row, as :func:`associate` does: :meth:`_match` splits
        them among the motion-model groups with ``searchsorted``.
        """
        return associate(tracks_box7, track_class, detections_box7, detection_class, self._metric,
                         self._threshold, self.config.gate_margin_m, track_stream, detection_stream)

    # ----- public -----------------------------------------------------------------------------------------------
    def update(self, box7: np.ndarray, labels: np.ndarray, scores: np.ndarray, timestamp_s: float,
               detection_ids: np.ndarray | None = None, streams: np.ndarray | None = None) -> TrackOutput:
        """Process one frame of detections.

        Args:
            box7: (D, 7) detections (x, y, z, yaw, l, w, h) in the tracking frame (z up), metres and radians.
            labels: (D,) class names. scores: (D,) detection confidences.
            timestamp_s: frame time in seconds, non-decreasing over calls.
            detection_ids: (D,) int caller's ids of the detections (default: their rows); the output reports the
                id of the detection that last updated each track (e.g. to carry a 2D box while coasting).
            streams: (D,) int stream of each detection (default all 0). Several independent sequences may be
                tracked in lockstep by one tracker, one stream each: tracks only ever match detections of their
                own stream, and all streams share the per-frame work (one batched predict, association and
                update), which is how a folder of sequences is tracked fast.

        Returns:
            The confirmed tracks of this frame as a :class:`TrackOutput`.

        Raises:
            ValueError: for mismatched shapes, non-finite boxes or a timestamp earlier than the previous one.
        """
        box7 = np.asarray(box7, dtype=np.float64).reshape(-1, MEAS_DIM)
        labels = np.asarray(labels, dtype=str).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        d = box7.shape[0]
        det_ids = np.arange(d, dtype=np.int64) if detection_ids is None else np.asarray(detection_ids, np.int64)
        det_stream = np.zeros(d, np.int64) if streams is None else np.asarray(streams, np.int64)
        if labels.shape[0] != d or scores.shape[0] != d or det_ids.shape != (d,) or det_stream.shape != (d,):
            raise ValueError(f"labels {labels.shape}, scores {scores.shape}, detection_ids {det_ids.shape} and "
                             f"streams {det_stream.shape} must match box7 ({d}, 7)")
        if d and not np.isfinite(box7).all():
            raise ValueError(f"box7 row {int(np.flatnonzero(~np.isfinite(box7).all(axis=1))[0])} is not finite")
        dt_s = 0.0 if self._last_time_s is None else float(timestamp_s) - self._last_time_s
        if dt_s < 0:
            raise ValueError(f"timestamp_s {timestamp_s} is earlier than the previous frame {self._last_time_s}")
        self._last_time_s = float(timestamp_s)
        self._frame_count += 1
        det_class = self._classes_of(labels)

        active = [g for g in self._groups if g.n]
        for g in active:
            self._predict(g, dt_s)
            meta = g.meta
            meta[:, _MISSES] += 1
            meta[:, _DET_INDEX] = -1
        if d == 0:
            new = np.zeros(0, np.int64)
        elif not active:
            new = np.arange(d)
        else:
            new = self._match(active, box7, det_class, scores, det_ids, det_stream)
        if new.size:
            self._start_tracks(new, box7, det_class, scores, det_ids, det_stream)
        for g in active:
            meta = g.meta
            g.keep(meta[:, _MISSES] < self._max_age[meta[:, _CLS]])
        return self._output()

    def _match(self, active, box7, det_class, scores, det_ids, det_stream) -> np.ndarray:
        """Associate, then update the matched tracks; returns the unmatched detection rows."""
        if len(active) == 1:
            g = active[0]
            metas = g.meta
            pred = g.x[:, :MEAS_DIM]
        else:
            metas = np.concatenate([g.meta for g in active])
            pred = np.concatenate([g.x[:, :MEAS_DIM] for g in active])
        assoc = self._associate(pred, metas[:, _CLS], box7, det_class, metas[:, _STREAM], det_stream)
        if assoc.matches.shape[0]:
            m_track, m_det = assoc.matches[:, 0], assoc.matches[:, 1]
            if len(active) == 1:
                self._update_matched(active[0], m_track, m_det, box7, scores, det_ids)
            else:
                # Track rows of the groups are consecutive in `pred`; the matches come sorted by track row
                # (Association.matches), so each group's matches are one slice.
                offsets = np.cumsum([0] + [g.n for g in active])
                bounds = np.searchsorted(m_track, offsets).tolist()
                for k, g in enumerate(active):
                    lo, hi = bounds[k], bounds[k + 1]
                    if hi > lo:
                        self._update_matched(g, m_track[lo:hi] - offsets[k], m_det[lo:hi], box7, scores, det_ids)
        return assoc.unmatched_detections

    def _update_matched(self, g: _TrackGroup, rows, dets, box7, scores, det_ids) -> None:
        """Kalman update of the group's track rows with their detection rows, and their bookkeeping."""
        self._correct(g, rows, box7.take(dets, axis=0))
        meta = g.meta
        meta[rows, _HITS] += 1
        meta[rows, _MISSES] = 0
        meta[rows, _DET_INDEX] = dets
        meta[rows, _DET_ID] = det_ids.take(dets)
        g.score[rows] = scores.take(dets)

    def _start_tracks(self, new, box7, det_class, scores, det_ids, det_stream) -> None:
        """Tentative tracks for the (non-empty) detection rows `new`, in the group of their class's motion model."""
        new_class = det_class[new]
        new_group = self._group_of_class[new_class]
        groups = np.unique(new_group)
        for gi in groups.tolist():
            if groups.size == 1:
                dets, cls = new, new_class
            else:
                sel = new_group == gi
                dets, cls = new[sel], new_class[sel]
            g = self._groups[gi]
            k = dets.size
            x, P = g.model.initiate(box7[dets])
            meta = np.empty((k, 7), np.int64)
            meta[:, _TRACK_ID] = np.arange(self._next_id, self._next_id + k)
            meta[:, _CLS] = cls
            meta[:, _HITS] = 1
            meta[:, _MISSES] = 0
            meta[:, _DET_INDEX] = dets
            meta[:, _DET_ID] = det_ids[dets]
            meta[:, _STREAM] = det_stream[dets]
            self._next_id += k
            g.append(x, P, meta, scores[dets])

    def _output(self) -> TrackOutput:
        parts = []
        for g in self._groups:
            if not g.n:
                continue
            meta = g.meta
            min_hits = self._min_hits[meta[:, _CLS]]
            confirmed = (meta[:, _HITS] >= min_hits) | (self._frame_count <= min_hits)
            rows = np.flatnonzero(confirmed & (meta[:, _MISSES] <= self.config.coast_output_frames))
            if rows.size:
                x = g.x[rows]
                parts.append((x[:, :MEAS_DIM], meta[rows], g.score[rows], g.model.velocity_xy(x)))
        if not parts:
            return _EMPTY_OUTPUT
        if len(parts) == 1:
            box7, meta, score, velocity = parts[0]
        else:
            box7, meta, score, velocity = (np.concatenate(p) for p in zip(*parts))
        return TrackOutput(
            box7=box7,
            track_id=meta[:, _TRACK_ID],
            label=self._names[meta[:, _CLS]],
            score=score,
            detection_index=meta[:, _DET_INDEX],
            velocity_xy=velocity,
            last_detection_id=meta[:, _DET_ID],
            stream=meta[:, _STREAM],
        )


def _empty_output() -> TrackOutput:
    out = TrackOutput(np.zeros((0, MEAS_DIM)), np.zeros(0, np.int64), np.zeros(0, dtype=str), np.zeros(0),
                      np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64))
    for arr in vars(out).values():
        arr.flags.writeable = False
    return out


#: Shared by every frame without output tracks (read-only arrays, so sharing is safe).
_EMPTY_OUTPUT = _empty_output()


def stack_outputs(outputs: Sequence[TrackOutput]) -> tuple[np.ndarray, TrackOutput]:
    """The per-frame outputs of a sequence as one output.

    Args:
        outputs: F per-frame :class:`TrackOutput` (:meth:`Tracker.update` results in frame order).

    Returns:
        ((N,) int64 frame index of each row, the N rows of all frames in frame order).
    """
    if not outputs:
        return np.zeros(0, np.int64), _EMPTY_OUTPUT
    frame = np.repeat(np.arange(len(outputs)), [len(o) for o in outputs])
    return frame, TrackOutput(*(np.concatenate([getattr(o, f.name) for o in outputs]) for f in fields(TrackOutput)))


def boxes_to_box7(boxes: Boxes) -> np.ndarray:
    """(N, 7) rows (x, y, z, yaw, l, w, h) of gravity-aligned boxes."""
    return np.concatenate([boxes.center_m, boxes.yaw_rad[:, None], boxes.lwh_m], axis=1)


def track_sequence(
    detections_ego: Sequence[Boxes],
    timestamps_ns: np.ndarray,
    world_SE3_ego: SE3 | None = None,
    config: TrackerConfig | None = None,
) -> list[Boxes]:
    """Track a whole sequence, compensating the ego motion when poses are given.

    The detections of all frames move to the world frame in one batched transform and become box7 rows in one
    conversion, and the tracks of all frames come back as Boxes in one batched transform: no frame pays for building
    and validating Boxes or for quaternion conversions of its own.

    Args:
        detections_ego: per frame, the detections in that frame's ego frame (z up), with label and score.
        timestamps_ns: (F,) int64 frame times.
        world_SE3_ego: batch of F poses (one per frame) or None to track in the ego frame directly.
        config: tracker configuration.

    Returns:
        Per frame, the confirmed tracks as Boxes in that frame's ego frame, with track ids.

    Raises:
        ValueError: when the numbers of frames, timestamps and poses differ.
    """
    timestamps_ns = np.asarray(timestamps_ns, dtype=np.int64).reshape(-1)
    n = len(detections_ego)
    if timestamps_ns.shape[0] != n or (world_SE3_ego is not None and len(world_SE3_ego) != n):
        raise ValueError(f"{n} frames, {timestamps_ns.shape[0]} timestamps and "
                         f"{'no' if world_SE3_ego is None else len(world_SE3_ego)} poses must agree")
    if n == 0:
        return []
    tracker = Tracker(config)
    every = Boxes.concatenate(list(detections_ego))
    sizes = [len(b) for b in detections_ego]
    bounds = np.cumsum([0] + sizes).tolist()
    if world_SE3_ego is not None and len(every):
        every = every.transform(world_SE3_ego[np.repeat(np.arange(n), sizes)])
    box7_all = boxes_to_box7(every)
    t0 = int(timestamps_ns[0])
    outputs = []
    for i in range(n):
        lo, hi = bounds[i], bounds[i + 1]
        outputs.append(tracker.update(box7_all[lo:hi], every.label[lo:hi], every.score[lo:hi],
                                      (int(timestamps_ns[i]) - t0) * 1e-9))
    frame, stacked = stack_outputs(outputs)
    tracks = stacked.to_boxes()
    if world_SE3_ego is not None and len(tracks):
        tracks = tracks.transform(world_SE3_ego.inverse()[frame])
    out_bounds = np.cumsum([0] + [len(o) for o in outputs]).tolist()
    return [tracks[out_bounds[i]:out_bounds[i + 1]] for i in range(n)]
