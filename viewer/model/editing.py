"""Pure geometry of box editing in the bird's-eye and orthographic views (no Qt, vectorised over boxes).

A box being edited is a :class:`BoxPose` in the ego frame of its frame: centre ``center_m`` (3,), size ``lwh_m``
(3,) and heading ``yaw_rad`` (boxes are edited as gravity-aligned; roll and pitch are dropped by an edit). The views
turn mouse drags into new poses with these functions, and the controller commits the final pose as one store write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.lie import wrap_angle

#: Smallest box side an edit may produce.
MIN_SIDE_M = 0.1
#: Default sizes (l, w, h) for a new box when the points cannot give one, by class.
DEFAULT_LWH_M = {"Car": (4.5, 1.9, 1.6), "Pedestrian": (0.7, 0.7, 1.75), "Cyclist": (1.8, 0.7, 1.7)}


@dataclass(frozen=True)
class BoxPose:
    """A gravity-aligned box in the ego frame.

    Attributes:
        center_m: (3,) geometric centre. lwh_m: (3,) size. yaw_rad: heading about ego z.
    """

    center_m: np.ndarray
    lwh_m: np.ndarray
    yaw_rad: float

    @classmethod
    def from_boxes(cls, boxes: Boxes, index: int) -> BoxPose:
        return cls(boxes.center_m[index].copy(), boxes.lwh_m[index].copy(), float(boxes.yaw_rad[index]))

    def to_boxes(self, track_id: int = -1, label: str = "") -> Boxes:
        return Boxes.from_yaw(self.center_m[None], self.lwh_m[None], np.array([self.yaw_rad]),
                              np.array([track_id]), np.array([label]))

    @property
    def quat_wxyz(self) -> np.ndarray:
        """(4,) ego_R_object as a quaternion (rotation about z)."""
        return np.array([np.cos(self.yaw_rad / 2), 0.0, 0.0, np.sin(self.yaw_rad / 2)])

    @property
    def axes_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (2,) of the box's length and width axes in the ego x-y plane."""
        c, s = np.cos(self.yaw_rad), np.sin(self.yaw_rad)
        return np.array([c, s]), np.array([-s, c])

    def to_local_xy(self, xy_ego: np.ndarray) -> np.ndarray:
        """(N,2) ego x-y -> (N,2) box-frame x-y."""
        ex, ey = self.axes_xy
        d = np.atleast_2d(xy_ego) - self.center_m[:2]
        return np.stack([d @ ex, d @ ey], axis=1)

    def rotation_handle_xy(self, offset_m: float = 1.0) -> np.ndarray:
        """(2,) ego x-y of the rotation handle: ahead of the front face, on the heading."""
        ex, _ = self.axes_xy
        return self.center_m[:2] + ex * (self.lwh_m[0] / 2 + offset_m)


def snap_yaw(yaw_rad: float, step_rad: float | None) -> float:
    """Round a heading to a multiple of ``step_rad`` (no snapping when None or 0)."""
    if not step_rad:
        return float(wrap_angle(yaw_rad))
    return float(wrap_angle(np.round(yaw_rad / step_rad) * step_rad))


def move(pose: BoxPose, delta_xy_m: np.ndarray) -> BoxPose:
    """Translate in the ego x-y plane."""
    center = pose.center_m.copy()
    center[:2] += np.asarray(delta_xy_m, dtype=np.float64)
    return replace(pose, center_m=center)


def rotate_to(pose: BoxPose, toward_xy_m: np.ndarray, snap_step_rad: float | None = None) -> BoxPose:
    """Turn the box about its centre so that its heading points at ``toward_xy_m`` (the dragged rotation handle)."""
    d = np.asarray(toward_xy_m, dtype=np.float64) - pose.center_m[:2]
    if np.hypot(*d) < 1e-6:
        return pose
    return replace(pose, yaw_rad=snap_yaw(float(np.arctan2(d[1], d[0])), snap_step_rad))


