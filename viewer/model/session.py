"""The viewer session: an opened drive, the current frame, the selection, and the sensor data of a frame ready to draw.

Pure Python and numpy (no Qt). Everything a frame step needs is computed here, vectorised, and cached per frame:

* the sweep, motion-compensated into the ego frame at the frame time and projected into every camera in one pass
  (:func:`sensorlabel.fusion.project_sweep`: motion-compensated between the sweep and each exposure), or, when
  sweeps are aggregated, the sweep and the previous ones (:func:`sensorlabel.fusion.aggregate_sweeps`) projected
  with :func:`sensorlabel.fusion.project_points`; projections are scaled to the reduced images;
* per camera, the image decoded at a reduced size (OpenCV ``IMREAD_REDUCED_COLOR_2/4/8`` when the panel is small);
* ``cam_SE3_ego`` at the frame time for each camera, so that boxes (stored in the ego frame at the frame time) are
  drawn where they were at the exposure (:func:`sensorlabel.fusion.project_boxes` clips them at the near plane);
* what the views upload (point colours, bird's-eye raster, camera images with their points) and the boxes'
  wireframes in the cameras, built by :mod:`.render`.

A worker thread prepares the next frames ahead (:meth:`Session.prefetch`), with the settings of the moment it is
asked. Labels are never cached: :meth:`Session.boxes` reads the store (indexed by frame) on the UI thread every time,
so what is drawn is always what is committed; the wireframes are cached by the boxes' geometry.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.se3 import SE3

from .render import FrameRender, prepare_frame, project_wireframes

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


def _log_failure(future: Future) -> None:
    """A prefetch that failed is only logged: the UI thread loads the frame again when it is shown, and raises."""
    if not future.cancelled() and future.exception() is not None:
        logger.warning("prefetch failed: %r", future.exception())


class Session:
    """An opened drive in the viewer.

    Args:
        drive: an opened :class:`sensorlabel.drive.Drive`.
        camera_target_width_px: panels are about this wide; images are decoded at the smallest size >= it.
        cache_frames: how many frames of sensor data (and of prepared drawing data) to keep.
        prefetch: load frames ahead on a worker thread (:meth:`prefetch`); False loads only on demand.

    Attributes:
        frame: the current frame index.
        aggregate_sweeps: number of sweeps shown together (1 = the frame's own sweep).

    Thread safety: :meth:`frame_data` and :meth:`frame_render` may be called from any thread; a frame being loaded
    by one thread is waited for, not loaded twice. Labels are read only on the calling (UI) thread.
    """

    def __init__(self, drive, camera_target_width_px: int = 480, cache_frames: int = 8, prefetch: bool = True):
        self.drive = drive
        self.store = drive.labels
        self.camera_target_width_px = int(camera_target_width_px)
        self.frame = 0
        self.aggregate_sweeps = 1
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        self._pending: dict[tuple, Future] = {}
        self._lock = threading.Lock()
        self._cache_frames = int(cache_frames)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sensorlabel-prefetch") if prefetch else None
        self._helpers: ThreadPoolExecutor | None = None  # decode and draw helpers of a frame load (_helper_pool)
        self._frame_listeners: list[Callable[[int], None]] = []

    def close(self) -> None:
        """Stop the prefetch thread (waits for the frame it is loading; prefetching stays off) and the helper
        threads (a later load on demand starts them again)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        with self._lock:
            helpers, self._helpers = self._helpers, None
        if helpers is not None:
            helpers.shutdown(wait=True)

    def _helper_pool(self) -> ThreadPoolExecutor:
        """The two helper threads that decode and draw the camera images of a frame (OpenCV releases the GIL),
        shared by every load; created on first use."""
        with self._lock:
            if self._helpers is None:
                self._helpers = ThreadPoolExecutor(2, thread_name_prefix="sensorlabel-helper")
            return self._helpers

    def clear_cache(self) -> None:
        """Forget every loaded frame (after a change of the decode size, or to measure cold loads)."""
        with self._lock:
            self._cache.clear()

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

    # ----- sensor data --------------------------------------------------------------------------------------------
    def frame_data(self, frame: int | None = None) -> FrameData:
        """The sensor data of a frame (the current one by default), cached."""
        frame = self.frame if frame is None else int(frame)
        return self._data(frame, self.aggregate_sweeps)

    def frame_render(self, frame: int | None = None, color_mode: str = "height") -> FrameRender:
        """What the views upload for a frame (see :mod:`.render`): colours, bird's-eye raster, camera images with
        their points; cached per frame, aggregation and colour mode.

        Raises:
            ValueError: unknown colour mode.
        """
        if color_mode not in COLOR_MODES:
            raise ValueError(f"colour mode must be one of {COLOR_MODES}, got {color_mode!r}")
        frame = self.frame if frame is None else int(frame)
        return self._render(frame, self.aggregate_sweeps, color_mode)

    def wireframes(self, boxes, frame: int | None = None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """The wireframes of ``boxes`` (a :class:`Boxes` of the frame, ego frame) in every camera of a frame (the
        current one by default): per camera, (N,12,S,2) edge samples and (N,4) 2D boxes in reduced image pixels
        (:func:`.render.project_wireframes`); cached by the boxes' geometry, so a redraw for a new selection or a
        frame prefetched with the same boxes reuses them."""
        frame = self.frame if frame is None else int(frame)
        return self._wireframes(frame, self.aggregate_sweeps, boxes)

    def prefetch(self, frame: int, color_mode: str = "height", boxes=None) -> Future | None:
        """Start preparing ``frame`` (:meth:`frame_render`, and :meth:`wireframes` of ``boxes`` when given: read
        them on the UI thread) on the worker thread; returns its future, or None when the frame is out of range,
        prefetching is off, or sweeps are aggregated (aggregation reads the labels, which only the UI thread
        may touch)."""
        aggregate = self.aggregate_sweeps  # the settings now: the job must not read them when it runs
        if self._executor is None or aggregate > 1 or not 0 <= int(frame) < self.num_frames:
            return None
        frame = int(frame)

        def job() -> None:
            self._render(frame, aggregate, color_mode)
            if boxes is not None:
                self._wireframes(frame, aggregate, boxes)

        future = self._executor.submit(job)
        future.add_done_callback(_log_failure)
        return future

    def _data(self, frame: int, aggregate: int) -> FrameData:
        """The cached :class:`FrameData` of ``frame`` with ``aggregate`` sweeps."""
        return self._cached(("data", frame, aggregate), lambda: self._load(frame, aggregate))

    def _render(self, frame: int, aggregate: int, color_mode: str) -> FrameRender:
        """The cached :class:`FrameRender` of ``frame`` with ``aggregate`` sweeps in ``color_mode``."""

        def build() -> FrameRender:
            data = self._data(frame, aggregate)
            return prepare_frame(data, self.point_colors(data, color_mode), self._helper_pool())

        return self._cached(("render", frame, aggregate, color_mode), build)

    def _wireframes(self, frame: int, aggregate: int, boxes) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """The cached wireframes of ``boxes`` in every camera of ``frame`` with ``aggregate`` sweeps."""
        key = ("wire", frame, aggregate, len(boxes), boxes.center_m.tobytes(), boxes.lwh_m.tobytes(),
               boxes.quat_wxyz.tobytes())
        return self._cached(key, lambda: tuple(project_wireframes(cam, boxes)
                                               for cam in self._data(frame, aggregate).cameras))

    def _cached(self, key: tuple, compute: Callable[[], object]):
        """The cache entry ``key``, computing it once (other threads asking meanwhile wait for that result)."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            future = self._pending.get(key)
            owner = future is None
            if owner:
                future = self._pending[key] = Future()
        if not owner:
            return future.result()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            future.set_exception(exc)
            raise
        with self._lock:
            self._cache[key] = value
            del self._pending[key]
            while len(self._cache) > 3 * self._cache_frames:  # frame data, drawing data, wireframes of each frame
                self._cache.popitem(last=False)
        future.set_result(value)
        return value

    def _load(self, frame: int, aggregate: int) -> FrameData:
        """Read, compensate and project one frame: the sweep is compensated once and projected into every camera
        through a shared sector index (:func:`sensorlabel.fusion.project_sweep`), while the two helper threads read
        and decode the camera images (OpenCV releases the GIL). A camera whose image does not decode shows no image
        and gets no points."""
        from sensorlabel.fusion import CameraView, project_points, project_sweep

        drive = self.drive
        t_frame = int(drive.frame_timestamps_ns[frame])
        pose_fn = self._safe_pose_fn(t_frame)
        world_SE3_ref = pose_fn(np.array([t_frame]))[0]
        views, scales, cams, indices = [], [], [], []
        for name in drive.camera_names:
            calibration = drive.sensors[name]
            cam = calibration.camera
            index = drive.frame_camera_index(frame, name)
            t_cam = int(drive.camera_timestamps_ns(name)[index]) if index >= 0 else t_frame
            views.append(CameraView(name, cam, calibration.ego_SE3_sensor.inverse(), t_cam, calibration.readout_s))
            scales.append(reduction_for(cam.width_px, self.camera_target_width_px))
            cams.append(cam)
            indices.append(index)
        pool = self._helper_pool()
        decoding = [pool.submit(lambda n=v.name, i=i, sc=sc: decode_image(drive.camera_image_bytes(n, i), sc))
                    if i >= 0 else None for v, i, sc in zip(views, indices, scales)]
        try:
            sweep = drive.frame_sweep(frame) if drive.lidar_names else None
            with_index = [v for v, i in zip(views, indices) if i >= 0]
            if sweep is not None and aggregate <= 1:
                ego_SE3_lidar = drive.sensors[drive.lidar_names[0]].ego_SE3_sensor
                points_ref, projections = project_sweep(sweep.xyz_sensor, sweep.point_times_ns(), ego_SE3_lidar,
                                                        with_index, pose_fn, t_frame)
                points = np.ascontiguousarray(points_ref, np.float32)
                intensity = sweep.field("intensity").astype(np.float32)
            elif sweep is not None:
                points, intensity = self._aggregated_points(frame, sweep, t_frame, aggregate, pose_fn)
                projections = [project_points(points, v, pose_fn, t_frame) for v in with_index] if len(points) else []
            else:
                points, intensity, projections = np.zeros((0, 3), np.float32), np.zeros(0, np.float32), []
        finally:  # the decodes end before the frame does (an error while they run must not leave them behind)
            wait([job for job in decoding if job is not None])
        images = [None if job is None else job.result() for job in decoding]
        decoded = {v.name for v, image in zip(views, images) if image is not None}
        by_name = {p.camera: p for p in projections if p.camera in decoded}
        world_SE3_cam_egos = pose_fn(np.array([v.timestamp_ns for v in views], np.int64)) if views else None
        cameras = []
        for k, (view, image, scale, cam) in enumerate(zip(views, images, scales, cams)):
            cam_SE3_ego = view.cam_SE3_ego.compose(world_SE3_cam_egos[k].inverse()).compose(world_SE3_ref)
            proj = by_name.get(view.name)
            if proj is not None and len(points):
                uv = proj.uv_px / np.float32(scale)
                cameras.append(CameraFrame(view.name, image, scale, uv, proj.depth_m, proj.point_index, cam_SE3_ego,
                                           cam))
            else:
                cameras.append(CameraFrame(view.name, image, scale, np.zeros((0, 2), np.float32),
                                           np.zeros(0, np.float32), np.zeros(0, np.int64), cam_SE3_ego, cam))
        return FrameData(frame, t_frame, points, intensity, tuple(cameras))

    def _aggregated_points(self, frame: int, sweep, t_frame: int, aggregate: int, pose_fn
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Points of the frame's ``sweep`` and the previous ones (``aggregate`` > 1 sweeps in all) in the ego frame at
        ``t_frame``, moving objects transferred with their boxes (:func:`sensorlabel.fusion.aggregate_sweeps`)."""
        from sensorlabel.fusion import SweepInput, aggregate_sweeps

        drive = self.drive
        lidar = drive.lidar_names[0]
        ego_SE3_lidar = drive.sensors[lidar].ego_SE3_sensor
        last = drive.frame_lidar_index(frame)
        first = max(last - aggregate + 1, 0)
        sweeps, intensities = [], []
        lidar_ts = drive.lidar_timestamps_ns(lidar)
        frame_of = np.searchsorted(drive.frame_timestamps_ns, lidar_ts)
        for index in range(first, last + 1):
            s = sweep if index == last else drive.lidar_sweep(lidar, index)
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
