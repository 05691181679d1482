"""Compiled per-point kernels of the fusion hot paths (numba): the pinhole projection, the candidate projection of a
sweep into one camera, the per-point pose track and the depth-buffer passes.

Why compiled: the numpy formulation of these steps is ~60 passes over memory per camera, each a few microseconds;
a fused loop reads each point once and writes only what it keeps. The loops are written so that LLVM vectorises
them: the candidate projection works on chunks of points in two phases (a branch-free loop computes every point of
the chunk into small buffers, then a compaction loop stores each point and advances the output by its pass flag, no
branch on the data); the pose track runs over one contiguous run of points per knot interval, with the record width
a compile-time constant so that x y z come as interleaved vector loads. Loops index from zero over slices: a loop
from an arbitrary start keeps numba's negative-index check in every access, which blocks vectorisation.

Floating point: float32 like the numpy code it replaced, with ``error_model="numpy"`` (a division by zero gives
inf/NaN instead of raising, which also lets the divisions vectorise) and no fast-math flags, so NaN coordinates stay
NaN and every comparison with them is false: a NaN point never projects. The arithmetic is that of the camera
models' float64 ``project`` rounded to float32; ``tests/fusion`` checks the two agree.

The kernels are compiled on first use and cached on disk (``cache=True``, beside this file), so a process pays the
compilation once per installation, not per call.
"""

from __future__ import annotations

import numba
import numpy as np

from sensorlabel.geometry.camera import SHEET_MIN_JACOBIAN_DET, distortion_jacobian

_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "boundscheck": False}
_INLINE = {"inline": "always", "nogil": True, "error_model": "numpy", "boundscheck": False}  # helpers of the kernels
_CHUNK = 512  # points per two-phase chunk: the chunk buffers stay in L1

# Layout of the (PINHOLE_CONSTANTS,) float64 constant vector of a pinhole camera (see pinhole_constants).
FX, FY, CX, CY, K1, K2, K3, P1, P2, NEAR, R2_MAX, R2_SAFE, U_LO, V_LO, U_HI, V_HI = range(16)
PINHOLE_CONSTANTS = 16


def pinhole_constants(fx_px: float, fy_px: float, cx_px: float, cy_px: float, distortion, near_m: float,
                      r2_max: float, r2_safe: float, width_px: int, height_px: int) -> np.ndarray:
    """(16,) float64 constants of the pinhole kernels: focal lengths and principal point (pixels), the OpenCV
    distortion ``(k1, k2, p1, p2, k3)``, the near plane (m), the one-to-one domain ``r2 <= r2_max`` of the squared
    normalised radius, the radius ``r2_safe`` within which the Jacobian rule provably holds, and the image bounds
    relative to the principal point (``-0.5 <= u <= W - 0.5``, same for v)."""
    k1, k2, p1, p2, k3 = (float(c) for c in distortion)
    out = np.empty(PINHOLE_CONSTANTS, dtype=np.float64)
    out[[FX, FY, CX, CY, K1, K2, K3, P1, P2, NEAR, R2_MAX, R2_SAFE]] = (
        fx_px, fy_px, cx_px, cy_px, k1, k2, k3, p1, p2, near_m, r2_max, r2_safe)
    out[[U_LO, V_LO, U_HI, V_HI]] = image_bounds_rel(cx_px, cy_px, width_px, height_px)
    return out


def image_bounds_rel(cx_px: float, cy_px: float, width_px: int, height_px: int) -> tuple[float, float, float, float]:
    """The image ``-0.5 <= u <= W - 0.5``, ``-0.5 <= v <= H - 0.5`` relative to the principal point, in pixels:
    ``(u_lo, v_lo, u_hi, v_hi)``."""
    return -0.5 - cx_px, -0.5 - cy_px, width_px - 0.5 - cx_px, height_px - 0.5 - cy_px


