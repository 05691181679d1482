"""Synthetic drives: determinism, lidar density and timing, the ego route, and exactness of the ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.sim import CLASS_COLOR_RGB, CLASSES, SimConfig, simulate
from sensorlabel.sim.simdrive import EGO_SE3_LIDAR

SMALL = dict(num_frames=10, azimuth_steps=512, image_size_px=(320, 180), range_noise_m=0.0)


@pytest.fixture(scope="module")
def small():
    return simulate(SimConfig(seed=1, **SMALL))


@pytest.fixture(scope="module")
def default():
    return simulate(SimConfig(seed=0))


def _inside(boxes: Boxes, index: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P,3) local coordinates / half size of points[i] in box index[i] (|x| <= 1 inside)."""
    local = np.einsum("pji,pj->pi", boxes.rotation[index], points - boxes.center_m[index])
    return np.abs(local) / (boxes.lwh_m[index] / 2)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_cameras"):
        SimConfig(num_cameras=7)
    with pytest.raises(ValueError, match="fisheye_cameras"):
        SimConfig(num_cameras=2, fisheye_cameras=("cam_back",))
    with pytest.raises(ValueError, match="num_frames"):
        SimConfig(num_frames=0)


def test_deterministic_by_seed(small):
    again = simulate(SimConfig(seed=1, **SMALL))
    other = simulate(SimConfig(seed=2, **SMALL))
    np.testing.assert_array_equal(small.sweep(4).points, again.sweep(4).points)
    np.testing.assert_array_equal(small.truth_boxes_ego(4).center_m, again.truth_boxes_ego(4).center_m)
    np.testing.assert_array_equal(small.camera_image("cam_front", 2), again.camera_image("cam_front", 2))
    assert small.sweep(4).points.shape != other.sweep(4).points.shape or not np.array_equal(
        small.sweep(4).points, other.sweep(4).points)
    assert not np.allclose(small.world_SE3_ego.translation[-1], other.world_SE3_ego.translation[-1])


def test_default_sweep_density_fields_and_timing(default):
    sweep = default.sweep(0)
    assert sweep.fields == ("x", "y", "z", "intensity", "ring", "t_offset_s")
    assert sweep.sensor == "lidar_top" and list(default.sensors)[0] == "lidar_top"
    assert len(sweep.points) >= 100_000
    t_offset = sweep.field("t_offset_s")
    assert 0.099 <= t_offset.max() - t_offset.min() < 0.1
    ring = sweep.field("ring")
    assert ring.min() == 0 and ring.max() == 63
    assert np.all(np.diff(default.point_times_ns(0)) >= 0)  # firing order
    assert 0.0 <= sweep.field("intensity").min() and sweep.field("intensity").max() <= 1.0
    rng = np.linalg.norm(sweep.xyz_sensor, axis=1)
    assert rng.min() >= 0.9 and rng.max() <= 100.1
    # Realistic object sizes, and nearby cars get hundreds of points.
    boxes, ids = default.truth_boxes_ego(0), default.point_track_ids(0)
    sizes = {"Car": (4.2, 4.9), "Pedestrian": (0.7, 0.9), "Cyclist": (1.7, 1.9)}
    for label, (lo, hi) in sizes.items():
        length = boxes.lwh_m[boxes.label == label, 0]
        assert len(length) and np.all((length >= lo) & (length <= hi)), label
    near_cars = boxes[(boxes.label == "Car") & (np.linalg.norm(boxes.center_m[:, :2], axis=1) < 30)]
    counts = np.array([(ids == t).sum() for t in near_cars.track_id])
    assert len(counts) >= 2 and np.median(counts) >= 200


def test_ego_route_curves_and_changes_speed(default):
    poses, t_ns = default.world_SE3_ego, default.pose_timestamps_ns
    assert np.all(np.diff(t_ns) == 10_000_000)
    assert t_ns[0] < default.frame_timestamps_ns[0] - 0.1e9 and t_ns[-1] > default.frame_timestamps_ns[-1] + 0.1e9
    yaw = np.unwrap(poses.yaw_rad())
    assert np.ptp(yaw) > 0.2
    speed = np.linalg.norm(np.diff(poses.translation, axis=0), axis=1) / 0.01
    assert np.ptp(speed) > 2.0
    accel = np.diff(speed) / 0.01
    assert np.abs(accel).max() < 4.0  # smooth
    # The analytic pose agrees with the 100 Hz samples and with interpolation between them.
    np.testing.assert_allclose(default.world_SE3_ego_at(t_ns[5:8]).translation, poses.translation[5:8], atol=1e-12)
    mid = default.world_SE3_ego_at(t_ns[100] + 5_000_000).translation
    np.testing.assert_allclose(mid, (poses.translation[100] + poses.translation[101]) / 2, atol=1e-3)


