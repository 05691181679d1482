"""Intersection over union of oriented boxes: bird's-eye and 3D.

Two paths compute the same numbers:

* :func:`iou_bev` / :func:`iou_3d` are vectorised numpy over all pairs: the intersection polygon of two convex
  quadrilaterals is the convex hull of the corners of each inside the other plus the edge-edge crossings,
  ordered by angle about their centroid and measured with the shoelace formula.
* :func:`iou_bev_shapely` / :func:`iou_3d_shapely` use shapely's exact polygon intersection, as the reference.

3D IoU assumes gravity-aligned boxes (rotation about z only), as the KITTI, nuScenes and AV2 benchmarks do:
the 3D intersection is the bird's-eye intersection area times the overlap of the vertical extents. Pairs whose
bird's-eye circumcircles do not meet are skipped (their IoU is 0), so sparse scenes cost little more than N.

:func:`iou_paired_yaw` gives the same IoU/GIoU for paired boxes given as raw arrays (centre, size, yaw), without
building :class:`Boxes`: the tracker's association calls it every frame with a handful of pairs, where the number of
numpy calls, not the array sizes, is the cost.

Generalised IoU (Rezatofighi et al., CVPR 2019), for the tracker's association cost: ``GIoU = IoU - (C - U) / C``
with U the union and C the smallest enclosing shape: the convex hull of both bird's-eye footprints (times the
vertical span of both boxes in 3D). GIoU lies in (-1, 1] and, unlike IoU, still ranks disjoint boxes by how far
apart they are.
"""

from __future__ import annotations

import functools

import numpy as np

from sensorlabel.geometry.boxes import _CORNER_SIGNS, Boxes

_EPS = 1e-9
_NEXT4 = np.array([1, 2, 3, 0])
_NEXT24 = np.roll(np.arange(24), -1)
#: convex_hull_area finds every hull edge at once (no loop, O(M K^2) memory) up to this many M * K^2 elements (the
#: tracker's few pairs per frame, where the call count is the cost); beyond it, it peels reflex vertices in rounds.
_HULL_SUCCESSOR_MAX = 65536


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def polygon_intersection_area(poly_a: np.ndarray, poly_b: np.ndarray) -> np.ndarray:
    """Areas of the intersections of paired convex quadrilaterals.

    The vertices of the intersection are the corners of each inside the other and the edge-edge crossings; they
    are ordered by angle about their centroid and measured with the shoelace formula. At a few pairs (the tracker's
    every frame) the cost is the number of numpy calls, so x and y are handled as separate arrays, one (M,4,4) array
    of cross products per polygon serves both the inside tests and the crossing parameters, and gathers use take().

    Args:
        poly_a, poly_b: (M,4,2) counter-clockwise corners.

    Returns:
        (M,) float64 intersection areas.
    """
    m = poly_a.shape[0]
    if m == 0:
        return np.zeros(0)
    ax, ay, bx, by = poly_a[..., 0], poly_a[..., 1], poly_b[..., 0], poly_b[..., 1]
    eax, eay = ax.take(_NEXT4, axis=1) - ax, ay.take(_NEXT4, axis=1) - ay  # (M,4) edge i: corner i -> i+1
    ebx, eby = bx.take(_NEXT4, axis=1) - bx, by.take(_NEXT4, axis=1) - by
    dx, dy = bx[:, None, :] - ax[:, :, None], by[:, None, :] - ay[:, :, None]  # (M,4,4): b_k - a_i at [m, i, k]
    eax, eay, ebx, eby = eax[:, :, None], eay[:, :, None], ebx[:, None, :], eby[:, None, :]
    side_b = ebx * dy - eby * dx  # -cross(B's edge k, a_i - b_k): a_i is inside B when <= 0 for every k
    side_a = eax * dy - eay * dx  # cross(A's edge i, b_k - a_i): b_k is inside A when >= 0 for every i
    a_in_b = np.logical_and.reduce(side_b <= 1e-9, axis=2)
    b_in_a = np.logical_and.reduce(side_a >= -1e-9, axis=1)
    # Edge-edge crossings a_i + t ea_i = b_k + u eb_k; parallel edges (denominator 0) never cross, and a unit
    # denominator keeps their t, u finite and unused.
    denom = eax * eby - eay * ebx
    parallel = np.abs(denom) <= _EPS
    minus_denom = -np.where(parallel, 1.0, denom)
    t, u = side_b / minus_denom, side_a / minus_denom
    cross_ok = ~parallel & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    x = np.concatenate([ax, bx, (ax[:, :, None] + t * eax).reshape(m, 16)], axis=1)  # (M,24) candidates
    y = np.concatenate([ay, by, (ay[:, :, None] + t * eay).reshape(m, 16)], axis=1)
    valid = np.concatenate([a_in_b, b_in_a, cross_ok.reshape(m, 16)], axis=1)
    count = valid.sum(axis=1)
    weight = valid / np.maximum(count, 1)[:, None]
    angle = np.arctan2(y - (y * weight).sum(axis=1)[:, None], x - (x * weight).sum(axis=1)[:, None])
    angle[~valid] = np.inf
    order = (np.argsort(angle, axis=1) + _row_offsets(m, 24)).reshape(-1)
    x, y, valid = x.reshape(-1).take(order), y.reshape(-1).take(order), valid.reshape(-1).take(order)
    x, y, valid = x.reshape(m, 24), y.reshape(m, 24), valid.reshape(m, 24)
    # Invalid slots repeat the first vertex, so their shoelace terms vanish and the polygon closes.
    x, y = np.where(valid, x, x[:, :1]), np.where(valid, y, y[:, :1])
    area = 0.5 * (x * y.take(_NEXT24, axis=1) - y * x.take(_NEXT24, axis=1)).sum(axis=1)
    return np.where(count >= 3, np.abs(area), 0.0)


