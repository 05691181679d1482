"""A synthetic drive: an exact world, a spinning lidar and distorted cameras, generated lazily frame by frame.

Time conventions:

* Frame f's timestamp is ``start_time_ns + f / lidar_hz``: the instant the lidar faces forward (its +x axis). The
  lidar spins counter-clockwise seen from above (azimuth increasing with time) and one sweep covers
  ``[t - T/2, t + T/2)`` with T = 1 / lidar_hz, starting and ending behind the car. ``t_offset_s`` of every point
  is its firing time relative to the sweep timestamp, in [-T/2, T/2).
* All 64 beams of a firing column fire at the same instant; every ray is cast against the world (ego **and**
  objects) posed at that instant, so motion distortion is real and the returned points are exact: there is no
  sector approximation (the residual is zero up to float32 storage: < 0.01 mm in position, a few ns in time).
* Camera c's image of frame f is exposed at ``frame time + camera_time_offset_s`` (its middle row, for a rolling
  shutter; row r is exposed ``(r / (H - 1) - 0.5) * readout_s`` later). Pixels are rendered by casting each pixel's
  ray from ``camera.unproject`` at the row's time.

The truth: :meth:`SimDrive.objects_world_at` gives the exact world boxes at any time, :meth:`SimDrive.truth_boxes_ego`
the boxes in the ego frame at a frame's timestamp, :meth:`SimDrive.sweep_world_points` the noise-free world point of
every return and :meth:`SimDrive.point_times_ns` its exact time.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from sensorlabel.drive.sensors import LidarSweep, SensorCalibration
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.camera import FisheyeCamera, PinholeCamera
from sensorlabel.geometry.se3 import SE3
from sensorlabel.sim.config import CAMERA_LAYOUT, SimConfig
from sensorlabel.sim.raycast import Hits, Raycaster, RayGrid
from sensorlabel.sim.world import (BUILDING, CLASS_ALBEDO, CLASS_COLOR_RGB, GROUND, STATIC_ALBEDO, World,
                                   build_world)

logger = logging.getLogger(__name__)

LIDAR_NAME = "lidar_top"
LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring", "t_offset_s")
EGO_SE3_LIDAR = SE3.from_yaw(0.015, np.array([0.3, 0.0, 1.8]))
POSE_RATE_HZ = 100
CAMERA_MAX_RANGE_M = 400.0
_SUN_DIR = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])
_SKY_HORIZON = np.array([0.80, 0.86, 0.93], dtype=np.float32)
_SKY_ZENITH = np.array([0.42, 0.60, 0.86], dtype=np.float32)
_CACHE_FRAMES = 6


@dataclass(frozen=True)
class _SweepData:
    points: np.ndarray        # (P,6) float32 in the lidar frame
    track_id: np.ndarray      # (P,) int64
    world_points: np.ndarray  # (P,3) float64, noise-free
    times_ns: np.ndarray      # (P,) int64


def _camera_model(config: SimConfig, index: int, name: str) -> PinholeCamera | FisheyeCamera:
    width, height = config.image_size_px
    if name in config.fisheye_cameras:
        f = width / 3.2
        return FisheyeCamera(f, f, width / 2 - 0.5 + 1.5, height / 2 - 0.5 - 1.0, width, height,
                             distortion=(0.04, -0.01, 0.002, 0.0))
    f = (width / 2) / np.tan(np.deg2rad(40.0))
    return PinholeCamera(f * (1 + 0.01 * index), f * (1 + 0.01 * index) * 1.002, width / 2 - 0.5 + 3.2 - index,
                         height / 2 - 0.5 - 2.1 + index, width, height,
                         distortion=(-0.12 + 0.01 * index, 0.03, 0.0006, -0.0004, 0.0))


def _ego_SE3_camera(name: str) -> SE3:
    yaw, lateral = CAMERA_LAYOUT[name]
    # Camera axes (x right, y down, z forward) in the ego frame for a camera looking along ego +x.
    base = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    pitch = 0.03  # looking slightly down
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(-pitch), -np.sin(-pitch)], [0.0, np.sin(-pitch), np.cos(-pitch)]])
    rz = SE3.from_yaw(yaw, np.zeros(3)).rotation
    translation = np.array([0.3 + 1.3 * np.cos(yaw), lateral, 1.55])
    return SE3(rz @ base @ rx, translation)


def _camera_key(model: PinholeCamera | FisheyeCamera) -> tuple:
    """Every parameter that a camera's pixel rays depend on, as a hashable key."""
    extra = (float(model.max_theta_rad),) if model.model == "fisheye" else ()
    return (model.model, float(model.fx_px), float(model.fy_px), float(model.cx_px), float(model.cy_px),
            int(model.width_px), int(model.height_px), tuple(float(c) for c in model.distortion)) + extra


