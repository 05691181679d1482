"""Fuzz targets of every format reader: tiny valid seed files, byte-level mutations, and the outcome rule.

Shared by ``tests/formats/test_fuzz.py`` (hypothesis, 1,000 cases per reader) and ``benchmarks/fuzz_formats.py``
(many more cases). The rule: a reader given any bytes either succeeds with data that passes the target's check, or
raises :class:`~sensorlabel.errors.FormatError` whose message names the file. Any other exception is a bug.
"""

from __future__ import annotations

import functools
import json
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensorlabel.errors import FormatError

#: Byte strings that parsers tend to choke on, inserted or written over the seed.
TOKENS = [b"nan", b"inf", b"-inf", b"-1", b"0", b"1e999", b"-1e308", b"99999999999999999999", b"\x00", b"\xff",
          b"\n", b" ", b"#", b"{", b"}", b"[", b"]", b'"', b",", b":", b"null", b"true", b"1.5", b"DATA ascii\n",
          b"POINTS 1000000000\n", b"COUNT 0", b"ply", b"end_header\n", b"\r\n", b"\xff\xff\xff\x7f", b"\x00" * 8]
KINDS = ("truncate", "flip", "set", "insert", "delete", "token", "overwrite", "empty")


def apply_ops(seed: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    """Apply mutations ``(kind, position, argument, garbage)`` in order; positions wrap around the current length."""
    data = bytearray(seed)
    for kind, pos, arg, garbage in ops:
        n = len(data)
        at = pos % (n + 1)
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and n:
            data[at % n] ^= 1 << (arg % 8)
        elif kind == "set" and n:
            data[at % n] = arg % 256
        elif kind == "insert":
            data[at:at] = garbage
        elif kind == "delete":
            del data[at:at + 1 + arg % 64]
        elif kind == "token":
            data[at:at] = TOKENS[arg % len(TOKENS)]
        elif kind == "overwrite":
            token = TOKENS[arg % len(TOKENS)]
            data[at:at + len(token)] = token
        elif kind == "empty":
            data.clear()
    return bytes(data)


def random_ops(rng: np.random.Generator) -> list[tuple[str, int, int, bytes]]:
    """1-4 random mutations (the benchmark's generator; hypothesis draws the same shape in the tests)."""
    ops = []
    for _ in range(int(rng.integers(1, 5))):
        kind = KINDS[int(rng.integers(0, len(KINDS) - 1))] if rng.random() > 0.01 else "empty"
        garbage = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        ops.append((kind, int(rng.integers(0, 1 << 20)), int(rng.integers(0, 256)), garbage))
    return ops


@dataclass(frozen=True)
class FuzzTarget:
    """One reader: ``read(path)`` on a file called ``filename``, seeds to mutate, and ``check`` for successes.

    ``setup(folder)`` writes the files a reader finds beside its input (data files an index points to); with it the
    FormatError may name one of those files instead of the mutated one (``names_input`` False).
    """

    name: str
    filename: str
    seeds: Callable[[], list[bytes]]
    read: Callable[[Path], object]
    check: Callable[[object], None]
    setup: Callable[[Path], None] | None = None
    names_input: bool = True


def run_case(target: FuzzTarget, data: bytes, path: Path) -> str:
    """Write ``data`` to ``path``, read it; ``"ok"`` or ``"format_error"``, anything else raises.

    Raises:
        AssertionError: a FormatError that does not name the file, or a success whose data fails the check.
        Exception: whatever else the reader raised (a bug).
    """
    path.write_bytes(data)
    try:
        result = target.read(path)
    except FormatError as exc:
        named = str(path) if target.names_input else str(path.parent)
        if named not in str(exc):
            raise AssertionError(f"{target.name}: FormatError does not name {named}: {exc}") from None
        return "format_error"
    target.check(result)
    return "ok"


# ----------------------------------------------------------------------------------------------------------------
# seeds
# ----------------------------------------------------------------------------------------------------------------
def _pcd_seeds() -> list[bytes]:
    xyz = np.array([[1, 2, 3], [4, 5, 6], [-1, 0.5, 2], [0, 0, 0]], dtype="<f4")
    ascii_pcd = (b"# .PCD v0.7 # comment\nVERSION 0.7\nFIELDS x y z intensity rgb\n# inside the header\n"
                 b"SIZE 4 4 4 1 4\nTYPE F F F U F\nCOUNT 1 1 1 1 3\nWIDTH 4\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
                 b"POINTS 4\nDATA ascii\n"
                 + b"".join(b"%g %g %g %d 0.1 0.2 0.3\n" % (*row, i) for i, row in enumerate(xyz.tolist())))
    dtype = np.dtype({"names": ["x", "y", "z", "intensity", "ring"], "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
                      "offsets": [0, 4, 8, 16, 20], "itemsize": 22})
    records = np.zeros(4, dtype)
    records["x"], records["y"], records["z"], records["intensity"], records["ring"] = *xyz.T, [1, 2, 3, 4], [0, 1, 2, 3]
    binary_pcd = (b"VERSION 0.7\nFIELDS x y z _ intensity _ ring\nSIZE 4 4 4 1 4 1 2\nTYPE F F F U F U U\n"
                  b"COUNT 1 1 1 4 1 0 1\nWIDTH 2\nHEIGHT 2\nPOINTS 4\nDATA binary\n" + records.tobytes() + b"\x00" * 8)
    soa = xyz.T.copy()
    soa[2] = 0.0
    raw = soa.tobytes()  # 48 bytes: x (16), y (16), z (16 zero bytes)
    # LZF: a 32-byte literal, a 1-byte literal, then a 15-byte back reference at distance 1 (7 + 6 extra, + 2).
    block = bytes([31]) + raw[:32] + bytes([0, 0]) + bytes([0xE0, 6, 0])
    compressed_pcd = (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 4\nHEIGHT 1\nPOINTS 4\n"
                      b"DATA binary_compressed\n" + struct.pack("<II", len(block), len(raw)) + block)
    return [ascii_pcd, binary_pcd, compressed_pcd]


def _ply_seeds() -> list[bytes]:
    xyz = np.array([[1, 2, 3], [4, 5, 6], [-1, 0.5, 2]], dtype="<f4")
    head = "ply\nformat {}\ncomment made for fuzzing\nelement vertex 3\nproperty float x\nproperty float y\n" \
           "property float z\nproperty uchar intensity\nelement face 1\nproperty list uchar int vertex_indices\n" \
           "end_header\n"
    ascii_ply = head.format("ascii 1.0").encode() + b"".join(b"%g %g %g 7\n" % tuple(r) for r in xyz.tolist()) \
        + b"3 0 1 2\n"
    records = np.zeros(3, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "u1")])
    records["x"], records["y"], records["z"], records["intensity"] = *xyz.T, 7
    binary_ply = head.format("binary_little_endian 1.0").encode() + records.tobytes() + b"\x03" + \
        np.array([0, 1, 2], "<i4").tobytes()
    return [ascii_ply, binary_ply]


