"""Argoverse 2 sensor logs (Wilson et al., "Argoverse 2: Next Generation Datasets for Self-Driving Perception and
Forecasting", NeurIPS 2021 Datasets and Benchmarks): reader and importer.

Layout of a log folder ``<split>/<log_id>/`` (all tables are Apache Feather files, read with pyarrow):

* ``sensors/lidar/<timestamp_ns>.feather``: ``x y z`` (float16, metres) in the **ego frame** (x forward, y left,
  z up), already motion-compensated to the sweep time, ``intensity`` (uint8), ``laser_number`` (uint8, 0-63 over
  the up and down lidars), ``offset_ns`` (int32).
* ``city_SE3_egovehicle.feather``: ego poses ``qw qx qy qz tx_m ty_m tz_m`` at ``timestamp_ns`` (city frame).
* ``calibration/egovehicle_SE3_sensor.feather``: ``ego_SE3_sensor`` per ``sensor_name``;
  ``calibration/intrinsics.feather``: ``fx_px fy_px cx_px cy_px k1 k2 k3 height_px width_px`` per camera.
* ``sensors/cameras/<camera>/<timestamp_ns>.jpg`` (when present).
* ``annotations.feather``: cuboids in the ego frame at ``timestamp_ns``: centre ``tx_m ty_m tz_m`` (geometric
  centre), ``length_m width_m height_m`` along the object's x y z, ``qw qx qy qz`` = ego_R_object; ``track_uuid``,
  ``category``, ``num_interior_pts``.

Conversion: AV2 already uses the internal convention (geometric centre, lwh, ego_R_object quaternion wxyz), so the
boxes are stored unchanged; ``track_uuid`` becomes a drive track (attribute ``av2_track_uuid``). Points are stored as
one lidar ``lidar`` mounted at the ego origin (identity), since they are already in the ego frame; ``laser_number``
becomes ``ring``. ``offset_ns`` is not stored as ``t_offset_s`` because the points are already motion-compensated
and a consumer would compensate them twice. The drive's frames are the union of the annotation and sweep timestamps
(the 15.5 s of labels of a log with few sweeps keep their own frames). Cameras become pinhole models with
``distortion = (k1, k2, 0, 0, k3)`` (AV2 uses a radial-only model).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from sensorlabel.errors import CalibrationError, FormatError
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3, first_non_increasing

logger = logging.getLogger(__name__)

LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")
_POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
_ANNOTATION_COLUMNS = ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m", *_POSE_COLUMNS)
_INTRINSIC_COLUMNS = ("sensor_name", "fx_px", "fy_px", "cx_px", "cy_px", "k1", "k2", "k3", "height_px", "width_px")


def read_feather(path: str | os.PathLike, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read the named columns of a Feather table as numpy arrays.

    Raises:
        FormatError: unreadable or not a Feather/Arrow file, a missing column, or nulls in a column.
    """
    import pyarrow as pa
    import pyarrow.feather as feather

    path = Path(path)
    try:
        table = feather.read_table(path)
        # Without a full validation a corrupted buffer reaches to_numpy() and crashes the process.
        table.validate(full=True)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise FormatError(path, f"not a readable Feather table: {exc}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise FormatError(path, f"missing columns {missing}; has {table.column_names}")
    out = {}
    for name in columns:
        column = table.column(name)
        if column.null_count:
            raise FormatError(path, f"column {name} has {column.null_count} null values")
        try:
            out[name] = column.to_numpy()
        except (pa.ArrowException, ValueError) as exc:
            raise FormatError(path, f"column {name}: {exc}") from None
    return out


def _finite(path: Path, table: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """(N, len(names)) float64 of numeric columns; FormatError naming the first non-finite value."""
    try:
        values = np.stack([np.asarray(table[n], dtype=np.float64) for n in names], axis=1)
    except (TypeError, ValueError) as exc:
        raise FormatError(path, f"columns {names} are not numeric: {exc}") from None
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise FormatError(path, f"row {i} column {names[j]} is not finite: {values[i, j]}")
    return values


def _poses(path: Path, table: dict[str, np.ndarray], what: str) -> SE3:
    values = _finite(path, table, _POSE_COLUMNS)
    norm = np.linalg.norm(values[:, :4], axis=1)
    if (np.abs(norm - 1.0) > 1e-3).any():
        i = int(np.flatnonzero(np.abs(norm - 1.0) > 1e-3)[0])
        raise FormatError(path, f"{what} row {i}: quaternion is not unit length: {values[i, :4].tolist()}")
    return SE3.from_quat_wxyz(values[:, :4], values[:, 4:])


def read_av2_lidar(path: str | os.PathLike) -> tuple[int, np.ndarray]:
    """One sweep: (timestamp_ns from the file name, (P,5) float32 ``x y z intensity ring`` in the ego frame).

    Raises:
        FormatError: a file name that is not a timestamp, unreadable table, missing columns, non-finite points, or
            an empty sweep.
    """
    path = Path(path)
    if not path.stem.isdigit():
        raise FormatError(path, f"lidar file name is not a timestamp in ns: {path.name!r}")
    table = read_feather(path, ("x", "y", "z", "intensity", "laser_number"))
    points = np.empty((len(table["x"]), 5), dtype=np.float32)
    for k, name in enumerate(("x", "y", "z", "intensity", "laser_number")):
        points[:, k] = table[name]
    if len(points) == 0:
        raise FormatError(path, "empty sweep")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise FormatError(path, f"point {i} is not finite: {points[i].tolist()}")
    return int(path.stem), points


def read_av2_annotations(path: str | os.PathLike) -> tuple[np.ndarray, Boxes, np.ndarray]:
    """Cuboids of ``annotations.feather``.

    Returns:
        (timestamp_ns (N,) int64, Boxes in the ego frame at each timestamp (label = category, track_id -1),
        track_uuid (N,) str).

    Raises:
        FormatError: missing columns, non-finite values, non-positive sizes or zero quaternions.
    """
    path = Path(path)
    table = read_feather(path, _ANNOTATION_COLUMNS)
    values = _finite(path, table, ("length_m", "width_m", "height_m", *_POSE_COLUMNS))
    bad = (values[:, :3] <= 0).any(axis=1) | (np.linalg.norm(values[:, 3:7], axis=1) < 1e-9)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FormatError(path, f"row {i}: non-positive size or zero quaternion: {values[i].tolist()}")
    boxes = Boxes(values[:, 7:10], values[:, :3], values[:, 3:7], label=np.asarray(table["category"], dtype=str))
    return np.asarray(table["timestamp_ns"], dtype=np.int64), boxes, np.asarray(table["track_uuid"], dtype=str)


def read_av2_calibration(log_dir: str | os.PathLike) -> dict:
    """Sensors of a log: the cameras of ``intrinsics.feather`` as SensorCalibration (pinhole, ``k1 k2 0 0 k3``).

    Returns:
        {camera name: SensorCalibration}, plus the ``ego_SE3_sensor`` of every calibrated sensor under the key
        ``"_ego_SE3_sensor"`` ({name: SE3}).

    Raises:
        FormatError: unreadable tables, missing columns, bad values, a camera without extrinsics.
    """
    from sensorlabel.drive.sensors import SensorCalibration
    from sensorlabel.geometry.camera import PinholeCamera

    log_dir = Path(log_dir)
    ext_path = log_dir / "calibration" / "egovehicle_SE3_sensor.feather"
    ext = read_feather(ext_path, ("sensor_name", *_POSE_COLUMNS))
    names = [str(n) for n in ext["sensor_name"]]
    ego_SE3_sensor = _poses(ext_path, ext, "egovehicle_SE3_sensor")
    extrinsics = {n: ego_SE3_sensor[i] for i, n in enumerate(names)}
    int_path = log_dir / "calibration" / "intrinsics.feather"
    intr = read_feather(int_path, _INTRINSIC_COLUMNS)
    values = _finite(int_path, intr, _INTRINSIC_COLUMNS[1:])
    cameras = {}
    for i, name in enumerate(str(n) for n in intr["sensor_name"]):
        if name not in extrinsics:
            raise FormatError(ext_path, f"camera {name!r} of intrinsics.feather has no extrinsics")
        fx, fy, cx, cy, k1, k2, k3, height, width = values[i]
        try:
            model = PinholeCamera(fx, fy, cx, cy, int(width), int(height), np.array([k1, k2, 0.0, 0.0, k3]))
        except CalibrationError as exc:
            raise FormatError(int_path, f"camera {name!r}: {exc}") from None
        cameras[name] = SensorCalibration(name, "camera", extrinsics[name], model)
    return {**cameras, "_ego_SE3_sensor": extrinsics}


def import_av2(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
               with_cameras: bool = True):
    """Import an Argoverse 2 sensor log folder into a drive (see the module docstring for the conversion).

    Args:
        src: the log folder ``<split>/<log_id>``.
        out: the ``NAME.drive`` folder.
        overwrite: replace an existing drive.
        with_cameras: include the camera calibrations (and images when ``sensors/cameras`` has them).

    Raises:
        FormatError: missing or unreadable tables (naming the file and field); SchemaError: ``out`` exists.
    """
    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.errors import SchemaError
    from sensorlabel.formats import progress
    from sensorlabel.formats.fileio import read_ahead, read_nonempty_bytes

    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise SchemaError(out, "already exists; pass overwrite=True to replace it")
    if not (src / "city_SE3_egovehicle.feather").is_file():
        raise FormatError(src, "not an Argoverse 2 log folder: no city_SE3_egovehicle.feather")
    pose_path = src / "city_SE3_egovehicle.feather"
    pose_table = read_feather(pose_path, ("timestamp_ns", *_POSE_COLUMNS))
    pose_ts = np.asarray(pose_table["timestamp_ns"], dtype=np.int64)
    order = np.argsort(pose_ts, kind="stable")
    city_SE3_ego = _poses(pose_path, pose_table, "city_SE3_egovehicle")[order]
    pose_ts = pose_ts[order]
    repeated = first_non_increasing(pose_ts)  # sorted: a non-increase is a repeat
    if repeated is not None:
        raise FormatError(pose_path, f"repeated timestamp_ns {pose_ts[repeated - 1]}")
    calibration = read_av2_calibration(src) if with_cameras else {"_ego_SE3_sensor": {}}
    extrinsics = calibration.pop("_ego_SE3_sensor")
    lidar_files = sorted((src / "sensors" / "lidar").glob("*.feather"), key=lambda p: p.stem)
    camera_files = {
        name: sorted((src / "sensors" / "cameras" / name).glob("*.jpg"), key=lambda p: p.stem) for name in calibration
    }
    bad_name = next((path for files in camera_files.values() for path in files if not path.stem.isdigit()), None)
    if bad_name is not None:
        raise FormatError(bad_name, f"image file name is not a timestamp in ns: {bad_name.name!r}")
    ann_path = src / "annotations.feather"
    if ann_path.is_file():
        ann_ts, boxes, uuids = read_av2_annotations(ann_path)
    else:
        ann_ts, boxes, uuids = np.zeros(0, np.int64), Boxes.empty(), np.zeros(0, str)
    sweep_ts = np.array([int(p.stem) for p in lidar_files if p.stem.isdigit()], dtype=np.int64)
    frame_ts = np.union1d(ann_ts, sweep_ts)
    sensors = {"lidar": SensorCalibration("lidar", "lidar", SE3.identity())}
    sensors.update(calibration)
    metadata = {"av2": {"log_id": src.name, "ego_SE3_sensor": {n: t.as_matrix().tolist() for n, t in extrinsics.items()},
                        "lidar_frame": "ego (points are stored in the ego frame, motion-compensated)"}}
    with Drive.create(out, name=src.name, source_format="av2", sensors=sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        for timestamp_ns, points in progress(read_ahead(read_av2_lidar, lidar_files), total=len(lidar_files),
                                             desc="av2 lidar"):
            writer.append_lidar_sweep("lidar", points, LIDAR_FIELDS, timestamp_ns)
        for name, files in camera_files.items():
            encoded = read_ahead(read_nonempty_bytes, files)
            for path, data in progress(zip(files, encoded), total=len(files), desc=f"av2 {name}"):
                writer.append_camera_image(name, data, int(path.stem))
        writer.write_poses(pose_ts, city_SE3_ego)
        drive = writer.finalize(frame_ts)
    if len(boxes):
        unique, first, inverse = np.unique(uuids, return_index=True, return_inverse=True)
        track_ids = drive.labels.add_tracks(boxes.label[first].tolist(), [{"av2_track_uuid": str(u)} for u in unique],
                                            description="import Argoverse 2 tracks")
        frames = np.searchsorted(frame_ts, ann_ts)
        drive.labels.put_boxes(frames, boxes.replace(track_id=track_ids[inverse.reshape(-1)]), "imported",
                               description="import Argoverse 2 annotations")
    return drive