_RAY_GRIDS: OrderedDict[tuple, tuple[RayGrid, np.ndarray]] = OrderedDict()
_RAY_GRIDS_MAX = 16
_RAY_GRIDS_LOCK = threading.Lock()


def _camera_ray_grid(model: PinholeCamera | FisheyeCamera) -> tuple[RayGrid, np.ndarray]:
    """The (H,W) pixel-ray grid of a camera and its (H,W) valid mask, shared by every SimDrive whose camera has the
    same parameters (an LRU cache of the last 16).

    Unprojecting every pixel (a Newton solve per pixel, ~1.5 s for 1600x900) is the cost of a camera's first render,
    and tests and benchmarks build many drives with the same cameras. The arrays are read-only, as they are shared.
    """
    key = _camera_key(model)
    with _RAY_GRIDS_LOCK:
        hit = _RAY_GRIDS.get(key)
        if hit is not None:
            _RAY_GRIDS.move_to_end(key)
            return hit
    width, height = model.width_px, model.height_px
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = model.unproject(np.stack([u.ravel(), v.ravel()], axis=1))
    valid = np.isfinite(rays).all(axis=1)
    if model.model == "fisheye":
        valid &= rays[:, 2] >= np.cos(model.max_theta_rad)
    rays = np.where(valid[:, None], rays, [0.0, 0.0, 1.0])
    grid = RayGrid.build(rays.reshape(height, width, 3), (8, 8))
    valid = valid.reshape(height, width)
    for array in (grid.dirs_sensor, grid.cell_radius_rad, *grid.sample_index, valid):
        array.setflags(write=False)
    with _RAY_GRIDS_LOCK:
        _RAY_GRIDS[key] = (grid, valid)
        while len(_RAY_GRIDS) > _RAY_GRIDS_MAX:
            _RAY_GRIDS.popitem(last=False)
    return grid, valid


