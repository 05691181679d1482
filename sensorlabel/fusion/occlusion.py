"""Depth-buffer occlusion: keep the projected points that are visible in the image.

The rule (a z-buffer splat on a coarse grid):

1. The image is cut into square cells of ``cell_px = max(1, round(focal_px * cell_deg))`` pixels (an angular size,
   so the rule behaves the same on a 640 px and a 1600 px camera). Each cell records the smallest depth of the points
   that land in it (one pass of a compiled kernel, no sorting).
2. That buffer is eroded (a min filter, ``cv2.erode``) over a ``(2r+1) x (2r+1)`` cell window: every point is a splat
   of radius about ``(r + 0.5) * cell_px`` pixels. Lidar returns are sparse in the image; without the splat, points
   on a wall behind a car show through the gaps between the car's own returns.
3. A point is visible when its depth ``d`` is at most ``z_min * (1 + tol) + abs_tol_m``, with ``z_min`` the eroded
   buffer at its cell and ``tol = rel_tol + min(splat_px * d / (focal_px * ground_height_m), 0.5)``.
   The second term is the depth change of a ground plane seen from ``ground_height_m`` over the splat radius
   (``dd/dv = d^2 / (f h)`` on a plane): without it, each lidar ring on the road would hide the next ring further
   out, which lands a few pixels higher with a depth 10-20 % larger. Objects in front of the background differ in
   depth by far more than that, so they still hide what is behind them.

The cost is O(K) for K projected points plus an erosion of a (H/cell, W/cell) float32 image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from sensorlabel.fusion import kernels
from sensorlabel.fusion.projection import _SCRATCH, Projection


@dataclass(frozen=True)
class OcclusionConfig:
    """Parameters of the depth-buffer rule (see the module docstring).

    Attributes:
        cell_deg: cell size of the depth buffer as an angle, degrees.
        radius_cells: splat radius in cells (0 = one cell).
        rel_tol: relative depth tolerance.
        abs_tol_m: absolute depth tolerance in metres.
        ground_height_m: camera height above the ground used for the ground-slope tolerance (0 disables it).
    """

    cell_deg: float = 0.3
    radius_cells: int = 2
    rel_tol: float = 0.05
    abs_tol_m: float = 0.3
    ground_height_m: float = 1.5

    def __post_init__(self) -> None:
        if self.cell_deg <= 0 or self.radius_cells < 0 or self.rel_tol < 0 or self.abs_tol_m < 0 \
                or self.ground_height_m < 0:
            raise ValueError(f"invalid occlusion config: {self}")

    def cell_px(self, focal_px: float) -> int:
        """The cell size in pixels for a camera of this focal length."""
        return max(1, round(float(focal_px) * math.radians(self.cell_deg)))  # math.radians == np.deg2rad

    def to_dict(self) -> dict:
        return asdict(self)


def depth_buffer(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> np.ndarray:
    """The eroded minimum-depth buffer of a projection.

    Returns:
        (ceil(H/cell), ceil(W/cell)) float32 depth in metres, +inf where no point lands near the cell.
    """
    c = config.cell_px(projection.focal_px)
    return _depth_buffer(projection, config, c)[0][:-(-projection.height_px // c), :-(-projection.width_px // c)].copy()


def _depth_buffer(projection: Projection, config: OcclusionConfig, c: int,
                  point_rows_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The eroded buffer and the (K,) int64 flat cell index of every point; ``c`` is ``config.cell_px(focal)``.

    The buffer has one spare row and column, so that a point on the far image border (u = W - 0.5 with W a multiple
    of the cell) needs no clamping; the caller crops it. With ``point_rows_only`` only the buffer rows between the
    first and the last row holding a point are valid (the rest are never filled nor eroded: the erosion of those
    rows sees +inf beyond them, as the full buffer has there), which is all a look-up at the points' cells needs.
    Both arrays are scratch buffers (valid until the next call in this thread).
    """
    import cv2

    rows, cols = projection.height_px // c + 1, projection.width_px // c + 1
    k = len(projection)
    cell = _SCRATCH.get("occ_cell", k, np.int64)
    zbuf = _SCRATCH.get("occ_zbuf", (rows, cols), np.float32)
    r0, r1 = kernels.depth_cells(np.ascontiguousarray(projection.uv_px, dtype=np.float32),
                                 np.ascontiguousarray(projection.depth_m, dtype=np.float32), np.float32(1.0 / c),
                                 cols, zbuf, cell, point_rows_only)
    if config.radius_cells > 0:
        size = 2 * config.radius_cells + 1
        eroded = _SCRATCH.get("occ_eroded", (rows, cols), np.float32)
        band = cv2.erode(zbuf[r0:r1], np.ones((size, size), np.uint8), dst=eroded[r0:r1],
                         borderType=cv2.BORDER_CONSTANT, borderValue=np.inf)
        if not np.may_share_memory(band, eroded):
            eroded[r0:r1] = band
        zbuf = eroded
    return zbuf, cell


def visible_mask(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> np.ndarray:
    """(K,) bool: which projected points pass the depth-buffer rule (see the module docstring)."""
    if len(projection) == 0:
        return np.zeros(0, dtype=bool)
    c = config.cell_px(projection.focal_px)
    zbuf, cell = _depth_buffer(projection, config, c, point_rows_only=True)
    # d <= z_min * (1 + rel_tol + min(d * slope, 0.5)) + abs_tol
    slope = 0.0
    if config.ground_height_m > 0:
        splat_px = (config.radius_cells + 0.5) * c
        slope = splat_px / (projection.focal_px * config.ground_height_m)
    out = np.empty(len(projection), dtype=bool)
    kernels.visible_by_depth(np.ascontiguousarray(projection.depth_m, dtype=np.float32), cell, zbuf.reshape(-1),
                             np.float32(slope), np.float32(1 + config.rel_tol), np.float32(config.abs_tol_m), out)
    return out


def visible_points(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> Projection:
    """The projection restricted to the points visible in the image."""
    return projection.select(visible_mask(projection, config))
