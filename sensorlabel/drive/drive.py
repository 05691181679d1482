"""A drive: one recording's sensor data (``sensors.zarr``, immutable after import) and its labels (``labels.sqlite``).

Writing goes through :class:`DriveWriter` (``Drive.create``): an importer streams sweeps and images in, in time order
per sensor, then :meth:`DriveWriter.finalize` synchronises frames and moves the finished folder into place.
Reading goes through :meth:`Drive.open`, which validates the whole layout (see :mod:`sensorlabel.drive.schema`) and
keeps the small arrays (timestamps, offsets, frame indices, poses) in memory so random access to a frame reads only
its points and image bytes.

Atomicity: everything is written into a sibling folder ``NAME.drive.tmp-XXXX`` whose root attributes (including
``schema_version``) are written last, then renamed onto ``NAME.drive`` with :func:`os.replace`. A process killed at
any instant leaves either no drive or the complete one; a left-over ``.tmp-`` folder never opens as a drive.
Overwriting moves the old drive aside first and deletes it only after the new one is in place.

Streaming writes: points and image bytes are uncompressed zarr v3 arrays, and each append goes straight into the
open chunk file of its sensor (:class:`~sensorlabel.drive.chunkio.ChunkStreamWriter`): no copy of the sweep, no
buffering, no chunk rewritten, no ``zarr.json`` update until finalize sets each array's final shape once. The writer
holds no sensor data in memory, however long the drive. Random access reads one sweep or image as byte ranges of the
one or two chunk files holding it (:func:`~sensorlabel.drive.chunkio.read_rows`).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sensorlabel.drive import chunkio, schema
from sensorlabel.drive.sensors import REQUIRED_LIDAR_FIELDS, LidarSweep, SensorCalibration, checked_transform
from sensorlabel.errors import CalibrationError, FormatError, SchemaError
from sensorlabel.geometry.se3 import SE3, first_non_increasing, interpolate_poses

logger = logging.getLogger(__name__)

#: How far outside the pose range world_SE3_ego extrapolates at constant velocity.
MAX_POSE_EXTRAPOLATION_NS = 500_000_000
#: Timestamps from this value on are shown as UTC dates in summaries (2001-09-09).
_EPOCH_2001_NS = 1_000_000_000 * 1_000_000_000


def nearest_indices(sensor_timestamps_ns: np.ndarray, query_ns: np.ndarray, tolerance_ns: float) -> np.ndarray:
    """Index of the nearest sensor timestamp for every query time, -1 when it is farther than ``tolerance_ns``.

    Args:
        sensor_timestamps_ns: (S,) int64, increasing.
        query_ns: (Q,) int64.
        tolerance_ns: largest accepted |difference| (inclusive); ``inf`` accepts any.

    Returns:
        (Q,) int64 indices into sensor_timestamps_ns; ties go to the earlier record.
    """
    sensor = np.asarray(sensor_timestamps_ns, dtype=np.int64)
    query = np.asarray(query_ns, dtype=np.int64)
    if len(sensor) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    after = np.clip(np.searchsorted(sensor, query, side="left"), 0, len(sensor) - 1)
    before = np.clip(after - 1, 0, len(sensor) - 1)
    pick = np.where(np.abs(sensor[after] - query) < np.abs(sensor[before] - query), after, before)
    return np.where(np.abs(sensor[pick] - query) <= tolerance_ns, pick, -1).astype(np.int64)


def _as_timestamp(value, what: str, path: Path) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FormatError(path, f"{what}: timestamp_ns must be an integer (ns), got {value!r}")
    if not -(2**63) <= int(value) < 2**63:
        raise FormatError(path, f"{what}: timestamp_ns {value} does not fit in int64")
    return int(value)


class _SeriesWriter:
    """One sensor's ragged series being written: rows, offsets and timestamps."""

    def __init__(self, appender: chunkio.ChunkStreamWriter | None):
        self.appender = appender
        self.offsets = [0]
        self.timestamps_ns: list[int] = []
        self.fields: tuple[str, ...] | None = None


