"""nuScenes importers (mmdetection3d info JSON on the real demo; v1.0 tables on a tiny synthetic dataroot) and the
submission exporters (Caesar et al., CVPR 2020)."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats.nuscenes import (
    export_nuscenes,
    export_nuscenes_tracking,
    import_nuscenes,
    read_nuscenes_lidar,
    read_nuscenes_submission,
    track_velocities,
)
from sensorlabel.geometry.se3 import SE3

DEMO = "nuscenes_mmdet3d_demo"
INFO = "derived/n015-2018-07-24-11-22-45+0800.info.json"


@pytest.fixture(scope="module")
def demo_drive(shared_data, tmp_path_factory):
    return import_nuscenes(shared_data / DEMO, tmp_path_factory.mktemp("nu") / "demo.drive")


def test_demo_points_in_boxes_correlate_with_num_lidar_pts(demo_drive, shared_data):
    info = json.loads((shared_data / DEMO / INFO).read_text())
    expected = np.array([i["num_lidar_pts"] for i in info["data_list"][0]["instances"]])
    records = demo_drive.labels.boxes_at(0)
    assert len(records) == 69
    sweep = demo_drive.frame_sweep(0)
    points_ego = demo_drive.sensors["LIDAR_TOP"].ego_SE3_sensor.transform_points(sweep.xyz_sensor)
    counts = records.boxes[np.argsort(records.box_id)].count_points(points_ego)  # box ids follow the JSON order
    assert np.corrcoef(counts, expected)[0, 1] >= 0.99


def test_demo_bottom_centre_converted_once(demo_drive, shared_data):
    info = json.loads((shared_data / DEMO / INFO).read_text())["data_list"][0]
    bbox = np.array([i["bbox_3d"] for i in info["instances"]])
    records = demo_drive.labels.boxes_at(0)
    boxes_lidar = records.boxes[np.argsort(records.box_id)].transform(
        demo_drive.sensors["LIDAR_TOP"].ego_SE3_sensor.inverse())
    assert np.abs(boxes_lidar.center_m[:, 2] - boxes_lidar.lwh_m[:, 2] / 2 - bbox[:, 2]).max() < 1e-9
    assert np.abs(np.angle(np.exp(1j * (boxes_lidar.yaw_rad - bbox[:, 6])))).max() < 1e-6
    assert demo_drive.sensors["CAM_FRONT"].camera.width_px == 1600


def test_demo_detection_json_round_trip(demo_drive, shared_data, tmp_path):
    info = json.loads((shared_data / DEMO / INFO).read_text())["data_list"][0]
    [path] = export_nuscenes(demo_drive, tmp_path)
    sub = read_nuscenes_submission(path)
    assert list(sub) == [info["token"]]
    got = sub[info["token"]]
    records = demo_drive.labels.boxes_at(0)
    keep = np.array([lab != "unknown" for lab in records.boxes.label])  # outside the 10 detection classes
    want = records.boxes[keep].transform(SE3.from_matrix(np.array(info["ego2global"])))
    assert len(got) == keep.sum() == 68
    assert np.abs(got.center_m - want.center_m).max() < 1e-6
    assert np.abs(got.lwh_m - want.lwh_m).max() < 1e-9
    assert np.abs(np.angle(np.exp(1j * (got.yaw_rad - want.yaw_rad)))).max() < 1e-6
    entry = json.loads(path.read_text())["results"][info["token"]][0]
    assert set(entry) == {"sample_token", "translation", "size", "rotation", "velocity", "detection_name",
                          "detection_score", "attribute_name"}


def test_lidar_reader_rejects_bad_files(tmp_path, shared_data):
    src = next((shared_data / DEMO).glob("*LIDAR_TOP*.bin")).read_bytes()
    for name, data in (("empty.bin", b""), ("cut.bin", src[:-3]), ("nan.bin", np.full(10, np.nan, "<f4").tobytes())):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FormatError) as info:
            read_nuscenes_lidar(tmp_path / name)
        assert name in str(info.value)


def test_velocity_from_track_differences():
    frame = np.array([0, 1, 2, 0, 1])
    track = np.array([7, 7, 7, 9, 9])
    centre = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0], [0, 0, 0], [0, 2, 0]], float)
    ts = np.array([0, 500_000_000, 1_000_000_000])
    v = track_velocities(frame, track, centre, ts)
    assert np.allclose(v, [[2, 0], [3, 0], [4, 0], [0, 4], [0, 4]])


# ----- v1.0 tables (synthetic dataroot: the real v1.0 tables are not in the shared data) -------------------------
def _quat_z(yaw: float) -> list[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def _write_dataroot(root, rng):
    tables = {k: [] for k in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor",
                              "sample_annotation", "instance", "category", "log", "attribute", "visibility")}
    tables["log"].append({"token": "log0", "logfile": "l", "vehicle": "v", "date_captured": "d", "location": "x"})
    tables["category"] += [{"token": "cat_car", "name": "vehicle.car", "description": ""},
                           {"token": "cat_ped", "name": "human.pedestrian.adult", "description": ""},
                           {"token": "cat_dog", "name": "animal", "description": ""}]
    tables["sensor"] += [{"token": "s_lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
                         {"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"}]
    tables["calibrated_sensor"] += [
        {"token": "cs_lidar", "sensor_token": "s_lidar", "translation": [0.9, 0.0, 1.8], "rotation": _quat_z(-np.pi / 2),
         "camera_intrinsic": []},
        {"token": "cs_cam", "sensor_token": "s_cam", "translation": [1.7, 0.0, 1.5],
         "rotation": [0.5, -0.5, 0.5, -0.5], "camera_intrinsic": [[1266.0, 0, 816.0], [0, 1266.0, 491.0], [0, 0, 1]]}]
    (root / "samples").mkdir(parents=True)
    jpg = cv2.imencode(".jpg", np.zeros((90, 160, 3), np.uint8))[1].tobytes()
    n = 3
    for k in range(n):
        t_us = 1_532_402_927_000_000 + k * 500_000
        tok = f"sample{k}"
        tables["sample"].append({"token": tok, "timestamp": t_us, "scene_token": "scene0",
                                 "prev": f"sample{k - 1}" if k else "", "next": f"sample{k + 1}" if k < n - 1 else ""})
        tables["ego_pose"].append({"token": f"ep{k}", "timestamp": t_us, "translation": [400.0 + 5 * k, 1100.0, 0.0],
                                   "rotation": _quat_z(0.3 + 0.05 * k)})
        tables["ego_pose"].append({"token": f"epc{k}", "timestamp": t_us - 20_000, "translation": [400.0 + 5 * k - 0.2, 1100.0, 0.0],
                                   "rotation": _quat_z(0.3 + 0.05 * k - 0.002)})
        pts = rng.normal(0, 10, (200, 5)).astype("<f4")
        (root / f"samples/lidar{k}.pcd.bin").write_bytes(pts.tobytes())
        (root / f"samples/cam{k}.jpg").write_bytes(jpg)
        tables["sample_data"] += [
            {"token": f"sdl{k}", "sample_token": tok, "ego_pose_token": f"ep{k}", "calibrated_sensor_token": "cs_lidar",
             "timestamp": t_us, "fileformat": "pcd", "is_key_frame": True, "height": 0, "width": 0,
             "filename": f"samples/lidar{k}.pcd.bin", "prev": "", "next": ""},
            {"token": f"sdc{k}", "sample_token": tok, "ego_pose_token": f"epc{k}", "calibrated_sensor_token": "cs_cam",
             "timestamp": t_us - 20_000, "fileformat": "jpg", "is_key_frame": True, "height": 90, "width": 160,
             "filename": f"samples/cam{k}.jpg", "prev": "", "next": ""}]
        for inst, cat, x in (("inst_car", "cat_car", 410.0 + 2.0 * k), ("inst_ped", "cat_ped", 405.0), ("inst_dog", "cat_dog", 402.0)):
            tables["sample_annotation"].append({
                "token": f"{inst}_{k}", "sample_token": tok, "instance_token": inst, "attribute_tokens": [],
                "visibility_token": "4", "translation": [x, 1102.0 + rng.normal(0, 0.01), 0.8],
                "size": [1.9, 4.5, 1.6], "rotation": _quat_z(0.1 * k), "num_lidar_pts": 5, "num_radar_pts": 0,
                "prev": "", "next": ""})
    tables["instance"] += [{"token": "inst_car", "category_token": "cat_car", "nbr_annotations": n},
                           {"token": "inst_ped", "category_token": "cat_ped", "nbr_annotations": n},
                           {"token": "inst_dog", "category_token": "cat_dog", "nbr_annotations": n}]
    tables["scene"].append({"token": "scene0", "log_token": "log0", "nbr_samples": n, "first_sample_token": "sample0",
                            "last_sample_token": f"sample{n - 1}", "name": "scene-0001", "description": ""})
    (root / "v1.0-mini").mkdir()
    for name, records in tables.items():
        (root / "v1.0-mini" / f"{name}.json").write_text(json.dumps(records))
    return tables


def test_tables_import_and_tracking_export_round_trip(tmp_path):
    root = tmp_path / "nuscenes"
    tables = _write_dataroot(root, np.random.default_rng(0))
    drive = import_nuscenes(root, tmp_path / "scene.drive")
    assert drive.num_frames == 3 and drive.name == "scene-0001"
    assert drive.frame_timestamps_ns[1] - drive.frame_timestamps_ns[0] == 500_000_000
    assert {t.label for t in drive.labels.tracks()} == {"vehicle.car", "human.pedestrian.adult", "animal"}
    assert len(drive.labels.query()) == 9
    assert drive.frame_camera_index(2, "CAM_FRONT") == 2
    [path] = export_nuscenes_tracking(drive, tmp_path / "out")
    sub = read_nuscenes_submission(path)
    anns = {(a["sample_token"], a["instance_token"]): a for a in tables["sample_annotation"]}
    tracks = {t.track_id: t.attributes["nuscenes_instance_token"] for t in drive.labels.tracks()}
    n = 0
    for token, boxes in sub.items():
        for i in range(len(boxes)):
            a = anns[(token, tracks[int(boxes.track_id[i])])]
            assert np.abs(boxes.center_m[i] - a["translation"]).max() < 1e-6
            assert np.allclose(boxes.lwh_m[i], [4.5, 1.9, 1.6])
            assert abs(boxes.yaw_rad[i] - 2 * np.arctan2(a["rotation"][3], a["rotation"][0])) < 1e-6
            n += 1
    assert n == 6  # the dog is not a tracking class
    entries = json.loads(path.read_text())["results"]["sample1"]
    car = next(e for e in entries if e["tracking_name"] == "car")
    assert car["velocity"][0] == pytest.approx(4.0, abs=1e-6)  # 2 m per 0.5 s


def test_submission_reader_refuses_deeply_nested_json(tmp_path):
    path = tmp_path / "results_nusc.json"
    path.write_text('{"results": ' + "[" * 100_000)
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*not valid JSON") as info:
        read_nuscenes_submission(path)
    assert "recursion" in str(info.value)


def test_tables_bad_input(tmp_path):
    root = tmp_path / "nuscenes"
    _write_dataroot(root, np.random.default_rng(1))
    ann = root / "v1.0-mini/sample_annotation.json"
    records = json.loads(ann.read_text())
    records[2]["size"] = [1.9, "x", 1.6]
    ann.write_text(json.dumps(records))
    with pytest.raises(FormatError, match="sample_annotation inst_dog_0 size"):
        import_nuscenes(root, tmp_path / "a.drive")
    ann.write_text(json.dumps(records)[:-30])
    with pytest.raises(FormatError, match="not valid JSON"):
        import_nuscenes(root, tmp_path / "a.drive")
    ann.write_text("[" * 100_000)  # nested deeper than the parser's recursion limit
    with pytest.raises(FormatError, match=re.escape(str(ann)) + ".*not valid JSON"):
        import_nuscenes(root, tmp_path / "a.drive")
    ann.write_text("")
    with pytest.raises(FormatError, match="sample_annotation.json"):
        import_nuscenes(root, tmp_path / "a.drive")
    with pytest.raises(FormatError, match="not a nuScenes dataroot"):
        import_nuscenes(tmp_path / "empty", tmp_path / "b.drive")


@pytest.mark.parametrize("value", [None, "12:00:01", 10**30, float("nan")])
@pytest.mark.parametrize("table, index", [("sample", 1), ("sample_data", 2), ("sample_data", 3), ("ego_pose", 3)])
def test_tables_bad_timestamp_names_file_field_and_value(tmp_path, table, index, value):
    """A null, non-numeric or out-of-range ``timestamp`` (lidar or camera sample_data, ego_pose, sample) is a
    FormatError naming the table file, the record, the field and the value; nothing is written."""
    root = tmp_path / "nuscenes"
    tables = _write_dataroot(root, np.random.default_rng(2))
    records = tables[table]
    records[index]["timestamp"] = value
    path = root / "v1.0-mini" / f"{table}.json"
    path.write_text(json.dumps(records))
    with pytest.raises(FormatError) as info:
        import_nuscenes(root, tmp_path / "bad.drive")
    message = str(info.value)
    assert str(path) in message and records[index]["token"] in message and "timestamp" in message
    assert repr(value) in message
    assert not (tmp_path / "bad.drive").exists()
