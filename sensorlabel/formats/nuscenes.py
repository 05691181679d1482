"""nuScenes (Caesar et al., "nuScenes: A multimodal dataset for autonomous driving", CVPR 2020): importers of the
v1.0 tables and of mmdetection3d's info JSON, and exporters of detection and tracking submission JSON.

Conventions and the conversion of each box (done once, here):

* **v1.0 tables** (``<dataroot>/<version>/*.json``): ``sample_annotation`` boxes are in the **global** frame:
  ``translation`` = geometric centre, ``size`` = ``(w, l, h)``, ``rotation`` = quaternion ``(w, x, y, z)``
  = global_R_object (object x = heading). Stored in the ego frame at the keyframe's LIDAR_TOP timestamp::

      boxes_ego = boxes_global.transform(inverse(global_SE3_ego(lidar sample_data's ego_pose)))
      lwh_m = (size[1], size[0], size[2])

  Frames are the scene's keyframes (samples); each imports the keyframe LIDAR_TOP sweep (``.pcd.bin``, float32
  ``x y z intensity ring`` in the lidar frame) and camera images, and the ego poses of those sample_data.
  ``instance_token`` becomes a drive track (attribute ``nuscenes_instance_token``), labelled with the category name.
* **mmdetection3d info JSON** (``*.info.json``, info_version 1.1): ``instances[].bbox_3d = [x, y, z, l, w, h, yaw]``
  in the LIDAR_TOP frame with ``z`` at the **bottom** of the box and ``yaw`` about the lidar's z from its x axis::

      center_lidar = (x, y, z + h/2),  lwh_m = (l, w, h),  lidar_R_object = Rz(yaw)
      boxes_ego = boxes_lidar.transform(lidar2ego)

  Categories come from ``metainfo.categories`` (index -1, a category outside the 10 classes, becomes ``unknown``);
  the JSON has no instance tokens, so every box is its own track.
* **Submission JSON** (nuScenes detection / tracking challenge): boxes in the global frame, ``translation``,
  ``size`` (w, l, h), ``rotation`` (w, x, y, z), ``velocity`` (vx, vy) in m/s from the track's centres at the
  neighbouring frames (central difference, one-sided at the ends, zero for a single box), ``detection_name`` /
  ``tracking_name`` from the nuScenes devkit's category mapping, ``tracking_id`` = the drive track id, and the
  ``sample_token`` kept at import (``metadata["nuscenes"]["sample_tokens"]``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from sensorlabel.errors import FormatError
from sensorlabel.formats import atomic_write_bytes
from sensorlabel.formats.fileio import (
    image_file_size,
    read_ahead,
    read_float32_records,
    read_json,
    read_nonempty_bytes,
)
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3

logger = logging.getLogger(__name__)

LIDAR_FIELDS = ("x", "y", "z", "intensity", "ring")
#: nuScenes devkit's category -> detection class (``eval/detection/utils.py: category_to_detection_name``).
DETECTION_NAMES = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}
DETECTION_CLASSES = sorted(set(DETECTION_NAMES.values()))
TRACKING_CLASSES = ["bicycle", "bus", "car", "motorcycle", "pedestrian", "trailer", "truck"]
_MOVING_M_S = 0.2  # the devkit's speed threshold between moving and parked/standing attributes


def detection_name(label: str) -> str | None:
    """The detection class of a category (``vehicle.car`` -> ``car``); class names map to themselves; else None."""
    if label in DETECTION_CLASSES:
        return label
    return DETECTION_NAMES.get(label)


# ======================================================================================================================
# Reading helpers
# ======================================================================================================================
def _field(path: Path, record, key: str, where: str):
    if not isinstance(record, dict) or key not in record:
        raise FormatError(path, f"{where}: missing field {key!r}")
    return record[key]


def _numbers(path: Path, value, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(path, f"{where}: not numeric: {str(value)[:80]}") from None
    if arr.shape != shape or not np.isfinite(arr).all():
        raise FormatError(path, f"{where}: expected {shape} finite numbers, got {str(value)[:120]}")
    return arr


def _rigid(path: Path, matrix, where: str) -> SE3:
    """A (4,4) JSON matrix as SE3; FormatError when it is not a rigid transform (checked to 1e-5)."""
    from sensorlabel.drive.sensors import checked_transform
    from sensorlabel.errors import CalibrationError

    m = _numbers(path, matrix, (4, 4), where)
    u, _, vt = np.linalg.svd(m[:3, :3])
    if np.abs(m[:3, :3].T @ m[:3, :3] - np.eye(3)).max() > 1e-5:
        raise FormatError(path, f"{where}: rotation is not orthonormal: {m[:3, :3].tolist()}")
    m = m.copy()
    m[:3, :3] = u @ vt  # float32-printed rotations, projected onto SO(3) so inverse() is exact
    try:
        return checked_transform(m, where)
    except CalibrationError as exc:
        raise FormatError(path, str(exc)) from None


def _pose(path: Path, record, where: str) -> SE3:
    t = _numbers(path, _field(path, record, "translation", where), (3,), f"{where} translation")
    q = _numbers(path, _field(path, record, "rotation", where), (4,), f"{where} rotation")
    if abs(np.linalg.norm(q) - 1.0) > 1e-3:
        raise FormatError(path, f"{where} rotation: not a unit quaternion: {q.tolist()}")
    return SE3.from_quat_wxyz(q, t)


def read_nuscenes_lidar(path: str | os.PathLike) -> np.ndarray:
    """A LIDAR_TOP ``.pcd.bin``: (P,5) float32 ``x y z intensity ring`` in the lidar frame.

    Raises:
        FormatError: unreadable, empty, not a whole number of 20-byte records, or non-finite values.
    """
    return read_float32_records(path, LIDAR_FIELDS)


_MAX_TIME_S = 2**62 / 1e9  # int64 nanoseconds, with room for offsets


def _s_to_ns(path: Path, seconds: float, where: str) -> int:
    """nuScenes times are microseconds; the info JSON prints them as float seconds.

    Raises:
        FormatError: a time that does not fit int64 nanoseconds.
    """
    if not 0 <= float(seconds) < _MAX_TIME_S:
        raise FormatError(path, f"{where}: timestamp {seconds} s is outside 0..{_MAX_TIME_S:.3g} s")
    return int(round(float(seconds) * 1e6)) * 1000


def _us_to_ns(path: Path, value, where: str) -> int:
    """A v1.0 table's ``timestamp`` (integer microseconds) in nanoseconds.

    Raises:
        FormatError: not a number (null, a string, a bool) or a time that does not fit int64 nanoseconds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _MAX_TIME_S * 1e6:
        raise FormatError(path, f"{where}: timestamp {value!r} is not a time in microseconds in "
                                f"0..{_MAX_TIME_S * 1e6:.3g}")
    return int(value) * 1000


