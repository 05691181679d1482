"""KITTI object, tracking and raw: calibration and label text, box conversions, importers and exporters.

Reference: Geiger, Lenz, Urtasun, "Are we ready for autonomous driving? The KITTI vision benchmark suite", CVPR 2012;
Geiger, Lenz, Stiller, Urtasun, "Vision meets robotics: the KITTI dataset", IJRR 2013 (raw data and OXTS).

Frames
------
* ``velo``: the Velodyne HDL-64 frame (x forward, y left, z up). It is the **ego frame** of every drive imported from
  KITTI: points are stored in it unchanged and boxes are stored in it. When OXTS poses exist they are moved onto it
  (``world_SE3_velo = world_SE3_imu ∘ inverse(velo_SE3_imu)``), so ``world_SE3_ego`` is the Velodyne's pose.
* ``cam``: the unrectified camera 0 frame, ``cam_SE3_velo`` = ``Tr_velo_to_cam`` (tracking files: ``Tr_velo_cam``).
* ``rect``: the rectified camera 0 frame (x right, y down, z forward), ``rect_SE3_velo = R0_rect ∘ Tr_velo_to_cam``
  (``R0_rect`` is ``R_rect`` in tracking files). Labels live here; ``P2`` projects rect points into image 2.

Rotations in calibration files are printed to 7-10 significant digits, so they are orthonormal only to ~1e-7. They
are projected onto the nearest rotation (SVD) when read, after checking they are within 1e-5 of one; without this,
``inverse() ∘ forward`` would not be the identity and a 50 m box would drift by ~5e-6 m on each round trip.

Label conversion (done once, at the boundary)
---------------------------------------------
A KITTI label holds ``h w l`` (height, width, length, metres), ``location = (x, y, z)`` = the **bottom centre** of the
box in ``rect``, and ``ry`` = the rotation about rect's y axis (pointing down). The object's length axis points along
``(cos ry, 0, -sin ry)`` in rect. The internal box (:class:`~sensorlabel.geometry.boxes.Boxes`) is::

    center_rect = location - (0, h/2, 0)                 # y points down, so the centre is h/2 above the bottom
    lwh_m       = (l, w, h)
    rect_R_object = [x_obj | y_obj | z_obj] with
        x_obj = ( cos ry, 0, -sin ry)                     # heading (length axis)
        y_obj = ( sin ry, 0,  cos ry)                     # = z_obj x x_obj (left of the heading)
        z_obj = ( 0,     -1,  0     )                     # up = -y_rect

and in the Velodyne (ego) frame ``boxes_velo = boxes_rect.transform(inverse(rect_SE3_velo))``. The inverse, for a box
in velo: ``boxes_rect = boxes_velo.transform(rect_SE3_velo)``, ``ry = atan2(-R[2,0], R[0,0])`` of its rotation
(the heading projected onto rect's x-z plane: KITTI boxes are upright in rect, so the ~0.5 deg tilt between Velodyne
up and rect up of a box that is upright in velo is dropped, as KITTI itself does), ``location = center + (0, h/2, 0)``.
For boxes that came from KITTI the round trip is exact to 1e-12. For a box near rect's x axis this gives
``yaw_velo ≈ -ry - pi/2`` (mmdetection3d's formula), which holds exactly only when velo and rect are aligned.

Exported values that KITTI derives from the 3D box, when no source value is kept:
``alpha = wrap(ry - atan2(x, z))`` (observation angle), the 2D box = the bounds of the 8 corners in front of the
camera projected through ``P2``, clipped to the image, and ``truncated = 1 - clipped area / unclipped area``.

Text precision (as the KITTI files print it): tracking lines ``%d %d %s %d %d`` then ``%f`` for the 12 floats;
object lines ``%s %.2f %d`` then ``%.2f``; object DontCare lines print their placeholders without decimals
(``DontCare -1 -1 -10 x1 y1 x2 y2 -1 -1 -1 -1000 -1000 -1000 -10``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.errors import FormatError
from sensorlabel.formats import atomic_write_bytes
from sensorlabel.formats.fileio import (
    image_file_size,
    read_ahead,
    read_file_bytes,
    read_float32_records,
    read_nonempty_bytes,
)
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.lie import wrap_angle
from sensorlabel.geometry.se3 import SE3

logger = logging.getLogger(__name__)

#: Time between KITTI frames (tracking sequences and raw drives are recorded at 10 Hz).
KITTI_FRAME_PERIOD_NS = 100_000_000
DONT_CARE = "DontCare"
_ROTATION_TOL = 1e-5

# Calibration keys: tracking files (and some tools) use other names for the same matrices.
_CALIB_ALIASES = {
    "R_rect": "R0_rect",
    "R0": "R0_rect",
    "Tr_velo_cam": "Tr_velo_to_cam",
    "Tr_imu_velo": "Tr_imu_to_velo",
}
_CALIB_SIZES = {"P0": 12, "P1": 12, "P2": 12, "P3": 12, "R0_rect": 9, "Tr_velo_to_cam": 12, "Tr_imu_to_velo": 12}


# ======================================================================================================================
# Text helpers
# ======================================================================================================================
def _read_text(path: Path) -> str:
    """The whole file as text. Raises FormatError when missing, unreadable or not UTF-8."""
    data = read_file_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None


def _floats(path: Path, where: str, tokens: list[str]) -> np.ndarray:
    """Parse tokens as finite float64; FormatError naming ``where`` and the bad token."""
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise FormatError(path, f"{where}: not a number: {bad!r}") from None
    if not np.isfinite(values).all():
        bad = tokens[int(np.flatnonzero(~np.isfinite(values))[0])]
        raise FormatError(path, f"{where}: not a finite number: {bad!r}")
    return values


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _nearest_rotation(path: Path, key: str, matrix: np.ndarray) -> np.ndarray:
    """Project an almost-orthonormal (3,3) matrix onto SO(3); FormatError when it is not within 1e-5 of one."""
    err = float(np.abs(matrix.T @ matrix - np.eye(3)).max())
    det = float(np.linalg.det(matrix))
    if err > _ROTATION_TOL or det <= 0:
        raise FormatError(
            path, f"{key}: rotation is not orthonormal (max |R^T R - I| = {err:.3g}, det = {det:.6g}): {matrix.tolist()}"
        )
    u, _, vt = np.linalg.svd(matrix)
    return u @ vt


def _rigid(path: Path, key: str, values: np.ndarray) -> SE3:
    """A (3,4) row-major [R|t] from 12 numbers as an SE3, with the rotation projected onto SO(3)."""
    m = values.reshape(3, 4)
    return SE3(_nearest_rotation(path, key, m[:, :3]), m[:, 3].copy())


# ======================================================================================================================
# Calibration
# ======================================================================================================================
@dataclass(frozen=True, eq=False)
class KittiCalib:
    """KITTI calibration of one frame (object) or one sequence (tracking, raw).

    Attributes:
        P0, P1, P2, P3: (3,4) float64 projection matrices of cameras 0-3 from rect coordinates to pixels
            (``uvw = P @ [x, y, z, 1]``); P2 is the left colour camera.
        R0_rect: (3,3) float64 rectifying rotation, ``rect_R_cam`` (orthonormalised).
        cam_SE3_velo: Velodyne to unrectified camera 0 (``Tr_velo_to_cam``).
        velo_SE3_imu: IMU/GPS (OXTS) to Velodyne (``Tr_imu_to_velo``), None when the file has none.
    """

    P0: np.ndarray
    P1: np.ndarray
    P2: np.ndarray
    P3: np.ndarray
    R0_rect: np.ndarray
    cam_SE3_velo: SE3
    velo_SE3_imu: SE3 | None = None

    @property
    def rect_SE3_velo(self) -> SE3:
        """Velodyne to rectified camera 0: ``R0_rect ∘ Tr_velo_to_cam``."""
        return SE3(self.R0_rect, np.zeros(3)).compose(self.cam_SE3_velo)

    def projection(self, camera: int) -> np.ndarray:
        """(3,4) projection matrix ``P<camera>`` (0..3)."""
        return (self.P0, self.P1, self.P2, self.P3)[camera]

    def to_dict(self) -> dict:
        """JSON-friendly nested lists (for drive metadata); inverse of :meth:`from_dict`."""
        out = {f"P{i}": self.projection(i).tolist() for i in range(4)}
        out["R0_rect"] = self.R0_rect.tolist()
        out["Tr_velo_to_cam"] = self.cam_SE3_velo.as_matrix()[:3].tolist()
        if self.velo_SE3_imu is not None:
            out["Tr_imu_to_velo"] = self.velo_SE3_imu.as_matrix()[:3].tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict, path: str | os.PathLike = "<metadata>") -> KittiCalib:
        """Rebuild from :meth:`to_dict` output. Raises FormatError (naming ``path``) on missing or bad entries."""
        values = {}
        for key, size in _CALIB_SIZES.items():
            if key not in data:
                continue
            try:
                arr = np.asarray(data[key], dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise FormatError(path, f"calibration {key}: not numeric: {data[key]!r}") from None
            if arr.size != size or not np.isfinite(arr).all():
                raise FormatError(path, f"calibration {key}: expected {size} finite numbers, got {arr.tolist()}")
            values[key] = arr
        return _calib_from_values(Path(path), values)


def _calib_from_values(path: Path, values: dict[str, np.ndarray]) -> KittiCalib:
    missing = [k for k in ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam") if k not in values]
    if missing:
        raise FormatError(path, f"calibration lacks {', '.join(missing)} (has {', '.join(sorted(values)) or 'nothing'})")
    imu = values.get("Tr_imu_to_velo")
    return KittiCalib(
        P0=values["P0"].reshape(3, 4),
        P1=values["P1"].reshape(3, 4),
        P2=values["P2"].reshape(3, 4),
        P3=values["P3"].reshape(3, 4),
        R0_rect=_nearest_rotation(path, "R0_rect", values["R0_rect"].reshape(3, 3)),
        cam_SE3_velo=_rigid(path, "Tr_velo_to_cam", values["Tr_velo_to_cam"]),
        velo_SE3_imu=None if imu is None else _rigid(path, "Tr_imu_to_velo", imu),
    )


def read_kitti_calib(path: str | os.PathLike) -> KittiCalib:
    """Read a KITTI object (``P2: ...``) or tracking (``R_rect ...``, ``Tr_velo_cam ...``) calibration file.

    Args:
        path: the calib text file.

    Returns:
        The calibration; rotations projected onto SO(3).

    Raises:
        FormatError: unreadable file, a line without a key, a known key with the wrong count of numbers or a
            non-number, a missing matrix, or a rotation further than 1e-5 from orthonormal (naming key and value).
    """
    path = Path(path)
    values: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        key = tokens[0].rstrip(":")
        key = _CALIB_ALIASES.get(key, key)
        if key not in _CALIB_SIZES:
            continue  # e.g. Tr_cam_to_road; unknown keys are not ours to judge
        numbers = _floats(path, f"line {lineno} {key}", tokens[1:])
        if numbers.size != _CALIB_SIZES[key]:
            raise FormatError(path, f"line {lineno} {key}: expected {_CALIB_SIZES[key]} numbers, got {numbers.size}")
        values[key] = numbers
    return _calib_from_values(path, values)


def write_kitti_calib(path: str | os.PathLike, calib: KittiCalib) -> Path:
    """Write an object-style calib file (``P0:`` .. ``Tr_imu_to_velo:``, ``%.12e``), atomically. Returns the path."""
    rows = {f"P{i}": calib.projection(i).reshape(-1) for i in range(4)}
    rows["R0_rect"] = calib.R0_rect.reshape(-1)
    rows["Tr_velo_to_cam"] = calib.cam_SE3_velo.as_matrix()[:3].reshape(-1)
    if calib.velo_SE3_imu is not None:
        rows["Tr_imu_to_velo"] = calib.velo_SE3_imu.as_matrix()[:3].reshape(-1)
    text = "".join(f"{k}: " + " ".join(f"{v:.12e}" for v in vals) + "\n" for k, vals in rows.items())
    return atomic_write_bytes(path, text.encode("utf-8"))


# ======================================================================================================================
# Labels
# ======================================================================================================================
@dataclass(frozen=True, eq=False)
class KittiLabelTable:
    """KITTI label rows as a struct of arrays, values as in the file (rect frame, bottom centre).

    Attributes:
        frame: (N,) int64 frame index (0 for object labels unless given).
        track_id: (N,) int64 track id; -1 for DontCare and for object labels.
        type: (N,) str class (``Car``, ``Pedestrian``, ..., ``DontCare``).
        truncated: (N,) float64 (object: fraction 0..1; tracking: level 0, 1, 2; -1 for DontCare).
        occluded: (N,) int64 0 visible .. 3 unknown; -1 for DontCare.
        alpha: (N,) float64 observation angle, radians.
        bbox_2d_px: (N,4) float64 ``x1 y1 x2 y2`` in image 2, pixels.
        hwl_m: (N,3) float64 height, width, length as in the file.
        location_rect_m: (N,3) float64 bottom centre in rect coordinates.
        rotation_y_rad: (N,) float64 ``ry``.
        score: (N,) float64 detection score; NaN when the file has none (ground truth).
    """

    frame: np.ndarray
    track_id: np.ndarray
    type: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray
    alpha: np.ndarray
    bbox_2d_px: np.ndarray
    hwl_m: np.ndarray
    location_rect_m: np.ndarray
    rotation_y_rad: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        n = len(np.asarray(self.frame))
        spec = {
            "frame": (np.int64, ()), "track_id": (np.int64, ()), "type": (str, ()), "truncated": (np.float64, ()),
            "occluded": (np.int64, ()), "alpha": (np.float64, ()), "bbox_2d_px": (np.float64, (4,)),
            "hwl_m": (np.float64, (3,)), "location_rect_m": (np.float64, (3,)), "rotation_y_rad": (np.float64, ()),
            "score": (np.float64, ()),
        }
        for name, (dtype, tail) in spec.items():
            arr = np.asarray(getattr(self, name), dtype=dtype)
            if arr.shape != (n,) + tail:
                raise ValueError(f"{name}: expected {(n,) + tail}, got {arr.shape}")
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index) -> KittiLabelTable:
        """Rows selected by a boolean mask, an index array or a slice."""
        return KittiLabelTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def empty(cls) -> KittiLabelTable:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, str), np.zeros(0), np.zeros(0, np.int64),
                   np.zeros(0), np.zeros((0, 4)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: list[KittiLabelTable]) -> KittiLabelTable:
        """Rows of all parts in order; an empty list gives an empty table."""
        if not parts:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @property
    def is_dont_care(self) -> np.ndarray:
        """(N,) bool: DontCare rows (regions without 3D boxes)."""
        return self.type == DONT_CARE


def _parse_label_rows(path: Path, text: str, tracking: bool, frame: int) -> KittiLabelTable:
    """Parse label lines. Tracking: 17 or 18 tokens, object: 15 or 16 (the last one is a score)."""
    lead = 2 if tracking else 0
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) not in (lead + 15, lead + 16):
            raise FormatError(path, f"line {lineno}: expected {lead + 15} or {lead + 16} fields, got {len(tokens)}")
        rows.append((lineno, tokens))
    n = len(rows)
    if n == 0:
        return KittiLabelTable.empty()
    has_score = [len(t) == lead + 16 for _, t in rows]
    if any(has_score) and not all(has_score):
        lineno = rows[has_score.index(not has_score[0])][0]
        raise FormatError(path, f"line {lineno}: some lines have a score column and some do not")
    width = lead + (16 if has_score[0] else 15)
    tokens = np.array([t for _, t in rows], dtype=object).reshape(n, width)
    linenos = [r[0] for r in rows]

    def numeric(col: int, name: str) -> np.ndarray:
        column = tokens[:, col].astype(str)
        try:
            values = column.astype(np.float64)
        except ValueError:
            i = next(i for i, t in enumerate(column) if not _is_float(t))
            raise FormatError(path, f"line {linenos[i]}: {name} is not a number: {str(column[i])!r}") from None
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FormatError(path, f"line {linenos[i]}: {name} is not finite: {str(column[i])!r}")
        return values

    def integer(col: int, name: str, low: int, high: int | None = None) -> np.ndarray:
        values = numeric(col, name)
        bad = (values != np.round(values)) | (values < low) | ((values > high) if high is not None else False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise FormatError(path, f"line {linenos[i]}: {name} must be an integer {span}, got {str(tokens[i, col])!r}")
        return values.astype(np.int64)

    if tracking:
        frames = integer(0, "frame", 0, 10**9)
        track_id = integer(1, "track_id", -1, 10**9)
    else:
        frames = np.full(n, frame, np.int64)
        track_id = np.full(n, -1, np.int64)
    types = tokens[:, lead].astype(str)
    truncated = numeric(lead + 1, "truncated")
    occluded = integer(lead + 2, "occluded", -1, 3)
    alpha = numeric(lead + 3, "alpha")
    bbox = np.stack([numeric(lead + 4 + k, f"bbox[{k}]") for k in range(4)], axis=1)
    hwl = np.stack([numeric(lead + 8 + k, "hwl"[k]) for k in range(3)], axis=1)
    loc = np.stack([numeric(lead + 11 + k, "xyz"[k]) for k in range(3)], axis=1)
    ry = numeric(lead + 14, "rotation_y")
    score = numeric(lead + 15, "score") if has_score[0] else np.full(n, np.nan)
    boxed = types != DONT_CARE
    bad = boxed & (hwl <= 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FormatError(path, f"line {linenos[i]}: {types[i]} box with non-positive size h w l = {hwl[i].tolist()}")
    return KittiLabelTable(frames, track_id, types, truncated, occluded, alpha, bbox, hwl, loc, ry, score)


def read_kitti_tracking_labels(path: str | os.PathLike) -> KittiLabelTable:
    """Read a tracking ``label_02/SEQ.txt`` (or a tracking result file with an 18th score column).

    Line: ``frame track_id type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]``.

    Raises:
        FormatError: unreadable file, wrong field count, non-numbers, negative frame, a box with a
            non-positive size (naming the line and the value).
    """
    path = Path(path)
    return _parse_label_rows(path, _read_text(path), tracking=True, frame=0)


def read_kitti_object_labels(path: str | os.PathLike, frame: int = 0) -> KittiLabelTable:
    """Read an object ``label_2/NNNNNN.txt`` (or a detection result with a 16th score column).

    Args:
        path: the label file.
        frame: frame index given to every row.

    Raises:
        FormatError: as :func:`read_kitti_tracking_labels`.
    """
    path = Path(path)
    return _parse_label_rows(path, _read_text(path), tracking=False, frame=frame)


def _compact(value: float) -> str:
    """``%.2f`` without trailing zeros (KITTI's DontCare placeholders: -1, -10, -1000)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_kitti_tracking_lines(table: KittiLabelTable) -> list[str]:
    """Label lines in KITTI tracking precision (``%d %d %s %d %d`` then 12 x ``%f`` [score ``%f``])."""
    score = np.isfinite(table.score)
    out = []
    for i in range(len(table)):
        head = f"{table.frame[i]} {table.track_id[i]} {table.type[i]} {int(round(table.truncated[i]))} {table.occluded[i]}"
        nums = [table.alpha[i], *table.bbox_2d_px[i], *table.hwl_m[i], *table.location_rect_m[i], table.rotation_y_rad[i]]
        if score[i]:
            nums.append(table.score[i])
        out.append(head + " " + " ".join(f"{v:f}" for v in nums))
    return out


def format_kitti_object_lines(table: KittiLabelTable) -> list[str]:
    """Label lines in KITTI object precision (``%s %.2f %d`` then ``%.2f``; DontCare placeholders compact)."""
    out = []
    score = np.isfinite(table.score)
    for i in range(len(table)):
        bbox = " ".join(f"{v:.2f}" for v in table.bbox_2d_px[i])
        geo = [*table.hwl_m[i], *table.location_rect_m[i], table.rotation_y_rad[i]]
        if table.type[i] == DONT_CARE:
            line = (f"{DONT_CARE} {_compact(table.truncated[i])} {table.occluded[i]} {_compact(table.alpha[i])} {bbox} "
                    + " ".join(_compact(v) for v in geo))
        else:
            line = (f"{table.type[i]} {table.truncated[i]:.2f} {table.occluded[i]} {table.alpha[i]:.2f} {bbox} "
                    + " ".join(f"{v:.2f}" for v in geo))
        if score[i]:
            line += f" {table.score[i]:.4f}"
        out.append(line)
    return out


def write_kitti_tracking_labels(path: str | os.PathLike, table: KittiLabelTable) -> Path:
    """Write a tracking label file (rows in the table's order), atomically. Returns the path."""
    lines = format_kitti_tracking_lines(table)
    return atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def write_kitti_object_labels(path: str | os.PathLike, table: KittiLabelTable) -> Path:
    """Write one object label file (rows in the table's order; the frame column is not written). Returns the path."""
    lines = format_kitti_object_lines(table)
    return atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))


