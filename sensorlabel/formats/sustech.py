"""SUSTech POINTS scenes: ``lidar/*.pcd``, ``camera/<name>/*.jpg``, ``calib/camera/<name>.json``, ``label/*.json``.

Point clouds
    SUSTech POINTS (Hesai Pandar40) PCD files have a header that misdescribes their records: FIELDS
    ``x y z _ intensity _ timestamp _ ring _`` with a ``_`` of COUNT 0 before ``timestamp``, which puts it at byte 20,
    while the records really hold x, y, z float32 at bytes 0, 4, 8, intensity float32 at 16, the point time float64
    (seconds) at 24 and the ring uint16 at 32, in 48-byte records, followed by trailing zero bytes. The PCD reader
    (:mod:`sensorlabel.formats.pcd`) recognises that exact header and reads the real layout;
    :func:`read_sustech_pcd` then turns the point times into ``t_offset_s``. Other PCD files in a SUSTech scene are
    read generically.

Time
    SUSTech scenes carry no timestamps: the file stems are 10 Hz frame counters, so a frame's time is
    ``counter x 100 ms`` (``rate_hz`` changes the rate). Per-point times become ``t_offset_s`` relative to the
    sweep's first point, which is taken as the sweep time. Images get the time of their frame.

Frames and calibration
    There are no ego poses: each frame is in its own lidar frame, the ego frame *is* the lidar frame
    (``ego_SE3_lidar`` = identity) and the drive has no poses (``metadata["poses"]`` says so).
    ``calib/camera/<name>.json``: ``extrinsic`` is the row-major 4x4 ``cam_SE3_lidar`` (``extrinsic_ok`` is ignored),
    so ``ego_SE3_cam = extrinsic^-1``; ``intrinsic`` is the row-major 3x3 K, with no distortion.

Boxes (converted once, here)
    ``psr.position`` is the geometric centre in the lidar frame, ``psr.scale`` (x, y, z) is length, width, height
    along the object's axes, and ``psr.rotation`` (x, y, z) are three.js Euler angles in order ``XYZ``, i.e.
    ``lidar_R_object = Rx(x) Ry(y) Rz(z)`` (intrinsic XYZ); for a level box only ``z``, the yaw, is non-zero.
    ``obj_id`` is the track id and ``obj_type`` the class. Numeric ``obj_id`` values keep their number as track
    attribute ``obj_id``, so exports write the same ids back.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.errors import CalibrationError, FormatError, InvalidTransformError
from sensorlabel.formats.fileio import image_file_size, read_ahead, read_file_bytes, read_json, read_nonempty_bytes
from sensorlabel.formats import atomic_write_bytes
from sensorlabel.formats.pcd import MAX_SWEEP_SPAN_S, columns_to_lidar_points, parse_pcd_header, read_pcd_payload
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3

if TYPE_CHECKING:
    from sensorlabel.drive import Drive

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SustechLabels:
    """The boxes of one SUSTech label file.

    Attributes:
        boxes: N boxes in the lidar frame; ``track_id`` is the numeric ``obj_id`` or -1 when it is not a number.
        obj_ids: (N,) str, the ``obj_id`` values as written.
    """

    boxes: Boxes
    obj_ids: np.ndarray


@dataclass(frozen=True)
class SustechCamera:
    """One camera calibration file: ``cam_SE3_lidar`` and the (3,3) intrinsic matrix ``K``."""

    cam_SE3_lidar: SE3
    K: np.ndarray


def read_sustech_pcd(path: str | Path) -> tuple[np.ndarray, tuple[str, ...], float | None]:
    """Read one SUSTech lidar file.

    Args:
        path: the ``.pcd`` file.

    Returns:
        ``(points (P, F) float32 in the lidar frame, fields, first_point_time_s)``. With SUSTech's own header the
        fields are ``x y z intensity ring t_offset_s`` and ``first_point_time_s`` is the time of the earliest point
        (``t_offset_s`` is relative to it); other PCD files are read generically and give None.

    Raises:
        FormatError: an unreadable or inconsistent file, non-finite intensity or times, or per-point times
            spanning more than 1 s.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    header = parse_pcd_header(raw, path)
    columns = read_pcd_payload(raw, header, path)
    if not (header.is_sustech_layout and header.data == "binary"):
        points, fields = columns_to_lidar_points(columns, path)
        return points, fields, None
    finite = np.isfinite(columns["x"]) & np.isfinite(columns["y"]) & np.isfinite(columns["z"])
    columns = {name: values[finite] for name, values in columns.items()}
    for name in ("intensity", "timestamp"):
        bad = ~np.isfinite(columns[name])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FormatError(path, f"point {i}: {name} is not finite ({columns[name][i]})")
    fields = ("x", "y", "z", "intensity", "ring", "t_offset_s")
    times_s = columns["timestamp"]
    if len(times_s) == 0:
        return np.zeros((0, len(fields)), np.float32), fields, None
    start_s = float(times_s.min())
    span_s = float(times_s.max()) - start_s
    if span_s > MAX_SWEEP_SPAN_S:
        raise FormatError(path, f"field timestamp spans {span_s:.3g} s, more than one sweep ({MAX_SWEEP_SPAN_S} s)")
    points = np.empty((len(times_s), len(fields)), dtype=np.float32)
    for j, name in enumerate(fields[:5]):
        points[:, j] = columns[name]
    points[:, 5] = times_s - start_s
    return points, fields, start_s