# ======================================================================================================================
# Importers
# ======================================================================================================================
def import_nuscenes(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                    scene: str | None = None, version: str | None = None):
    """Import nuScenes: a dataroot with v1.0 tables (one scene), or mmdetection3d's ``*.info.json``.

    Args:
        src: the dataroot (holding ``v1.0-*/``), an ``*.info.json`` file, or a folder holding one (directly or in
            ``derived/``); data files are looked up beside the JSON and in its parent folder.
        out: the ``NAME.drive`` folder.
        overwrite: replace an existing drive.
        scene: scene name (``scene-0061``) for a dataroot; may be omitted when it has one scene.
        version: table folder (``v1.0-mini``); may be omitted when the dataroot has one.

    Raises:
        FormatError: missing or malformed tables or files (naming the file and field); SchemaError: ``out`` exists.
    """
    from sensorlabel.errors import SchemaError

    src, out = Path(src), Path(out)
    if out.exists() and not overwrite:
        raise SchemaError(out, "already exists; pass overwrite=True to replace it")
    if src.is_file():
        return _import_info_json(src, out, overwrite)
    versions = sorted(p for p in src.glob("v1.0-*") if p.is_dir()) if src.is_dir() else []
    if versions:
        if version is not None:
            versions = [p for p in versions if p.name == version]
        if len(versions) != 1:
            raise FormatError(src, f"pass version=...: table folders {[p.name for p in versions]}")
        return _import_tables(src, versions[0], out, overwrite, scene)
    infos = sorted(src.glob("*.info.json")) + sorted(src.glob("derived/*.info.json")) if src.is_dir() else []
    if len(infos) == 1:
        return _import_info_json(infos[0], out, overwrite)
    raise FormatError(src, f"not a nuScenes dataroot (no v1.0-*/) and not one *.info.json ({len(infos)} found)")