@numba.njit(**_INLINE)
def _pinhole(x, y, z, c):
    """One camera-frame point (float32) -> (u, v) relative to the principal point, the normalised (xn, yn), r2 and
    whether it passes the cheap tests (near plane, domain radius, image bounds), all float32 but the flag."""
    f32 = np.float32
    inv_z = f32(1.0) / z
    xn = x * inv_z
    yn = y * inv_z
    r2 = xn * xn + yn * yn
    k1, k2, k3, p1, p2 = f32(c[K1]), f32(c[K2]), f32(c[K3]), f32(c[P1]), f32(c[P2])
    scale = f32(1.0) + r2 * (k1 + r2 * (k2 + r2 * k3)) + f32(2.0) * (p2 * xn + p1 * yn)
    u = f32(c[FX]) * (xn * scale + p2 * r2)
    v = f32(c[FY]) * (yn * scale + p1 * r2)
    ok = ((z > f32(c[NEAR])) & (r2 <= f32(c[R2_MAX])) & (u >= f32(c[U_LO])) & (u <= f32(c[U_HI]))
          & (v >= f32(c[V_LO])) & (v <= f32(c[V_HI])))
    return u, v, xn, yn, r2, ok


_jacobian = numba.njit(**_INLINE)(distortion_jacobian)


@numba.njit(**_INLINE)
def _on_sheet(xn, yn, c):
    """The Jacobian-determinant rule of ``PinholeCamera.project`` at a normalised point, in float64."""
    j00, j01, j11 = _jacobian(np.float64(xn), np.float64(yn), c[K1], c[K2], c[P1], c[P2], c[K3])
    return j00 * j11 - j01 * j01 > SHEET_MIN_JACOBIAN_DET


@numba.njit(**_JIT)
def project_pinhole_rows(rows, c, uv_rel, valid):
    """Pinhole projection of (3,N) float32 camera-frame rows ``[x; y; z]`` into (2,N) float32 ``uv_rel`` (pixels
    relative to the principal point) and (N,) bool ``valid`` (front of the near plane, inside the one-to-one domain
    and the image). ``c``: :func:`pinhole_constants`."""
    r2_safe = np.float32(c[R2_SAFE])
    far = 0
    for j in range(rows.shape[1]):
        u, v, xn, yn, r2, ok = _pinhole(rows[0, j], rows[1, j], rows[2, j], c)
        uv_rel[0, j] = u
        uv_rel[1, j] = v
        valid[j] = ok
        far += ok & (r2 > r2_safe)
    if far:  # the rare points beyond the provably one-to-one radius get the exact rule
        for j in range(rows.shape[1]):
            if valid[j]:
                u, v, xn, yn, r2, ok = _pinhole(rows[0, j], rows[1, j], rows[2, j], c)
                if r2 > r2_safe:
                    valid[j] = _on_sheet(xn, yn, c)


@numba.njit(**_JIT)
def _project_chunk(px, py, pz, n, affine, c, bu, bv, bz, bx, by, br, bok):
    """The branch-free phase of :func:`project_candidates` over n points given as three (>=n,) float32 rows;
    returns how many of the points that pass lie beyond the radius ``r2_safe`` (they need the exact rule)."""
    a00, a01, a02, a03 = affine[0, 0], affine[0, 1], affine[0, 2], affine[0, 3]
    a10, a11, a12, a13 = affine[1, 0], affine[1, 1], affine[1, 2], affine[1, 3]
    a20, a21, a22, a23 = affine[2, 0], affine[2, 1], affine[2, 2], affine[2, 3]
    cx, cy, r2_safe = np.float32(c[CX]), np.float32(c[CY]), np.float32(c[R2_SAFE])
    far = 0
    for j in range(n):
        x, y, z = px[j], py[j], pz[j]
        zc = a20 * x + a21 * y + a22 * z + a23
        u, v, xn, yn, r2, ok = _pinhole(a00 * x + a01 * y + a02 * z + a03, a10 * x + a11 * y + a12 * z + a13, zc, c)
        bu[j], bv[j], bz[j], bx[j], by[j], br[j], bok[j] = u + cx, v + cy, zc, xn, yn, r2, ok
        far += ok & (r2 > r2_safe)
    return far


