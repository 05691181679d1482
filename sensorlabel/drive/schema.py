"""The versioned on-disk layout of a drive's ``sensors.zarr`` and its validation.

Layout (zarr format 3, written once by :class:`~sensorlabel.drive.drive.DriveWriter`)::

    NAME.drive/
      sensors.zarr/
        attrs: format "sensorlabel.drive", schema_version, name, source_format, metadata{},
               sensors [ {name, kind, ego_SE3_sensor 4x4, readout_s, camera {model, fx_px.. , distortion}} ]
        poses/world_SE3_ego            (T,4,4) float64   world_SE3_ego at poses/timestamps_ns (T,) int64
        lidar/<name>/points            (P,F) float32     all sweeps stacked, columns named by attrs["fields"]
        lidar/<name>/offsets           (S+1,) int64      sweep s is points[offsets[s]:offsets[s+1]]
        lidar/<name>/timestamps_ns     (S,) int64
        cameras/<name>/bytes           (B,) uint8        the encoded images (JPEG/PNG bytes as in the source)
        cameras/<name>/offsets         (S+1,) int64      image s is bytes[offsets[s]:offsets[s+1]]
        cameras/<name>/timestamps_ns   (S,) int64
        frames/timestamps_ns           (F,) int64
        frames/lidar/<name>            (F,) int64        sweep index of that lidar per frame, -1 for none
        frames/cameras/<name>          (F,) int64        image index of that camera per frame, -1 for none
      labels.sqlite

Why images are one flat uint8 array with offsets rather than zarr's variable-length bytes dtype: zarr-python 3.1
marks ``VariableLengthBytes`` as having no zarr v3 specification ("may change without warning", unreadable by
other zarr libraries), which is not acceptable for a long-lived store. A flat uint8 array is plain zarr v3, appends
in whole chunks while an importer streams images in, and one image reads as one contiguous slice touching at most
``ceil(len / chunk) + 1`` chunk files (measured ~1.0 ms per 100-300 kB image with 1 MiB chunks against ~0.6 ms for
the vlen dtype; both are far below a JPEG decode).

Points are stored uncompressed (the single zarr v3 ``bytes`` codec, little-endian), like the images, which are already
compressed. Measured on real KITTI sweeps (120k x 4 float32): blosc-lz4 with byte shuffle gains only ratio 1.22 while
its encode made import several times slower than reading the source files, and its decode is paid on every random
access; disk space is not the constraint, bandwidth to and from the page cache is. Uncompressed chunks let
:mod:`sensorlabel.drive.chunkio` stream rows straight into the chunk files at import and read a sweep or an image as
byte ranges of the one or two chunk files that hold it. Stores written with blosc points (earlier builds of this
schema version) still open and read through zarr.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from sensorlabel.drive import chunkio
from sensorlabel.drive.sensors import REQUIRED_LIDAR_FIELDS, SensorCalibration, checked_transform
from sensorlabel.errors import CalibrationError, SchemaError
from sensorlabel.geometry.camera import FisheyeCamera, PinholeCamera
from sensorlabel.geometry.se3 import first_non_increasing

#: Version of the layout above; Drive.open refuses any other.
SCHEMA_VERSION = 1
#: Value of the ``format`` attribute that marks a sensors.zarr as a sensorlabel drive.
FORMAT_TAG = "sensorlabel.drive"

SENSORS_ZARR = "sensors.zarr"
LABELS_SQLITE = "labels.sqlite"

#: Rows per chunk of lidar points: 524288 x 4 float32 = 8 MiB (about 4 KITTI sweeps of 1.9 MB). Chunk files are
#: written and read directly (see chunkio), so a large chunk costs nothing on random access (a sweep is read as a
#: byte range) while it makes few files: creating a file costs more than filling it on ext4 (measured: 100 sweeps
#: with 8 MiB chunks wrote in ~0.6x the time of 2 MiB chunks).
POINTS_CHUNK_ROWS = 524288
#: Bytes per chunk of the encoded images (about 10 KITTI PNGs of 0.8 MB); read as byte ranges too.
IMAGE_CHUNK_BYTES = 1 << 23

#: Camera model classes by their ``model`` name, for reading the calibration back.
CAMERA_MODELS = {"pinhole": PinholeCamera, "fisheye": FisheyeCamera}

REQUIRED_ATTRS = ("format", "schema_version", "name", "source_format", "sensors", "metadata")


def json_value(value: Any) -> Any:
    """Plain JSON types for one value (numpy scalars and arrays become floats/ints/lists; anything else as is)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def sensor_to_attrs(sensor: SensorCalibration) -> dict:
    """One sensor's calibration as a JSON-able dict (floats are written with repr precision, so they round-trip).

    The camera entry holds every init field of the camera dataclass plus its ``model`` name.
    """
    entry: dict[str, Any] = {
        "name": sensor.name,
        "kind": sensor.kind,
        "ego_SE3_sensor": sensor.ego_SE3_sensor.as_matrix().tolist(),
        "readout_s": float(sensor.readout_s),
    }
    if sensor.camera is not None:
        camera = {"model": sensor.camera.model}
        for f in dataclasses.fields(sensor.camera):
            if f.init:
                camera[f.name] = json_value(getattr(sensor.camera, f.name))
        entry["camera"] = camera
    return entry


