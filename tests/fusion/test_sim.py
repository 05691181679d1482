"""Fusion against the simulator's exact truth: ego at 15 m/s, cameras 30 ms after the lidar."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sensorlabel.fusion import (
    CalibCheckConfig,
    CameraView,
    SweepInput,
    aggregate_sweeps,
    calibration_frame,
    check_calibration,
    colorize_points,
    corrected_view,
    project_sweep,
    visible_mask,
)
from sensorlabel.geometry.se3 import SE3
from sensorlabel.sim import SimConfig, simulate

FRAME = 2


@pytest.fixture(scope="module")
def sim():
    config = SimConfig(seed=3, num_frames=5, num_cameras=2, ego_speed_mps=15.0, ego_speed_change_mps=0.0,
                       range_noise_m=0.0, camera_time_offset_s=0.03, image_size_px=(640, 360), azimuth_steps=1024,
                       num_beams=32)
    return simulate(config)


def _views(sim, frame: int, readout_s: float = 0.0) -> list[CameraView]:
    return [CameraView(name, sim.sensors[name].camera, sim.sensors[name].ego_SE3_sensor.inverse(),
                       int(sim.camera_timestamps_ns(name)[frame]), readout_s) for name in sim.camera_names]


def _ego_SE3_lidar(sim) -> SE3:
    return sim.sensors["lidar_top"].ego_SE3_sensor


def _truth_uv(sim, view: CameraView, world_points: np.ndarray, iterations: int = 0):
    """Exact float64 projection of the true world points at the camera time (row times by fixed-point iteration)."""
    times = np.full(len(world_points), view.timestamp_ns, np.int64)
    for _ in range(iterations + 1):
        cam_SE3_world = view.cam_SE3_ego.compose(sim.world_SE3_ego_at(times).inverse())
        uv, ok = view.camera.project(cam_SE3_world.transform_points(world_points))
        row = np.clip(uv[:, 1], 0, view.camera.height_px - 1)
        offset_s = view.readout_s * (row / (view.camera.height_px - 1) - 0.5)
        times = view.timestamp_ns + np.round(offset_s * 1e9).astype(np.int64)
    return uv, ok


def test_the_scene_is_the_one_asked_for(sim) -> None:
    t = sim.frame_timestamps_ns[FRAME]
    a, b = sim.world_SE3_ego_at(np.array([t - 50_000_000, t + 50_000_000]))
    # The simulator adds a gentle sinusoidal speed variation to the configured 15 m/s.
    assert 14.0 < np.linalg.norm(b.translation - a.translation) / 0.1 < 17.0
    assert sim.camera_timestamps_ns("cam_front")[FRAME] - t == 30_000_000


@pytest.mark.parametrize("readout_s", [0.0, 0.03])
def test_compensated_projection_within_half_pixel(sim, readout_s: float) -> None:
    sweep = sim.sweep(FRAME)
    world = sim.sweep_world_points(FRAME)
    views = _views(sim, FRAME, readout_s)
    _, projs = project_sweep(sweep.xyz_sensor, sweep.point_times_ns(), _ego_SE3_lidar(sim), views,
                             sim.world_SE3_ego_at, int(sweep.timestamp_ns))
    for view, proj in zip(views, projs):
        uv_true, ok_true = _truth_uv(sim, view, world, iterations=4 if readout_s else 0)
        both = ok_true[proj.point_index]
        # The same points project, up to a handful that sit on the image border.
        assert abs(int(ok_true.sum()) - len(proj)) <= max(3, 0.001 * len(proj))
        err = np.linalg.norm(proj.uv_px[both] - uv_true[proj.point_index[both]], axis=1)
        assert len(err) > 1000
        assert err.max() < 0.5, (view.name, err.max())


def test_without_compensation_the_error_is_large(sim) -> None:
    sweep = sim.sweep(FRAME)
    world = sim.sweep_world_points(FRAME)
    view = _views(sim, FRAME)[0]
    uv_true, ok_true = _truth_uv(sim, view, world)
    # Naive: the lidar points taken as if measured where the ego is at the camera time (no motion model at all).
    naive = view.cam_SE3_ego.compose(_ego_SE3_lidar(sim)).transform_points(sweep.xyz_sensor.astype(np.float64))
    uv, ok = view.camera.project(naive)
    both = ok & ok_true
    err = np.linalg.norm(uv[both] - uv_true[both], axis=1)
    assert np.median(err) > 2.0


def test_occlusion_and_colour_agree_with_the_rendered_image(sim) -> None:
    """A visible point lands on a pixel showing the object it hit; points the depth buffer removes mostly do not."""
    sweep = sim.sweep(FRAME)
    track = sim.point_track_ids(FRAME)
    view = _views(sim, FRAME)[0]
    rgb, track_px = sim.camera_render(view.name, FRAME)
    _, (proj,) = project_sweep(sweep.xyz_sensor, sweep.point_times_ns(), _ego_SE3_lidar(sim), [view],
                               sim.world_SE3_ego_at, int(sweep.timestamp_ns))
    keep = visible_mask(proj)
    uv = np.rint(proj.uv_px).astype(int)
    pixel_track = track_px[np.clip(uv[:, 1], 0, 359), np.clip(uv[:, 0], 0, 639)]
    point_track = track[proj.point_index]
    on_object = point_track >= 0
    # Truly hidden (as far as the render tells): the pixel shows another object than the one the return hit.
    hidden = pixel_track != point_track
    assert hidden.sum() > 50 and (on_object & ~hidden).sum() > 100
    assert (~keep[hidden]).mean() > 0.5                      # most hidden returns are removed
    assert (~keep[on_object & ~hidden]).mean() < 0.05        # visible object returns are kept
    assert (~hidden[keep & on_object]).mean() > 0.9
    col = colorize_points(len(sweep.points), [proj.select(keep)], [rgb])
    assert col.seen.sum() == keep.sum()
    assert (col.camera_index[~col.seen] == -1).all()


@pytest.fixture(scope="module", params=[(0, 2), (3, 1)], ids=["seed0-2cams", "seed3-1cam"])
def calibration_evidence(request):
    """Two frames of a default-resolution drive (960x540 cameras, 64 x 2048 lidar), evidence for each camera;
    returns on the (moving) objects are left out with the simulator's truth. (Rendering dominates the cost, hence
    one camera on the second seed.)"""
    seed, num_cameras = request.param
    sim = simulate(SimConfig(seed=seed, num_frames=6, num_cameras=num_cameras))
    evidence = {name: [] for name in sim.camera_names}
    for frame in (1, 5):
        sweep = sim.sweep(frame)
        for name in sim.camera_names:
            evidence[name].append(calibration_frame(
                sweep.xyz_sensor, sweep.point_times_ns(), _ego_SE3_lidar(sim), sim.world_SE3_ego_at,
                int(sweep.timestamp_ns), sim.camera_image(name, frame), int(sim.camera_timestamps_ns(name)[frame]),
                ring=sweep.field("ring"), exclude=sim.point_track_ids(frame) >= 0))
    return seed, sim, evidence


def test_calibration_check_finds_a_half_degree_error(calibration_evidence) -> None:
    """0.5 degree about random axes (two per camera): the correction is found within 0.2 degree and the
    calibration and every frame are flagged; the true calibration is left alone."""
    seed, sim, evidence = calibration_evidence
    rng = np.random.default_rng(seed)
    for name in sim.camera_names:
        camera, cam_SE3_ego = sim.sensors[name].camera, sim.sensors[name].ego_SE3_sensor.inverse()
        good = check_calibration(name, evidence[name], camera, cam_SE3_ego, sim.world_SE3_ego_at)
        assert good.num_edge_points >= CalibCheckConfig().min_edge_points
        assert good.correction_deg < 0.2 and abs(good.time_offset_s) <= 0.005, (seed, name, good)
        assert not good.flagged and not good.frame_flagged.any()
        for _ in range(2):
            axis = rng.normal(size=3)
            error = Rotation.from_rotvec(np.deg2rad(0.5) * axis / np.linalg.norm(axis))
            perturbed = SE3(error.as_matrix(), np.zeros(3)).compose(cam_SE3_ego)
            bad = check_calibration(name, evidence[name], camera, perturbed, sim.world_SE3_ego_at)
            residual_deg = np.rad2deg((Rotation.from_rotvec(bad.correction_rotvec_rad) * error).magnitude())
            assert residual_deg < 0.2, (seed, name, residual_deg, bad)
            assert bad.flagged and bad.frame_flagged.all()
            assert good.score > bad.score * 1.1
            corrected = corrected_view(CameraView(name, camera, perturbed, 0), bad)
            assert np.rad2deg(Rotation.from_matrix(corrected.cam_SE3_ego.rotation @ cam_SE3_ego.rotation.T)
                              .magnitude()) == pytest.approx(residual_deg, abs=1e-6)


def test_calibration_check_without_enough_edges_gives_no_verdict(calibration_evidence) -> None:
    _, sim, evidence = calibration_evidence
    name = sim.camera_names[0]
    config = CalibCheckConfig(min_edge_points=10**6)
    result = check_calibration(name, evidence[name], sim.sensors[name].camera,
                               sim.sensors[name].ego_SE3_sensor.inverse(), sim.world_SE3_ego_at, config)
    assert np.isnan(result.score) and not result.flagged and not result.frame_flagged.any()
    with pytest.raises(ValueError):
        CalibCheckConfig(levels=())


def test_aggregation_moves_objects_along_their_tracks(sim) -> None:
    frames = [0, 1, 2, 3, 4]
    target = int(sim.frame_timestamps_ns[4])
    sweeps = [SweepInput(sim.sweep(f).xyz_sensor, sim.point_times_ns(f), int(sim.frame_timestamps_ns[f]),
                         sim.truth_boxes_ego(f)) for f in frames]
    truth_target = sim.objects_world_at(target)
    speeds = np.linalg.norm(sim.objects_world_at(target + 50_000_000).center_m
                            - sim.objects_world_at(target - 50_000_000).center_m, axis=1) / 0.1
    moving_tracks = truth_target.track_id[speeds > 5.0]
    assert len(moving_tracks) > 0

    def inside_fraction(cloud) -> float:
        sel = np.isin(cloud.track_id, moving_tracks) & (cloud.sweep_index == 0)  # 0.4 s before the target
        pts = cloud.points[sel].astype(np.float64)
        box_of = {t: i for i, t in enumerate(truth_target.track_id)}
        idx = np.array([box_of[t] for t in cloud.track_id[sel]])
        local = truth_target.frame_SE3_object[idx].inverse().transform_points(pts)
        return float(np.mean(np.all(np.abs(local) <= truth_target.lwh_m[idx] / 2 + 0.1, axis=1))), int(sel.sum())

    moved = aggregate_sweeps(sweeps, _ego_SE3_lidar(sim), sim.world_SE3_ego_at, target, frame="world",
                             moving="transfer")
    frac, n = inside_fraction(moved)
    assert n > 50 and frac > 0.95, (frac, n)
    smeared = aggregate_sweeps(sweeps, _ego_SE3_lidar(sim), sim.world_SE3_ego_at, target, frame="world",
                               moving="keep")
    # With "keep" nothing is assigned to tracks, so measure the same points through their truth ids.
    track_truth = np.concatenate([sim.point_track_ids(f) for f in frames])
    smeared = type(smeared)(smeared.points, smeared.sweep_index, smeared.point_index, track_truth, smeared.moved,
                            smeared.frame, smeared.target_ns)
    frac_keep, _ = inside_fraction(smeared)
    assert frac_keep < 0.6 and frac - frac_keep > 0.3, (frac, frac_keep)
    # Static returns land on their exact world positions, whichever sweep they came from.
    static = moved.track_id < 0
    exact = np.concatenate([sim.sweep_world_points(f) for f in frames])
    offsets = np.cumsum([0] + [len(s.points_lidar) for s in sweeps])
    src = offsets[moved.sweep_index[static]] + moved.point_index[static]
    assert np.abs(moved.points[static] - exact[src]).max() < 0.01
    dropped = aggregate_sweeps(sweeps, _ego_SE3_lidar(sim), sim.world_SE3_ego_at, target, moving="drop")
    assert (dropped.track_id == -1).all() and len(dropped.points) < len(moved.points)
