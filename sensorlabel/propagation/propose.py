"""Geometric box proposals for objects nobody has labelled: ground removal, clustering, L-shape fit.

1. The ground plane is found by RANSAC (Open3D ``segment_plane``) and points within ``ground_tolerance_m`` of it are
   removed, as are points above ``max_height_m``.
2. The rest is clustered by DBSCAN (Open3D ``cluster_dbscan``).
3. Each cluster gets a box by the search-based L-shape fit of Zhang et al., "Efficient L-Shape Fitting for Vehicle
   Detection Using Laser Scanners", IEEE IV 2017, with their closeness criterion: for every candidate heading in
   [0, pi/2) the points are projected on the two box axes, and the heading whose points lie closest to the edges wins.
   All headings are scored at once (vectorised).

Clusters overlapping an existing box, too small or too large for a road user, are dropped. Proposals are stored
with source ``proposed`` and a confidence from the cluster's size and fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.boxes import Boxes


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of :func:`propose_boxes`."""

    ground_tolerance_m: float = 0.2
    max_height_m: float = 3.0
    dbscan_eps_m: float = 0.6
    dbscan_min_points: int = 8
    min_cluster_points: int = 15
    max_range_m: float = 50.0
    max_footprint_m: float = 8.0
    angle_steps: int = 90


def lshape_fit(points_xy: np.ndarray, angle_steps: int = 90) -> tuple[np.ndarray, float, float, float]:
    """Fit a rectangle to a cluster seen from above with the closeness criterion.

    Args:
        points_xy: (M,2) cluster points (any horizontal frame).

    Returns:
        centre (2,), length along the heading, width, heading yaw (radians). The length is the longer side.
    """
    angles = np.linspace(0.0, np.pi / 2, angle_steps, endpoint=False)
    e1 = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (A,2)
    e2 = np.stack([-np.sin(angles), np.cos(angles)], axis=1)
    c1 = points_xy @ e1.T  # (M,A)
    c2 = points_xy @ e2.T
    d1 = np.minimum(c1.max(0) - c1, c1 - c1.min(0))
    d2 = np.minimum(c2.max(0) - c2, c2 - c2.min(0))
    closeness = (1.0 / np.maximum(np.minimum(d1, d2), 0.01)).sum(axis=0)
    best = int(np.argmax(closeness))
    a1, a2 = c1[:, best], c2[:, best]
    s1, s2 = a1.max() - a1.min(), a2.max() - a2.min()
    mid1, mid2 = (a1.max() + a1.min()) / 2, (a2.max() + a2.min()) / 2
    center = mid1 * e1[best] + mid2 * e2[best]
    yaw = angles[best]
    if s2 > s1:
        s1, s2, yaw = s2, s1, yaw + np.pi / 2
    return center, float(max(s1, 0.1)), float(max(s2, 0.1)), float(yaw)


def propose_boxes(points_ego: np.ndarray, existing_ego: Boxes | None = None,
                  config: ProposalConfig = ProposalConfig()) -> Boxes:
    """Boxes around unlabelled point clusters of one sweep.

    Args:
        points_ego: (P,3) points in the ego frame (z up).
        existing_ego: boxes already labelled in this frame; clusters with points inside them are skipped.

    Returns:
        Proposed boxes in the ego frame, label "unknown", track_id -1, score = confidence in [0, 1].
    """
    import open3d as o3d

    pts = np.asarray(points_ego, dtype=np.float64)[:, :3]
    pts = pts[np.hypot(pts[:, 0], pts[:, 1]) <= config.max_range_m]
    if len(pts) < config.min_cluster_points:
        return Boxes.empty()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    plane, _ = cloud.segment_plane(config.ground_tolerance_m, 3, 200)
    normal = np.asarray(plane[:3])
    height = (pts @ normal + plane[3]) / np.linalg.norm(normal) * np.sign(normal[2] or 1.0)
    above = (height > config.ground_tolerance_m) & (height < config.max_height_m)
    if existing_ego is not None and len(existing_ego):
        covered = np.zeros(len(pts), dtype=bool)
        _, idx = existing_ego.point_box_pairs(pts, margin_m=0.3)
        covered[idx] = True
        above &= ~covered
    obj = pts[above]
    obj_height = height[above]
    if len(obj) < config.min_cluster_points:
        return Boxes.empty()
    labels = np.asarray(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(obj)).cluster_dbscan(
        config.dbscan_eps_m, config.dbscan_min_points))
    centers, sizes, yaws, scores = [], [], [], []
    # Points grouped by cluster with one stable sort (noise, label -1, first); members keep their point order.
    order = np.argsort(labels, kind="stable")
    num_clusters = int(labels.max()) + 1 if len(labels) else 0
    bounds = np.searchsorted(labels[order], np.arange(num_clusters + 1))
    for lab in range(num_clusters):
        member = order[bounds[lab]:bounds[lab + 1]]
        n = len(member)
        if n < config.min_cluster_points:
            continue
        cluster = obj[member]
        center_xy, length, width, yaw = lshape_fit(cluster[:, :2], config.angle_steps)
        if length > config.max_footprint_m:
            continue
        ground_z = float(np.median(cluster[:, 2] - obj_height[member]))
        top = float(cluster[:, 2].max())
        h = max(top - ground_z, 0.3)
        centers.append([center_xy[0], center_xy[1], ground_z + h / 2])
        sizes.append([length, width, h])
        yaws.append(yaw)
        scores.append(1.0 - np.exp(-n / 50.0))
    if not centers:
        return Boxes.empty()
    k = len(centers)
    return Boxes.from_yaw(np.array(centers), np.array(sizes), np.array(yaws), np.full(k, -1),
                          np.full(k, "unknown"), np.array(scores))


def propose_drive(drive, frames: list[int] | None = None, config: ProposalConfig = ProposalConfig()) -> int:
    """Store ``proposed`` boxes for unlabelled clusters in the given frames (all by default).

    Returns:
        The number of proposals written.
    """
    total = 0
    for frame in frames if frames is not None else range(drive.num_frames):
        sweep = drive.frame_sweep(frame)
        if sweep is None:
            continue
        points_ego = drive.sensors[sweep.sensor].ego_SE3_sensor.transform_points(sweep.xyz_sensor.astype(np.float64))
        existing = drive.labels.boxes_at(frame).boxes
        boxes = propose_boxes(points_ego, existing, config)
        if len(boxes):
            drive.labels.put_boxes(np.full(len(boxes), frame), boxes, source="proposed", confidence=boxes.score,
                                   description=f"proposals for frame {frame}")
            total += len(boxes)
    return total
