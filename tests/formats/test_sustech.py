"""SUSTech POINTS: the real example scene (../shared/data/sustechpoints_example) and its round trip."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats import export_drive, import_drive
from sensorlabel.formats.pcd import parse_pcd_header, read_pcd
from sensorlabel.formats.sustech import read_sustech_calib, read_sustech_labels, read_sustech_pcd

pytestmark = pytest.mark.realdata
FRAMES = ["000950", "000965", "000970", "000975"]


@pytest.fixture(scope="module")
def scene(shared_data) -> Path:
    return shared_data / "sustechpoints_example"


@pytest.fixture(scope="module")
def drive(scene, tmp_path_factory):
    return import_drive("sustech", scene, tmp_path_factory.mktemp("sustech") / "scene.drive")


def _angle_diff(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi)


def test_real_layout_of_frame_000970(scene):
    points, fields, start_s = read_sustech_pcd(scene / "lidar" / "000970.pcd")
    assert fields == ("x", "y", "z", "intensity", "ring", "t_offset_s")
    assert points.shape == (66_899, 6)
    assert np.isfinite(points).all()
    assert points[:, 3].min() >= 0 and points[:, 3].max() <= 255
    assert points[:, 3].max() == 255  # the full intensity range is used: the field is not misaligned
    rings = points[:, 4]
    assert rings.min() == 0 and rings.max() == 39 and np.array_equal(rings, np.round(rings))
    span_s = points[:, 5].max() - points[:, 5].min()
    assert points[:, 5].min() == 0.0 and 0.095 < span_s < 0.1
    assert 1800 < start_s < 1830  # the sensor's clock, seconds


def test_generic_reader_applies_the_real_layout(scene):
    """The header's offsets are right for x, y, z, intensity and wrong for the time and ring; read_pcd knows."""
    real, _, start_s = read_sustech_pcd(scene / "lidar" / "000970.pcd")
    raw = (scene / "lidar" / "000970.pcd").read_bytes()
    header = parse_pcd_header(raw, "000970.pcd")
    assert header.is_sustech_layout and header.record_size == 48
    generic = read_pcd(scene / "lidar" / "000970.pcd")  # must not fail on the 3,848 trailing bytes
    assert generic.num_points == 66_899
    for j, name in enumerate(("x", "y", "z", "intensity", "ring")):
        np.testing.assert_array_equal(generic.columns[name], real[:, j])
    np.testing.assert_allclose(generic.columns["timestamp"] - start_s, real[:, 5], atol=1e-6)
    # what trusting the header would give: the time 4 bytes early, garbage
    implied = np.frombuffer(raw, "<f8", count=66_899 * 6, offset=header.data_offset + 20)[::6]
    assert not np.allclose(implied, generic.columns["timestamp"], atol=1.0)


def test_pcd_folder_import_of_sustech_sweeps(scene, tmp_path):
    drive = import_drive("pcd", scene / "lidar", tmp_path / "p.drive")
    sweep = drive.frame_sweep(2)
    assert sweep.fields == ("x", "y", "z", "intensity", "ring", "t_offset_s") and sweep.points.shape == (66_899, 6)
    assert 0.095 < float(sweep.field("t_offset_s").max()) < 0.1 and sweep.field("ring").max() == 39


def test_import_frames_cameras_and_calibration(drive):
    assert drive.num_frames == 4
    np.testing.assert_array_equal(drive.frame_timestamps_ns, [95_000_000_000, 96_500_000_000, 97_000_000_000,
                                                              97_500_000_000])
    assert drive.lidar_names == ["lidar"] and sorted(drive.camera_names) == ["front", "left", "right"]
    assert drive.metadata["frame_names"] == FRAMES
    assert "ego = lidar" in drive.metadata["poses"] and not drive.has_poses
    for cam in drive.camera_names:
        assert [drive.frame_camera_index(f, cam) for f in range(4)] == [-1, 0, 1, 2]
        assert drive.sensors[cam].camera.width_px == 2048 and drive.sensors[cam].camera.height_px == 1536
    sweep = drive.frame_sweep(2)
    assert sweep.points.shape == (66_899, 6)


def test_front_camera_sees_about_15k_points(drive):
    """The extrinsic is lidar->camera: inverted into ego_SE3_cam, the lidar points land in the front image."""
    sweep = drive.frame_sweep(2)
    front = drive.sensors["front"]
    points_cam = front.ego_SE3_sensor.inverse().transform_points(sweep.xyz_sensor.astype(np.float64))
    _, valid = front.camera.project(points_cam)
    assert 12_000 < int(valid.sum()) < 18_000


