"""Keyframe interpolation of one track in the world frame, and the baselines it is measured against.

Our method removes ego motion first: each keyframe box (ego frame at its frame time) becomes ``world_SE3_object``
through ``world_SE3_ego`` at that time; poses between keyframes follow the SE(3) geodesic (constant body twist, see
:mod:`sensorlabel.geometry.lie`); one size per track (the median of the keyframe sizes); the result goes back to the ego
frame of each query time. Outside the keyframe span the first/last segment's twist continues (constant velocity and
turn rate).

Baselines, as other tools do it (cited in issue 5):

* ``copy_last``: the last keyframe box copied unchanged into the sensor frame (open-source Xtreme1).
* ``linear_sensor``: centre and yaw interpolated linearly in the sensor/ego frame (CVAT).
* ``linear_world``: centre and yaw interpolated linearly in the world frame (SUSTechPOINTS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.lie import geodesic_interpolate
from sensorlabel.geometry.se3 import SE3


@dataclass(frozen=True)
class KeyframeTrack:
    """The keyframes of one track, in the world frame.

    Attributes:
        track_id: the track.
        label: class name.
        times_ns: (K,) int64 keyframe times, strictly increasing.
        world_SE3_object: batch of K object poses in the world.
        lwh_m: (3,) one size for the whole track.
    """

    track_id: int
    label: str
    times_ns: np.ndarray
    world_SE3_object: SE3
    lwh_m: np.ndarray

    @classmethod
    def from_ego_boxes(cls, boxes_ego: Boxes, times_ns: np.ndarray, world_SE3_ego: SE3) -> KeyframeTrack:
        """Build from K keyframe boxes of one track, each in the ego frame at its own time.

        Args:
            boxes_ego: K boxes, one track.
            times_ns: (K,) their frame times.
            world_SE3_ego: batch of K ego poses at those times.

        Raises:
            ValueError: no boxes, mixed tracks, or repeated times.
        """
        if len(boxes_ego) == 0:
            raise ValueError("a keyframe track needs at least one box")
        if len(np.unique(boxes_ego.track_id)) != 1:
            raise ValueError(f"boxes of several tracks given: {np.unique(boxes_ego.track_id).tolist()}")
        order = np.argsort(times_ns, kind="stable")
        times = np.asarray(times_ns, dtype=np.int64)[order]
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"track {boxes_ego.track_id[0]}: two keyframes at the same time")
        boxes_world = boxes_ego[order].transform(world_SE3_ego[order])
        return cls(
            track_id=int(boxes_ego.track_id[0]),
            label=str(boxes_ego.label[0]),
            times_ns=times,
            world_SE3_object=boxes_world.frame_SE3_object,
            lwh_m=np.median(boxes_ego.lwh_m, axis=0),
        )

    def pose_at(self, query_ns: np.ndarray) -> SE3:
        """World poses (Q) of the object at times (Q,) ns, along the geodesics between keyframes."""
        q = np.asarray(query_ns, dtype=np.int64).reshape(-1)
        k = len(self.times_ns)
        if k == 1:
            return SE3._trusted(
                np.repeat(self.world_SE3_object.rotation, len(q), 0),
                np.repeat(self.world_SE3_object.translation, len(q), 0),
            )
        seg = np.clip(np.searchsorted(self.times_ns, q, side="right") - 1, 0, k - 2)
        t0, t1 = self.times_ns[seg], self.times_ns[seg + 1]
        alpha = (q - t0).astype(np.float64) / (t1 - t0).astype(np.float64)
        return geodesic_interpolate(self.world_SE3_object[seg], self.world_SE3_object[seg + 1], alpha)

    def boxes_world_at(self, query_ns: np.ndarray) -> Boxes:
        """The track's boxes in the world at times (Q,)."""
        pose = self.pose_at(query_ns)
        n = len(pose)
        return Boxes(pose.translation, np.tile(self.lwh_m, (n, 1)), pose.as_quat_wxyz(),
                     np.full(n, self.track_id), np.full(n, self.label))


def interpolate_world(track: KeyframeTrack, query_ns: np.ndarray, world_SE3_ego_at_query: SE3) -> Boxes:
    """Our interpolation: boxes at times (Q,) in the ego frame of each time (batch of Q ego poses)."""
    return track.boxes_world_at(query_ns).transform(world_SE3_ego_at_query.inverse())


def _lerp_boxes(key_boxes: Boxes, key_times: np.ndarray, query_ns: np.ndarray) -> Boxes:
    """Centre and yaw linearly interpolated (yaw along the shorter arc), held constant outside the span."""
    order = np.argsort(key_times)
    t = np.asarray(key_times, dtype=np.float64)[order]
    boxes = key_boxes[order]
    q = np.asarray(query_ns, dtype=np.float64)
    center = np.stack([np.interp(q, t, boxes.center_m[:, i]) for i in range(3)], axis=1)
    yaw = np.unwrap(boxes.yaw_rad)
    yaw_q = np.interp(q, t, yaw)
    lwh = np.stack([np.interp(q, t, boxes.lwh_m[:, i]) for i in range(3)], axis=1)
    n = len(q)
    return Boxes.from_yaw(center, lwh, yaw_q, np.full(n, boxes.track_id[0]), np.full(n, boxes.label[0]))


def baseline_copy_last(key_boxes_ego: Boxes, key_times_ns: np.ndarray, query_ns: np.ndarray) -> Boxes:
    """The most recent keyframe box at or before each query (the first keyframe before the span), ego frame."""
    order = np.argsort(key_times_ns)
    idx = np.clip(np.searchsorted(np.asarray(key_times_ns)[order], query_ns, side="right") - 1, 0, len(order) - 1)
    return key_boxes_ego[order[idx]]


def baseline_linear_sensor(key_boxes_ego: Boxes, key_times_ns: np.ndarray, query_ns: np.ndarray) -> Boxes:
    """CVAT-style: linear interpolation of ego-frame centre and yaw."""
    return _lerp_boxes(key_boxes_ego, key_times_ns, query_ns)


def baseline_linear_world(
    key_boxes_ego: Boxes, key_times_ns: np.ndarray, world_SE3_ego_at_keys: SE3, query_ns: np.ndarray,
    world_SE3_ego_at_query: SE3,
) -> Boxes:
    """SUSTechPOINTS-style: linear interpolation of world-frame centre and yaw, back into each ego frame."""
    world = key_boxes_ego.transform(world_SE3_ego_at_keys)
    return _lerp_boxes(world, key_times_ns, query_ns).transform(world_SE3_ego_at_query.inverse())
