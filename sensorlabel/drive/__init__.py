"""Drives: sensor data in ``sensors.zarr`` (immutable after import) and labels in ``labels.sqlite``."""

from sensorlabel.drive.drive import Drive, DriveWriter
from sensorlabel.drive.labels import BoxRecords, LabelStore
from sensorlabel.drive.schema import SCHEMA_VERSION
from sensorlabel.drive.sensors import LidarSweep, SensorCalibration, checked_transform

__all__ = [
    "SCHEMA_VERSION",
    "BoxRecords",
    "Drive",
    "DriveWriter",
    "LabelStore",
    "LidarSweep",
    "SensorCalibration",
    "checked_transform",
]
