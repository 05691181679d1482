"""Point cloud files: PCD (ascii, binary, binary_compressed), PLY, KITTI-style float32 ``.bin``, and folders of them.

Readers
    :func:`read_pcd` parses any PCD v0.5-0.7 header (FIELDS/SIZE/TYPE/COUNT with ``COUNT 0`` and ``_`` padding
    fields, ``#`` comments on any header line, cvat #7325) and checks it against the payload: POINTS must equal
    WIDTH x HEIGHT and the payload must hold POINTS records. Bytes beyond the last record are ignored (SUSTech
    POINTS files carry trailing zeros), and the one known header that misdescribes its records, SUSTech POINTS'
    (:data:`SUSTECH_PCD_HEADER`), is read with the real layout. ``binary_compressed`` payloads are LZF blocks (liblzf's format) in
    structure-of-arrays order; :func:`lzf_decompress` decodes them.
    :func:`read_ply` parses the vertex element of ascii and binary PLY files, :func:`read_bin` reads ``(N, C)``
    float32 records. Every reader returns named columns and raises :class:`~sensorlabel.errors.FormatError`
    naming the file for anything it cannot read; never another exception.

Lidar fields
    :func:`columns_to_lidar_points` maps named columns to the drive's lidar fields ``x y z intensity [ring]
    [t_offset_s]``: intensity from ``intensity``/``i``/``reflectance``/``remission`` (zeros when absent), ring
    from ``ring``/``laser_number``/``line``, and per-point times from ``t_offset_s`` or ``time`` (seconds relative
    to the sweep, the Velodyne ROS driver's convention), ``t`` (integer ns relative, Ouster), ``offset_time``
    (integer ns relative, Livox) or ``timestamp`` (absolute seconds, Hesai; made relative to the sweep time).
    Rows with a non-finite x, y or z (the placeholders of organised clouds) are dropped.

Importer
    :func:`import_pcd` turns a folder of sweeps into a drive with one lidar and no poses (each sweep in its own
    sensor frame, identity ``world_SE3_ego``). Timestamps come from numeric file names when they look like epoch
    seconds, milliseconds, microseconds or nanoseconds; otherwise the sweeps are spaced at ``rate_hz``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sensorlabel.errors import FormatError
from sensorlabel.formats.fileio import read_ahead, read_file_bytes
from sensorlabel.formats import atomic_write_bytes

if TYPE_CHECKING:
    from sensorlabel.drive import Drive

logger = logging.getLogger(__name__)

#: Largest header we scan for the DATA line; a real PCD or PLY header is a few hundred bytes.
MAX_HEADER_BYTES = 65536
#: Largest COUNT of one field; real files use 1-3 (a 308-bin FPFH descriptor is the largest in PCL).
MAX_FIELD_COUNT = 4096
#: Longest plausible sweep: per-point times spanning more than this are not one sweep.
MAX_SWEEP_SPAN_S = 1.0

_PCD_DTYPES = {
    ("I", 1): "i1", ("I", 2): "<i2", ("I", 4): "<i4", ("I", 8): "<i8",
    ("U", 1): "u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8",
    ("F", 4): "<f4", ("F", 8): "<f8",
}
_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS", "DATA")
_PCD_DATA_KINDS = ("ascii", "binary", "binary_compressed")

#: SUSTech POINTS (Hesai Pandar40) files: this exact header puts ``timestamp`` at byte 20 and ``ring`` at 34 (a ``_``
#: of COUNT 0 before ``timestamp``), but the records hold x, y, z float32 at 0, 4, 8, intensity float32 at 16, the
#: point time float64 at 24 and the ring uint16 at 32 (48 bytes). No writer lays out records as this header implies
#: (COUNT 0 padding), so a file with exactly this header is read with the real layout.
SUSTECH_PCD_HEADER = (
    ("x", "y", "z", "_", "intensity", "_", "timestamp", "_", "ring", "_"),
    (4, 4, 4, 1, 4, 1, 8, 1, 2, 1),
    ("F", "F", "F", "U", "F", "U", "F", "U", "U", "U"),
    (1, 1, 1, 4, 1, 0, 1, 6, 1, 12),
)
SUSTECH_RECORD = np.dtype({
    "names": ["x", "y", "z", "intensity", "timestamp", "ring"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "<f8", "<u2"],
    "offsets": [0, 4, 8, 16, 24, 32],
    "itemsize": 48,
})

INTENSITY_NAMES = ("intensity", "i", "reflectance", "remission")
RING_NAMES = ("ring", "laser_number", "line")
SWEEP_SUFFIXES = (".pcd", ".ply", ".bin")


@dataclass(frozen=True)
class PcdHeader:
    """A parsed PCD header.

    Attributes:
        fields, sizes, types, counts: one entry per FIELDS entry, ``_`` padding fields included.
        width, height, points: the cloud size; ``points == width * height``.
        viewpoint: (7,) float64 ``tx ty tz qw qx qy qz``.
        data: ``"ascii"``, ``"binary"`` or ``"binary_compressed"``.
        data_offset: byte offset of the payload in the file.
    """

    version: str
    fields: tuple[str, ...]
    sizes: tuple[int, ...]
    types: tuple[str, ...]
    counts: tuple[int, ...]
    width: int
    height: int
    viewpoint: tuple[float, ...]
    points: int
    data: str
    data_offset: int

    @property
    def is_sustech_layout(self) -> bool:
        """True for SUSTech POINTS' header, whose field offsets are wrong (see :data:`SUSTECH_PCD_HEADER`)."""
        return (self.fields, self.sizes, self.types, self.counts) == SUSTECH_PCD_HEADER

    @property
    def record_size(self) -> int:
        """Bytes per point in binary payloads."""
        return int(sum(s * c for s, c in zip(self.sizes, self.counts)))

    def record_dtype(self) -> np.dtype:
        """Structured dtype of one binary record at the offsets the header implies (padding fields unnamed), or the
        real layout of SUSTech POINTS files."""
        if self.is_sustech_layout:
            return SUSTECH_RECORD
        names, formats, offsets = [], [], []
        offset = 0
        for name, size, kind, count in zip(self.fields, self.sizes, self.types, self.counts):
            if name != "_" and count > 0:
                base = np.dtype(_PCD_DTYPES[(kind, size)])
                names.append(name)
                formats.append(base if count == 1 else (base, (count,)))
                offsets.append(offset)
            offset += size * count
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})