# ======================================================================================================================
# Box conversions
# ======================================================================================================================
def _rect_R_object(ry: np.ndarray) -> np.ndarray:
    """(N,3,3) rotation with columns: heading (cos ry, 0, -sin ry), left (sin ry, 0, cos ry), up (0, -1, 0)."""
    c, s = np.cos(ry), np.sin(ry)
    z = np.zeros_like(ry)
    rot = np.empty((len(ry), 3, 3))
    rot[:, :, 0] = np.stack([c, z, -s], axis=1)
    rot[:, :, 1] = np.stack([s, z, c], axis=1)
    rot[:, :, 2] = np.stack([z, z - 1.0, z], axis=1)
    return rot


def kitti_to_boxes_rect(table: KittiLabelTable) -> Boxes:
    """Boxes in rect coordinates with geometric centres (see the module docstring for the formula).

    Args:
        table: label rows without DontCare rows (they have no 3D box).

    Returns:
        Boxes in rect: track_id from the table, label = type, score = the table's score (1 where absent).

    Raises:
        ValueError: a row with a non-positive size (e.g. a DontCare row left in).
    """
    h, w, l = table.hwl_m[:, 0], table.hwl_m[:, 1], table.hwl_m[:, 2]
    center = table.location_rect_m - np.stack([np.zeros_like(h), h / 2.0, np.zeros_like(h)], axis=1)
    if len(table) == 0:
        return Boxes.empty()
    quat_xyzw = Rotation.from_matrix(_rect_R_object(table.rotation_y_rad)).as_quat()
    score = np.where(np.isfinite(table.score), table.score, 1.0)
    return Boxes(center, np.stack([l, w, h], axis=1), quat_xyzw[:, [3, 0, 1, 2]], table.track_id, table.type, score)


