"""Depth-buffer occlusion: keep the projected points that are visible in the image.

The rule (a z-buffer splat on a coarse grid):

1. The image is cut into square cells of ``cell_px = max(1, round(focal_px * cell_deg))`` pixels (an angular size,
   so the rule behaves the same on a 640 px and a 1600 px camera). Each cell records the smallest depth of the points
   that land in it (``np.minimum.at``, one pass, no sorting).
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
    return _depth_buffer(projection, config)[0][:-(-projection.height_px // c), :-(-projection.width_px // c)].copy()


def _depth_buffer(projection: Projection, config: OcclusionConfig, c: int | None = None,
                  point_rows_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The eroded buffer and the (K,) flat cell index of every point; ``c`` is ``config.cell_px(focal)`` when the
    caller has it.

    The buffer has one spare row and column, so that a point on the far image border (u = W - 0.5 with W a multiple
    of the cell) needs no clamping; the caller crops it. With ``point_rows_only`` only the buffer rows between the
    first and the last row holding a point are valid (the rest are never filled nor eroded: the erosion of those
    rows sees +inf beyond them, as the full buffer has there), which is all a look-up at the points' cells needs.
    Both arrays are scratch buffers (valid until the next call in this thread).
    """
    import cv2

    if c is None:
        c = config.cell_px(projection.focal_px)
    rows, cols = projection.height_px // c + 1, projection.width_px // c + 1
    k = len(projection)
    # (u, v) + 0.5 over c, truncated: uv >= -0.5 inside the image, so this is floor. Then v_cell * cols + u_cell as
    # one float32 product (integers below 2^24: exact) and one cast to intp (ufunc.at and take would otherwise
    # convert the indices first).
    scaled = np.add(projection.uv_px, np.float32(0.5), out=_SCRATCH.get("occ_scaled", (k, 2), np.float32))
    scaled *= np.float32(1.0 / c)
    np.trunc(scaled, out=scaled)
    cell_f = np.matmul(scaled, np.array([1.0, cols], dtype=np.float32), out=_SCRATCH.get("occ_cell_f", k, np.float32))
    cell = _SCRATCH.get("occ_cell", k, np.intp)
    np.copyto(cell, cell_f, casting="unsafe")
    r0, r1 = (int(cell.min()) // cols, int(cell.max()) // cols + 1) if point_rows_only and k else (0, rows)
    zbuf = _SCRATCH.get("occ_zbuf", (rows, cols), np.float32)
    zbuf[r0:r1].fill(np.inf)
    np.minimum.at(zbuf.reshape(-1), cell, projection.depth_m.astype(np.float32, copy=False))
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
    import cv2

    if len(projection) == 0:
        return np.zeros(0, dtype=bool)
    c = config.cell_px(projection.focal_px)
    zbuf, cell = _depth_buffer(projection, config, c, point_rows_only=True)
    k = len(projection)
    z_min = np.take(zbuf.reshape(-1), cell, out=_SCRATCH.get("occ_zmin", k, np.float32))
    d = projection.depth_m
    # d <= z_min * (1 + rel_tol + min(d * slope, 0.5)) + abs_tol
    factor = _SCRATCH.get("occ_factor", k, np.float32)
    if config.ground_height_m > 0:
        splat_px = (config.radius_cells + 0.5) * c
        slope = np.float32(splat_px / (projection.focal_px * config.ground_height_m))
        np.multiply(d, slope, out=factor)
        cv2.min(factor, 0.5, dst=factor)  # half the time of np.minimum on a CPU without AVX2 (the reference machine)
        factor += np.float32(1 + config.rel_tol)
    else:
        factor.fill(1 + config.rel_tol)
    z_min *= factor
    z_min += np.float32(config.abs_tol_m)
    return d <= z_min


def visible_points(projection: Projection, config: OcclusionConfig = OcclusionConfig()) -> Projection:
    """The projection restricted to the points visible in the image."""
    return projection.select(visible_mask(projection, config))
