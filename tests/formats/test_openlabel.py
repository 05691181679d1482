"""ASAM OpenLABEL 1.0: export of a synthetic drive with truth labels, read back exactly; reader edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sensorlabel.errors import FormatError
from sensorlabel.formats import export_drive
from sensorlabel.formats.openlabel import read_openlabel
from sensorlabel.sim import SimConfig, simulate, write_sim_drive


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    config = SimConfig(seed=5, num_frames=5, num_beams=8, azimuth_steps=128, num_cameras=2,
                       fisheye_cameras=("cam_front_left",), image_size_px=(96, 64), num_cars=5, num_pedestrians=3,
                       num_cyclists=1)
    return write_sim_drive(simulate(config), tmp_path_factory.mktemp("ol") / "ol.drive", with_labels="truth")


@pytest.fixture(scope="module")
def exported(drive, tmp_path_factory):
    (path,) = export_drive(drive, "openlabel", tmp_path_factory.mktemp("out"))
    return path


def test_document_follows_the_standard_layout(exported, drive):
    doc = json.loads(exported.read_text())["openlabel"]
    assert doc["metadata"]["schema_version"] == "1.0.0"
    assert doc["frame_intervals"] == [{"frame_start": 0, "frame_end": drive.num_frames - 1}]
    assert set(doc["streams"]) == set(drive.sensors)
    assert doc["streams"]["cam_front"]["stream_properties"]["intrinsics_pinhole"]["width_px"] == 96
    assert "intrinsics_fisheye" in doc["streams"]["cam_front_left"]["stream_properties"]
    assert doc["coordinate_systems"]["lidar_top"]["parent"] == "ego"
    assert doc["coordinate_systems"]["ego"]["parent"] == "world"
    frame0 = doc["frames"]["0"]
    assert frame0["frame_properties"]["timestamp_ns"] == int(drive.frame_timestamps_ns[0])
    cuboid = next(iter(frame0["objects"].values()))["object_data"]["cuboid"][0]
    assert cuboid["coordinate_system"] == "ego" and len(cuboid["val"]) == 10
    records = drive.labels.boxes_at(0)
    uid = str(int(records.boxes.track_id[0]))
    val = frame0["objects"][uid]["object_data"]["cuboid"][0]["val"]
    np.testing.assert_allclose(val[:3], records.boxes.center_m[0])
    np.testing.assert_allclose(val[3:7], records.boxes.quat_wxyz[0, [1, 2, 3, 0]])  # x, y, z, w
    np.testing.assert_allclose(val[7:], records.boxes.lwh_m[0])
    track = {t.track_id: t for t in drive.labels.tracks()}[int(uid)]
    assert doc["objects"][uid]["type"] == track.label


def test_round_trip_is_exact(exported, drive):
    scene = read_openlabel(exported)
    records = drive.labels.query()
    assert len(scene.boxes) == len(records) > 0
    order = np.lexsort((scene.boxes.track_id, scene.frame))
    np.testing.assert_array_equal(scene.frame[order], records.frame)
    b = scene.boxes[order]
    np.testing.assert_array_equal(b.track_id, records.boxes.track_id)
    np.testing.assert_array_equal(b.label, records.boxes.label)
    assert np.abs(b.center_m - records.boxes.center_m).max() < 1e-6
    assert np.abs(b.lwh_m - records.boxes.lwh_m).max() < 1e-6
    angle = (Rotation.from_quat(b.quat_wxyz[:, [1, 2, 3, 0]]).inv()
             * Rotation.from_quat(records.boxes.quat_wxyz[:, [1, 2, 3, 0]])).magnitude()
    assert angle.max() < 1e-6
    np.testing.assert_array_equal(scene.sources[order], records.source)
    np.testing.assert_allclose(b.score, records.confidence)
    np.testing.assert_array_equal(scene.frame_timestamps_ns, drive.frame_timestamps_ns)
    truth_poses = drive.world_SE3_ego(drive.frame_timestamps_ns)
    for f in range(drive.num_frames):
        assert scene.world_SE3_ego[f].allclose(truth_poses[f], atol=1e-9)
    for name, sensor in drive.sensors.items():
        assert scene.streams[name].kind == sensor.kind
        assert scene.streams[name].ego_SE3_sensor.allclose(sensor.ego_SE3_sensor, atol=1e-12)
    pinhole = scene.streams["cam_front"].intrinsics
    np.testing.assert_allclose(pinhole["camera_matrix_3x4"].reshape(3, 4)[:, :3], drive.sensors["cam_front"].camera.K)
    np.testing.assert_allclose(pinhole["distortion_coeffs_1xN"], drive.sensors["cam_front"].camera.distortion)


def _doc(frames, coordinate_systems=None, objects=None):
    return {"openlabel": {"metadata": {"schema_version": "1.0.0"}, "coordinate_systems": coordinate_systems or {},
                          "objects": objects or {}, "frames": frames}}


def test_cuboids_in_a_sensor_frame_and_euler_cuboids(tmp_path):
    ego_SE3_lidar = np.eye(4)
    ego_SE3_lidar[:3, :3] = Rotation.from_euler("z", 0.5).as_matrix()
    ego_SE3_lidar[:3, 3] = [1.0, 0.0, 2.0]
    systems = {"ego": {"type": "local_cs", "parent": "", "children": ["lidar"]},
               "lidar": {"type": "sensor_cs", "parent": "ego", "pose_wrt_parent": {"matrix4x4": ego_SE3_lidar.ravel()
                                                                                   .tolist()}}}
    frames = {"3": {"frame_properties": {"timestamp": 12.5}, "objects": {
        "7": {"object_data": {"cuboid": [{"name": "b", "coordinate_system": "lidar",
                                          "val": [1, 0, 0, 0, 0, 0, 1, 4, 2, 1.5]}]}},
        "car-x": {"object_data": {"cuboid": [{"name": "b", "val": [0, 0, 0, 0.1, 0.0, 0.3, 2, 1, 1]}]}}}}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_doc(frames, systems, {"7": {"type": "Car"}, "car-x": {"type": "Van"}})))
    scene = read_openlabel(path)
    assert scene.frame.tolist() == [3, 3] and scene.frame_timestamps_ns.tolist() == [12_500_000_000]
    np.testing.assert_allclose(scene.boxes.center_m[0], [1 + np.cos(0.5), np.sin(0.5), 2.0])
    np.testing.assert_allclose(scene.boxes.yaw_rad[0], 0.5)
    assert scene.boxes.track_id.tolist() == [7, -1] and scene.boxes.label.tolist() == ["Car", "Van"]
    expected = Rotation.from_euler("ZYX", [0.3, 0.0, 0.1]).as_matrix()
    np.testing.assert_allclose(scene.boxes.rotation[1], expected, atol=1e-12)


@pytest.mark.parametrize(("frames", "reason"), [
    ({"0": {"objects": {"1": {"object_data": {"cuboid": [{"val": [0, 0, 0, 0, 0, 0, 1, -4, 2, 1]}]}}}}},
     r"frames.0.objects.1.object_data.cuboid\[0\].val: sizes must be positive"),
    ({"0": {"objects": {"1": {"object_data": {"cuboid": [{"val": [0, 0, 0, 1]}]}}}}},
     "expected 10 .quaternion. or 9 .Euler. numbers, got 4"),
    ({"0": {"objects": {"1": {"object_data": {"cuboid": [{"val": [0, 0, "x", 0, 0, 0, 1, 4, 2, 1]}]}}}}},
     r"val\[2\]: expected a finite number, got 'x'"),
    ({"zero": {}}, "frames.zero: frame key must be a non-negative integer"),
    ({"0": {"objects": {"1": {"object_data": {"cuboid": [{"coordinate_system": "cam",
                                                          "val": [0, 0, 0, 0, 0, 0, 1, 4, 2, 1]}]}}}}},
     "'cam' is not ego or a coordinate system under it"),
])
def test_malformed_documents_name_the_json_path(tmp_path, frames, reason):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_doc(frames)))
    with pytest.raises(FormatError, match=f"bad.json: .*{reason}"):
        read_openlabel(path)


def test_not_openlabel(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"vcd": {}}')
    with pytest.raises(FormatError, match="x.json: openlabel: expected an object, got NoneType"):
        read_openlabel(path)
    path.write_text('{"openlabel": {"metadata": {"schema_version": "0.3"}}}')
    with pytest.raises(FormatError, match="expected OpenLABEL 1.x"):
        read_openlabel(path)