def kitti_to_boxes_velo(table: KittiLabelTable, calib: KittiCalib) -> Boxes:
    """Boxes in the Velodyne (ego) frame: ``kitti_to_boxes_rect(table).transform(inverse(rect_SE3_velo))``."""
    return kitti_to_boxes_rect(table).transform(calib.rect_SE3_velo.inverse())


def project_boxes_to_image(
    boxes_rect: Boxes, P: np.ndarray, image_size_px: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Image bounds of boxes' corners projected through a KITTI projection matrix.

    Corners behind the near plane (z <= 0.1 m) are ignored; a box with no corner in front gets zeros.

    Args:
        boxes_rect: N boxes in rect coordinates.
        P: (3,4) projection matrix (e.g. P2).
        image_size_px: (width, height); when given the bounds are clipped to [0, width-1] x [0, height-1].

    Returns:
        (bbox_2d_px (N,4) x1 y1 x2 y2 (clipped when a size is given), truncated (N,) = 1 - clipped area /
        unclipped area; 0 without an image size).
    """
    n = len(boxes_rect)
    if n == 0:
        return np.zeros((0, 4)), np.zeros(0)
    corners = boxes_rect.corners()  # (N,8,3)
    homog = np.concatenate([corners, np.ones((n, 8, 1))], axis=2) @ P.T
    front = corners[:, :, 2] > 0.1
    uv = homog[:, :, :2] / np.where(front, homog[:, :, 2], 1.0)[:, :, None]
    lo = np.where(front[:, :, None], uv, np.inf).min(axis=1)
    hi = np.where(front[:, :, None], uv, -np.inf).max(axis=1)
    any_front = front.any(axis=1)
    raw = np.where(any_front[:, None], np.concatenate([lo, hi], axis=1), 0.0)
    if image_size_px is None:
        return raw, np.zeros(n)
    width, height = image_size_px
    limit = np.array([width - 1.0, height - 1.0, width - 1.0, height - 1.0])
    clipped = np.clip(raw, 0.0, limit)
    area_raw = np.prod(np.maximum(raw[:, 2:] - raw[:, :2], 0.0), axis=1)
    area_clip = np.prod(np.maximum(clipped[:, 2:] - clipped[:, :2], 0.0), axis=1)
    truncated = np.where(area_raw > 0, 1.0 - area_clip / np.where(area_raw > 0, area_raw, 1.0), 1.0)
    return clipped, np.clip(truncated, 0.0, 1.0)


def boxes_rect_to_kitti(
    boxes_rect: Boxes,
    frame: np.ndarray | int = 0,
    calib: KittiCalib | None = None,
    image_size_px: tuple[int, int] | None = None,
) -> KittiLabelTable:
    """Label rows from boxes in rect coordinates (inverse of :func:`kitti_to_boxes_rect`).

    ``ry = atan2(-R[2,0], R[0,0])``, ``location = center + (0, h/2, 0)``, ``hwl = (h, w, l)``. Derived fields:
    ``alpha = wrap(ry - atan2(x, z))``; with ``calib`` the 2D box and ``truncated`` come from projecting the
    corners through P2 (clipped to ``image_size_px`` when given), else they are zero; ``occluded`` is 0.

    Args:
        boxes_rect: N boxes in rect.
        frame: (N,) or a scalar frame index.
        calib: for the 2D box; optional.
        image_size_px: (width, height) of image 2 for clipping.

    Returns:
        KittiLabelTable with type = boxes.label, track_id = boxes.track_id, score = boxes.score.
    """
    n = len(boxes_rect)
    rot = boxes_rect.rotation
    ry = np.arctan2(-rot[:, 2, 0], rot[:, 0, 0]) if n else np.zeros(0)
    l, w, h = boxes_rect.lwh_m[:, 0], boxes_rect.lwh_m[:, 1], boxes_rect.lwh_m[:, 2]
    location = boxes_rect.center_m + np.stack([np.zeros(n), h / 2.0, np.zeros(n)], axis=1)
    alpha = wrap_angle(ry - np.arctan2(location[:, 0], location[:, 2]))
    if calib is not None:
        bbox, truncated = project_boxes_to_image(boxes_rect, calib.P2, image_size_px)
    else:
        bbox, truncated = np.zeros((n, 4)), np.zeros(n)
    return KittiLabelTable(
        frame=np.broadcast_to(np.asarray(frame, dtype=np.int64), (n,)).copy(),
        track_id=boxes_rect.track_id,
        type=boxes_rect.label,
        truncated=truncated,
        occluded=np.zeros(n, np.int64),
        alpha=alpha,
        bbox_2d_px=bbox,
        hwl_m=np.stack([h, w, l], axis=1),
        location_rect_m=location,
        rotation_y_rad=ry,
        score=boxes_rect.score,
    )


def boxes_velo_to_kitti(
    boxes_velo: Boxes,
    calib: KittiCalib,
    frame: np.ndarray | int = 0,
    image_size_px: tuple[int, int] | None = None,
) -> KittiLabelTable:
    """Label rows from boxes in the Velodyne (ego) frame: :func:`boxes_rect_to_kitti` of
    ``boxes_velo.transform(rect_SE3_velo)``, with the 2D box projected through ``calib.P2``."""
    return boxes_rect_to_kitti(boxes_velo.transform(calib.rect_SE3_velo), frame, calib, image_size_px)


# ======================================================================================================================
# Sensor data: Velodyne sweeps, OXTS poses, raw calibration
# ======================================================================================================================
#: Fields of a KITTI Velodyne sweep (x, y, z in metres, reflectance 0..1), in the drive's lidar field names.
VELODYNE_FIELDS = ("x", "y", "z", "intensity")
_EARTH_RADIUS_M = 6378137.0


def read_kitti_velodyne(path: str | os.PathLike) -> np.ndarray:
    """Read a Velodyne ``.bin`` sweep: little-endian float32 records ``x y z reflectance``.

    Returns:
        (P,4) float32 in the Velodyne frame.

    Raises:
        FormatError: unreadable, empty, a size that is not a whole number of 16-byte records, or non-finite values.
    """
    return read_float32_records(path, ("x", "y", "z", "reflectance"))


def read_oxts(paths: list[Path]) -> np.ndarray:
    """Read OXTS records: one file with one line per frame (tracking) or one file per frame (raw).

    Returns:
        (T,30) float64: lat lon alt roll pitch yaw vn ve vf vl vu ax ay az af al au wx wy wz wf wl wu posacc velacc
        navstat numsats posmode velmode orimode.

    Raises:
        FormatError: unreadable file, a line without 30 numbers, or a non-number (naming file and line).
    """
    rows = []
    for path in paths:
        for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 30:
                raise FormatError(path, f"line {lineno}: expected 30 OXTS values, got {len(tokens)}")
            rows.append(_floats(path, f"line {lineno}", tokens))
    if not rows:
        raise FormatError(paths[0] if paths else Path("oxts"), "no OXTS records")
    return np.stack(rows)


def oxts_to_world_SE3_imu(oxts: np.ndarray) -> tuple[SE3, dict]:
    """IMU poses from OXTS records by the KITTI devkit's Mercator conversion (``convertOxtsToPose.m``,
    Geiger et al., IJRR 2013)::

        scale = cos(lat_0 * pi / 180)                      # Mercator scale of the first record
        t = (scale * lon * pi * R / 180, scale * R * log(tan((90 + lat) * pi / 360)), alt),  R = 6378137 m
        R = Rz(yaw) @ Ry(pitch) @ Rx(roll)
        world_SE3_imu[i] = inverse(T_0) @ T_i               # world = the IMU frame at the first record

    Args:
        oxts: (T,30) records from :func:`read_oxts`.

    Returns:
        (world_SE3_imu batch of T, origin dict with lat_deg, lon_deg, alt_m, scale and the first pose's Mercator
        matrix, for metadata).
    """
    lat, lon, alt = oxts[:, 0], oxts[:, 1], oxts[:, 2]
    scale = float(np.cos(lat[0] * np.pi / 180.0))
    t = np.stack([
        scale * lon * np.pi * _EARTH_RADIUS_M / 180.0,
        scale * _EARTH_RADIUS_M * np.log(np.tan((90.0 + lat) * np.pi / 360.0)),
        alt,
    ], axis=1)
    rot = Rotation.from_euler("ZYX", oxts[:, [5, 4, 3]]).as_matrix()  # intrinsic ZYX = Rz(yaw) Ry(pitch) Rx(roll)
    mercator_SE3_imu = SE3(rot, t)
    world = mercator_SE3_imu[0].inverse().compose(mercator_SE3_imu)
    origin = {"lat_deg": float(lat[0]), "lon_deg": float(lon[0]), "alt_m": float(alt[0]), "mercator_scale": scale,
              "mercator_SE3_world": mercator_SE3_imu[0].as_matrix().tolist()}
    return world, origin


def _read_key_values(path: Path) -> dict[str, list[str]]:
    """``key: v1 v2 ...`` lines (KITTI raw calibration files)."""
    out = {}
    for line in _read_text(path).splitlines():
        key, sep, rest = line.partition(":")
        if sep:
            out[key.strip()] = rest.split()
    return out


def read_kitti_raw_calib(date_dir: str | os.PathLike) -> tuple[KittiCalib, tuple[int, int] | None]:
    """Read a raw drive's ``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt`` and ``calib_imu_to_velo.txt``.

    ``P_rect_0k`` become P0..P3, ``R_rect_00`` becomes R0_rect, ``R``/``T`` of velo_to_cam and imu_to_velo the
    rigid transforms.

    Returns:
        (calibration, (width, height) of the rectified image 2 from ``S_rect_02``, or None).

    Raises:
        FormatError: a missing file or key, or values that are not numbers of the right count.
    """
    date_dir = Path(date_dir)
    cam = date_dir / "calib_cam_to_cam.txt"
    velo = date_dir / "calib_velo_to_cam.txt"
    imu = date_dir / "calib_imu_to_velo.txt"
    cam_kv, velo_kv = _read_key_values(cam), _read_key_values(velo)
    imu_kv = _read_key_values(imu) if imu.is_file() else None

    def get(kv: dict, path: Path, key: str, size: int) -> np.ndarray:
        if key not in kv:
            raise FormatError(path, f"missing {key}")
        values = _floats(path, key, kv[key])
        if values.size != size:
            raise FormatError(path, f"{key}: expected {size} numbers, got {values.size}")
        return values

    values = {f"P{i}": get(cam_kv, cam, f"P_rect_0{i}", 12) for i in range(4)}
    values["R0_rect"] = get(cam_kv, cam, "R_rect_00", 9)
    rt = np.concatenate([get(velo_kv, velo, "R", 9).reshape(3, 3), get(velo_kv, velo, "T", 3)[:, None]], axis=1)
    values["Tr_velo_to_cam"] = rt.reshape(-1)
    if imu_kv is not None:
        rt = np.concatenate([get(imu_kv, imu, "R", 9).reshape(3, 3), get(imu_kv, imu, "T", 3)[:, None]], axis=1)
        values["Tr_imu_to_velo"] = rt.reshape(-1)
    size = get(cam_kv, cam, "S_rect_02", 2) if "S_rect_02" in cam_kv else None
    return _calib_from_values(cam, values), None if size is None else (int(size[0]), int(size[1]))


def kitti_camera_sensor(name: str, P: np.ndarray, calib: KittiCalib, image_size_px: tuple[int, int], path: Path):
    """A camera of the Velodyne-as-ego drive from a rectified projection matrix.

    ``P = K [I | b]`` with ``b = K^-1 P[:, 3]``: the rectified camera sits at ``-b`` in rect, axes parallel to rect,
    so ``ego_SE3_cam = inverse(rect_SE3_velo) ∘ inverse(SE3(I, b))``; the model is an ideal pinhole (rectified).

    Raises:
        FormatError: ``P[:, :3]`` is not an upper-triangular intrinsic matrix with positive focal lengths.
    """
    from sensorlabel.drive.sensors import SensorCalibration
    from sensorlabel.geometry.camera import PinholeCamera

    K = P[:, :3]
    if abs(K[1, 0]) + abs(K[2, 0]) + abs(K[2, 1]) > 1e-9 or abs(K[2, 2] - 1.0) > 1e-9 or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise FormatError(path, f"{name}: projection matrix is not K [I | t] with a KITTI intrinsic K: {P.tolist()}")
    b = np.linalg.solve(K, P[:, 3])
    ego_SE3_cam = calib.rect_SE3_velo.inverse().compose(SE3(np.eye(3), b).inverse())
    camera = PinholeCamera(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), *image_size_px)
    return SensorCalibration(name, "camera", ego_SE3_cam, camera)


def _velodyne_sensor():
    from sensorlabel.drive.sensors import SensorCalibration

    return SensorCalibration("velodyne", "lidar", SE3.identity())


# ======================================================================================================================
# Importers
# ======================================================================================================================
def _check_out(out: Path, overwrite: bool) -> None:
    from sensorlabel.errors import SchemaError

    if out.exists() and not overwrite:
        raise SchemaError(out, "already exists; pass overwrite=True to replace it")


def _numbered_files(folder: Path, suffixes: tuple[str, ...]) -> dict[int, Path]:
    """Files named by a frame number (``000012.bin``) in ``folder``, by number; {} when the folder is absent."""
    if not folder.is_dir():
        return {}
    out = {}
    for f in folder.iterdir():
        if f.suffix.lower() in suffixes and f.stem.isdigit():
            out[int(f.stem)] = f
    return dict(sorted(out.items()))


def _put_labels(drive, frames: np.ndarray, boxes_ego: Boxes) -> None:
    if len(boxes_ego):
        drive.labels.put_boxes(frames, boxes_ego, "imported", confidence=np.clip(boxes_ego.score, 0.0, 1.0),
                               description="import KITTI labels")


def _object_records(src: Path, split: str) -> tuple[str, list[dict]]:
    """Find the frames of a KITTI object folder: (layout name, [{id, calib, label, velodyne, image}])."""
    for root in (src / split, src):
        if (root / "calib").is_dir():
            calibs = {f.stem: f for f in sorted((root / "calib").glob("*.txt"))}
            return "object", [
                {"id": stem, "calib": c, "label": root / "label_2" / f"{stem}.txt",
                 "velodyne": root / "velodyne" / f"{stem}.bin", "image": root / "image_2" / f"{stem}.png"}
                for stem, c in calibs.items()
            ]
    records = []
    for bin_path in sorted(src.glob("*.bin")):
        stem = bin_path.stem
        found = {k: next((p for p in (src / f"{k}_{stem}.txt", src / "derived" / f"{k}_{stem}.txt") if p.is_file()), None)
                 for k in ("calib", "label_2")}
        if found["calib"] is not None:
            records.append({"id": stem, "calib": found["calib"], "label": found["label_2"] or src / "-",
                            "velodyne": bin_path, "image": src / f"{stem}.png"})
    if not records:
        raise FormatError(src, f"not a KITTI object folder: no {split}/calib/, calib/ or NNNNNN.bin with calib_NNNNNN.txt")
    return "mmdet3d", records


def import_kitti_object(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                        split: str = "training", frame_ids: list[str] | None = None):
    """Import KITTI object frames (``training/{velodyne,image_2,calib,label_2}``, or mmdetection3d's single-frame
    layout ``NNNNNN.bin``, ``NNNNNN.png`` with ``[derived/]calib_NNNNNN.txt`` and ``label_2_NNNNNN.txt``).

    Object frames are independent snapshots: drive frame i is the i-th frame id, at i * 100 ms, with no poses. Each
    frame has its own calibration; the ``image_02`` sensor carries the first frame's and every frame's is kept in
    ``metadata["kitti"]["calib"]`` (used by the exporter). Boxes go in the Velodyne (ego) frame, one track each.

    Args:
        src: the dataset folder (holding ``training/``), the split folder, or the mmdetection3d folder.
        out: the ``NAME.drive`` folder to write.
        overwrite: replace an existing drive.
        split: ``training`` or ``testing``.
        frame_ids: import only these ids (e.g. ``["000001"]``); default all.

    Raises:
        FormatError: a missing folder or a file that cannot be read (naming it); SchemaError: ``out`` exists.
    """
    from sensorlabel.drive import Drive
    from sensorlabel.formats import progress

    src, out = Path(src), Path(out)
    _check_out(out, overwrite)
    layout, records = _object_records(src, split)
    if frame_ids is not None:
        wanted = set(frame_ids)
        records = [r for r in records if r["id"] in wanted]
        if len(records) != len(wanted):
            raise FormatError(src, f"frame ids not found: {sorted(wanted - {r['id'] for r in records})}")
    calibs = [read_kitti_calib(r["calib"]) for r in records]
    label_lines, tables = [], []
    for i, r in enumerate(records):
        text = _read_text(r["label"]) if r["label"].is_file() else None
        tables.append(KittiLabelTable.empty() if text is None else
                      _parse_label_rows(r["label"], text, tracking=False, frame=i))
        label_lines.append(None if text is None else text.splitlines())
    # Only the header for the size: the bytes are read once, when they are stored below.
    sizes = [image_file_size(r["image"]) if r["image"].is_file() else None for r in records]
    image_size = next((s for s in sizes if s is not None), None)
    has_velodyne = any(r["velodyne"].is_file() for r in records)
    sensors = {}
    if has_velodyne:
        sensors["velodyne"] = _velodyne_sensor()
    if image_size is not None:
        sensors["image_02"] = kitti_camera_sensor("image_02", calibs[0].P2, calibs[0], image_size, records[0]["calib"])
    varies = any(not np.allclose(c.rect_SE3_velo.as_matrix(), calibs[0].rect_SE3_velo.as_matrix()) or
                 not np.allclose(c.P2, calibs[0].P2) for c in calibs)
    if varies:
        logger.warning("%s: calibration differs between frames; sensor image_02 holds frame %s's, all are in "
                       "metadata['kitti']['calib']", src, records[0]["id"])
    metadata = {"kitti": {
        "layout": layout, "frame_ids": [r["id"] for r in records], "calib": [c.to_dict() for c in calibs],
        "calibration_varies_per_frame": bool(varies), "image_size_px": [list(s) if s else None for s in sizes],
        "label_lines": label_lines, "ego_frame": "velodyne",
    }}
    timestamps = np.arange(len(records), dtype=np.int64) * KITTI_FRAME_PERIOD_NS
    with Drive.create(out, name=out.name.removesuffix(".drive"), source_format="kitti-object", sensors=sensors,
                      overwrite=overwrite, metadata=metadata) as writer:
        def read_record(r: dict) -> tuple[np.ndarray | None, bytes | None]:
            points = read_kitti_velodyne(r["velodyne"]) if has_velodyne and r["velodyne"].is_file() else None
            image = read_nonempty_bytes(r["image"]) if image_size is not None and r["image"].is_file() else None
            return points, image

        contents = read_ahead(read_record, records, files=lambda r: (r["velodyne"], r["image"]))
        for i, (points, image) in enumerate(progress(contents, total=len(records), desc="kitti-object")):
            if points is not None:
                writer.append_lidar_sweep("velodyne", points, VELODYNE_FIELDS, int(timestamps[i]))
            if image is not None:
                writer.append_camera_image("image_02", image, int(timestamps[i]))
        drive = writer.finalize(timestamps)
    boxes, frames = [], []
    for i, (table, calib) in enumerate(zip(tables, calibs)):
        keep = table[~table.is_dont_care]
        boxes.append(kitti_to_boxes_velo(keep, calib))
        frames.append(np.full(len(keep), i, np.int64))
    _put_labels(drive, np.concatenate(frames) if frames else np.zeros(0, np.int64), Boxes.concatenate(boxes))
    return drive


def _tracking_root(src: Path, split: str) -> Path:
    for root in (src / split, src):
        if (root / "calib").is_dir():
            return root
    raise FormatError(src, f"not a KITTI tracking folder: no {split}/calib/ or calib/")


def import_kitti_tracking(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                          sequence: str | None = None, split: str = "training"):
    """Import one KITTI tracking sequence: ``velodyne/SEQ/*.bin``, ``image_02/SEQ/*.png``, ``calib/SEQ.txt``,
    ``label_02/SEQ.txt`` and ``oxts/SEQ.txt``, all optional but the calibration.

    Frames are the KITTI frame numbers at 10 Hz (``timestamp_ns = frame * 100 ms``): those of the Velodyne files,
    else of the images, else 0..(last labelled frame) for a labels-plus-calib-only sequence (a drive without
    points). OXTS line i is the IMU pose at frame i; it becomes ``world_SE3_ego = world_SE3_imu ∘
    inverse(velo_SE3_imu)`` (see :func:`oxts_to_world_SE3_imu`). Each KITTI track becomes a drive track with the
    attribute ``kitti_track_id``; DontCare regions and the label text are kept in ``metadata["kitti"]``.

    Args:
        src: the dataset folder (holding ``training/``) or the split folder.
        out: the ``NAME.drive`` folder.
        overwrite: replace an existing drive.
        sequence: e.g. ``"0000"``; may be omitted when the folder holds one sequence.
        split: ``training`` or ``testing``.

    Raises:
        FormatError: missing calibration, an unreadable file, labels on frames without data, OXTS without
            ``Tr_imu_to_velo``; SchemaError: ``out`` exists.
    """
    from sensorlabel.drive import Drive
    from sensorlabel.formats import progress

    src, out = Path(src), Path(out)
    _check_out(out, overwrite)
    root = _tracking_root(src, split)
    if sequence is None:
        seqs = sorted(f.stem for f in (root / "calib").glob("*.txt"))
        if len(seqs) != 1:
            raise FormatError(root, f"pass sequence=...: the folder holds {len(seqs)} sequences ({', '.join(seqs[:12])})")
        sequence = seqs[0]
    calib_path = root / "calib" / f"{sequence}.txt"
    calib = read_kitti_calib(calib_path)
    label_path = root / "label_02" / f"{sequence}.txt"
    label_text = _read_text(label_path) if label_path.is_file() else None
    table = KittiLabelTable.empty() if label_text is None else _parse_label_rows(label_path, label_text, tracking=True,
                                                                                 frame=0)
    bins = _numbered_files(root / "velodyne" / sequence, (".bin",))
    images = _numbered_files(root / "image_02" / sequence, (".png", ".jpg"))
    if bins:
        kitti_frames = np.array(list(bins), dtype=np.int64)
    elif images:
        kitti_frames = np.array(list(images), dtype=np.int64)
    elif len(table):
        kitti_frames = np.arange(int(table.frame.max()) + 1, dtype=np.int64)
    else:
        raise FormatError(root, f"sequence {sequence}: no velodyne/{sequence}/, image_02/{sequence}/ or label_02/{sequence}.txt")
    missing = np.setdiff1d(table.frame, kitti_frames)
    if len(missing):
        raise FormatError(label_path, f"labels on frames without sensor data: {missing[:10].tolist()}")
    image_size = None
    sensors = {}
    if bins:
        sensors["velodyne"] = _velodyne_sensor()
    if images:
        image_size = image_file_size(next(iter(images.values())))
        sensors["image_02"] = kitti_camera_sensor("image_02", calib.P2, calib, image_size, calib_path)
    oxts_path = root / "oxts" / f"{sequence}.txt"
    poses = origin = None
    if oxts_path.is_file():
        if calib.velo_SE3_imu is None:
            raise FormatError(calib_path, "OXTS poses need Tr_imu_to_velo (Tr_imu_velo), which is missing")
        world_SE3_imu, origin = oxts_to_world_SE3_imu(read_oxts([oxts_path]))
        poses = world_SE3_imu.compose(calib.velo_SE3_imu.inverse())
    metadata = {"kitti": {
        "layout": "tracking", "sequence": sequence, "frame_ids": kitti_frames.tolist(), "calib": calib.to_dict(),
        "image_size_px": list(image_size) if image_size else None, "ego_frame": "velodyne", "oxts_origin": origin,
        "label_lines": None if label_text is None else label_text.splitlines(),
    }}
    timestamps = kitti_frames * KITTI_FRAME_PERIOD_NS
    with Drive.create(out, name=out.name.removesuffix(".drive"), source_format="kitti-tracking", sensors=sensors,
                      overwrite=overwrite, metadata=metadata) as writer:
        sweeps = read_ahead(read_kitti_velodyne, bins.values())
        for f, points in progress(zip(bins, sweeps), total=len(bins), desc=f"velodyne {sequence}"):
            writer.append_lidar_sweep("velodyne", points, VELODYNE_FIELDS, f * KITTI_FRAME_PERIOD_NS)
        encoded = read_ahead(read_nonempty_bytes, images.values())
        for f, data in progress(zip(images, encoded), total=len(images), desc=f"image_02 {sequence}"):
            writer.append_camera_image("image_02", data, f * KITTI_FRAME_PERIOD_NS)
        if poses is not None:
            writer.write_poses(np.arange(len(poses), dtype=np.int64) * KITTI_FRAME_PERIOD_NS, poses)
        drive = writer.finalize(timestamps)
    boxed = table[~table.is_dont_care]
    if len(boxed):
        kitti_ids, first = np.unique(boxed.track_id, return_index=True)
        store_ids = drive.labels.add_tracks(boxed.type[first].tolist(), [{"kitti_track_id": int(k)} for k in kitti_ids],
                                            description="import KITTI tracks")
        boxes = kitti_to_boxes_velo(boxed, calib)
        boxes = boxes.replace(track_id=store_ids[np.searchsorted(kitti_ids, boxed.track_id)])
        _put_labels(drive, np.searchsorted(kitti_frames, boxed.frame), boxes)
    return drive


def import_kitti_raw(src: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False):
    """Import a KITTI raw drive ``DATE/DATE_drive_NNNN_sync`` (velodyne_points, image_02/03, oxts) with the
    ``calib_*.txt`` files of its date folder (or of the drive folder).

    Timestamps come from each sensor's ``timestamps.txt`` (UTC, ns). Poses: OXTS at its own timestamps, moved
    onto the Velodyne (:func:`oxts_to_world_SE3_imu`). Raw drives have no labels in this layout.

    Raises:
        FormatError: missing calibration or data folders, unreadable files, timestamps that are not increasing or
            do not match the file count; SchemaError: ``out`` exists.
    """
    from sensorlabel.drive import Drive
    from sensorlabel.formats import progress

    src, out = Path(src), Path(out)
    _check_out(out, overwrite)
    calib_dir = src if (src / "calib_cam_to_cam.txt").is_file() else src.parent
    calib, image_size = read_kitti_raw_calib(calib_dir)
    bins = _numbered_files(src / "velodyne_points" / "data", (".bin",))
    cams = {name: _numbered_files(src / name / "data", (".png", ".jpg")) for name in ("image_02", "image_03")}
    oxts_files = _numbered_files(src / "oxts" / "data", (".txt",))
    if not bins and not any(cams.values()):
        raise FormatError(src, "not a KITTI raw drive: no velodyne_points/data/*.bin or image_0[23]/data/*")
    sensors = {}
    if bins:
        sensors["velodyne"] = _velodyne_sensor()
    for name, files in cams.items():
        if files:
            size = image_size or image_file_size(next(iter(files.values())))
            sensors[name] = kitti_camera_sensor(name, calib.P2 if name == "image_02" else calib.P3, calib, size, calib_dir)
    poses = None
    if oxts_files:
        if calib.velo_SE3_imu is None:
            raise FormatError(calib_dir, "OXTS poses need calib_imu_to_velo.txt")
        world_SE3_imu, origin = oxts_to_world_SE3_imu(read_oxts(list(oxts_files.values())))
        poses = (_raw_timestamps(src / "oxts", len(oxts_files)), world_SE3_imu.compose(calib.velo_SE3_imu.inverse()))
    metadata = {"kitti": {"layout": "raw", "calib": calib.to_dict(), "ego_frame": "velodyne",
                          "image_size_px": list(image_size) if image_size else None,
                          "oxts_origin": origin if oxts_files else None}}
    with Drive.create(out, name=src.name, source_format="kitti-raw", sensors=sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        if bins:
            ts = _raw_timestamps(src / "velodyne_points", len(bins))
            sweeps = read_ahead(read_kitti_velodyne, bins.values())
            for t, points in progress(zip(ts, sweeps), total=len(bins), desc="velodyne"):
                writer.append_lidar_sweep("velodyne", points, VELODYNE_FIELDS, int(t))
        for name, files in cams.items():
            if files:
                ts = _raw_timestamps(src / name, len(files))
                encoded = read_ahead(read_nonempty_bytes, files.values())
                for t, data in progress(zip(ts, encoded), total=len(files), desc=name):
                    writer.append_camera_image(name, data, int(t))
        if poses is not None:
            writer.write_poses(*poses)
        return writer.finalize()


def _raw_timestamps(folder: Path, count: int) -> np.ndarray:
    """(count,) int64 ns from ``folder/timestamps.txt`` (``YYYY-MM-DD hh:mm:ss.fffffffff`` per line, UTC)."""
    path = folder / "timestamps.txt"
    lines = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if len(lines) != count:
        raise FormatError(path, f"{len(lines)} timestamps for {count} data files")
    try:
        return np.array([np.datetime64(line.replace(" ", "T"), "ns") for line in lines]).astype(np.int64)
    except ValueError:
        bad = next(line for line in lines if not _is_timestamp(line))
        raise FormatError(path, f"not a timestamp: {bad!r}") from None


def _is_timestamp(text: str) -> bool:
    try:
        np.datetime64(text.replace(" ", "T"), "ns")
    except ValueError:
        return False
    return True


# ======================================================================================================================
# Exporters
# ======================================================================================================================
@dataclass(frozen=True)
class _ExportContext:
    """What an exporter needs per drive frame: KITTI frame id, calibration, image size, and the source rows."""

    frame_ids: list            # per drive frame: int (tracking) or str (object)
    calibs: list[KittiCalib]   # per drive frame
    image_sizes: list          # per drive frame: (width, height) or None
    source: KittiLabelTable    # source rows with drive frame indices (empty when the drive did not come from KITTI)
    has_camera: bool


def _axis_calib(cam_SE3_ego: SE3, P: np.ndarray) -> KittiCalib:
    return KittiCalib(P, P, P, P, np.eye(3), cam_SE3_ego, None)


def _calib_from_drive(drive) -> tuple[KittiCalib, tuple[int, int] | None]:
    """A KITTI calibration for a drive that did not come from KITTI: rect = the front camera's frame (``image_02``
    or the first pinhole camera), ``Tr_velo_to_cam = cam_SE3_ego``, ``R0_rect = I``, ``P = [K | 0]``. Without a
    camera, rect is the ego frame with KITTI's camera axes (x right = -y, y down = -z, z forward = x)."""
    cams = [n for n in drive.camera_names if drive.sensors[n].camera.model == "pinhole"]
    name = "image_02" if "image_02" in cams else (cams[0] if cams else None)
    if name is None:
        axes = SE3(np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]), np.zeros(3))
        return _axis_calib(axes, np.hstack([np.eye(3), np.zeros((3, 1))])), None
    sensor = drive.sensors[name]
    P = np.hstack([sensor.camera.K, np.zeros((3, 1))])
    return _axis_calib(sensor.ego_SE3_sensor.inverse(), P), (sensor.camera.width_px, sensor.camera.height_px)


def _export_context(drive, calib: KittiCalib | None) -> _ExportContext:
    meta = drive.metadata.get("kitti") or {}
    n = drive.num_frames
    frame_ids = meta.get("frame_ids") or list(range(n))
    if len(frame_ids) != n:
        raise FormatError(drive.path, f"metadata kitti.frame_ids has {len(frame_ids)} entries for {n} frames")
    stored = meta.get("calib")
    has_camera = True
    if calib is not None:
        calibs, sizes = [calib] * n, [None] * n
    elif isinstance(stored, list):
        calibs = [KittiCalib.from_dict(c, drive.path) for c in stored]
        sizes = [tuple(s) if s else None for s in meta.get("image_size_px") or [None] * n]
    elif isinstance(stored, dict):
        size = meta.get("image_size_px")
        calibs, sizes = [KittiCalib.from_dict(stored, drive.path)] * n, [tuple(size) if size else None] * n
    else:
        derived, size = _calib_from_drive(drive)
        calibs, sizes, has_camera = [derived] * n, [size] * n, size is not None
    lines = meta.get("label_lines")
    if meta.get("layout") == "tracking" and lines:
        source = _parse_label_rows(drive.path, "\n".join(lines), tracking=True, frame=0)
        ids = np.asarray(frame_ids, dtype=np.int64)
        source = KittiLabelTable(**{**source.__dict__, "frame": np.searchsorted(ids, source.frame)})
    elif meta.get("layout") in ("object", "mmdet3d") and lines:
        source = KittiLabelTable.concatenate([
            _parse_label_rows(drive.path, "\n".join(frame_lines), tracking=False, frame=i)
            for i, frame_lines in enumerate(lines) if frame_lines
        ])
    else:
        source = KittiLabelTable.empty()
    return _ExportContext(list(frame_ids), calibs, sizes, source, has_camera)


def _drive_rows(drive, ctx: _ExportContext, sources, scores: bool) -> KittiLabelTable:
    """The drive's boxes as KITTI rows (drive frame indices; track_id = the KITTI track id where known; the score
    column is the box confidence when ``scores``, else absent)."""
    records = drive.labels.query(sources=sources)
    attrs = {t.track_id: t.attributes for t in drive.labels.tracks()}
    kitti_ids = np.array([attrs.get(int(t), {}).get("kitti_track_id", -1) for t in records.track_id], dtype=np.int64)
    known = kitti_ids >= 0
    if not known.all():  # tracks made in sensorlabel: numbered after the source's ids, never colliding
        base = int(kitti_ids.max()) + 1 if known.any() else 0
        kitti_ids[~known] = base + records.track_id[~known]
    parts = []
    for frame in np.unique(records.frame):
        sel = np.flatnonzero(records.frame == frame)
        calib = ctx.calibs[frame]
        boxes = records.boxes[sel].replace(track_id=kitti_ids[sel])
        table = boxes_velo_to_kitti(boxes, calib, frame, ctx.image_sizes[frame])
        changes = {} if scores else {"score": np.full(len(table), np.nan)}
        if not ctx.has_camera:
            changes.update(bbox_2d_px=np.zeros((len(table), 4)), truncated=np.zeros(len(table)))
        parts.append(KittiLabelTable(**{**table.__dict__, **changes}))
    return KittiLabelTable.concatenate(parts)


def _merge_with_source(rows: KittiLabelTable, source: KittiLabelTable, decimals: int, tracking: bool) -> KittiLabelTable:
    """Rows in the source file's order, with the source's 2D values for boxes whose 3D values print unchanged.

    A drive box matches a source row when frame (and track id for tracking) agree and its h w l x y z ry print
    identically at ``decimals``; it then keeps the source's truncated, occluded, alpha and 2D box (which cannot be
    recomputed from the 3D box), and its ry takes the source's turn (+-2 pi). Unmatched (new or edited) boxes keep
    their derived values and follow the source rows of their frame. DontCare rows of the source are re-emitted.
    """
    scale = 10.0 ** decimals
    src_geo = np.concatenate([source.hwl_m, source.location_rect_m, source.rotation_y_rad[:, None]], axis=1)
    src_boxed = np.flatnonzero(~source.is_dont_care)
    index: dict[tuple, list[int]] = {}
    for i in src_boxed:
        key = (int(source.frame[i]), int(source.track_id[i])) if tracking else (int(source.frame[i]),)
        index.setdefault(key, []).append(int(i))
    truncated, occluded = rows.truncated.copy(), rows.occluded.copy()
    if tracking:  # KITTI tracking prints truncation levels: 0 none, 1 partly, 2 mostly (> 50 %)
        truncated = np.where(truncated <= 0, 0.0, np.where(truncated <= 0.5, 1.0, 2.0))
    alpha, bbox, ry = rows.alpha.copy(), rows.bbox_2d_px.copy(), rows.rotation_y_rad.copy()
    order = np.full(len(rows), np.inf)
    used: set[int] = set()
    for r in range(len(rows)):
        key = (int(rows.frame[r]), int(rows.track_id[r])) if tracking else (int(rows.frame[r]),)
        for i in index.get(key, ()):
            if i in used or source.type[i] != rows.type[r]:
                continue
            turn = source.rotation_y_rad[i] + wrap_angle(ry[r] - source.rotation_y_rad[i])
            geo = np.concatenate([rows.hwl_m[r], rows.location_rect_m[r], [turn]])
            if np.array_equal(np.round(geo * scale), np.round(src_geo[i] * scale)):
                used.add(i)
                truncated[r], occluded[r], alpha[r], bbox[r], ry[r] = (source.truncated[i], source.occluded[i],
                                                                       source.alpha[i], source.bbox_2d_px[i], turn)
                order[r] = i
                break
    merged = KittiLabelTable(**{**rows.__dict__, "truncated": truncated, "occluded": occluded, "alpha": alpha,
                                "bbox_2d_px": bbox, "rotation_y_rad": ry})
    dont_care = np.flatnonzero(source.is_dont_care)
    # Unmatched rows go after every source row of their frame, by track id.
    unmatched_order = len(source) + np.argsort(np.argsort(merged.track_id, kind="stable"), kind="stable")
    order = np.where(np.isfinite(order), order, unmatched_order)
    table = KittiLabelTable.concatenate([merged, source[dont_care]])
    all_order = np.concatenate([order, dont_care.astype(np.float64)])
    return table[np.lexsort((all_order, table.frame))]


def export_kitti_tracking(drive, out_dir: str | os.PathLike, *, sequence: str | None = None, sources=None,
                          calib: KittiCalib | None = None, scores: bool = False) -> list[Path]:
    """Write the drive's boxes as KITTI tracking ``label_02/SEQ.txt`` plus ``calib/SEQ.txt``.

    Boxes go ego (Velodyne) -> rect with the calibration kept at import (``metadata["kitti"]``), or ``calib``, or one
    derived from the drive's front camera (:func:`_calib_from_drive`). Track ids are the source's KITTI ids where
    known. Values the 3D box cannot give (truncation, occlusion, the labelled 2D box) are kept from the source for
    unedited boxes; otherwise the 2D box is the clipped projection through P2 (see the module docstring).

    Args:
        drive: an opened Drive.
        out_dir: output folder (created).
        sequence: file name stem; default the imported sequence or ``"0000"``.
        sources: box sources to export (e.g. ``["human", "refined"]``); default all.
        calib: override the calibration.
        scores: add the score column (box confidence), as in tracking results; ground truth has none.

    Returns:
        [label file, calib file].

    Raises:
        FormatError: inconsistent KITTI metadata in the drive.
    """
    ctx = _export_context(drive, calib)
    meta = drive.metadata.get("kitti") or {}
    sequence = sequence or meta.get("sequence") or "0000"
    table = _merge_with_source(_drive_rows(drive, ctx, sources, scores), ctx.source, 6, tracking=True)
    ids = np.array([int(f) for f in ctx.frame_ids], dtype=np.int64)
    table = KittiLabelTable(**{**table.__dict__, "frame": ids[table.frame] if len(table) else table.frame})
    out_dir = Path(out_dir)
    label = write_kitti_tracking_labels(out_dir / "label_02" / f"{sequence}.txt", table)
    cal = write_kitti_calib(out_dir / "calib" / f"{sequence}.txt", ctx.calibs[0] if ctx.calibs else _calib_from_drive(drive)[0])
    return [label, cal]


def export_kitti_object(drive, out_dir: str | os.PathLike, *, sources=None, calib: KittiCalib | None = None,
                        scores: bool = False) -> list[Path]:
    """Write the drive's boxes as KITTI object ``label_2/<id>.txt`` and ``calib/<id>.txt``, one pair per frame
    (frames without boxes get an empty label file, as KITTI expects). Conversion as :func:`export_kitti_tracking`;
    ids are the imported frame ids, else the frame index as ``%06d``.

    Returns:
        The written files, label then calib per frame.
    """
    ctx = _export_context(drive, calib)
    table = _merge_with_source(_drive_rows(drive, ctx, sources, scores), ctx.source, 2, tracking=False)
    out_dir = Path(out_dir)
    written = []
    for frame, frame_id in enumerate(ctx.frame_ids):
        stem = frame_id if isinstance(frame_id, str) else f"{int(frame_id):06d}"
        written.append(write_kitti_object_labels(out_dir / "label_2" / f"{stem}.txt", table[table.frame == frame]))
        written.append(write_kitti_calib(out_dir / "calib" / f"{stem}.txt", ctx.calibs[frame]))
    return written