@functools.lru_cache(maxsize=64)
def _row_offsets(m: int, k: int) -> np.ndarray:
    """(M,1) flat offsets of the rows of an (M,K) array."""
    return (np.arange(m) * k)[:, None]


def convex_hull_area(points: np.ndarray) -> np.ndarray:
    """Areas of the convex hulls of M small 2-D point sets, vectorised over M.

    The points are sorted by angle about their mean (an interior point of the hull), which gives a star-shaped
    polygon; its strictly reflex vertices lie inside the hull and are dropped, all at once, until none is left.
    Repeated points are merged first; collinear vertices may stay, they do not change the shoelace area.

    Args:
        points: (M,K,2) with K >= 3.

    Returns:
        (M,) float64 hull areas (0 for degenerate sets).
    """
    pts = np.asarray(points, dtype=np.float64)
    m, k = pts.shape[:2]
    if m == 0:
        return np.zeros(0)
    if m * k * k <= _HULL_SUCCESSOR_MAX:
        return _convex_hull_area_successor(pts)
    # "+ 0.0" turns -0.0 into +0.0: points on the ray at angle pi must not split between -pi and +pi.
    rel = pts - pts.mean(axis=1, keepdims=True) + 0.0
    order = np.lexsort((-np.hypot(rel[..., 0], rel[..., 1]), np.arctan2(rel[..., 1], rel[..., 0])), axis=-1)
    rel = np.take_along_axis(rel, order[..., None], axis=1)
    scale2 = np.max(np.sum(rel * rel, axis=2), axis=1, keepdims=True)
    tol = 1e-12 * scale2
    steps = np.arange(1, k)
    forward = (np.arange(k)[:, None] + steps[None, :]) % k  # (K,K-1) candidate successors, nearest first
    backward = (np.arange(k)[:, None] - steps[None, :]) % k
    slot = np.arange(k)[None, :]
    # Repeated points sort next to each other; keep one of each, else a repeated inner point, whose zero-length
    # edge makes no turn, would never be dropped.
    valid = np.ones((m, k), dtype=bool)
    valid[:, 1:] = np.sum(np.diff(rel, axis=1) ** 2, axis=2) > 1e-18 * scale2
    p_next = np.empty_like(rel)
    active = np.arange(m)  # sets that may still have reflex vertices
    for _ in range(k):  # each round removes at least one vertex of every active set, so at most K rounds
        v, r = valid[active], rel[active]
        nxt = forward[slot, np.argmax(v[:, forward], axis=2)]
        prv = backward[slot, np.argmax(v[:, backward], axis=2)]
        p_next[active] = np.take_along_axis(r, nxt[..., None], axis=1)
        p_prev = np.take_along_axis(r, prv[..., None], axis=1)
        reflex = v & (_cross(r - p_prev, p_next[active] - r) < -tol[active])
        changed = reflex.any(axis=1)
        valid[active] = v & ~reflex
        active = active[changed]
        if len(active) == 0:
            break
    return 0.5 * np.abs(np.where(valid, _cross(rel, p_next), 0.0).sum(axis=1))


