"""Oriented 3D boxes as one struct of arrays (after mmdetection3d's ``BaseInstance3DBoxes``).

Internal convention, used everywhere past the format importers:

* ``center_m`` is the geometric centre of the box (not KITTI's or nuScenes' bottom centre), in the frame the
  boxes are expressed in (ego, lidar, world ... the variable name says which: ``boxes_ego``).
* ``lwh_m`` is length along the object's x axis (forward), width along y (left), height along z (up).
* ``quat_wxyz`` is ``frame_R_object``: it rotates object-frame vectors into the boxes' frame.
* ``track_id`` is int64, -1 when the box belongs to no track; ``label`` is the class name; ``score`` in [0, 1].

Corner order (object frame, signs of x/2, y/2, z/2 in units of l, w, h)::

    0 (+,-,+)  1 (+,+,+)  2 (-,+,+)  3 (-,-,+)   top face, counter-clockwise seen from above
    4 (+,-,-)  5 (+,+,-)  6 (-,+,-)  7 (-,-,-)   bottom face, same order

Corners 0, 1, 4, 5 form the front face (+x).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.geometry.se3 import SE3

_CORNER_SIGNS = np.array(
    [[1, -1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, -1]],
    dtype=np.float64,
)
#: The 12 edges of a box as pairs of corner indices (top face, bottom face, verticals).
BOX_EDGES = np.array(
    [[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]], dtype=np.int64
)


def _as_array(value, dtype, shape_tail: tuple[int, ...], name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail or (n is not None and arr.shape[0] != n):
        want = "(" + ",".join(["N" if n is None else str(n)] + [str(s) for s in shape_tail]) + ")"
        raise ValueError(f"{name}: expected {want}, got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class Boxes:
    """N oriented boxes. Immutable: every method returns a new value.

    Attributes:
        center_m: (N,3) float64, geometric centres.
        lwh_m: (N,3) float64, length/width/height, all > 0.
        quat_wxyz: (N,4) float64 unit quaternions, frame_R_object.
        track_id: (N,) int64, -1 for none.
        label: (N,) str array of class names.
        score: (N,) float64.

    Raises:
        ValueError: on any shape mismatch (the message gives the actual shape), non-finite values,
            non-positive sizes or zero quaternions.
    """

    center_m: np.ndarray
    lwh_m: np.ndarray
    quat_wxyz: np.ndarray
    track_id: np.ndarray = field(default=None)  # type: ignore[assignment]
    label: np.ndarray = field(default=None)  # type: ignore[assignment]
    score: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        center = _as_array(self.center_m, np.float64, (3,), "center_m", None)
        n = center.shape[0]
        lwh = _as_array(self.lwh_m, np.float64, (3,), "lwh_m", n)
        quat = _as_array(self.quat_wxyz, np.float64, (4,), "quat_wxyz", n)
        track = (np.full(n, -1, np.int64) if self.track_id is None
                 else _as_array(self.track_id, np.int64, (), "track_id", n))
        label = np.full(n, "", dtype="<U1") if self.label is None else np.asarray(self.label, dtype=str)
        if label.shape != (n,):
            raise ValueError(f"label: expected ({n},), got {label.shape}")
        score = np.ones(n) if self.score is None else _as_array(self.score, np.float64, (), "score", n)
        for name, arr in (("center_m", center), ("lwh_m", lwh), ("quat_wxyz", quat), ("score", score)):
            if not np.isfinite(arr).all():
                i = int(np.argwhere(~np.isfinite(arr.reshape(n, -1)).all(axis=1))[0, 0])
                raise ValueError(f"{name}[{i}] is not finite: {arr[i].tolist()}")
        if (lwh <= 0).any():
            i = int(np.argwhere((lwh <= 0).any(axis=1))[0, 0])
            raise ValueError(f"lwh_m[{i}] must be positive: {lwh[i].tolist()}")
        norm = np.linalg.norm(quat, axis=1)
        if (norm < 1e-9).any():
            i = int(np.flatnonzero(norm < 1e-9)[0])
            raise ValueError(f"quat_wxyz[{i}] is zero: {quat[i].tolist()}")
        # Quaternions already unit to rounding are kept bit for bit, so that re-wrapping (indexing, replace, a
        # label-store round trip) is exact; renormalising a unit quaternion changes its last bits a third of the time.
        unit = np.abs(norm - 1.0) <= 4 * np.finfo(np.float64).eps
        quat = np.where(unit[:, None], quat, quat / norm[:, None])
        quat = np.where(quat[:, :1] < 0, -quat, quat)
        for name, arr in (("center_m", center), ("lwh_m", lwh), ("quat_wxyz", quat), ("track_id", track),
                          ("label", label), ("score", score)):
            object.__setattr__(self, name, arr)

    # ----- construction -----------------------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 3)), np.ones((0, 3)), np.tile([1.0, 0, 0, 0], (0, 1)))

    @classmethod
    def from_yaw(cls, center_m, lwh_m, yaw_rad, track_id=None, label=None, score=None) -> Boxes:
        """Gravity-aligned boxes from a heading about +z. ``yaw_rad``: (N,), 0 means the box faces +x."""
        yaw = np.asarray(yaw_rad, dtype=np.float64).reshape(-1)
        quat = np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=1)
        return cls(center_m, lwh_m, quat, track_id, label, score)

    @classmethod
    def concatenate(cls, parts: list[Boxes]) -> Boxes:
        """One Boxes from many; an empty list gives an empty Boxes."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.center_m for p in parts]),
            np.concatenate([p.lwh_m for p in parts]),
            np.concatenate([p.quat_wxyz for p in parts]),
            np.concatenate([p.track_id for p in parts]),
            np.concatenate([p.label for p in parts]).astype(str),
            np.concatenate([p.score for p in parts]),
        )

    # ----- container protocol -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.center_m.shape[0]

    def __getitem__(self, index) -> Boxes:
        """Select with an integer, a slice, an index array or a boolean mask; always returns Boxes."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(idx, np.ndarray) and idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(f"mask: expected ({len(self)},), got {idx.shape}")
        return Boxes(self.center_m[idx], self.lwh_m[idx], self.quat_wxyz[idx], self.track_id[idx],
                     self.label[idx], self.score[idx])

    def replace(self, **changes) -> Boxes:
        """A copy with some fields replaced (validated again)."""
        fields = dict(center_m=self.center_m, lwh_m=self.lwh_m, quat_wxyz=self.quat_wxyz, track_id=self.track_id,
                      label=self.label, score=self.score)
        fields.update(changes)
        return Boxes(**fields)

    # ----- geometry ---------------------------------------------------------------------------------------------
    @functools.cached_property
    def rotation(self) -> np.ndarray:
        """(N,3,3) frame_R_object (computed once: a Boxes never changes)."""
        if len(self) == 0:
            return np.zeros((0, 3, 3))
        rotation = Rotation.from_quat(self.quat_wxyz[:, [1, 2, 3, 0]]).as_matrix()
        rotation.flags.writeable = False
        return rotation

    @property
    def yaw_rad(self) -> np.ndarray:
        """(N,) heading about +z of the object's x axis, in (-pi, pi]."""
        r = self.rotation
        return np.arctan2(r[:, 1, 0], r[:, 0, 0])

    @property
    def frame_SE3_object(self) -> SE3:
        """The box poses as a batch of N transforms (object frame -> the boxes' frame)."""
        return SE3._trusted(self.rotation, self.center_m.copy())

    def corners(self) -> np.ndarray:
        """(N,8,3) corners in the boxes' frame, in the order of the module docstring."""
        local = _CORNER_SIGNS[None, :, :] * (self.lwh_m[:, None, :] / 2.0)
        return np.einsum("nij,nkj->nki", self.rotation, local) + self.center_m[:, None, :]

    def bev_corners(self) -> np.ndarray:
        """(N,4,2) bird's-eye corners (x, y), counter-clockwise seen from +z, for gravity-aligned boxes."""
        return self.corners()[:, :4, :2]

    def bev_polygons(self) -> list:
        """Bird's-eye footprints as shapely Polygons, one per box (viewer and reference IoU only)."""
        import shapely

        return list(shapely.polygons(self.bev_corners()))

    def transform(self, target_SE3_frame: SE3) -> Boxes:
        """Express the boxes in another frame; a single SE3 for all or a batch of N, one per box."""
        center = target_SE3_frame.transform_points(self.center_m)
        rot = target_SE3_frame.rotation @ self.rotation
        quat = Rotation.from_matrix(rot).as_quat()[..., [3, 0, 1, 2]] if len(self) else self.quat_wxyz
        return self.replace(center_m=center, quat_wxyz=quat.reshape(-1, 4))

    def volume_m3(self) -> np.ndarray:
        """(N,) volumes."""
        return np.prod(self.lwh_m, axis=1)

    # ----- points in boxes --------------------------------------------------------------------------------------
    def point_box_pairs(self, points_m: np.ndarray, margin_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """All (box, point) pairs with the point inside the box (boundary included).

        A point p is inside box n when ``|R_n[:, i] . (p - c_n)| <= lwh_n[i] / 2 + margin_m`` for i = x, y, z: the
        closed test of Open3D's ``OrientedBoundingBox.get_point_indices_within_bounding_box``, evaluated in float64
        in the same order, so both agree point for point.

        Candidates come from a coarse 2-D grid over x/y (cells about a quarter of a box footprint): every box
        registers in the cells its axis-aligned footprint touches, every point looks up its cell, and only those
        (box, point) pairs are tested exactly. The work is a few passes of cheap arithmetic over the points plus
        the points near the boxes; the points are never sorted. Clouds of 40k points or more are split in two
        halves searched on two threads.

        Args:
            points_m: (P,3) points in the boxes' frame, float32 or float64 (extra columns beyond 3 are ignored).
                Non-finite points are inside no box.
            margin_m: grow every box by this much on each side (may be negative).

        Returns:
            (box_index (K,), point_index (K,)) int64, sorted by box then point.

        Raises:
            ValueError: points_m is not (P,>=3).
        """
        pts = np.asarray(points_m)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f"points_m: expected (P,3), got {pts.shape}")
        if pts.dtype not in (np.float32, np.float64):
            pts = pts.astype(np.float64)
        n, num_points = len(self), len(pts)
        none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        half = self.lwh_m / 2.0 + margin_m
        if n == 0 or num_points == 0 or (half <= 0).any(axis=1).all():
            return none
        rot = self.rotation
        grid = _box_grid(self.center_m[:, :2], rot, half)
        box_table = np.ascontiguousarray(np.concatenate([self.center_m, rot.reshape(n, 9), half], axis=1).T)
        # Two halves of the points on two threads (numpy releases the GIL in these loops), as Open3D's OpenMP loop
        # uses the cores; each half's pairs run in ascending point order.
        if num_points >= _PARALLEL_MIN_POINTS:
            cut = num_points // 2
            first = _POOL.submit(_pairs_in_chunk, pts[:cut], 0, grid, box_table)
            second = _pairs_in_chunk(pts[cut:], cut, grid, box_table)
            parts = [first.result(), second]
            box_idx = np.concatenate([b for b, _ in parts])
            point_idx = np.concatenate([q for _, q in parts])
        else:
            box_idx, point_idx = _pairs_in_chunk(pts, 0, grid, box_table)
        # A stable sort by box alone orders the pairs by box then point (a radix sort when the box index fits 16
        # bits).
        sort = np.argsort(box_idx.astype(np.int16 if n < 2**15 else np.int64), kind="stable")
        return box_idx[sort].astype(np.int64), point_idx[sort].astype(np.int64)

    def points_in_boxes(self, points_m: np.ndarray, margin_m: float = 0.0) -> np.ndarray:
        """(N,P) bool mask: point p lies inside box n (boundary included). See :meth:`point_box_pairs`."""
        mask = np.zeros((len(self), len(points_m)), dtype=bool)
        b, p = self.point_box_pairs(points_m, margin_m)
        mask[b, p] = True
        return mask

    def count_points(self, points_m: np.ndarray, margin_m: float = 0.0) -> np.ndarray:
        """(N,) int64 number of points inside each box."""
        b, _ = self.point_box_pairs(points_m, margin_m)
        return np.bincount(b, minlength=len(self)).astype(np.int64)


