"""KITTI calibration/label text, box conversions, importers and exporters, against the real KITTI labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats.kitti import (
    KittiLabelTable,
    boxes_velo_to_kitti,
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
from sensorlabel.geometry.se3 import SE3

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


# ----- importers and exporters ---------------------------------------------------------------------------------------
from sensorlabel.formats.kitti import (  # noqa: E402
    export_kitti_object,
    export_kitti_tracking,
    import_kitti_object,
    import_kitti_raw,
    import_kitti_tracking,
    oxts_to_world_SE3_imu,
    read_kitti_velodyne,
)


def _same_boxes(a, b) -> None:
    ra, rb = a.labels.query(), b.labels.query()
    assert len(ra) == len(rb) and np.array_equal(ra.frame, rb.frame)
    assert np.abs(ra.boxes.center_m - rb.boxes.center_m).max() < 1e-6
    assert np.abs(ra.boxes.lwh_m - rb.boxes.lwh_m).max() < 1e-6
    dq = np.abs(np.einsum("ij,ij->i", ra.boxes.quat_wxyz, rb.boxes.quat_wxyz))
    assert (2 * np.arccos(np.clip(dq, 0, 1))).max() < 1e-6
    assert list(ra.boxes.label) == list(rb.boxes.label)


def test_object_import_export_import(shared_data, tmp_path):
    src = shared_data / "kitti_object_3frames"
    drive = import_kitti_object(src, tmp_path / "obj.drive")
    assert drive.num_frames == 3 and drive.lidar_names == ["velodyne"] and drive.camera_names == ["image_02"]
    assert np.array_equal(drive.lidar_sweep("velodyne", 1).points,
                          read_kitti_velodyne(src / "training/velodyne/000001.bin"))
    assert drive.camera_image_bytes("image_02", 2) == (src / "training/image_2/000002.png").read_bytes()
    files = export_kitti_object(drive, tmp_path / "out")
    for stem in ("000000", "000001", "000002"):
        assert (tmp_path / f"out/label_2/{stem}.txt").read_text() == (src / f"training/label_2/{stem}.txt").read_text()
    assert len(files) == 6
    again = import_kitti_object(tmp_path / "out", tmp_path / "again.drive")
    _same_boxes(drive, again)
    # every labelled box holds Velodyne points in the ego (Velodyne) frame
    rec = drive.labels.boxes_at(1)
    assert (rec.boxes.count_points(drive.frame_sweep(1).xyz_sensor) >= 5).all()  # 70, 9, 18 points (the car at 58 m)


def test_object_export_of_edited_box_projects_2d(shared_data, tmp_path):
    drive = import_kitti_object(shared_data / "kitti_object_mmdet3d_000008", tmp_path / "mm.drive")
    rec = drive.labels.boxes_at(0)
    drive.labels.update_box(int(rec.box_id[1]), center_m=rec.boxes.center_m[1] + [0.0, 0.0, 0.0001])
    export_kitti_object(drive, tmp_path / "out")
    src = read_kitti_object_labels(shared_data / "kitti_object_mmdet3d_000008/derived/label_2_000008.txt")
    out = read_kitti_object_labels(tmp_path / "out/label_2/000008.txt")
    assert len(out) == len(src) and (out.is_dont_care == src.is_dont_care).sum() >= len(src) - 2
    assert np.allclose(np.sort(out.location_rect_m[~out.is_dont_care], axis=0),
                       np.sort(src.location_rect_m[~src.is_dont_care], axis=0), atol=0.006)
    boxed_out, boxed_src = out[~out.is_dont_care], src[~src.is_dont_care]
    # every exported 2D box (kept or re-projected) overlaps its labelled one
    ious = [_iou_2d(boxed_out.bbox_2d_px[[i]], boxed_src.bbox_2d_px[[np.argmin(np.abs(
        boxed_src.location_rect_m - boxed_out.location_rect_m[i]).sum(1))]])[0] for i in range(len(boxed_out))]
    assert min(ious) >= 0.85


@pytest.mark.parametrize("seq", TRACKING_SEQS)
def test_tracking_sequence_round_trip(shared_data, tmp_path, seq):
    """Each of the 10 labelled sequences: labels+calib-only import; the exported label_02 equals the source file
    (so the 3D values survive ego -> rect at printed precision); on three sequences the export is imported again and
    gives the same boxes (identical text re-imports identically on the others)."""
    src = shared_data / "kitti_tracking"
    drive = import_kitti_tracking(src, tmp_path / f"{seq}.drive", sequence=seq)
    table = read_kitti_tracking_labels(src / f"training/label_02/{seq}.txt")
    assert drive.num_frames == table.frame.max() + 1 and not drive.lidar_names
    assert len(drive.labels.query()) == (~table.is_dont_care).sum()
    export_kitti_tracking(drive, tmp_path / "out")
    assert (tmp_path / f"out/label_02/{seq}.txt").read_text() == (src / f"training/label_02/{seq}.txt").read_text()
    if seq in ("0000", "0017", "0020"):
        again = import_kitti_tracking(tmp_path / "out", tmp_path / f"{seq}b.drive", sequence=seq)
        _same_boxes(drive, again)


def test_tracking_with_velodyne_images_oxts(shared_data, tmp_path):
    """A synthetic tracking sequence with sweeps, images and OXTS: poses follow the devkit's Mercator formula."""
    root = tmp_path / "training"
    obj = shared_data / "kitti_object_3frames/training"
    (root / "calib").mkdir(parents=True)
    (root / "calib/0001.txt").write_text((shared_data / "kitti_tracking/training/calib/0001.txt").read_text())
    for k in range(3):
        (root / "velodyne/0001").mkdir(parents=True, exist_ok=True)
        (root / "image_02/0001").mkdir(parents=True, exist_ok=True)
        (root / f"velodyne/0001/{k:06d}.bin").write_bytes((obj / f"velodyne/{k:06d}.bin").read_bytes())
        (root / f"image_02/0001/{k:06d}.png").write_bytes((obj / "image_2/000001.png").read_bytes())
    lat0, lon0 = 49.0, 8.4
    lines = []
    for k in range(3):  # driving north 1 m per frame, heading north (yaw = pi/2 in the ENU-like Mercator frame)
        lat = lat0 + k * 1.0 / 6378137.0 * 180 / np.pi / np.cos(np.radians(lat0)) * np.cos(np.radians(lat0))
        lines.append(" ".join(str(v) for v in [lat, lon0, 110.0, 0.0, 0.0, np.pi / 2] + [0] * 24))
    (root / "oxts").mkdir()
    (root / "oxts/0001.txt").write_text("\n".join(lines) + "\n")
    drive = import_kitti_tracking(tmp_path, tmp_path / "t.drive", sequence="0001")
    assert drive.num_frames == 3 and drive.has_poses
    calib = read_kitti_calib(root / "calib/0001.txt")
    world_SE3_velo = drive.world_SE3_ego(drive.frame_timestamps_ns)
    imu_step = world_SE3_velo.compose(calib.velo_SE3_imu)  # back to the IMU
    # the IMU moves ~1 m per frame along its own x (forward) axis
    step = np.linalg.norm(np.diff(imu_step.translation, axis=0), axis=1)
    assert np.allclose(step, 1.0, atol=2e-3)
    assert np.allclose(imu_step[0].inverse().transform_points(imu_step.translation)[:, 1:], 0, atol=1e-3)
    world, origin = oxts_to_world_SE3_imu(np.array([[float(v) for v in l.split()] for l in lines]))
    assert world[0].allclose(SE3.identity(), 1e-9) and origin["lat_deg"] == lat0
    assert drive.frame_camera_index(1, "image_02") == 1