def _convex_hull_area_successor(pts: np.ndarray) -> np.ndarray:
    """convex_hull_area without a loop, for few sets (see :func:`convex_hull_area`); (M,K,2) -> (M,).

    Seen from a hull vertex p_i, every other point lies in a cone of at most pi that faces the mean of the points,
    and the next hull vertex counter-clockwise is the one at the smallest angle from the outward direction (the
    farthest of several at that angle, so the middle points of a straight hull edge are skipped). Every point gets
    such a successor; p_i -> successor is kept as a hull edge when no point lies right of it and points on its line
    lie within it, which rejects the points inside the hull. The area is the shoelace sum over the kept edges;
    repeated points start an edge once. Arrays are laid out [set, other point, point] so that the reductions run
    over an outer axis, which numpy does as whole-block operations.
    """
    m, k = pts.shape[:2]
    rel = pts - pts.mean(axis=1, keepdims=True)
    x, y = rel[..., 0], rel[..., 1]
    dx = x[:, :, None] - x[:, None, :]  # (M,K,K): p_j - p_i at [m, j, i]
    dy = y[:, :, None] - y[:, None, :]
    len2 = dx * dx + dy * dy
    scale2 = len2.reshape(m, -1).max(axis=1)[:, None, None]
    same = len2 <= 1e-18 * scale2
    theta = (np.arctan2(dy, dx) - np.arctan2(y, x)[:, None, :]) % (2.0 * np.pi)
    theta[same] = np.inf
    near = theta <= theta.min(axis=1, keepdims=True) + 1e-9
    succ = np.argmax(np.where(near, len2, -1.0), axis=1) * k + _successor_offsets(m, k)  # flat index of [m, j, i]
    ex, ey, e2 = dx.reshape(-1).take(succ), dy.reshape(-1).take(succ), len2.reshape(-1).take(succ)  # (M,K)
    side = ex[:, None, :] * dy - ey[:, None, :] * dx  # (M,K,K): cross(p_succ - p_i, p_k - p_i) at [m, k, i]
    along = ex[:, None, :] * dx + ey[:, None, :] * dy
    tol = 1e-12 * scale2
    # The slack on `along` keeps a corner repeated with rounding (a box turned by pi) within the edge; points that
    # close are one point for `same`, so no edge counts twice.
    e2_lo, e2_hi = -1e-9 * e2[:, None, :], (1.0 + 1e-9) * e2[:, None, :]
    ok = (side > tol) | ((side >= -tol) & (along >= e2_lo) & (along <= e2_hi))
    first = ~np.logical_or.reduce(same & _earlier_mask(k), axis=1)  # no equal point before p_i
    edge = np.logical_and.reduce(ok, axis=1) & first & (e2 > 1e-18 * scale2[:, 0])
    return 0.5 * ((x * ey - y * ex) * edge).sum(axis=1)


@functools.lru_cache(maxsize=8)
def _earlier_mask(k: int) -> np.ndarray:
    """(K,K) bool, [j, i] true for j < i."""
    return np.tri(k, k, -1, dtype=bool).T


@functools.lru_cache(maxsize=64)
def _successor_offsets(m: int, k: int) -> np.ndarray:
    """(M,K) flat offsets of [m, 0, i] in an (M,K,K) array."""
    return (np.arange(m)[:, None] * (k * k) + np.arange(k)[None, :]).astype(np.intp)


_CORNER_SIGNS_BEV = _CORNER_SIGNS[:4, :2]  # the top face's (x, y) signs: Boxes.bev_corners' order


def bev_corners_yaw(center_xy_m: np.ndarray, lw_m: np.ndarray, yaw_rad: np.ndarray) -> np.ndarray:
    """Bird's-eye corners of boxes given as raw arrays, in the order of :meth:`Boxes.bev_corners` (counter-clockwise).

    Args:
        center_xy_m: (N,2) centres. lw_m: (N,2) length (along the heading) and width. yaw_rad: (N,) heading about +z.

    Returns:
        (N,4,2) corners.
    """
    c, s = np.cos(yaw_rad)[:, None], np.sin(yaw_rad)[:, None]
    lx, ly = _CORNER_SIGNS_BEV[None, :, 0] * (0.5 * lw_m[:, :1]), _CORNER_SIGNS_BEV[None, :, 1] * (0.5 * lw_m[:, 1:2])
    return np.stack([c * lx - s * ly + center_xy_m[:, :1], s * lx + c * ly + center_xy_m[:, 1:2]], axis=-1)


