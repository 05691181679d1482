"""ROS 2 bags in MCAP: ``sensor_msgs/PointCloud2``, ``Image``, ``CompressedImage``, ``CameraInfo`` and
``tf2_msgs/TFMessage`` (``/tf`` and ``/tf_static``), read and written with ``mcap`` + ``mcap-ros2-support``.

Import (:func:`import_mcap`)
    Two passes over the bag, each a sequential read that validates the CRCs (no trust in the index or summary):

    1. the topics and their types, the first ``CameraInfo`` of each camera, all TF messages, and the frame_id of the
       first message of every sensor topic;
    2. every point cloud and image, appended to the drive.

    Every ``PointCloud2`` topic is a lidar and every ``Image``/``CompressedImage`` topic a camera (options
    ``lidar_topics``/``camera_topics`` choose). A sensor is named after its topic without the usual suffixes
    (``/cam_front/image/compressed`` -> ``cam_front``); a camera's intrinsics come from the ``CameraInfo`` topic of the
    same name (``/cam_front/camera_info``). Sensor timestamps are the message header stamps.

    TF: a transform with ``header.frame_id`` P and ``child_frame_id`` C is ``P_SE3_C`` (it maps C coordinates into P).
    ``ego_SE3_sensor`` is composed from ``/tf_static`` between the ego frame (``ego_frame``, ``base_link`` by default)
    and the sensor message's ``frame_id``. ``world_SE3_ego`` is the chain of ``/tf`` transforms from ``world_frame``
    (the root above the ego frame by default, e.g. ``map`` or ``odom``) down to the ego frame, sampled at the
    stamps of the dynamic transform nearest the ego; other dynamic links of the chain are interpolated (held at
    their ends) at those stamps. A bag without TF gives identity mounts and no poses.

    Points: ``PointCloud2`` fields are decoded with their offsets, types, counts, endianness and ``row_step`` and
    mapped like PCD fields (:func:`sensorlabel.formats.pcd.columns_to_lidar_points`; ``time`` is seconds relative to
    the stamp). Images: ``CompressedImage`` bytes are stored as they are (JPEG or PNG); raw ``Image`` messages
    (``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16``) are stored as lossless PNG.
    Cameras: ``plumb_bob``/``rational_polynomial`` (with ``k4..k6`` = 0) -> pinhole, ``equidistant`` -> fisheye.

Export (:func:`write_mcap_from_drive`, registered as exporter ``mcap``)
    Writes the real ROS 2 message definitions (``ros2msg`` schemas with their dependencies): ``/tf_static``
    (``base_link`` -> every sensor), ``/tf`` (``map`` -> ``base_link`` at every pose), ``/<lidar>/points``
    (``x y z intensity`` float32, ``ring`` uint16, ``time`` float32 seconds relative to the stamp),
    ``/<camera>/image/compressed`` (the drive's encoded bytes; or raw ``rgb8`` ``/<camera>/image`` with
    ``image_format="raw"``) and ``/<camera>/camera_info``. Reading it back gives the same drive.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sensorlabel.errors import CalibrationError, FormatError, InvalidTransformError
from sensorlabel.geometry.se3 import SE3, interpolate_poses

if TYPE_CHECKING:
    from sensorlabel.drive import Drive

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# ROS 2 message definitions (ros2msg text, dependencies appended as rosbag2 writes them)
# ----------------------------------------------------------------------------------------------------------------
_SEPARATOR = "=" * 80
_MSG = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec\n",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id\n",
    "sensor_msgs/PointField": (
        "uint8 INT8    = 1\nuint8 UINT8   = 2\nuint8 INT16   = 3\nuint8 UINT16  = 4\nuint8 INT32   = 5\n"
        "uint8 UINT32  = 6\nuint8 FLOAT32 = 7\nuint8 FLOAT64 = 8\n"
        "string name\nuint32 offset\nuint8  datatype\nuint32 count\n"
    ),
    "sensor_msgs/PointCloud2": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nPointField[] fields\nbool    is_bigendian\n"
        "uint32  point_step\nuint32  row_step\nuint8[] data\nbool is_dense\n"
    ),
    "sensor_msgs/Image": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\n"
        "uint8[] data\n"
    ),
    "sensor_msgs/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n",
    "sensor_msgs/RegionOfInterest": (
        "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n"
    ),
    "sensor_msgs/CameraInfo": (
        "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\n"
        "float64[9]  k\nfloat64[9]  r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\nRegionOfInterest roi\n"
    ),
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z\n",
    "geometry_msgs/Quaternion": "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
    "geometry_msgs/Transform": "Vector3 translation\nQuaternion rotation\n",
    "geometry_msgs/TransformStamped": "std_msgs/Header header\nstring child_frame_id\nTransform transform\n",
    "tf2_msgs/TFMessage": "geometry_msgs/TransformStamped[] transforms\n",
}
_DEPENDENCIES = {
    "sensor_msgs/PointCloud2": ["std_msgs/Header", "builtin_interfaces/Time", "sensor_msgs/PointField"],
    "sensor_msgs/Image": ["std_msgs/Header", "builtin_interfaces/Time"],
    "sensor_msgs/CompressedImage": ["std_msgs/Header", "builtin_interfaces/Time"],
    "sensor_msgs/CameraInfo": ["std_msgs/Header", "builtin_interfaces/Time", "sensor_msgs/RegionOfInterest"],
    "tf2_msgs/TFMessage": ["geometry_msgs/TransformStamped", "std_msgs/Header", "builtin_interfaces/Time",
                           "geometry_msgs/Transform", "geometry_msgs/Vector3", "geometry_msgs/Quaternion"],
}

POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TF_TOPICS = ("/tf", "/tf_static")


def ros2_msgdef(datatype: str) -> str:
    """The full ros2msg schema text of ``datatype`` (e.g. ``sensor_msgs/msg/PointCloud2``) with its dependencies."""
    short = datatype.replace("/msg/", "/")
    parts = [_MSG[short]]
    for dep in _DEPENDENCIES[short]:
        parts.append(f"{_SEPARATOR}\nMSG: {dep}\n{_MSG[dep]}")
    return "\n".join(parts)


# PointField datatype -> numpy base type
_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_FLOAT32, _UINT16 = 7, 4
#: CameraInfo sanity limits: image side in pixels; focal lengths of 1 to 1e7 px and |distortion| up to 1e4 too.
MAX_IMAGE_SIDE_PX = 100_000
_TOPIC_SUFFIXES = {"points", "points_raw", "pointcloud", "point_cloud", "cloud", "image", "image_raw", "image_rect",
                   "image_color", "image_rect_color", "compressed", "camera_info"}


def sensor_name_from_topic(topic: str) -> str:
    """``/cam_front/image/compressed`` -> ``cam_front``: the topic without ROS suffixes, ``/`` joined by ``_``."""
    parts = [p for p in topic.split("/") if p]
    while len(parts) > 1 and parts[-1] in _TOPIC_SUFFIXES:
        parts.pop()
    name = "_".join(parts) or "sensor"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@contextlib.contextmanager
def _message_fields(path: Path, topic: str) -> Iterator[None]:
    """A message decoded with a schema that lacks the standard fields fails on attribute access: a FormatError."""
    try:
        yield
    except (AttributeError, TypeError) as exc:
        raise FormatError(path, f"{topic}: message does not have the standard fields of its type: {exc}") from None


def _stamp_ns(header, path: Path, topic: str) -> int:
    sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    if not 0 <= nanosec < 1_000_000_000:
        raise FormatError(path, f"{topic}: header.stamp.nanosec {nanosec} is out of range")
    return sec * 1_000_000_000 + nanosec


# ----------------------------------------------------------------------------------------------------------------
# raw reading: the only place that calls the mcap libraries on untrusted bytes
# ----------------------------------------------------------------------------------------------------------------
def _iter_messages(path: Path, topics: set[str] | None) -> Iterator[tuple[str, str, Any, int]]:
    """Yield ``(topic, schema_name, decode, log_time_ns)`` for each message, in file order; ``decode()`` returns the
    message.

    The mcap and CDR parsers raise many exception types on corrupt input (struct.error, IndexError, ValueError,
    UnicodeDecodeError, McapError, zstd errors, ...); every one of them is the file's fault, so all become a
    FormatError naming the bag.
    """
    from mcap.reader import NonSeekingReader
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()
    try:
        handle = path.open("rb")
        size = path.stat().st_size
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None
    with handle:
        reader = NonSeekingReader(handle, validate_crcs=True, record_size_limit=size)
        messages = reader.iter_messages(topics=topics, log_time_order=False)
        while True:
            try:
                schema, channel, message = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # noqa: BLE001 - third-party parser on untrusted bytes, see docstring
                raise FormatError(path, f"corrupt MCAP: {type(exc).__name__}: {exc}"[:400]) from None
            if schema is None:
                continue

            def decode(schema=schema, channel=channel, message=message):
                try:
                    # The schema parser prints its complaints to stderr; the FormatError reports them instead.
                    with contextlib.redirect_stderr(io.StringIO()):
                        decoder = factory.decoder_for(channel.message_encoding, schema)
                    if decoder is None:
                        raise FormatError(path, f"{channel.topic}: no decoder for encoding "
                                                f"{channel.message_encoding!r} / schema {schema.encoding!r}")
                    return decoder(message.data)
                except FormatError:
                    raise
                except Exception as exc:  # noqa: BLE001 - CDR decoding of untrusted bytes
                    raise FormatError(path, f"{channel.topic}: cannot decode {schema.name} message: "
                                            f"{type(exc).__name__}: {exc}"[:400]) from None

            yield channel.topic, schema.name, decode, int(message.log_time)


# ----------------------------------------------------------------------------------------------------------------
# message conversion
# ----------------------------------------------------------------------------------------------------------------
def pointcloud2_columns(msg, path: Path, topic: str) -> dict[str, np.ndarray]:
    """Named columns of a decoded PointCloud2 (multi-count fields as (N, C)).

    Raises:
        FormatError: unknown datatypes, fields outside ``point_step``, ``point_step x width > row_step``, or fewer
            than ``row_step x height`` data bytes.
    """
    height, width, point_step, row_step = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    data = bytes(msg.data)
    n = height * width
    if n and point_step == 0:
        raise FormatError(path, f"{topic}: point_step is 0 for {n} points")
    if width * point_step > row_step and height > 0:
        raise FormatError(path, f"{topic}: width {width} x point_step {point_step} exceeds row_step {row_step}")
    if len(data) < row_step * height:
        raise FormatError(path, f"{topic}: data has {len(data)} bytes, row_step {row_step} x height {height} needed")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.datatype not in _POINTFIELD_DTYPES:
            raise FormatError(path, f"{topic}: field {f.name!r} has unknown datatype {f.datatype}")
        base = np.dtype(order + _POINTFIELD_DTYPES[f.datatype])
        count = int(f.count)
        if f.offset + base.itemsize * max(count, 1) > point_step:
            raise FormatError(path, f"{topic}: field {f.name!r} at offset {f.offset} runs past point_step {point_step}")
        if count == 0 or f.name in names or not f.name:
            continue
        names.append(f.name)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    if n == 0:
        return {name: np.zeros(0, np.float32) for name in names}
    try:
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    except ValueError as exc:
        raise FormatError(path, f"{topic}: overlapping PointCloud2 fields: {exc}") from None
    rows = np.ndarray((height, width), dtype=dtype, buffer=data, strides=(row_step, point_step)).reshape(-1)
    return {name: rows[name].astype(rows[name].dtype.newbyteorder("=")) for name in names}


_RAW_ENCODINGS = {"rgb8": (3, "u1"), "bgr8": (3, "u1"), "rgba8": (4, "u1"), "bgra8": (4, "u1"), "mono8": (1, "u1"),
                  "8uc1": (1, "u1"), "8uc3": (3, "u1"), "mono16": (1, "u2"), "16uc1": (1, "u2")}


def _check_encoded(data: bytes, path: Path, topic: str) -> bytes:
    if data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n":
        return data
    raise FormatError(path, f"{topic}: CompressedImage data is neither JPEG nor PNG ({len(data)} bytes)")


def image_to_png(msg, path: Path, topic: str) -> bytes:
    """Encode a raw sensor_msgs/Image as lossless PNG bytes (RGB order kept as the image shows it).

    Raises:
        FormatError: an unsupported encoding, a step too small for the width, or too few data bytes.
    """
    import cv2

    encoding = str(msg.encoding).lower()
    if encoding not in _RAW_ENCODINGS:
        raise FormatError(path, f"{topic}: unsupported image encoding {msg.encoding!r}; "
                                f"supported: {sorted(_RAW_ENCODINGS)}")
    channels, base = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype((">" if msg.is_bigendian else "<") + base)
    row_bytes = width * channels * dtype.itemsize
    data = bytes(msg.data)
    if height == 0 or width == 0:
        raise FormatError(path, f"{topic}: empty image {width}x{height}")
    if step < row_bytes or len(data) < step * height:
        raise FormatError(path, f"{topic}: image {width}x{height} {encoding} needs step >= {row_bytes} and "
                                f"{step * height} bytes, got step {step} and {len(data)} bytes")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    image = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels).astype(dtype.newbyteorder("="))
    if encoding in ("rgb8", "8uc3"):
        image = image[:, :, ::-1]
    elif encoding == "rgba8":
        image = image[:, :, [2, 1, 0, 3]]
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise FormatError(path, f"{topic}: image could not be encoded as PNG")
    return png.tobytes()


def camera_model_from_info(msg, path: Path, topic: str):
    """PinholeCamera or FisheyeCamera from a decoded CameraInfo.

    Raises:
        FormatError: an unknown distortion model, rational coefficients k4..k6 that are not zero, or bad intrinsics.
    """
    from sensorlabel.geometry.camera import FisheyeCamera, PinholeCamera

    k = np.asarray(msg.k, dtype=np.float64)
    d = np.asarray(msg.d, dtype=np.float64)
    model = str(msg.distortion_model).lower()
    if k.shape != (9,) or not np.isfinite(k).all() or not np.isfinite(d).all():
        raise FormatError(path, f"{topic}: k must be 9 finite numbers and d finite, got k={k.tolist()} d={d.tolist()}")
    args = (float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(msg.width), int(msg.height))
    if not (0 < args[4] <= MAX_IMAGE_SIDE_PX and 0 < args[5] <= MAX_IMAGE_SIDE_PX and np.abs(k).max() <= 1e7
            and min(args[0], args[1]) >= 1.0 and (len(d) == 0 or np.abs(d).max() <= 1e4)):
        raise FormatError(path, f"{topic}: implausible camera: {args[4]}x{args[5]} px, k={k.tolist()}, d={d.tolist()}")
    try:
        if model == "equidistant":
            if len(d) > 4:
                raise FormatError(path, f"{topic}: equidistant model takes 4 coefficients, got {len(d)}")
            return FisheyeCamera(*args, distortion=d)
        if model in ("plumb_bob", "rational_polynomial", ""):
            if len(d) > 5 and np.any(d[5:] != 0):
                raise FormatError(path, f"{topic}: distortion coefficients beyond k3 are not supported: {d.tolist()}")
            dist = np.zeros(5)
            dist[:min(len(d), 5)] = d[:5]
            return PinholeCamera(*args, distortion=dist)
    except CalibrationError as exc:
        raise FormatError(path, f"{topic}: {exc}") from None
    raise FormatError(path, f"{topic}: unsupported distortion_model {msg.distortion_model!r}")


def _transform(msg_transform, path: Path, where: str) -> SE3:
    t, q = msg_transform.translation, msg_transform.rotation
    quat_wxyz = np.array([q.w, q.x, q.y, q.z], dtype=np.float64)
    if not np.isfinite(quat_wxyz).all() or np.abs(quat_wxyz).max() > 1e6:
        raise FormatError(path, f"{where}: rotation is not a quaternion: {quat_wxyz.tolist()}")
    try:
        return SE3.from_quat_wxyz(quat_wxyz, np.array([t.x, t.y, t.z], dtype=np.float64))
    except (InvalidTransformError, ValueError) as exc:
        raise FormatError(path, f"{where}: invalid transform: {exc}") from None


# ----------------------------------------------------------------------------------------------------------------
# pass 1: what is in the bag
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class BagContents:
    """The result of the first pass over a bag.

    Attributes:
        lidar_topics, camera_topics: topic -> sensor name, in channel order.
        camera_info: camera name -> camera model.
        frame_ids: sensor name -> the frame_id of its first message.
        static_edges: (parent, child) -> parent_SE3_child from /tf_static.
        dynamic_edges: (parent, child) -> list of (stamp_ns, parent_SE3_child) from /tf.
    """

    lidar_topics: dict[str, str] = field(default_factory=dict)
    camera_topics: dict[str, str] = field(default_factory=dict)
    camera_info: dict[str, Any] = field(default_factory=dict)
    frame_ids: dict[str, str] = field(default_factory=dict)
    static_edges: dict[tuple[str, str], SE3] = field(default_factory=dict)
    dynamic_edges: dict[tuple[str, str], list[tuple[int, SE3]]] = field(default_factory=dict)


def scan_bag(path: str | Path, lidar_topics: list[str] | None = None,
             camera_topics: list[str] | None = None) -> BagContents:
    """First pass: sensor topics, camera intrinsics, frame ids and the TF tree.

    Args:
        path: the ``.mcap`` file.
        lidar_topics: PointCloud2 topics to import (all by default).
        camera_topics: Image/CompressedImage topics to import (all by default; when a camera has both, the
            CompressedImage topic).

    Raises:
        FormatError: a corrupt bag, a chosen topic that is missing or of another type, a camera without CameraInfo,
            two sensors with one name, or a bad transform.
    """
    path = Path(path)
    channels: dict[str, str] = {}  # topic -> schema name, in the order the messages first appear
    frame_of_topic: dict[str, str] = {}
    info_models: dict[str, Any] = {}
    contents = BagContents()
    sensor_types = (POINTCLOUD2, COMPRESSED_IMAGE, IMAGE)
    for topic, schema, decode, _ in _iter_messages(path, None):
        channels.setdefault(topic, schema)
        with _message_fields(path, topic):
            if topic in TF_TOPICS and schema == TF_MESSAGE:
                _add_transforms(contents, topic, decode(), path)
            elif schema == CAMERA_INFO and topic not in info_models:
                msg = decode()
                info_models[topic] = camera_model_from_info(msg, path, topic)
                frame_of_topic.setdefault(topic, str(msg.header.frame_id).lstrip("/"))
            elif schema in sensor_types and topic not in frame_of_topic:
                frame_of_topic[topic] = str(decode().header.frame_id).lstrip("/")
    target_cam: dict[str, str] = {}
    for kind, chosen, types, target in (("lidar", lidar_topics, (POINTCLOUD2,), contents.lidar_topics),
                                        ("camera", camera_topics, (COMPRESSED_IMAGE, IMAGE), target_cam)):
        for topic in chosen or []:
            if channels.get(topic) not in types:
                raise FormatError(path, f"{kind} topic {topic!r} is not a {' or '.join(types)} channel with "
                                        "messages in the bag")
        for topic, schema in channels.items():
            if schema in types and (chosen is None or topic in chosen):
                target[topic] = sensor_name_from_topic(topic)
    by_name: dict[str, str] = {}
    for topic, name in sorted(target_cam.items(), key=lambda item: channels[item[0]] != COMPRESSED_IMAGE):
        if name in by_name:
            if camera_topics is not None:
                raise FormatError(path, f"camera topics {by_name[name]!r} and {topic!r} both name camera {name!r}")
            continue
        by_name[name] = topic
    contents.camera_topics = {t: n for t, n in target_cam.items() if by_name.get(n) == t}
    names = list(contents.lidar_topics.values()) + list(contents.camera_topics.values())
    if len(set(names)) != len(names):
        raise FormatError(path, f"two sensor topics map to one sensor name: {names}")
    info_by_name = {sensor_name_from_topic(t): t for t in info_models}
    for topic, name in [*contents.lidar_topics.items(), *contents.camera_topics.items()]:
        contents.frame_ids[name] = frame_of_topic[topic]
    for topic, name in contents.camera_topics.items():
        if name not in info_by_name:
            raise FormatError(path, f"camera topic {topic!r} has no CameraInfo (looked for a camera_info topic of "
                                    f"sensor {name!r})")
        contents.camera_info[name] = info_models[info_by_name[name]]
    return contents


def _add_transforms(contents: BagContents, topic: str, message, path: Path) -> None:
    """The edges of one TFMessage: /tf_static ones replace, /tf ones append a timed sample."""
    for ts in message.transforms:
        edge = (str(ts.header.frame_id).lstrip("/"), str(ts.child_frame_id).lstrip("/"))
        transform = _transform(ts.transform, path, f"{topic} transform {edge[0]} -> {edge[1]}")
        if topic == "/tf_static":
            contents.static_edges[edge] = transform
        else:
            contents.dynamic_edges.setdefault(edge, []).append((_stamp_ns(ts.header, path, topic), transform))


def _tree_transform(edges: dict[tuple[str, str], SE3], ancestor: str, frame: str) -> SE3 | None:
    """ancestor_SE3_frame along static edges (child -> parent walk), or None when ``frame`` is not below it."""
    parent_of = {child: (parent, t) for (parent, child), t in edges.items()}
    transform, current, steps = SE3.identity(), frame, 0
    while current != ancestor:
        if current not in parent_of or steps > len(parent_of):
            return None
        parent, t = parent_of[current]
        transform = t.compose(transform)
        current, steps = parent, steps + 1
    return transform


def ego_SE3_frame(contents: BagContents, ego_frame: str, frame: str, path: Path) -> SE3:
    """The static transform from ``frame`` to ``ego_frame`` (through a common ancestor when needed).

    Raises:
        FormatError: the frames are not connected by /tf_static.
    """
    if frame == ego_frame:
        return SE3.identity()
    edges = contents.static_edges
    frames = {c for _, c in edges} | {p for p, _ in edges}
    for ancestor in [ego_frame, *sorted(frames)]:
        ancestor_SE3_frame = _tree_transform(edges, ancestor, frame)
        ancestor_SE3_ego = _tree_transform(edges, ancestor, ego_frame)
        if ancestor_SE3_frame is not None and ancestor_SE3_ego is not None:
            return ancestor_SE3_ego.inverse().compose(ancestor_SE3_frame)
    raise FormatError(path, f"no /tf_static path between ego frame {ego_frame!r} and sensor frame {frame!r} "
                            "(set ego_frame to the vehicle frame of the bag)")


def _edge_series(samples: list[tuple[int, SE3]]) -> tuple[np.ndarray, SE3]:
    stamps = np.array([s for s, _ in samples], dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    keep = np.ones(len(order), bool)
    keep[:-1] = np.diff(stamps[order]) > 0  # a repeated stamp keeps its last sample
    order = order[keep]
    return stamps[order], SE3.stack([samples[i][1] for i in order])


def world_poses(contents: BagContents, ego_frame: str, world_frame: str | None, path: Path):
    """``(timestamps_ns (T,), world_SE3_ego)`` from /tf, or None when no dynamic transform leads to the ego frame.

    Raises:
        FormatError: ``world_frame`` given but not above the ego frame.
    """
    parent_of = {child: parent for parent, child in [*contents.static_edges, *contents.dynamic_edges]}
    chain, current = [], ego_frame
    while current in parent_of and current != world_frame and len(chain) <= len(parent_of):
        chain.append((parent_of[current], current))
        current = parent_of[current]
    if world_frame is not None and current != world_frame:
        raise FormatError(path, f"world frame {world_frame!r} is not above ego frame {ego_frame!r} in the TF tree")
    dynamic = [edge for edge in chain if edge in contents.dynamic_edges]
    if not dynamic:
        return None
    series = {edge: _edge_series(contents.dynamic_edges[edge]) for edge in dynamic}
    stamps = series[dynamic[0]][0]  # the dynamic link nearest the ego frame sets the pose times
    world_SE3_ego = SE3.identity(len(stamps))
    for edge in reversed(chain):
        if edge in series:
            t, poses = series[edge]
            link = interpolate_poses(t, poses, np.clip(stamps, t[0], t[-1]))
        else:
            link = contents.static_edges[edge]
        world_SE3_ego = world_SE3_ego.compose(link)
    return stamps, world_SE3_ego


# ----------------------------------------------------------------------------------------------------------------
# pass 2 and the importer
# ----------------------------------------------------------------------------------------------------------------
def iter_sensor_data(path: str | Path, contents: BagContents,
                     time_source: str = "header") -> Iterator[tuple[str, str, int, Any]]:
    """Second pass: ``("lidar", name, stamp_ns, (points, fields))`` and ``("camera", name, stamp_ns, bytes)``.

    ``time_source`` ``"header"`` takes each message's ``header.stamp``, ``"log"`` its MCAP log time (for drivers
    that leave the stamp empty).

    Raises:
        FormatError: a corrupt bag or message (see :func:`pointcloud2_columns`, :func:`image_to_png`).
    """
    from sensorlabel.formats.pcd import columns_to_lidar_points

    path = Path(path)
    topics = set(contents.lidar_topics) | set(contents.camera_topics)
    if time_source not in ("header", "log"):
        raise ValueError(f"time_source: expected 'header' or 'log', got {time_source!r}")
    for topic, schema, decode, log_time_ns in _iter_messages(path, topics):
        with _message_fields(path, topic):
            msg = decode()
            stamp = _stamp_ns(msg.header, path, topic) if time_source == "header" else log_time_ns
            if topic in contents.lidar_topics:
                columns = pointcloud2_columns(msg, path, topic)
                record = "lidar", contents.lidar_topics[topic], stamp, columns_to_lidar_points(columns, path, stamp)
            elif schema == COMPRESSED_IMAGE:
                record = "camera", contents.camera_topics[topic], stamp, _check_encoded(bytes(msg.data), path, topic)
            else:
                record = "camera", contents.camera_topics[topic], stamp, image_to_png(msg, path, topic)
        yield record


def import_mcap(
    src: Path,
    out: Path,
    *,
    overwrite: bool = False,
    lidar_topics: list[str] | None = None,
    camera_topics: list[str] | None = None,
    ego_frame: str = "base_link",
    world_frame: str | None = None,
    time_source: str = "header",
    name: str | None = None,
) -> Drive:
    """Import a ROS 2 MCAP bag (see the module docstring).

    Args:
        src: the ``.mcap`` file.
        out: the ``.drive`` folder to create.
        overwrite: replace an existing drive.
        lidar_topics, camera_topics: the topics to import (all PointCloud2 / image topics by default).
        ego_frame: the vehicle frame of the TF tree.
        world_frame: the fixed frame for the poses (default: the root above ``ego_frame``).
        time_source: sensor times from ``"header"`` stamps or the MCAP ``"log"`` times.
        name: the drive name; the file stem by default.

    Raises:
        FormatError: a corrupt bag or message, a missing CameraInfo or transform, or no sensor topic at all.
    """
    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.formats import progress

    src, out = Path(src), Path(out)
    contents = scan_bag(src, lidar_topics, camera_topics)
    if not contents.lidar_topics and not contents.camera_topics:
        raise FormatError(src, "no PointCloud2, Image or CompressedImage topic in the bag")
    has_tf = bool(contents.static_edges or contents.dynamic_edges)
    sensors = {}
    for topic, sensor_name in [*contents.lidar_topics.items(), *contents.camera_topics.items()]:
        kind = "lidar" if topic in contents.lidar_topics else "camera"
        frame = contents.frame_ids.get(sensor_name, sensor_name)
        mount = ego_SE3_frame(contents, ego_frame, frame, src) if has_tf else SE3.identity()
        sensors[sensor_name] = SensorCalibration(sensor_name, kind, mount, contents.camera_info.get(sensor_name))
    poses = world_poses(contents, ego_frame, world_frame, src) if has_tf else None
    metadata = {
        "source": str(src), "ego_frame": ego_frame,
        "topics": {**contents.lidar_topics, **contents.camera_topics},
        "poses": "from /tf" if poses is not None else "none: no /tf chain to the ego frame",
    }
    with Drive.create(out, name=name or src.stem, source_format="mcap", sensors=sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        if poses is not None:
            writer.write_poses(*poses)
        for kind, sensor_name, stamp, payload in progress(iter_sensor_data(src, contents, time_source),
                                                                desc=f"import {src.name}"):
            if kind == "lidar":
                writer.append_lidar_sweep(sensor_name, payload[0], payload[1], stamp)
            else:
                writer.append_camera_image(sensor_name, payload, stamp)
        return writer.finalize()


def read_bag(path: str | Path, **options) -> tuple[BagContents, list[tuple[str, str, int, Any]]]:
    """Both passes in memory, without a drive: for tests and fuzzing of small bags.

    Raises:
        FormatError: as :func:`scan_bag` and :func:`iter_sensor_data`.
    """
    contents = scan_bag(path, options.get("lidar_topics"), options.get("camera_topics"))
    return contents, list(iter_sensor_data(path, contents, options.get("time_source", "header")))


# ----------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------
def _time(stamp_ns: int) -> dict:
    return {"sec": int(stamp_ns // 1_000_000_000), "nanosec": int(stamp_ns % 1_000_000_000)}


def _header(stamp_ns: int, frame_id: str) -> dict:
    return {"stamp": _time(stamp_ns), "frame_id": frame_id}


def _transform_stamped(stamp_ns: int, parent: str, child: str, parent_SE3_child: SE3) -> dict:
    w, x, y, z = parent_SE3_child.as_quat_wxyz()
    tx, ty, tz = parent_SE3_child.translation
    return {"header": _header(stamp_ns, parent), "child_frame_id": child,
            "transform": {"translation": {"x": float(tx), "y": float(ty), "z": float(tz)},
                          "rotation": {"x": float(x), "y": float(y), "z": float(z), "w": float(w)}}}


def _pointcloud2(points: np.ndarray, fields: tuple[str, ...], stamp_ns: int, frame_id: str) -> dict:
    """A PointCloud2 dict: float32 columns, ring as uint16 when its values fit, t_offset_s named ``time``."""
    layout = []
    for j, name in enumerate(fields):
        column = points[:, j]
        if name == "ring" and np.array_equal(column, np.round(column)) and (len(column) == 0 or (
                column.min() >= 0 and column.max() <= 65535)):
            layout.append(("ring", "<u2", _UINT16, column))
        else:
            layout.append(("time" if name == "t_offset_s" else name, "<f4", _FLOAT32, column))
    dtype = np.dtype([(n, t) for n, t, _, _ in layout])
    records = np.zeros(len(points), dtype=dtype)
    for n, _, _, column in layout:
        records[n] = column
    return {
        "header": _header(stamp_ns, frame_id), "height": 1, "width": len(points),
        "fields": [{"name": n, "offset": dtype.fields[n][1], "datatype": code, "count": 1} for n, _, code, _ in layout],
        "is_bigendian": False, "point_step": dtype.itemsize, "row_step": dtype.itemsize * len(points),
        "data": records.tobytes(), "is_dense": bool(np.isfinite(points[:, :3]).all()),
    }


def _camera_info(camera, stamp_ns: int, frame_id: str) -> dict:
    fx, fy, cx, cy = camera.fx_px, camera.fy_px, camera.cx_px, camera.cy_px
    return {
        "header": _header(stamp_ns, frame_id), "height": int(camera.height_px), "width": int(camera.width_px),
        "distortion_model": "equidistant" if camera.model == "fisheye" else "plumb_bob",
        "d": [float(v) for v in camera.distortion],
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0], "binning_x": 0, "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def write_mcap_from_drive(drive: Drive, path: str | Path, *, image_format: str = "compressed",
                          ego_frame: str = "base_link", world_frame: str = "map", compression: str = "zstd",
                          crcs: bool = True) -> Path:
    """Write a drive as a ROS 2 MCAP bag (see the module docstring for the topics).

    Args:
        drive: the drive.
        path: the ``.mcap`` file (written to a temporary sibling, then renamed).
        image_format: ``"compressed"`` (CompressedImage with the drive's bytes) or ``"raw"`` (rgb8 Image).
        ego_frame, world_frame: TF frame names.
        compression: chunk compression, ``"zstd"``, ``"lz4"`` or ``"none"``.
        crcs: write CRCs of chunks and the data section.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown image_format or compression.
    """
    import os
    import tempfile

    from mcap.writer import CompressionType
    from mcap_ros2.writer import Writer

    from sensorlabel.formats import progress

    if image_format not in ("compressed", "raw"):
        raise ValueError(f"image_format: expected 'compressed' or 'raw', got {image_format!r}")
    compressions = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
    if compression not in compressions:
        raise ValueError(f"compression: expected one of {sorted(compressions)}, got {compression!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = Writer(handle, compression=compressions[compression], enable_crcs=crcs)
            schemas = {t: writer.register_msgdef(t, ros2_msgdef(t))
                       for t in (TF_MESSAGE, POINTCLOUD2, COMPRESSED_IMAGE, IMAGE, CAMERA_INFO)}
            starts = [int(drive.lidar_timestamps_ns(n)[0]) for n in drive.lidar_names
                      if len(drive.lidar_timestamps_ns(n))]
            starts += [int(drive.camera_timestamps_ns(n)[0]) for n in drive.camera_names
                       if len(drive.camera_timestamps_ns(n))]
            if drive.has_poses:
                starts.append(int(drive.pose_timestamps_ns[0]))
            t0 = min(starts) if starts else 0
            static = [_transform_stamped(t0, ego_frame, name, s.ego_SE3_sensor) for name, s in drive.sensors.items()]
            writer.write_message("/tf_static", schemas[TF_MESSAGE], {"transforms": static}, log_time=t0)
            if drive.has_poses:
                stamps = drive.pose_timestamps_ns
                poses = drive.world_SE3_ego(stamps)
                for i, stamp in enumerate(stamps.tolist()):
                    message = {"transforms": [_transform_stamped(stamp, world_frame, ego_frame, poses[i])]}
                    writer.write_message("/tf", schemas[TF_MESSAGE], message, log_time=stamp)
            for name in drive.lidar_names:
                for i, stamp in enumerate(progress(drive.lidar_timestamps_ns(name).tolist(), desc=f"write {name}")):
                    sweep = drive.lidar_sweep(name, i)
                    writer.write_message(f"/{name}/points", schemas[POINTCLOUD2],
                                         _pointcloud2(sweep.points, sweep.fields, stamp, name), log_time=stamp)
            for name in drive.camera_names:
                camera = drive.sensors[name].camera
                for i, stamp in enumerate(drive.camera_timestamps_ns(name).tolist()):
                    writer.write_message(f"/{name}/camera_info", schemas[CAMERA_INFO],
                                         _camera_info(camera, stamp, name), log_time=stamp)
                    if image_format == "compressed":
                        data = drive.camera_image_bytes(name, i)
                        fmt = "png" if data[:4] == b"\x89PNG" else "jpeg"
                        writer.write_message(f"/{name}/image/compressed", schemas[COMPRESSED_IMAGE],
                                             {"header": _header(stamp, name), "format": fmt, "data": data},
                                             log_time=stamp)
                    else:
                        rgb = drive.camera_image(name, i)
                        writer.write_message(f"/{name}/image", schemas[IMAGE], {
                            "header": _header(stamp, name), "height": rgb.shape[0], "width": rgb.shape[1],
                            "encoding": "rgb8", "is_bigendian": 0, "step": rgb.shape[1] * 3,
                            "data": np.ascontiguousarray(rgb).tobytes()}, log_time=stamp)
            writer.finish()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_mcap(drive: Drive, out_dir: Path, **options) -> list[Path]:
    """Exporter ``mcap``: ``<out_dir>/<drive name>.mcap`` by :func:`write_mcap_from_drive` (same options)."""
    return [write_mcap_from_drive(drive, Path(out_dir) / f"{drive.name}.mcap", **options)]


__all__ = ["BagContents", "export_mcap", "import_mcap", "read_bag", "ros2_msgdef", "scan_bag",
           "sensor_name_from_topic", "write_mcap_from_drive"]
