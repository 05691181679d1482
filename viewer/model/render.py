"""Everything a frame needs on screen that does not depend on the labels, computed with numpy (no Qt) so that it
can run on the prefetch thread: the 3D colours, the bird's-eye raster, and each camera image with its projected
points drawn in. The UI thread then only uploads these arrays and draws the boxes (which are read from the store
at every redraw, never prefetched).

Images are kept in the layouts Qt displays without conversion: the bird's-eye raster as (H,W) uint32 ``0xffRRGGBB``
(``QImage.Format_RGB32``), camera images as (h,w,3) uint8 RGB (``Format_RGB888``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .palette import _DEPTH_LUT, depth_bins

#: Bird's-eye raster: cell size and half extent (the raster covers [-75, 75) m in ego x and y).
RASTER_RES_M = 0.15
RASTER_HALF_M = 75.0
BACKGROUND_RGB = (18, 20, 26)


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
    n = int(round(2 * half_m / res_m))
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


def draw_points(image_rgb: np.ndarray, uv_px: np.ndarray, depth_m: np.ndarray) -> None:
    """Draw projected points into an image, in place, as 2x2 dots coloured by depth, nearer points on top.

    Args:
        image_rgb: (h,w,3) uint8. uv_px: (K,2) pixel coordinates in this image. depth_m: (K,) depths.
    """
    if len(uv_px) == 0:
        return
    h, w = image_rgb.shape[:2]
    bins = depth_bins(depth_m)
    order = np.argsort(255 - bins, kind="stable")  # radix sort of uint8: near points drawn last, on top
    col = np.clip(uv_px[order, 0].astype(np.int32), 0, w - 2)
    row = np.clip(uv_px[order, 1].astype(np.int32), 0, h - 2)
    colors = _DEPTH_LUT[bins[order]]
    flat = image_rgb.reshape(-1, 3)
    base = row * w + col
    for offset in (0, 1, w, w + 1):  # the 2x2 dot
        flat[base + offset] = colors


@dataclass(frozen=True)
class FrameRender:
    """A frame ready to upload: see the module docstring.

    Attributes:
        frame: frame index. color_mode: the point colour mode these colours are for.
        rgba: (P,4) float32 C-contiguous point colours in [0, 1] (the 3D view).
        bev_rgb32: (n,n) uint32 bird's-eye raster (:func:`rasterize_bev`).
        camera_images: per camera of the drive, (h,w,3) uint8 RGB with the points drawn (when ``show_points``),
            or None when the camera has no image at this frame.
    """

    frame: int
    color_mode: str
    rgba: np.ndarray
    bev_rgb32: np.ndarray
    camera_images: tuple[np.ndarray | None, ...]


def prepare_frame(data, rgba: np.ndarray, color_mode: str, show_points: bool = True) -> FrameRender:
    """Build the :class:`FrameRender` of a ``FrameData`` whose points have colours ``rgba`` (P,4) float32."""
    rgb = (np.clip(rgba[:, :3], 0, 1) * 255).astype(np.uint8)
    images = []
    for cam in data.cameras:
        if cam.image_rgb is None:
            images.append(None)
            continue
        image = cam.image_rgb.copy()
        if show_points:
            draw_points(image, cam.uv_px, cam.depth_m)
        images.append(image)
    return FrameRender(data.frame, color_mode, np.ascontiguousarray(rgba, np.float32),
                       rasterize_bev(data.points_ego, pack_rgb32(rgb)), tuple(images))