def iou_paired_yaw(
    center_a_m: np.ndarray,
    lwh_a_m: np.ndarray,
    yaw_a_rad: np.ndarray,
    center_b_m: np.ndarray,
    lwh_b_m: np.ndarray,
    yaw_b_rad: np.ndarray,
    *,
    bird_eye: bool = False,
    generalized: bool = False,
) -> np.ndarray:
    """IoU or GIoU of box a[i] with box b[i], bird's-eye or 3D, for gravity-aligned boxes given as raw arrays.

    The same numbers as :func:`iou_3d_paired`, :func:`iou_bev`, :func:`giou_3d` and :func:`giou_bev` on the
    diagonal, without building :class:`Boxes` (their validation and quaternion round trip cost more than the
    geometry for a few pairs): the path the tracker's association takes every frame.

    Args:
        center_a_m, center_b_m: (M,3) geometric centres, z up. lwh_a_m, lwh_b_m: (M,3) sizes.
        yaw_a_rad, yaw_b_rad: (M,) headings about +z.
        bird_eye: the bird's-eye measure (areas) instead of 3D (volumes).
        generalized: GIoU (IoU minus the share of the enclosing shape outside the union) instead of IoU.

    Returns:
        (M,) IoU in [0, 1] or GIoU in (-1, 1].
    """
    m = center_a_m.shape[0]
    if m == 0:
        return np.zeros(0)
    corners = bev_corners_yaw(np.concatenate([center_a_m[:, :2], center_b_m[:, :2]]),
                              np.concatenate([lwh_a_m[:, :2], lwh_b_m[:, :2]]), np.concatenate([yaw_a_rad, yaw_b_rad]))
    ca, cb = corners[:m], corners[m:]
    inter = polygon_intersection_area(ca, cb)
    area_a, area_b = lwh_a_m[:, 0] * lwh_a_m[:, 1], lwh_b_m[:, 0] * lwh_b_m[:, 1]
    if bird_eye:
        union = area_a + area_b - inter
    else:
        top_a, bottom_a = center_a_m[:, 2] + 0.5 * lwh_a_m[:, 2], center_a_m[:, 2] - 0.5 * lwh_a_m[:, 2]
        top_b, bottom_b = center_b_m[:, 2] + 0.5 * lwh_b_m[:, 2], center_b_m[:, 2] - 0.5 * lwh_b_m[:, 2]
        inter = inter * np.maximum(np.minimum(top_a, top_b) - np.maximum(bottom_a, bottom_b), 0.0)
        union = area_a * lwh_a_m[:, 2] + area_b * lwh_b_m[:, 2] - inter
    iou = inter / np.maximum(union, _EPS)
    if not generalized:
        return iou
    enclosing = convex_hull_area(corners.reshape(2, m, 4, 2).transpose(1, 0, 2, 3).reshape(m, 8, 2))
    if not bird_eye:
        enclosing = enclosing * (np.maximum(top_a, top_b) - np.minimum(bottom_a, bottom_b))
    return iou - (enclosing - union) / np.maximum(enclosing, _EPS)


def _pairs(a: Boxes, b: Boxes) -> tuple[np.ndarray, np.ndarray]:
    ia, ib = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return ia.reshape(-1), ib.reshape(-1)