def sensor_from_attrs(entry: dict, where: str) -> SensorCalibration:
    """Rebuild a SensorCalibration from :func:`sensor_to_attrs` output.

    Args:
        entry: the stored dict.
        where: the store path, named in errors.

    Raises:
        SchemaError: a missing key, an unknown camera model, or a calibration that no longer validates.
    """
    try:
        camera = None
        if entry.get("camera") is not None:
            params = dict(entry["camera"])
            model = params.pop("model")
            if model not in CAMERA_MODELS:
                raise SchemaError(where, f"sensor {entry.get('name')!r}: unknown camera model {model!r}")
            if "distortion" in params:
                params["distortion"] = np.asarray(params["distortion"], dtype=np.float64)
            camera = CAMERA_MODELS[model](**params)
        return SensorCalibration(
            name=entry["name"],
            kind=entry["kind"],
            ego_SE3_sensor=checked_transform(np.asarray(entry["ego_SE3_sensor"]), f"sensor {entry['name']!r}"),
            camera=camera,
            readout_s=float(entry.get("readout_s", 0.0)),
        )
    except (KeyError, TypeError, ValueError, CalibrationError) as exc:
        raise SchemaError(where, f"sensor entry {entry.get('name')!r} is invalid: {exc!r}") from None


def check_sensor_name(name: str, where: str) -> None:
    """A sensor name becomes a zarr node name: it must be a non-empty single path component.

    Raises:
        SchemaError: an empty name, a name with '/' or a leading '.' or '__'.
    """
    if not isinstance(name, str) or not name or "/" in name or name.startswith((".", "__")):
        raise SchemaError(where, f"invalid sensor name {name!r}: use a non-empty name without '/' or a leading '.'")


@dataclasses.dataclass(frozen=True)
class _Fetched:
    """The nodes of a store fetched in one concurrent zarr batch (see :func:`_fetch`).

    Attributes:
        nodes: key -> zarr.Array or zarr.Group (absent keys are missing).
        values: key -> the whole contents (np.ndarray) of a small array, or the exception reading it raised.
    """

    nodes: dict
    values: dict