def test_object_points_lie_in_truth_boxes_at_their_own_time(small):
    frame = 5
    sweep = small.sweep(frame)
    ids = small.point_track_ids(frame)
    times = sweep.point_times_ns()
    world_SE3_lidar = small.world_SE3_ego_at(times).compose(EGO_SE3_LIDAR)
    points_world = world_SE3_lidar.transform_points(sweep.xyz_sensor.astype(np.float64))
    np.testing.assert_allclose(points_world, small.sweep_world_points(frame), atol=2e-4)
    on_object = np.flatnonzero(ids >= 0)
    assert len(on_object) > 1000
    worst = np.zeros(len(on_object))
    worst_frame_time = np.zeros(len(on_object))
    frame_boxes = small.objects_world_at(sweep.timestamp_ns)
    for t in np.unique(times[on_object]):
        sel = np.flatnonzero(times[on_object] == t)
        boxes = small.objects_world_at(int(t))
        index = np.searchsorted(boxes.track_id, ids[on_object[sel]])
        worst[sel] = _inside(boxes, index, points_world[on_object[sel]]).max(axis=1)
        worst_frame_time[sel] = _inside(frame_boxes, index, points_world[on_object[sel]]).max(axis=1)
    assert worst.max() <= 1.0 + 1e-3
    # Motion distortion is real: with the sweep time instead of each point's own time, points leave their boxes.
    assert worst_frame_time.max() > 1.02
    # Ground and structures are outside every object.
    static = np.flatnonzero(ids < 0)[::7]
    for t in np.unique(times[static])[::16]:
        sel = static[times[static] == t]
        assert not small.objects_world_at(int(t)).points_in_boxes(points_world[sel], margin_m=-0.02).any()


def test_truth_boxes_in_ego_frame_match_world_boxes(small):
    for frame in (0, 9):
        t_ns = int(small.frame_timestamps_ns[frame])
        ego = small.truth_boxes_ego(frame)
        world = small.objects_world_at(t_ns)
        assert len(ego) >= 10 and set(ego.label) <= set(CLASSES)
        assert len(np.unique(ego.track_id)) == len(ego)
        expected = world.transform(small.world_SE3_ego_at(t_ns).inverse())
        index = np.searchsorted(expected.track_id, ego.track_id)
        np.testing.assert_allclose(ego.center_m, expected.center_m[index], atol=1e-9)
        dyaw = np.angle(np.exp(1j * (ego.yaw_rad - expected.yaw_rad[index])))
        np.testing.assert_allclose(dyaw, 0.0, atol=1e-9)
        np.testing.assert_array_equal(ego.label, expected.label[index])
        assert np.all(np.linalg.norm(ego.center_m[:, :2], axis=1) <= small.config.label_range_m)
        np.testing.assert_allclose(ego.center_m[:, 2], ego.lwh_m[:, 2] / 2, atol=1e-9)  # on flat ground
    # Objects move, turn and change speed over the drive.
    a, b = small.objects_world_at(small.frame_timestamps_ns[0]), small.objects_world_at(small.frame_timestamps_ns[-1])
    moved = np.linalg.norm(a.center_m - b.center_m, axis=1)
    assert (moved > 3.0).sum() >= 5 and (moved == 0).sum() >= 1  # moving and parked objects