#: Point clouds at least this large are split between two threads by :meth:`Boxes.point_box_pairs`.
_PARALLEL_MIN_POINTS = 40_000
_POOL = ThreadPoolExecutor(1, thread_name_prefix="sensorlabel-boxes")


def _pairs_in_chunk(pts: np.ndarray, first_point: int, grid: tuple,
                    box_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(box_index, point_index) integer arrays of the pairs with a point of ``pts`` (P,>=3) inside a box, in ascending
    point order; point indices are offset by ``first_point``. ``grid`` is :func:`_box_grid`'s output, ``box_table``
    (15,N) float64 rows: the boxes' centres, rotations (row-major) and half extents."""
    reg_box, cell_count, origin, cell, shape = grid
    num_points = len(pts)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if num_points == 0:
        return none
    cell_start = np.cumsum(cell_count) - cell_count
    # Cell id of every point, in the points' own dtype (the footprints carry a slack of 1e-5 of the scene's
    # extent, far above float32 rounding). Coordinates are clamped into the empty border ring, so far points
    # and NaN land in empty cells.
    dtype = pts.dtype.type
    cid = np.empty(num_points, np.int32)
    buf = np.empty(num_points, dtype)
    index = np.empty(num_points, np.int32)
    for axis in range(2):
        np.multiply(pts[:, axis], dtype(1.0 / cell), out=buf)
        np.add(buf, dtype(1.0 - origin[axis] / cell), out=buf)
        np.fmax(buf, dtype(0), out=buf)
        np.fmin(buf, dtype(shape[axis] - 1), out=buf)
        np.copyto(index, buf, casting="unsafe")
        if axis == 0:
            np.multiply(index, np.int32(shape[1]), out=cid)
        else:
            np.add(cid, index, out=cid)
    counts = np.take(cell_count, cid)
    cand = np.flatnonzero(counts)
    counts, cid = counts[cand], cid[cand]
    total = int(counts.sum())
    if total == 0:
        return none
    # Expand to (box, candidate) pairs.
    rep = np.repeat(np.arange(len(cand)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    box_idx = reg_box[np.repeat(cell_start[cid], counts) + offsets]
    # Exact closed test in float64 on every pair at once (most candidates are inside, so dropping rejected pairs
    # axis by axis costs more gathers than it saves). Pairs are laid out as rows of (3,K) and (15,K) arrays.
    point_rows = np.take(pts[:, :3], cand[rep], axis=0).T.astype(np.float64)
    box_rows = np.take(box_table, box_idx, axis=1)
    d = point_rows - box_rows[:3]
    inside = np.ones(total, bool)
    for i in range(3):  # the i-th box axis is column i of the rotation: rows 3 + i, 6 + i, 9 + i
        local = d[0] * box_rows[3 + i] + d[1] * box_rows[6 + i] + d[2] * box_rows[9 + i]
        inside &= np.abs(local) <= box_rows[12 + i]
    keep = np.flatnonzero(inside)
    return box_idx[keep], cand[rep[keep]] + first_point


def _box_grid(center_xy: np.ndarray, rot: np.ndarray, half: np.ndarray):
    """A 2-D grid over the boxes' footprints for :meth:`Boxes.point_box_pairs`.

    Args:
        center_xy: (N,2) box centres; rot: (N,3,3) frame_R_object; half: (N,3) half sizes (margin included).

    Returns:
        reg_box: (R,) box indices grouped by cell; cell_count: (C,) int32 boxes per cell, cell id
        ``ix * shape[1] + iy``; origin: (2,) position of cell (1, 1)'s corner; cell: edge length in metres;
        shape: (2,) cells per axis, including an empty ring of border cells.
    """
    extent_xy = (np.abs(rot) @ np.maximum(half, 0.0)[:, :, None])[:, :2, 0]
    # Widen each footprint a little so that rounding in the points' cell arithmetic (float32 included) never drops
    # a boundary point; the exact test decides.
    slack = 1e-5 * (1.0 + np.abs(center_xy).max() + extent_xy.max())
    lo = center_xy - extent_xy - slack
    hi = center_xy + extent_xy + slack
    origin = lo.min(axis=0)
    top = hi.max(axis=0)
    cell = max(0.25 * float(np.median((hi - lo).min(axis=1))), float((top - origin).max()) / 256.0, 1e-6)
    inner = np.floor((top - origin) / cell).astype(np.int64) + 1
    shape = inner + 2
    c0 = np.floor((lo - origin) / cell).astype(np.int64) + 1
    c1 = np.minimum(np.floor((hi - origin) / cell).astype(np.int64), inner - 1) + 1
    size = c1 - c0 + 1
    per_box = size[:, 0] * size[:, 1]
    reg_box = np.repeat(np.arange(len(center_xy)), per_box)
    k = np.arange(len(reg_box)) - np.repeat(np.cumsum(per_box) - per_box, per_box)
    reg_cell = (c0[reg_box, 0] + k // size[reg_box, 1]) * shape[1] + c0[reg_box, 1] + k % size[reg_box, 1]
    reg_box = reg_box[np.argsort(reg_cell, kind="stable")]
    cell_count = np.bincount(reg_cell, minlength=int(shape[0] * shape[1])).astype(np.int32)
    return reg_box, cell_count, origin, cell, shape
