"""Drive store: write -> reopen -> compare exactly, frame sync, pose interpolation, validation and atomicity."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
import zarr

from sensorlabel.cli import main as cli_main
from sensorlabel.drive import Drive, SensorCalibration, schema
from sensorlabel.errors import CalibrationError, FormatError, SchemaError
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.camera import FisheyeCamera, PinholeCamera
from sensorlabel.geometry.se3 import SE3

T0_NS = 1_700_000_000_123_456_789  # epoch-scale, so nanosecond precision is exercised
MS = 1_000_000
FIELDS = ("x", "y", "z", "intensity", "ring", "t_offset_s")


def make_sensors() -> dict[str, SensorCalibration]:
    return {
        "lidar_top": SensorCalibration("lidar_top", "lidar", SE3.from_yaw(0.013, [0.94, 0.01, 1.84])),
        "lidar_rear": SensorCalibration("lidar_rear", "lidar", SE3.from_yaw(np.pi, [-1.2, 0.0, 0.6])),
        "cam_front": SensorCalibration(
            "cam_front",
            "camera",
            SE3.from_quat_wxyz([0.5, -0.5, 0.5, -0.5], [1.7, 0.02, 1.51]),
            PinholeCamera(
                1266.417, 1266.417, 816.267, 491.507, 1600, 900, np.array([-0.31, 0.12, 1e-4, -2e-4, -0.021])
            ),
            readout_s=0.0295,
        ),
        "cam_fish": SensorCalibration(
            "cam_fish",
            "camera",
            SE3.from_quat_wxyz([0.5, -0.5, -0.5, 0.5], [-1.0, 0.0, 1.5]),
            FisheyeCamera(320.5, 321.25, 640.0, 400.0, 1280, 800, np.array([0.05, -0.01, 0.002, -3e-4])),
        ),
    }


def make_sweep(rng: np.random.Generator, num_points: int) -> np.ndarray:
    xyz = rng.normal(0, 20, (num_points, 3))
    intensity = rng.integers(0, 256, num_points)
    ring = rng.integers(0, 64, num_points)
    t_offset_s = np.sort(rng.uniform(0, 0.1, num_points))
    return np.column_stack([xyz, intensity, ring, t_offset_s]).astype(np.float32)


def make_jpeg(rng: np.random.Generator, width: int = 64, height: int = 48) -> bytes:
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def circle_poses(times_ns: np.ndarray, speed_mps: float, yaw_rate_rps: float) -> SE3:
    """Analytic ego motion at constant speed and yaw rate, starting at the origin heading +x."""
    t_s = (times_ns - T0_NS) / 1e9
    yaw = yaw_rate_rps * t_s
    radius = speed_mps / yaw_rate_rps
    translation = np.column_stack([radius * np.sin(yaw), radius * (1 - np.cos(yaw)), np.zeros_like(yaw)])
    return SE3.from_yaw(yaw, translation)


SPEED_MPS, YAW_RATE_RPS = 10.0, 0.5


@pytest.fixture()
def written(tmp_path, monkeypatch):
    """A drive of 3 frames written with tiny chunks (so appends cross chunk boundaries), and what went in."""
    monkeypatch.setattr(schema, "POINTS_CHUNK_ROWS", 500)
    monkeypatch.setattr(schema, "IMAGE_CHUNK_BYTES", 1000)
    rng = np.random.default_rng(7)
    sensors = make_sensors()
    truth = {"sweeps": {"lidar_top": [], "lidar_rear": []}, "images": {"cam_front": [], "cam_fish": []}}
    truth["lidar_top_ts"] = T0_NS + np.array([0, 100, 200]) * MS
    truth["lidar_rear_ts"] = T0_NS + np.array([10, 110]) * MS
    truth["cam_front_ts"] = T0_NS + np.array([30, 130, 230]) * MS
    truth["cam_fish_ts"] = T0_NS + np.array([60, 160]) * MS
    pose_ts = T0_NS + np.arange(-100, 400, 10) * MS
    metadata = {"scene": "test-0001", "nested": {"k": [1, 2.5, "x"]}, "count": np.int64(3)}
    path = tmp_path / "scene.drive"
    with Drive.create(path, name="scene-0001", source_format="unit-test", sensors=sensors, metadata=metadata) as w:
        for i, size in enumerate([1234, 777, 2001]):
            points = make_sweep(rng, size)
            truth["sweeps"]["lidar_top"].append(points)
            w.append_lidar_sweep("lidar_top", points, FIELDS, int(truth["lidar_top_ts"][i]))
            if i < 2:
                rear = make_sweep(rng, 300 + 50 * i)[:, :4].astype(np.float64)  # float64 in, float32 stored
                truth["sweeps"]["lidar_rear"].append(rear.astype(np.float32))
                w.append_lidar_sweep("lidar_rear", rear, FIELDS[:4], int(truth["lidar_rear_ts"][i]))
                jpeg = make_jpeg(rng, 80, 40)
                truth["images"]["cam_fish"].append(jpeg)
                w.append_camera_image("cam_fish", jpeg, int(truth["cam_fish_ts"][i]))
            jpeg = make_jpeg(rng)
            truth["images"]["cam_front"].append(jpeg)
            w.append_camera_image("cam_front", jpeg, int(truth["cam_front_ts"][i]))
        w.write_poses(pose_ts, circle_poses(pose_ts, SPEED_MPS, YAW_RATE_RPS))
        w.finalize()
    truth.update(sensors=sensors, metadata=metadata, pose_ts=pose_ts)
    return path, truth


def test_roundtrip_exact(written):
    path, truth = written
    drive = Drive.open(path)
    assert (drive.name, drive.source_format) == ("scene-0001", "unit-test")
    assert drive.metadata == {"scene": "test-0001", "nested": {"k": [1, 2.5, "x"]}, "count": 3}
    assert list(drive.sensors) == ["lidar_top", "lidar_rear", "cam_front", "cam_fish"]
    assert drive.lidar_names == ["lidar_top", "lidar_rear"] and drive.camera_names == ["cam_front", "cam_fish"]
    for name, sensor in truth["sensors"].items():
        stored = drive.sensors[name]
        assert stored.kind == sensor.kind and stored.readout_s == sensor.readout_s
        assert np.array_equal(stored.ego_SE3_sensor.as_matrix(), sensor.ego_SE3_sensor.as_matrix())
        if sensor.camera is not None:
            assert type(stored.camera) is type(sensor.camera) and stored.camera.model == sensor.camera.model
            assert np.array_equal(stored.camera.distortion, sensor.camera.distortion)
            assert np.array_equal(stored.camera.K, sensor.camera.K)
            size = (sensor.camera.width_px, sensor.camera.height_px)
            assert (stored.camera.width_px, stored.camera.height_px) == size
    assert drive.sensors["cam_front"].camera.distortion[4] == -0.021
    for lidar in ("lidar_top", "lidar_rear"):
        assert np.array_equal(drive.lidar_timestamps_ns(lidar), truth[f"{lidar}_ts"])
        for i, expected in enumerate(truth["sweeps"][lidar]):
            sweep = drive.lidar_sweep(lidar, i)
            assert sweep.points.dtype == np.float32 and np.array_equal(sweep.points, expected)
            assert sweep.timestamp_ns == truth[f"{lidar}_ts"][i] and sweep.sensor == lidar
    assert drive.lidar_sweep("lidar_top", 0).fields == FIELDS
    assert drive.lidar_sweep("lidar_rear", 1).fields == FIELDS[:4]
    sweep = drive.lidar_sweep("lidar_top", 2)
    assert np.array_equal(sweep.point_times_ns() - sweep.timestamp_ns,
                          np.round(truth["sweeps"]["lidar_top"][2][:, 5].astype(np.float64) * 1e9).astype(np.int64))
    for camera in ("cam_front", "cam_fish"):
        assert np.array_equal(drive.camera_timestamps_ns(camera), truth[f"{camera}_ts"])
        for i, jpeg in enumerate(truth["images"][camera]):
            assert drive.camera_image_bytes(camera, i) == jpeg
    rgb = drive.camera_image("cam_fish", 1)
    expected_rgb = cv2.imdecode(np.frombuffer(truth["images"]["cam_fish"][1], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert rgb.shape == (40, 80, 3) and np.array_equal(rgb, expected_rgb)
    assert drive.has_poses and np.array_equal(drive.pose_timestamps_ns, truth["pose_ts"])
    with pytest.raises(IndexError):
        drive.lidar_sweep("lidar_top", 3)
    with pytest.raises(KeyError):
        drive.camera_image_bytes("cam_nope", 0)
    assert (path / "labels.sqlite").is_file()
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name], "temporary folder left behind"


def test_frames_sync_to_nearest_within_half_period(written):
    path, truth = written
    drive = Drive.open(path)
    assert np.array_equal(drive.frame_timestamps_ns, truth["lidar_top_ts"])  # one frame per sweep of the first lidar
    assert drive.num_frames == 3
    assert [drive.frame_lidar_index(f) for f in range(3)] == [0, 1, 2]
    # lidar_rear at +10/+110 ms: frame 2 (200 ms) is 90 ms from the nearest, beyond half the 100 ms period.
    assert [drive.frame_lidar_index(f, "lidar_rear") for f in range(3)] == [0, 1, -1]
    assert [drive.frame_camera_index(f, "cam_front") for f in range(3)] == [0, 1, 2]
    # cam_fish at +60/+160 ms: frame 0 is 60 ms away (> 50 ms) -> none; frames 1, 2 are 40 ms from images 0, 1.
    assert [drive.frame_camera_index(f, "cam_fish") for f in range(3)] == [-1, 0, 1]
    sweep = drive.frame_sweep(1, "lidar_top")
    assert np.array_equal(sweep.points, truth["sweeps"]["lidar_top"][1])
    assert drive.frame_sweep(2, "lidar_rear") is None
    with pytest.raises(IndexError):
        drive.frame_camera_index(3, "cam_front")


def test_world_SE3_ego_matches_analytic_motion(written):
    path, truth = written
    drive = Drive.open(path)
    rng = np.random.default_rng(3)
    query = np.sort(rng.integers(T0_NS - 100 * MS, T0_NS + 390 * MS, 200))
    expected = circle_poses(query, SPEED_MPS, YAW_RATE_RPS)
    got = drive.world_SE3_ego(query)
    assert len(got) == 200
    assert np.allclose(got.rotation, expected.rotation, atol=1e-9)  # slerp of a constant yaw rate is exact
    # lerp between 10 ms samples cuts the 20 m circle by at most its sagitta: 20 m * (1 - cos(0.0025)) = 63 um.
    assert np.abs(got.translation - expected.translation).max() < 1e-4
    single = drive.world_SE3_ego(int(truth["pose_ts"][7]))
    assert not single.is_batch and single.allclose(circle_poses(truth["pose_ts"][7:8], SPEED_MPS, YAW_RATE_RPS)[0])
    # Constant-velocity extrapolation up to 0.5 s past the last pose: the heading keeps turning at the last rate
    # (exact here) and the position continues along the last 10 ms chord.
    last = int(truth["pose_ts"][-1])
    ahead = drive.world_SE3_ego(np.array([last + 300 * MS]))
    truth_ahead = circle_poses(np.array([last + 300 * MS]), SPEED_MPS, YAW_RATE_RPS)
    assert np.allclose(ahead.rotation, truth_ahead.rotation, atol=1e-9)
    p_prev, p_last = circle_poses(np.array([last - 10 * MS, last]), SPEED_MPS, YAW_RATE_RPS).translation
    assert np.allclose(ahead.translation[0], p_last + (p_last - p_prev) * 30, atol=1e-9)
    with pytest.raises(ValueError, match="outside the pose range"):
        drive.world_SE3_ego(np.array([last + 501 * MS]))
    with pytest.raises(ValueError, match="outside the pose range"):
        drive.world_SE3_ego(int(truth["pose_ts"][0]) - 600 * MS)


def test_non_drives_raise_schema_error_naming_the_path(tmp_path):
    missing = tmp_path / "missing.drive"
    with pytest.raises(SchemaError, match="no such drive folder") as exc:
        Drive.open(missing)
    assert str(missing) in str(exc.value)
    plain = tmp_path / "photos"
    plain.mkdir()
    (plain / "a.txt").write_text("hello")
    with pytest.raises(SchemaError, match="no sensors.zarr") as exc:
        Drive.open(plain)
    assert str(plain) in str(exc.value)
    with pytest.raises(SchemaError, match="folder"):
        Drive.open(plain / "a.txt")
    not_ours = tmp_path / "other.drive"
    zarr.open_group(not_ours / "sensors.zarr", mode="w", zarr_format=3).attrs["x"] = 1
    with pytest.raises(SchemaError, match="not a sensorlabel drive") as exc:
        Drive.open(not_ours)
    assert str(not_ours) in str(exc.value)


def test_schema_version_mismatch(written):
    path, _ = written
    zarr.open_group(path / "sensors.zarr", mode="r+", zarr_format=3).attrs["schema_version"] = 99
    with pytest.raises(SchemaError, match="schema_version 99 is not supported") as exc:
        Drive.open(path)
    assert str(path) in str(exc.value)


def test_truncated_and_missing_arrays(written):
    path, _ = written
    chunks = sorted((path / "sensors.zarr/lidar/lidar_top/points/c").rglob("*"))
    chunk_files = [c for c in chunks if c.is_file()]
    assert len(chunk_files) == 9  # 4012 rows in chunks of 500
    chunk_files[-1].unlink()
    with pytest.raises(SchemaError, match="truncated array: 8 of 9 chunks") as exc:
        Drive.open(path)
    assert "lidar/lidar_top/points" in str(exc.value)
    shutil.rmtree(path / "sensors.zarr/cameras/cam_fish/offsets")
    shutil.rmtree(path / "sensors.zarr/lidar/lidar_top")
    with pytest.raises(SchemaError, match="missing") as exc:
        Drive.open(path)
    assert str(path) in str(exc.value)


def test_bad_poses_raise_calibration_error_with_the_value(tmp_path):
    sensors = make_sensors()
    ts = T0_NS + np.arange(4) * 10 * MS
    with Drive.create(tmp_path / "a.drive", name="a", source_format="t", sensors=sensors) as w:
        matrices = circle_poses(ts, SPEED_MPS, YAW_RATE_RPS).as_matrix()
        matrices[2, 1, 3] = np.nan
        with pytest.raises(CalibrationError, match=r"translation\[2\].*nan"):
            w.write_poses(ts, matrices)
        matrices = circle_poses(ts, SPEED_MPS, YAW_RATE_RPS).as_matrix()
        matrices[1, :3, :3] *= 1.1  # scaled, not a rotation
        with pytest.raises(CalibrationError, match=r"rotation\[1\] is not orthonormal") as exc:
            w.write_poses(ts, matrices)
        assert "1.1" in str(exc.value)
        matrices[1, :3, :3] = np.nan
        with pytest.raises(CalibrationError, match=r"rotation\[1\].*nan"):
            w.write_poses(ts, matrices)
        with pytest.raises(CalibrationError, match="index 2 has"):
            w.write_poses(ts[[0, 1, 1, 3]], circle_poses(ts, SPEED_MPS, YAW_RATE_RPS))
        w.write_poses(ts, circle_poses(ts, SPEED_MPS, YAW_RATE_RPS))  # still accepted after the failures
        with pytest.raises(FormatError, match="twice"):
            w.write_poses(ts, circle_poses(ts, SPEED_MPS, YAW_RATE_RPS))


def test_bad_appends_raise_format_error(tmp_path):
    rng = np.random.default_rng(0)
    with Drive.create(tmp_path / "a.drive", name="a", source_format="t", sensors=make_sensors()) as w:
        w.append_lidar_sweep("lidar_top", make_sweep(rng, 10), FIELDS, T0_NS)
        with pytest.raises(FormatError, match="not after the previous"):
            w.append_lidar_sweep("lidar_top", make_sweep(rng, 10), FIELDS, T0_NS)
        with pytest.raises(FormatError, match="differ from the first sweep"):
            w.append_lidar_sweep("lidar_top", make_sweep(rng, 10)[:, :4], FIELDS[:4], T0_NS + MS)
        with pytest.raises(FormatError, match="expected"):
            w.append_lidar_sweep("lidar_top", make_sweep(rng, 10), FIELDS[:5], T0_NS + MS)
        with pytest.raises(FormatError, match="no lidar named 'cam_front'"):
            w.append_lidar_sweep("cam_front", make_sweep(rng, 10), FIELDS, T0_NS + MS)
        with pytest.raises(FormatError, match="empty image"):
            w.append_camera_image("cam_front", b"", T0_NS)
        with pytest.raises(FormatError, match="integer"):
            w.append_camera_image("cam_front", b"abc", 1.5)


def test_create_on_existing_path(written, tmp_path):
    path, _ = written
    with pytest.raises(SchemaError, match="already exists") as exc:
        Drive.create(path, name="x", source_format="t", sensors={})
    assert str(path) in str(exc.value)
    stranger = tmp_path / "not_a_drive"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("precious")
    with pytest.raises(SchemaError, match="not a drive; refusing"):
        Drive.create(stranger, name="x", source_format="t", sensors={}, overwrite=True)
    assert (stranger / "keep.txt").read_text() == "precious"
    # overwrite=True replaces the drive only at finalize; until then the old one still opens.
    w = Drive.create(path, name="replacement", source_format="t", sensors={}, overwrite=True)
    assert Drive.open(path).name == "scene-0001"
    drive = w.finalize(frame_timestamps_ns=np.array([T0_NS]))
    assert drive.name == "replacement" and Drive.open(path).sensors == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_drive", "scene.drive"]


def test_unfinished_writes_never_open(tmp_path):
    path = tmp_path / "x.drive"
    rng = np.random.default_rng(1)
    w = Drive.create(path, name="x", source_format="t", sensors=make_sensors())
    w.append_lidar_sweep("lidar_top", make_sweep(rng, 100), FIELDS, T0_NS)
    (tmp_folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("x.drive.tmp-")]
    assert not path.exists()
    with pytest.raises(SchemaError, match="not a sensorlabel drive"):
        Drive.open(tmp_folder)
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="boom"):
        with Drive.create(path, name="x", source_format="t", sensors=make_sensors()) as w:
            w.append_lidar_sweep("lidar_top", make_sweep(rng, 100), FIELDS, T0_NS)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_leaves_no_half_drive(tmp_path):
    """SIGKILL a process that rewrites a drive again and again: the path is absent or a complete drive."""
    path = tmp_path / "k.drive"
    script = textwrap.dedent(
        f"""
        import numpy as np, sys
        from sensorlabel.drive import Drive, SensorCalibration
        from sensorlabel.geometry.se3 import SE3
        sensors = {{"top": SensorCalibration("top", "lidar", SE3.identity())}}
        fields = ("x", "y", "z", "intensity")
        for run in range(1000):
            with Drive.create({str(path)!r}, name=f"run{{run}}", source_format="t", sensors=sensors,
                              overwrite=True) as w:
                for i in range(20):
                    w.append_lidar_sweep("top", np.full((3000, 4), run * 100 + i, np.float32), fields, i)
                w.finalize()
            print(run, flush=True)
        """
    )
    rng = np.random.default_rng(0)
    completed = 0
    for delay_s in rng.uniform(0.0, 0.4, 3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one drive finished: later kills land inside rewrites of it
        assert first.strip() == "0", f"writer failed before finishing a drive: {first!r}"
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if path.exists():
            try:
                drive = Drive.open(path)
            except SchemaError as exc:  # pragma: no cover - the failure this test exists to catch
                pytest.fail(f"a killed writer left a half drive: {exc}")
            run = int(drive.name[3:])
            assert drive.num_frames == 20
            assert all(np.all(drive.lidar_sweep("top", i).points == run * 100 + i) for i in (0, 19))
            completed += 1
    assert completed >= 1, "every kill hit the instant between moving the old drive aside and the new one in"


def test_empty_labels_only_drive(tmp_path):
    sensors = {"lidar_top": make_sensors()["lidar_top"]}
    frame_ts = T0_NS + np.arange(5) * 100 * MS
    writer = Drive.create(tmp_path / "e.drive", name="empty", source_format="t", sensors=sensors)
    with pytest.raises(FormatError, match="not increasing at index 2"):
        writer.finalize(frame_ts[[0, 1, 1]])
    drive = writer.finalize(frame_ts)
    drive = Drive.open(drive.path)
    assert drive.num_frames == 5 and np.array_equal(drive.frame_timestamps_ns, frame_ts)
    assert drive.frame_lidar_index(3) == -1 and drive.frame_sweep(3) is None
    assert len(drive.lidar_timestamps_ns("lidar_top")) == 0
    assert not drive.has_poses
    assert drive.world_SE3_ego(int(frame_ts[2])).allclose(SE3.identity())
    batch = drive.world_SE3_ego(frame_ts)
    assert len(batch) == 5 and batch.allclose(SE3.identity(5))
    box = Boxes.from_yaw([[5.0, 1.0, 0.8]], [[4.5, 1.9, 1.6]], [0.3], label=["Car"])
    result = drive.labels.put_boxes(np.array([2]), box, source="human")
    assert result.box_ids[0] >= 0
    assert len(drive.labels.boxes_at(2)) == 1
    assert "labels     1 boxes in 1 tracks: human 1" in drive.summary()
    drive.close()
    nothing = Drive.create(tmp_path / "n.drive", name="n", source_format="t", sensors={}).finalize()
    assert nothing.num_frames == 0 and nothing.lidar_names == []
    assert "frames     0" in nothing.summary()


def test_cli_info_exit_codes(written, tmp_path, capsys):
    path, _ = written
    assert cli_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "scene-0001" in out and "unit-test" in out
    assert "lidar_top: 3 sweeps, 4,012 points" in out and "cam_fish: 2 images, fisheye 1280x800" in out
    assert "poses      yes" in out and "labels     none" in out
    assert cli_main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "not a drive" in err[0]
    proc = subprocess.run([sys.executable, "-m", "sensorlabel", "info", str(tmp_path / "nope.drive")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such drive folder" in proc.stderr


def test_chunk_files_are_plain_zarr_v3(written):
    """Points and images are streamed into chunk files directly: zarr-python itself must read them back exactly."""
    path, truth = written
    root = zarr.open_group(path / "sensors.zarr", mode="r", zarr_format=3)
    points = root["lidar/lidar_top/points"]
    assert [type(c).__name__ for c in points.metadata.codecs] == ["BytesCodec"]  # uncompressed
    assert points.shape == (4012, 6) and points.chunks == (500, 6)
    assert np.array_equal(points[...], np.concatenate(truth["sweeps"]["lidar_top"]))
    images = root["cameras/cam_front/bytes"]
    assert images[...].tobytes() == b"".join(truth["images"]["cam_front"])
    # the last chunk is stored full size, padded with the fill value, as the v3 spec requires
    last = path / "sensors.zarr/lidar/lidar_top/points/c/8/0"
    assert last.stat().st_size == 500 * 6 * 4
    padding = np.frombuffer(last.read_bytes(), dtype="<f4")[(4012 - 8 * 500) * 6 :]
    assert len(padding) == (9 * 500 - 4012) * 6 and not padding.any()  # the extension reads as zero (fill) bytes
    drive = Drive.open(path)
    series = drive._contents.lidar["lidar_top"]
    assert series.raw is not None  # read as byte ranges of the chunk files
    for i in range(3):  # records spanning two and three chunks read the same through zarr and directly
        start, stop = series.offsets[i], series.offsets[i + 1]
        assert np.array_equal(drive.lidar_sweep("lidar_top", i).points, points[start:stop])


def test_short_chunk_file_is_a_schema_error(written):
    path, _ = written
    chunk = path / "sensors.zarr/cameras/cam_front/bytes/c/1"
    data = chunk.read_bytes()
    drive = Drive.open(path)  # opened while complete
    chunk.write_bytes(data[:100])
    with pytest.raises(SchemaError, match="has 100 bytes, expected 1000") as exc:
        Drive.open(path)
    assert "cameras/cam_front/bytes" in str(exc.value)
    with pytest.raises(SchemaError, match="unreadable") as exc:  # truncated behind an open drive's back
        [drive.camera_image_bytes("cam_front", i) for i in range(3)]
    assert "chunk file ends" in str(exc.value)


def test_compressed_points_of_earlier_stores_still_read(written):
    """Stores whose points were written through zarr with blosc (earlier builds) open and read through zarr."""
    from zarr.codecs import BloscCodec

    path, truth = written
    root = zarr.open_group(path / "sensors.zarr", mode="r+", zarr_format=3)
    old = root["lidar/lidar_top/points"]
    data, attrs = old[...], dict(old.attrs)
    root.create_array("lidar/lidar_top/points", data=data, chunks=(700, 6), compressors=(BloscCodec(cname="lz4"),),
                      attributes=attrs, overwrite=True)
    drive = Drive.open(path)
    assert drive._contents.lidar["lidar_top"].raw is None
    for i, expected in enumerate(truth["sweeps"]["lidar_top"]):
        assert np.array_equal(drive.lidar_sweep("lidar_top", i).points, expected)


def test_caller_may_reuse_the_sweep_buffer(tmp_path):
    """append_lidar_sweep does not copy float32 input; it must still store the values as they were at the call."""
    sensors = {"top": SensorCalibration("top", "lidar", SE3.identity())}
    buffer = np.zeros((1000, 4), np.float32)
    with Drive.create(tmp_path / "r.drive", name="r", source_format="t", sensors=sensors) as w:
        for i in range(5):
            buffer[:] = i
            w.append_lidar_sweep("top", buffer, ("x", "y", "z", "intensity"), T0_NS + i * 100 * MS)
        drive = w.finalize()
    assert [float(drive.lidar_sweep("top", i).points.mean()) for i in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
