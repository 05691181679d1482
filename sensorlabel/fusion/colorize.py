"""Colour every lidar point from the best camera that sees it.

A point takes its colour from the camera in which it is *visible* (it projects into the image and survives the depth
buffer of :mod:`sensorlabel.fusion.occlusion`). When several cameras see it, the one where it lands nearest to the
image centre (normalised by the image size) wins: lens distortion, vignetting and rolling-shutter effects are
smallest there. Points that no camera sees get ``seen = False``, ``camera_index = -1`` and the sentinel colour
:data:`UNSEEN_RGB`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.fusion.projection import Projection

#: Colour of points that no camera sees (magenta: never a plausible road-scene colour).
UNSEEN_RGB = (255, 0, 255)


@dataclass(frozen=True)
class Colorization:
    """Per-point colours of a cloud of P points.

    Attributes:
        rgb: (P,3) uint8 colours; :data:`UNSEEN_RGB` where ``seen`` is False.
        seen: (P,) bool, some camera sees the point.
        camera_index: (P,) int16 index (into the projections given) of the camera that coloured the point, -1 none.
    """

    rgb: np.ndarray
    seen: np.ndarray
    camera_index: np.ndarray


def colorize_points(num_points: int, projections: list[Projection], images: list[np.ndarray]) -> Colorization:
    """Colour P points from the camera images.

    Args:
        num_points: P.
        projections: per camera, the *visible* points (after occlusion) of the same P-point cloud.
        images: per camera, (H,W,3) uint8 RGB images of the size of the projection's camera.

    Returns:
        A :class:`Colorization`.

    Raises:
        ValueError: the lists differ in length, an image does not match its camera size, or a projection belongs to
            a cloud of another size.
    """
    if len(projections) != len(images):
        raise ValueError(f"{len(projections)} projections but {len(images)} images")
    best_score = np.full(num_points, np.inf, dtype=np.float32)
    best_cam = np.full(num_points, -1, dtype=np.int16)
    best_pixel = np.zeros(num_points, dtype=np.int64)
    for c, (proj, image) in enumerate(zip(projections, images)):
        if proj.num_points != num_points:
            raise ValueError(f"projection {proj.camera!r} is of a cloud of {proj.num_points} points, not {num_points}")
        if image.shape[:2] != (proj.height_px, proj.width_px) or image.ndim != 3:
            raise ValueError(f"image of {proj.camera!r}: expected ({proj.height_px},{proj.width_px},3), "
                             f"got {image.shape}")
        u, v = proj.uv_px[:, 0], proj.uv_px[:, 1]
        du = u / proj.width_px - 0.5
        dv = v / proj.height_px - 0.5
        score = du * du + dv * dv
        better = score < best_score[proj.point_index]
        idx = proj.point_index[better]
        best_score[idx] = score[better]
        best_cam[idx] = c
        col = np.clip(np.rint(u[better]), 0, proj.width_px - 1).astype(np.int64)
        row = np.clip(np.rint(v[better]), 0, proj.height_px - 1).astype(np.int64)
        best_pixel[idx] = row * proj.width_px + col
    rgb = np.empty((num_points, 3), dtype=np.uint8)
    rgb[:] = UNSEEN_RGB
    for c, image in enumerate(images):
        mine = np.flatnonzero(best_cam == c)
        rgb[mine] = image.reshape(-1, image.shape[2])[best_pixel[mine], :3]
    return Colorization(rgb, best_cam >= 0, best_cam)


def render_points_on_image(image: np.ndarray, projection: Projection, colors: np.ndarray | None = None,
                           radius_px: int = 2) -> np.ndarray:
    """Draw projected points on a copy of an image (for review and tests).

    Args:
        image: (H,W,3) uint8 RGB.
        projection: the points to draw.
        colors: (P,3) uint8 colours of the whole cloud; None colours by depth (near red, far blue).
        radius_px: dot radius.

    Returns:
        (H,W,3) uint8 RGB copy with the dots drawn (nearest points drawn last, on top).
    """
    import cv2

    out = np.ascontiguousarray(image.copy())
    order = np.argsort(-projection.depth_m)
    uv = np.rint(projection.uv_px[order]).astype(np.int32)
    if colors is None:
        d = np.clip(projection.depth_m[order] / 50.0, 0, 1)
        col = np.stack([255 * (1 - d), 64 * np.ones_like(d), 255 * d], axis=1).astype(np.uint8)
    else:
        col = colors[projection.point_index[order]]
    for (x, y), c in zip(uv, col):  # drawing is an edge utility, not a hot path
        cv2.circle(out, (int(x), int(y)), radius_px, tuple(int(k) for k in c), -1)
    return out