def _object_colour_hits(sim, camera: str, frame: int) -> tuple[int, int]:
    import cv2

    calib = sim.sensors[camera]
    image = cv2.imdecode(np.frombuffer(sim.camera_image_bytes(camera, frame), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    width, height = sim.config.image_size_px
    assert image.shape == (height, width, 3)
    t_cam = int(sim.camera_timestamps_ns(camera)[frame])
    boxes = sim.objects_world_at(t_cam)
    cam_SE3_world = sim.world_SE3_ego_at(t_cam).compose(calib.ego_SE3_sensor).inverse()
    centres_cam = cam_SE3_world.transform_points(boxes.center_m)
    uv, valid = calib.camera.project(centres_cam)
    valid &= np.linalg.norm(centres_cam, axis=1) < 35
    matches = 0
    for i in np.flatnonzero(valid):
        u, v = np.round(uv[i]).astype(int)
        pixel = image[v, u].astype(float)
        colour = CLASS_COLOR_RGB[CLASSES.index(boxes.label[i])]
        cos = pixel @ colour / (np.linalg.norm(pixel) * np.linalg.norm(colour) + 1e-9)
        matches += cos > 0.97
    return matches, int(valid.sum())


def test_camera_images_show_objects_at_projected_centres(small):
    assert small.camera_names == ["cam_front", "cam_front_left"]
    offset = small.camera_timestamps_ns("cam_front") - small.frame_timestamps_ns
    assert np.all(offset == 30_000_000)
    matches = total = 0
    for camera in small.camera_names:
        for frame in (0, 6):
            m, n = _object_colour_hits(small, camera, frame)
            matches, total = matches + m, total + n
    assert total >= 6 and matches >= 0.8 * total


def test_fisheye_and_rolling_shutter():
    sim = simulate(SimConfig(seed=3, num_frames=2, num_cameras=4, fisheye_cameras=("cam_back",), azimuth_steps=256,
                             image_size_px=(256, 160), camera_readout_s=0.03))
    assert sim.sensors["cam_back"].camera.model == "fisheye"
    rows = sim.camera_row_times_ns("cam_front", 1)
    assert rows[-1] - rows[0] == 30_000_000 and rows[len(rows) // 2 - 1] <= sim.camera_timestamps_ns("cam_front")[1]
    image, track = sim.camera_render("cam_back", 1)
    assert image.shape == (160, 256, 3)
    assert (image[0, 0] == 0).all() and image[80, 128].sum() > 0  # outside / inside the fisheye circle
    m, n = _object_colour_hits(sim, "cam_front", 1)
    assert m >= 0.8 * n


def test_pictures_for_eyes(small, tmp_path):
    """Writes a camera image and a bird's-eye view of a sweep with its truth boxes (for a look by eye)."""
    import matplotlib

    matplotlib.use("Agg")
    import cv2
    import matplotlib.pyplot as plt

    frame = 5
    rgb = small.camera_image("cam_front", frame)
    assert cv2.imwrite(str(tmp_path / "cam_front.png"), rgb[:, :, ::-1])
    sweep, boxes = small.sweep(frame), small.truth_boxes_ego(frame)
    points_ego = EGO_SE3_LIDAR.transform_points(sweep.xyz_sensor)
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.scatter(points_ego[:, 0], points_ego[:, 1], s=0.2, c=np.where(small.point_track_ids(frame) >= 0, 1, 0),
               cmap="coolwarm")
    for corners, label in zip(boxes.bev_corners(), boxes.label):
        ax.plot(*np.vstack([corners, corners[:1]]).T, color="k" if label == "Car" else "g")
    ax.set_xlim(-50, 50)
    ax.set_ylim(-50, 50)
    ax.set_aspect("equal")
    fig.savefig(tmp_path / "bev.png", dpi=100)
    plt.close(fig)
    assert (tmp_path / "bev.png").stat().st_size > 10_000


def test_write_sim_drive_round_trip(tmp_path):
    from sensorlabel.drive import Drive
    from sensorlabel.sim import write_sim_drive

    sim = simulate(SimConfig(seed=4, num_frames=3, azimuth_steps=256, image_size_px=(128, 96)))
    drive = write_sim_drive(sim, tmp_path / "sim.drive", with_labels="truth")
    drive.close()
    drive = Drive.open(tmp_path / "sim.drive")
    assert drive.source_format == "sim" and drive.metadata["sim_config"]["seed"] == 4
    assert drive.num_frames == 3 and list(drive.sensors) == ["lidar_top", "cam_front", "cam_front_left"]
    np.testing.assert_array_equal(drive.frame_timestamps_ns, sim.frame_timestamps_ns)
    for frame in range(3):
        sweep = drive.frame_sweep(frame)
        np.testing.assert_array_equal(sweep.points, sim.sweep(frame).points)
        assert sweep.fields == sim.sweep(frame).fields
        index = drive.frame_camera_index(frame, "cam_front_left")
        assert drive.camera_image_bytes("cam_front_left", index) == sim.camera_image_bytes("cam_front_left", frame)
    query = sim.pose_timestamps_ns[3] + 3_000_000
    np.testing.assert_allclose(drive.world_SE3_ego(query).translation, sim.world_SE3_ego_at(query).translation,
                               atol=1e-4)
    records = drive.labels.query()
    truth = [sim.truth_boxes_ego(f) for f in range(3)]
    assert len(records) == sum(len(t) for t in truth) and set(records.source) == {"imported"}
    sim_id = {t.track_id: t.attributes["sim_track_id"] for t in drive.labels.tracks()}
    for frame in range(3):
        got = records[records.frame == frame]
        ids = np.array([sim_id[t] for t in got.boxes.track_id])
        order = np.argsort(ids)
        np.testing.assert_array_equal(ids[order], truth[frame].track_id)
        np.testing.assert_allclose(got.boxes.center_m[order], truth[frame].center_m, atol=1e-9)
        np.testing.assert_array_equal(got.boxes.label[order], truth[frame].label)
    drive.close()