def test_kitti_raw_layout(shared_data, tmp_path):
    date = tmp_path / "2011_09_26"
    drive_dir = date / "2011_09_26_drive_0001_sync"
    c = read_kitti_calib(shared_data / "kitti_object_3frames/training/calib/000001.txt")
    fmt = lambda a: " ".join(f"{v:.12e}" for v in np.ravel(a))  # noqa: E731
    (date).mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text("calib_time: 09-Jan-2012 13:57:47\n" + "".join(
        f"P_rect_0{i}: {fmt(c.projection(i))}\n" for i in range(4)) + f"R_rect_00: {fmt(c.R0_rect)}\nS_rect_02: 1.242000e+03 3.750000e+02\n")
    m = c.cam_SE3_velo
    (date / "calib_velo_to_cam.txt").write_text(f"calib_time: x\nR: {fmt(m.rotation)}\nT: {fmt(m.translation)}\n")
    (date / "calib_imu_to_velo.txt").write_text(
        f"R: {fmt(c.velo_SE3_imu.rotation)}\nT: {fmt(c.velo_SE3_imu.translation)}\n")
    obj = shared_data / "kitti_object_3frames/training"
    for sub in ("velodyne_points", "image_02", "oxts"):
        (drive_dir / sub / "data").mkdir(parents=True)
        stamps = [f"2011-09-26 13:02:25.{100 * k + 10 + (sub == 'image_02'):03d}000000" for k in range(2)]
        (drive_dir / sub / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    for k in range(2):
        (drive_dir / f"velodyne_points/data/{k:010d}.bin").write_bytes((obj / "velodyne/000001.bin").read_bytes())
        (drive_dir / f"image_02/data/{k:010d}.png").write_bytes((obj / "image_2/000001.png").read_bytes())
        (drive_dir / f"oxts/data/{k:010d}.txt").write_text(" ".join(["49.0", "8.4", "100", "0", "0", "0"] + ["0"] * 24))
    drive = import_kitti_raw(drive_dir, tmp_path / "raw.drive")
    assert drive.num_frames == 2 and drive.has_poses
    assert drive.frame_timestamps_ns[1] - drive.frame_timestamps_ns[0] == 100_000_000
    assert drive.frame_timestamps_ns[0] == np.datetime64("2011-09-26T13:02:25.010", "ns").astype(np.int64)
    cam = drive.sensors["image_02"]
    # the camera model reproduces P2 on a rect point: ego(velo) -> cam -> pixels
    p_velo = np.array([[15.0, 1.0, -0.5]])
    p_rect = c.rect_SE3_velo.transform_points(p_velo)
    uvw = np.c_[p_rect, [1.0]] @ c.P2.T
    uv, ok = cam.camera.project(cam.ego_SE3_sensor.inverse().transform_points(p_velo))
    assert ok[0] and np.allclose(uv[0], uvw[0, :2] / uvw[0, 2], atol=1e-6)


def test_importer_bad_input(shared_data, tmp_path):
    root = tmp_path / "training"
    for sub in ("calib", "label_2", "velodyne"):
        (root / sub).mkdir(parents=True)
    obj = shared_data / "kitti_object_3frames/training"
    (root / "calib/000000.txt").write_text((obj / "calib/000000.txt").read_text())
    (root / "label_2/000000.txt").write_text((obj / "label_2/000000.txt").read_text())
    (root / "velodyne/000000.bin").write_bytes((obj / "velodyne/000000.bin").read_bytes()[:-6])
    with pytest.raises(FormatError, match="not a multiple of 16"):
        import_kitti_object(tmp_path, tmp_path / "x.drive")
    assert not (tmp_path / "x.drive").exists()
    with pytest.raises(FormatError, match="not a KITTI object folder"):
        import_kitti_object(tmp_path / "nothing", tmp_path / "y.drive")
    with pytest.raises(FormatError, match="pass sequence"):
        import_kitti_tracking(shared_data / "kitti_tracking", tmp_path / "z.drive")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (5, 3), (99, 1)])
def test_velodyne_non_finite_value_names_the_point(tmp_path, bad, where):
    """Any NaN or +-inf anywhere in a sweep is a FormatError naming the file and the first bad point."""
    points = np.random.default_rng(0).uniform(-80, 80, (100, 4)).astype("<f4")
    path = tmp_path / "000000.bin"
    points.tofile(path)
    assert np.array_equal(read_kitti_velodyne(path), points)  # finite values read back exactly
    points[where] = bad
    points.tofile(path)
    with pytest.raises(FormatError) as info:
        read_kitti_velodyne(path)
    assert str(path) in str(info.value) and f"point {where[0]} is not finite" in str(info.value)