#: Edge names of a box seen from above, with (axis, sign): +x is the front face.
EDGES = {"front": (0, 1.0), "back": (0, -1.0), "left": (1, 1.0), "right": (1, -1.0)}


def resize_edge(pose: BoxPose, edge: str, to_xy_m: np.ndarray) -> BoxPose:
    """Move one face of the box to the dragged point, keeping the opposite face fixed.

    Args:
        pose: the box. edge: one of :data:`EDGES`. to_xy_m: (2,) ego x-y of the mouse.

    Raises:
        ValueError: unknown edge.
    """
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {sorted(EDGES)}, got {edge!r}")
    axis, sign = EDGES[edge]
    local = pose.to_local_xy(np.asarray(to_xy_m, dtype=np.float64))[0]
    return set_face(pose, axis, sign, float(local[axis]))


def set_face(pose: BoxPose, axis: int, sign: float, coordinate_m: float) -> BoxPose:
    """Put the face (``axis`` 0/1/2 = x/y/z of the box frame, ``sign`` +1/-1) at ``coordinate_m`` in the box frame,
    keeping the opposite face where it is. This is how the orthographic views set each edge precisely."""
    half = pose.lwh_m[axis] / 2
    opposite = -sign * half
    size = max(abs(coordinate_m - opposite), MIN_SIDE_M)
    new_face = opposite + sign * size
    shift_local = (new_face + opposite) / 2  # new centre in the old box frame, along this axis
    lwh = pose.lwh_m.copy()
    lwh[axis] = size
    center = pose.center_m.copy()
    if axis == 2:
        center[2] += shift_local
    else:
        center[:2] += pose.axes_xy[axis] * shift_local
    return replace(pose, center_m=center, lwh_m=lwh)


def pick_box(boxes: Boxes, xy_m: np.ndarray, margin_m: float = 0.2) -> int:
    """Index of the box under a point seen from above (the smallest one when boxes overlap), -1 for none.

    Args:
        boxes: N boxes in the ego frame. xy_m: (2,) ego x-y.
    """
    if len(boxes) == 0:
        return -1
    yaw = boxes.yaw_rad
    c, s = np.cos(yaw), np.sin(yaw)
    d = np.asarray(xy_m, dtype=np.float64)[None, :] - boxes.center_m[:, :2]
    lx = d[:, 0] * c + d[:, 1] * s
    ly = -d[:, 0] * s + d[:, 1] * c
    inside = (np.abs(lx) <= boxes.lwh_m[:, 0] / 2 + margin_m) & (np.abs(ly) <= boxes.lwh_m[:, 1] / 2 + margin_m)
    if not inside.any():
        return -1
    area = np.where(inside, boxes.lwh_m[:, 0] * boxes.lwh_m[:, 1], np.inf)
    return int(np.argmin(area))


def hit_test(pose: BoxPose, xy_m: np.ndarray, tolerance_m: float, handle_offset_m: float = 1.0) -> str:
    """What a press at ``xy_m`` grabs on a selected box: ``"rotate"`` (the handle ``handle_offset_m`` ahead of the
    front face), an edge name of :data:`EDGES`, ``"move"`` (inside) or ``""`` (nothing)."""
    xy = np.asarray(xy_m, dtype=np.float64)
    if np.hypot(*(xy - pose.rotation_handle_xy(handle_offset_m))) <= 1.5 * tolerance_m:
        return "rotate"
    lx, ly = pose.to_local_xy(xy)[0]
    hl, hw = pose.lwh_m[0] / 2, pose.lwh_m[1] / 2
    if abs(lx) <= hl + tolerance_m and abs(ly) <= hw + tolerance_m:
        distances = {"front": abs(lx - hl), "back": abs(lx + hl), "left": abs(ly - hw), "right": abs(ly + hw)}
        edge = min(distances, key=distances.get)
        # On a small box (or zoomed out) the edge bands would cover it all: keep its middle for moving.
        if distances[edge] <= min(tolerance_m, 0.3 * min(hl, hw) * 2):
            return edge
        return "move"
    return ""


