"""Sensor descriptions and sensor data records shared by the drive store, the importers and the simulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.errors import CalibrationError, InvalidTransformError
from sensorlabel.geometry.camera import CameraModel
from sensorlabel.geometry.se3 import SE3

#: Point fields every lidar sweep starts with; optional extras follow in this order when present.
REQUIRED_LIDAR_FIELDS = ("x", "y", "z", "intensity")
OPTIONAL_LIDAR_FIELDS = ("ring", "t_offset_s")


@dataclass(frozen=True)
class SensorCalibration:
    """One sensor's calibration.

    Attributes:
        name: sensor name, e.g. ``"lidar_top"`` or ``"cam_front"``.
        kind: ``"lidar"`` or ``"camera"``.
        ego_SE3_sensor: single SE3 mounting the sensor on the ego vehicle.
        camera: the camera model (intrinsics and distortion) for cameras; None for lidars.
        readout_s: rolling-shutter readout time of a camera, from the first to the last image row, seconds.
            0 for a global shutter. The image timestamp is the exposure time of the middle row.

    Raises:
        CalibrationError: unknown kind, a camera without a model, or a negative readout.
    """

    name: str
    kind: str
    ego_SE3_sensor: SE3
    camera: CameraModel | None = None
    readout_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("lidar", "camera"):
            raise CalibrationError(f"sensor {self.name!r}: kind must be 'lidar' or 'camera', got {self.kind!r}")
        if self.kind == "camera" and self.camera is None:
            raise CalibrationError(f"sensor {self.name!r}: a camera needs a camera model")
        if self.ego_SE3_sensor.is_batch:
            raise CalibrationError(f"sensor {self.name!r}: ego_SE3_sensor must be a single transform")
        if not np.isfinite(self.readout_s) or self.readout_s < 0:
            raise CalibrationError(f"sensor {self.name!r}: readout_s must be >= 0, got {self.readout_s}")


def checked_transform(matrix: np.ndarray, what: str) -> SE3:
    """Build an SE3 from a (4,4) matrix, turning an invalid one into a CalibrationError that names ``what``.

    Raises:
        CalibrationError: NaN entries, a non-orthonormal rotation or a bad homogeneous row, with the value.
    """
    try:
        return SE3.from_matrix(np.asarray(matrix, dtype=np.float64))
    except (InvalidTransformError, ValueError) as exc:
        raise CalibrationError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class LidarSweep:
    """One lidar sweep.

    Attributes:
        points: (P,F) float32 in the lidar sensor frame; columns named by ``fields``.
        fields: column names: ``x y z intensity`` then optionally ``ring`` and ``t_offset_s`` (seconds relative
            to ``timestamp_ns``; the time each point was measured).
        timestamp_ns: the sweep's reference time (int64 ns).
        sensor: the lidar's name.
    """

    points: np.ndarray
    fields: tuple[str, ...]
    timestamp_ns: int
    sensor: str

    def __post_init__(self) -> None:
        pts = np.asarray(self.points)
        if pts.ndim != 2 or pts.shape[1] != len(self.fields):
            raise ValueError(f"points: expected (P,{len(self.fields)}) for fields {self.fields}, got {pts.shape}")
        if tuple(self.fields[:4]) != REQUIRED_LIDAR_FIELDS:
            raise ValueError(f"fields must start with {REQUIRED_LIDAR_FIELDS}, got {self.fields}")

    @property
    def xyz_sensor(self) -> np.ndarray:
        """(P,3) float32 point coordinates in the lidar frame."""
        return self.points[:, :3]

    def field(self, name: str) -> np.ndarray:
        """(P,) column ``name``.

        Raises:
            KeyError: the sweep has no such field.
        """
        if name not in self.fields:
            raise KeyError(f"sweep of {self.sensor!r} has no field {name!r}; it has {self.fields}")
        return self.points[:, self.fields.index(name)]

    def point_times_ns(self) -> np.ndarray:
        """(P,) int64 measurement time of every point: the sweep time plus ``t_offset_s`` when present."""
        if "t_offset_s" in self.fields:
            return self.timestamp_ns + np.round(self.field("t_offset_s").astype(np.float64) * 1e9).astype(np.int64)
        return np.full(len(self.points), self.timestamp_ns, dtype=np.int64)
