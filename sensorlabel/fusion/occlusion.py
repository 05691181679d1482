"""Depth-buffer occlusion: keep the projected points that are visible in the image.

The rule (a z-buffer splat on a coarse grid):

1. The image is cut into square cells of ``cell_px`` pixels. Each cell records the smallest depth of the points
   that land in it (``np.minimum.at``, one pass, no sorting).
2. That buffer is eroded (a min filter, ``cv2.erode``) over a ``(2r+1) x (2r+1)`` cell window: every point is a splat
   of radius about ``(r + 0.5) * cell_px`` pixels. Lidar returns are sparse in the image; without the splat, points
   on a wall behind a car show through the gaps between the car's own returns.
3. A point is visible when its depth is at most ``z_min * (1 + rel_tol) + abs_tol_m``, with ``z_min`` the eroded
   buffer at its cell. The tolerance keeps neighbouring returns of the same surface (which differ a little in depth,
   more so at grazing angles) and drops returns that lie clearly behind a nearer surface.

The cost is O(K) for K projected points plus an erosion of a (H/cell, W/cell) float32 image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.fusion.projection import Projection


@dataclass(frozen=True)
class OcclusionConfig:
    """Parameters of the depth-buffer rule (see the module docstring).

    Attributes:
        cell_px: cell size of the depth buffer in pixels.
        radius_cells: splat radius in cells (0 = one cell).
        rel_tol: relative depth tolerance.
        abs_tol_m: absolute depth tolerance in metres.
    """

    cell_px: int = 4
    radius_cells: int = 1
    rel_tol: float = 0.05
    abs_tol_m: float = 0.3

    def __post_init__(self) -> None:
        if self.cell_px < 1 or self.radius_cells < 0 or self.rel_tol < 0 or self.abs_tol_m < 0:
            raise ValueError(f"invalid occlusion config: {self}")


def depth_buffer(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> np.ndarray:
    """The eroded minimum-depth buffer of a projection.

    Returns:
        (ceil(H/cell), ceil(W/cell)) float32 depth in metres, +inf where no point lands near the cell.
    """
    return _depth_buffer(projection, config)[0]


def _depth_buffer(projection: Projection, config: OcclusionConfig) -> tuple[np.ndarray, np.ndarray]:
    """The eroded buffer and the (K,) flat cell index of every point."""
    import cv2

    c = config.cell_px
    rows, cols = -(-projection.height_px // c), -(-projection.width_px // c)
    cell = _cell_index(projection, c, cols, rows)
    zbuf = np.full(rows * cols, np.inf, dtype=np.float32)
    np.minimum.at(zbuf, cell, projection.depth_m.astype(np.float32, copy=False))
    zbuf = zbuf.reshape(rows, cols)
    if config.radius_cells > 0:
        k = 2 * config.radius_cells + 1
        zbuf = cv2.erode(zbuf, np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=np.inf)
    return zbuf, cell


def _cell_index(projection: Projection, cell_px: int, cols: int, rows: int) -> np.ndarray:
    uv = projection.uv_px
    # uv >= -0.5 inside the image, so truncation is floor here; the clip absorbs the half-pixel border.
    u = np.minimum(((uv[:, 0] + 0.5) * (1.0 / cell_px)).astype(np.int32), cols - 1)
    v = np.minimum(((uv[:, 1] + 0.5) * (1.0 / cell_px)).astype(np.int32), rows - 1)
    return v * cols + u


def visible_mask(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> np.ndarray:
    """(K,) bool: which projected points pass the depth-buffer rule (see the module docstring)."""
    if len(projection) == 0:
        return np.zeros(0, dtype=bool)
    zbuf, cell = _depth_buffer(projection, config)
    z_min = zbuf.reshape(-1)[cell]
    return projection.depth_m <= z_min * (1.0 + config.rel_tol) + config.abs_tol_m


def visible_points(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> Projection:
    """The projection restricted to the points visible in the image."""
    return projection.select(visible_mask(projection, config))
