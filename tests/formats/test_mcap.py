"""ROS 2 MCAP: a bag written from a synthetic drive imports back to the same drive; foreign bags decode right."""

from __future__ import annotations

import numpy as np
import pytest
from mcap_ros2.writer import Writer

from sensorlabel.errors import FormatError
from sensorlabel.formats import export_drive, import_drive
from sensorlabel.formats.mcap import (
    CAMERA_INFO,
    IMAGE,
    POINTCLOUD2,
    TF_MESSAGE,
    import_mcap,
    read_bag,
    ros2_msgdef,
    sensor_name_from_topic,
    write_mcap_from_drive,
)
from sensorlabel.geometry import SE3
from sensorlabel.sim import SimConfig, simulate, write_sim_drive


@pytest.fixture(scope="module")
def sim_drive(tmp_path_factory):
    config = SimConfig(seed=3, num_frames=4, num_beams=16, azimuth_steps=256, num_cameras=3,
                       fisheye_cameras=("cam_front_left",), image_size_px=(160, 96), num_cars=4, num_pedestrians=2,
                       num_cyclists=1)
    return write_sim_drive(simulate(config), tmp_path_factory.mktemp("sim") / "sim.drive")


def _assert_same_drive(a, b, images_exact=True):
    assert list(b.sensors) == list(a.sensors)
    for name, sa in a.sensors.items():
        sb = b.sensors[name]
        assert sb.kind == sa.kind
        assert sb.ego_SE3_sensor.allclose(sa.ego_SE3_sensor, atol=1e-12)
        if sa.camera is not None:
            assert sb.camera.model == sa.camera.model
            for attr in ("fx_px", "fy_px", "cx_px", "cy_px", "width_px", "height_px"):
                assert getattr(sb.camera, attr) == getattr(sa.camera, attr)
            np.testing.assert_array_equal(sb.camera.distortion, sa.camera.distortion)
    np.testing.assert_array_equal(b.frame_timestamps_ns, a.frame_timestamps_ns)
    for lidar in a.lidar_names:
        np.testing.assert_array_equal(b.lidar_timestamps_ns(lidar), a.lidar_timestamps_ns(lidar))
        for i in range(len(a.lidar_timestamps_ns(lidar))):
            sa, sb = a.lidar_sweep(lidar, i), b.lidar_sweep(lidar, i)
            assert sb.fields == sa.fields
            np.testing.assert_array_equal(sb.points, sa.points)
    for cam in a.camera_names:
        np.testing.assert_array_equal(b.camera_timestamps_ns(cam), a.camera_timestamps_ns(cam))
        for i in range(len(a.camera_timestamps_ns(cam))):
            if images_exact:
                assert b.camera_image_bytes(cam, i) == a.camera_image_bytes(cam, i)
            else:
                np.testing.assert_array_equal(b.camera_image(cam, i), a.camera_image(cam, i))
    assert b.has_poses == a.has_poses
    np.testing.assert_array_equal(b.pose_timestamps_ns, a.pose_timestamps_ns)
    pa, pb = a.world_SE3_ego(a.pose_timestamps_ns), b.world_SE3_ego(a.pose_timestamps_ns)
    assert np.abs(pa.as_matrix() - pb.as_matrix()).max() < 1e-9
    for f in range(a.num_frames):
        for cam in a.camera_names:
            assert b.frame_camera_index(f, cam) == a.frame_camera_index(f, cam)


def test_sim_drive_round_trips_through_a_ros2_bag(sim_drive, tmp_path):
    assert "t_offset_s" in sim_drive.lidar_sweep(sim_drive.lidar_names[0], 0).fields
    files = export_drive(sim_drive, "mcap", tmp_path)
    assert [p.name for p in files] == ["sim.mcap"]
    again = import_drive("mcap", files[0], tmp_path / "again.drive")
    _assert_same_drive(sim_drive, again)
    assert again.metadata["poses"] == "from /tf"


def test_raw_images_and_uncompressed_chunks_round_trip(sim_drive, tmp_path):
    bag = write_mcap_from_drive(sim_drive, tmp_path / "raw.mcap", image_format="raw", compression="none")
    again = import_mcap(bag, tmp_path / "raw.drive")
    _assert_same_drive(sim_drive, again, images_exact=False)


def test_bag_uses_the_real_ros2_schemas(sim_drive, tmp_path):
    from mcap.reader import make_reader

    bag = write_mcap_from_drive(sim_drive, tmp_path / "s.mcap")
    with bag.open("rb") as handle:
        summary = make_reader(handle).get_summary()
    schemas = {s.name: s for s in summary.schemas.values()}
    assert {POINTCLOUD2, TF_MESSAGE, CAMERA_INFO, "sensor_msgs/msg/CompressedImage"} <= set(schemas)
    assert all(s.encoding == "ros2msg" for s in schemas.values())
    text = schemas[POINTCLOUD2].data.decode()
    assert "MSG: sensor_msgs/PointField" in text and "MSG: std_msgs/Header" in text and "uint8 FLOAT32 = 7" in text
    topics = {c.topic: c.message_encoding for c in summary.channels.values()}
    assert set(topics.values()) == {"cdr"}
    assert {"/tf", "/tf_static", "/lidar_top/points", "/cam_front/image/compressed", "/cam_front/camera_info"} <= set(
        topics)


