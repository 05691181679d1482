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
        track = np.full(n, -1, np.int64) if self.track_id is None else _as_array(self.track_id, np.int64, (), "track_id", n)
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
        quat = quat / norm[:, None]
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
        labels = [p.label for p in parts]
        return cls(
            np.concatenate([p.center_m for p in parts]),
            np.concatenate([p.lwh_m for p in parts]),
            np.concatenate([p.quat_wxyz for p in parts]),
            np.concatenate([p.track_id for p in parts]),
            np.concatenate(labels).astype(str) if labels else None,
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
    @property
    def rotation(self) -> np.ndarray:
        """(N,3,3) frame_R_object."""
        if len(self) == 0:
            return np.zeros((0, 3, 3))
        return Rotation.from_quat(self.quat_wxyz[:, [1, 2, 3, 0]]).as_matrix()

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

        Candidates come from a sort of the points along x and each box's axis-aligned extent, so the work is
        proportional to the points near the boxes rather than N x P.

        Args:
            points_m: (P,3) points in the boxes' frame (extra columns beyond 3 are ignored).
            margin_m: grow every box by this much on each side (may be negative).

        Returns:
            (box_index (K,), point_index (K,)) int64, sorted by box then point.
        """
        pts = np.asarray(points_m)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f"points_m: expected (P,3), got {pts.shape}")
        pts = pts[:, :3]
        n = len(self)
        if n == 0 or len(pts) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        half = self.lwh_m / 2.0 + margin_m
        rot = self.rotation
        extent = np.abs(rot) @ half[:, :, None]  # (N,3,1): half-size of the axis-aligned bound
        lo = self.center_m - extent[:, :, 0]
        hi = self.center_m + extent[:, :, 0]
        order = np.argsort(pts[:, 0], kind="stable")
        xs = pts[order, 0]
        start = np.searchsorted(xs, lo[:, 0], side="left")
        stop = np.searchsorted(xs, hi[:, 0], side="right")
        counts = np.maximum(stop - start, 0)
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        box_idx = np.repeat(np.arange(n), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        point_idx = order[np.repeat(start, counts) + offsets]
        cand = pts[point_idx].astype(np.float64)
        in_aabb = np.all((cand >= lo[box_idx]) & (cand <= hi[box_idx]), axis=1)
        box_idx, point_idx, cand = box_idx[in_aabb], point_idx[in_aabb], cand[in_aabb]
        local = np.einsum("kji,kj->ki", rot[box_idx], cand - self.center_m[box_idx])
        inside = np.all(np.abs(local) <= half[box_idx], axis=1)
        box_idx, point_idx = box_idx[inside], point_idx[inside]
        sort = np.lexsort((point_idx, box_idx))
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