def _grid(a: Boxes, b: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (Na,1) and (1,Nb) that broadcast per-box arrays to (Na,Nb) without gathering all pairs."""
    return np.arange(len(a))[:, None], np.arange(len(b))[None, :]


def _bev_intersection(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) bird's-eye intersection areas; pairs whose circumcircles miss are 0 without polygon work."""
    radius_a = 0.5 * np.hypot(a.lwh_m[:, 0], a.lwh_m[:, 1])
    radius_b = 0.5 * np.hypot(b.lwh_m[:, 0], b.lwh_m[:, 1])
    gap = a.center_m[:, None, :2] - b.center_m[None, :, :2]
    reach = (radius_a[:, None] + radius_b[None, :]) ** 2 * (1 + 1e-9)
    ia, ib = np.nonzero(np.sum(gap * gap, axis=2) <= reach)
    inter = np.zeros((len(a), len(b)))
    if len(ia):
        inter[ia, ib] = polygon_intersection_area(a.bev_corners()[ia], b.bev_corners()[ib])
    return inter


def _bev_area(boxes: Boxes) -> np.ndarray:
    return boxes.lwh_m[:, 0] * boxes.lwh_m[:, 1]


def iou_bev(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) bird's-eye IoU of every pair, vectorised."""
    inter = _bev_intersection(a, b)
    union = _bev_area(a)[:, None] + _bev_area(b)[None, :] - inter
    return inter / np.maximum(union, _EPS)


def _z_overlap(a: Boxes, b: Boxes, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    top = np.minimum(a.center_m[ia, 2] + a.lwh_m[ia, 2] / 2, b.center_m[ib, 2] + b.lwh_m[ib, 2] / 2)
    bottom = np.maximum(a.center_m[ia, 2] - a.lwh_m[ia, 2] / 2, b.center_m[ib, 2] - b.lwh_m[ib, 2] / 2)
    return np.maximum(top - bottom, 0.0)


def iou_3d(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) 3D IoU of every pair of gravity-aligned boxes, vectorised."""
    inter = _bev_intersection(a, b) * _z_overlap(a, b, *_grid(a, b))
    union = a.volume_m3()[:, None] + b.volume_m3()[None, :] - inter
    return inter / np.maximum(union, _EPS)


def iou_3d_paired(a: Boxes, b: Boxes) -> np.ndarray:
    """(N,) 3D IoU of a[i] with b[i] for two Boxes of equal length."""
    if len(a) != len(b):
        raise ValueError(f"paired IoU needs equal lengths, got {len(a)} and {len(b)}")
    idx = np.arange(len(a))
    inter = polygon_intersection_area(a.bev_corners(), b.bev_corners()) * _z_overlap(a, b, idx, idx)
    union = a.volume_m3() + b.volume_m3() - inter
    return inter / np.maximum(union, _EPS)


def iou_bev_shapely(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) bird's-eye IoU by shapely's exact polygon intersection (reference path)."""
    import shapely

    pa = np.asarray(a.bev_polygons(), dtype=object)
    pb = np.asarray(b.bev_polygons(), dtype=object)
    if len(pa) == 0 or len(pb) == 0:
        return np.zeros((len(a), len(b)))
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
    return inter / np.maximum(union, _EPS)


def iou_3d_shapely(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) 3D IoU with the bird's-eye intersection from shapely (reference path)."""
    import shapely

    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    pa = np.asarray(a.bev_polygons(), dtype=object)
    pb = np.asarray(b.bev_polygons(), dtype=object)
    inter_bev = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    ia, ib = _pairs(a, b)
    inter = inter_bev.reshape(-1) * _z_overlap(a, b, ia, ib)
    union = a.volume_m3()[ia] + b.volume_m3()[ib] - inter
    return (inter / np.maximum(union, _EPS)).reshape(len(a), len(b))


def _hull_area_bev(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) area of the convex hull of the footprints of every pair."""
    ia, ib = _pairs(a, b)
    corners = np.concatenate([a.bev_corners()[ia], b.bev_corners()[ib]], axis=1)
    return convex_hull_area(corners).reshape(len(a), len(b))


def giou_bev(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) bird's-eye generalised IoU of every pair, in (-1, 1].

    The enclosing shape is the convex hull of both footprints (exact, vectorised).
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    inter = _bev_intersection(a, b)
    union = _bev_area(a)[:, None] + _bev_area(b)[None, :] - inter
    hull = _hull_area_bev(a, b)
    return inter / np.maximum(union, _EPS) - (hull - union) / np.maximum(hull, _EPS)


def giou_3d(a: Boxes, b: Boxes) -> np.ndarray:
    """(Na,Nb) 3D generalised IoU of every pair of gravity-aligned boxes, in (-1, 1].

    The enclosing volume is the convex hull of both footprints times the vertical span of both boxes.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ia, ib = _grid(a, b)
    inter = _bev_intersection(a, b) * _z_overlap(a, b, ia, ib)
    union = a.volume_m3()[:, None] + b.volume_m3()[None, :] - inter
    top = np.maximum(a.center_m[ia, 2] + a.lwh_m[ia, 2] / 2, b.center_m[ib, 2] + b.lwh_m[ib, 2] / 2)
    bottom = np.minimum(a.center_m[ia, 2] - a.lwh_m[ia, 2] / 2, b.center_m[ib, 2] - b.lwh_m[ib, 2] / 2)
    enclosing = _hull_area_bev(a, b) * (top - bottom)
    return inter / np.maximum(union, _EPS) - (enclosing - union) / np.maximum(enclosing, _EPS)


def center_distance(a: Boxes, b: Boxes, *, bev: bool = False) -> np.ndarray:
    """(Na,Nb) Euclidean distance in metres between box centres; ``bev=True`` ignores z (nuScenes' matching)."""
    from scipy.spatial.distance import cdist

    dims = 2 if bev else 3
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return cdist(a.center_m[:, :dims], b.center_m[:, :dims])
