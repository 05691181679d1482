"""ASAM OpenLABEL 1.0 JSON: export of a drive's 3D boxes, and a reader for round trips.

Layout written (``{"openlabel": {...}}``, schema_version ``1.0.0``)
    ``coordinate_systems``: ``world`` (``scene_cs``, only when the drive has poses), ``ego`` (``local_cs``), and one
    ``sensor_cs`` per sensor whose ``pose_wrt_parent.matrix4x4`` (row-major 4x4) is ``ego_SE3_sensor``: the sensor's
    pose in its parent, mapping sensor coordinates into ``ego`` coordinates.
    ``streams``: one per sensor (``lidar`` or ``camera``); cameras carry ``stream_properties.intrinsics_pinhole``
    (``camera_matrix_3x4``, ``distortion_coeffs_1xN`` = OpenCV ``k1 k2 p1 p2 k3``, ``width_px``, ``height_px``) or
    ``intrinsics_fisheye`` (``center_x``, ``center_y``, ``focal_length_x``, ``focal_length_y``, ``lens_coeffs_1xN``
    = ``k1..k4``, ``width_px``, ``height_px``).
    ``objects``: one per track, keyed by the track id, with ``type`` = class and ``frame_intervals``.
    ``frames``: one per drive frame, keyed by the frame index. ``frame_properties.timestamp`` is the frame time in
    seconds and ``timestamp_ns`` the exact integer; ``frame_properties.streams.<sensor>.stream_properties.sync``
    gives the sensor record used (``frame_stream``) and its time; ``frame_properties.transforms.ego_to_world``
    (``src`` ego, ``dst`` world, ``transform_src_to_dst.matrix4x4`` = ``world_SE3_ego``) when there are poses.
    Each object in a frame has ``object_data.cuboid = [{"name": "box3d", "coordinate_system": "ego", "val": [x, y,
    z, qx, qy, qz, qw, sx, sy, sz]}]``: the geometric centre, the rotation ``ego_R_object`` as a quaternion (x, y,
    z, w order, as the standard writes it) and the size along the object's x, y, z axes (length, width, height),
    plus ``num`` ``confidence`` and ``text`` ``source``.
    The top-level ``frame_intervals`` covers all frames.

Reading
    :func:`read_openlabel` accepts that layout and also 9-value cuboids ``[x, y, z, rx, ry, rz, sx, sy, sz]``
    (Euler angles, ``R = Rz(rz) Ry(ry) Rx(rx)``). Cuboids in another coordinate system are moved into ``ego`` with
    the ``pose_wrt_parent`` chain. Every malformed element raises :class:`FormatError` naming the file and the
    JSON path.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.errors import FormatError, InvalidTransformError
from sensorlabel.formats.fileio import read_json
from sensorlabel.formats import atomic_write_bytes
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3

if TYPE_CHECKING:
    from sensorlabel.drive import Drive

SCHEMA_VERSION = "1.0.0"
EGO_CS = "ego"
WORLD_CS = "world"


@dataclass(frozen=True)
class OpenLabelStream:
    """One stream: ``kind`` ``"lidar"``/``"camera"``/other, ``ego_SE3_sensor`` (None without a coordinate system),
    and for cameras ``intrinsics`` (the parsed ``intrinsics_pinhole``/``intrinsics_fisheye`` dict)."""

    name: str
    kind: str
    ego_SE3_sensor: SE3 | None
    intrinsics: dict | None


@dataclass(frozen=True)
class OpenLabelScene:
    """What :func:`read_openlabel` returns.

    Attributes:
        name: ``metadata.name``.
        frame_ids: (F,) int64 frame keys, sorted.
        frame_timestamps_ns: (F,) int64, -1 where a frame has no timestamp.
        frame: (N,) int64 frame key of each box.
        boxes: N boxes in the ego frame; ``track_id`` is the object uid (numeric uids) and ``label`` its type.
        object_uids: (N,) str uid of each box's object.
        sources: (N,) str ``source`` text of each box ("" when absent).
        world_SE3_ego: per frame key, the ``ego_to_world`` transform when given.
        streams: by name.
    """

    name: str
    frame_ids: np.ndarray
    frame_timestamps_ns: np.ndarray
    frame: np.ndarray
    boxes: Boxes
    object_uids: np.ndarray
    sources: np.ndarray
    world_SE3_ego: dict[int, SE3]
    streams: dict[str, OpenLabelStream]


# ----------------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------------
def _matrix_list(transform: SE3) -> list[float]:
    return [float(v) for v in transform.as_matrix().reshape(-1)]


def _stream_entry(sensor) -> dict:
    entry: dict = {"type": sensor.kind, "description": f"{sensor.kind} {sensor.name}", "uri": ""}
    camera = sensor.camera
    if camera is not None:
        size = {"width_px": int(camera.width_px), "height_px": int(camera.height_px)}
        if camera.model == "fisheye":
            intrinsics = {"intrinsics_fisheye": {
                "center_x": float(camera.cx_px), "center_y": float(camera.cy_px),
                "focal_length_x": float(camera.fx_px), "focal_length_y": float(camera.fy_px),
                "lens_coeffs_1xN": [float(v) for v in camera.distortion], **size}}
        else:
            k34 = np.hstack([camera.K, np.zeros((3, 1))])
            intrinsics = {"intrinsics_pinhole": {
                "camera_matrix_3x4": [float(v) for v in k34.reshape(-1)],
                "distortion_coeffs_1xN": [float(v) for v in camera.distortion], **size}}
        entry["stream_properties"] = intrinsics
    return entry


def openlabel_document(drive: Drive, sources: tuple[str, ...] | None = None) -> dict:
    """Build the OpenLABEL document of a drive's boxes (see the module docstring for the layout).

    Args:
        drive: the drive.
        sources: only boxes of these sources (all by default).
    """
    sensors = drive.sensors
    coordinate_systems: dict = {}
    if drive.has_poses:
        coordinate_systems[WORLD_CS] = {"type": "scene_cs", "parent": "", "children": [EGO_CS]}
    coordinate_systems[EGO_CS] = {"type": "local_cs", "parent": WORLD_CS if drive.has_poses else "",
                                  "children": list(sensors)}
    for name, sensor in sensors.items():
        coordinate_systems[name] = {"type": "sensor_cs", "parent": EGO_CS, "children": [],
                                    "pose_wrt_parent": {"matrix4x4": _matrix_list(sensor.ego_SE3_sensor)}}
    streams = {name: _stream_entry(sensor) for name, sensor in sensors.items()}

    tracks = {t.track_id: t for t in drive.labels.tracks()}
    records = drive.labels.query(sources=list(sources) if sources else None)
    stamps = drive.frame_timestamps_ns
    world_SE3_ego = drive.world_SE3_ego(stamps) if drive.has_poses and len(stamps) else None
    frames: dict = {}
    # Per stream: its record index at every frame and its record times (read once, not per frame).
    stream_records = [(name, [drive.frame_lidar_index(f, name) for f in range(drive.num_frames)],
                drive.lidar_timestamps_ns(name)) for name in drive.lidar_names]
    stream_records += [(name, [drive.frame_camera_index(f, name) for f in range(drive.num_frames)],
                 drive.camera_timestamps_ns(name)) for name in drive.camera_names]
    for f in range(drive.num_frames):
        sync = {}
        for name, index, stamps_ns in stream_records:
            if index[f] >= 0:
                t = int(stamps_ns[index[f]])
                sync[name] = {"stream_properties": {"sync": {"frame_stream": int(index[f]), "timestamp": t * 1e-9,
                                                             "timestamp_ns": t}}}
        properties: dict = {"timestamp": int(stamps[f]) * 1e-9, "timestamp_ns": int(stamps[f]), "streams": sync}
        if world_SE3_ego is not None:
            properties["transforms"] = {"ego_to_world": {
                "src": EGO_CS, "dst": WORLD_CS, "transform_src_to_dst": {"matrix4x4": _matrix_list(world_SE3_ego[f])}}}
        frames[str(f)] = {"frame_properties": properties, "objects": {}}

    objects: dict = {}
    b = records.boxes
    quat_xyzw = b.quat_wxyz[:, [1, 2, 3, 0]]
    for i in range(len(records)):
        uid = str(int(b.track_id[i]))
        val = [*map(float, b.center_m[i]), *map(float, quat_xyzw[i]), *map(float, b.lwh_m[i])]
        frames[str(int(records.frame[i]))]["objects"][uid] = {"object_data": {
            "cuboid": [{"name": "box3d", "coordinate_system": EGO_CS, "val": val}],
            "num": [{"name": "confidence", "val": float(records.confidence[i])}],
            "text": [{"name": "source", "val": str(records.source[i])}],
        }}
    for track_id in np.unique(b.track_id):
        track_frames = np.unique(records.frame[b.track_id == track_id])
        breaks = np.flatnonzero(np.diff(track_frames) > 1)
        starts = np.concatenate([track_frames[:1], track_frames[breaks + 1]])
        ends = np.concatenate([track_frames[breaks], track_frames[-1:]])
        track = tracks.get(int(track_id))
        objects[str(int(track_id))] = {
            "name": f"{track.label if track else 'object'}-{int(track_id)}",
            "type": track.label if track else "",
            "frame_intervals": [{"frame_start": int(s), "frame_end": int(e)} for s, e in zip(starts, ends)],
        }
    document = {
        "metadata": {"schema_version": SCHEMA_VERSION, "name": drive.name, "annotator": "sensorlabel",
                     "comment": f"exported from a {drive.source_format} drive; boxes in the ego frame"},
        "coordinate_systems": coordinate_systems,
        "streams": streams,
        "objects": objects,
        "frames": frames,
        "frame_intervals": [{"frame_start": 0, "frame_end": drive.num_frames - 1}] if drive.num_frames else [],
    }
    return {"openlabel": document}


def export_openlabel(drive: Drive, out_dir: Path, *, sources: tuple[str, ...] | None = None) -> list[Path]:
    """Write ``<out_dir>/<drive name>.openlabel.json``.

    Args:
        drive: the drive.
        out_dir: the output folder (created).
        sources: only boxes of these sources (all by default).

    Returns:
        The one file written.
    """
    document = openlabel_document(drive, sources)
    text = json.dumps(document, indent=1, allow_nan=False).encode("utf-8")
    return [atomic_write_bytes(Path(out_dir) / f"{drive.name}.openlabel.json", text)]


# ----------------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------------
class _Reader:
    """Typed access to the JSON tree; every failure is a FormatError naming the file and the JSON path."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, reason: str) -> FormatError:
        return FormatError(self.path, f"{where}: {reason}")

    def obj(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def lst(self, value, where: str) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def numbers(self, value, where: str, size: int | None = None) -> np.ndarray:
        values = self.lst(value, where)
        if size is not None and len(values) != size:
            raise self.fail(where, f"expected {size} numbers, got {len(values)}")
        for j, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise self.fail(f"{where}[{j}]", f"expected a finite number, got {v!r}")
        return np.asarray(values, dtype=np.float64)

    def integer(self, value, where: str, low: int = -(2**63), high: int = 2**63 - 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(where, f"expected an integer in [{low}, {high}], got {value!r}")
        return value

    def key_int(self, key: str, where: str) -> int:
        if not key.isdecimal() or len(key) > 18:
            raise self.fail(where, f"frame key must be a non-negative integer, got {key!r}")
        return int(key)

    def transform(self, value, where: str) -> SE3:
        matrix = self.numbers(self.obj(value, where).get("matrix4x4"), f"{where}.matrix4x4", 16)
        try:
            return SE3.from_matrix(matrix.reshape(4, 4))
        except (InvalidTransformError, ValueError) as exc:
            raise self.fail(f"{where}.matrix4x4", f"not a rigid transform: {exc}") from None


def _ego_SE3_cs(r: _Reader, systems: dict) -> dict[str, SE3]:
    """Transforms from every coordinate system reachable from ``ego`` through ``pose_wrt_parent`` into ego."""
    parents: dict[str, tuple[str, SE3 | None]] = {}
    for name, cs in systems.items():
        where = f"coordinate_systems.{name}"
        cs = r.obj(cs, where)
        parent = cs.get("parent", "")
        if not isinstance(parent, str):
            raise r.fail(f"{where}.parent", f"expected a string, got {parent!r}")
        pose = r.transform(cs["pose_wrt_parent"], f"{where}.pose_wrt_parent") if "pose_wrt_parent" in cs else None
        parents[name] = (parent, pose)
    resolved: dict[str, SE3] = {EGO_CS: SE3.identity()}
    for name in parents:
        chain, current = [], name
        while current not in resolved and current in parents and len(chain) <= len(parents):
            chain.append(current)
            current = parents[current][0]
        if current not in resolved or len(chain) > len(parents):
            continue  # not under ego (world) or a cycle: those systems hold no boxes we can place
        transform = resolved[current]
        for cs_name in reversed(chain):
            pose = parents[cs_name][1]
            if pose is None:
                raise r.fail(f"coordinate_systems.{cs_name}", "child of ego without pose_wrt_parent")
            transform = transform.compose(pose)
            resolved[cs_name] = transform
    return resolved


def _cuboid(r: _Reader, value, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(center (3,), quat_wxyz (4,), lwh (3,), coordinate_system) of one cuboid entry."""
    cuboid = r.obj(value, where)
    val = r.lst(cuboid.get("val"), f"{where}.val")
    if len(val) == 10:
        v = r.numbers(val, f"{where}.val", 10)
        quat_xyzw = v[3:7]
        if np.linalg.norm(quat_xyzw) < 1e-9:
            raise r.fail(f"{where}.val", "zero quaternion")
        quat_wxyz = quat_xyzw[[3, 0, 1, 2]] / np.linalg.norm(quat_xyzw)
        size = v[7:10]
    elif len(val) == 9:
        v = r.numbers(val, f"{where}.val", 9)
        quat_wxyz = Rotation.from_euler("ZYX", v[[5, 4, 3]]).as_quat()[[3, 0, 1, 2]]
        size = v[6:9]
    else:
        raise r.fail(f"{where}.val", f"expected 10 (quaternion) or 9 (Euler) numbers, got {len(val)}")
    if (size <= 0).any():
        raise r.fail(f"{where}.val", f"sizes must be positive, got {size.tolist()}")
    cs = cuboid.get("coordinate_system", EGO_CS)
    if not isinstance(cs, str):
        raise r.fail(f"{where}.coordinate_system", f"expected a string, got {cs!r}")
    return v[:3], quat_wxyz, size, cs


def _timestamp_ns(r: _Reader, properties: dict, where: str) -> int:
    if "timestamp_ns" in properties:
        return r.integer(properties["timestamp_ns"], f"{where}.timestamp_ns")
    if "timestamp" in properties:
        value = properties["timestamp"]
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise r.fail(f"{where}.timestamp", f"expected seconds, got {value!r}") from None
        if not math.isfinite(seconds) or abs(seconds) > 9e9:
            raise r.fail(f"{where}.timestamp", f"expected finite seconds, got {value!r}")
        return round(seconds * 1e9)
    return -1


def _streams(r: _Reader, doc: dict, ego_SE3_cs: dict[str, SE3]) -> dict[str, OpenLabelStream]:
    streams = {}
    for name, stream in r.obj(doc.get("streams", {}), "streams").items():
        where = f"streams.{name}"
        stream = r.obj(stream, where)
        kind = stream.get("type", "")
        if not isinstance(kind, str):
            raise r.fail(f"{where}.type", f"expected a string, got {kind!r}")
        props = r.obj(stream.get("stream_properties", {}), f"{where}.stream_properties")
        intrinsics = None
        for key, fields in (("intrinsics_pinhole", ("camera_matrix_3x4", "distortion_coeffs_1xN")),
                            ("intrinsics_fisheye", ("lens_coeffs_1xN",))):
            if key in props:
                block = r.obj(props[key], f"{where}.stream_properties.{key}")
                intrinsics = {"model": key}
                for field in ("width_px", "height_px"):
                    intrinsics[field] = r.integer(block.get(field), f"{where}.stream_properties.{key}.{field}", 1,
                                                  2**31 - 1)
                for field in fields:
                    intrinsics[field] = r.numbers(block.get(field, []), f"{where}.stream_properties.{key}.{field}")
                for field in ("center_x", "center_y", "focal_length_x", "focal_length_y"):
                    if key == "intrinsics_fisheye":
                        intrinsics[field] = float(r.numbers([block.get(field)], f"{where}.{key}.{field}", 1)[0])
        streams[name] = OpenLabelStream(name, kind, ego_SE3_cs.get(name), intrinsics)
    return streams


def read_openlabel(path: str | Path) -> OpenLabelScene:
    """Read an OpenLABEL 1.0 JSON file's cuboids, frame times, ego poses and streams.

    Returns:
        The scene; boxes are moved into the ``ego`` coordinate system.

    Raises:
        FormatError: not JSON, no ``openlabel`` object, or any malformed element (named by its JSON path).
    """
    path = Path(path)
    r = _Reader(path)
    document = read_json(path)
    doc = r.obj(r.obj(document, "document").get("openlabel"), "openlabel")
    metadata = r.obj(doc.get("metadata", {}), "metadata")
    name = metadata.get("name", "")
    version = metadata.get("schema_version", "")
    if not isinstance(version, str) or not version.startswith("1."):
        raise r.fail("metadata.schema_version", f"expected OpenLABEL 1.x, got {version!r}")
    ego_SE3_cs = _ego_SE3_cs(r, r.obj(doc.get("coordinate_systems", {}), "coordinate_systems"))
    streams = _streams(r, doc, ego_SE3_cs)
    objects = r.obj(doc.get("objects", {}), "objects")
    for uid, obj in objects.items():
        if not isinstance(r.obj(obj, f"objects.{uid}").get("type", ""), str):
            raise r.fail(f"objects.{uid}.type", "expected a string")

    frame_ids, stamps, world = [], [], {}
    rows_frame, centers, quats, sizes, uids, labels, sources, scores = [], [], [], [], [], [], [], []
    for key, frame in r.obj(doc.get("frames", {}), "frames").items():
        where = f"frames.{key}"
        f = r.key_int(key, where)
        frame = r.obj(frame, where)
        properties = r.obj(frame.get("frame_properties", {}), f"{where}.frame_properties")
        frame_ids.append(f)
        stamps.append(_timestamp_ns(r, properties, f"{where}.frame_properties"))
        transforms = r.obj(properties.get("transforms", {}), f"{where}.frame_properties.transforms")
        for t_name, transform in transforms.items():
            t_where = f"{where}.frame_properties.transforms.{t_name}"
            transform = r.obj(transform, t_where)
            if transform.get("src") == EGO_CS and transform.get("dst") == WORLD_CS:
                world[f] = r.transform(transform.get("transform_src_to_dst"), f"{t_where}.transform_src_to_dst")
        for uid, entry in r.obj(frame.get("objects", {}), f"{where}.objects").items():
            o_where = f"{where}.objects.{uid}"
            data = r.obj(r.obj(entry, o_where).get("object_data", {}), f"{o_where}.object_data")
            cuboids = r.lst(data.get("cuboid", []), f"{o_where}.object_data.cuboid")
            if not cuboids:
                continue
            if len(cuboids) > 1:
                raise r.fail(f"{o_where}.object_data.cuboid", f"expected one cuboid per object, got {len(cuboids)}")
            center, quat, size, cs = _cuboid(r, cuboids[0], f"{o_where}.object_data.cuboid[0]")
            if cs not in ego_SE3_cs:
                raise r.fail(f"{o_where}.object_data.cuboid[0].coordinate_system",
                             f"{cs!r} is not ego or a coordinate system under it")
            transform = ego_SE3_cs[cs]
            centers.append(transform.transform_points(center[None])[0])
            quats.append(Rotation.from_matrix(transform.rotation @ Rotation.from_quat(quat[[1, 2, 3, 0]]).as_matrix())
                         .as_quat()[[3, 0, 1, 2]])
            sizes.append(size)
            rows_frame.append(f)
            uids.append(uid)
            obj_type = r.obj(objects.get(uid, {}), f"objects.{uid}").get("type", "")
            labels.append(obj_type)
            texts = {t.get("name"): t.get("val") for t in r.lst(data.get("text", []), f"{o_where}.object_data.text")
                     if isinstance(t, dict)}
            nums = {t.get("name"): t.get("val") for t in r.lst(data.get("num", []), f"{o_where}.object_data.num")
                    if isinstance(t, dict)}
            sources.append(str(texts.get("source", "")))
            confidence = nums.get("confidence", 1.0)
            if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
                raise r.fail(f"{o_where}.object_data.num.confidence",
                             f"expected a number in [0, 1], got {confidence!r}")
            scores.append(float(confidence))
    order = np.argsort(frame_ids, kind="stable")
    n = len(rows_frame)
    track = np.array([int(u) if u.isdecimal() and len(u) < 18 else -1 for u in uids], dtype=np.int64)
    boxes = Boxes(np.asarray(centers).reshape(n, 3), np.asarray(sizes).reshape(n, 3), np.asarray(quats).reshape(n, 4),
                  track, np.asarray(labels, dtype=str).reshape(n), np.asarray(scores).reshape(n))
    return OpenLabelScene(
        name=str(name), frame_ids=np.asarray(frame_ids, dtype=np.int64)[order],
        frame_timestamps_ns=np.asarray(stamps, dtype=np.int64)[order], frame=np.asarray(rows_frame, dtype=np.int64),
        boxes=boxes, object_uids=np.asarray(uids, dtype=str).reshape(n),
        sources=np.asarray(sources, dtype=str).reshape(n),
        world_SE3_ego=world, streams=streams,
    )