def _time(ns):
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def _tf(ns, parent, child, transform: SE3):
    w, x, y, z = transform.as_quat_wxyz()
    t = transform.translation
    return {"header": {"stamp": _time(ns), "frame_id": parent}, "child_frame_id": child,
            "transform": {"translation": dict(zip("xyz", map(float, t))),
                          "rotation": {"x": x, "y": y, "z": z, "w": w}}}


def _foreign_bag(path, with_camera_info=True, with_static_tf=True):
    """A bag as a real robot writes it: an organised big-endian cloud with row padding and Ouster-style ``t``
    (uint32 ns), a raw bgr8 camera with a rational_polynomial CameraInfo, and map->odom->base_link TF."""
    t0 = 1_600_000_000_000_000_000
    base_SE3_mount = SE3.from_yaw(0.3, [0.5, 0.0, 1.0])
    mount_SE3_os = SE3.from_yaw(-0.1, [0.0, 0.1, 0.6])
    base_SE3_cam = SE3.from_quat_wxyz([0.5, -0.5, 0.5, -0.5], [1.8, 0.0, 1.4])
    map_SE3_odom = SE3.from_yaw(0.05, [100.0, -20.0, 0.0])
    with path.open("wb") as handle:
        w = Writer(handle)
        schemas = {t: w.register_msgdef(t, ros2_msgdef(t)) for t in (TF_MESSAGE, POINTCLOUD2, IMAGE, CAMERA_INFO)}
        if with_static_tf:
            w.write_message("/tf_static", schemas[TF_MESSAGE], {"transforms": [
                _tf(t0, "base_link", "lidar_mount", base_SE3_mount), _tf(t0, "lidar_mount", "os_sensor", mount_SE3_os),
                _tf(t0, "base_link", "camera_optical", base_SE3_cam)]}, log_time=t0)
        poses = {}
        for i in range(3):
            stamp = t0 + i * 100_000_000
            odom_SE3_base = SE3.from_yaw(0.1 * i, [2.0 * i, 0.5 * i, 0.0])
            poses[stamp] = map_SE3_odom.compose(odom_SE3_base)
            w.write_message("/tf", schemas[TF_MESSAGE], {"transforms": [
                _tf(stamp, "map", "odom", map_SE3_odom), _tf(stamp, "odom", "base_link", odom_SE3_base)]},
                log_time=stamp)
            # 2 x 3 organised cloud: x y z (>f4), intensity (>u2), t (>u4), 2 bytes padding per point, 4 per row
            dtype = np.dtype([("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("intensity", ">u2"), ("t", ">u4"),
                              ("pad", "V2")])
            records = np.zeros((2, 3), dtype)
            records["x"] = np.arange(6).reshape(2, 3) + i
            records["y"], records["z"] = -1.5, 0.25
            records["intensity"] = 1000 + np.arange(6).reshape(2, 3)
            records["t"] = np.arange(6).reshape(2, 3) * 10_000_000
            rows = b"".join(row.tobytes() + b"\xee" * 4 for row in records)
            fields = [{"name": n, "offset": dtype.fields[n][1], "datatype": code, "count": 1}
                      for n, code in (("x", 7), ("y", 7), ("z", 7), ("intensity", 4), ("t", 6))]
            w.write_message("/os_cloud_node/points", schemas[POINTCLOUD2], {
                "header": {"stamp": _time(stamp), "frame_id": "os_sensor"}, "height": 2, "width": 3,
                "fields": fields, "is_bigendian": True, "point_step": dtype.itemsize,
                "row_step": dtype.itemsize * 3 + 4, "data": rows, "is_dense": True}, log_time=stamp)
            image = np.zeros((4, 6, 3), np.uint8)
            image[..., 0], image[..., 2] = 10 * i, 200  # blue channel 10*i, red 200 (bgr8)
            header = {"stamp": _time(stamp + 20_000_000), "frame_id": "camera_optical"}
            w.write_message("/camera/image_raw", schemas[IMAGE], {
                "header": header, "height": 4, "width": 6, "encoding": "bgr8", "is_bigendian": 0, "step": 20,
                "data": b"".join(row.tobytes() + b"\x00\x00" for row in image)}, log_time=stamp)
            if with_camera_info:
                w.write_message("/camera/camera_info", schemas[CAMERA_INFO], {
                    "header": header, "height": 4, "width": 6, "distortion_model": "rational_polynomial",
                    "d": [0.1, -0.02, 0.001, 0.002, 0.003, 0.0, 0.0, 0.0],
                    "k": [300.0, 0, 3.0, 0, 310.0, 2.0, 0, 0, 1], "r": [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
                    "p": [300.0, 0, 3.0, 0, 0, 310.0, 2.0, 0, 0, 0, 1, 0]}, log_time=stamp)
        w.finish()
    return t0, base_SE3_mount.compose(mount_SE3_os), base_SE3_cam, poses


def test_foreign_bag_decodes_points_images_tf_and_camera_info(tmp_path):
    t0, base_SE3_lidar, base_SE3_cam, poses = _foreign_bag(tmp_path / "robot.mcap")
    drive = import_mcap(tmp_path / "robot.mcap", tmp_path / "robot.drive")
    assert drive.lidar_names == ["os_cloud_node"] and drive.camera_names == ["camera"]
    assert drive.sensors["os_cloud_node"].ego_SE3_sensor.allclose(base_SE3_lidar, atol=1e-12)
    assert drive.sensors["camera"].ego_SE3_sensor.allclose(base_SE3_cam, atol=1e-12)
    camera = drive.sensors["camera"].camera
    assert (camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px, camera.width_px, camera.height_px) == (
        300.0, 310.0, 3.0, 2.0, 6, 4)
    np.testing.assert_array_equal(camera.distortion, [0.1, -0.02, 0.001, 0.002, 0.003])
    stamps = np.array(sorted(poses))
    np.testing.assert_array_equal(drive.pose_timestamps_ns, stamps)
    truth = SE3.stack([poses[s] for s in stamps])
    assert np.abs(drive.world_SE3_ego(stamps).as_matrix() - truth.as_matrix()).max() < 1e-9
    sweep = drive.lidar_sweep("os_cloud_node", 1)
    assert sweep.fields == ("x", "y", "z", "intensity", "t_offset_s")
    np.testing.assert_array_equal(sweep.points[:, 0], np.arange(6) + 1)
    np.testing.assert_array_equal(sweep.points[:, 3], 1000 + np.arange(6))
    np.testing.assert_allclose(sweep.points[:, 4], np.arange(6) * 0.01, atol=1e-9)
    assert sweep.timestamp_ns == t0 + 100_000_000
    rgb = drive.camera_image("camera", 2)
    assert rgb.shape == (4, 6, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 2] == 20).all()
    assert drive.camera_timestamps_ns("camera")[0] == t0 + 20_000_000


def test_bad_bags_give_one_format_error_naming_the_file(tmp_path):
    _foreign_bag(tmp_path / "no_info.mcap", with_camera_info=False)
    with pytest.raises(FormatError, match="no_info.mcap.*'/camera/image_raw' has no CameraInfo"):
        read_bag(tmp_path / "no_info.mcap")
    _foreign_bag(tmp_path / "no_tf.mcap", with_static_tf=False)
    with pytest.raises(FormatError, match="no_tf.mcap.*no /tf_static path between ego frame 'base_link'"):
        import_mcap(tmp_path / "no_tf.mcap", tmp_path / "x.drive")
    good = (tmp_path / "no_info.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(good[: len(good) // 2])
    with pytest.raises(FormatError, match="cut.mcap: corrupt MCAP"):
        read_bag(tmp_path / "cut.mcap")
    (tmp_path / "empty.mcap").write_bytes(b"")
    with pytest.raises(FormatError, match="empty.mcap"):
        import_mcap(tmp_path / "empty.mcap", tmp_path / "y.drive")
    assert not (tmp_path / "x.drive").exists() and not (tmp_path / "y.drive").exists()
    with pytest.raises(FormatError, match="lidar topic '/nope' is not a"):
        read_bag(tmp_path / "no_tf.mcap", lidar_topics=["/nope"])


@pytest.mark.parametrize(("topic", "name"), [("/cam_front/image/compressed", "cam_front"), ("/points", "points"),
                                             ("/os_cloud_node/points", "os_cloud_node"),
                                             ("/sensing/lidar/top/pointcloud_raw", "sensing_lidar_top_pointcloud_raw"),
                                             ("/camera/camera_info", "camera")])
def test_sensor_names_from_topics(topic, name):
    assert sensor_name_from_topic(topic) == name


def test_log_times_instead_of_header_stamps(tmp_path):
    t0, *_ = _foreign_bag(tmp_path / "robot.mcap")
    drive = import_mcap(tmp_path / "robot.mcap", tmp_path / "log.drive", time_source="log")
    np.testing.assert_array_equal(drive.camera_timestamps_ns("camera"), t0 + np.arange(3) * 100_000_000)