def _fetch(store_path, keys: list[str], small: set[str]) -> _Fetched:
    """Open the nodes ``keys`` and read the small arrays among them, all in one concurrent zarr batch.

    Opened one by one, the ~10-20 nodes of a drive are as many round trips to zarr's I/O thread (35-100 ms on a
    loaded 2-core machine); gathered, they overlap.
    """
    import asyncio

    import zarr
    from zarr.api.asynchronous import open_group
    from zarr.core.sync import sync

    async def one(group, key: str):
        try:
            node = await group.getitem(key)
        except KeyError:
            return key, None, None
        value = None
        if isinstance(node, zarr.AsyncArray):
            if key in small:
                try:
                    value = np.asarray(await node.getitem(Ellipsis))
                except (ValueError, RuntimeError, OSError, TypeError) as exc:
                    value = exc
            node = zarr.Array(node)
        else:
            node = zarr.Group(node)
        return key, node, value

    async def batch():
        group = await open_group(store=store_path, mode="r", zarr_format=3)
        return await asyncio.gather(*(one(group, key) for key in keys))

    nodes, values = {}, {}
    for key, node, value in sync(batch()):
        if node is not None:
            nodes[key] = node
            values[key] = value
    return _Fetched(nodes=nodes, values=values)


def _open_array(fetched: _Fetched, key: str, where: str, dtype: str, ndim: int):
    """The array ``key`` with the expected dtype and rank, or SchemaError naming the array."""
    import zarr

    array = fetched.nodes.get(key)
    if array is None:
        raise SchemaError(f"{where}/{key}", "missing array")
    if not isinstance(array, zarr.Array):
        raise SchemaError(f"{where}/{key}", "expected an array, found a group")
    if array.dtype != np.dtype(dtype) or array.ndim != ndim:
        raise SchemaError(f"{where}/{key}", f"expected {ndim}-D {dtype}, found {array.ndim}-D {array.dtype}")
    return array


def _read_all(fetched: _Fetched, key: str, where: str, dtype: str, ndim: int) -> np.ndarray:
    """The whole contents of the small array ``key`` (checked as :func:`_open_array`); an unreadable chunk becomes
    SchemaError."""
    _open_array(fetched, key, where, dtype, ndim)
    value = fetched.values[key]
    if isinstance(value, Exception):
        raise SchemaError(f"{where}/{key}", f"cannot read array: {value!r}")
    return value


def _check_complete(array, raw: chunkio.RawLayout | None, where: str) -> None:
    """Every chunk of ``array`` must exist on disk (the writer writes all chunks, even all-zero ones); chunk files of
    an uncompressed array must also have their full size."""
    if raw is not None:
        problem = chunkio.check_chunk_files(raw, array.shape[0])
        if problem is not None:
            raise SchemaError(where, problem)
        return
    stored, expected = array.nchunks_initialized, array.nchunks
    if stored != expected:
        raise SchemaError(where, f"truncated array: {stored} of {expected} chunks are present")


def _check_timestamps(timestamps_ns: np.ndarray, where: str) -> None:
    i = first_non_increasing(timestamps_ns)
    if i is not None:
        raise SchemaError(
            where, f"timestamps_ns not increasing at index {i}: {timestamps_ns[i]} after {timestamps_ns[i - 1]}"
        )


@dataclasses.dataclass(frozen=True)
class RaggedSeries:
    """A validated ragged series of one sensor: ``data`` rows ``offsets[s]:offsets[s+1]`` belong to record s.

    Attributes:
        data: the zarr array of rows (points (P,F) float32 or image bytes (B,) uint8).
        offsets: (S+1,) int64 in memory.
        timestamps_ns: (S,) int64 in memory.
        raw: the chunk-file layout when ``data`` is uncompressed in a local store (records are then read as byte
            ranges, see :mod:`sensorlabel.drive.chunkio`), else None (read through zarr).
    """

    data: Any
    offsets: np.ndarray
    timestamps_ns: np.ndarray
    raw: chunkio.RawLayout | None = None

    def read(self, index: int) -> np.ndarray:
        """Rows of record ``index`` (no bounds check on ``index``; Drive checks it).

        Raises:
            OSError: a missing or short chunk file; ValueError/RuntimeError/TypeError: zarr cannot decode a chunk.
        """
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        if self.raw is not None:
            return chunkio.read_rows(self.raw, start, stop)
        return np.asarray(self.data[start:stop])

    def read_bytes(self, index: int) -> bytes:
        """The raw bytes of record ``index`` (for image series: the encoded image), without an extra copy.

        Raises:
            As :meth:`read`.
        """
        if self.raw is not None:
            return chunkio.read_bytes(self.raw, int(self.offsets[index]), int(self.offsets[index + 1]))
        return self.read(index).tobytes()


