"""The viewer session: an opened drive, the current frame, the selection, and the sensor data of a frame ready to draw.

Pure Python and numpy (no Qt). Everything a frame step needs is computed here, vectorised, and cached per frame:

* the sweep, motion-compensated into the ego frame at the frame time (:func:`sensorlabel.fusion.compensate_points`),
  optionally aggregated with the previous sweeps (:func:`sensorlabel.fusion.aggregate_sweeps`);
* per camera, the image decoded at a reduced size (OpenCV ``IMREAD_REDUCED_COLOR_2/4/8`` when the panel is small)
  and the projection of the points (motion-compensated between the sweep and the exposure,
  :func:`sensorlabel.fusion.project_points`), scaled to the reduced image;
* ``cam_SE3_ego`` at the frame time for each camera, so that boxes (stored in the ego frame at the frame time) are
  drawn where they were at the exposure (:func:`sensorlabel.fusion.project_boxes` clips them at the near plane).

Labels are never cached: :meth:`Session.boxes` reads the store (indexed by frame) every time, so what is drawn is
always what is committed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.se3 import SE3

logger = logging.getLogger(__name__)

#: Colour modes of the points.
COLOR_MODES = ("height", "intensity", "camera")
_REDUCED_FLAGS = {1: "IMREAD_COLOR", 2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


@dataclass(frozen=True)
class CameraFrame:
    """One camera at one frame, ready to draw.

    Attributes:
        name: camera name.
        image_rgb: (h,w,3) uint8 image at ``1 / scale`` of the camera's resolution; None when the camera has no
            image at this frame (the panel still draws the boxes on a dark background of the camera's shape).
        scale: reduction factor (1, 2, 4 or 8): a camera pixel coordinate divided by ``scale`` is an image pixel.
        uv_px: (K,2) float32 projected points in *reduced* image pixels. depth_m: (K,) float32.
        point_index: (K,) int64 index of each projected point into the frame's points.
        cam_SE3_ego: single SE3 from the ego frame at the frame time to the camera at its exposure.
        camera: the camera model (full resolution).
    """

    name: str
    image_rgb: np.ndarray | None
    scale: int
    uv_px: np.ndarray
    depth_m: np.ndarray
    point_index: np.ndarray
    cam_SE3_ego: SE3
    camera: object

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) of the reduced image."""
        return self.camera.width_px // self.scale, self.camera.height_px // self.scale


@dataclass(frozen=True)
class FrameData:
    """The sensor data of one frame, in the ego frame at the frame time.

    Attributes:
        frame: frame index. timestamp_ns: the frame time.
        points_ego: (P,3) float32 points (motion-compensated; several sweeps when aggregated).
        intensity: (P,) float32.
        cameras: one :class:`CameraFrame` per camera of the drive, in the drive's order.
    """

    frame: int
    timestamp_ns: int
    points_ego: np.ndarray
    intensity: np.ndarray
    cameras: tuple[CameraFrame, ...]

    @property
    def num_points(self) -> int:
        return len(self.points_ego)


def reduction_for(width_px: int, target_width_px: int) -> int:
    """Largest decode reduction (1, 2, 4, 8) that keeps the image at least ``target_width_px`` wide."""
    scale = 1
    while scale < 8 and width_px // (scale * 2) >= target_width_px:
        scale *= 2
    return scale


def decode_image(encoded: bytes, scale: int) -> np.ndarray | None:
    """Decode JPEG/PNG bytes at 1/scale with OpenCV's reduced decoders; (h,w,3) uint8 RGB or None if undecodable."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), getattr(cv2, _REDUCED_FLAGS[scale]))
    if bgr is None:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Session:
    """An opened drive in the viewer.

    Args:
        drive: an opened :class:`sensorlabel.drive.Drive`.
        camera_target_width_px: panels are about this wide; images are decoded at the smallest size >= it.
        cache_frames: how many frames of sensor data to keep.

    Attributes:
        frame: the current frame index.
        aggregate_sweeps: number of sweeps shown together (1 = the frame's own sweep).
    """

    def __init__(self, drive, camera_target_width_px: int = 480, cache_frames: int = 4):
        self.drive = drive
        self.store = drive.labels
        self.camera_target_width_px = int(camera_target_width_px)
        self.frame = 0
        self.aggregate_sweeps = 1
        self._cache: OrderedDict[tuple[int, int], FrameData] = OrderedDict()
        self._cache_frames = int(cache_frames)
        self._frame_listeners: list[Callable[[int], None]] = []

    # ----- frames -------------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return self.drive.num_frames

    def subscribe_frame(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(frame)`` whenever the current frame changes."""
        self._frame_listeners.append(listener)

    def go_to(self, frame: int) -> int:
        """Make ``frame`` (clamped to the drive) current; returns the new current frame."""
        frame = int(np.clip(int(frame), 0, max(self.num_frames - 1, 0)))
        if frame != self.frame:
            self.frame = frame
            for listener in list(self._frame_listeners):
                listener(frame)
        return self.frame

    def step(self, delta: int) -> int:
        """Move by ``delta`` frames (clamped)."""
        return self.go_to(self.frame + int(delta))

    def set_aggregate(self, sweeps: int) -> None:
        """Show ``sweeps`` sweeps (this frame's and the previous ones) together; 1 shows the frame's own."""
        self.aggregate_sweeps = max(int(sweeps), 1)

    # ----- labels -------------------------------------------------------------------------------------------------
    def boxes(self, frame: int | None = None):
        """BoxRecords of a frame (the current one by default), read from the store."""
        return self.store.boxes_at(self.frame if frame is None else frame)

    def keyframes(self) -> np.ndarray:
        """(K,) sorted frames holding at least one human box."""
        return np.unique(self.store.query(sources=["human"]).frame)

    def presence(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which track has a box in which frame: track ids (T,), frames (N,), rows into the track ids (N,) and the
        human flag (N,) for every stored box (used by the timeline)."""
        rec = self.store.query()
        tracks, row = np.unique(rec.boxes.track_id, return_inverse=True)
        return tracks, rec.frame, row.reshape(-1), rec.source == "human"

    # ----- sensor data --------------------------------------------------------------------------------------------
    def frame_data(self, frame: int | None = None) -> FrameData:
        """The sensor data of a frame (the current one by default), cached."""
        frame = self.frame if frame is None else int(frame)
        key = (frame, self.aggregate_sweeps)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        data = self._load(frame)
        self._cache[key] = data
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return data

    def _load(self, frame: int) -> FrameData:
        from sensorlabel.fusion import CameraView, compensate_points, project_points

        drive = self.drive
        t_frame = int(drive.frame_timestamps_ns[frame])
        pose_fn = drive.world_SE3_ego
        points, intensity = self._points(frame, t_frame)
        world_SE3_ref = pose_fn(np.array([t_frame]))[0]
        cameras = []
        for name in drive.camera_names:
            calibration = drive.sensors[name]
            cam = calibration.camera
            scale = reduction_for(cam.width_px, self.camera_target_width_px)
            index = drive.frame_camera_index(frame, name)
            image, t_cam = None, t_frame
            if index >= 0:
                image = decode_image(drive.camera_image_bytes(name, index), scale)
                t_cam = int(drive.camera_timestamps_ns(name)[index]) if image is not None else t_frame
            try:
                world_SE3_cam_ego = pose_fn(np.array([t_cam]))[0]
            except ValueError:  # an exposure outside the pose range: fall back to the frame time
                t_cam, world_SE3_cam_ego = t_frame, world_SE3_ref
            cam_SE3_ego = calibration.ego_SE3_sensor.inverse().compose(world_SE3_cam_ego.inverse()).compose(
                world_SE3_ref)
            if len(points) and image is not None:
                view = CameraView(name, cam, calibration.ego_SE3_sensor.inverse(), t_cam, calibration.readout_s)
                try:
                    proj = project_points(points, view, pose_fn, t_frame)
                except ValueError:
                    proj = project_points(points, CameraView(name, cam, view.cam_SE3_ego, t_frame), pose_fn, t_frame)
                uv = proj.uv_px / np.float32(scale)
                cameras.append(CameraFrame(name, image, scale, uv, proj.depth_m, proj.point_index, cam_SE3_ego, cam))
            else:
                cameras.append(CameraFrame(name, image, scale, np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                                           np.zeros(0, np.int64), cam_SE3_ego, cam))
        return FrameData(frame, t_frame, points, intensity, tuple(cameras))

    def _points(self, frame: int, t_frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Points of the frame's sweep (and the previous ones when aggregating) in the ego frame at ``t_frame``."""
        from sensorlabel.fusion import SweepInput, aggregate_sweeps, compensate_points

        drive = self.drive
        if not drive.lidar_names:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
        lidar = drive.lidar_names[0]
        ego_SE3_lidar = drive.sensors[lidar].ego_SE3_sensor
        sweep = drive.frame_sweep(frame)
        if sweep is None:
            return np.zeros((0, 3), np.float32), np.zeros(0, np.float32)
        pose_fn = self._safe_pose_fn(t_frame)
        if self.aggregate_sweeps <= 1:
            points = np.ascontiguousarray(compensate_points(sweep.xyz_sensor, sweep.point_times_ns(), ego_SE3_lidar,
                                                            pose_fn, t_frame))
            return points, sweep.field("intensity").astype(np.float32)
        first = max(drive.frame_lidar_index(frame) - self.aggregate_sweeps + 1, 0)
        sweeps, intensities = [], []
        lidar_ts = drive.lidar_timestamps_ns(lidar)
        frame_of = np.searchsorted(drive.frame_timestamps_ns, lidar_ts)
        for index in range(first, drive.frame_lidar_index(frame) + 1):
            s = drive.lidar_sweep(lidar, index)
            f = int(np.clip(frame_of[index], 0, drive.num_frames - 1))
            sweeps.append(SweepInput(s.xyz_sensor, s.point_times_ns(), s.timestamp_ns, self.boxes(f).boxes))
            intensities.append(s.field("intensity").astype(np.float32))
        cloud = aggregate_sweeps(sweeps, ego_SE3_lidar, pose_fn, t_frame)
        intensity = np.concatenate(intensities)
        offsets = np.cumsum([0] + [len(i) for i in intensities])
        return (np.ascontiguousarray(cloud.points, dtype=np.float32),
                intensity[offsets[cloud.sweep_index] + cloud.point_index])

    def _safe_pose_fn(self, t_frame: int):
        """The drive's pose function, clamping query times into its extrapolation range (points a few ms outside
        the recorded poses must not make the frame unviewable)."""
        drive = self.drive
        if not drive.has_poses:
            return drive.world_SE3_ego
        stamps = drive.pose_timestamps_ns
        lo, hi = int(stamps[0]) - 400_000_000, int(stamps[-1]) + 400_000_000

        def fn(timestamps_ns: np.ndarray) -> SE3:
            return drive.world_SE3_ego(np.clip(np.asarray(timestamps_ns, dtype=np.int64), lo, hi))

        return fn

    def point_colors(self, data: FrameData, mode: str) -> np.ndarray:
        """(P,4) float32 RGBA in [0, 1] for the points of ``data`` in a colour mode of :data:`COLOR_MODES`.

        Raises:
            ValueError: unknown mode.
        """
        if mode not in COLOR_MODES:
            raise ValueError(f"colour mode must be one of {COLOR_MODES}, got {mode!r}")
        n = data.num_points
        if mode == "height":
            return colormap(np.clip((data.points_ego[:, 2] + 2.5) / 5.0, 0, 1))
        if mode == "intensity":
            values = data.intensity
            hi = float(np.percentile(values, 99)) if n else 1.0
            return colormap(np.clip(values / max(hi, 1e-6), 0, 1) ** 0.7, cmap="intensity")
        rgba = np.full((n, 4), (0.35, 0.35, 0.4, 1.0), np.float32)
        for cam in data.cameras:
            if cam.image_rgb is None or len(cam.uv_px) == 0:
                continue
            h, w = cam.image_rgb.shape[:2]
            col = np.clip(np.rint(cam.uv_px[:, 0]).astype(np.int64), 0, w - 1)
            row = np.clip(np.rint(cam.uv_px[:, 1]).astype(np.int64), 0, h - 1)
            rgba[cam.point_index, :3] = cam.image_rgb[row, col] / np.float32(255)
        return rgba


# Five-stop colour ramps (turbo-like for height, warm for intensity), sampled into 256-entry lookup tables so that
# colouring 120k points is one quantisation and one gather.
_RAMPS = {
    "height": np.array([[0.19, 0.07, 0.23], [0.16, 0.47, 0.93], [0.10, 0.85, 0.55], [0.96, 0.77, 0.15],
                        [0.80, 0.14, 0.06]], np.float32),
    "intensity": np.array([[0.15, 0.15, 0.45], [0.2, 0.5, 0.9], [0.6, 0.9, 0.9], [1.0, 0.95, 0.6], [1.0, 1.0, 1.0]],
                          np.float32),
}


def _lut(ramp: np.ndarray) -> np.ndarray:
    x = np.linspace(0, 1, 256)
    stops = np.linspace(0, 1, len(ramp))
    table = np.ones((256, 4), np.float32)
    for channel in range(3):
        table[:, channel] = np.interp(x, stops, ramp[:, channel])
    return table


_LUTS = {name: _lut(ramp) for name, ramp in _RAMPS.items()}


def colormap(values: np.ndarray, cmap: str = "height") -> np.ndarray:
    """(N,) values in [0, 1] -> (N,4) float32 RGBA."""
    index = (np.clip(np.asarray(values, np.float32), 0, 1) * 255).astype(np.uint8)
    return _LUTS[cmap][index]
