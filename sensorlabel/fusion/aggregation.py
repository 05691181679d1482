"""Multi-sweep aggregation with motion compensation of the ego *and* of the moving objects.

Every sweep is motion-compensated point by point (each point goes to the world with the ego pose at its own time).
Static points then coincide across sweeps. Points on a moving object do not: a car at 15 m/s moves 1.5 m between
sweeps and would smear into a streak. With ``moving="transfer"`` each such point is moved along its track's boxes
(object-frame transfer)::

    p_object = inverse(world_SE3_object(t_p)) . p_world          # where on the car the return hit
    p_target = world_SE3_object(t_target) . p_object              # where that part of the car is at t_target

``world_SE3_object(t)`` comes from the track's labelled boxes: the box of the sweep advanced at the track's constant
velocity and yaw rate (finite differences with the track's nearest other box) to the point time, so the motion of the
object *within* a sweep (0.75 m at 15 m/s over 50 ms) is compensated too. At the target time the track's box nearest
in time is advanced the same way; tracks with no box within ``max_extrapolation_s`` of the target are dropped.
``moving="drop"`` removes the points of tracked objects instead; ``moving="keep"`` leaves them (smearing).

A point belongs to a box when it lies inside it (grown by ``margin_m``) in the object frame at the point's time.
Boxes are gravity-aligned (yaw only) for the velocity model; the box orientation itself is kept as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.fusion.projection import PoseFn, _call_pose, compensate_points
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.lie import wrap_angle
from sensorlabel.geometry.se3 import SE3

MOVING_POLICIES = ("transfer", "drop", "keep")


@dataclass(frozen=True)
class SweepInput:
    """One sweep to aggregate.

    Attributes:
        points_lidar: (P,3) points in the lidar frame as measured (extra columns ignored).
        point_times_ns: (P,) int64 per-point times, or one int (the sweep time) when the format has none.
        timestamp_ns: the sweep (frame) time; its boxes are at this time.
        boxes_ego: boxes in the ego frame at ``timestamp_ns`` with ``track_id`` (>= 0 for tracked objects);
            an empty Boxes when there are none.
    """

    points_lidar: np.ndarray
    point_times_ns: np.ndarray | int
    timestamp_ns: int
    boxes_ego: Boxes


@dataclass(frozen=True)
class AggregatedCloud:
    """Points of several sweeps in one frame.

    Attributes:
        points: (M,3) in the target frame: float32 in the ego frame at ``target_ns``, float64 in the world
            (world coordinates can be large).
        sweep_index: (M,) int32 index of the source sweep in the input list.
        point_index: (M,) int64 index of the point within its sweep.
        track_id: (M,) int64 the track the point belongs to (-1 static / untracked).
        moved: (M,) bool, the point was transferred along its track.
        frame: ``"world"`` or ``"ego"``. target_ns: the target time.
    """

    points: np.ndarray
    sweep_index: np.ndarray
    point_index: np.ndarray
    track_id: np.ndarray
    moved: np.ndarray
    frame: str
    target_ns: int


@dataclass(frozen=True)
class _TrackTable:
    """All boxes of all sweeps in the world frame, with constant-velocity motion per box row."""

    time_ns: np.ndarray  # (R,)
    track_id: np.ndarray  # (R,)
    boxes_world: Boxes
    velocity_mps: np.ndarray  # (R,3)
    yaw_rate_rps: np.ndarray  # (R,)

    @classmethod
    def build(cls, sweeps: list[SweepInput], world_SE3_ego: PoseFn) -> _TrackTable:
        parts, times = [], []
        for s in sweeps:
            b = s.boxes_ego[s.boxes_ego.track_id >= 0] if len(s.boxes_ego) else s.boxes_ego
            if len(b):
                pose = _call_pose(world_SE3_ego, np.array([int(s.timestamp_ns)]))[0]
                parts.append(b.transform(pose))
                times.append(np.full(len(b), int(s.timestamp_ns), np.int64))
        boxes = Boxes.concatenate(parts)
        t = np.concatenate(times) if times else np.zeros(0, np.int64)
        order = np.lexsort((t, boxes.track_id))
        boxes, t = boxes[order], t[order]
        track = boxes.track_id
        n = len(boxes)
        vel = np.zeros((n, 3))
        yaw_rate = np.zeros(n)
        if n > 1:
            # Neighbour of each row: the next box of the same track, else the previous one.
            same_next = np.zeros(n, bool)
            same_next[:-1] = (track[1:] == track[:-1]) & (t[1:] != t[:-1])
            same_prev = np.zeros(n, bool)
            same_prev[1:] = same_next[:-1]
            nb = np.where(same_next, np.arange(n) + 1, np.where(same_prev, np.arange(n) - 1, np.arange(n)))
            has = nb != np.arange(n)
            dt = (t[nb] - t).astype(np.float64) * 1e-9
            dt = np.where(has, dt, 1.0)
            vel = np.where(has[:, None], (boxes.center_m[nb] - boxes.center_m) / dt[:, None], 0.0)
            yaw = boxes.yaw_rad
            yaw_rate = np.where(has, wrap_angle(yaw[nb] - yaw) / dt, 0.0)
        return cls(t, track, boxes, vel, yaw_rate)

    def poses_at(self, rows: np.ndarray, times_ns: np.ndarray) -> SE3:
        """world_SE3_object of box rows advanced to the given times (constant velocity and yaw rate)."""
        dt = (np.asarray(times_ns, np.int64) - self.time_ns[rows]).astype(np.float64) * 1e-9
        base = self.boxes_world.rotation[rows]
        turn = SE3.from_yaw(self.yaw_rate_rps[rows] * dt, np.zeros((len(rows), 3))).rotation
        return SE3._trusted(turn @ base, self.boxes_world.center_m[rows] + self.velocity_mps[rows] * dt[:, None])

    def nearest_rows(self, track_ids: np.ndarray, time_ns: int) -> np.ndarray:
        """For each track id, the row of its box nearest to ``time_ns`` (-1 when the track has no box)."""
        out = np.full(len(track_ids), -1, np.int64)
        if len(self.track_id) == 0:
            return out
        dist = np.abs(self.time_ns - int(time_ns))
        order = np.lexsort((dist, self.track_id))
        tracks_sorted = self.track_id[order]
        first = np.r_[True, tracks_sorted[1:] != tracks_sorted[:-1]]
        uniq, best = tracks_sorted[first], order[first]
        pos = np.clip(np.searchsorted(uniq, track_ids), 0, len(uniq) - 1)
        hit = uniq[pos] == track_ids
        out[hit] = best[pos[hit]]
        return out


def aggregate_sweeps(
    sweeps: list[SweepInput],
    ego_SE3_lidar: SE3,
    world_SE3_ego: PoseFn,
    target_ns: int,
    *,
    frame: str = "ego",
    moving: str = "transfer",
    margin_m: float = 0.2,
    max_extrapolation_s: float = 0.3,
) -> AggregatedCloud:
    """Aggregate N sweeps into the world frame or the ego frame at ``target_ns`` (see the module docstring).

    Args:
        sweeps: the sweeps, each with its boxes (track ids) in the ego frame at the sweep time.
        ego_SE3_lidar: single SE3, the lidar mounting.
        world_SE3_ego: pose function.
        target_ns: the time the moving objects are brought to, and of the ego frame when ``frame="ego"``.
        frame: ``"ego"`` (ego frame at ``target_ns``) or ``"world"``.
        moving: ``"transfer"``, ``"drop"`` or ``"keep"`` for points inside tracked boxes.
        margin_m: grow boxes by this much when assigning points to them.
        max_extrapolation_s: longest time a track's box is extrapolated to reach ``target_ns``.

    Returns:
        An :class:`AggregatedCloud`.

    Raises:
        ValueError: an unknown frame or policy.
    """
    if frame not in ("ego", "world"):
        raise ValueError(f"frame must be 'ego' or 'world', got {frame!r}")
    if moving not in MOVING_POLICIES:
        raise ValueError(f"moving must be one of {MOVING_POLICIES}, got {moving!r}")
    target_ns = int(target_ns)
    # All work happens in the ego frame at target_ns ("ref"), which keeps float32 coordinates small.
    world_SE3_ref = _call_pose(world_SE3_ego, np.array([target_ns]))[0]
    ref_SE3_world = world_SE3_ref.inverse()
    table = _TrackTable.build(sweeps, world_SE3_ego) if moving != "keep" else None
    out_pts, out_sweep, out_idx, out_track, out_moved = [], [], [], [], []
    for i, s in enumerate(sweeps):
        pts = np.asarray(s.points_lidar)
        p = len(pts)
        times = np.asarray(s.point_times_ns, dtype=np.int64)
        times_full = np.broadcast_to(times, (p,)) if times.ndim == 0 else times
        # Points in the ref frame, each compensated with the ego pose at its own time.
        points_ref = np.ascontiguousarray(compensate_points(pts, times, ego_SE3_lidar, world_SE3_ego, target_ns))
        track = np.full(p, -1, np.int64)
        moved = np.zeros(p, bool)
        keep = np.ones(p, bool)
        if table is not None and len(table.track_id) and p:
            rows_here = np.flatnonzero(table.time_ns == int(s.timestamp_ns))
            if len(rows_here):
                boxes_ref = table.boxes_world[rows_here].transform(ref_SE3_world)
                # Candidates generously (objects move within the sweep), then the exact test at each point's time.
                reach = float(np.abs(table.velocity_mps[rows_here]).max(initial=0.0)) * float(
                    np.abs(times_full - int(s.timestamp_ns)).max(initial=0) * 1e-9)
                b_idx, p_idx = boxes_ref.point_box_pairs(points_ref, margin_m + reach)
                rows = rows_here[b_idx]
                obj_SE3_world = table.poses_at(rows, times_full[p_idx]).inverse()
                p_world = world_SE3_ref.transform_points(points_ref[p_idx].astype(np.float64))
                local = obj_SE3_world.transform_points(p_world)
                half = table.boxes_world.lwh_m[rows] / 2.0 + margin_m
                inside = np.all(np.abs(local) <= half, axis=1)
                b_idx, p_idx, rows, local = b_idx[inside], p_idx[inside], rows[inside], local[inside]
                # A point inside two grown boxes goes to the first; the pairs are sorted by box.
                _, first = np.unique(p_idx, return_index=True)
                p_idx, rows, local = p_idx[first], rows[first], local[first]
                track[p_idx] = table.track_id[rows]
                if moving == "drop":
                    keep[p_idx] = False
                else:
                    target_rows = table.nearest_rows(table.track_id[rows], target_ns)
                    ok = target_rows >= 0
                    ok[ok] &= np.abs(table.time_ns[target_rows[ok]] - target_ns) * 1e-9 <= max_extrapolation_s
                    keep[p_idx[~ok]] = False
                    if ok.any():
                        pose_t = table.poses_at(target_rows[ok], np.full(int(ok.sum()), target_ns, np.int64))
                        moved_world = pose_t.transform_points(local[ok])
                        points_ref[p_idx[ok]] = ref_SE3_world.transform_points(moved_world).astype(np.float32)
                        moved[p_idx[ok]] = True
        sel = np.flatnonzero(keep)
        out_pts.append(points_ref[sel])
        out_sweep.append(np.full(len(sel), i, np.int32))
        out_idx.append(sel.astype(np.int64))
        out_track.append(track[sel])
        out_moved.append(moved[sel])
    points = np.concatenate(out_pts) if out_pts else np.zeros((0, 3), np.float32)
    if frame == "world":
        # float64: world coordinates can be large.
        points = world_SE3_ref.transform_points(points.astype(np.float64))
    return AggregatedCloud(
        points.astype(np.float32) if frame == "ego" else points,
        np.concatenate(out_sweep) if out_sweep else np.zeros(0, np.int32),
        np.concatenate(out_idx) if out_idx else np.zeros(0, np.int64),
        np.concatenate(out_track) if out_track else np.zeros(0, np.int64),
        np.concatenate(out_moved) if out_moved else np.zeros(0, bool),
        frame, target_ns,
    )
