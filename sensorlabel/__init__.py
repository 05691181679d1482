"""sensorlabel: an autonomous-driving sensor annotation engine.

Load recorded drives, fuse lidar and cameras in one frame, propagate and track 3D boxes, evaluate and export.
Heavy optional dependencies (open3d, dask, PySide6) are imported inside the functions that need them.
"""

from sensorlabel.errors import (
    CalibrationError,
    FormatError,
    LabelStoreError,
    SchemaError,
    SensorlabelError,
)
from sensorlabel.geometry import SE3, Boxes

__version__ = "0.1.0"
__all__ = ["Boxes", "CalibrationError", "FormatError", "LabelStoreError", "SE3", "SchemaError", "SensorlabelError"]
