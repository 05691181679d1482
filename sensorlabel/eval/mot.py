"""Multi-object tracking metrics: CLEAR MOT, sAMOTA / AMOTA / AMOTP and HOTA.

Input per sequence is a :class:`SequenceData`: per frame the ground-truth ids, the tracker ids and scores and the
(G_t, T_t) similarity matrix (3D IoU for the KITTI 3D benchmark), after any dataset filtering
(:mod:`sensorlabel.eval.kitti_filter`).

CLEAR MOT (Bernardin & Stiefelhagen, "Evaluating multiple object tracking performance: the CLEAR MOT metrics",
EURASIP JIVP 2008), with the matching conventions of TrackEval (Luiten et al.), against which it is tested:

* per frame, a ground truth matched in the previous frame keeps its tracker id if their similarity still reaches
  the threshold (a bonus of 1000 in the Hungarian score makes continuity win), the rest is the Hungarian
  assignment maximising the summed similarity over pairs at or above the threshold;
* ``IDS``: a ground truth matched to a different tracker id than the last time it was matched (any gap before);
* ``FRAG``: the times a ground-truth trajectory resumes being tracked after not being tracked, i.e. the number of
  tracked stretches minus one per trajectory;
* ``MOTA = 1 - (FN + FP + IDS) / num_gt``; ``MOTP`` = mean similarity of the true positives.

sAMOTA, AMOTA, AMOTP (Weng, Wang, Held, Kitani, "3D Multi-Object Tracking: A Baseline and New Evaluation Metrics",
IROS 2020, eqs. 2-5 and their KITTI evaluation script):

* every tracker id gets one confidence, the mean of its per-frame scores;
* recall is sampled at L = 40 points ``r in {1/40, ..., 1}`` (41 points including 0, which is dropped): the TP
  scores of an unthresholded evaluation are sorted and, walking down them, the score at which the recall is
  nearest to each point becomes that point's confidence threshold (points above the reachable recall are missing
  and count as 0);
* at each point the tracks with confidence below the threshold are removed and CLEAR is recomputed;
  ``sMOTA_r = max(0, 1 - (IDS_r + FP_r + FN_r - (1 - r) * num_gt) / (r * num_gt))`` (clipped to [0, 1]),
  ``MOTA_r`` and ``MOTP_r`` as above;
* ``sAMOTA = sum_r sMOTA_r / L``, ``AMOTA = sum_r MOTA_r / L``, ``AMOTP = sum_r MOTP_r / L``.

HOTA (Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-Object Tracking", IJCV 2021) is computed by
TrackEval's own ``trackeval.metrics.HOTA`` on the same similarity matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

_EPS = np.finfo(float).eps
#: Number of recall sample points of sAMOTA (including recall 0, which is dropped): L = 40.
NUM_RECALL_POINTS = 41


@dataclass(frozen=True)
class SequenceData:
    """One sequence (one class) ready for the metrics.

    Attributes:
        gt_ids: per frame (G_t,) int ids, contiguous 0..num_gt_ids-1 over the sequence.
        tracker_ids: per frame (T_t,) int ids, contiguous 0..num_tracker_ids-1.
        similarity: per frame (G_t, T_t) float similarity (e.g. 3D IoU).
        tracker_scores: per frame (T_t,) confidences (for sAMOTA); ones when absent.
        name: the sequence name.
    """

    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    tracker_scores: list[np.ndarray] = field(default=None)  # type: ignore[assignment]
    name: str = ""

    def __post_init__(self) -> None:
        n = len(self.gt_ids)
        if len(self.tracker_ids) != n or len(self.similarity) != n:
            raise ValueError(f"per-frame lists differ in length: {n}, {len(self.tracker_ids)}, {len(self.similarity)}")
        if self.tracker_scores is None:
            object.__setattr__(self, "tracker_scores", [np.ones(len(t)) for t in self.tracker_ids])
        for t in range(n):
            shape = (len(self.gt_ids[t]), len(self.tracker_ids[t]))
            if np.shape(self.similarity[t]) != shape:
                raise ValueError(f"frame {t}: similarity has shape {np.shape(self.similarity[t])}, expected {shape}")

    @property
    def num_frames(self) -> int:
        return len(self.gt_ids)

    @property
    def num_gt_ids(self) -> int:
        return int(max((g.max() + 1 for g in self.gt_ids if len(g)), default=0))

    @property
    def num_tracker_ids(self) -> int:
        return int(max((t.max() + 1 for t in self.tracker_ids if len(t)), default=0))

    def to_trackeval(self) -> dict:
        """The data dict TrackEval's metric classes take (``eval_sequence``)."""
        return {
            "num_timesteps": self.num_frames,
            "num_gt_ids": self.num_gt_ids,
            "num_tracker_ids": self.num_tracker_ids,
            "num_gt_dets": int(sum(len(g) for g in self.gt_ids)),
            "num_tracker_dets": int(sum(len(t) for t in self.tracker_ids)),
            "gt_ids": [np.asarray(g, dtype=int) for g in self.gt_ids],
            "tracker_ids": [np.asarray(t, dtype=int) for t in self.tracker_ids],
            "similarity_scores": [np.asarray(s, dtype=float) for s in self.similarity],
            "seq": self.name,
        }

    def with_min_track_score(self, threshold: float) -> SequenceData:
        """Drop every tracker detection with confidence below ``threshold`` (ids are not relabelled)."""
        keep = [s >= threshold for s in self.tracker_scores]
        return SequenceData(self.gt_ids, [t[k] for t, k in zip(self.tracker_ids, keep)],
                            [s[:, k] for s, k in zip(self.similarity, keep)],
                            [c[k] for c, k in zip(self.tracker_scores, keep)], self.name)

    def with_track_mean_scores(self) -> SequenceData:
        """Replace every tracker detection's score by the mean score of its tracker id (AB3DMOT's confidence)."""
        if self.num_frames == 0:
            return self
        ids = np.concatenate([np.asarray(t, dtype=np.int64) for t in self.tracker_ids])
        scores = np.concatenate(self.tracker_scores)
        n = self.num_tracker_ids
        mean = np.bincount(ids, scores, minlength=n) / np.maximum(np.bincount(ids, minlength=n), 1)
        return SequenceData(self.gt_ids, self.tracker_ids, self.similarity,
                            [mean[np.asarray(t, dtype=np.int64)] for t in self.tracker_ids], self.name)