def _find_data(json_path: Path, name: str, where: str) -> Path:
    for folder in (json_path.parent, json_path.parent.parent):
        if (folder / name).is_file():
            return folder / name
    raise FormatError(json_path, f"{where}: file {name!r} not found beside the JSON or in its parent folder")


def _import_info_json(path: Path, out: Path, overwrite: bool):
    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.formats import progress
    from sensorlabel.geometry.camera import PinholeCamera

    info = read_json(path)
    samples = _field(path, info, "data_list", "info JSON")
    categories = _field(path, _field(path, info, "metainfo", "info JSON"), "categories", "metainfo")
    if not isinstance(samples, list) or not samples or not isinstance(categories, dict):
        raise FormatError(path, "data_list must be a non-empty list and metainfo.categories a dict")
    names = {int(v): str(k) for k, v in categories.items() if isinstance(v, int) and 0 <= v < 2**31}
    first = samples[0]
    lidar_info = _field(path, first, "lidar_points", "data_list[0]")
    sensors = {"LIDAR_TOP": SensorCalibration(
        "LIDAR_TOP", "lidar", _rigid(path, _field(path, lidar_info, "lidar2ego", "lidar_points"), "lidar2ego"))}
    images = _field(path, first, "images", "data_list[0]")
    if not isinstance(images, dict):
        raise FormatError(path, "data_list[0].images is not a dict")
    for cam, cam_info in images.items():
        where = f"images.{cam}"
        K = _numbers(path, _field(path, cam_info, "cam2img", where), (3, 3), f"{where}.cam2img")
        img_path = _find_data(path, str(_field(path, cam_info, "img_path", where)), where)
        width, height = image_file_size(img_path)
        sensors[cam] = SensorCalibration(cam, "camera", _rigid(path, _field(path, cam_info, "cam2ego", where),
                                                               f"{where}.cam2ego"),
                                         PinholeCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height))
    lidar_ts, tokens, pose_list, boxes_per_frame = [], [], [], []
    for i, sample in enumerate(samples):
        where = f"data_list[{i}]"
        lidar_ts.append(_s_to_ns(path, _numbers(path, _field(path, sample, "timestamp", where), (), f"{where}.timestamp"),
                                     f"{where}.timestamp"))
        tokens.append(str(_field(path, sample, "token", where)))
        pose_list.append(_rigid(path, _field(path, sample, "ego2global", where), f"{where}.ego2global"))
        boxes_per_frame.append(_info_boxes(path, sample, names, sensors["LIDAR_TOP"].ego_SE3_sensor, where))
    order = np.argsort(lidar_ts, kind="stable")
    metadata = {"nuscenes": {"source": "mmdet3d-info", "sample_tokens": [tokens[i] for i in order],
                             "version": str(info["metainfo"].get("version", ""))}}
    bin_paths = []
    for i in order:
        where = f"data_list[{i}]"
        bin_paths.append(_find_data(path, str(_field(path, samples[i]["lidar_points"], "lidar_path", where)), where))
    camera_records = {}
    for cam in images:
        cam_records = []
        for i in order:
            cam_info = _field(path, samples[i]["images"], cam, f"data_list[{i}].images")
            t = _s_to_ns(path, _numbers(path, _field(path, cam_info, "timestamp", cam), (), f"{cam}.timestamp"),
                         f"{cam}.timestamp")
            cam_records.append((t, _find_data(path, str(cam_info["img_path"]), cam)))
        camera_records[cam] = sorted(cam_records)
    name = out.name.removesuffix(".drive")
    with Drive.create(out, name=name, source_format="nuscenes", sensors=sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        sweeps = read_ahead(read_nuscenes_lidar, bin_paths)
        for i, points in progress(zip(order, sweeps), total=len(order), desc="LIDAR_TOP"):
            writer.append_lidar_sweep("LIDAR_TOP", points, LIDAR_FIELDS, lidar_ts[i])
        for cam, cam_records in camera_records.items():
            encoded = read_ahead(read_nonempty_bytes, [img for _, img in cam_records])
            for (t, _), data in progress(zip(cam_records, encoded), total=len(cam_records), desc=cam):
                writer.append_camera_image(cam, data, t)
        writer.write_poses(np.asarray(lidar_ts, np.int64)[order], SE3.stack([pose_list[i] for i in order]))
        drive = writer.finalize(np.asarray(lidar_ts, np.int64)[order])
    frames = np.concatenate([np.full(len(boxes_per_frame[i]), f, np.int64) for f, i in enumerate(order)])
    boxes = Boxes.concatenate([boxes_per_frame[i] for i in order])
    if len(boxes):
        drive.labels.put_boxes(frames, boxes, "imported", description="import nuScenes (mmdetection3d info)")
    return drive


def _info_boxes(path: Path, sample: dict, names: dict[int, str], ego_SE3_lidar: SE3, where: str) -> Boxes:
    """The sample's ``instances`` as boxes in the ego frame (bottom centre -> geometric centre, once)."""
    instances = sample.get("instances", [])
    if not isinstance(instances, list):
        raise FormatError(path, f"{where}.instances is not a list")
    if not instances:
        return Boxes.empty()
    box = np.stack([_numbers(path, _field(path, inst, "bbox_3d", f"{where}.instances[{k}]"), (7,),
                             f"{where}.instances[{k}].bbox_3d") for k, inst in enumerate(instances)])
    label_index = [inst.get("bbox_label_3d", inst.get("bbox_label")) for inst in instances]
    # -1: a nuScenes category outside mmdetection3d's 10 classes (e.g. animal); kept as "unknown"
    names = {**names, -1: "unknown"}
    unknown = [k for k, v in enumerate(label_index) if v not in names]
    if unknown:
        raise FormatError(path, f"{where}.instances[{unknown[0]}]: bbox_label_3d {label_index[unknown[0]]!r} is not "
                                f"in metainfo.categories")
    if (box[:, 3:6] <= 0).any():
        k = int(np.flatnonzero((box[:, 3:6] <= 0).any(axis=1))[0])
        raise FormatError(path, f"{where}.instances[{k}].bbox_3d: non-positive size {box[k, 3:6].tolist()}")
    center = box[:, :3] + np.stack([np.zeros(len(box)), np.zeros(len(box)), box[:, 5] / 2.0], axis=1)
    boxes_lidar = Boxes.from_yaw(center, box[:, 3:6], box[:, 6], label=np.array([names[v] for v in label_index]))
    return boxes_lidar.transform(ego_SE3_lidar)


def _index(path: Path, records, what: str) -> dict[str, dict]:
    if not isinstance(records, list):
        raise FormatError(path, f"{what}: expected a list of records")
    out = {}
    for k, r in enumerate(records):
        out[str(_field(path, r, "token", f"{what}[{k}]"))] = r
    return out


def _lookup(path: Path, table: dict, token, what: str) -> dict:
    if token not in table:
        raise FormatError(path, f"{what} token {token!r} not found")
    return table[token]


def _sample_data_ns(path: Path, sd: dict) -> int:
    where = f"sample_data {sd.get('token')}"
    return _us_to_ns(path, _field(path, sd, "timestamp", where), where)


def _import_tables(root: Path, tables_dir: Path, out: Path, overwrite: bool, scene_name: str | None):
    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.formats import progress
    from sensorlabel.geometry.camera import PinholeCamera

    t = {name: _index(tables_dir / f"{name}.json", read_json(tables_dir / f"{name}.json"), name)
         for name in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor", "sample_annotation",
                      "instance", "category", "log")}
    p = {name: tables_dir / f"{name}.json" for name in t}
    scenes = list(t["scene"].values())
    if scene_name is not None:
        scenes = [s for s in scenes if s.get("name") == scene_name]
    if len(scenes) != 1:
        raise FormatError(p["scene"], f"pass scene=...: scenes {[s.get('name') for s in t['scene'].values()][:20]}")
    scene = scenes[0]
    # keyframe samples of the scene, in time order
    samples = [s for s in t["sample"].values() if s.get("scene_token") == scene["token"]]
    samples.sort(key=lambda s: _us_to_ns(p["sample"], _field(p["sample"], s, "timestamp", "sample"),
                                         f"sample {s.get('token')}"))
    if not samples:
        raise FormatError(p["sample"], f"scene {scene.get('name')!r} has no samples")
    sample_index = {s["token"]: i for i, s in enumerate(samples)}
    keyframe_data: dict[str, dict[str, dict]] = {}  # channel -> sample token -> sample_data
    for sd in t["sample_data"].values():
        if sd.get("sample_token") in sample_index and sd.get("is_key_frame", False):
            cs = _lookup(p["calibrated_sensor"], t["calibrated_sensor"], sd.get("calibrated_sensor_token"), "calibrated_sensor")
            sensor = _lookup(p["sensor"], t["sensor"], cs.get("sensor_token"), "sensor")
            if sensor.get("modality") in ("lidar", "camera"):
                keyframe_data.setdefault(str(sensor["channel"]), {})[sd["sample_token"]] = sd
    lidar = "LIDAR_TOP" if "LIDAR_TOP" in keyframe_data else next(
        (c for c, d in keyframe_data.items() if "LIDAR" in c), None)
    if lidar is None:
        raise FormatError(p["sample_data"], f"scene {scene.get('name')!r} has no keyframe lidar sample_data")
    sensors = {}
    for channel in [lidar] + sorted(c for c in keyframe_data if c != lidar and "LIDAR" not in c):
        sd = next(iter(keyframe_data[channel].values()))
        cs = t["calibrated_sensor"][sd["calibrated_sensor_token"]]
        ego_SE3_sensor = _pose(p["calibrated_sensor"], cs, f"calibrated_sensor {cs['token']}")
        if channel == lidar:
            sensors[channel] = SensorCalibration(channel, "lidar", ego_SE3_sensor)
            continue
        K = _numbers(p["calibrated_sensor"], cs.get("camera_intrinsic"), (3, 3), f"calibrated_sensor {cs['token']} camera_intrinsic")
        width, height = int(sd.get("width", 0)), int(sd.get("height", 0))
        if width <= 0 or height <= 0:
            width, height = image_file_size(root / str(sd.get("filename", "")))
        sensors[channel] = SensorCalibration(channel, "camera", ego_SE3_sensor,
                                             PinholeCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height))
    missing = [s["token"] for s in samples if s["token"] not in keyframe_data[lidar]]
    if missing:
        raise FormatError(p["sample_data"], f"samples without a keyframe {lidar}: {missing[:5]}")
    lidar_sd = [keyframe_data[lidar][s["token"]] for s in samples]
    frame_ts = np.array([_sample_data_ns(p["sample_data"], sd) for sd in lidar_sd], dtype=np.int64)
    used = [sd for channel in sensors for sd in keyframe_data[channel].values()]
    poses = {}
    for sd in used:
        ep = _lookup(p["ego_pose"], t["ego_pose"], sd.get("ego_pose_token"), "ego_pose")
        where = f"ego_pose {ep['token']}"
        poses[_us_to_ns(p["ego_pose"], _field(p["ego_pose"], ep, "timestamp", where), where)] = _pose(
            p["ego_pose"], ep, where)
    pose_ts = np.array(sorted(poses), dtype=np.int64)
    # annotations (validated before anything is written): global -> ego at the lidar keyframe
    anns = [a for a in t["sample_annotation"].values() if a.get("sample_token") in sample_index]
    if anns:
        pa = p["sample_annotation"]
        frames = np.array([sample_index[a["sample_token"]] for a in anns], dtype=np.int64)
        center = np.stack([_numbers(pa, a.get("translation"), (3,), f"sample_annotation {a['token']} translation") for a in anns])
        wlh = np.stack([_numbers(pa, a.get("size"), (3,), f"sample_annotation {a['token']} size") for a in anns])
        quat = np.stack([_numbers(pa, a.get("rotation"), (4,), f"sample_annotation {a['token']} rotation") for a in anns])
        bad = (wlh <= 0).any(axis=1) | (np.linalg.norm(quat, axis=1) < 1e-9)
        if bad.any():
            a = anns[int(np.flatnonzero(bad)[0])]
            raise FormatError(pa, f"sample_annotation {a['token']}: non-positive size or zero rotation: {a.get('size')} {a.get('rotation')}")
        instance_tokens = [str(a.get("instance_token")) for a in anns]
        unique, inverse = np.unique(instance_tokens, return_inverse=True)
        track_labels = []
        for token in unique:
            inst = _lookup(p["instance"], t["instance"], token, "instance")
            category = _lookup(p["category"], t["category"], inst.get("category_token"), "category")
            track_labels.append(str(category.get("name")))
    # camera images in time order (each channel's timestamps validated before anything is written)
    camera_records = {channel: sorted(((_sample_data_ns(p["sample_data"], sd), root / str(sd.get("filename")))
                                       for sd in keyframe_data[channel].values()), key=lambda r: r[0])
                      for channel in sensors if channel != lidar}
    metadata = {"nuscenes": {"source": "tables", "version": tables_dir.name, "scene": scene.get("name"),
                             "scene_token": scene["token"], "sample_tokens": [s["token"] for s in samples]}}
    with Drive.create(out, name=str(scene.get("name", out.stem)), source_format="nuscenes", sensors=sensors,
                      overwrite=overwrite, metadata=metadata) as writer:
        sweep_paths = [root / str(sd.get("filename")) for sd in lidar_sd]
        for ts, points in progress(zip(frame_ts, read_ahead(read_nuscenes_lidar, sweep_paths)), total=len(lidar_sd),
                                   desc=lidar):
            writer.append_lidar_sweep(lidar, points, LIDAR_FIELDS, int(ts))
        for channel, records in camera_records.items():
            encoded = read_ahead(read_nonempty_bytes, [img for _, img in records])
            for (ts, _), data in progress(zip(records, encoded), total=len(records), desc=channel):
                writer.append_camera_image(channel, data, ts)
        writer.write_poses(pose_ts, SE3.stack([poses[k] for k in pose_ts]))
        drive = writer.finalize(frame_ts)
    if anns:
        track_ids = drive.labels.add_tracks(track_labels, [{"nuscenes_instance_token": str(token)} for token in unique],
                                            description="import nuScenes instances")
        boxes_global = Boxes(center, wlh[:, [1, 0, 2]], quat, track_id=track_ids[inverse.reshape(-1)])
        ego_SE3_global = SE3.from_matrix(np.stack([poses[ts].inverse().as_matrix() for ts in frame_ts[frames]]))
        boxes_ego = boxes_global.transform(ego_SE3_global)
        drive.labels.put_boxes(frames, boxes_ego, "imported", description="import nuScenes annotations")
    return drive


