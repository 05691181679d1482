"""Projection of 3D boxes into a camera: edges with near-plane clipping, the enclosing 2D box, the in-view fraction.

* **Edges.** Each of the 12 edges is clipped against the plane ``z = near_m`` in the camera frame *before* projecting:
  a segment that crosses the plane keeps only its part in front, so a box half behind the camera draws no lines
  wrapped through infinity. The kept part is sampled at ``samples_per_edge`` points and each sample is projected
  with the camera model, so with a distorted camera the edges come out curved as in the image. Samples outside the
  model's one-to-one domain are NaN (the polyline breaks there).
* **Enclosing 2D box.** The convex hull of every projected edge sample, intersected with the image rectangle
  ``[0, W-1] x [0, H-1]`` (shapely, vectorised over boxes), and its bounds. This equals the bounds of the visible part
  of the box outline for pinhole cameras (lines project to lines) and is within the edge sampling error otherwise.
* **In-view fraction** (``visible_fraction``): the share of the box's volume that lies in the camera's field of view,
  estimated on a regular ``g x g x g`` grid of cell centres inside the box (points in front of the near plane, inside
  the model's domain and inside the image). It ignores occlusion; occlusion-aware visibility comes from the lidar
  points inside the box that survive the depth buffer (see :mod:`sensorlabel.fusion.occlusion`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.boxes import BOX_EDGES, Boxes
from sensorlabel.geometry.camera import NEAR_M, CameraModel
from sensorlabel.geometry.se3 import SE3


@dataclass(frozen=True)
class BoxProjection:
    """N boxes projected into one camera.

    Attributes:
        corners_uv_px: (N,8,2) float64 corner pixels; NaN where the corner is behind the near plane or outside the
            model's domain (a corner may lie outside the image).
        edges_uv_px: (N,12,S,2) float64 polylines of the clipped, sampled edges; NaN where clipped or out of domain.
        box2d_px: (N,4) float64 ``x1, y1, x2, y2`` of the enclosing 2D box clipped to the image; NaN when the box
            outline does not reach the image.
        in_image: (N,) bool, the outline reaches the image (``box2d_px`` is finite).
        visible_fraction: (N,) float64 in [0, 1], share of the box volume inside the field of view.
    """

    corners_uv_px: np.ndarray
    edges_uv_px: np.ndarray
    box2d_px: np.ndarray
    in_image: np.ndarray
    visible_fraction: np.ndarray


def _raw_projection(camera: CameraModel, points_cam: np.ndarray) -> np.ndarray:
    """(M,3) -> (M,2) pixels without the in-image test; NaN behind the near plane or outside the model's domain."""
    uv, in_domain = camera.project_unclipped(points_cam)
    return np.where(in_domain[:, None], uv, np.nan)


def _enclosing_box2d(samples_uv_px: np.ndarray, width_px: int, height_px: int) -> np.ndarray:
    """(N,K,2) edge samples (NaN where absent) -> (N,4) ``x1, y1, x2, y2`` of each convex hull intersected with the
    image rectangle ``[0, W-1] x [0, H-1]``; NaN where that intersection is empty.

    A hull inside the rectangle keeps its bounds and a hull strictly beyond one side of it is empty, both read off
    the samples' bounds; only the hulls that cross the border are intersected with shapely (vectorised).
    """
    import shapely

    n = len(samples_uv_px)
    ok = np.isfinite(samples_uv_px).all(axis=2)
    x = samples_uv_px[..., 0]
    y = samples_uv_px[..., 1]
    x_lo, x_hi = np.where(ok, x, np.inf).min(axis=1), np.where(ok, x, -np.inf).max(axis=1)
    y_lo, y_hi = np.where(ok, y, np.inf).min(axis=1), np.where(ok, y, -np.inf).max(axis=1)
    x_max, y_max = width_px - 1.0, height_px - 1.0
    any_sample = ok.any(axis=1)
    inside = any_sample & (x_lo >= 0) & (y_lo >= 0) & (x_hi <= x_max) & (y_hi <= y_max)
    beyond = (x_hi < 0) | (y_hi < 0) | (x_lo > x_max) | (y_lo > y_max)
    box2d = np.full((n, 4), np.nan)
    box2d[inside] = np.c_[x_lo, y_lo, x_hi, y_hi][inside]
    crossing = np.flatnonzero(any_sample & ~inside & ~beyond)
    if len(crossing):
        counts = ok[crossing].sum(axis=1)
        geoms = shapely.multipoints(samples_uv_px[crossing][ok[crossing]],
                                    indices=np.repeat(np.arange(len(crossing)), counts))
        clipped = shapely.intersection(shapely.convex_hull(geoms), shapely.box(0.0, 0.0, x_max, y_max))
        empty = shapely.is_empty(clipped)
        box2d[crossing[~empty]] = shapely.bounds(clipped)[~empty]
    return box2d