@dataclass(frozen=True)
class ClearCounts:
    """Summable CLEAR counts of one or more sequences (see the module docstring)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    ids: int = 0
    frag: int = 0
    mt: int = 0
    pt: int = 0
    ml: int = 0
    similarity_sum: float = 0.0
    tp_scores: tuple = ()

    def __add__(self, other: ClearCounts) -> ClearCounts:
        return ClearCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.ids + other.ids,
                           self.frag + other.frag, self.mt + other.mt, self.pt + other.pt, self.ml + other.ml,
                           self.similarity_sum + other.similarity_sum, self.tp_scores + other.tp_scores)

    @property
    def num_gt(self) -> int:
        return self.tp + self.fn

    def summary(self) -> dict:
        """MOTA, MOTP, precision, recall and the counts, as a JSON-ready dict."""
        n_gt = self.num_gt
        return {
            "MOTA": 1.0 - (self.fn + self.fp + self.ids) / n_gt if n_gt else float("nan"),
            "MOTP": self.similarity_sum / self.tp if self.tp else 0.0,
            "precision": self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0,
            "recall": self.tp / n_gt if n_gt else 0.0,
            "TP": self.tp, "FP": self.fp, "FN": self.fn, "IDS": self.ids, "FRAG": self.frag,
            "MT": self.mt, "PT": self.pt, "ML": self.ml, "num_gt": n_gt,
        }


def clear_counts(data: SequenceData, threshold: float) -> ClearCounts:
    """CLEAR MOT counts of one sequence (conventions in the module docstring).

    Args:
        data: the sequence.
        threshold: minimum similarity of a true positive (e.g. 0.25 3D IoU).

    Returns:
        :class:`ClearCounts`, with the scores of the matched tracker detections in ``tp_scores``.
    """
    n_gt = data.num_gt_ids
    prev_any = np.full(n_gt, -1, np.int64)  # last tracker id each gt was matched to (any time before)
    prev_frame = np.full(n_gt, -1, np.int64)  # tracker id matched in the previous frame, -1 if none
    present = np.zeros(n_gt, np.int64)
    matched_count = np.zeros(n_gt, np.int64)
    stretches = np.zeros(n_gt, np.int64)
    tp = fp = fn = ids = 0
    sim_sum = 0.0
    tp_scores: list[np.ndarray] = []
    for gt_ids, trk_ids, sim, scores in zip(data.gt_ids, data.tracker_ids, data.similarity, data.tracker_scores):
        gt_ids = np.asarray(gt_ids, dtype=np.int64)
        trk_ids = np.asarray(trk_ids, dtype=np.int64)
        present[gt_ids] += 1
        if len(gt_ids) == 0 or len(trk_ids) == 0:
            # An empty side leaves the previous frame's matches in place for continuity (TrackEval's convention).
            fp += len(trk_ids)
            fn += len(gt_ids)
            continue
        sim = np.asarray(sim, dtype=float)
        ok = sim >= threshold - _EPS
        score = np.where(ok, 1000.0 * (trk_ids[None, :] == prev_frame[gt_ids][:, None]) + sim, 0.0)
        rows, cols = linear_sum_assignment(-score)
        real = score[rows, cols] > _EPS
        rows, cols = rows[real], cols[real]
        g, t = gt_ids[rows], trk_ids[cols]
        ids += int(np.sum((prev_any[g] >= 0) & (prev_any[g] != t)))
        stretches[g] += prev_frame[g] < 0
        prev_any[g] = t
        prev_frame[:] = -1
        prev_frame[g] = t
        matched_count[g] += 1
        tp += rows.size
        fn += len(gt_ids) - rows.size
        fp += len(trk_ids) - rows.size
        sim_sum += float(sim[rows, cols].sum())
        tp_scores.append(np.asarray(scores, dtype=float)[cols])
    seen = present > 0
    ratio = matched_count[seen] / present[seen]
    mt = int(np.sum(ratio > 0.8))
    pt = int(np.sum(ratio >= 0.2)) - mt
    return ClearCounts(tp, fp, fn, ids, int(np.sum(np.maximum(stretches - 1, 0))), mt, pt, n_gt - mt - pt, sim_sum,
                       tuple(np.concatenate(tp_scores).tolist()) if tp_scores else ())


def clear_mot(sequences: list[SequenceData], threshold: float) -> dict:
    """CLEAR MOT summed over sequences (MOTA, MOTP, IDS, FRAG, TP/FP/FN, precision, recall, MT/PT/ML)."""
    total = ClearCounts()
    for seq in sequences:
        total = total + clear_counts(seq, threshold)
    return total.summary()


def recall_thresholds(tp_scores: np.ndarray, num_gt: int,
                      num_points: int = NUM_RECALL_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Confidence thresholds sampling the recall at ``1/(num_points-1)`` steps (Weng et al., IROS 2020).

    Walking down the TP scores sorted high to low, the recall after i+1 TPs is ``(i+1)/num_gt``; the score at which
    it is nearest to the next sample point becomes that point's threshold. The point at recall 0 is dropped.

    Args:
        tp_scores: (K,) confidences of the true positives of an unthresholded evaluation.
        num_gt: number of ground-truth detections.
        num_points: sample points including recall 0 (41).

    Returns:
        (thresholds, recalls): equal-length arrays, recalls in {1/L, 2/L, ...} up to the reachable recall.
    """
    scores = np.sort(np.asarray(tp_scores, dtype=float))[::-1]
    step = 1.0 / (num_points - 1)
    thresholds, recalls = [], []
    current = 0.0
    last = len(scores) - 1
    # A sequential walk: each choice depends on the sample point reached so far (K is the number of TPs).
    for i, s in enumerate(scores):
        left = (i + 1) / num_gt
        right = (i + 2) / num_gt if i < last else left
        if (right - current) < (current - left) and i < last:
            continue
        thresholds.append(s)
        recalls.append(current)
        current += step
    return np.asarray(thresholds[1:]), np.asarray(recalls[1:])


