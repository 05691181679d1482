"""Fitting boxes to lidar points: an object model from keyframes, ICP constrained to yaw and translation, and a
fallback that slides a box over its points.

All work is in the world frame, with every point placed by the ego pose at its own measurement time (ego-motion
compensation). An object's points are measured within a few milliseconds of each other but up to half a sweep away
from the frame time, so the pose ICP finds belongs to the mean measurement time of those points; it is carried to
the frame time along the track's motion.

ICP: correspondences come from a KD-tree over the object model (scipy's ``cKDTree``, built once per track in the
object frame); each step solves the best rotation about the world z axis and the translation in closed form (2-D
Kabsch on x/y, mean offset on z), with a shrinking correspondence distance. Open3D's ``registration_icp`` estimates
all six degrees of freedom, and a pitch or roll fitted to a partial view of a car tilts the box, so the 4-DoF
estimator is ours; Open3D still builds the model (voxel down-sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.se3 import SE3

#: Points this close above a box's bottom face are treated as ground and ignored by the fit.
GROUND_CLEARANCE_M = 0.15


@dataclass(frozen=True)
class IcpResult:
    """Outcome of one registration.

    Attributes:
        world_SE3_object: the fitted pose (single SE3).
        fitness: share of the observed points with a model point within the final correspondence distance.
        rmse_m: RMS distance of those correspondences.
        num_points: observed points used.
    """

    world_SE3_object: SE3
    fitness: float
    rmse_m: float
    num_points: int


def box_points_mask(points_world: np.ndarray, world_SE3_object: SE3, lwh_m: np.ndarray, margin_m: float = 0.0,
                    drop_ground: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Which points lie inside a box grown by ``margin_m`` (optionally without the ground slice at its bottom).

    Args:
        points_world: (P,3) points in the world.
        world_SE3_object: single pose of the box.
        lwh_m: (3,) box size.
        margin_m: growth of every half-extent.
        drop_ground: also drop points less than :data:`GROUND_CLEARANCE_M` above the box's bottom face.

    Returns:
        ((P,3) the points in the object frame, (P,) bool mask of the points inside).
    """
    local = world_SE3_object.inverse().transform_points(points_world)
    keep = np.all(np.abs(local) <= lwh_m / 2.0 + margin_m, axis=1)
    if drop_ground:
        keep &= local[:, 2] >= -lwh_m[2] / 2.0 + GROUND_CLEARANCE_M
    return local, keep


def object_frame_points(points_world: np.ndarray, world_SE3_object: SE3, lwh_m: np.ndarray,
                        margin_m: float = 0.0) -> np.ndarray:
    """Points inside a box (grown by ``margin_m``, ground slice removed), expressed in the object frame.

    Args:
        points_world: (P,3) points in the world.
        world_SE3_object: single pose of the box.
        lwh_m: (3,) box size.

    Returns:
        (M,3) points in the object frame.
    """
    local, keep = box_points_mask(points_world, world_SE3_object, lwh_m, margin_m)
    return local[keep]


def build_object_model(parts_object: list[np.ndarray], voxel_m: float) -> np.ndarray:
    """Merge object-frame point sets from several keyframes into one model, voxel down-sampled with Open3D.

    Args:
        parts_object: list of (M_i,3) arrays in the object frame.
        voxel_m: voxel edge in metres (propagation passes ``PropagationConfig.model_voxel_m``).

    Returns:
        (Q,3) float64 model points (Q may be 0).
    """
    parts = [p for p in parts_object if len(p)]
    if not parts:
        return np.zeros((0, 3))
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate(parts).astype(np.float64)))
    return np.asarray(cloud.voxel_down_sample(voxel_m).points)


def icp_yaw_translation(
    model_object: np.ndarray,
    points_world: np.ndarray,
    init_world_SE3_object: SE3,
    *,
    max_iterations: int = 25,
    max_correspondence_m: tuple[float, float] = (1.0, 0.25),
    model_tree=None,
    fit_yaw: bool = True,
) -> IcpResult:
    """Register observed points to an object model, moving the object only by yaw and translation.

    Args:
        model_object: (Q,3) model in the object frame.
        points_world: (M,3) observed points (world) near the object.
        init_world_SE3_object: initial pose.
        max_iterations: iterations; the correspondence distance shrinks geometrically between the two bounds.
        model_tree: an optional prebuilt ``scipy.spatial.cKDTree`` over ``model_object``.
        fit_yaw: when False only the translation moves (for objects whose heading the points cannot show).

    Returns:
        IcpResult; with fewer than 3 usable correspondences the initial pose is returned with fitness 0.
    """
    from scipy.spatial import cKDTree

    if len(model_object) < 3 or len(points_world) < 3:
        return IcpResult(init_world_SE3_object, 0.0, float("inf"), len(points_world))
    tree = model_tree if model_tree is not None else cKDTree(model_object)
    rotation = init_world_SE3_object.rotation.copy()
    translation = init_world_SE3_object.translation.copy()
    schedule = np.geomspace(max_correspondence_m[0], max_correspondence_m[1], max_iterations)
    for max_d in schedule:
        local = (points_world - translation) @ rotation  # object frame
        dist, idx = tree.query(local, distance_upper_bound=max_d)
        ok = np.isfinite(dist)
        if ok.sum() < 3:
            break
        matched_world = model_object[idx[ok]] @ rotation.T + translation
        target = points_world[ok]
        # Best rotation about z and translation taking matched_world onto target (2-D Kabsch).
        mu_m, mu_t = matched_world.mean(axis=0), target.mean(axis=0)
        a, b = matched_world[:, :2] - mu_m[:2], target[:, :2] - mu_t[:2]
        h = a.T @ b
        angle = np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1]) if fit_yaw else 0.0
        c, s = np.cos(angle), np.sin(angle)
        rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        delta_t = mu_t - rz @ mu_m
        rotation = rz @ rotation
        translation = rz @ translation + delta_t
        if abs(angle) < 1e-5 and np.linalg.norm(delta_t) < 1e-4:
            break
    local = (points_world - translation) @ rotation
    dist, _ = tree.query(local, distance_upper_bound=max_correspondence_m[1])
    ok = np.isfinite(dist)
    rmse = float(np.sqrt(np.mean(dist[ok] ** 2))) if ok.any() else float("inf")
    return IcpResult(SE3._trusted(rotation, translation), float(ok.mean()), rmse, len(points_world))


def fit_box_to_points(world_SE3_object: SE3, lwh_m: np.ndarray, points_world: np.ndarray) -> SE3:
    """Slide a box (yaw kept) by the smallest move that brings its points inside it.

    Along each horizontal box axis the points' extent [lo, hi] must fit in [-s/2, s/2]; the shift is the value in
    [hi - s/2, lo + s/2] closest to zero, or the extent's middle when the points are wider than the box.

    Args:
        world_SE3_object: single pose. lwh_m: (3,). points_world: (M,3) points belonging to the object.

    Returns:
        The moved pose (unchanged with no points).
    """
    if len(points_world) == 0:
        return world_SE3_object
    local = world_SE3_object.inverse().transform_points(points_world)
    lo, hi = local.min(axis=0), local.max(axis=0)
    half = lwh_m / 2.0
    shift = np.zeros(3)
    for axis in (0, 1):
        if hi[axis] - lo[axis] > 2 * half[axis]:
            shift[axis] = (lo[axis] + hi[axis]) / 2.0
        else:
            shift[axis] = np.clip(0.0, hi[axis] - half[axis], lo[axis] + half[axis])
    return SE3._trusted(world_SE3_object.rotation, world_SE3_object.transform_points(shift[None])[0])