def test_boxes_match_the_label_files_and_keep_track_ids(drive, scene):
    tracks = {t.track_id: t for t in drive.labels.tracks()}
    records = drive.labels.query()
    track_of_obj = {}
    for frame, stem in enumerate(FRAMES):
        src = json.loads((scene / "label" / f"{stem}.json").read_text())
        at = records[records.frame == frame]
        assert len(at) == len(src)
        by_obj = {tracks[int(t)].attributes["obj_id"]: i for i, t in enumerate(at.boxes.track_id)}
        for obj in src:
            i = by_obj[obj["obj_id"]]
            psr = obj["psr"]
            np.testing.assert_allclose(at.boxes.center_m[i], [psr["position"][k] for k in "xyz"], atol=1e-9)
            np.testing.assert_allclose(at.boxes.lwh_m[i], [psr["scale"][k] for k in "xyz"], atol=1e-9)
            if psr["rotation"]["x"] == 0 and psr["rotation"]["y"] == 0:
                assert _angle_diff(at.boxes.yaw_rad[i], psr["rotation"]["z"]) < 1e-9
            assert at.boxes.label[i] == obj["obj_type"]
            # one obj_id -> one track across all four frames
            assert track_of_obj.setdefault(obj["obj_id"], int(at.boxes.track_id[i])) == int(at.boxes.track_id[i])
    assert len(track_of_obj) == len(tracks) == 25


def test_round_trip_import_export_import(drive, scene, tmp_path):
    exported = tmp_path / "exported"
    files = export_drive(drive, "sustech", exported)
    assert sorted(p.name for p in files if p.parent.name == "label") == [f"{s}.json" for s in FRAMES]
    for folder in ("lidar", "camera"):
        os.symlink(scene / folder, exported / folder)
    again = import_drive("sustech", exported, tmp_path / "again.drive")
    a, b = drive.labels.query(), again.labels.query()
    assert len(a) == len(b) == 87
    obj_a = {t.track_id: t.attributes["obj_id"] for t in drive.labels.tracks()}
    obj_b = {t.track_id: t.attributes["obj_id"] for t in again.labels.tracks()}
    key_a = sorted(zip(a.frame.tolist(), [obj_a[int(t)] for t in a.boxes.track_id], range(len(a))))
    key_b = sorted(zip(b.frame.tolist(), [obj_b[int(t)] for t in b.boxes.track_id], range(len(b))))
    assert [k[:2] for k in key_a] == [k[:2] for k in key_b]
    ia, ib = [k[2] for k in key_a], [k[2] for k in key_b]
    np.testing.assert_allclose(b.boxes.center_m[ib], a.boxes.center_m[ia], atol=1e-6)
    np.testing.assert_allclose(b.boxes.lwh_m[ib], a.boxes.lwh_m[ia], atol=1e-6)
    rot_err = np.linalg.norm(a.boxes.rotation[ia] - b.boxes.rotation[ib], axis=(1, 2))
    assert rot_err.max() < 1e-6
    np.testing.assert_array_equal(b.boxes.label[ib], a.boxes.label[ia])
    for cam in drive.camera_names:
        assert again.sensors[cam].ego_SE3_sensor.allclose(drive.sensors[cam].ego_SE3_sensor, atol=1e-12)
        np.testing.assert_allclose(again.sensors[cam].camera.K, drive.sensors[cam].camera.K)


def test_bad_files_raise_format_error_naming_them(scene, tmp_path):
    pcd = tmp_path / "cut.pcd"
    pcd.write_bytes((scene / "lidar" / "000970.pcd").read_bytes()[:5000])
    with pytest.raises(FormatError, match="cut.pcd.*truncated"):
        read_sustech_pcd(pcd)
    label = tmp_path / "label.json"
    label.write_text('[{"psr": {"position": {"x": 1, "y": 2, "z": 3}, "scale": {"x": -1, "y": 1, "z": 1}, '
                     '"rotation": {"x": 0, "y": 0, "z": 0}}, "obj_type": "Car", "obj_id": "1"}]')
    with pytest.raises(FormatError, match="label.json.*scale must be positive"):
        read_sustech_labels(label)
    calib = tmp_path / "front.json"
    bad = json.loads((scene / "calib" / "camera" / "front.json").read_text())
    bad["extrinsic"][0] = 2.0
    calib.write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="front.json.*extrinsic is not a rigid transform"):
        read_sustech_calib(calib)
    empty = tmp_path / "scene"
    (empty / "lidar").mkdir(parents=True)
    with pytest.raises(FormatError, match="no .pcd files"):
        import_drive("sustech", empty, tmp_path / "x.drive")
    shutil.rmtree(empty)
