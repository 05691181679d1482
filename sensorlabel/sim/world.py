"""The synthetic world: a curved road with markings, buildings, walls, poles and trees, the ego and the objects.

All geometry is in the world frame: x/y on flat ground (z = 0), z up, origin at the ego's start. The road is path 0
of :class:`~sensorlabel.sim.trajectory.Paths`; road coordinates are (s along the road, d to its left).

Cross-section of the road (|d| in metres): 0-7 four lanes of 3.5 m (the ego drives at d = -1.75, traffic keeps
right), 7-8.6 bike lanes, 8.6-10.8 parking, 11-14 sidewalks, buildings from 16 outwards. A crosswalk and a side
street cross the road ahead of the ego.

Objects are unions of boxes whose joint axis-aligned extent is exactly the truth box (so a tight fit of an object's
points recovers its truth box). Object placements that would overlap another object or the ego at any time of the
drive are rejected and redrawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3
from sensorlabel.sim.config import SimConfig
from sensorlabel.sim.trajectory import Motions, Paths

CLASSES = ("Car", "Pedestrian", "Cyclist")
#: Camera colour of every class (RGB, before shading): red cars, yellow pedestrians, magenta cyclists.
CLASS_COLOR_RGB = np.array([[215, 40, 35], [245, 200, 20], [200, 50, 215]], dtype=np.float64) / 255.0
#: Lidar reflectivity of every class.
CLASS_ALBEDO = np.array([0.55, 0.25, 0.4])
#: Parts of each class as (lo, hi) corners in units of the box size, box centred at 0: their union spans the box.
CLASS_PARTS: dict[str, list[tuple[tuple[float, float, float], tuple[float, float, float]]]] = {
    "Car": [((-0.5, -0.5, -0.5), (0.5, 0.5, 0.12)), ((-0.3, -0.44, 0.12), (0.22, 0.44, 0.5))],
    "Pedestrian": [((-0.5, -0.3, -0.5), (0.5, 0.3, 0.0)), ((-0.25, -0.5, 0.0), (0.25, 0.5, 0.37)),
                   ((-0.15, -0.18, 0.37), (0.15, 0.18, 0.5))],
    "Cyclist": [((-0.5, -0.08, -0.5), (0.5, 0.08, 0.1)), ((-0.25, -0.5, -0.05), (0.2, 0.5, 0.5))],
}
#: Ego footprint (the ego frame's origin is its centre at ground level).
EGO_LWH_M = np.array([4.6, 1.9, 1.6])
EGO_LATERAL_M = -1.75

# Static materials: index into STATIC_ALBEDO.
GROUND, BUILDING, WALL, POLE, TRUNK, CROWN = range(6)
STATIC_ALBEDO = np.array([0.1, 0.35, 0.3, 0.6, 0.2, 0.12])

# Ground surface kinds with their colour and lidar reflectivity.
_GRASS, _SIDEWALK, _JOINT, _KERB, _PARKING, _BIKE_LANE, _ASPHALT, _MARKING = range(8)
_GROUND_RGB = np.array([[0.30, 0.45, 0.22], [0.66, 0.66, 0.63], [0.5, 0.5, 0.48], [0.8, 0.8, 0.78],
                        [0.30, 0.30, 0.31], [0.32, 0.42, 0.34], [0.33, 0.33, 0.34], [0.92, 0.92, 0.92]],
                       dtype=np.float32)
_GROUND_ALBEDO = np.array([0.15, 0.25, 0.2, 0.3, 0.08, 0.1, 0.08, 0.8])

_BOX_CORNERS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
                        dtype=np.float64)
_BOX_TRIANGLES = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                           [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]], dtype=np.int64)


def box_mesh(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle meshes of B axis-aligned boxes.

    Args:
        lo, hi: (B,3) opposite corners.

    Returns:
        vertices (B*8,3) float64 and triangles (B*12,3) int64, outward-facing.
    """
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    verts = lo[:, None, :] + _BOX_CORNERS[None] * (hi - lo)[:, None, :]
    tris = _BOX_TRIANGLES[None] + 8 * np.arange(len(lo))[:, None, None]
    return verts.reshape(-1, 3), tris.reshape(-1, 3)