@numba.njit(**_JIT)
def project_candidates(xyz1, starts, ends, extra, affine, c, out_index, out_uv, out_depth):
    """Map points of the (4,P) float32 homogeneous reference-frame rows ``xyz1`` with the (3,4) float32 affine map
    ``cam_SE3_ref`` and project them with the pinhole constants ``c``; store the ones that project.

    The points are the index ranges ``[starts[i], ends[i])`` (int64) and then the columns ``extra`` (int64).
    Outputs (capacity: the number of points): ``out_index`` (int64 column of ``xyz1``), ``out_uv`` (K,2) float32
    pixels and ``out_depth`` float32 camera z, in input order. Returns K.
    """
    r2_safe = np.float32(c[R2_SAFE])
    gx = np.empty(_CHUNK, np.float32)
    gy = np.empty(_CHUNK, np.float32)
    gz = np.empty(_CHUNK, np.float32)
    bu = np.empty(_CHUNK, np.float32)
    bv = np.empty(_CHUNK, np.float32)
    bz = np.empty(_CHUNK, np.float32)
    bx = np.empty(_CHUNK, np.float32)
    by = np.empty(_CHUNK, np.float32)
    br = np.empty(_CHUNK, np.float32)
    bok = np.empty(_CHUNK, np.bool_)
    k = 0
    num_ranges = len(starts)
    for r in range(num_ranges + 1):
        first, last = (starts[r], ends[r]) if r < num_ranges else (0, len(extra))
        for c0 in range(first, last, _CHUNK):
            n = min(_CHUNK, last - c0)
            if r < num_ranges:
                far = _project_chunk(xyz1[0, c0:c0 + n], xyz1[1, c0:c0 + n], xyz1[2, c0:c0 + n], n, affine, c,
                               bu, bv, bz, bx, by, br, bok)
            else:
                for j in range(n):
                    i = extra[c0 + j]
                    gx[j], gy[j], gz[j] = xyz1[0, i], xyz1[1, i], xyz1[2, i]
                far = _project_chunk(gx, gy, gz, n, affine, c, bu, bv, bz, bx, by, br, bok)
            if far:  # the rare points beyond the provably one-to-one radius get the exact rule
                for j in range(n):
                    if bok[j] and br[j] > r2_safe:
                        bok[j] = _on_sheet(bx[j], by[j], c)
            if r < num_ranges:
                for j in range(n):
                    out_index[k] = c0 + j
                    out_uv[k, 0] = bu[j]
                    out_uv[k, 1] = bv[j]
                    out_depth[k] = bz[j]
                    k += bok[j]
            else:
                for j in range(n):
                    out_index[k] = extra[c0 + j]
                    out_uv[k, 0] = bu[j]
                    out_uv[k, 1] = bv[j]
                    out_depth[k] = bz[j]
                    k += bok[j]
    return k


