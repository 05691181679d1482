"""Argoverse 2 importer against the real log 7fab2350 (Wilson et al., NeurIPS 2021)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats.av2 import import_av2, read_av2_annotations, read_av2_lidar

LOG = "av2_sensor/val/7fab2350-7eaf-3b7e-a39d-6937a4c1bede"


@pytest.fixture(scope="module")
def av2_drive(shared_data, tmp_path_factory):
    return import_av2(shared_data / LOG, tmp_path_factory.mktemp("av2") / "log.drive")


def test_frames_are_annotation_timestamps(av2_drive, shared_data):
    ann = feather.read_table(shared_data / LOG / "annotations.feather")
    assert np.array_equal(av2_drive.frame_timestamps_ns, np.unique(ann.column("timestamp_ns").to_numpy()))
    assert av2_drive.num_frames == 156
    assert len(av2_drive.lidar_timestamps_ns("lidar")) == 2
    assert (np.array([av2_drive.frame_lidar_index(f) for f in range(156)]) >= 0).sum() == 2
    assert len(av2_drive.labels.tracks()) == 114 and len(av2_drive.labels.query()) == 11364


def test_points_in_boxes_equal_num_interior_pts(av2_drive, shared_data):
    ann = feather.read_table(shared_data / LOG / "annotations.feather")
    key = {(int(t), u): int(n) for t, u, n in zip(ann.column("timestamp_ns").to_numpy(),
                                                  ann.column("track_uuid").to_pylist(),
                                                  ann.column("num_interior_pts").to_numpy())}
    uuid = {t.track_id: t.attributes["av2_track_uuid"] for t in av2_drive.labels.tracks()}
    checked = 0
    for sweep_index, t in enumerate(av2_drive.lidar_timestamps_ns("lidar")):
        frame = int(np.searchsorted(av2_drive.frame_timestamps_ns, t))
        sweep = av2_drive.frame_sweep(frame)
        records = av2_drive.labels.boxes_at(frame)
        counts = records.boxes.count_points(sweep.xyz_sensor)
        expected = np.array([key[(int(t), uuid[int(tid)])] for tid in records.track_id])
        assert np.array_equal(counts, expected)
        checked += len(records)
    assert checked == 162


def test_poses_reproduce_ego_motion(av2_drive, shared_data):
    ts = av2_drive.lidar_timestamps_ns("lidar")
    poses = av2_drive.world_SE3_ego(ts)
    ego1_SE3_ego0 = poses[1].inverse().compose(poses[0]).as_matrix()
    truth = np.load(shared_data / LOG / "ego_motion.npz")["ego_motion"][0]
    assert np.abs(ego1_SE3_ego0[:3, 3] - truth[:3, 3]).max() < 0.01
    assert np.abs(ego1_SE3_ego0[:3, :3] - truth[:3, :3]).max() < 1e-4
    # a point 20 m ahead moves consistently within 1 cm
    p = np.array([[20.0, 0.0, 0.0], [0.0, 20.0, 1.0]])
    assert np.abs(p @ ego1_SE3_ego0[:3, :3].T + ego1_SE3_ego0[:3, 3] - (p @ truth[:3, :3].T + truth[:3, 3])).max() < 0.01


def test_cameras_and_points(av2_drive, shared_data):
    cam = av2_drive.sensors["ring_front_center"]
    assert cam.camera.width_px == 1550 and cam.camera.height_px == 2048
    assert cam.camera.distortion[2] == 0 and cam.camera.distortion[3] == 0
    sweep = av2_drive.lidar_sweep("lidar", 0)
    _, raw = read_av2_lidar(shared_data / LOG / "sensors/lidar/315966265259836000.feather")
    assert np.array_equal(sweep.points, raw) and sweep.fields == ("x", "y", "z", "intensity", "ring")
    assert 0 <= sweep.field("ring").min() and sweep.field("ring").max() <= 63


def test_bad_tables_raise_format_error(shared_data, tmp_path):
    log = tmp_path / "log"
    shutil.copytree(shared_data / LOG, log, ignore=shutil.ignore_patterns("map", "flow_labels.feather"))
    lidar = log / "sensors/lidar/315966265259836000.feather"
    data = lidar.read_bytes()
    for broken in (b"", data[: len(data) // 2], data[:-40], b"ARROW1" + data[6:200]):
        lidar.write_bytes(broken)
        with pytest.raises(FormatError) as info:
            read_av2_lidar(lidar)
        assert str(lidar) in str(info.value)
    ann = log / "annotations.feather"
    table = feather.read_table(ann)
    lengths = table.column("length_m").to_numpy().copy()
    lengths[5] = np.nan
    feather.write_feather(table.set_column(table.column_names.index("length_m"), "length_m", pa.array(lengths)), ann)
    with pytest.raises(FormatError, match="row 5 column length_m is not finite"):
        read_av2_annotations(ann)
    feather.write_feather(table.drop(["qw"]), ann)
    with pytest.raises(FormatError, match="missing columns \\['qw'\\]"):
        read_av2_annotations(ann)
    with pytest.raises(FormatError, match="not an Argoverse 2 log folder"):
        import_av2(tmp_path / "nothing", tmp_path / "x.drive")