def _ragged_keys(kind: str, name: str, data_key: str) -> tuple[str, str, str]:
    """(data, offsets, timestamps) keys of one sensor's series."""
    return f"{kind}/{name}/{data_key}", f"{kind}/{name}/offsets", f"{kind}/{name}/timestamps_ns"


def _read_ragged(
    fetched: _Fetched, kind: str, name: str, data_key: str, dtype: str, ndim: int, where: str
) -> RaggedSeries:
    node_where = f"{where}/{kind}/{name}"
    data_key_full, offsets_key, timestamps_key = _ragged_keys(kind, name, data_key)
    data = _open_array(fetched, data_key_full, where, dtype, ndim)
    offsets = _read_all(fetched, offsets_key, where, "int64", 1)
    timestamps = _read_all(fetched, timestamps_key, where, "int64", 1)
    if len(offsets) != len(timestamps) + 1:
        raise SchemaError(
            f"{node_where}/offsets",
            f"expected {len(timestamps) + 1} offsets for {len(timestamps)} records, found {len(offsets)}",
        )
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != data.shape[0]:
        raise SchemaError(
            f"{node_where}/offsets",
            f"offsets must rise from 0 to the {data.shape[0]} rows of {data_key}; found {offsets[0]}..{offsets[-1]}",
        )
    _check_timestamps(timestamps, f"{node_where}/timestamps_ns")
    raw = chunkio.raw_layout(data)
    _check_complete(data, raw, f"{node_where}/{data_key}")
    return RaggedSeries(data=data, offsets=offsets, timestamps_ns=timestamps, raw=raw)


@dataclasses.dataclass(frozen=True)
class StoreContents:
    """Everything :func:`read_store` validated: attributes, sensors and the small arrays (held in memory).

    Attributes:
        name, source_format, metadata: from the root attributes.
        sensors: calibrations in stored order.
        lidar, cameras: RaggedSeries per sensor name; ``lidar[n].data`` is points, ``cameras[n].data`` is bytes.
        lidar_fields: point field names per lidar.
        pose_timestamps_ns: (T,) int64; world_SE3_ego_matrix: (T,4,4) float64 (T may be 0).
        frame_timestamps_ns: (F,) int64; frame_lidar, frame_cameras: (F,) int64 per sensor name.
    """

    name: str
    source_format: str
    metadata: dict
    sensors: dict[str, SensorCalibration]
    lidar: dict[str, RaggedSeries]
    cameras: dict[str, RaggedSeries]
    lidar_fields: dict[str, tuple[str, ...]]
    pose_timestamps_ns: np.ndarray
    world_SE3_ego_matrix: np.ndarray
    frame_timestamps_ns: np.ndarray
    frame_lidar: dict[str, np.ndarray]
    frame_cameras: dict[str, np.ndarray]