@dataclass(frozen=True)
class PointColumns:
    """Named per-point columns read from a point cloud file.

    Attributes:
        path: the file.
        columns: name -> (N,) array, or (N, C) for multi-count fields; padding fields are dropped.
        num_points: N.
    """

    path: Path
    columns: dict[str, np.ndarray]
    num_points: int


# ----------------------------------------------------------------------------------------------------------------
# LZF (liblzf's block format, as PCL's binary_compressed uses it)
# ----------------------------------------------------------------------------------------------------------------
def lzf_decompress(data: bytes, uncompressed_size: int, path: str | Path = "<bytes>") -> bytes:
    """Decode one LZF block.

    A control byte below 32 starts a literal run of ``ctrl + 1`` bytes; otherwise its top 3 bits give a match
    length (7 means one more length byte follows), and its low 5 bits plus the next byte give the distance back
    into the output. Matches may overlap their own output (run-length style).

    Args:
        data: the compressed block.
        uncompressed_size: the exact size the block must decode to.
        path: the file, for error messages.

    Returns:
        The ``uncompressed_size`` decoded bytes.

    Raises:
        FormatError: a run past the end of the input or output, a back reference before the start of the output,
            or an output that is not exactly ``uncompressed_size`` bytes.
    """
    out = bytearray(uncompressed_size)
    ip, op, n_in = 0, 0, len(data)
    while ip < n_in:
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:
            length = ctrl + 1
            if ip + length > n_in or op + length > uncompressed_size:
                raise FormatError(path, f"LZF literal run of {length} bytes at input byte {ip - 1} overruns the block")
            out[op:op + length] = data[ip:ip + length]
            ip += length
            op += length
            continue
        length = ctrl >> 5
        if length == 7:
            if ip >= n_in:
                raise FormatError(path, f"LZF match at input byte {ip - 1} is cut off")
            length += data[ip]
            ip += 1
        if ip >= n_in:
            raise FormatError(path, f"LZF match at input byte {ip - 1} is cut off")
        distance = ((ctrl & 0x1F) << 8) + data[ip] + 1
        ip += 1
        length += 2
        ref = op - distance
        if ref < 0 or op + length > uncompressed_size:
            raise FormatError(path, f"LZF match at input byte {ip - 2} points outside the output (distance {distance})")
        if distance >= length:
            out[op:op + length] = out[ref:ref + length]
        else:
            pattern = bytes(out[ref:op])
            out[op:op + length] = (pattern * (length // distance + 1))[:length]
        op += length
    if op != uncompressed_size:
        raise FormatError(path, f"LZF block decodes to {op} bytes, the header says {uncompressed_size}")
    return bytes(out)


# ----------------------------------------------------------------------------------------------------------------
# PCD
# ----------------------------------------------------------------------------------------------------------------
def _header_lines(raw: bytes, path: Path, terminator: bytes, what: str) -> tuple[list[str], int]:
    """Split the text header that ends at the first line starting with ``terminator``; returns (lines, data offset)."""
    pos = 0
    lines: list[str] = []
    limit = min(len(raw), MAX_HEADER_BYTES)
    while pos < limit:
        end = raw.find(b"\n", pos, limit)
        if end < 0:
            break
        line = raw[pos:end]
        pos = end + 1
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            raise FormatError(path, f"{what} header line {len(lines) + 1} is not ASCII text") from None
        lines.append(text)
        if text.split("#", 1)[0].strip().split(" ", 1)[0] == terminator.decode():
            return lines, pos
    raise FormatError(path, f"no '{terminator.decode()}' line in the first {limit} bytes: not a {what} file, or "
                            "truncated")


def _int_value(path: Path, key: str, text: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FormatError(path, f"{key} must be an integer, got {text!r}") from None
    if value < minimum:
        raise FormatError(path, f"{key} must be >= {minimum}, got {value}")
    return value


def parse_pcd_header(raw: bytes, path: str | Path) -> PcdHeader:
    """Parse and check the header of a PCD file whose bytes are ``raw``.

    Raises:
        FormatError: missing or unknown keys, per-field lists of different lengths, unsupported SIZE/TYPE pairs,
            POINTS != WIDTH x HEIGHT, an unknown DATA kind, or no DATA line.
    """
    path = Path(path)
    lines, data_offset = _header_lines(raw, path, b"DATA", "PCD")
    entries: dict[str, list[str]] = {}
    for number, line in enumerate(lines, start=1):
        content = line.split("#", 1)[0].split()
        if not content:
            continue
        key = content[0].upper()
        if key not in _PCD_KEYS:
            raise FormatError(path, f"unknown PCD header key {content[0]!r} on line {number}")
        if key in entries:
            raise FormatError(path, f"PCD header key {key} appears twice (line {number})")
        entries[key] = content[1:]
    for key in ("FIELDS", "SIZE", "TYPE", "WIDTH", "DATA"):
        if key not in entries:
            raise FormatError(path, f"PCD header has no {key} line")
    fields = tuple(entries["FIELDS"])
    n = len(fields)
    if n == 0:
        raise FormatError(path, "PCD header FIELDS is empty")
    named = [f for f in fields if f != "_"]
    if len(set(named)) != len(named):
        raise FormatError(path, f"PCD header FIELDS repeats a name: {' '.join(fields)}")
    counts_text = entries.get("COUNT", ["1"] * n)
    for key, values in (("SIZE", entries["SIZE"]), ("TYPE", entries["TYPE"]), ("COUNT", counts_text)):
        if len(values) != n:
            raise FormatError(path, f"PCD header {key} has {len(values)} entries for {n} FIELDS")
    sizes = tuple(_int_value(path, "SIZE", s) for s in entries["SIZE"])
    counts = tuple(_int_value(path, "COUNT", c) for c in counts_text)
    if max(counts) > MAX_FIELD_COUNT:
        raise FormatError(path, f"COUNT {max(counts)} is more than {MAX_FIELD_COUNT} values per field")
    types = tuple(t.upper() for t in entries["TYPE"])
    for name, size, kind in zip(fields, sizes, types):
        if (kind, size) not in _PCD_DTYPES:
            raise FormatError(path, f"field {name!r}: unsupported TYPE {kind} with SIZE {size}")
    if len(entries["WIDTH"]) != 1:
        raise FormatError(path, f"WIDTH must be one integer, got {' '.join(entries['WIDTH'])!r}")
    width = _int_value(path, "WIDTH", entries["WIDTH"][0])
    height_text = entries.get("HEIGHT", ["1"])
    if len(height_text) != 1:
        raise FormatError(path, f"HEIGHT must be one integer, got {' '.join(height_text)!r}")
    height = _int_value(path, "HEIGHT", height_text[0])
    points_text = entries.get("POINTS", [str(width * height)])
    if len(points_text) != 1:
        raise FormatError(path, f"POINTS must be one integer, got {' '.join(points_text)!r}")
    points = _int_value(path, "POINTS", points_text[0])
    if points != width * height:
        raise FormatError(path, f"POINTS {points} != WIDTH {width} x HEIGHT {height}")
    viewpoint_text = entries.get("VIEWPOINT", ["0", "0", "0", "1", "0", "0", "0"])
    try:
        viewpoint = tuple(float(v) for v in viewpoint_text)
    except ValueError:
        raise FormatError(path, f"VIEWPOINT must be 7 numbers, got {' '.join(viewpoint_text)!r}") from None
    if len(viewpoint) != 7 or not np.isfinite(viewpoint).all():
        raise FormatError(path, f"VIEWPOINT must be 7 finite numbers, got {' '.join(viewpoint_text)!r}")
    data = entries["DATA"]
    if len(data) != 1 or data[0].lower() not in _PCD_DATA_KINDS:
        raise FormatError(path, f"DATA must be one of {_PCD_DATA_KINDS}, got {' '.join(data)!r}")
    version = entries.get("VERSION", [""])
    header = PcdHeader(
        version=" ".join(version), fields=fields, sizes=sizes, types=types, counts=counts, width=width,
        height=height, viewpoint=viewpoint, points=points, data=data[0].lower(), data_offset=data_offset,
    )
    if points > 0 and header.record_size == 0:
        raise FormatError(path, f"POINTS is {points} but the fields take 0 bytes per point")
    return header


def _columns_from_records(records: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(records[name]) for name in records.dtype.names}


def _read_pcd_ascii(payload: bytes, header: PcdHeader, path: Path) -> dict[str, np.ndarray]:
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(path, "ascii PCD payload is not ASCII text") from None
    rows = [line for line in text.splitlines() if line.strip()]
    if len(rows) != header.points:
        raise FormatError(path, f"ascii payload has {len(rows)} point lines, POINTS says {header.points}")
    per_row = int(sum(header.counts))
    tokens = text.split()
    if len(tokens) != header.points * per_row:
        raise FormatError(path, f"ascii payload has {len(tokens)} values, expected POINTS x {per_row} = "
                                f"{header.points * per_row}")
    table = np.asarray(tokens, dtype=object).reshape(header.points, per_row)
    columns: dict[str, np.ndarray] = {}
    start = 0
    for name, size, kind, count in zip(header.fields, header.sizes, header.types, header.counts):
        block = table[:, start:start + count]
        start += count
        if name == "_" or count == 0:
            continue
        dtype = np.dtype(_PCD_DTYPES[(kind, size)])
        try:
            values = np.asarray(block.astype(np.float64 if kind == "F" else np.int64)).astype(dtype, casting="unsafe")
        except (ValueError, OverflowError):
            raise FormatError(path, f"ascii field {name!r} has a value that is not a {dtype} number") from None
        columns[name] = values[:, 0] if count == 1 else values
    return columns


def read_pcd(path: str | Path) -> PointColumns:
    """Read a PCD file into named columns.

    Args:
        path: the ``.pcd`` file.

    Returns:
        The columns in file order, padding fields and ``COUNT 0`` fields dropped.

    Raises:
        FormatError: an unreadable file, a bad header (see :func:`parse_pcd_header`), a payload shorter than
            POINTS records, or a corrupt LZF block.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    header = parse_pcd_header(raw, path)
    return PointColumns(path, read_pcd_payload(raw, header, path), header.points)


def read_pcd_payload(raw: bytes, header: PcdHeader, path: str | Path) -> dict[str, np.ndarray]:
    """The columns of the payload of a PCD file whose bytes are ``raw`` and whose header is ``header``.

    Raises:
        FormatError: a payload shorter than POINTS records or a corrupt LZF block.
    """
    path = Path(path)
    payload = memoryview(raw)[header.data_offset:]
    if header.data == "ascii":
        return _read_pcd_ascii(bytes(payload), header, path)
    needed = header.points * header.record_size
    if header.data == "binary":
        if len(payload) < needed:
            raise FormatError(path, f"binary payload has {len(payload)} bytes, POINTS {header.points} x "
                                    f"{header.record_size} bytes = {needed} needed (truncated file?)")
        if len(payload) > needed:
            logger.debug("%s: ignoring %d bytes after the last of %d points", path, len(payload) - needed,
                         header.points)
        return _columns_from_records(np.frombuffer(payload, dtype=header.record_dtype(), count=header.points))
    if len(payload) < 8:
        raise FormatError(path, "binary_compressed payload has no size words")
    compressed_size, uncompressed_size = (int(v) for v in np.frombuffer(payload[:8], dtype="<u4"))
    if uncompressed_size != needed:
        raise FormatError(path, f"binary_compressed uncompressed size {uncompressed_size} != POINTS {header.points}"
                                f" x {header.record_size} bytes")
    if compressed_size > len(payload) - 8:
        raise FormatError(path, f"binary_compressed block of {compressed_size} bytes but only "
                                f"{len(payload) - 8} follow (truncated file?)")
    block = lzf_decompress(bytes(payload[8:8 + compressed_size]), uncompressed_size, path)
    columns: dict[str, np.ndarray] = {}
    offset = 0
    for name, size, kind, count in zip(header.fields, header.sizes, header.types, header.counts):
        nbytes = header.points * size * count
        if name != "_" and count > 0:
            values = np.frombuffer(block, dtype=_PCD_DTYPES[(kind, size)], count=header.points * count, offset=offset)
            columns[name] = values.copy() if count == 1 else values.reshape(header.points, count).copy()
        offset += nbytes
    return columns


def write_pcd(path: str | Path, columns: dict[str, np.ndarray], data: str = "binary") -> Path:
    """Write named columns as a PCD v0.7 file (``ascii`` or ``binary``), atomically.

    Args:
        path: the output file.
        columns: name -> (N,) or (N, C) array of a float32/64 or (u)int8-64 dtype; all of the same N.
        data: ``"binary"`` (little-endian records) or ``"ascii"``.

    Returns:
        The path written.

    Raises:
        ValueError: an empty column set, columns of different lengths, an unsupported dtype or data kind.
    """
    if data not in ("binary", "ascii"):
        raise ValueError(f"data: expected 'binary' or 'ascii', got {data!r}")
    if not columns:
        raise ValueError("columns: expected at least one column")
    arrays = {name: np.asarray(a) for name, a in columns.items()}
    n = {a.shape[0] for a in arrays.values()}
    if len(n) != 1:
        raise ValueError(f"columns: expected equal lengths, got {({k: a.shape for k, a in arrays.items()})}")
    num = n.pop()
    fields, sizes, types, counts, formats = [], [], [], [], []
    for name, arr in arrays.items():
        if arr.ndim not in (1, 2):
            raise ValueError(f"column {name!r}: expected (N,) or (N,C), got {arr.shape}")
        kind = {"f": "F", "i": "I", "u": "U"}.get(arr.dtype.kind)
        if kind is None or (kind, arr.dtype.itemsize) not in _PCD_DTYPES:
            raise ValueError(f"column {name!r}: unsupported dtype {arr.dtype}")
        count = 1 if arr.ndim == 1 else arr.shape[1]
        fields.append(name)
        sizes.append(arr.dtype.itemsize)
        types.append(kind)
        counts.append(count)
        formats.append((name, _PCD_DTYPES[(kind, arr.dtype.itemsize)], () if count == 1 else (count,)))
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(map(str, sizes))}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join(map(str, counts))}\nWIDTH {num}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {num}\n"
        f"DATA {data}\n"
    ).encode("ascii")
    records = np.zeros(num, dtype=formats)
    for name, arr in arrays.items():
        records[name] = arr
    if data == "binary":
        payload = records.tobytes()
    else:
        flat = [np.asarray(arrays[name]).reshape(num, -1) for name in fields]
        rows = [" ".join(repr(v.item()) for part in flat for v in part[i]) for i in range(num)]
        payload = ("\n".join(rows) + ("\n" if rows else "")).encode("ascii")
    return atomic_write_bytes(Path(path), header + payload)


# ----------------------------------------------------------------------------------------------------------------
# PLY
# ----------------------------------------------------------------------------------------------------------------
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}


def read_ply(path: str | Path) -> PointColumns:
    """Read the ``vertex`` element of a PLY file (ascii, binary_little_endian or binary_big_endian).

    Elements before ``vertex`` must have only scalar properties (they are skipped); elements after it are ignored.

    Raises:
        FormatError: a bad header, an unsupported property type, a list property in or before ``vertex``, or a
            payload shorter than the declared vertex count.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    if not raw.startswith(b"ply"):
        raise FormatError(path, "not a PLY file: it does not start with 'ply'")
    lines, data_offset = _header_lines(raw, path, b"end_header", "PLY")
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info", "end_header"):
            continue
        if parts[0] == "format":
            if len(parts) != 3 or parts[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise FormatError(path, f"unsupported PLY format line {line!r}")
            fmt = parts[1]
        elif parts[0] == "element":
            if len(parts) != 3:
                raise FormatError(path, f"bad PLY element line {number}: {line!r}")
            elements.append((parts[1], _int_value(path, f"element {parts[1]} count", parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise FormatError(path, f"PLY property before any element on line {number}")
            if len(parts) == 5 and parts[1] == "list":
                elements[-1][2].append((parts[4], "list"))
            elif len(parts) == 3 and parts[1] in _PLY_TYPES:
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
            else:
                raise FormatError(path, f"unsupported PLY property line {number}: {line!r}")
        else:
            raise FormatError(path, f"unknown PLY header line {number}: {line!r}")
    if fmt is None:
        raise FormatError(path, "PLY header has no format line")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise FormatError(path, "PLY file has no vertex element")
    endian = ">" if fmt == "binary_big_endian" else "<"
    payload = raw[data_offset:]
    skip_bytes, skip_lines = 0, 0
    for name, count, props in elements:
        if any(kind == "list" for _, kind in props):
            raise FormatError(path, f"PLY element {name!r} has a list property; only scalar vertex data is read")
        prop_names = [p for p, _ in props]
        if len(set(prop_names)) != len(prop_names):
            raise FormatError(path, f"PLY element {name!r} repeats a property name: {prop_names}")
        dtype = np.dtype([(p, endian + kind) for p, kind in props])
        if name != "vertex":
            skip_bytes += count * dtype.itemsize
            skip_lines += count
            continue
        if fmt == "ascii":
            columns = _read_ply_ascii(payload, skip_lines, count, props, path)
        else:
            needed = skip_bytes + count * dtype.itemsize
            if len(payload) < needed:
                raise FormatError(path, f"PLY payload has {len(payload)} bytes, {needed} needed for {count} vertices")
            records = np.frombuffer(payload, dtype=dtype, count=count, offset=skip_bytes)
            columns = {p: records[p].astype(records[p].dtype.newbyteorder("=")) for p in prop_names}
        return PointColumns(path, columns, count)
    raise FormatError(path, "PLY file has no vertex element")


def _read_ply_ascii(payload: bytes, skip_lines: int, count: int, props: list[tuple[str, str]], path: Path):
    try:
        lines = payload.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise FormatError(path, "ascii PLY payload is not ASCII text") from None
    rows = [line.split() for line in lines[skip_lines:skip_lines + count]]
    if len(rows) != count or any(len(r) != len(props) for r in rows):
        raise FormatError(path, f"ascii PLY payload does not hold {count} vertex lines of {len(props)} values")
    table = np.asarray(rows, dtype=object).reshape(count, len(props))
    columns = {}
    for j, (name, kind) in enumerate(props):
        try:
            values = table[:, j].astype(np.float64 if kind.startswith("f") else np.int64)
        except (ValueError, OverflowError):
            raise FormatError(path, f"ascii PLY property {name!r} has a value that is not a number") from None
        columns[name] = values.astype(kind, casting="unsafe")
    return columns


# ----------------------------------------------------------------------------------------------------------------
# KITTI-style .bin
# ----------------------------------------------------------------------------------------------------------------
def read_bin(path: str | Path, num_columns: int = 4) -> PointColumns:
    """Read a flat float32 ``(N, num_columns)`` file: ``x y z intensity`` (KITTI, 4) or ``+ ring`` (nuScenes, 5).

    Raises:
        FormatError: unreadable, or a size that is not a whole number of records.
    """
    path = Path(path)
    if num_columns not in (3, 4, 5):
        raise ValueError(f"num_columns: expected 3, 4 or 5, got {num_columns}")
    raw = read_file_bytes(path)
    record = 4 * num_columns
    if len(raw) % record:
        raise FormatError(path, f"size {len(raw)} bytes is not a multiple of {record} ({num_columns} float32 per "
                                "point)")
    table = np.frombuffer(raw, dtype="<f4").reshape(-1, num_columns)
    names = ("x", "y", "z", "intensity", "ring")[:num_columns]
    return PointColumns(path, {n: table[:, j].copy() for j, n in enumerate(names)}, len(table))


def read_point_file(path: str | Path, bin_columns: int = 4) -> PointColumns:
    """Read a ``.pcd``, ``.ply`` or ``.bin`` file by its suffix.

    Raises:
        FormatError: an unknown suffix or an unreadable file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pcd":
        return read_pcd(path)
    if suffix == ".ply":
        return read_ply(path)
    if suffix == ".bin":
        return read_bin(path, bin_columns)
    raise FormatError(path, f"unknown point cloud suffix {path.suffix!r}; expected one of {SWEEP_SUFFIXES}")


# ----------------------------------------------------------------------------------------------------------------
# columns -> lidar points
# ----------------------------------------------------------------------------------------------------------------
def _first(columns: dict[str, np.ndarray], names: tuple[str, ...]) -> tuple[str, np.ndarray] | None:
    lowered = {k.lower(): k for k in columns}
    for name in names:
        if name in lowered:
            return lowered[name], columns[lowered[name]]
    return None


def _point_offsets_s(columns: dict[str, np.ndarray], timestamp_ns: int | None, path: Path) -> np.ndarray | None:
    """Per-point times relative to the sweep timestamp, seconds (float64), or None without a time field."""
    rel_s = _first(columns, ("t_offset_s", "time"))
    if rel_s is not None:
        return rel_s[1].astype(np.float64)
    rel_ns = _first(columns, ("t", "offset_time"))
    if rel_ns is not None:
        return rel_ns[1].astype(np.float64) * 1e-9
    absolute = _first(columns, ("timestamp",))
    if absolute is None:
        return None
    stamp_s = absolute[1].astype(np.float64)
    if len(stamp_s) == 0:
        return stamp_s
    if not np.isfinite(stamp_s).all():
        raise FormatError(path, f"field {absolute[0]!r} has non-finite per-point times")
    span_s = float(stamp_s.max() - stamp_s.min())
    if span_s > MAX_SWEEP_SPAN_S:
        raise FormatError(path, f"field {absolute[0]!r} spans {span_s:.3g} s, more than one sweep "
                                f"({MAX_SWEEP_SPAN_S} s)")
    if timestamp_ns is not None:
        offset = stamp_s - timestamp_ns * 1e-9
        if np.all(np.abs(offset) <= 1.0):
            return offset
    # The file name's time is not on the points' clock: the sweep time is taken as its earliest point.
    logger.info("%s: per-point 'timestamp' is not on the sweep's clock; offsets are relative to the first point", path)
    return stamp_s - np.nanmin(stamp_s)


def columns_to_lidar_points(
    columns: dict[str, np.ndarray], path: str | Path, timestamp_ns: int | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map named point columns to the drive's lidar layout.

    Args:
        columns: name -> (N,) arrays (multi-count columns are ignored), as read from a file or a PointCloud2.
        path: the source, for error messages.
        timestamp_ns: the sweep's time, to make absolute per-point ``timestamp`` values relative.

    Returns:
        ``points (P, F) float32`` in the sensor frame and ``fields`` (``x y z intensity [ring] [t_offset_s]``).
        Rows with non-finite x, y or z are dropped.

    Raises:
        FormatError: no x, y or z column.
    """
    path = Path(path)
    scalar = {k: v for k, v in columns.items() if np.ndim(v) == 1}
    xyz = []
    for axis in ("x", "y", "z"):
        found = _first(scalar, (axis,))
        if found is None:
            raise FormatError(path, f"no {axis!r} field; fields are {sorted(columns)}")
        xyz.append(found[1])
    n = len(xyz[0])
    intensity = _first(scalar, INTENSITY_NAMES)
    parts = [*xyz, intensity[1] if intensity is not None else np.zeros(n, np.float32)]
    fields = ["x", "y", "z", "intensity"]
    ring = _first(scalar, RING_NAMES)
    if ring is not None:
        parts.append(ring[1])
        fields.append("ring")
    offsets = _point_offsets_s(scalar, timestamp_ns, path)
    if offsets is not None:
        parts.append(offsets)
        fields.append("t_offset_s")
    points = np.empty((n, len(parts)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf and are reported below
        for j, part in enumerate(parts):
            points[:, j] = part
    finite = np.isfinite(points[:, :3]).all(axis=1)
    if not finite.all():
        logger.debug("%s: dropping %d points with non-finite coordinates", path, int((~finite).sum()))
        points = points[finite]
    bad = ~np.isfinite(points[:, 3:])
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise FormatError(path, f"field {fields[3 + j]!r} of point {i} is not a finite float32: {points[i, 3 + j]}")
    return points, tuple(fields)


def read_sweep(path: str | Path, timestamp_ns: int | None = None, bin_columns: int = 4):
    """Read one point cloud file as lidar points: :func:`read_point_file` then :func:`columns_to_lidar_points`.

    Returns:
        ``(points (P, F) float32 in the sensor frame, fields)``.

    Raises:
        FormatError: see the readers.
    """
    cloud = read_point_file(path, bin_columns)
    return columns_to_lidar_points(cloud.columns, cloud.path, timestamp_ns)


# ----------------------------------------------------------------------------------------------------------------
# folder importer
# ----------------------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
# Epoch times from 2001 on in each unit: seconds, milliseconds, microseconds, nanoseconds.
_EPOCH_SCALES_NS = ((1e17, 1), (1e14, 1_000), (1e11, 1_000_000), (1e9, 1_000_000_000))


def sweep_timestamps_ns(names: list[str], rate_hz: float = 10.0) -> tuple[np.ndarray, str]:
    """Timestamps for sweep files from their stems.

    Numeric stems in one epoch unit (seconds since 2001 or later, or ms, us, ns), strictly increasing, give
    their times; anything else is spaced at ``rate_hz`` from 0.

    Returns:
        ``(timestamps_ns (S,) int64, how)`` with ``how`` naming the rule used.
    """
    stems = [Path(n).stem for n in names]
    if stems and all(_NUMBER.match(s) for s in stems):
        values = [float(s) for s in stems]
        for lower, scale in _EPOCH_SCALES_NS:
            if all(lower <= v < lower * 1000 for v in values):
                if scale == 1:
                    stamps = np.array([int(s.split(".")[0]) for s in stems], dtype=np.int64)
                else:
                    stamps = np.array([round(float(s) * scale) for s in stems], dtype=np.int64)
                if len(stamps) < 2 or np.all(np.diff(stamps) > 0):
                    unit = {1: "ns", 1_000: "us", 1_000_000: "ms", 1_000_000_000: "s"}[scale]
                    return stamps, f"file names in {unit}"
    period_ns = round(1e9 / rate_hz)
    return np.arange(len(names), dtype=np.int64) * period_ns, f"{rate_hz:g} Hz from the file order"


def _sort_key(path: Path):
    stem = path.stem
    return (0, float(stem), "") if _NUMBER.match(stem) else (1, 0.0, path.name)


def list_sweep_files(folder: str | Path) -> list[Path]:
    """The ``.pcd``/``.ply``/``.bin`` files of a folder, numeric names in numeric order, others by name.

    Raises:
        FormatError: not a folder, or no sweep file in it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(folder, "not a folder of point cloud files")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SWEEP_SUFFIXES), key=_sort_key)
    if not files:
        raise FormatError(folder, f"no point cloud files ({', '.join(SWEEP_SUFFIXES)}) in the folder")
    return files


def import_pcd(
    src: Path,
    out: Path,
    *,
    overwrite: bool = False,
    lidar_name: str = "lidar",
    rate_hz: float = 10.0,
    bin_columns: int = 4,
    name: str | None = None,
) -> Drive:
    """Import a folder of PCD/PLY/BIN sweeps as a drive with one lidar and no poses.

    Args:
        src: the folder; every ``.pcd``, ``.ply`` and ``.bin`` file is a sweep.
        out: the ``.drive`` folder to create.
        overwrite: replace an existing drive.
        lidar_name: the sensor name.
        rate_hz: sweep rate used when the file names are not timestamps.
        bin_columns: float32 values per point in ``.bin`` files (4: KITTI, 5: nuScenes).
        name: drive name; the folder name by default.

    Returns:
        The opened drive. Points stay in the sensor frame; ``ego_SE3_lidar`` is the identity and the drive has no
        poses (``metadata["poses"]`` says so).

    Raises:
        FormatError: no sweep files, or any unreadable file (named).
    """
    from sensorlabel.drive import Drive, SensorCalibration
    from sensorlabel.formats import progress
    from sensorlabel.geometry import SE3

    src, out = Path(src), Path(out)
    files = list_sweep_files(src)
    stamps, how = sweep_timestamps_ns([f.name for f in files], rate_hz)
    sensors = {lidar_name: SensorCalibration(lidar_name, "lidar", SE3.identity())}
    metadata = {
        "source": str(src), "timestamps": how, "poses": "none: every sweep is in its own sensor frame",
        "ego_frame": f"the {lidar_name} frame",
    }
    with Drive.create(out, name=name or src.name, source_format="pcd", sensors=sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        sweeps = read_ahead(lambda item: read_sweep(item[0], int(item[1]), bin_columns), list(zip(files, stamps)),
                            files=lambda item: item[:1])
        for stamp, (points, fields) in progress(zip(stamps, sweeps), total=len(files), desc=f"import {src.name}"):
            writer.append_lidar_sweep(lidar_name, points, fields, int(stamp))
        return writer.finalize()
