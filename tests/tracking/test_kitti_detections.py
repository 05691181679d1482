"""KITTI detection CSV I/O and the `sensorlabel track` / `sensorlabel eval tracking` commands on tiny folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sensorlabel.cli import main
from sensorlabel.errors import FormatError
from sensorlabel.formats.kitti import KittiLabelTable, read_kitti_tracking_labels, write_kitti_tracking_labels
from sensorlabel.tracking.kitti_detections import read_kitti_detections, track_kitti_sequences, write_kitti_detections


def _ground_truth(num_frames: int = 12) -> KittiLabelTable:
    """Two cars driving away from the camera (rect: z forward) and one pedestrian crossing, all in view."""
    rows = []
    for f in range(num_frames):
        rows.append((f, 0, "Car", (500.0, 170.0, 600.0, 230.0), (1.5, 1.6, 3.9), (-3.0, 1.7, 15.0 + 0.8 * f), 0.0))
        rows.append((f, 1, "Car", (700.0, 170.0, 800.0, 230.0), (1.5, 1.7, 4.2), (3.0, 1.7, 25.0 + 0.5 * f), 0.05))
        rows.append((f, 2, "Pedestrian", (600.0, 150.0, 630.0, 250.0), (1.75, 0.6, 0.8), (-1.0 + 0.14 * f, 1.7, 10.0),
                     1.57))
    n = len(rows)
    return KittiLabelTable(
        frame=[r[0] for r in rows], track_id=[r[1] for r in rows], type=[r[2] for r in rows], truncated=np.zeros(n),
        occluded=np.zeros(n, np.int64), alpha=np.zeros(n), bbox_2d_px=[r[3] for r in rows],
        hwl_m=[r[4] for r in rows], location_rect_m=[r[5] for r in rows], rotation_y_rad=[r[6] for r in rows],
        score=np.full(n, np.nan))


def _detections(gt: KittiLabelTable, seed: int = 0) -> KittiLabelTable:
    rng = np.random.default_rng(seed)
    n = len(gt)
    return KittiLabelTable(gt.frame, np.full(n, -1), gt.type, gt.truncated, gt.occluded, gt.alpha, gt.bbox_2d_px,
                           gt.hwl_m, gt.location_rect_m + rng.normal(0, 0.05, (n, 3)), gt.rotation_y_rad,
                           rng.uniform(0.5, 1.0, n))


def test_detection_csv_round_trip(tmp_path):
    det = _detections(_ground_truth())
    path = write_kitti_detections(tmp_path / "0000.txt", det)
    back = read_kitti_detections(path)
    assert len(back) == len(det)
    assert back.type.tolist() == det.type.tolist()
    assert np.allclose(back.location_rect_m, det.location_rect_m, atol=1e-6)
    assert np.allclose(back.score, det.score, atol=1e-6)
    assert path.read_text().splitlines()[0].split(",")[1] == "2"  # Car is type 2


@pytest.mark.parametrize("line, message", [
    ("0,2,1,2,3,4,0.5,1.5,1.6,3.9,1.0,1.6,10.0,0.1", "expected 15"),
    ("0,2,1,2,3,4,0.5,1.5,1.6,abc,1.0,1.6,10.0,0.1,0.0", "field l = 'abc'"),
    ("0,7,1,2,3,4,0.5,1.5,1.6,3.9,1.0,1.6,10.0,0.1,0.0", "field type = '7'"),
    ("-1,2,1,2,3,4,0.5,1.5,1.6,3.9,1.0,1.6,10.0,0.1,0.0", "field frame"),
    ("0,2,1,2,3,4,0.5,0,1.6,3.9,1.0,1.6,10.0,0.1,0.0", "field h = 0.0 must be positive"),
    ("0,2,1,2,3,4,nan,1.5,1.6,3.9,1.0,1.6,10.0,0.1,0.0", "field score"),
])
def test_malformed_detection_lines(tmp_path, line, message):
    path = tmp_path / "0001.txt"
    path.write_text("0,2,1,2,3,4,0.5,1.5,1.6,3.9,1.0,1.6,10.0,0.1,0.0\n" + line + "\n")
    with pytest.raises(FormatError, match="line 2") as err:
        read_kitti_detections(path)
    assert message in str(err.value) and "0001.txt" in str(err.value)


def test_track_and_eval_commands_on_a_tiny_folder(tmp_path, capsys):
    gt = _ground_truth()
    gt_dir, det_dir, out_dir = tmp_path / "gt", tmp_path / "det", tmp_path / "out"
    gt_dir.mkdir()
    write_kitti_tracking_labels(gt_dir / "0000.txt", gt)
    write_kitti_detections(det_dir / "0000.txt", _detections(gt))
    assert main(["track", "--detections", str(det_dir), "--format", "kitti-tracking", "--out", str(out_dir)]) == 0
    result = read_kitti_tracking_labels(out_dir / "0000.txt")
    assert (out_dir / "tracker_config.json").is_file()
    # 3 objects in all 12 frames, each one track, boxes back in rect close to the truth.
    assert len(result) == len(gt)
    assert len(np.unique(result.track_id)) == 3
    assert np.isfinite(result.score).all()
    order_r = np.lexsort((result.location_rect_m[:, 0], result.frame))
    order_g = np.lexsort((gt.location_rect_m[:, 0], gt.frame))
    assert np.abs(result.location_rect_m[order_r] - gt.location_rect_m[order_g]).max() < 0.2
    assert np.abs(result.hwl_m[order_r] - gt.hwl_m[order_g]).max() < 1e-6

    capsys.readouterr()
    assert main(["eval", "tracking", "--gt", str(gt_dir), "--results", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "Car" in printed and "sAMOTA" in printed
    report = json.loads((out_dir / "tracking_eval.json").read_text())
    car = report["classes"]["Car"]
    assert car["MOTA"] == pytest.approx(1.0) and car["IDS"] == 0 and car["TP"] == 24
    assert report["classes"]["Pedestrian"]["TP"] == 12


def test_track_command_malformed_file_exits_2_with_one_line(tmp_path, capsys):
    det_dir = tmp_path / "det"
    det_dir.mkdir()
    (det_dir / "0003.txt").write_text("0,2,1,2,3,4,0.5,1.5,1.6,3.9,1.0,1.6,10.0,0.1,0.0\n0,2,1,2,3\n")
    assert main(["track", "--detections", str(det_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0003.txt" in err[0] and "line 2" in err[0]
    assert main(["track", "--detections", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2


def test_lockstep_batch_equals_one_sequence_at_a_time():
    a, b = _detections(_ground_truth(), 1), _detections(_ground_truth(), 2)
    together = track_kitti_sequences([a, b])
    alone = [track_kitti_sequences([a])[0], track_kitti_sequences([b])[0]]
    for x, y in zip(together, alone):
        assert len(x) == len(y)
        assert np.allclose(x.location_rect_m, y.location_rect_m) and np.array_equal(x.frame, y.frame)
