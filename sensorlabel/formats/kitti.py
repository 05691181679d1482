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
from sensorlabel.geometry.boxes import Boxes
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
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None
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
    return _atomic_write_text(Path(path), text)


def _atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


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
    return _atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


def write_kitti_object_labels(path: str | os.PathLike, table: KittiLabelTable) -> Path:
    """Write one object label file (rows in the table's order; the frame column is not written). Returns the path."""
    lines = format_kitti_object_lines(table)
    return _atomic_write_text(Path(path), "".join(line + "\n" for line in lines))


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


def _wrap_angle(angle_rad: np.ndarray) -> np.ndarray:
    return (np.asarray(angle_rad) + np.pi) % (2.0 * np.pi) - np.pi


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
    alpha = _wrap_angle(ry - np.arctan2(location[:, 0], location[:, 2]))
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