def _number(path: Path, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(path, f"{where} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise FormatError(path, f"{where} must be finite, got {value!r}")
    return result


def _xyz(path: Path, where: str, value) -> list[float]:
    if not isinstance(value, dict):
        raise FormatError(path, f"{where} must be an object with x, y, z, got {value!r}")
    missing = [k for k in "xyz" if k not in value]
    if missing:
        raise FormatError(path, f"{where} has no {missing[0]!r}")
    return [_number(path, f"{where}.{k}", value[k]) for k in "xyz"]


def read_sustech_labels(path: str | Path) -> SustechLabels:
    """Read one ``label/<frame>.json`` file (a list of objects with ``psr``, ``obj_type``, ``obj_id``).

    Raises:
        FormatError: not JSON, not a list of objects, a missing or non-finite field, a non-positive size, or an
            ``obj_id`` twice in the file; the message names the object index and the field.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise FormatError(path, f"expected a list of objects, got {type(data).__name__}")
    centers, sizes, eulers, labels, obj_ids = [], [], [], [], []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict) or not isinstance(obj.get("psr"), dict):
            raise FormatError(path, f"object {i} has no 'psr' object")
        psr = obj["psr"]
        centers.append(_xyz(path, f"object {i} psr.position", psr.get("position")))
        sizes.append(_xyz(path, f"object {i} psr.scale", psr.get("scale")))
        eulers.append(_xyz(path, f"object {i} psr.rotation", psr.get("rotation")))
        if min(sizes[-1]) <= 0:
            raise FormatError(path, f"object {i} psr.scale must be positive, got {sizes[-1]}")
        label = obj.get("obj_type")
        if not isinstance(label, str) or not label:
            raise FormatError(path, f"object {i} obj_type must be a non-empty string, got {label!r}")
        obj_id = obj.get("obj_id")
        if isinstance(obj_id, bool) or not isinstance(obj_id, (str, int)) or str(obj_id) == "":
            raise FormatError(path, f"object {i} obj_id must be a non-empty string or integer, got {obj_id!r}")
        labels.append(label)
        obj_ids.append(str(obj_id))
    if len(set(obj_ids)) != len(obj_ids):
        dup = next(o for o in obj_ids if obj_ids.count(o) > 1)
        raise FormatError(path, f"obj_id {dup!r} appears twice in one frame")
    n = len(data)
    track = np.array([int(o) if o.isdecimal() and len(o) < 18 else -1 for o in obj_ids], dtype=np.int64)
    quat_xyzw = Rotation.from_euler("XYZ", np.asarray(eulers).reshape(n, 3)).as_quat().reshape(n, 4)
    boxes = Boxes(
        np.asarray(centers, dtype=np.float64).reshape(n, 3), np.asarray(sizes, dtype=np.float64).reshape(n, 3),
        quat_xyzw[:, [3, 0, 1, 2]], track, np.asarray(labels, dtype=str).reshape(n),
    )
    return SustechLabels(boxes, np.asarray(obj_ids, dtype=str).reshape(n))


def sustech_label_objects(boxes_lidar: Boxes, obj_ids: list[str]) -> list[dict]:
    """SUSTech label objects for boxes in the lidar frame (the inverse of :func:`read_sustech_labels`)."""
    euler = Rotation.from_quat(boxes_lidar.quat_wxyz[:, [1, 2, 3, 0]]).as_euler("XYZ") if len(boxes_lidar) else []
    objects = []
    for i in range(len(boxes_lidar)):
        c, s, r = boxes_lidar.center_m[i], boxes_lidar.lwh_m[i], euler[i]
        objects.append({
            "psr": {
                "position": {"x": float(c[0]), "y": float(c[1]), "z": float(c[2])},
                "scale": {"x": float(s[0]), "y": float(s[1]), "z": float(s[2])},
                "rotation": {"x": float(r[0]), "y": float(r[1]), "z": float(r[2])},
            },
            "obj_type": str(boxes_lidar.label[i]),
            "obj_id": str(obj_ids[i]),
        })
    return objects


def read_sustech_calib(path: str | Path) -> SustechCamera:
    """Read ``calib/camera/<name>.json``: ``extrinsic`` (16 numbers, cam_SE3_lidar) and ``intrinsic`` (9, K).

    Raises:
        FormatError: missing keys, wrong lengths, non-finite values, a rotation that is not one, or a K that is not
            ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` with positive focal lengths.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise FormatError(path, f"expected a JSON object, got {type(data).__name__}")
    arrays = {}
    for key, size in (("extrinsic", 16), ("intrinsic", 9)):
        values = data.get(key)
        if not isinstance(values, list) or len(values) != size:
            raise FormatError(path, f"{key} must be a list of {size} numbers, got {values!r}"[:300])
        arrays[key] = np.array([_number(path, f"{key}[{j}]", v) for j, v in enumerate(values)])
    try:
        cam_SE3_lidar = SE3.from_matrix(arrays["extrinsic"].reshape(4, 4))
    except (InvalidTransformError, ValueError) as exc:
        raise FormatError(path, f"extrinsic is not a rigid transform: {exc}") from None
    K = arrays["intrinsic"].reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0 or K[0, 1] != 0 or K[1, 0] != 0 or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
        raise FormatError(path, f"intrinsic is not a camera matrix: {K.tolist()}")
    return SustechCamera(cam_SE3_lidar, K)


def _frame_counter(path: Path) -> int:
    if not path.stem.isdecimal():
        raise FormatError(path, f"SUSTech frame files are named by their frame counter, got {path.name!r}")
    return int(path.stem)


def import_sustech(
    src: Path,
    out: Path,
    *,
    overwrite: bool = False,
    rate_hz: float = 10.0,
    lidar_name: str = "lidar",
    name: str | None = None,
) -> Drive:
    """Import a SUSTech POINTS scene folder (see the module docstring for the conventions).

    Args:
        src: the scene folder holding ``lidar/`` and optionally ``camera/``, ``calib/camera/`` and ``label/``.
        out: the ``.drive`` folder to create.
        overwrite: replace an existing drive.
        rate_hz: the rate of the frame counters in the file names.
        lidar_name: the lidar's sensor name.
        name: the drive name; the scene folder's name by default.

    Returns:
        The opened drive; boxes are stored as source ``"imported"`` with one track per ``obj_id`` (attribute
        ``obj_id`` keeps the original id), and ``metadata["frame_names"]`` lists the frame stems.

    Raises:
        FormatError: a missing ``lidar/`` folder, a camera without its calibration, frame counters that do not
            increase, or any unreadable file (named).
    """
    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.formats import progress
    from sensorlabel.geometry.camera import PinholeCamera

    src, out = Path(src), Path(out)
    lidar_dir = src / "lidar"
    if not lidar_dir.is_dir():
        raise FormatError(src, "not a SUSTech POINTS scene: no lidar/ folder")
    lidar_files = sorted((p for p in lidar_dir.iterdir() if p.suffix.lower() == ".pcd"), key=_frame_counter)
    if not lidar_files:
        raise FormatError(lidar_dir, "no .pcd files")
    counters = np.array([_frame_counter(p) for p in lidar_files], dtype=np.int64)
    if np.any(np.diff(counters) <= 0):
        raise FormatError(lidar_dir, f"frame counters repeat: {counters.tolist()}")
    period_ns = round(1e9 / rate_hz)
    frame_ns = counters * period_ns
    stems = [p.stem for p in lidar_files]

    sensors = {lidar_name: SensorCalibration(lidar_name, "lidar", SE3.identity())}
    camera_files: dict[str, list[tuple[int, Path]]] = {}
    camera_root = src / "camera"
    for cam_dir in sorted(camera_root.iterdir()) if camera_root.is_dir() else []:
        if not cam_dir.is_dir():
            continue
        images = [(i, next((cam_dir / (stem + s) for s in IMAGE_SUFFIXES if (cam_dir / (stem + s)).is_file()), None))
                  for i, stem in enumerate(stems)]
        images = [(i, p) for i, p in images if p is not None]
        if not images:
            continue
        calib_path = src / "calib" / "camera" / f"{cam_dir.name}.json"
        if not calib_path.is_file():
            raise FormatError(calib_path, f"camera {cam_dir.name!r} has images but no calibration file")
        calib = read_sustech_calib(calib_path)
        width, height = image_file_size(images[0][1])
        K = calib.K
        try:
            model = PinholeCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)
            sensors[cam_dir.name] = SensorCalibration(cam_dir.name, "camera", calib.cam_SE3_lidar.inverse(), model)
        except CalibrationError as exc:
            raise FormatError(calib_path, str(exc)) from None
        camera_files[cam_dir.name] = images

    metadata = {
        "source": str(src),
        "poses": "none: SUSTech POINTS has no ego poses; each frame is in its own lidar frame (ego = lidar)",
        "timestamps": f"frame counter x {period_ns} ns ({rate_hz:g} Hz); t_offset_s relative to each sweep's first "
                      "point",
        "frame_names": stems,
    }
    labels = _read_scene_labels(src / "label", stems)
    with Drive.create(out, name=name or src.name, source_format="sustech", sensors=sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        sweeps = read_ahead(read_sustech_pcd, lidar_files)
        for stamp, (points, fields, _) in progress(zip(frame_ns, sweeps), total=len(lidar_files),
                                                   desc=f"import {src.name}"):
            writer.append_lidar_sweep(lidar_name, points, fields, int(stamp))
        for cam_name, images in camera_files.items():
            encoded = read_ahead(read_nonempty_bytes, [path for _, path in images])
            for (i, _), data in progress(zip(images, encoded), total=len(images), desc=cam_name):
                writer.append_camera_image(cam_name, data, int(frame_ns[i]))
        drive = writer.finalize()
    _store_labels(drive, labels)
    return drive


def _read_scene_labels(label_dir: Path, stems: list[str]) -> list[SustechLabels | None]:
    labels = []
    for stem in stems:
        path = label_dir / f"{stem}.json"
        labels.append(read_sustech_labels(path) if path.is_file() else None)
        if labels[-1] is None:
            logger.info("%s: no label file for frame %s", label_dir, stem)
    return labels


def _store_labels(drive: Drive, labels: list[SustechLabels | None]) -> None:
    """One track per distinct obj_id (class from its first box), then all boxes in one transaction."""
    store = drive.labels
    label_of: dict[str, str] = {}  # obj_id -> class of its first box, in order of first appearance
    present = [(frame, frame_labels) for frame, frame_labels in enumerate(labels)
               if frame_labels is not None and len(frame_labels.boxes) > 0]
    for _, frame_labels in present:
        for obj_id, label in zip(frame_labels.obj_ids.tolist(), frame_labels.boxes.label.tolist()):
            label_of.setdefault(obj_id, label)
    new_ids = store.add_tracks(list(label_of.values()), [{"obj_id": obj_id} for obj_id in label_of],
                               description="import SUSTech tracks")
    track_of = dict(zip(label_of, new_ids.tolist()))
    frames, parts = [], []
    for frame, frame_labels in present:
        ids = [track_of[obj_id] for obj_id in frame_labels.obj_ids.tolist()]
        parts.append(frame_labels.boxes.replace(track_id=np.asarray(ids, dtype=np.int64)))
        frames.append(np.full(len(ids), frame, dtype=np.int64))
    if parts:
        store.put_boxes(np.concatenate(frames), Boxes.concatenate(parts), "imported",
                        description=f"import {len(track_of)} SUSTech tracks")


def _frame_names(drive: Drive) -> list[str]:
    names = drive.metadata.get("frame_names") if drive.source_format == "sustech" else None
    if isinstance(names, list) and len(names) == drive.num_frames:
        return [str(n) for n in names]
    return [f"{frame:06d}" for frame in range(drive.num_frames)]


def export_sustech(drive: Drive, out_dir: Path, *, sources: tuple[str, ...] | None = None) -> list[Path]:
    """Write SUSTech POINTS label files ``label/<frame>.json`` (every frame) and ``calib/camera/<name>.json``.

    Boxes go from the ego frame into the first lidar's frame. ``obj_id`` is the track's ``obj_id`` attribute when
    it has one (an imported SUSTech track), else the track id.

    Args:
        drive: the drive.
        out_dir: the scene folder to write into.
        sources: only boxes of these sources (all by default).

    Returns:
        The files written.
    """
    out_dir = Path(out_dir)
    lidar_SE3_ego = drive.sensors[drive.lidar_names[0]].ego_SE3_sensor.inverse() if drive.lidar_names \
        else SE3.identity()
    obj_id_of = {t.track_id: str(t.attributes.get("obj_id", t.track_id)) for t in drive.labels.tracks()}
    records = drive.labels.query(sources=list(sources) if sources else None)
    written = []
    for frame, stem in enumerate(_frame_names(drive)):
        at = records[records.frame == frame]
        boxes_lidar = at.boxes.transform(lidar_SE3_ego)
        objects = sustech_label_objects(boxes_lidar, [obj_id_of[int(t)] for t in at.boxes.track_id])
        text = json.dumps(objects, indent=1).encode("utf-8")
        written.append(atomic_write_bytes(out_dir / "label" / f"{stem}.json", text))
    for name in drive.camera_names:
        sensor = drive.sensors[name]
        cam_SE3_lidar = sensor.ego_SE3_sensor.inverse().compose(lidar_SE3_ego.inverse())
        calib = {"extrinsic": cam_SE3_lidar.as_matrix().reshape(-1).tolist(),
                 "intrinsic": sensor.camera.K.reshape(-1).tolist()}
        written.append(atomic_write_bytes(out_dir / "calib" / "camera" / f"{name}.json",
                                     json.dumps(calib, indent=1).encode("utf-8")))
    return written