class DriveWriter:
    """Writes a new drive; get one from :meth:`Drive.create`. Use as a context manager to discard on error.

    Leaving the ``with`` block without :meth:`finalize` (for example on an exception) deletes the temporary folder.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        source_format: str,
        sensors: dict[str, SensorCalibration],
        overwrite: bool,
        metadata: dict,
    ):
        import zarr

        self.path = path
        self._name = name
        self._source_format = source_format
        self._sensors = sensors
        self._overwrite = overwrite
        self._metadata = metadata
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
        self._root = zarr.open_group(self._tmp / schema.SENSORS_ZARR, mode="w", zarr_format=3)
        self._pose_timestamps_ns = np.zeros(0, dtype=np.int64)
        self._world_SE3_ego_matrix = np.zeros((0, 4, 4))
        self._poses_written = False
        self._series: dict[str, _SeriesWriter] = {}
        for sensor_name, sensor in sensors.items():
            if sensor.kind == "camera":
                array = self._root.create_array(
                    f"cameras/{sensor_name}/bytes",
                    shape=(0,),
                    dtype="uint8",
                    chunks=(schema.IMAGE_CHUNK_BYTES,),
                    compressors=None,
                    fill_value=0,
                )
                self._series[sensor_name] = _SeriesWriter(chunkio.ChunkStreamWriter(array))
            else:
                self._series[sensor_name] = _SeriesWriter(None)  # points array created at the first sweep (F known)
        self._done = False

    def __enter__(self) -> DriveWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()

    def abort(self) -> None:
        """Discard everything written so far (removes the temporary folder)."""
        self._done = True
        for series in self._series.values():
            if series.appender is not None:
                series.appender.discard()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # ----- appending ---------------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._done:
            raise FormatError(self.path, "this drive writer is already finalized or aborted")

    def _sensor_series(self, sensor_name: str, kind: str) -> _SeriesWriter:
        self._check_open()
        sensor = self._sensors.get(sensor_name)
        if sensor is None or sensor.kind != kind:
            known = [n for n, s in self._sensors.items() if s.kind == kind]
            raise FormatError(self.path, f"no {kind} named {sensor_name!r} in this drive's sensors; {kind}s: {known}")
        return self._series[sensor_name]

    def _check_time(self, series: _SeriesWriter, sensor_name: str, timestamp_ns: int) -> None:
        if series.timestamps_ns and timestamp_ns <= series.timestamps_ns[-1]:
            raise FormatError(
                self.path,
                f"{sensor_name}: timestamp_ns {timestamp_ns} is not after the previous {series.timestamps_ns[-1]} "
                "(append each sensor's records in increasing time order)",
            )

    def append_lidar_sweep(
        self, sensor_name: str, points: np.ndarray, fields: tuple[str, ...], timestamp_ns: int
    ) -> None:
        """Append one sweep of a lidar.

        Args:
            sensor_name: a lidar of the drive's sensors.
            points: (P,F) float in the lidar frame, columns named by ``fields``; stored as float32. Written to disk
                before this returns, so the caller may reuse the buffer.
            fields: ``x y z intensity`` then optionally ``ring``, ``t_offset_s``; the same for every sweep of a lidar.
            timestamp_ns: the sweep time (int ns), later than the previous sweep of this lidar.

        Raises:
            FormatError: unknown lidar, a bad shape, fields that differ from the first sweep, or a timestamp that
                does not increase; the message names the drive, the sensor and the value. Also a disk write failure.
        """
        series = self._sensor_series(sensor_name, "lidar")
        timestamp_ns = _as_timestamp(timestamp_ns, sensor_name, self.path)
        fields = tuple(fields)
        try:
            # no copy for C-contiguous float32 input: the rows go to disk before this call returns
            sweep = LidarSweep(np.ascontiguousarray(points, dtype="<f4"), fields, timestamp_ns, sensor_name)
        except ValueError as exc:
            raise FormatError(self.path, f"{sensor_name} sweep at {timestamp_ns} ns: {exc}") from None
        if series.fields is None:
            array = self._root.create_array(
                f"lidar/{sensor_name}/points",
                shape=(0, len(fields)),
                dtype="float32",
                chunks=(schema.POINTS_CHUNK_ROWS, len(fields)),
                compressors=None,
                fill_value=0.0,
                attributes={"fields": list(fields)},
            )
            series.appender, series.fields = chunkio.ChunkStreamWriter(array), fields
        elif fields != series.fields:
            raise FormatError(
                self.path,
                f"{sensor_name} sweep at {timestamp_ns} ns: fields {fields} differ from the first sweep's "
                f"{series.fields}",
            )
        self._check_time(series, sensor_name, timestamp_ns)
        self._append_rows(series, sensor_name, sweep.points)
        series.timestamps_ns.append(timestamp_ns)

    def _append_rows(self, series: _SeriesWriter, sensor_name: str, rows: np.ndarray) -> None:
        try:
            series.appender.append(rows)
        except OSError as exc:
            raise FormatError(self._tmp, f"{sensor_name}: cannot write: {exc.strerror or exc}") from None
        series.offsets.append(series.appender.num_rows)

    def append_camera_image(self, sensor_name: str, encoded: bytes, timestamp_ns: int) -> None:
        """Append one encoded image (JPEG/PNG bytes exactly as in the source) of a camera.

        Raises:
            FormatError: unknown camera, empty bytes, a timestamp that does not increase, or a disk write failure.
        """
        series = self._sensor_series(sensor_name, "camera")
        timestamp_ns = _as_timestamp(timestamp_ns, sensor_name, self.path)
        data = np.frombuffer(encoded if isinstance(encoded, bytes) else bytes(encoded), dtype=np.uint8)
        if len(data) == 0:
            raise FormatError(self.path, f"{sensor_name} image at {timestamp_ns} ns: empty image bytes")
        self._check_time(series, sensor_name, timestamp_ns)
        self._append_rows(series, sensor_name, data)
        series.timestamps_ns.append(timestamp_ns)

    def write_poses(self, timestamps_ns: np.ndarray, world_SE3_ego: SE3 | np.ndarray) -> None:
        """Set the ego trajectory (optional; without it the world frame is the ego frame).

        Args:
            timestamps_ns: (T,) integer ns, strictly increasing.
            world_SE3_ego: SE3 batch of T, or (T,4,4) homogeneous matrices.

        Raises:
            CalibrationError: NaN/inf entries, a non-orthonormal rotation, a bad homogeneous row, a length mismatch
                or non-increasing timestamps; the message names the pose index and its value.
            FormatError: poses written twice, or non-integer timestamps.
        """
        self._check_open()
        if self._poses_written:
            raise FormatError(self.path, "write_poses called twice")
        ts = np.asarray(timestamps_ns)
        if ts.ndim != 1 or ts.dtype.kind not in "iu":
            raise FormatError(self.path, f"poses timestamps_ns: expected (T,) integers, got {ts.dtype} {ts.shape}")
        ts = ts.astype(np.int64)
        if isinstance(world_SE3_ego, SE3):
            matrices = world_SE3_ego.as_matrix()
        else:
            matrices = np.asarray(world_SE3_ego, dtype=np.float64)
        if matrices.shape != (len(ts), 4, 4):
            raise CalibrationError(
                f"{self.path}: world_SE3_ego: expected ({len(ts)},4,4) for {len(ts)} timestamps, got {matrices.shape}"
            )
        i = first_non_increasing(ts)
        if i is not None:
            raise CalibrationError(
                f"{self.path}: poses timestamps_ns must increase strictly; index {i} has {ts[i]} after {ts[i - 1]}"
            )
        checked_transform(matrices, f"{self.path}: poses world_SE3_ego")
        self._pose_timestamps_ns, self._world_SE3_ego_matrix = ts, matrices.copy()
        self._poses_written = True

    # ----- finishing ----------------------------------------------------------------------------------------------
    def _frame_timestamps(self, frame_timestamps_ns: np.ndarray | None) -> np.ndarray:
        if frame_timestamps_ns is not None:
            ts = np.asarray(frame_timestamps_ns)
            if ts.ndim != 1 or (len(ts) and ts.dtype.kind not in "iu"):
                raise FormatError(self.path, f"frame_timestamps_ns: expected (F,) integers, got {ts.dtype} {ts.shape}")
            ts = ts.astype(np.int64)
            i = first_non_increasing(ts)
            if i is not None:
                raise FormatError(
                    self.path, f"frame_timestamps_ns not increasing at index {i}: {ts[i]} after {ts[i - 1]}"
                )
            return ts
        for kind in ("lidar", "camera"):
            for sensor_name, sensor in self._sensors.items():
                if sensor.kind == kind and self._series[sensor_name].timestamps_ns:
                    return np.asarray(self._series[sensor_name].timestamps_ns, dtype=np.int64)
        return np.zeros(0, dtype=np.int64)

    def finalize(self, frame_timestamps_ns: np.ndarray | None = None) -> Drive:
        """Write frames, poses and attributes, create an empty label store, and move the drive into place.

        Args:
            frame_timestamps_ns: (F,) int ns frame times. None: one frame per sweep of the first lidar that has
                sweeps (sensors order), else per image of the first camera that has images, else no frames.

        Each frame records, per lidar and per camera, the index of the record nearest in time, or -1 when the
        nearest is farther than half that sensor's median period (half the frame period for a single record).

        Returns:
            The opened Drive.

        Raises:
            SchemaError: the path exists (appeared since create) and overwrite is False, or it is not a drive.
            FormatError: invalid frame_timestamps_ns, or the writer was already finalized.
        """
        from sensorlabel.drive.labels import LabelStore

        self._check_open()
        frame_ts = self._frame_timestamps(frame_timestamps_ns)  # a bad argument keeps the writer usable
        try:
            frame_period = schema.median_period_ns(frame_ts)
            creations: dict[str, dict] = {}  # array key -> create_array keywords
            resizes = []  # (zarr.AsyncArray, final shape) of the streamed arrays
            for sensor_name, sensor in self._sensors.items():
                series = self._series[sensor_name]
                group = "lidar" if sensor.kind == "lidar" else "cameras"
                if series.appender is None:  # a lidar without sweeps
                    creations[f"lidar/{sensor_name}/points"] = dict(
                        shape=(0, len(REQUIRED_LIDAR_FIELDS)),
                        dtype="float32",
                        chunks=(schema.POINTS_CHUNK_ROWS, len(REQUIRED_LIDAR_FIELDS)),
                        compressors=None,
                        fill_value=0.0,
                        attributes={"fields": list(REQUIRED_LIDAR_FIELDS)},
                    )
                else:
                    series.appender.finish()
                    if series.appender.num_rows:
                        resizes.append((series.appender.array.async_array, series.appender.shape))
                sensor_ts = np.asarray(series.timestamps_ns, dtype=np.int64)
                creations[f"{group}/{sensor_name}/offsets"] = dict(data=np.asarray(series.offsets, dtype=np.int64))
                creations[f"{group}/{sensor_name}/timestamps_ns"] = dict(data=sensor_ts)
                period = schema.median_period_ns(sensor_ts)
                tolerance = 0.5 * (period if not math.isnan(period) else frame_period)
                if math.isnan(tolerance):
                    tolerance = math.inf
                creations[f"frames/{group}/{sensor_name}"] = dict(data=nearest_indices(sensor_ts, frame_ts, tolerance))
            creations["frames/timestamps_ns"] = dict(data=frame_ts)
            creations["poses/timestamps_ns"] = dict(data=self._pose_timestamps_ns)
            creations["poses/world_SE3_ego"] = dict(data=self._world_SE3_ego_matrix)
            _create_and_resize(self._tmp / schema.SENSORS_ZARR, creations, resizes)
            # The attributes mark the store as a drive; they go last so an unfinished store never validates.
            self._root.update_attributes(  # one zarr.json write
                {
                    "format": schema.FORMAT_TAG,
                    "schema_version": schema.SCHEMA_VERSION,
                    "name": self._name,
                    "source_format": self._source_format,
                    "sensors": [schema.sensor_to_attrs(s) for s in self._sensors.values()],
                    "metadata": self._metadata,
                }
            )
            LabelStore(self._tmp / schema.LABELS_SQLITE).close()
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._done = True
        logger.info("wrote drive %s: %d frames", self.path, len(frame_ts))
        return Drive.open(self.path)

    def _move_into_place(self) -> None:
        if not self.path.exists():
            os.replace(self._tmp, self.path)
            return
        if not self._overwrite:
            raise SchemaError(self.path, "already exists; pass overwrite=True to replace it")
        _check_replaceable(self.path)
        trash = self.path.with_name(f"{self.path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(self.path, trash)
        os.replace(self._tmp, self.path)
        shutil.rmtree(trash, ignore_errors=True)


def _create_and_resize(store_path: Path, creations: dict[str, dict], resizes: list) -> None:
    """Create the small arrays and set the final shapes of the streamed ones, all in one concurrent zarr batch.

    Each zarr operation on a local store is several hops to zarr's I/O thread; issued one by one, the ~10 arrays of
    a drive cost 40-130 ms of waiting on a loaded 2-core machine, gathered they overlap (measured 15 vs 42 ms best).
    The store is written atomically per file, so parents created by several arrays at once are safe.
    """
    import asyncio

    from zarr.api.asynchronous import open_group
    from zarr.core.sync import sync

    async def batch() -> None:
        group = await open_group(store=store_path, mode="r+", zarr_format=3)
        await asyncio.gather(
            *(group.create_array(key, **kwargs) for key, kwargs in creations.items()),
            *(array.resize(shape) for array, shape in resizes),
        )

    sync(batch())


def _check_replaceable(path: Path) -> None:
    """Overwriting deletes ``path``: allow it only for a drive folder (even a broken one) or an empty folder."""
    if path.is_dir():
        if (path / schema.SENSORS_ZARR).exists() or (path / schema.LABELS_SQLITE).exists() or not any(path.iterdir()):
            return
    raise SchemaError(path, "exists and is not a drive; refusing to overwrite it")


def _plain_json(metadata: Mapping | None, path: Path) -> dict:
    """A JSON round trip of the metadata (numpy scalars and arrays become numbers and lists)."""

    def convert(value):
        plain = schema.json_value(value)
        if plain is value:  # not a numpy value: json.dumps cannot write it
            raise TypeError(f"{type(value).__name__} is not JSON serialisable")
        return plain

    try:
        return json.loads(json.dumps(dict(metadata or {}), default=convert))
    except (TypeError, ValueError) as exc:
        raise FormatError(path, f"metadata must be JSON-serialisable: {exc}") from None


class Drive:
    """An opened drive (read-only sensor data; labels through :attr:`labels`). Get one from :meth:`open`.

    Attributes:
        path: the ``NAME.drive`` folder.
        name, source_format: as given at creation.
        metadata: free-form dict given at creation.
        sensors: calibrations by name, in stored order.
        lidar_names, camera_names: sensor names by kind, in stored order.
    """

    def __init__(self, path: Path, contents: schema.StoreContents):
        self.path = path
        self._contents = contents
        self.name = contents.name
        self.source_format = contents.source_format
        self.metadata = contents.metadata
        self.sensors = contents.sensors
        self.lidar_names = [n for n, s in contents.sensors.items() if s.kind == "lidar"]
        self.camera_names = [n for n, s in contents.sensors.items() if s.kind == "camera"]
        self._poses = None
        if len(contents.pose_timestamps_ns):
            try:
                self._poses = SE3.from_matrix(contents.world_SE3_ego_matrix)
            except ValueError as exc:
                raise SchemaError(path / schema.SENSORS_ZARR / "poses/world_SE3_ego", f"invalid pose: {exc}") from None
        self._labels = None

    # ----- creation and opening ------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        name: str,
        source_format: str,
        sensors: Mapping[str, SensorCalibration],
        overwrite: bool = False,
        metadata: Mapping | None = None,
    ) -> DriveWriter:
        """Start writing a new drive at ``path`` (built in a temporary sibling folder until finalize).

        Args:
            path: the ``NAME.drive`` folder to create.
            name: the drive's name, e.g. ``"scene-0061"``.
            source_format: the importer's format name, e.g. ``"nuscenes"`` or ``"sim"``.
            sensors: calibrations by name (key == calibration.name); the order is kept (the first lidar defines
                the frames by default).
            overwrite: replace an existing drive at ``path`` (atomically, at finalize).
            metadata: JSON-serialisable dict stored in the attributes.

        Raises:
            SchemaError: ``path`` exists and overwrite is False, or it exists and is not a drive; a bad sensor name.
            FormatError: a sensors key that differs from its calibration's name, or metadata that is not JSON.
        """
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise SchemaError(path, "already exists; pass overwrite=True to replace it")
            _check_replaceable(path)
        checked: dict[str, SensorCalibration] = {}
        for key, sensor in sensors.items():
            if not isinstance(sensor, SensorCalibration) or sensor.name != key:
                raise FormatError(path, f"sensors[{key!r}] must be a SensorCalibration named {key!r}, got {sensor!r}")
            schema.check_sensor_name(key, str(path))
            checked[key] = sensor
        return DriveWriter(path, str(name), str(source_format), checked, overwrite, _plain_json(metadata, path))

    @classmethod
    def open(cls, path: str | os.PathLike) -> Drive:
        """Open and validate a drive.

        Raises:
            SchemaError: a missing path, a file, a folder without sensors.zarr, another schema_version, or a
                missing/truncated/inconsistent array; the message names the path and the reason.
        """
        path = Path(path)
        if not path.exists():
            raise SchemaError(path, "no such drive folder")
        if not path.is_dir():
            raise SchemaError(path, "not a drive: a drive is a folder")
        store = path / schema.SENSORS_ZARR
        if not store.is_dir():
            raise SchemaError(path, f"not a drive: no {schema.SENSORS_ZARR} inside")
        return cls(path, schema.read_store(store))

    def __repr__(self) -> str:
        return f"Drive({str(self.path)!r}, name={self.name!r}, frames={self.num_frames}, sensors={list(self.sensors)})"

    # ----- frames --------------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self._contents.frame_timestamps_ns)

    @property
    def frame_timestamps_ns(self) -> np.ndarray:
        """(F,) int64 frame times (a copy)."""
        return self._contents.frame_timestamps_ns.copy()

    def _check_frame(self, frame: int) -> int:
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"{self.path}: frame {frame} out of range [0, {self.num_frames})")
        return int(frame)

    def _lidar_name(self, lidar: str | None) -> str | None:
        if lidar is None:
            return self.lidar_names[0] if self.lidar_names else None
        if lidar not in self._contents.lidar:
            raise KeyError(f"{self.path}: no lidar {lidar!r}; lidars: {self.lidar_names}")
        return lidar

    def _camera_series(self, camera: str) -> schema.RaggedSeries:
        if camera not in self._contents.cameras:
            raise KeyError(f"{self.path}: no camera {camera!r}; cameras: {self.camera_names}")
        return self._contents.cameras[camera]

    def frame_lidar_index(self, frame: int, lidar: str | None = None) -> int:
        """Sweep index of ``lidar`` (default: the first lidar) at ``frame``; -1 when it has none near."""
        frame = self._check_frame(frame)
        name = self._lidar_name(lidar)
        return -1 if name is None else int(self._contents.frame_lidar[name][frame])

    def frame_camera_index(self, frame: int, camera: str) -> int:
        """Image index of ``camera`` nearest to ``frame``; -1 when it has none within half its period."""
        frame = self._check_frame(frame)
        self._camera_series(camera)
        return int(self._contents.frame_cameras[camera][frame])

    def num_points(self, lidar: str | None = None) -> int:
        """Points stored for ``lidar`` (default: every lidar), from the sweep offsets (nothing is read)."""
        names = self.lidar_names if lidar is None else [self._lidar_name(lidar)]
        return sum(int(self._contents.lidar[name].offsets[-1]) for name in names)

    def frame_sweep(self, frame: int, lidar: str | None = None) -> LidarSweep | None:
        """The sweep of ``lidar`` (default: the first lidar) at ``frame``, or None when there is none."""
        index = self.frame_lidar_index(frame, lidar)
        return None if index < 0 else self.lidar_sweep(self._lidar_name(lidar), index)

    # ----- sensor data ---------------------------------------------------------------------------------------------
    def _read_rows(self, series: schema.RaggedSeries, index: int, what: str, as_bytes: bool = False):
        if not 0 <= index < len(series.timestamps_ns):
            raise IndexError(f"{self.path}: {what} index {index} out of range [0, {len(series.timestamps_ns)})")
        try:
            return series.read_bytes(index) if as_bytes else series.read(index)
        except (ValueError, RuntimeError, OSError, TypeError) as exc:
            where = self.path / schema.SENSORS_ZARR
            raise SchemaError(where, f"{what} record {index} is unreadable: {exc!r}") from None

    def lidar_timestamps_ns(self, lidar: str) -> np.ndarray:
        """(S,) int64 sweep times of ``lidar`` (a copy)."""
        return self._contents.lidar[self._lidar_name(lidar)].timestamps_ns.copy()

    def lidar_sweep(self, lidar: str, sweep_index: int) -> LidarSweep:
        """One sweep, points (P,F) float32 in the lidar frame.

        Raises:
            KeyError: unknown lidar. IndexError: sweep_index out of range.
        """
        name = self._lidar_name(lidar)
        series = self._contents.lidar[name]
        points = self._read_rows(series, sweep_index, f"lidar {name!r} sweep")
        return LidarSweep(points, self._contents.lidar_fields[name], int(series.timestamps_ns[sweep_index]), name)

    def camera_timestamps_ns(self, camera: str) -> np.ndarray:
        """(S,) int64 image times of ``camera`` (a copy)."""
        return self._camera_series(camera).timestamps_ns.copy()

    def camera_image_bytes(self, camera: str, image_index: int) -> bytes:
        """The encoded image exactly as imported (JPEG/PNG bytes)."""
        return self._read_rows(self._camera_series(camera), image_index, f"camera {camera!r} image", as_bytes=True)

    def camera_image(self, camera: str, image_index: int) -> np.ndarray:
        """The decoded image, (H,W,3) uint8 RGB.

        Raises:
            FormatError: the stored bytes are not an image OpenCV can decode.
        """
        import cv2

        encoded = np.frombuffer(self.camera_image_bytes(camera, image_index), dtype=np.uint8)
        bgr = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        if bgr is None:
            raise FormatError(self.path, f"camera {camera!r} image {image_index}: bytes do not decode as an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    # ----- poses ---------------------------------------------------------------------------------------------------
    @property
    def has_poses(self) -> bool:
        return self._poses is not None

    @property
    def pose_timestamps_ns(self) -> np.ndarray:
        """(T,) int64 times of the stored poses (T = 0 without poses)."""
        return self._contents.pose_timestamps_ns.copy()

    def world_SE3_ego(self, timestamps_ns) -> SE3:
        """The ego pose at any time: slerp + lerp between stored poses, constant-velocity extrapolation up to
        0.5 s outside their range. Without poses the world frame is the ego frame (identity).

        Args:
            timestamps_ns: int ns scalar or (Q,) array.

        Returns:
            A single SE3 for a scalar, a batch of Q for an array.

        Raises:
            ValueError: a time more than 0.5 s outside the pose range, or a query with more than one dimension.
        """
        query = np.asarray(timestamps_ns, dtype=np.int64)
        if query.ndim > 1:
            raise ValueError(f"timestamps_ns: expected a scalar or (Q,), got {query.shape}")
        if self._poses is None:
            return SE3.identity() if query.ndim == 0 else SE3.identity(len(query))
        pose_ts = self._contents.pose_timestamps_ns
        flat = query.reshape(-1)
        if len(flat):
            outside = np.maximum(pose_ts[0] - flat, flat - pose_ts[-1])
            worst = int(np.argmax(outside))
            if outside[worst] > MAX_POSE_EXTRAPOLATION_NS:
                raise ValueError(
                    f"{self.path}: timestamp {int(flat[worst])} ns is {outside[worst] / 1e9:.3f} s outside the pose "
                    "range "
                    f"[{pose_ts[0]}, {pose_ts[-1]}] ns (extrapolation limit {MAX_POSE_EXTRAPOLATION_NS / 1e9} s)"
                )
        return interpolate_poses(pose_ts, self._poses, query, extrapolate=True)

    # ----- labels --------------------------------------------------------------------------------------------------
    @property
    def labels(self):
        """The drive's LabelStore on ``labels.sqlite`` (opened on first use)."""
        if self._labels is None:
            from sensorlabel.drive.labels import LabelStore

            self._labels = LabelStore(self.path / schema.LABELS_SQLITE)
        return self._labels

    def close(self) -> None:
        """Close the label store if it was opened."""
        if self._labels is not None:
            self._labels.close()
            self._labels = None

    # ----- summary -------------------------------------------------------------------------------------------------
    def time_span_ns(self) -> tuple[int, int] | None:
        """(first, last) time over frames, sweeps and images; None for a drive without any timestamps."""
        arrays = [self._contents.frame_timestamps_ns] + [
            s.timestamps_ns for s in (*self._contents.lidar.values(), *self._contents.cameras.values())
        ]
        arrays = [a for a in arrays if len(a)]
        if not arrays:
            return None
        return int(min(a[0] for a in arrays)), int(max(a[-1] for a in arrays))

    def summary(self) -> str:
        """A human-readable multi-line summary: name, format, frames, time span, sensors, poses and labels."""
        span = self.time_span_ns()
        if span is None:
            span_text = "no timestamps"
        else:
            span_text = f"{(span[1] - span[0]) / 1e9:.3f} s from {span[0]} ns"
            if span[0] >= _EPOCH_2001_NS:  # a Unix-epoch clock rather than a recording-relative one
                start = datetime.datetime.fromtimestamp(span[0] / 1e9, tz=datetime.timezone.utc)
                span_text += f" = {start:%Y-%m-%d %H:%M:%S} UTC"
        lines = [
            f"drive      {self.path}",
            f"name       {self.name}  (source format: {self.source_format})",
            f"frames     {self.num_frames}  ({span_text})",
        ]
        if self.has_poses:
            pose_ts = self._contents.pose_timestamps_ns
            lines.append(f"poses      yes: {len(pose_ts)} over {(pose_ts[-1] - pose_ts[0]) / 1e9:.3f} s")
        else:
            lines.append("poses      no (world frame = ego frame)")
        for sensor_name, sensor in self.sensors.items():
            if sensor.kind == "lidar":
                series = self._contents.lidar[sensor_name]
                num_points = self.num_points(sensor_name)
                fields = " ".join(self._contents.lidar_fields[sensor_name])
                lines.append(
                    f"lidar      {sensor_name}: {len(series.timestamps_ns)} sweeps, {num_points:,} points, "
                    f"fields {fields}"
                )
            else:
                series = self._contents.cameras[sensor_name]
                cam = sensor.camera
                lines.append(
                    f"camera     {sensor_name}: {len(series.timestamps_ns)} images, {cam.model} "
                    f"{cam.width_px}x{cam.height_px}, {int(series.offsets[-1]) / 1e6:.1f} MB encoded"
                )
        lines.append(f"points     {self.num_points():,} in total")
        records = self.labels.query()
        if len(records):
            sources, counts = np.unique(np.asarray(records.source), return_counts=True)
            by_source = ", ".join(f"{s} {c}" for s, c in zip(sources, counts))
            num_tracks = len(np.unique(records.boxes.track_id))
            lines.append(f"labels     {len(records)} boxes in {num_tracks} tracks: {by_source}")
        else:
            lines.append("labels     none")
        return "\n".join(lines)