# ======================================================================================================================
# Exporters
# ======================================================================================================================
def _global_boxes(drive, sources) -> tuple[np.ndarray, Boxes]:
    """(frame (N,), boxes in the global frame) of the drive's labels."""
    records = drive.labels.query(sources=sources)
    if len(records) == 0:
        return records.frame, Boxes.empty()
    world_SE3_ego = drive.world_SE3_ego(drive.frame_timestamps_ns[records.frame])
    return records.frame, records.boxes.transform(world_SE3_ego)


def track_velocities(frame: np.ndarray, track_id: np.ndarray, center_m: np.ndarray, timestamps_ns: np.ndarray) -> np.ndarray:
    """(N,2) xy velocity (m/s) of every box from its track's centres at the neighbouring frames.

    Central difference between the previous and next box of the same track; one-sided at the ends; zero for a
    track with one box. Vectorised over all boxes.

    Args:
        frame: (N,) frame index; track_id: (N,); center_m: (N,3); timestamps_ns: (F,) frame times.
    """
    n = len(frame)
    velocity = np.zeros((n, 2))
    if n == 0:
        return velocity
    order = np.lexsort((frame, track_id))
    tid, t = track_id[order], timestamps_ns[frame[order]].astype(np.float64) * 1e-9
    c = center_m[order, :2]
    same_prev = np.r_[False, tid[1:] == tid[:-1]]
    same_next = np.r_[tid[:-1] == tid[1:], False]
    idx = np.arange(n)
    prev = np.where(same_prev, idx - 1, idx)
    nxt = np.where(same_next, np.minimum(idx + 1, n - 1), idx)
    dt = t[nxt] - t[prev]
    ok = dt > 0
    v = np.zeros((n, 2))
    v[ok] = (c[nxt[ok]] - c[prev[ok]]) / dt[ok, None]
    velocity[order] = v
    return velocity