def amota(sequences: list[SequenceData], threshold: float, num_points: int = NUM_RECALL_POINTS) -> dict:
    """sAMOTA, AMOTA and AMOTP over sequences (definitions in the module docstring).

    Args:
        sequences: per-sequence data with per-frame tracker scores.
        threshold: minimum similarity of a true positive.
        num_points: recall sample points including 0 (41, i.e. L = 40).

    Returns:
        dict with sAMOTA, AMOTA, AMOTP, the sampled recalls and per-point sMOTA/MOTA/MOTP.
    """
    scored = [s.with_track_mean_scores() for s in sequences]
    full = ClearCounts()
    for seq in scored:
        full = full + clear_counts(seq, threshold)
    thresholds, recalls = recall_thresholds(np.asarray(full.tp_scores), full.num_gt, num_points)
    L = num_points - 1
    smota, mota, motp = [], [], []
    for thr, r in zip(thresholds, recalls):
        c = ClearCounts()
        for seq in scored:
            # A 1e-9 tolerance: track means of equal scores differ in the last bit (sum / count).
            c = c + clear_counts(seq.with_min_track_score(thr - 1e-9), threshold)
        n_gt = c.num_gt
        errors = c.fn + c.fp + c.ids
        smota.append(min(1.0, max(0.0, 1.0 - (errors - (1.0 - r) * n_gt) / (r * n_gt))))
        mota.append(1.0 - errors / n_gt)
        motp.append(c.similarity_sum / c.tp if c.tp else 0.0)
    return {
        "sAMOTA": float(np.sum(smota) / L),
        "AMOTA": float(np.sum(mota) / L),
        "AMOTP": float(np.sum(motp) / L),
        "recalls": [float(r) for r in recalls],
        "sMOTA_at_recall": smota,
        "MOTA_at_recall": mota,
        "MOTP_at_recall": motp,
        "num_gt": full.num_gt,
    }


def hota(sequences: list[SequenceData]) -> dict:
    """HOTA, DetA, AssA, LocA (averaged over TrackEval's 19 alpha thresholds), combined over sequences.

    Uses ``trackeval.metrics.HOTA`` directly on the sequences' similarity matrices.
    """
    from trackeval.metrics import HOTA

    metric = HOTA()
    per_seq = {seq.name or str(i): metric.eval_sequence(seq.to_trackeval()) for i, seq in enumerate(sequences)}
    res = metric.combine_sequences(per_seq) if len(per_seq) > 1 else next(iter(per_seq.values()))
    return {key: float(np.mean(res[key])) for key in ("HOTA", "DetA", "AssA", "LocA")}
