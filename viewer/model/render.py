"""Everything a frame needs on screen that does not depend on the labels, computed with numpy (no Qt) so that it
can run on the prefetch thread: the 3D colours, the bird's-eye raster, and each camera image with its projected
points drawn in. The UI thread then only uploads these arrays and draws the boxes (which it reads from the store at
every redraw).

Images are kept in the layouts Qt displays without conversion: the bird's-eye raster as (H,W) uint32 ``0xffRRGGBB``
(``QImage.Format_RGB32``), camera images as (h,w,4) uint8 with bytes B, G, R, 255 in memory (the same
``Format_RGB32`` pixel ``0xffRRGGBB``, which Qt paints onto the window without a format conversion; a pixel is one
32-bit word, so a point is one store). The boxes' wireframes in each camera (:func:`project_wireframes`) depend on the
labels: they are computed for boxes read on the UI thread (for the next frames, ahead on the prefetch thread) and
cached by the boxes' geometry.
"""

from __future__ import annotations

from concurrent.futures import Executor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sensorlabel.fusion.projection import cull_bounds
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.camera import NEAR_M

from .palette import _DEPTH_LUT, depth_bins

if TYPE_CHECKING:
    from .session import CameraFrame

#: Bird's-eye raster: cell size and half extent (the raster covers [-75, 75) m in ego x and y).
RASTER_RES_M = 0.15
RASTER_HALF_M = 75.0
BACKGROUND_RGB = (18, 20, 26)
#: Samples per box edge of the camera wireframes (distorted cameras draw curved edges).
SAMPLES_PER_EDGE = 8
#: The image's viewing pyramid is widened by this fraction of its span before culling boxes outside it.
CULL_MARGIN = 0.1


def pack_rgb32(rgb: np.ndarray) -> np.ndarray:
    """(N,3) uint8 -> (N,) uint32 ``0xffRRGGBB``."""
    rgb = np.asarray(rgb, np.uint8)
    return (np.uint32(0xFF000000) | rgb[:, 0].astype(np.uint32) << 16 | rgb[:, 1].astype(np.uint32) << 8
            | rgb[:, 2].astype(np.uint32))


def rasterize_bev(points_ego: np.ndarray, rgb32: np.ndarray, res_m: float = RASTER_RES_M,
                  half_m: float = RASTER_HALF_M) -> np.ndarray:
    """Top view raster where each cell shows the colour of its highest point.

    Args:
        points_ego: (P,3) points, ego frame. rgb32: (P,) uint32 packed colours (:func:`pack_rgb32`).

    Returns:
        (n,n) uint32, n = 2 * half_m / res_m. Row i is y = -half_m + (i + 0.5) * res_m, column j likewise x.
    """
    n = round(2 * half_m / res_m)
    image = np.full(n * n, pack_rgb32(np.array([BACKGROUND_RGB]))[0], np.uint32)
    if len(points_ego):
        ij = ((points_ego[:, :2] + np.float32(half_m)) * np.float32(1.0 / res_m)).astype(np.int32)
        ok = np.flatnonzero((ij[:, 0] >= 0) & (ij[:, 0] < n) & (ij[:, 1] >= 0) & (ij[:, 1] < n)
                            & (points_ego[:, 0] > -half_m) & (points_ego[:, 1] > -half_m))
        # The highest point is written last and wins; heights quantised to 1 cm (int16) sort with a radix sort.
        z_cm = np.clip(points_ego[ok, 2] * 100, -32000, 32000).astype(np.int16)
        order = ok[np.argsort(z_cm, kind="stable")]
        image[ij[order, 1] * n + ij[order, 0]] = rgb32[order]
    return image.reshape(n, n)


#: The depth colours as ``Format_RGB32`` pixels.
_DEPTH_LUT_RGB32 = pack_rgb32(_DEPTH_LUT)


def draw_points(image_rgbx: np.ndarray, uv_px: np.ndarray, depth_m: np.ndarray) -> None:
    """Draw projected points into an image, in place, as 2x2 dots coloured by depth, nearer points on top.

    Args:
        image_rgbx: (h,w,4) uint8 C-contiguous (each pixel is written as one 32-bit word).
        uv_px: (K,2) pixel coordinates in this image. depth_m: (K,) depths.
    """
    if len(uv_px) == 0:
        return
    h, w = image_rgbx.shape[:2]
    bins = depth_bins(depth_m)
    order = np.argsort(255 - bins, kind="stable")  # radix sort of uint8: near points drawn last, on top
    col = np.clip(uv_px[order, 0].astype(np.int32), 0, w - 2)
    row = np.clip(uv_px[order, 1].astype(np.int32), 0, h - 2)
    colors = _DEPTH_LUT_RGB32[bins[order]]
    flat = image_rgbx.reshape(-1).view(np.uint32)
    base = row * w + col
    for offset in (0, 1, w, w + 1):  # the 2x2 dot
        flat[base + offset] = colors


