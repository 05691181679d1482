"""KITTI's evaluation rules (distractors, DontCare, minimum height) and the evaluation on the real labels."""

from __future__ import annotations

import numpy as np
import pytest

from sensorlabel.eval.kitti_filter import evaluate_kitti_tracking, kitti_sequence_data
from sensorlabel.eval.mot import clear_mot
from sensorlabel.formats.kitti import KittiLabelTable, read_kitti_tracking_labels, write_kitti_tracking_labels


def _table(rows) -> KittiLabelTable:
    """rows: (frame, id, type, truncated, occluded, bbox, location_rect, score)."""
    n = len(rows)
    return KittiLabelTable(
        frame=[r[0] for r in rows], track_id=[r[1] for r in rows], type=[r[2] for r in rows],
        truncated=[r[3] for r in rows], occluded=[r[4] for r in rows], alpha=np.zeros(n),
        bbox_2d_px=[r[5] for r in rows],
        hwl_m=[(-1.0, -1.0, -1.0) if r[2] == "DontCare" else (1.5, 1.6, 3.9) for r in rows],
        location_rect_m=[r[6] for r in rows], rotation_y_rad=np.zeros(n), score=[r[7] for r in rows])


BIG = (100.0, 100.0, 200.0, 200.0)


def test_distractors_dont_care_and_small_boxes_are_ignored():
    nan = float("nan")
    gt = _table([
        (0, 0, "Car", 0, 0, BIG, (0.0, 1.7, 10.0), nan),          # counts
        (0, 1, "Van", 0, 0, BIG, (5.0, 1.7, 10.0), nan),          # neighbouring class: distractor
        (0, 2, "Car", 1, 0, BIG, (10.0, 1.7, 10.0), nan),         # truncated: distractor
        (0, 3, "Car", 0, 3, BIG, (15.0, 1.7, 10.0), nan),         # occlusion 3 > 2: distractor
        (0, 4, "Car", 0, 0, BIG, (20.0, 1.7, 10.0), nan),         # counts, missed -> FN
        (0, -1, "DontCare", -1, -1, (500.0, 100.0, 600.0, 200.0), (-1000.0, -1000.0, -1000.0), nan),
    ])
    res = _table([
        (0, 0, "Car", 0, 0, BIG, (0.0, 1.7, 10.0), 0.9),          # TP
        (0, 1, "Car", 0, 0, BIG, (5.0, 1.7, 10.0), 0.9),          # on the Van: removed
        (0, 2, "Car", 0, 0, BIG, (10.0, 1.7, 10.0), 0.9),         # on the truncated car: removed
        (0, 3, "Car", 0, 0, (510.0, 110.0, 590.0, 190.0), (40.0, 1.7, 30.0), 0.9),  # inside DontCare: removed
        (0, 4, "Car", 0, 0, (100.0, 100.0, 150.0, 120.0), (-20.0, 1.7, 30.0), 0.9),  # 20 px tall: removed
        (0, 5, "Car", 0, 0, BIG, (-40.0, 1.7, 30.0), 0.9),        # a real false positive
    ])
    data = kitti_sequence_data(gt, res, "Car", threshold=0.25)
    m = clear_mot([data], 0.25)
    assert (m["TP"], m["FP"], m["FN"]) == (1, 1, 1)
    # The Van would be a plain GT object for the class Van... and is none for Pedestrian: nothing counts there.
    assert clear_mot([kitti_sequence_data(gt, res, "Pedestrian")], 0.25)["num_gt"] == 0


def test_person_sitting_is_a_distractor_for_pedestrians():
    nan = float("nan")
    gt = _table([(0, 0, "Person_sitting", 0, 0, BIG, (0.0, 1.7, 10.0), nan)])
    res = _table([(0, 0, "Pedestrian", 0, 0, BIG, (0.0, 1.7, 10.0), 0.8)])
    m = clear_mot([kitti_sequence_data(gt, res, "Pedestrian")], 0.25)
    assert (m["TP"], m["FP"], m["FN"]) == (0, 0, 0)
    with pytest.raises(ValueError, match="not evaluated"):
        kitti_sequence_data(gt, res, "Tram")


def test_ground_truth_as_results_is_perfect_on_real_labels(shared_data, tmp_path):
    gt_dir = shared_data / "kitti_tracking" / "training" / "label_02"
    gt = read_kitti_tracking_labels(gt_dir / "0000.txt")
    res = gt[~gt.is_dont_care]
    res = KittiLabelTable(res.frame, res.track_id, res.type, res.truncated, res.occluded, res.alpha, res.bbox_2d_px,
                          res.hwl_m, res.location_rect_m, res.rotation_y_rad, np.full(len(res), 0.9))
    write_kitti_tracking_labels(tmp_path / "0000.txt", res)
    report = evaluate_kitti_tracking(gt_dir, tmp_path, ["0000"], classes=("Car", "Pedestrian", "Cyclist"))
    for cls, m in report["classes"].items():
        assert m["MOTA"] == pytest.approx(1.0), cls
        assert m["MOTP"] == pytest.approx(1.0), cls
        assert m["IDS"] == 0 and m["FP"] == 0 and m["FN"] == 0
        assert m["HOTA"] == pytest.approx(1.0), cls
    # 0000 has enough cars for all 40 recall points: a perfect tracker scores sAMOTA = AMOTA = 1.
    assert report["classes"]["Car"]["num_gt"] > 40
    assert report["classes"]["Car"]["sAMOTA"] == pytest.approx(1.0)
    # Van (distractor for Car) rows were kept in the results as Van: they are not Car rows, so they do not count.
    assert report["classes"]["Car"]["TP"] == int(np.sum((gt.type == "Car") & (gt.truncated == 0) & (gt.occluded <= 2)))