def read_store(store_path) -> StoreContents:
    """Open a ``sensors.zarr`` read-only and validate it completely against the layout of SCHEMA_VERSION.

    Args:
        store_path: path of the ``sensors.zarr`` folder.

    Raises:
        SchemaError: not a zarr v3 group, not a sensorlabel drive, another schema_version, a missing or truncated
            array, inconsistent offsets or non-increasing timestamps; the message names the array's path.
    """
    import zarr

    where = str(store_path)
    try:
        root = zarr.open_group(store_path, mode="r", zarr_format=3)
    except (FileNotFoundError, ValueError, TypeError, KeyError) as exc:
        raise SchemaError(where, f"not a zarr v3 group: {exc!r}") from None
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT_TAG or "schema_version" not in attrs:
        raise SchemaError(
            where, "not a sensorlabel drive store (no format/schema_version attributes; unfinished write?)"
        )
    if attrs["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(
            where, f"schema_version {attrs['schema_version']!r} is not supported; this version reads {SCHEMA_VERSION}"
        )
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise SchemaError(where, f"missing attributes {missing}")

    sensors: dict[str, SensorCalibration] = {}
    for entry in attrs["sensors"]:
        sensor = sensor_from_attrs(entry, where)
        check_sensor_name(sensor.name, where)
        sensors[sensor.name] = sensor

    kinds = {"lidar": ("lidar", "points"), "camera": ("cameras", "bytes")}
    small = {"poses/timestamps_ns", "poses/world_SE3_ego", "frames/timestamps_ns"}
    for name, sensor in sensors.items():
        group, data_key = kinds[sensor.kind]
        small.update(_ragged_keys(group, name, data_key)[1:])
        small.add(f"frames/{group}/{name}")
    big = [_ragged_keys(kinds[s.kind][0], n, kinds[s.kind][1])[0] for n, s in sensors.items()]
    fetched = _fetch(store_path, sorted(small) + big, small)

    lidar, cameras, lidar_fields = {}, {}, {}
    for name, sensor in sensors.items():
        if sensor.kind == "lidar":
            series = _read_ragged(fetched, "lidar", name, "points", "float32", 2, where)
            fields = tuple(series.data.attrs.get("fields", ()))
            if len(fields) != series.data.shape[1] or fields[:4] != REQUIRED_LIDAR_FIELDS:
                raise SchemaError(
                    f"{where}/lidar/{name}/points", f"fields {fields} do not name its {series.data.shape[1]} columns"
                )
            lidar[name], lidar_fields[name] = series, fields
        else:
            cameras[name] = _read_ragged(fetched, "cameras", name, "bytes", "uint8", 1, where)

    pose_ts = _read_all(fetched, "poses/timestamps_ns", where, "int64", 1)
    poses = _read_all(fetched, "poses/world_SE3_ego", where, "float64", 3)
    if poses.shape != (len(pose_ts), 4, 4):
        raise SchemaError(f"{where}/poses/world_SE3_ego", f"expected ({len(pose_ts)},4,4), found {poses.shape}")
    _check_timestamps(pose_ts, f"{where}/poses/timestamps_ns")

    frame_ts = _read_all(fetched, "frames/timestamps_ns", where, "int64", 1)
    _check_timestamps(frame_ts, f"{where}/frames/timestamps_ns")
    frame_index = {}
    for kind, series_by_name in (("lidar", lidar), ("cameras", cameras)):
        frame_index[kind] = {}
        for name, series in series_by_name.items():
            key = f"frames/{kind}/{name}"
            index = _read_all(fetched, key, where, "int64", 1)
            num_records = len(series.timestamps_ns)
            if len(index) != len(frame_ts) or np.any(index < -1) or np.any(index >= num_records):
                raise SchemaError(f"{where}/{key}", f"expected {len(frame_ts)} indices in [-1, {num_records})")
            frame_index[kind][name] = index

    return StoreContents(
        name=str(attrs["name"]),
        source_format=str(attrs["source_format"]),
        metadata=dict(attrs["metadata"]),
        sensors=sensors,
        lidar=lidar,
        cameras=cameras,
        lidar_fields=lidar_fields,
        pose_timestamps_ns=pose_ts,
        world_SE3_ego_matrix=poses,
        frame_timestamps_ns=frame_ts,
        frame_lidar=frame_index["lidar"],
        frame_cameras=frame_index["cameras"],
    )


def median_period_ns(timestamps_ns: np.ndarray) -> float:
    """Median spacing of sorted timestamps in ns; NaN with fewer than two."""
    if len(timestamps_ns) < 2:
        return math.nan
    return float(np.median(np.diff(timestamps_ns)))
