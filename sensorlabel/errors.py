"""Exception hierarchy of sensorlabel.

Every error the library raises on purpose derives from :class:`SensorlabelError`. The command line catches it,
prints its one-line message and exits with code 2; anything else is a bug and keeps its traceback.
Messages name the file, the field and the offending value.
"""

from __future__ import annotations

import os


class SensorlabelError(Exception):
    """Base of every deliberate sensorlabel error."""


class InvalidTransformError(SensorlabelError, ValueError):
    """A rigid transform that is not one: NaN or infinite entries, or a rotation that is not orthonormal."""


class FormatError(SensorlabelError):
    """A source or export file that cannot be read or written as its format says.

    Args:
        path: the offending file or folder.
        reason: what is wrong, naming the field and the value.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SchemaError(SensorlabelError):
    """A folder that is not a drive, or a drive whose stored layout this version cannot read."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CalibrationError(SensorlabelError):
    """A calibration or pose that is physically impossible (NaN, non-orthonormal rotation, bad intrinsics)."""


class LabelStoreError(SensorlabelError):
    """A label write that cannot be carried out (unknown box, conflicting writer, protected human box)."""


class DriveLockedError(LabelStoreError):
    """Another process holds the write lock of a drive's label store."""