class SimDrive:
    """A generated drive (see the module docstring). Build with :func:`simulate`.

    Attributes:
        config: the SimConfig. world: the World (paths, motions, meshes).
        sensors: name -> SensorCalibration, ``"lidar_top"`` first, then the cameras.
        frame_timestamps_ns: (F,) lidar sweep timestamps.
        pose_timestamps_ns: (T,) 100 Hz pose times covering every sweep and image with 0.2 s to spare.
        world_SE3_ego: batch of T exact ego poses at those times.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.world: World = build_world(config)
        self._raycaster = Raycaster(self.world)
        period_ns = int(round(config.sweep_period_s * 1e9))
        self.frame_timestamps_ns = config.start_time_ns + np.round(
            np.arange(config.num_frames) * 1e9 / config.lidar_hz).astype(np.int64)
        step = 1_000_000_000 // POSE_RATE_HZ
        first = config.start_time_ns - 200_000_000
        last = int(self.frame_timestamps_ns[-1]) + period_ns + 200_000_000
        self.pose_timestamps_ns = np.arange(first, last + 1, step, dtype=np.int64)
        self.world_SE3_ego = self.world_SE3_ego_at(self.pose_timestamps_ns)

        # Lidar rays: column j fires at t_offset_j; beam 0 (ring 0) is the lowest.
        a, b = config.azimuth_steps, config.num_beams
        self._column_offset_ns = np.round(period_ns * (np.arange(a) / a - 0.5)).astype(np.int64)
        azimuth = 2 * np.pi * self._column_offset_ns / period_ns
        elevation = np.linspace(config.beam_elevation_min_rad, config.beam_elevation_max_rad, b)
        ca, sa = np.cos(azimuth)[:, None], np.sin(azimuth)[:, None]
        ce, se = np.cos(elevation)[None, :], np.sin(elevation)[None, :]
        dirs = np.stack(np.broadcast_arrays(ca * ce, sa * ce, np.ones((a, 1)) * se), axis=-1)
        self._lidar_grid = RayGrid.build(dirs, (8, 8))

        self.sensors: dict[str, SensorCalibration] = {
            LIDAR_NAME: SensorCalibration(LIDAR_NAME, "lidar", EGO_SE3_LIDAR)}
        for i, name in enumerate(config.camera_names):
            self.sensors[name] = SensorCalibration(name, "camera", _ego_SE3_camera(name),
                                                   _camera_model(config, i, name), readout_s=config.camera_readout_s)
        self._camera_grids: dict[str, tuple[RayGrid, np.ndarray]] = {}
        self._sweeps: OrderedDict[int, _SweepData] = OrderedDict()
        self._lock = threading.Lock()  # frames may be generated from several threads (see write_sim_drive)

    # ----- time and poses ------------------------------------------------------------------------------------------
    def _seconds(self, timestamps_ns) -> np.ndarray:
        return (np.asarray(timestamps_ns, dtype=np.int64) - self.config.start_time_ns).astype(np.float64) * 1e-9

    @property
    def camera_names(self) -> list[str]:
        return self.config.camera_names

    @property
    def num_frames(self) -> int:
        return self.config.num_frames

    def world_SE3_ego_at(self, timestamps_ns) -> SE3:
        """Exact ego poses from the analytic trajectory at any times: a batch for an array, single for a scalar."""
        t = np.asarray(timestamps_ns, dtype=np.int64)
        poses = self.world.world_SE3_ego(self._seconds(t.reshape(-1)))
        return poses[0] if t.ndim == 0 else poses

    def _check_frame(self, frame: int) -> int:
        if not 0 <= int(frame) < self.num_frames:
            raise IndexError(f"frame {frame} out of range [0, {self.num_frames})")
        return int(frame)

    # ----- lidar ---------------------------------------------------------------------------------------------------
    def _sweep_data(self, frame: int) -> _SweepData:
        frame = self._check_frame(frame)
        with self._lock:
            if frame in self._sweeps:
                self._sweeps.move_to_end(frame)
                return self._sweeps[frame]
        cfg = self.config
        times_ns = int(self.frame_timestamps_ns[frame]) + self._column_offset_ns
        world_SE3_lidar = self.world_SE3_ego_at(times_ns).compose(EGO_SE3_LIDAR)
        hits = self._raycaster.cast(self._lidar_grid, self._seconds(times_ns), world_SE3_lidar, cfg.lidar_max_range_m)
        keep = np.flatnonzero(hits.hit & (hits.t_m >= cfg.lidar_min_range_m))
        b = cfg.num_beams
        rng = np.random.default_rng([cfg.seed, frame, 7])
        range_m = hits.t_m[keep] + cfg.range_noise_m * rng.standard_normal(len(keep))
        dirs_lidar = self._lidar_grid.dirs_sensor.reshape(-1, 3)[keep]
        intensity = self._intensity(hits, keep)
        column = keep // b
        points = np.empty((len(keep), len(LIDAR_FIELDS)), dtype=np.float32)
        points[:, :3] = range_m[:, None] * dirs_lidar
        points[:, 3] = intensity
        points[:, 4] = keep % b
        points[:, 5] = self._column_offset_ns[column] * 1e-9
        obj = hits.object_index[keep]
        track = np.where(obj >= 0, self.world.track_id[np.maximum(obj, 0)] if len(self.world.track_id) else -1, -1)
        data = _SweepData(points, track.astype(np.int64), hits.point_world[keep], times_ns[column])
        with self._lock:
            self._sweeps[frame] = data
            if len(self._sweeps) > _CACHE_FRAMES:
                self._sweeps.popitem(last=False)
        return data

    def _intensity(self, hits: Hits, keep: np.ndarray) -> np.ndarray:
        """Reflectivity by material/class times an incidence-angle falloff, in [0, 1]."""
        world = self.world
        material, obj = hits.material[keep], hits.object_index[keep]
        albedo = np.zeros(len(keep))
        static = material >= 0
        albedo[static] = STATIC_ALBEDO[material[static]]
        ground = material == GROUND
        albedo[ground] = world.ground_appearance(hits.point_world[keep[ground], :2])[1]
        on_object = obj >= 0
        albedo[on_object] = CLASS_ALBEDO[world.object_class[obj[on_object]]]
        cos_incidence = np.abs(np.sum(hits.normal_world[keep] * hits.dirs_world[keep], axis=1))
        return np.clip(albedo * (0.25 + 0.75 * cos_incidence), 0.0, 1.0)

    def sweep(self, frame: int) -> LidarSweep:
        """The lidar sweep of a frame in the lidar frame (fields x y z intensity ring t_offset_s), points in firing
        order. Raises IndexError for a frame out of range."""
        data = self._sweep_data(frame)
        return LidarSweep(data.points.copy(), LIDAR_FIELDS, int(self.frame_timestamps_ns[frame]), LIDAR_NAME)

    def point_track_ids(self, frame: int) -> np.ndarray:
        """(P,) int64 track id of the object each point of the sweep hit, -1 for the ground and static structures."""
        return self._sweep_data(frame).track_id.copy()

    def sweep_world_points(self, frame: int) -> np.ndarray:
        """(P,3) float64 exact, noise-free world position of every return of the sweep (same order)."""
        return self._sweep_data(frame).world_points.copy()

    def point_times_ns(self, frame: int) -> np.ndarray:
        """(P,) int64 exact firing time of every return (the sweep's t_offset_s is this, stored in float32)."""
        return self._sweep_data(frame).times_ns.copy()

    # ----- cameras -------------------------------------------------------------------------------------------------
    def _camera(self, camera: str) -> SensorCalibration:
        if camera not in self.sensors or self.sensors[camera].kind != "camera":
            raise KeyError(f"no camera {camera!r}; cameras: {self.camera_names}")
        return self.sensors[camera]

    def camera_timestamps_ns(self, camera: str) -> np.ndarray:
        """(F,) image timestamps (the middle row's exposure time) of a camera, one per frame."""
        self._camera(camera)
        return self.frame_timestamps_ns + int(round(self.config.camera_time_offset_s * 1e9))

    def _camera_grid(self, camera: str) -> tuple[RayGrid, np.ndarray]:
        with self._lock:
            return self._camera_grid_locked(camera)

    def _camera_grid_locked(self, camera: str) -> tuple[RayGrid, np.ndarray]:
        if camera not in self._camera_grids:
            self._camera_grids[camera] = _camera_ray_grid(self._camera(camera).camera)
        return self._camera_grids[camera]

    def camera_row_times_ns(self, camera: str, frame: int) -> np.ndarray:
        """(H,) exposure time of every image row (all equal for a global shutter)."""
        calib = self._camera(camera)
        height = calib.camera.height_px
        t_image = int(self.camera_timestamps_ns(camera)[self._check_frame(frame)])
        return t_image + np.round((np.arange(height) / max(height - 1, 1) - 0.5) * calib.readout_s * 1e9).astype(
            np.int64)

    def camera_render(self, camera: str, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Render a camera image.

        Returns:
            rgb (H,W,3) uint8 and track_id (H,W) int64 of the object seen at every pixel (-1 for none).
        """
        calib = self._camera(camera)
        grid, valid = self._camera_grid(camera)
        times_ns = self.camera_row_times_ns(camera, frame)
        world_SE3_cam = self.world_SE3_ego_at(times_ns).compose(calib.ego_SE3_sensor)
        hits = self._raycaster.cast(grid, self._seconds(times_ns), world_SE3_cam, CAMERA_MAX_RANGE_M)
        rgb = self._shade(hits)
        rgb[~valid.reshape(-1)] = 0.0
        obj = hits.object_index
        track = np.where(obj >= 0, self.world.track_id[np.maximum(obj, 0)] if len(self.world.track_id) else -1, -1)
        track[~valid.reshape(-1)] = -1
        height, width = valid.shape
        return (np.round(rgb * 255).astype(np.uint8).reshape(height, width, 3),
                track.astype(np.int64).reshape(height, width))

    def _shade(self, hits: Hits) -> np.ndarray:
        """(R,3) float32 colours in [0,1]: material colours, Lambert shading, distance haze and a sky gradient."""
        world = self.world
        hit = np.flatnonzero(hits.hit)
        up = np.clip(hits.dirs_world[:, 2], 0.0, 1.0).astype(np.float32)[:, None]
        out = _SKY_HORIZON * (1 - up) + _SKY_ZENITH * up
        material, obj = hits.material[hit], hits.object_index[hit]
        point = hits.point_world[hit]
        color = np.empty((len(hit), 3), dtype=np.float32)
        static = material >= 0
        color[static] = world.static.color[hits.triangle[hit[static]]]
        ground = material == GROUND
        color[ground] = world.ground_appearance(point[ground, :2])[0]
        building = np.flatnonzero(material == BUILDING)
        if len(building):
            p, nrm = point[building], hits.normal_world[hit[building]]
            along = p[:, 0] * -nrm[:, 1] + p[:, 1] * nrm[:, 0]
            floor_z, bay = np.mod(p[:, 2], 3.2), np.mod(along, 3.0)
            window = ((np.abs(nrm[:, 2]) < 0.5) & (floor_z > 1.0) & (floor_z < 2.4) & (bay > 0.8) & (bay < 2.2)
                      & (p[:, 2] > 0.8))
            color[building[window]] = color[building[window]] * 0.35 + np.array([0.1, 0.15, 0.25], np.float32)
        on_object = obj >= 0
        color[on_object] = CLASS_COLOR_RGB[world.object_class[obj[on_object]]] * world.object_shade[
            obj[on_object]][:, None]
        lambert = 0.55 + 0.45 * np.clip(hits.normal_world[hit] @ _SUN_DIR.astype(np.float32), 0.0, 1.0)
        haze = (1.0 - np.exp(-hits.t_m[hit] / 350.0)).astype(np.float32)[:, None]
        out[hit] = color * (lambert[:, None] * (1 - haze)) + _SKY_HORIZON * haze
        return np.clip(out, 0.0, 1.0)

    def camera_image(self, camera: str, frame: int) -> np.ndarray:
        """(H,W,3) uint8 RGB rendering of a camera at a frame (not JPEG-compressed)."""
        return self.camera_render(camera, frame)[0]

    def camera_image_bytes(self, camera: str, frame: int) -> bytes:
        """The JPEG-encoded camera image of a frame."""
        import cv2

        rgb = self.camera_image(camera, frame)
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {camera} frame {frame}")
        return buf.tobytes()

    # ----- truth ---------------------------------------------------------------------------------------------------
    def objects_world_at(self, timestamp_ns: int) -> Boxes:
        """Exact world-frame boxes of all objects at any time (geometric centres, track ids, class labels)."""
        return self.world.objects_at(float(self._seconds(int(timestamp_ns))))

    def truth_boxes_ego(self, frame: int) -> Boxes:
        """Exact boxes in the ego frame at the frame's timestamp, for objects within ``label_range_m``."""
        t_ns = int(self.frame_timestamps_ns[self._check_frame(frame)])
        ego_SE3_world = self.world_SE3_ego_at(t_ns).inverse()
        boxes = self.objects_world_at(t_ns).transform(ego_SE3_world)
        return boxes[np.linalg.norm(boxes.center_m[:, :2], axis=1) <= self.config.label_range_m]


def simulate(config: SimConfig | None = None) -> SimDrive:
    """Build a synthetic drive. Sensor data is generated lazily, frame by frame, on first access.

    Raises:
        ValueError: an invalid config (raised by SimConfig itself).
    """
    return SimDrive(config or SimConfig())