def project_boxes(
    boxes: Boxes,
    cam_SE3_frame: SE3,
    camera: CameraModel,
    *,
    near_m: float = NEAR_M,
    samples_per_edge: int = 16,
    fraction_grid: int = 5,
) -> BoxProjection:
    """Project boxes into a camera (see the module docstring for every output).

    Args:
        boxes: N boxes in some frame (ego, lidar ...).
        cam_SE3_frame: single SE3 from the boxes' frame into the camera frame (OpenCV axes).
        camera: the camera model.
        near_m: clipping plane distance, at least the camera model's own near limit (0.1 m).
        samples_per_edge: points per edge polyline (2 = straight segments between the clipped ends).
        fraction_grid: g, the grid of g^3 samples for the in-view fraction.

    Returns:
        A :class:`BoxProjection`.

    Raises:
        ValueError: samples_per_edge < 2 or fraction_grid < 1.
    """
    if samples_per_edge < 2 or fraction_grid < 1:
        raise ValueError("samples_per_edge must be >= 2 and fraction_grid >= 1, "
                         f"got {samples_per_edge}, {fraction_grid}")
    n = len(boxes)
    w, h = camera.width_px, camera.height_px
    if n == 0:
        return BoxProjection(np.zeros((0, 8, 2)), np.zeros((0, 12, samples_per_edge, 2)), np.zeros((0, 4)),
                             np.zeros(0, bool), np.zeros(0))
    # Clip a hair in front of the model's own strict limit so clipped ends still project.
    near = max(near_m, NEAR_M) * (1 + 1e-9) + 1e-9
    corners_cam = cam_SE3_frame.transform_points(boxes.corners().reshape(-1, 3)).reshape(n, 8, 3)
    corners_uv = _raw_projection(camera, corners_cam.reshape(-1, 3)).reshape(n, 8, 2)

    a = corners_cam[:, BOX_EDGES[:, 0]]  # (N,12,3)
    b = corners_cam[:, BOX_EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    dz = zb - za
    with np.errstate(invalid="ignore", divide="ignore"):
        s_cross = (near - za) / dz
    s0 = np.where(za >= near, 0.0, np.where(zb >= near, s_cross, np.nan))
    s1 = np.where(zb >= near, 1.0, np.where(za >= near, s_cross, np.nan))
    t = np.linspace(0.0, 1.0, samples_per_edge)
    s = s0[..., None] + (s1 - s0)[..., None] * t  # (N,12,S), NaN for edges entirely behind
    pts = a[:, :, None, :] + s[..., None] * (b - a)[:, :, None, :]
    flat = pts.reshape(-1, 3)
    finite = np.isfinite(flat).all(axis=1)
    edges_uv = np.full((len(flat), 2), np.nan)
    edges_uv[finite] = _raw_projection(camera, flat[finite])
    edges_uv = edges_uv.reshape(n, 12, samples_per_edge, 2)

    box2d = _enclosing_box2d(edges_uv.reshape(n, -1, 2), w, h)
    in_image = np.isfinite(box2d).all(axis=1)

    g = fraction_grid
    c = (np.arange(g) + 0.5) / g - 0.5
    grid = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1).reshape(-1, 3)  # (g^3,3) unit box
    local = grid[None] * boxes.lwh_m[:, None, :]
    inside_frame = np.einsum("nij,nkj->nki", boxes.rotation, local) + boxes.center_m[:, None, :]
    _, valid = camera.project(cam_SE3_frame.transform_points(inside_frame.reshape(-1, 3)))
    fraction = valid.reshape(n, -1).mean(axis=1)
    return BoxProjection(corners_uv, edges_uv, box2d, in_image, fraction)


def boxes_in_camera(boxes: Boxes, cam_SE3_frame: SE3, camera: CameraModel) -> np.ndarray:
    """(N,) bool: the box centre is in the camera's field of view (in front, in the image)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    return camera.project(cam_SE3_frame.transform_points(boxes.center_m))[1]