def _attribute(name: str, speed_m_s: float) -> str:
    moving = speed_m_s > _MOVING_M_S
    if name in ("car", "bus", "truck", "trailer", "construction_vehicle"):
        return "vehicle.moving" if moving else "vehicle.parked"
    if name == "pedestrian":
        return "pedestrian.moving" if moving else "pedestrian.standing"
    if name in ("bicycle", "motorcycle"):
        return "cycle.with_rider" if moving else "cycle.without_rider"
    return ""


def _submission(drive, sources, tracking: bool) -> dict:
    meta = drive.metadata.get("nuscenes") or {}
    tokens = meta.get("sample_tokens") or [f"{drive.name}-{f:06d}" for f in range(drive.num_frames)]
    if len(tokens) != drive.num_frames:
        raise FormatError(drive.path, f"metadata nuscenes.sample_tokens has {len(tokens)} entries for {drive.num_frames} frames")
    frame, boxes = _global_boxes(drive, sources)
    velocity = track_velocities(frame, boxes.track_id, boxes.center_m, drive.frame_timestamps_ns)
    results: dict[str, list] = {str(tok): [] for tok in tokens}
    allowed = TRACKING_CLASSES if tracking else DETECTION_CLASSES
    dropped: dict[str, int] = {}
    wlh = boxes.lwh_m[:, [1, 0, 2]]
    for i in range(len(boxes)):
        name = detection_name(str(boxes.label[i]))
        if name not in allowed:
            dropped[str(boxes.label[i])] = dropped.get(str(boxes.label[i]), 0) + 1
            continue
        entry = {"sample_token": str(tokens[frame[i]]), "translation": boxes.center_m[i].tolist(),
                 "size": wlh[i].tolist(), "rotation": boxes.quat_wxyz[i].tolist(), "velocity": velocity[i].tolist()}
        if tracking:
            entry.update(tracking_id=str(int(boxes.track_id[i])), tracking_name=name,
                         tracking_score=float(boxes.score[i]))
        else:
            entry.update(detection_name=name, detection_score=float(boxes.score[i]),
                         attribute_name=_attribute(name, float(np.hypot(*velocity[i]))))
        results[str(tokens[frame[i]])].append(entry)
    if dropped:
        logger.info("nuScenes export: classes outside the %s classes left out: %s",
                    "tracking" if tracking else "detection", dropped)
    modality = {"use_camera": False, "use_lidar": bool(drive.lidar_names), "use_radar": False, "use_map": False,
                "use_external": False}
    return {"meta": modality, "results": results}


