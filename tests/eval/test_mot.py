"""CLEAR MOT, sAMOTA/AMOTA/AMOTP and HOTA against cases computed by hand and against TrackEval."""

from __future__ import annotations

import numpy as np
import pytest

from sensorlabel.eval.mot import SequenceData, amota, clear_counts, clear_mot, hota, recall_thresholds


def _hand_case() -> SequenceData:
    """2 GT tracks (A=0, B=1), 3 frames.

    f0: trk 0 on A (IoU 0.9), trk 1 on B (0.8).
    f1: trk 0 on A (0.7); B missed; trk 2 is a false positive (IoU 0 with both).
    f2: trk 0 on A (0.9); trk 3 on B (0.6): an ID switch for B (last matched to 1).
    """
    gt = [np.array([0, 1])] * 3
    trk = [np.array([0, 1]), np.array([0, 2]), np.array([0, 3])]
    sim = [np.array([[0.9, 0.0], [0.0, 0.8]]), np.array([[0.7, 0.0], [0.0, 0.0]]), np.array([[0.9, 0.0], [0.0, 0.6]])]
    return SequenceData(gt, trk, sim, name="hand")


def test_clear_by_hand():
    s = clear_mot([_hand_case()], threshold=0.5)
    # TP = 5 (A three times, B twice), FN = 1 (B in f1), FP = 1 (trk 2), IDS = 1 (B: 1 -> 3), GT = 6.
    assert (s["TP"], s["FN"], s["FP"], s["IDS"]) == (5, 1, 1, 1)
    assert s["MOTA"] == pytest.approx(1 - 3 / 6)
    assert s["MOTP"] == pytest.approx((0.9 + 0.8 + 0.7 + 0.9 + 0.6) / 5)
    assert s["precision"] == pytest.approx(5 / 6) and s["recall"] == pytest.approx(5 / 6)
    # B is tracked in f0, lost in f1, tracked again in f2: one fragmentation.
    assert s["FRAG"] == 1
    # A tracked 3/3 (MT), B 2/3 = 0.67 (PT).
    assert (s["MT"], s["PT"], s["ML"]) == (1, 1, 0)


def test_threshold_turns_weak_match_into_fp_and_fn():
    # At threshold 0.65 the 0.6 match of f2 no longer counts: one more FP and FN, and no ID switch.
    s = clear_mot([_hand_case()], threshold=0.65)
    assert (s["TP"], s["FN"], s["FP"], s["IDS"]) == (4, 2, 2, 0)


def test_continuity_beats_higher_similarity():
    # f1: GT 0 could take trk 1 (0.9) but keeps trk 0 (0.6 >= threshold) from f0: no ID switch.
    gt = [np.array([0]), np.array([0])]
    trk = [np.array([0]), np.array([0, 1])]
    sim = [np.array([[0.8]]), np.array([[0.6, 0.9]])]
    s = clear_counts(SequenceData(gt, trk, sim), 0.5)
    assert (s.tp, s.fp, s.ids) == (2, 1, 0)


def _random_sequence(rng: np.random.Generator, frames: int = 25) -> SequenceData:
    n_gt, n_trk = int(rng.integers(1, 6)), int(rng.integers(1, 7))
    gt_ids, trk_ids, sims = [], [], []
    for _ in range(frames):
        g = np.flatnonzero(rng.random(n_gt) < 0.7)
        t = np.flatnonzero(rng.random(n_trk) < 0.7)
        s = rng.random((g.size, t.size))
        s[s < 0.3] = 0.0
        gt_ids.append(g)
        trk_ids.append(t)
        sims.append(s)
    # Make ids contiguous as the metrics expect.
    ug = np.unique(np.concatenate(gt_ids)) if any(len(g) for g in gt_ids) else np.zeros(0, int)
    ut = np.unique(np.concatenate(trk_ids)) if any(len(t) for t in trk_ids) else np.zeros(0, int)
    gt_ids = [np.searchsorted(ug, g) for g in gt_ids]
    trk_ids = [np.searchsorted(ut, t) for t in trk_ids]
    return SequenceData(gt_ids, trk_ids, sims)