def frustum_candidates(boxes: Boxes, cam_SE3_ego, camera) -> np.ndarray:
    """(N,) bool: the box may be visible. False when all 8 corners are behind the near plane or all outside one
    side of the image's viewing pyramid widened by :data:`CULL_MARGIN`
    (:func:`sensorlabel.fusion.projection.cull_bounds`; no side test where it has no bound, as for a wide fisheye);
    the box is convex, so it is then entirely out of view."""
    if len(boxes) == 0:
        return np.zeros(0, bool)
    corners = cam_SE3_ego.transform_points(boxes.corners().reshape(-1, 3)).reshape(-1, 8, 3)
    x, y, z = corners[..., 0], corners[..., 1], corners[..., 2]
    out = (z <= NEAR_M).all(axis=1)
    bounds = cull_bounds(camera, CULL_MARGIN)
    if bounds is not None:
        lo_x, hi_x, lo_y, hi_y = bounds
        out |= (x < lo_x * z).all(axis=1) | (x > hi_x * z).all(axis=1)
        out |= (y < lo_y * z).all(axis=1) | (y > hi_y * z).all(axis=1)
    return ~out


def project_wireframes(cam: CameraFrame, boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """The boxes' clipped, sampled edges and enclosing 2D boxes in one camera, in *reduced* image pixels.

    Args:
        cam: the camera at this frame. boxes: N boxes, ego frame at the frame time.

    Returns:
        edges (N,12,S,2) float64 (NaN where clipped, out of the model's domain, or the box is out of view) and
        box2d (N,4) ``x1, y1, x2, y2`` (NaN when not visible).
    """
    from sensorlabel.fusion import project_boxes

    n = len(boxes)
    edges = np.full((n, 12, SAMPLES_PER_EDGE, 2), np.nan)
    box2d = np.full((n, 4), np.nan)
    keep = np.flatnonzero(frustum_candidates(boxes, cam.cam_SE3_ego, cam.camera))
    if len(keep):
        proj = project_boxes(boxes[keep], cam.cam_SE3_ego, cam.camera, samples_per_edge=SAMPLES_PER_EDGE,
                             fraction_grid=1)
        edges[keep] = proj.edges_uv_px / cam.scale
        box2d[keep] = proj.box2d_px / cam.scale
    return edges, box2d


@dataclass(frozen=True)
class FrameRender:
    """A frame ready to upload: see the module docstring.

    Attributes:
        rgba: (P,4) uint8 C-contiguous point colours (the 3D view).
        bev_rgb32: (n,n) uint32 bird's-eye raster (:func:`rasterize_bev`).
        camera_images: per camera of the drive, (h,w,4) uint8 BGRX (``QImage.Format_RGB32``) with the points
            drawn, or None when the camera has no image at this frame.
    """

    rgba: np.ndarray
    bev_rgb32: np.ndarray
    camera_images: tuple[np.ndarray | None, ...]


def prepare_frame(data, rgba: np.ndarray, pool: Executor) -> FrameRender:
    """Build the :class:`FrameRender` of a frame: the camera images are drawn on the threads of ``pool`` while this
    thread rasterises the bird's-eye view (OpenCV and numpy's gathers and scatters release the GIL).

    Args:
        data: the frame's ``FrameData`` (points in the ego frame, cameras with their projected points).
        rgba: (P,4) float32 colours of its points, in [0, 1].
        pool: threads to draw the camera images on (tasks that never wait on the pool themselves).
    """
    import cv2

    def camera_image(cam) -> np.ndarray | None:
        if cam.image_rgb is None:
            return None
        image = cv2.cvtColor(cam.image_rgb, cv2.COLOR_RGB2BGRA)
        draw_points(image, cam.uv_px, cam.depth_m)
        return image

    rgba8 = (np.clip(rgba, 0, 1) * 255 + 0.5).astype(np.uint8)
    drawing = [pool.submit(camera_image, cam) for cam in data.cameras]
    try:
        bev = rasterize_bev(data.points_ego, pack_rgb32(rgba8[:, :3]))
    finally:  # the drawing ends before the frame does (an error here must not leave it behind)
        wait(drawing)
    return FrameRender(rgba8, bev, tuple(job.result() for job in drawing))