@numba.njit(**_JIT)
def depth_cells(uv, depth, inv_cell, cols, zbuf, cell, rows_only):
    """Fill the minimum-depth buffer of projected points.

    Args:
        uv: (K,2) float32 pixels (inside the image: ``uv >= -0.5``). depth: (K,) float32 metres.
        inv_cell: float32 ``1 / cell_px``. cols: columns of ``zbuf``.
        zbuf: (rows, cols) float32 buffer, written: +inf, then the smallest depth of the points in each cell.
        cell: (K,) int64 output, the flat cell index ``v_cell * cols + u_cell`` of every point.
        rows_only: fill (and write +inf into) only the rows between the first and the last row holding a point.

    Returns:
        (r0, r1): the buffer rows written are ``r0:r1``.
    """
    half = np.float32(0.5)
    lo, hi = zbuf.shape[0] * cols, -1
    for j in range(len(depth)):
        # (u, v) + 0.5 over the cell, truncated: floor, since uv >= -0.5 inside the image.
        c = np.int64((uv[j, 1] + half) * inv_cell) * cols + np.int64((uv[j, 0] + half) * inv_cell)
        cell[j] = c
        lo = min(lo, c)
        hi = max(hi, c)
    r0, r1 = (lo // cols, hi // cols + 1) if rows_only and len(depth) else (0, zbuf.shape[0])
    zbuf[r0:r1] = np.inf
    flat = zbuf.reshape(-1)
    for j in range(len(depth)):
        c = cell[j]
        flat[c] = min(flat[c], depth[j])
    return r0, r1


@numba.njit(**_JIT)
def visible_by_depth(depth, cell, zmin_flat, slope, one_plus_rel, abs_tol_m, out):
    """The depth-buffer rule of :mod:`sensorlabel.fusion.occlusion` per point: (K,) bool ``out`` =
    ``d <= z_min * (one_plus_rel + min(d * slope, 0.5)) + abs_tol_m`` with ``z_min`` the eroded buffer ``zmin_flat``
    at the point's ``cell``; all float32 (``slope`` 0 disables the ground term)."""
    half = np.float32(0.5)
    for j in range(len(depth)):
        d = depth[j]
        factor = min(d * slope, half) + one_plus_rel
        out[j] = d <= zmin_flat[cell[j]] * factor + abs_tol_m


@numba.njit(**_INLINE)
def _track_run(flat, stride, times, w, origin_ns, out_x, out_y, out_z):
    """Points ``flat[stride*j : stride*j + 3]`` (float32 records) at ``times[j]``, mapped with one interval's (3,8)
    weights ``w`` into ``out_x/y/z[j]``. Inlined with a constant ``stride``, the loop vectorises (interleaved
    loads)."""
    f32 = np.float32
    w00, w01, w02, w03, w04, w05, w06, w07 = w[0, 0], w[0, 1], w[0, 2], w[0, 3], w[0, 4], w[0, 5], w[0, 6], w[0, 7]
    w10, w11, w12, w13, w14, w15, w16, w17 = w[1, 0], w[1, 1], w[1, 2], w[1, 3], w[1, 4], w[1, 5], w[1, 6], w[1, 7]
    w20, w21, w22, w23, w24, w25, w26, w27 = w[2, 0], w[2, 1], w[2, 2], w[2, 3], w[2, 4], w[2, 5], w[2, 6], w[2, 7]
    for j in range(len(times)):
        x, y, z = flat[stride * j], flat[stride * j + 1], flat[stride * j + 2]
        s = f32(times[j] - origin_ns)
        out_x[j] = w00 * x + w01 * y + w02 * z + w03 + s * (w04 * x + w05 * y + w06 * z + w07)
        out_y[j] = w10 * x + w11 * y + w12 * z + w13 + s * (w14 * x + w15 * y + w16 * z + w17)
        out_z[j] = w20 * x + w21 * y + w22 * z + w23 + s * (w24 * x + w25 * y + w26 * z + w27)


@numba.njit(**_JIT)
def pose_track_in_order(flat, stride, times, knots_ns, weights, origin_ns, out):
    """Map points with the affine map of their time, for times in non-decreasing order.

    Args:
        flat: float32 point records, ``stride`` values apart, x y z first: point j is ``flat[stride * j + 0..2]``.
        times: (N,) int64 non-decreasing times.
        knots_ns: (S+1,) int64 knot times; weights: (S,3,8) float32 ``[A_k | B_k]`` of each knot interval: a point
            of interval k (``knots_ns[k] <= t < knots_ns[k+1]``, the first and the last extending to any time before
            or after) maps to ``A_k [p; 1] + s B_k [p; 1]`` with ``s = t - origin_ns`` in float32.
        out: (3,N) or (4,N) float32 rows, rows 0-2 written.

    Each interval is one contiguous run of points; strides 3 to 6 get a loop compiled for their stride.
    """
    n = len(times)
    first = 0
    for k in range(len(weights)):
        last = n if k == len(weights) - 1 else max(first, np.searchsorted(times, knots_ns[k + 1]))
        if last > first:
            run = flat[first * stride:(last - 1) * stride + 3]
            t, w = times[first:last], weights[k]
            ox, oy, oz = out[0, first:last], out[1, first:last], out[2, first:last]
            if stride == 3:
                _track_run(run, 3, t, w, origin_ns, ox, oy, oz)
            elif stride == 4:
                _track_run(run, 4, t, w, origin_ns, ox, oy, oz)
            elif stride == 5:
                _track_run(run, 5, t, w, origin_ns, ox, oy, oz)
            elif stride == 6:
                _track_run(run, 6, t, w, origin_ns, ox, oy, oz)
            else:
                _track_run(run, stride, t, w, origin_ns, ox, oy, oz)
        first = last


@numba.njit(**_JIT)
def pose_track_any_order(records, times, knots_ns, weights, origin_ns, out):
    """:func:`pose_track_in_order` for times in any order and records of any layout and float type (each point
    finds its interval with a binary search)."""
    f32 = np.float32
    inner = knots_ns[1:-1]
    for j in range(len(times)):
        w = weights[np.searchsorted(inner, times[j], side="right")]
        x, y, z = f32(records[j, 0]), f32(records[j, 1]), f32(records[j, 2])
        s = f32(times[j] - origin_ns)
        for r in range(3):
            out[r, j] = (w[r, 0] * x + w[r, 1] * y + w[r, 2] * z + w[r, 3]
                         + s * (w[r, 4] * x + w[r, 5] * y + w[r, 6] * z + w[r, 7]))