@pytest.mark.parametrize("seed", range(12))
def test_clear_matches_trackeval(seed):
    from trackeval.metrics import CLEAR

    rng = np.random.default_rng(seed)
    data = _random_sequence(rng)
    threshold = float(rng.choice([0.25, 0.5, 0.7]))
    ref = CLEAR({"THRESHOLD": threshold, "PRINT_CONFIG": False}).eval_sequence(data.to_trackeval())
    ours = clear_counts(data, threshold)
    assert (ours.tp, ours.fp, ours.fn, ours.ids, ours.frag) == (
        ref["CLR_TP"], ref["CLR_FP"], ref["CLR_FN"], ref["IDSW"], ref["Frag"])
    assert (ours.mt, ours.pt, ours.ml) == (ref["MT"], ref["PT"], ref["ML"])
    assert ours.summary()["MOTA"] == pytest.approx(ref["MOTA"])
    assert ours.summary()["MOTP"] == pytest.approx(ref["MOTP"])


def test_hota_perfect_and_split():
    gt = [np.array([0])] * 10
    perfect = SequenceData(gt, [np.array([0])] * 10, [np.array([[1.0]])] * 10)
    assert hota([perfect])["HOTA"] == pytest.approx(1.0)
    # Same detections but the tracker changes id half way: DetA stays 1, AssA halves -> HOTA = sqrt(0.5).
    split = SequenceData(gt, [np.array([0])] * 5 + [np.array([1])] * 5, [np.array([[1.0]])] * 10)
    h = hota([split])
    assert h["DetA"] == pytest.approx(1.0)
    assert h["AssA"] == pytest.approx(0.5)
    assert h["HOTA"] == pytest.approx(np.sqrt(0.5))


def test_recall_thresholds_steps_of_one_fortieth():
    # 80 GT, 40 TPs of equal score: recall reaches 0.5 -> points 1/40 .. 20/40.
    thr, rec = recall_thresholds(np.full(40, 0.7), num_gt=80)
    assert np.allclose(rec, np.arange(1, 21) / 40)
    assert np.all(thr == 0.7)


def _tracks(n_frames: int, tracked: list[int], n_gt_tracks: int, score: float = 0.8) -> SequenceData:
    gt = [np.arange(n_gt_tracks)] * n_frames
    trk = [np.arange(len(tracked))] * n_frames
    sim = np.zeros((n_gt_tracks, len(tracked)))
    sim[tracked, np.arange(len(tracked))] = 0.9
    return SequenceData(gt, trk, [sim] * n_frames, [np.full(len(tracked), score)] * n_frames)


def test_amota_perfect_tracker():
    r = amota([_tracks(40, [0, 1], 2)], threshold=0.25)
    # 80 GT all tracked: 40 recall points, each with sMOTA = MOTA = 1 and MOTP = 0.9.
    assert len(r["recalls"]) == 40
    assert r["sAMOTA"] == pytest.approx(1.0) and r["AMOTA"] == pytest.approx(1.0)
    assert r["AMOTP"] == pytest.approx(0.9)


def test_amota_half_recall_by_hand():
    # One of two GT tracks tracked perfectly: recall reaches 0.5 -> points r = 1/40 .. 20/40.
    # FN = 40, n_gt = 80: sMOTA_r = 1 - (40 - (1 - r) 80) / (80 r) = 0.5 / r -> clipped to 1 for r <= 0.5;
    # MOTA_r = 0.5. sAMOTA = 20 / 40, AMOTA = 20 * 0.5 / 40.
    r = amota([_tracks(40, [0], 2)], threshold=0.25)
    assert r["sAMOTA"] == pytest.approx(0.5)
    assert r["AMOTA"] == pytest.approx(0.25)
    assert r["AMOTP"] == pytest.approx(20 * 0.9 / 40)


def test_amota_low_confidence_false_track_is_thresholded_away():
    # A perfect track (score 0.9) plus a false track (score 0.1): at every sampled threshold (0.9) the false track
    # is removed, so sAMOTA stays 1 while plain MOTA pays for the false positives.
    gt = [np.array([0])] * 40
    trk = [np.array([0, 1])] * 40
    sim = [np.array([[0.9, 0.0]])] * 40
    scores = [np.array([0.9, 0.1])] * 40
    data = SequenceData(gt, trk, sim, scores)
    assert clear_mot([data], 0.25)["MOTA"] == pytest.approx(0.0)
    r = amota([data], 0.25)
    assert r["sAMOTA"] == pytest.approx(39 / 40)  # 40 TPs for 40 GT: the walk reaches points 1/40 .. 39/40 only