def class_mesh(label: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit-size mesh of a class (box of size 1 centred at 0): vertices (V,3), triangles (T,3)."""
    parts = np.array(CLASS_PARTS[label], dtype=np.float64)
    return box_mesh(parts[:, 0], parts[:, 1])


@dataclass
class StaticMesh:
    """Static world geometry (ground, structures) as one triangle mesh with a material and colour per triangle."""

    vertices: np.ndarray   # (V,3) world metres
    triangles: np.ndarray  # (T,3) int
    material: np.ndarray   # (T,) int
    color: np.ndarray      # (T,3) float RGB in [0,1]


@dataclass(frozen=True)
class RoadLookup:
    """Road nodes with their tangents, and the nearest node of every cell of a grid around the road."""

    origin_xy: np.ndarray     # (2,) corner of cell (0, 0)
    cell_m: float
    nearest: np.ndarray       # (nx, ny) node index
    node_xy: np.ndarray       # (G,2)
    node_tangent: np.ndarray  # (G,2) unit
    s_min_m: float
    spacing_m: float


class _MeshBuilder:
    def __init__(self) -> None:
        self.verts: list[np.ndarray] = []
        self.tris: list[np.ndarray] = []
        self.material: list[np.ndarray] = []
        self.color: list[np.ndarray] = []
        self.count = 0

    def add(self, verts: np.ndarray, tris: np.ndarray, material: int, color) -> None:
        self.verts.append(verts)
        self.tris.append(tris + self.count)
        self.count += len(verts)
        self.material.append(np.full(len(tris), material))
        self.color.append(np.tile(np.asarray(color, dtype=np.float64), (len(tris), 1)))

    def add_oriented_box(self, center_xy, yaw_rad: float, size_lwh, z0: float, material: int, color) -> None:
        half = np.asarray(size_lwh, dtype=np.float64) / 2
        verts, tris = box_mesh(np.array([-half[0], -half[1], 0.0]), np.array([half[0], half[1], 2 * half[2]]))
        rot = SE3.from_yaw(yaw_rad, np.array([center_xy[0], center_xy[1], z0]))
        self.add(rot.transform_points(verts), tris, material, color)

    def add_legacy(self, mesh, offset, material: int, color) -> None:
        self.add(np.asarray(mesh.vertices) + offset, np.asarray(mesh.triangles, dtype=np.int64), material, color)

    def build(self) -> StaticMesh:
        return StaticMesh(np.concatenate(self.verts), np.concatenate(self.tris), np.concatenate(self.material),
                          np.concatenate(self.color))


def _bev_overlap(ca, ha, ya, cb, hb, yb) -> np.ndarray:
    """Paired oriented-rectangle overlap by the separating axis test.

    Args:
        ca, cb: (P,2) centres; ha, hb: (P,2) half length/width; ya, yb: (P,) headings.

    Returns:
        (P,) bool, True where the rectangles overlap.
    """
    axes_a = np.stack([np.stack([np.cos(ya), np.sin(ya)], 1), np.stack([-np.sin(ya), np.cos(ya)], 1)], 1)
    axes_b = np.stack([np.stack([np.cos(yb), np.sin(yb)], 1), np.stack([-np.sin(yb), np.cos(yb)], 1)], 1)
    delta = cb - ca
    overlap = np.ones(len(ca), dtype=bool)
    for axis in np.concatenate([axes_a, axes_b], axis=1).transpose(1, 0, 2):
        ra = np.sum(ha * np.abs(np.einsum("pij,pj->pi", axes_a, axis)), axis=1)
        rb = np.sum(hb * np.abs(np.einsum("pij,pj->pi", axes_b, axis)), axis=1)
        overlap &= np.abs(np.sum(delta * axis, axis=1)) <= ra + rb
    return overlap


@dataclass
class World:
    """The full synthetic world of one drive.

    Attributes:
        config: the config it was built from.
        paths: path 0 is the road; the others belong to objects that leave the road's lanes.
        ego: a single motion (the ego vehicle; the ego frame's origin is the centre of its footprint).
        objects: N motions. object_lwh_m (N,3), object_class (N,) index into CLASSES, track_id (N,) int64,
        object_shade (N,) brightness factor of each object's colour.
        static: the static mesh. crosswalk_s_m, side_street_s_m: road positions of the crosswalk and side street.
    """

    config: SimConfig
    paths: Paths
    ego: Motions
    objects: Motions
    object_lwh_m: np.ndarray
    object_class: np.ndarray
    track_id: np.ndarray
    object_shade: np.ndarray
    static: StaticMesh
    crosswalk_s_m: float
    side_street_s_m: float
    road_lookup: RoadLookup

    # ----- poses ---------------------------------------------------------------------------------------------------
    def world_SE3_ego(self, t_s: np.ndarray) -> SE3:
        """Ego poses at times t_s (Q,) seconds since the start: a batch of Q."""
        t_s = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        xy, yaw = self.ego.state(self.paths, np.zeros(len(t_s), np.int64), t_s)
        return SE3.from_yaw(yaw, np.concatenate([xy, np.zeros((len(t_s), 1))], axis=1))

    def object_states(self, k: np.ndarray, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Geometric centres (Q,3) and headings (Q,) of objects k[q] at t_s[q]."""
        xy, yaw = self.objects.state(self.paths, k, t_s)
        return np.concatenate([xy, self.object_lwh_m[k, 2:3] / 2], axis=1), yaw

    def objects_at(self, t_s: float) -> Boxes:
        """All objects as world-frame boxes at time t_s."""
        k = np.arange(len(self.objects))
        center, yaw = self.object_states(k, np.full(len(k), float(t_s)))
        labels = np.array(CLASSES)[self.object_class] if len(k) else np.zeros(0, dtype=str)
        return Boxes.from_yaw(center, self.object_lwh_m, yaw, self.track_id, labels)

    # ----- ground appearance -----------------------------------------------------------------------------------
    def road_coordinates(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road coordinates of world points.

        The nearest road node comes from a 2 m lookup grid; two projections onto the tangent of the node nearest to
        the current foot point then give s and d (error below 1 mm for the road's curvature).

        Args:
            xy: (P,2) world positions on the ground.

        Returns:
            s (P,) along the road and d (P,) to its left, metres; d is +inf where the point is off the lookup grid
            (far from the road).
        """
        look = self.road_lookup
        ij = np.floor((xy - look.origin_xy) / look.cell_m).astype(np.int64)
        nx, ny = look.nearest.shape
        inside = (ij[:, 0] >= 0) & (ij[:, 1] >= 0) & (ij[:, 0] < nx) & (ij[:, 1] < ny)
        node = look.nearest[np.clip(ij[:, 0], 0, nx - 1), np.clip(ij[:, 1], 0, ny - 1)]
        last = len(look.node_xy) - 1
        for _ in range(2):
            offset = xy - look.node_xy[node]
            along = np.sum(offset * look.node_tangent[node], axis=1)
            node = np.clip(node + np.round(along / look.spacing_m).astype(np.int64), 0, last)
        offset = xy - look.node_xy[node]
        tangent = look.node_tangent[node]
        s = look.s_min_m + node * look.spacing_m + np.sum(offset * tangent, axis=1)
        d = offset[:, 1] * tangent[:, 0] - offset[:, 0] * tangent[:, 1]
        return s, np.where(inside, d, np.inf)

    def ground_appearance(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour (P,3) RGB in [0,1] (float32) and lidar reflectivity (P,) of the ground at world positions xy (P,2).

        Surfaces by |d|: lanes, lane markings (double centre line, dashed dividers, edge lines), bike lanes,
        parking bays, kerb, tiled sidewalks and grass, plus the crosswalk and the side street.
        """
        s, d = self.road_coordinates(xy)
        ad = np.minimum(np.abs(d), 1e6)
        d = np.clip(d, -1e6, 1e6)
        kind = np.full(len(xy), _GRASS, dtype=np.int8)
        kind[ad < 14.0] = _SIDEWALK
        joints = (ad >= 11.0) & (ad < 14.0) & ((np.mod(s, 1.5) < 0.05) | (np.mod(ad, 1.5) < 0.05))
        kind[joints] = _JOINT
        kind[(ad >= 10.8) & (ad < 11.0)] = _KERB
        kind[ad < 10.8] = _PARKING
        kind[(ad >= 8.6) & (ad < 10.8) & (np.mod(s, 6.0) < 0.12)] = _MARKING
        kind[ad < 8.6] = _BIKE_LANE
        kind[(ad < 7.0) | ((np.abs(s - self.side_street_s_m) < 6.0) & (ad >= 8.6))] = _ASPHALT
        marking = ((np.abs(ad - 7.0) < 0.1) | ((np.abs(ad - 3.5) < 0.08) & (np.mod(s, 9.0) < 3.0))
                   | ((ad > 0.06) & (ad < 0.18))
                   | ((np.abs(s - self.crosswalk_s_m) < 2.0) & (ad < 8.6) & (np.mod(d, 1.0) < 0.5)))
        kind[marking] = _MARKING
        x, y = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
        texture = 1.0 + 0.06 * np.sin(1.7 * x + 0.3) * np.sin(2.3 * y) + 0.05 * np.sin(0.37 * x - 0.91 * y) \
            * np.sin(5.1 * x + 3.3 * y)
        color = _GROUND_RGB[kind] * texture[:, None]
        return np.clip(color, 0, 1), _GROUND_ALBEDO[kind]


# ----- construction -------------------------------------------------------------------------------------------------

def _ego_motion(config: SimConfig, rng: np.random.Generator) -> dict:
    duration = config.duration_s
    return {"path": 0, "direction": 1.0, "s0_m": 0.0, "speed0_mps": config.ego_speed_mps,
            "speed_change_mps": config.ego_speed_change_mps, "speed_change_time_s": rng.uniform(0.3, 0.6) * duration,
            "speed_change_tau_s": max(0.3, 0.12 * duration), "speed_amp_mps": 0.4,
            "speed_omega_rps": rng.uniform(0.6, 1.2), "speed_phase_rad": rng.uniform(0, 2 * np.pi),
            "lateral0_m": EGO_LATERAL_M}


def _lwh(rng: np.random.Generator, label: str) -> np.ndarray:
    if label == "Car":
        return np.array([rng.uniform(4.2, 4.9), rng.uniform(1.8, 2.0), rng.uniform(1.45, 1.75)])
    if label == "Pedestrian":
        return np.array([rng.uniform(0.7, 0.9), rng.uniform(0.6, 0.8), rng.uniform(1.6, 1.9)])
    return np.array([rng.uniform(1.7, 1.9), rng.uniform(0.6, 0.8), rng.uniform(1.6, 1.8)])


class _Layout:
    """Draws candidate objects. Own paths (turning or crossing objects) are collected for one Paths.build."""

    def __init__(self, rng, duration_s: float, road: Paths, ego: Motions, crosswalk_s: float, side_street_s: float):
        self.rng, self.duration = rng, duration_s
        self.road, self.crosswalk_s, self.side_street_s = road, crosswalk_s, side_street_s
        t_mid = np.array([duration_s / 2])
        self.ego_s_mid = float(ego.arc_length(np.zeros(1, np.int64), t_mid)[0])
        self.ego_s_span = (float(ego.arc_length(np.zeros(1, np.int64), np.zeros(1))[0]),
                           float(ego.arc_length(np.zeros(1, np.int64), np.array([duration_s]))[0]))
        self.own_paths: list[dict] = []

    def _speed(self, lo: float, hi: float, change: float, amp: float) -> dict:
        rng, duration = self.rng, self.duration
        v0 = rng.uniform(lo, hi)
        dv = rng.uniform(-change, change)
        a = min(amp, 0.3 * (v0 + min(dv, 0)))
        return {"speed0_mps": v0, "speed_change_mps": dv, "speed_change_time_s": rng.uniform(0, duration),
                "speed_change_tau_s": rng.uniform(0.8, 2.0), "speed_amp_mps": rng.uniform(0, a),
                "speed_omega_rps": rng.uniform(0.5, 2.0), "speed_phase_rad": rng.uniform(0, 2 * np.pi)}

    def _anchor(self, row: dict, s_at_t: float, t_s: float) -> dict:
        """Set s0 so that the motion is at arc length s_at_t at time t_s."""
        row = dict(row, s0_m=0.0)
        probe = Motions.from_rows([row])
        row["s0_m"] = s_at_t - float(probe.arc_length(np.zeros(1, np.int64), np.array([t_s]))[0])
        return row

    def _road_follower(self, lateral: float, direction: float, speed: dict, s_window: tuple[float, float]) -> dict:
        row = dict(speed, path=0, direction=direction, lateral0_m=lateral)
        return self._anchor(row, self.ego_s_mid + self.rng.uniform(*s_window), self.duration / 2)

    def _own_path(self, s_road: float, side: float, start_m: float, turn_s: float, turn_dyaw: float,
                  turn_width: float, curvature: float = 0.0) -> int:
        """An own path starting ``start_m`` to the side of the road at s_road, heading towards the road."""
        pos, tangent, normal = self.road.frame(np.zeros(1, np.int64), np.array([s_road]))
        yaw_road = float(np.arctan2(tangent[0, 1], tangent[0, 0]))
        self.own_paths.append({"origin": pos[0] + normal[0] * side * start_m, "yaw0": yaw_road - side * np.pi / 2,
                               "k0": curvature, "turn_s": turn_s, "dyaw": turn_dyaw, "w": turn_width})
        return len(self.own_paths)  # path index (0 is the road)

    def _turner(self, target_lateral: float, speed: dict, width: float) -> dict:
        rng = self.rng
        side = rng.choice([-1.0, 1.0])
        start = rng.uniform(30, 45)
        dyaw = rng.choice([-1.0, 1.0]) * np.pi / 2
        # Traffic keeps right, so a left turn crosses the road to the far side and a right turn stays near.
        turn_at = start + (target_lateral if dyaw > 0 else -target_lateral)
        path = self._own_path(self.side_street_s + rng.uniform(-2.5, 2.5), side, start, turn_at, dyaw, width)
        return self._anchor(dict(speed, path=path), turn_at, rng.uniform(0.1, 0.8) * self.duration)

    def car(self) -> dict:
        rng = self.rng
        kind = rng.choice(["same", "oncoming", "parked", "turner"], p=[0.35, 0.25, 0.3, 0.1])
        if kind == "same":
            lane = rng.choice([-1.75, -5.25])
            row = self._road_follower(lane, 1.0, self._speed(7, 14, 3, 0.6), (-40, 70))
            if rng.random() < 0.35:
                row.update(lateral_change_m=-3.5 if lane > -3.5 else 3.5,
                           lateral_change_time_s=rng.uniform(0.2, 0.8) * self.duration,
                           lateral_change_tau_s=rng.uniform(0.5, 0.9))
            return row
        if kind == "oncoming":
            lane = rng.choice([1.75, 5.25])
            return self._road_follower(lane, -1.0, self._speed(7, 14, 3, 0.6), (-30, 90))
        if kind == "parked":
            side = rng.choice([-1.0, 1.0])
            s = rng.uniform(self.ego_s_span[0] - 30, self.ego_s_span[1] + 60)
            return {"path": 0, "direction": rng.choice([-1.0, 1.0]), "s0_m": s, "speed0_mps": 0.0,
                    "lateral0_m": side * rng.uniform(9.55, 9.85)}
        return self._turner(rng.choice([1.75, 5.25]), self._speed(4, 8, 2, 0.3), rng.uniform(2.0, 3.0))

    def pedestrian(self) -> dict:
        rng = self.rng
        kind = rng.choice(["walker", "standing", "crosser"], p=[0.55, 0.15, 0.3])
        side = rng.choice([-1.0, 1.0])
        if kind == "crosser":
            path = self._own_path(self.crosswalk_s + rng.uniform(-1.2, 1.2), side, 13.5, rng.uniform(4, 22),
                                  rng.uniform(-0.5, 0.5), 1.5, rng.uniform(-0.01, 0.01))
            speed = self._speed(1.0, 1.7, 0.5, 0.15)
            return self._anchor(dict(speed, path=path), 13.5, rng.uniform(-0.2, 0.9) * self.duration)
        speed = self._speed(0.8, 1.6, 0.4, 0.25) if kind == "walker" else {"speed0_mps": 0.0}
        row = dict(speed, path=0, direction=rng.choice([-1.0, 1.0]), lateral0_m=side * rng.uniform(11.8, 13.4))
        return self._anchor(row, self.ego_s_mid + rng.uniform(-30, 60), self.duration / 2)

    def cyclist(self) -> dict:
        rng = self.rng
        if rng.random() < 0.75:
            side = rng.choice([-1.0, 1.0])
            return self._road_follower(side * 7.8, -side, self._speed(3.5, 7, 1.5, 0.3), (-30, 70))
        return self._turner(7.8, self._speed(3, 5, 1, 0.2), 1.5)


def _object_footprints(world_paths: Paths, motions: Motions, lwh: np.ndarray, t_s: np.ndarray):
    """Centres (K,T,2), half sizes (K,2) and headings (K,T) of K motions at T times."""
    k = np.repeat(np.arange(len(motions)), len(t_s))
    xy, yaw = motions.state(world_paths, k, np.tile(t_s, len(motions)))
    return xy.reshape(len(motions), len(t_s), 2), lwh[:, :2] / 2, yaw.reshape(len(motions), len(t_s))


def _static_mesh(rng, road: Paths, s_lo: float, s_hi: float, crosswalk_s: float, side_street_s: float,
                 ground_bounds: tuple[np.ndarray, np.ndarray]) -> StaticMesh:
    import open3d as o3d

    mesh = _MeshBuilder()
    lo, hi = ground_bounds
    ground_v = np.array([[lo[0], lo[1], 0], [hi[0], lo[1], 0], [hi[0], hi[1], 0], [lo[0], hi[1], 0]], float)
    mesh.add(ground_v, np.array([[0, 1, 2], [0, 2, 3]]), GROUND, [0.3, 0.3, 0.3])
    zero = np.zeros(1, np.int64)

    def road_frame(s: float, d: float):
        pos, tangent, normal = road.frame(zero, np.array([s]))
        return pos[0] + normal[0] * d, float(np.arctan2(tangent[0, 1], tangent[0, 0]))

    palette = np.array([[0.78, 0.72, 0.6], [0.62, 0.38, 0.3], [0.7, 0.7, 0.72], [0.85, 0.82, 0.7],
                        [0.55, 0.58, 0.62], [0.72, 0.6, 0.45]])
    for side in (-1.0, 1.0):
        s = s_lo + rng.uniform(0, 10)
        while s < s_hi:
            length, gap = rng.uniform(8, 25), rng.uniform(2, 9)
            centre = s + length / 2
            if abs(centre - side_street_s) > 9 + length / 2:
                front, depth = rng.uniform(16, 19), rng.uniform(8, 15)
                xy, yaw = road_frame(centre, side * (front + depth / 2))
                mesh.add_oriented_box(xy, yaw, (length, depth, rng.uniform(5, 18)), 0.0, BUILDING,
                                      palette[rng.integers(len(palette))])
                if gap > 4:
                    xy, yaw = road_frame(s + length + gap / 2, side * (front + 0.2))
                    mesh.add_oriented_box(xy, yaw, (gap, 0.3, 1.2), 0.0, WALL, [0.6, 0.6, 0.6])
            s += length + gap
        poles = np.arange(s_lo + rng.uniform(0, 20), s_hi, 24.0)
        trees = np.arange(s_lo + rng.uniform(0, 12), s_hi, 14.0)
        for kind, positions, d in ((POLE, poles, 11.3), (TRUNK, trees, 14.6)):
            for s_pos in positions:
                if abs(s_pos - crosswalk_s) < 4 or abs(s_pos - side_street_s) < 8:
                    continue
                xy, _ = road_frame(float(s_pos), side * d)
                if kind == POLE:
                    pole = o3d.geometry.TriangleMesh.create_cylinder(0.12, 6.5, resolution=8, split=1)
                    mesh.add_legacy(pole, [xy[0], xy[1], 3.25], POLE, [0.25, 0.27, 0.3])
                else:
                    trunk = o3d.geometry.TriangleMesh.create_cylinder(0.2, 3.0, resolution=6, split=1)
                    mesh.add_legacy(trunk, [xy[0], xy[1], 1.5], TRUNK, [0.35, 0.25, 0.15])
                    crown = o3d.geometry.TriangleMesh.create_sphere(rng.uniform(1.4, 2.0), resolution=5)
                    mesh.add_legacy(crown, [xy[0], xy[1], 4.2], CROWN, [0.15, 0.4, 0.12])
    return mesh.build()


def build_world(config: SimConfig) -> World:
    """Lay out the road, structures, ego and objects of a drive, deterministically from ``config.seed``."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng([config.seed, 20240611])
    duration = config.duration_s
    ego_row = _ego_motion(config, rng)
    ego = Motions.from_rows([ego_row])
    ego_len = float(ego.arc_length(np.zeros(1, np.int64), np.array([duration]))[0])
    # The road: a turn through the ego's stretch, another ahead and one behind, plus a constant curvature.
    sign = rng.choice([-1.0, 1.0])
    turn_a = rng.uniform(0.35, 0.65) * ego_len
    road_turns = np.array([[turn_a, turn_a + rng.uniform(90, 140), -rng.uniform(60, 100)]])
    road_dyaw = np.array([[sign * rng.uniform(0.4, 0.8), -sign * rng.uniform(0.3, 0.6), rng.uniform(-0.5, 0.5)]])
    road_width = np.array([[max(4.0, 0.1 * ego_len), 10.0, 10.0]])
    road_k0 = rng.uniform(-1, 1) / 500
    s_margin = 200.0 + 20.0 * duration
    s_range = (-s_margin, ego_len + s_margin)
    road = Paths.build([[0.0, 0.0]], [0.0], [road_k0], road_turns, road_dyaw, road_width, s_range)
    # Ego starts at the world origin facing +x: shift and rotate the road so.
    start_xy, start_yaw = ego.state(road, np.zeros(1, np.int64), np.zeros(1))
    yaw0 = -float(start_yaw[0])
    c, s_ = np.cos(yaw0), np.sin(yaw0)
    origin = -np.array([[c, -s_], [s_, c]]) @ start_xy[0]
    road = Paths.build([origin], [yaw0], [road_k0], road_turns, road_dyaw, road_width, s_range)

    crosswalk_s = rng.uniform(0.45, 0.8) * ego_len + 15.0
    side_street_s = crosswalk_s + 14.0
    layout = _Layout(rng, duration, road, ego, crosswalk_s, side_street_s)
    wanted = {"Car": config.num_cars, "Pedestrian": config.num_pedestrians, "Cyclist": config.num_cyclists}
    draw = {"Car": layout.car, "Pedestrian": layout.pedestrian, "Cyclist": layout.cyclist}
    rows, classes, sizes = [], [], []
    for label in CLASSES:
        for _ in range(4 * wanted[label]):
            rows.append(draw[label]())
            classes.append(CLASSES.index(label))
            sizes.append(_lwh(rng, label))
    own = layout.own_paths
    j = road_turns.shape[1]

    def padded(key: str, fill: float) -> np.ndarray:
        return np.array([[p[key]] + [fill] * (j - 1) for p in own]).reshape(-1, j)

    paths = Paths.build(
        np.concatenate([[origin], np.array([p["origin"] for p in own]).reshape(-1, 2)]),
        np.concatenate([[yaw0], [p["yaw0"] for p in own]]), np.concatenate([[road_k0], [p["k0"] for p in own]]),
        np.concatenate([road_turns, padded("turn_s", 0.0)]), np.concatenate([road_dyaw, padded("dyaw", 0.0)]),
        np.concatenate([road_width, padded("w", 1.0)]), s_range)

    # Greedy placement: a candidate is kept when it overlaps neither the ego nor a kept object at any time.
    candidates = Motions.from_rows(rows) if rows else None
    lwh = np.array(sizes).reshape(-1, 3)
    classes_arr = np.array(classes, dtype=np.int64)
    t_check = np.arange(-0.3, duration + 0.3, 0.2)
    keep: list[int] = []
    if candidates is not None:
        ego_xy, ego_yaw = ego.state(paths, np.zeros(len(t_check), np.int64), t_check)
        cand_xy, cand_half, cand_yaw = _object_footprints(paths, candidates, lwh, t_check)
        margin = 0.2
        kept_xy = [ego_xy]
        kept_half = [np.tile(EGO_LWH_M[:2] / 2 + margin, (len(t_check), 1))]
        kept_yaw = [ego_yaw]
        count = {c: 0 for c in range(len(CLASSES))}
        for i in range(len(candidates)):
            if count[classes_arr[i]] >= wanted[CLASSES[classes_arr[i]]]:
                continue
            n_kept = len(kept_xy)
            other_xy, other_half = np.concatenate(kept_xy), np.concatenate(kept_half)
            mine_half = np.tile(cand_half[i] + margin, (len(other_xy), 1))
            hit = _bev_overlap(np.tile(cand_xy[i], (n_kept, 1)), mine_half, np.tile(cand_yaw[i], n_kept),
                               other_xy, other_half, np.concatenate(kept_yaw))
            if hit.any():
                continue
            keep.append(i)
            count[classes_arr[i]] += 1
            kept_xy.append(cand_xy[i])
            kept_half.append(np.tile(cand_half[i] + margin, (len(t_check), 1)))
            kept_yaw.append(cand_yaw[i])
    keep_arr = np.array(sorted(keep, key=lambda i: (classes_arr[i], i)), dtype=np.int64)
    objects = Motions.from_rows([rows[i] for i in keep_arr])

    # Static structures and the ground, over the stretch the ego can see.
    s_lo, s_hi = -60.0, ego_len + 130.0
    vis = road.position(np.zeros(200, np.int64), np.linspace(s_lo, s_hi, 200))
    ground_lo, ground_hi = vis.min(axis=0) - 250.0, vis.max(axis=0) + 250.0
    static = _static_mesh(rng, road, s_lo, s_hi, crosswalk_s, side_street_s, (ground_lo, ground_hi))

    # Road-coordinate lookup: the nearest road node for every 2 m cell near the visible stretch.
    cell = 2.0
    look_lo, look_hi = vis.min(axis=0) - 150.0, vis.max(axis=0) + 150.0
    nx, ny = (np.ceil((look_hi - look_lo) / cell)).astype(int)
    gx, gy = np.meshgrid(look_lo[0] + (np.arange(nx) + 0.5) * cell, look_lo[1] + (np.arange(ny) + 0.5) * cell,
                         indexing="ij")
    nodes = road.nodes_xy[0]
    _, nearest = cKDTree(nodes).query(np.stack([gx.ravel(), gy.ravel()], axis=1))
    node_s = road.s_min_m + np.arange(len(nodes)) * road.spacing_m
    node_yaw = road.yaw(np.zeros(len(nodes), np.int64), node_s)
    lookup = RoadLookup(look_lo, cell, nearest.reshape(nx, ny).astype(np.int64), nodes,
                        np.stack([np.cos(node_yaw), np.sin(node_yaw)], axis=1), road.s_min_m, road.spacing_m)

    track_id = np.arange(1, len(keep_arr) + 1, dtype=np.int64)
    shade = rng.uniform(0.75, 1.0, size=len(keep_arr))
    return World(config, paths, ego, objects, lwh[keep_arr].reshape(-1, 3), classes_arr[keep_arr], track_id, shade,
                 static, float(crosswalk_s), float(side_street_s), lookup)