def _write_json(path: Path, data: dict) -> Path:
    return atomic_write_bytes(path, json.dumps(data).encode("utf-8"))


def export_nuscenes(drive, out_dir: str | os.PathLike, *, sources=None) -> list[Path]:
    """Write a nuScenes detection submission ``results_nusc.json`` (global frame; see the module docstring).

    Returns:
        [the JSON file]. Boxes of classes outside the 10 detection classes are left out (logged).
    """
    return [_write_json(Path(out_dir) / "results_nusc.json", _submission(drive, sources, tracking=False))]


def export_nuscenes_tracking(drive, out_dir: str | os.PathLike, *, sources=None) -> list[Path]:
    """Write a nuScenes tracking submission ``results_tracking.json`` (7 tracking classes, ``tracking_id``)."""
    return [_write_json(Path(out_dir) / "results_tracking.json", _submission(drive, sources, tracking=True))]


def read_nuscenes_submission(path: str | os.PathLike) -> dict[str, Boxes]:
    """Boxes of a detection or tracking submission, per sample token, in the global frame.

    ``label`` is the detection/tracking name, ``score`` the detection/tracking score, ``track_id`` the
    ``tracking_id`` when numeric (else -1).

    Raises:
        FormatError: not JSON, no ``results`` dict, or an entry with missing or malformed fields.
    """
    path = Path(path)
    data = read_json(path)
    results = _field(path, data, "results", "submission")
    if not isinstance(results, dict):
        raise FormatError(path, "results is not a dict of sample tokens")
    out = {}
    for token, entries in results.items():
        if not isinstance(entries, list):
            raise FormatError(path, f"results[{token!r}] is not a list")
        if not entries:
            out[token] = Boxes.empty()
            continue
        where = f"results[{token!r}]"
        center = np.stack([_numbers(path, _field(path, e, "translation", where), (3,), f"{where} translation") for e in entries])
        wlh = np.stack([_numbers(path, _field(path, e, "size", where), (3,), f"{where} size") for e in entries])
        quat = np.stack([_numbers(path, _field(path, e, "rotation", where), (4,), f"{where} rotation") for e in entries])
        if (wlh <= 0).any() or (np.linalg.norm(quat, axis=1) < 1e-9).any():
            raise FormatError(path, f"{where}: non-positive size or zero rotation")
        names = [e.get("tracking_name", e.get("detection_name", "")) for e in entries]
        scores = [e.get("tracking_score", e.get("detection_score", 1.0)) for e in entries]
        ids = [e.get("tracking_id", "-1") for e in entries]
        track = np.array([int(i) if str(i).lstrip("-").isdigit() else -1 for i in ids], dtype=np.int64)
        score = _numbers(path, scores, (len(entries),), f"{where} score")
        out[token] = Boxes(center, wlh[:, [1, 0, 2]], quat, track, np.asarray(names, dtype=str), score)
    return out
