"""Typed configuration of a synthetic drive."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

#: Cameras in mounting order: name -> (mounting yaw about the ego z axis in rad, lateral position y in m).
CAMERA_LAYOUT: dict[str, tuple[float, float]] = {
    "cam_front": (0.0, 0.0),
    "cam_front_left": (np.deg2rad(55.0), 0.5),
    "cam_front_right": (np.deg2rad(-55.0), -0.5),
    "cam_back": (np.pi, 0.0),
    "cam_back_left": (np.deg2rad(110.0), 0.6),
    "cam_back_right": (np.deg2rad(-110.0), -0.6),
}


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a synthetic drive. The same config (seed included) gives the same drive.

    Attributes:
        seed: seeds the scene layout, the object motions and the range noise.
        num_frames: lidar sweeps (= frames) in the drive.
        lidar_hz: spin rate of the lidar; one sweep spans ``1 / lidar_hz`` seconds.
        num_beams: lidar beams (rings), spread evenly between the two elevations below.
        azimuth_steps: firing columns per revolution. With the defaults, 2048 columns give about 110k-125k returns.
        beam_elevation_max_rad, beam_elevation_min_rad: elevation of the top and bottom beams (+3 and -25 degrees).
        lidar_min_range_m, lidar_max_range_m: returns outside this range are dropped.
        range_noise_m: standard deviation of the Gaussian range noise along each ray (0 for exact points).
        num_cameras: cameras, taken in the order of ``CAMERA_LAYOUT`` (cam_front, cam_front_left, ...), 0..6.
        fisheye_cameras: names of cameras that use the fisheye model instead of the distorted pinhole.
        image_size_px: (width, height) of every camera image.
        camera_time_offset_s: camera exposure time minus the lidar sweep timestamp.
        camera_readout_s: rolling-shutter readout time (first to last row); 0 for a global shutter.
        jpeg_quality: JPEG quality of the encoded images.
        num_cars, num_pedestrians, num_cyclists: objects to place (fewer when a placement keeps colliding).
        ego_speed_mps: initial ego speed.
        ego_speed_change_mps: smooth speed change of the ego during the drive (acceleration when positive).
        label_range_m: truth boxes are reported for objects whose centre is within this distance of the ego.
        start_time_ns: timestamp of the first lidar sweep.
    """

    seed: int = 0
    num_frames: int = 100
    lidar_hz: float = 10.0
    num_beams: int = 64
    azimuth_steps: int = 2048
    beam_elevation_max_rad: float = float(np.deg2rad(3.0))
    beam_elevation_min_rad: float = float(np.deg2rad(-25.0))
    lidar_min_range_m: float = 1.0
    lidar_max_range_m: float = 100.0
    range_noise_m: float = 0.01
    num_cameras: int = 2
    fisheye_cameras: tuple[str, ...] = ()
    image_size_px: tuple[int, int] = (960, 540)
    camera_time_offset_s: float = 0.03
    camera_readout_s: float = 0.0
    jpeg_quality: int = 90
    num_cars: int = 14
    num_pedestrians: int = 10
    num_cyclists: int = 4
    ego_speed_mps: float = 8.0
    ego_speed_change_mps: float = 4.0
    label_range_m: float = 80.0
    start_time_ns: int = 1_700_000_000_000_000_000

    def __post_init__(self) -> None:
        def need(ok: bool, field_name: str) -> None:
            if not ok:
                raise ValueError(f"SimConfig.{field_name} is out of range: {getattr(self, field_name)!r}")

        need(self.num_frames >= 1, "num_frames")
        need(self.lidar_hz > 0, "lidar_hz")
        need(self.num_beams >= 1, "num_beams")
        need(self.azimuth_steps >= 8, "azimuth_steps")
        need(self.beam_elevation_min_rad < self.beam_elevation_max_rad < np.pi / 2, "beam_elevation_max_rad")
        need(self.beam_elevation_min_rad > -np.pi / 2, "beam_elevation_min_rad")
        need(0 <= self.lidar_min_range_m < self.lidar_max_range_m, "lidar_max_range_m")
        need(self.range_noise_m >= 0, "range_noise_m")
        need(0 <= self.num_cameras <= len(CAMERA_LAYOUT), "num_cameras")
        need(all(name in self.camera_names for name in self.fisheye_cameras), "fisheye_cameras")
        need(len(self.image_size_px) == 2 and min(self.image_size_px) >= 16, "image_size_px")
        need(abs(self.camera_time_offset_s) < 1.0, "camera_time_offset_s")
        need(0 <= self.camera_readout_s < 0.2, "camera_readout_s")
        need(1 <= self.jpeg_quality <= 100, "jpeg_quality")
        need(min(self.num_cars, self.num_pedestrians, self.num_cyclists) >= 0, "num_cars")
        need(self.ego_speed_mps > 0, "ego_speed_mps")
        need(self.ego_speed_mps + min(self.ego_speed_change_mps, 0.0) > 0.5, "ego_speed_change_mps")
        need(self.label_range_m > 0, "label_range_m")

    @property
    def camera_names(self) -> list[str]:
        """The cameras of this drive, in order."""
        return list(CAMERA_LAYOUT)[: self.num_cameras]

    @property
    def sweep_period_s(self) -> float:
        return 1.0 / self.lidar_hz

    @property
    def duration_s(self) -> float:
        """Time from the first to one period after the last sweep."""
        return self.num_frames / self.lidar_hz

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (written beside the drive it produced)."""
        out = dataclasses.asdict(self)
        out["fisheye_cameras"] = list(self.fisheye_cameras)
        out["image_size_px"] = list(self.image_size_px)
        return out
