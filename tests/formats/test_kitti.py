"""KITTI calibration/label text, box conversions, importers and exporters, against the real KITTI labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats.kitti import (
    KittiLabelTable,
    boxes_velo_to_kitti,
    format_kitti_object_lines,
    format_kitti_tracking_lines,
    kitti_to_boxes_rect,
    kitti_to_boxes_velo,
    project_boxes_to_image,
    read_kitti_calib,
    read_kitti_object_labels,
    read_kitti_tracking_labels,
    write_kitti_calib,
    write_kitti_object_labels,
    write_kitti_tracking_labels,
)
from sensorlabel.geometry.boxes import Boxes

TRACKING_SEQS = ["0000", "0002", "0003", "0004", "0005", "0007", "0009", "0011", "0017", "0020"]

TRACKING_CALIB_ORIGINAL_KEYS = """P0: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
P1: 7.215377e+02 0.000000e+00 6.095593e+02 -3.875744e+02 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
P2: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
P3: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
R_rect 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
Tr_velo_cam 7.533745e-03 -9.999714e-01 -6.166020e-04 -4.069766e-03 1.480249e-02 7.280733e-04 -9.998902e-01 -7.631618e-02 9.998621e-01 7.523790e-03 1.480755e-02 -2.717806e-01
Tr_imu_velo 9.999976e-01 7.553071e-04 -2.035826e-03 -8.086759e-01 -7.854027e-04 9.998898e-01 -1.482298e-02 3.195559e-01 2.024406e-03 1.482454e-02 9.998881e-01 -7.997231e-01
"""


def _random_table(rng: np.random.Generator, n: int) -> KittiLabelTable:
    return KittiLabelTable(
        frame=rng.integers(0, 50, n), track_id=rng.integers(0, 20, n), type=np.array(["Car"] * n),
        truncated=np.zeros(n), occluded=np.zeros(n, np.int64), alpha=rng.uniform(-3, 3, n),
        bbox_2d_px=rng.uniform(0, 300, (n, 4)), hwl_m=rng.uniform(0.5, 5, (n, 3)),
        location_rect_m=rng.uniform(-20, 40, (n, 3)), rotation_y_rad=rng.uniform(-np.pi + 1e-6, np.pi, n),
        score=np.full(n, np.nan),
    )


# ----- calibration ----------------------------------------------------------------------------------------------------
def test_calib_tracking_keys_equal_object_keys(tmp_path, shared_data):
    original = tmp_path / "0000.txt"
    original.write_text(TRACKING_CALIB_ORIGINAL_KEYS)
    a = read_kitti_calib(original)
    b = read_kitti_calib(shared_data / "kitti_tracking/training/calib/0000.txt")
    assert np.allclose(a.P2, b.P2)
    assert a.rect_SE3_velo.allclose(b.rect_SE3_velo, atol=1e-6)
    assert a.velo_SE3_imu.allclose(b.velo_SE3_imu, atol=1e-6)
    # Velodyne x (forward) is rect z (forward), Velodyne z (up) is rect -y.
    r = b.rect_SE3_velo.rotation
    assert r[2, 0] > 0.999 and r[1, 2] < -0.999


def test_calib_write_read_round_trip(tmp_path, shared_data):
    calib = read_kitti_calib(shared_data / "kitti_object_3frames/training/calib/000000.txt")
    again = read_kitti_calib(write_kitti_calib(tmp_path / "c.txt", calib))
    assert again.rect_SE3_velo.allclose(calib.rect_SE3_velo, atol=1e-12)
    assert np.array_equal(again.P2, calib.P2)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda t: t.replace("R_rect 9.999239e-01", "R_rect 5.0"), "R0_rect: rotation is not orthonormal"),
        (lambda t: t.replace("-3.875744e+02", "abc"), "'abc'"),
        (lambda t: t.replace("-3.875744e+02", "nan"), "'nan'"),
        (lambda t: t.replace("Tr_velo_cam 7.533745e-03 ", "Tr_velo_cam "), "expected 12 numbers, got 11"),
        (lambda t: "\n".join(t.splitlines()[:4]), "lacks R0_rect, Tr_velo_to_cam"),
        (lambda t: "", "lacks P0"),
    ],
)
def test_calib_bad_input_names_key_and_value(tmp_path, mutate, needle):
    path = tmp_path / "calib.txt"
    path.write_text(mutate(TRACKING_CALIB_ORIGINAL_KEYS))
    with pytest.raises(FormatError) as info:
        read_kitti_calib(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_calib_missing_and_binary_file(tmp_path):
    with pytest.raises(FormatError, match="cannot read"):
        read_kitti_calib(tmp_path / "none.txt")
    (tmp_path / "bin.txt").write_bytes(b"P0: \xff\xfe")
    with pytest.raises(FormatError, match="not UTF-8"):
        read_kitti_calib(tmp_path / "bin.txt")


# ----- label text ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seq", TRACKING_SEQS)
def test_tracking_labels_reprint_exactly(shared_data, tmp_path, seq):
    src = shared_data / f"kitti_tracking/training/label_02/{seq}.txt"
    table = read_kitti_tracking_labels(src)
    assert len(table) == len(src.read_text().splitlines())
    out = write_kitti_tracking_labels(tmp_path / f"{seq}.txt", table)
    assert out.read_text() == src.read_text()


def test_object_labels_reprint_exactly(shared_data, tmp_path):
    files = sorted((shared_data / "kitti_object_3frames/training/label_2").glob("*.txt"))
    files.append(shared_data / "kitti_object_mmdet3d_000008/derived/label_2_000008.txt")
    for src in files:
        table = read_kitti_object_labels(src, frame=7)
        assert (table.frame == 7).all() and (table.track_id == -1).all()
        assert write_kitti_object_labels(tmp_path / src.name, table).read_text() == src.read_text()


def test_label_table_values_and_mask(shared_data):
    table = read_kitti_tracking_labels(shared_data / "kitti_tracking/training/label_02/0000.txt")
    van = table[(table.frame == 0) & (table.track_id == 0)]
    assert len(van) == 1 and van.type[0] == "Van"
    assert np.allclose(van.hwl_m[0], [2.0, 1.823255, 4.433886])
    assert np.allclose(van.location_rect_m[0], [-4.552284, 1.858523, 13.410495])
    assert np.isnan(van.score).all()
    assert (table.track_id[table.is_dont_care] == -1).all()


def test_score_column_and_empty_file(tmp_path):
    path = tmp_path / "res.txt"
    path.write_text("3 5 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20 -1.57 0.912\n")
    table = read_kitti_tracking_labels(path)
    assert table.score[0] == pytest.approx(0.912)
    assert format_kitti_tracking_lines(table)[0].endswith(" 0.912000")
    path.write_text("")
    assert len(read_kitti_tracking_labels(path)) == 0
    assert len(read_kitti_object_labels(path)) == 0


@pytest.mark.parametrize(
    "line, needle",
    [
        ("0 1 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20", "expected 17 or 18 fields, got 16"),
        ("0 1 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20 x", "rotation_y is not a number: 'x'"),
        ("0 1 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 inf 20 1", "y is not finite"),
        ("-2 1 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20 1", "frame must be an integer"),
        ("0 1.5 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20 1", "track_id must be an integer"),
        ("0 1 Car 0 7 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20 1", "occluded must be an integer -1..3"),
        ("0 1 Car 0 0 -1.5 1 2 30 40 1.5 0 3.9 1 1.7 20 1", "non-positive size"),
    ],
)
def test_tracking_labels_bad_lines(tmp_path, line, needle):
    path = tmp_path / "0000.txt"
    path.write_text("0 0 Car 0 0 -1.5 1 2 30 40 1.5 1.6 3.9 1 1.7 20 1\n" + line + "\n")
    with pytest.raises(FormatError) as info:
        read_kitti_tracking_labels(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value) and needle in str(info.value)


# ----- box conversions ----------------------------------------------------------------------------------------------
def test_rect_convention_bottom_centre_and_heading():
    table = _random_table(np.random.default_rng(0), 1)
    table = KittiLabelTable(**{**table.__dict__, "rotation_y_rad": np.array([0.0]),
                               "location_rect_m": np.array([[1.0, 2.0, 10.0]]), "hwl_m": np.array([[1.5, 1.6, 4.0]])})
    boxes = kitti_to_boxes_rect(table)
    assert np.allclose(boxes.center_m, [[1.0, 2.0 - 0.75, 10.0]])
    assert np.allclose(boxes.lwh_m, [[4.0, 1.6, 1.5]])
    rot = boxes.rotation[0]
    assert np.allclose(rot[:, 0], [1, 0, 0]) and np.allclose(rot[:, 2], [0, -1, 0])  # heading = ry 0 = rect x
    corners = boxes.corners()[0]
    assert np.isclose(corners[:, 1].max(), 2.0)  # the bottom face (max y, y down) is at the label's y


def test_velo_round_trip_exact_random(shared_data):
    calib = read_kitti_calib(shared_data / "kitti_tracking/training/calib/0020.txt")
    table = _random_table(np.random.default_rng(1), 500)
    boxes = kitti_to_boxes_velo(table, calib)
    back = boxes_velo_to_kitti(boxes, calib, table.frame)
    assert np.abs(back.location_rect_m - table.location_rect_m).max() < 1e-9
    assert np.abs(back.hwl_m - table.hwl_m).max() < 1e-9
    assert np.abs(back.rotation_y_rad - table.rotation_y_rad).max() < 1e-9
    assert np.array_equal(back.track_id, table.track_id) and np.array_equal(back.frame, table.frame)
    # mmdetection3d's yaw_lidar = -ry - pi/2 holds to the small velo/rect misalignment
    d = np.angle(np.exp(1j * (boxes.yaw_rad - (-table.rotation_y_rad - np.pi / 2))))
    assert np.abs(d).max() < 0.01


def test_empty_conversions(shared_data):
    calib = read_kitti_calib(shared_data / "kitti_tracking/training/calib/0000.txt")
    assert len(kitti_to_boxes_velo(KittiLabelTable.empty(), calib)) == 0
    assert len(boxes_velo_to_kitti(Boxes.empty(), calib)) == 0


def _object_frames(shared_data: Path) -> list[tuple[Path, Path, Path]]:
    root = shared_data / "kitti_object_3frames/training"
    frames = [(root / f"label_2/{s}.txt", root / f"calib/{s}.txt", root / f"image_2/{s}.png") for s in ("000000", "000001", "000002")]
    mm = shared_data / "kitti_object_mmdet3d_000008"
    frames.append((mm / "derived/label_2_000008.txt", mm / "derived/calib_000008.txt", mm / "000008.png"))
    return frames


def test_projected_boxes_match_labelled_2d_boxes(shared_data):
    """Image bounds of the projected 3D boxes vs the labelled 2D boxes on the 4 real object frames (12 boxes).

    Only DontCare rows are left out (they have no 3D box); truncated boxes are kept, and the truncation derived
    from the clipped projection agrees with the labelled one.
    """
    import cv2

    ious, truncation_error = [], []
    for label, calib_path, image in _object_frames(shared_data):
        table = read_kitti_object_labels(label)
        calib = read_kitti_calib(calib_path)
        h, w = cv2.imread(str(image)).shape[:2]
        keep = ~table.is_dont_care
        bbox, truncated = project_boxes_to_image(kitti_to_boxes_rect(table[keep]), calib.P2, (w, h))
        ious.append(_iou_2d(bbox, table.bbox_2d_px[keep]))
        truncation_error.append(np.abs(truncated - table.truncated[keep]))
    ious = np.concatenate(ious)
    assert len(ious) == 12
    assert ious.min() >= 0.85, ious
    assert np.median(ious) >= 0.9, ious
    assert np.concatenate(truncation_error).max() < 0.05


def _iou_2d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo = np.maximum(a[:, :2], b[:, :2])
    hi = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)