def _sustech_pcd_seed() -> list[bytes]:
    records = np.zeros(3, dtype=np.dtype({
        "names": ["x", "y", "z", "intensity", "timestamp", "ring"],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<f8", "<u2"], "offsets": [0, 4, 8, 16, 24, 32], "itemsize": 48}))
    records["x"], records["y"], records["z"] = [1, 2, 3], [4, 5, 6], [0.5, 0.5, 0.5]
    records["intensity"], records["timestamp"], records["ring"] = [0, 100, 255], [1820.80, 1820.85, 1820.89], [0, 5, 39]
    header = (b"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
              b"FIELDS x y z _ intensity _ timestamp _ ring _\nSIZE 4 4 4 1 4 1 8 1 2 1\nTYPE F F F U F U F U U U\n"
              b"COUNT 1 1 1 4 1 0 1 6 1 12\nWIDTH 3\nHEIGHT 1\n"
              b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 3\nDATA binary\n")
    return [header + records.tobytes() + b"\x00" * 16]


def _sustech_label_seed() -> list[bytes]:
    objects = [
        {"psr": {"position": {"x": 6.1, "y": -44.8, "z": 1.1}, "scale": {"x": 4.5, "y": 1.7, "z": 1.7},
                 "rotation": {"x": -0.05, "y": 0.005, "z": 1.43}}, "obj_type": "Car", "obj_id": "4"},
        {"psr": {"position": {"x": 11.3, "y": -38.0, "z": 0.66}, "scale": {"x": 2.0, "y": 0.66, "z": 1.7},
                 "rotation": {"x": 0, "y": 0, "z": 1.68}}, "obj_type": "Rider", "obj_id": 11},
    ]
    return [json.dumps(objects).encode()]


def _sustech_calib_seed() -> list[bytes]:
    extrinsic = [0.0, -1.0, 0.0, 0.1, 0.0, 0.0, -1.0, 0.2, 1.0, 0.0, 0.0, -0.3, 0, 0, 0, 1]
    intrinsic = [1210.06, 0.0, 1022.43, 0.0, 1205.85, 792.54, 0.0, 0.0, 1.0]
    return [json.dumps({"extrinsic": extrinsic, "intrinsic": intrinsic}).encode()]


@functools.lru_cache(maxsize=1)
def tiny_drive_folder() -> Path:
    """A tiny drive (1 lidar, 1 camera, poses, 2 tracks) in a temporary folder, made once per process."""
    import cv2

    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.geometry import SE3, Boxes
    from sensorlabel.geometry.camera import PinholeCamera

    folder = Path(tempfile.mkdtemp(prefix="sensorlabel-fuzz-"))
    sensors = {
        "lidar": SensorCalibration("lidar", "lidar", SE3.from_yaw(0.1, [1.0, 0.0, 1.8])),
        "cam": SensorCalibration("cam", "camera", SE3.from_quat_wxyz([0.5, -0.5, 0.5, -0.5], [1.5, 0.0, 1.5]),
                                 PinholeCamera(50.0, 50.0, 4.0, 4.0, 8, 8, np.array([0.1, -0.05, 0.0, 0.0, 0.0]))),
    }
    writer = Drive.create(folder / "tiny.drive", name="tiny", source_format="sim", sensors=sensors)
    t0 = 1_700_000_000_000_000_000
    writer.write_poses(np.array([t0, t0 + 200_000_000]), SE3.from_yaw(np.array([0.0, 0.1]), np.array([[0, 0, 0],
                                                                                                      [2, 0, 0.0]])))
    rng = np.random.default_rng(0)
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    for i in range(2):
        points = rng.normal(size=(5, 6)).astype(np.float32)
        points[:, 4], points[:, 5] = [0, 1, 2, 3, 4], np.linspace(0, 0.09, 5)
        writer.append_lidar_sweep("lidar", points, ("x", "y", "z", "intensity", "ring", "t_offset_s"),
                                  t0 + i * 100_000_000)
        writer.append_camera_image("cam", jpeg.tobytes(), t0 + i * 100_000_000 + 30_000_000)
    drive = writer.finalize()
    boxes = Boxes.from_yaw([[5, 1, 0.8], [6, 1.1, 0.8]], [[4, 2, 1.6]] * 2, [0.2, 0.25], [-1, -1], ["Car", "Car"])
    result = drive.labels.put_boxes([0, 1], boxes, "imported")
    drive.labels.put_boxes([1], Boxes.from_yaw([[9, -2, 0.9]], [[0.8, 0.6, 1.7]], [1.0], [-1], ["Pedestrian"]),
                           "human")
    assert (result.track_ids >= 0).all()
    return folder / "tiny.drive"


def _mcap_seeds() -> list[bytes]:
    from sensorlabel.drive import Drive
    from sensorlabel.formats.mcap import write_mcap_from_drive

    drive = Drive.open(tiny_drive_folder())
    folder = tiny_drive_folder().parent
    plain = write_mcap_from_drive(drive, folder / "plain.mcap", compression="none", crcs=False)
    zstd = write_mcap_from_drive(drive, folder / "zstd.mcap", image_format="raw")
    return [plain.read_bytes(), zstd.read_bytes()]


def _openlabel_seed() -> list[bytes]:
    from sensorlabel.drive import Drive
    from sensorlabel.formats.openlabel import openlabel_document

    return [json.dumps(openlabel_document(Drive.open(tiny_drive_folder()))).encode()]


def _kitti_calib_seed() -> list[bytes]:
    p = "P{}: 721.5 0 609.5 {} 0 721.5 172.8 0 0 0 1 0"
    lines = [p.format(i, -387.5 * (i % 2)) for i in range(4)]
    lines += ["R0_rect: 0.9999239 0.00983776 -0.007445048 -0.009869795 0.9999421 -0.004278459 0.007402527 "
              "0.004351614 0.9999631",
              "Tr_velo_to_cam: 0 -1 0 -0.0040 0 0 -1 -0.0763 1 0 0 -0.2718",
              "Tr_imu_to_velo: 1 0 0 -0.81 0 1 0 0.32 0 0 1 -0.80"]
    return [("\n".join(lines) + "\n").encode()]


def _kitti_tracking_seed() -> list[bytes]:
    return [b"0 0 Car 0 0 -1.793451 296.744956 161.752147 455.226042 292.372804 2.000000 1.823255 4.433886 "
            b"-4.552284 1.858523 13.410495 -2.115488\n"
            b"0 -1 DontCare -1 -1 -10.000000 219.310000 188.490000 245.500000 218.560000 -1000.000000 -1000.000000 "
            b"-1000.000000 -10.000000 -1.000000 -1.000000 -1.000000\n"
            b"1 0 Car 0 0 -1.796862 294.898777 156.024256 452.199718 284.621269 2.000000 1.823255 4.433886 "
            b"-4.650955 1.766774 13.581085 -2.121565\n"]


def _kitti_object_seed() -> list[bytes]:
    return [b"Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
            b"Pedestrian 0.00 0 0.21 423.17 173.67 433.17 224.03 1.60 0.38 0.30 -5.87 1.63 23.11 -0.03\n"
            b"DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n"]


def _feather(columns: dict[str, np.ndarray]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.feather as feather

    sink = io.BytesIO()
    feather.write_feather(pa.table(columns), sink, compression="uncompressed")
    return sink.getvalue()


def _av2_lidar_seed() -> list[bytes]:
    return [_feather({"x": np.array([1, 2, 3], np.float16), "y": np.array([0, 1, 2], np.float16),
                      "z": np.array([0.5, 0.5, 1], np.float16), "intensity": np.array([3, 4, 5], np.uint8),
                      "laser_number": np.array([0, 1, 63], np.uint8), "offset_ns": np.array([0, 10, 20], np.int32)})]


def _av2_annotations_seed() -> list[bytes]:
    n = 2
    return [_feather({
        "timestamp_ns": np.array([315969904359876000] * n, np.int64), "track_uuid": np.array(["a", "b"]),
        "category": np.array(["REGULAR_VEHICLE", "PEDESTRIAN"]), "length_m": np.array([4.5, 0.6], np.float32),
        "width_m": np.array([1.8, 0.6], np.float32), "height_m": np.array([1.5, 1.7], np.float32),
        "qw": np.array([1.0, 0.7071], np.float32), "qx": np.zeros(n, np.float32), "qy": np.zeros(n, np.float32),
        "qz": np.array([0.0, 0.7071], np.float32), "tx_m": np.array([10, -3], np.float32),
        "ty_m": np.array([1, 2], np.float32), "tz_m": np.array([0.7, 0.9], np.float32),
        "num_interior_pts": np.array([100, 12], np.uint32)})]


def _nuscenes_lidar_seed() -> list[bytes]:
    return [np.arange(15, dtype="<f4").tobytes()]


def _nuscenes_submission_seed() -> list[bytes]:
    entry = {"sample_token": "tok0", "translation": [400.0, 1100.0, 1.0], "size": [1.9, 4.5, 1.6],
             "rotation": [0.9, 0.0, 0.0, 0.436], "velocity": [1.0, 0.0], "tracking_id": "3", "tracking_name": "car",
             "tracking_score": 0.8}
    return [json.dumps({"meta": {"use_lidar": True}, "results": {"tok0": [entry], "tok1": []}}).encode()]


def _nuscenes_info_seed() -> list[bytes]:
    identity = [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]
    cam2ego = [[0, 0, 1.0, 1.5], [-1.0, 0, 0, 0], [0, -1.0, 0, 1.5], [0, 0, 0, 1.0]]
    sample = {
        "sample_idx": 0, "token": "tok0", "timestamp": 1532402927.647951, "ego2global": identity,
        "lidar_points": {"num_pts_feats": 5, "lidar_path": "lidar.pcd.bin", "lidar2ego": identity},
        "images": {"CAM_FRONT": {"img_path": "cam.jpg", "cam2img": [[50.0, 0, 4.0], [0, 50.0, 4.0], [0, 0, 1.0]],
                                 "cam2ego": cam2ego, "timestamp": 1532402927.612460}},
        "instances": [{"bbox_3d": [5.0, 1.0, -1.5, 4.5, 1.9, 1.6, 0.3], "bbox_label_3d": 0},
                      {"bbox_3d": [8.0, -2.0, -1.6, 0.7, 0.6, 1.8, 1.2], "bbox_label_3d": 7}],
    }
    info = {"metainfo": {"categories": {"car": 0, "pedestrian": 7}, "version": "v1.0-mini"}, "data_list": [sample]}
    return [json.dumps(info).encode()]


def _nuscenes_info_files(folder: Path) -> None:
    import cv2

    np.arange(15, dtype="<f4").tofile(folder / "lidar.pcd.bin")
    cv2.imwrite(str(folder / "cam.jpg"), np.full((8, 8, 3), 128, np.uint8))


def _import_nuscenes_info(path: Path):
    from sensorlabel.formats.nuscenes import import_nuscenes

    return import_nuscenes(path, path.parent / "out.drive", overwrite=True)


# ----------------------------------------------------------------------------------------------------------------
# checks of successful reads
# ----------------------------------------------------------------------------------------------------------------
def _check_columns(cloud) -> None:
    for name, column in cloud.columns.items():
        assert column.shape[0] == cloud.num_points, (name, column.shape, cloud.num_points)


def _check_lidar(result) -> None:
    points, fields = result[0], result[1]
    assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == len(fields)
    assert tuple(fields[:4]) == ("x", "y", "z", "intensity")
    assert np.isfinite(points[:, :3]).all()


def _check_boxes(boxes) -> None:
    assert np.isfinite(boxes.center_m).all() and (boxes.lwh_m > 0).all()
    assert np.allclose(np.linalg.norm(boxes.quat_wxyz, axis=1), 1.0)


def _check_sustech_pcd(result) -> None:
    _check_lidar(result)
    points = result[0]
    assert np.isfinite(points).all()
    if "t_offset_s" in result[1] and len(points):
        offsets = points[:, result[1].index("t_offset_s")]
        assert offsets.min() == 0.0 and offsets.max() <= 1.0


def _check_sustech_calib(calib) -> None:
    assert calib.K[0, 0] > 0 and calib.K[1, 1] > 0
    assert np.allclose(calib.cam_SE3_lidar.rotation @ calib.cam_SE3_lidar.rotation.T, np.eye(3), atol=1e-5)


def _check_bag(result) -> None:
    contents, records = result
    for kind, name, stamp, payload in records:
        assert isinstance(stamp, int)
        if kind == "lidar":
            _check_lidar(payload)
        else:
            assert payload[:3] == b"\xff\xd8\xff" or payload[:8] == b"\x89PNG\r\n\x1a\n"
    for name in contents.camera_topics.values():
        assert name in contents.camera_info


def _check_openlabel(scene) -> None:
    _check_boxes(scene.boxes)
    assert len(scene.frame) == len(scene.boxes) == len(scene.object_uids)


def _check_kitti_labels(table) -> None:
    from sensorlabel.formats.kitti import kitti_to_boxes_rect

    _check_boxes(kitti_to_boxes_rect(table[~table.is_dont_care]))


def _check_kitti_calib(calib) -> None:
    transform = calib.rect_SE3_velo
    assert np.isfinite(transform.as_matrix()).all()
    assert np.isfinite(calib.P2).all()


def _check_av2_lidar(result) -> None:
    stamp, points = result
    assert points.shape[1] == 5 and np.isfinite(points).all()


def _check_av2_annotations(result) -> None:
    stamps, boxes, uuids = result
    assert len(stamps) == len(boxes) == len(uuids)
    _check_boxes(boxes)


def _check_submission(result) -> None:
    for boxes in result.values():
        _check_boxes(boxes)


def _check_nuscenes_lidar(points) -> None:
    assert points.ndim == 2 and points.shape[1] == 5 and np.isfinite(points).all()


def _check_drive(drive) -> None:
    records = drive.labels.query()
    _check_boxes(records.boxes)
    assert drive.num_frames >= 1
    drive.close()


def targets() -> list[FuzzTarget]:
    """Every reader under fuzz (imports are deferred so collecting the tests stays cheap)."""
    from sensorlabel.formats import av2, kitti, mcap, nuscenes, openlabel, pcd, sustech

    return [
        FuzzTarget("pcd", "cloud.pcd", _pcd_seeds, pcd.read_pcd, _check_columns),
        FuzzTarget("pcd-sweep", "sweep.pcd", _pcd_seeds, pcd.read_sweep, _check_lidar),
        FuzzTarget("ply", "cloud.ply", _ply_seeds, pcd.read_ply, _check_columns),
        FuzzTarget("bin", "000000.bin", lambda: [np.arange(16, dtype="<f4").tobytes()], pcd.read_bin, _check_columns),
        FuzzTarget("sustech-pcd", "000970.pcd", _sustech_pcd_seed, sustech.read_sustech_pcd, _check_sustech_pcd),
        FuzzTarget("sustech-label", "000970.json", _sustech_label_seed, sustech.read_sustech_labels,
                   lambda labels: _check_boxes(labels.boxes)),
        FuzzTarget("sustech-calib", "front.json", _sustech_calib_seed, sustech.read_sustech_calib,
                   _check_sustech_calib),
        FuzzTarget("mcap", "bag.mcap", _mcap_seeds, mcap.read_bag, _check_bag),
        FuzzTarget("openlabel", "scene.openlabel.json", _openlabel_seed, openlabel.read_openlabel, _check_openlabel),
        FuzzTarget("kitti-calib", "000000.txt", _kitti_calib_seed, kitti.read_kitti_calib, _check_kitti_calib),
        FuzzTarget("kitti-tracking-label", "0000.txt", _kitti_tracking_seed, kitti.read_kitti_tracking_labels,
                   _check_kitti_labels),
        FuzzTarget("kitti-object-label", "000000.txt", _kitti_object_seed, kitti.read_kitti_object_labels,
                   _check_kitti_labels),
        FuzzTarget("av2-lidar", "315969904359876000.feather", _av2_lidar_seed, av2.read_av2_lidar, _check_av2_lidar),
        FuzzTarget("av2-annotations", "annotations.feather", _av2_annotations_seed, av2.read_av2_annotations,
                   _check_av2_annotations),
        FuzzTarget("nuscenes-lidar", "LIDAR_TOP.pcd.bin", _nuscenes_lidar_seed, nuscenes.read_nuscenes_lidar,
                   _check_nuscenes_lidar),
        FuzzTarget("nuscenes-submission", "results_tracking.json", _nuscenes_submission_seed,
                   nuscenes.read_nuscenes_submission, _check_submission),
        FuzzTarget("nuscenes-info", "scene.info.json", _nuscenes_info_seed, _import_nuscenes_info, _check_drive,
                   setup=_nuscenes_info_files, names_input=False),
    ]