def points_near_box(points_ego: np.ndarray, pose: BoxPose, margin_m: float) -> np.ndarray:
    """Points around a box in the box frame: (M,3) for points inside the box grown by ``margin_m``.

    Args:
        points_ego: (P,3) points in the ego frame.
    """
    pts = np.asarray(points_ego)
    c, s = np.cos(pose.yaw_rad), np.sin(pose.yaw_rad)
    half = pose.lwh_m / 2 + margin_m
    # Cheap axis-aligned pre-cull on the circumscribed square before rotating.
    r = float(np.hypot(half[0], half[1]))
    near = np.flatnonzero((np.abs(pts[:, 0] - pose.center_m[0]) <= r) & (np.abs(pts[:, 1] - pose.center_m[1]) <= r))
    d = pts[near, :3].astype(np.float64) - pose.center_m
    local = np.stack([d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c, d[:, 2]], axis=1)
    return local[np.all(np.abs(local) <= half, axis=1)]


def new_box_at(points_ego: np.ndarray, xy_m: np.ndarray, label: str = "Car", radius_m: float = 4.0) -> BoxPose:
    """A new box for the object under a click: the proposal fitted to the points around it, else a default box.

    The points within ``radius_m`` of the click go to :func:`sensorlabel.propagation.propose.propose_boxes` (ground
    removal, clustering, L-shape fit); the proposal containing the click, or nearest to it, wins. Without one, a
    default box of the class is placed on the local ground at the click and slid onto the points by
    :func:`sensorlabel.propagation.refine.fit_box_to_points`.

    Args:
        points_ego: (P,3) points in the ego frame. xy_m: (2,) the click. label: class of the new box.
    """
    from sensorlabel.propagation.propose import ProposalConfig, propose_boxes

    pts = np.asarray(points_ego, dtype=np.float64)[:, :3]
    xy = np.asarray(xy_m, dtype=np.float64)
    near = pts[np.hypot(pts[:, 0] - xy[0], pts[:, 1] - xy[1]) <= radius_m]
    if len(near) >= 30:
        config = ProposalConfig(max_range_m=1e9, min_cluster_points=10)
        proposals = propose_boxes(near, None, config)
        if len(proposals):
            hit = pick_box(proposals, xy, margin_m=0.3)
            if hit < 0:
                hit = int(np.argmin(np.hypot(*(proposals.center_m[:, :2] - xy).T)))
            if np.hypot(*(proposals.center_m[hit, :2] - xy)) <= radius_m / 2:
                return BoxPose.from_boxes(proposals, hit)
    return fit_to_points(_default_box(near, xy, label), points_ego)


def _default_box(near: np.ndarray, xy: np.ndarray, label: str) -> BoxPose:
    lwh = np.array(DEFAULT_LWH_M.get(label, DEFAULT_LWH_M["Car"]), dtype=np.float64)
    ground_z = float(np.percentile(near[:, 2], 5)) if len(near) else -1.8
    return BoxPose(np.array([xy[0], xy[1], ground_z + lwh[2] / 2]), lwh, 0.0)


def fit_to_points(pose: BoxPose, points_ego: np.ndarray, margin_m: float = 0.5) -> BoxPose:
    """Slide a box (size and heading kept) onto the points around it with
    :func:`sensorlabel.propagation.refine.fit_box_to_points`; the ground slice below the box is ignored.

    Args:
        pose: the box. points_ego: (P,3) points in the ego frame.
    """
    from sensorlabel.geometry.se3 import SE3
    from sensorlabel.propagation.refine import GROUND_CLEARANCE_M, fit_box_to_points

    local = points_near_box(points_ego, pose, margin_m)
    local = local[local[:, 2] >= -pose.lwh_m[2] / 2 + GROUND_CLEARANCE_M]
    ego_SE3_object = SE3.from_yaw(pose.yaw_rad, pose.center_m)
    fitted = fit_box_to_points(ego_SE3_object, pose.lwh_m, ego_SE3_object.transform_points(local))
    return replace(pose, center_m=fitted.translation.copy())
