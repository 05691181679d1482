"""Ray casting against the synthetic world with an exact time for every ray.

Sensors cast their rays as a (G, M) grid: G time groups (lidar firing columns, camera rows) of M rays sharing one
measurement time. Every ray is cast with the sensor pose **and** the object poses at its own group's time, so the
returned world points are exact (no sector approximation):

* The static world (ground, buildings, walls, poles, trees) never moves: all rays are cast at once against one
  Open3D ``RaycastingScene`` in world coordinates. Ground hits are then recomputed in float64 (t = -o_z / d_z).
* Each object class has one unit-size canonical mesh in its own ``RaycastingScene``. A (ray, object) pair is cast by
  moving the ray into the object's frame at the ray's time and dividing by the object's size; the ray parameter t is
  invariant under this affine map, so the world hit is ``origin + t * direction``.
* A global-shutter camera (one instant, one viewpoint) is cast against one scene of the static world and the
  objects posed at that instant (float32 world vertices: within 0.1 mm, plenty for rendering).
* Otherwise candidate (ray, object) pairs come from a coarse grid of sample rays: a cell of the grid is a candidate
  for an object when its sample ray passes within the object's bounding sphere, widened by the cell's angular radius and
  by how far the sensor and the object can move within the cell's time span. This is a strict superset of the
  rays that can hit the object, so no return is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorlabel.geometry.se3 import SE3
from sensorlabel.sim.world import CLASSES, GROUND, World, class_mesh

#: Bounds used to widen the candidate test over a cell's (sub-millisecond) time span.
_EGO_SPEED_BOUND_MPS = 60.0
_YAW_RATE_BOUND_RPS = 3.0


@dataclass(frozen=True)
class RayGrid:
    """The rays of a sensor in its own frame, (G, M) unit vectors, with the coarse cells used for culling.

    Attributes:
        dirs_sensor: (G,M,3) unit ray directions in the sensor frame.
        cell: (cg, cm) cell size of the culling grid in rays.
        sample_index: ((Gc,), (Mc,)) group and member index of every cell's sample ray.
        cell_radius_rad: (Gc,Mc) largest angle between a ray of the cell and the cell's sample ray.
    """

    dirs_sensor: np.ndarray
    cell: tuple[int, int]
    sample_index: tuple[np.ndarray, np.ndarray]
    cell_radius_rad: np.ndarray

    @classmethod
    def build(cls, dirs_sensor: np.ndarray, cell: tuple[int, int]) -> RayGrid:
        g, m, _ = dirs_sensor.shape
        cg, cm = cell
        gc, mc = -(-g // cg), -(-m // cm)
        sample_g = np.minimum(np.arange(gc) * cg + cg // 2, g - 1)
        sample_m = np.minimum(np.arange(mc) * cm + cm // 2, m - 1)
        # Pad by edge replication so the grid splits into whole cells.
        padded = np.pad(dirs_sensor, ((0, gc * cg - g), (0, mc * cm - m), (0, 0)), mode="edge")
        cells = padded.reshape(gc, cg, mc, cm, 3)
        sample = dirs_sensor[sample_g][:, sample_m]
        cos = np.min(np.sum(cells * sample[:, None, :, None, :], axis=-1), axis=(1, 3))
        radius = np.arccos(np.clip(cos, -1.0, 1.0))
        return cls(dirs_sensor, cell, (sample_g, sample_m), radius)


@dataclass(frozen=True)
class Hits:
    """Results of casting a (G,M) ray grid, flattened to R = G*M rays in group-major order.

    Attributes:
        t_m: (R,) float64 range along the unit ray, inf where nothing was hit within range.
        object_index: (R,) int64 index of the object hit, -1 for static hits and misses.
        material: (R,) int64 static material (world.GROUND, ...) for static hits, -1 otherwise.
        triangle: (R,) int64 static triangle index for static hits, -1 otherwise.
        point_world: (R,3) float64 exact hit points (NaN for misses).
        normal_world: (R,3) float32 unit surface normals (zeros for misses).
        dirs_world: (R,3) ray directions in the world.
    """

    t_m: np.ndarray
    object_index: np.ndarray
    material: np.ndarray
    triangle: np.ndarray
    point_world: np.ndarray
    normal_world: np.ndarray
    dirs_world: np.ndarray

    @property
    def hit(self) -> np.ndarray:
        return np.isfinite(self.t_m)


class Raycaster:
    """Casts timed ray grids against a :class:`~sensorlabel.sim.world.World` (scenes are built once)."""

    def __init__(self, world: World) -> None:
        import open3d as o3d

        self.world = world
        self._o3d = o3d
        self._static_vertices = o3d.core.Tensor(world.static.vertices.astype(np.float32))
        self._static_triangles = o3d.core.Tensor(world.static.triangles.astype(np.uint32))
        self.static_scene = o3d.t.geometry.RaycastingScene()
        self.static_scene.add_triangles(self._static_vertices, self._static_triangles)
        self.class_scenes = []
        self._class_meshes = [class_mesh(label) for label in CLASSES]
        for verts, tris in self._class_meshes:
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(tris.astype(np.uint32)))
            self.class_scenes.append(scene)
        # Objects are meshed class by class, in index order within a class (see _scene_with_objects).
        self._posed_triangle_object = np.concatenate(
            [np.repeat(np.flatnonzero(world.object_class == c), len(self._class_meshes[c][1])) for c in
             range(len(CLASSES))] + [np.zeros(0, np.int64)])
        lwh = world.object_lwh_m
        self.bound_radius_m = np.linalg.norm(lwh, axis=1) / 2 if len(lwh) else np.zeros(0)
        self.object_speed_bound = world.objects.speed_bound_mps() if len(lwh) else np.zeros(0)

    def _scene_with_objects(self, t_s: float):
        """A RaycastingScene of the static world (geometry 0) and all objects posed at time t_s (geometry 1, world
        frame); object triangle i belongs to object ``self._posed_triangle_object[i]``."""
        world = self.world
        n_obj = len(world.object_lwh_m)
        centre, yaw = world.object_states(np.arange(n_obj), np.full(n_obj, t_s))
        cos, sin = np.cos(yaw), np.sin(yaw)
        verts, tris = [], []
        count = 0
        for c in range(len(CLASSES)):
            members = np.flatnonzero(world.object_class == c)
            if not len(members):
                continue
            unit_v, unit_t = self._class_meshes[c]
            local = unit_v[None] * world.object_lwh_m[members][:, None, :]  # (n,V,3)
            x = cos[members, None] * local[..., 0] - sin[members, None] * local[..., 1]
            y = sin[members, None] * local[..., 0] + cos[members, None] * local[..., 1]
            v = np.stack([x, y, local[..., 2]], axis=-1) + centre[members, None, :]
            verts.append(v.reshape(-1, 3))
            offsets = count + np.arange(len(members))[:, None, None] * len(unit_v)
            tris.append((unit_t[None] + offsets).reshape(-1, 3))
            count += v.shape[0] * v.shape[1]
        scene = self._o3d.t.geometry.RaycastingScene()
        scene.add_triangles(self._static_vertices, self._static_triangles)
        scene.add_triangles(self._o3d.core.Tensor(np.concatenate(verts).astype(np.float32)),
                            self._o3d.core.Tensor(np.concatenate(tris).astype(np.uint32)))
        return scene

    def _cast(self, scene, origins: np.ndarray, dirs: np.ndarray) -> dict:
        return self._cast_rays(scene, np.concatenate([origins, dirs], axis=1).astype(np.float32))

    def _cast_rays(self, scene, rays: np.ndarray) -> dict:
        out = scene.cast_rays(self._o3d.core.Tensor(rays))
        return {key: out[key].numpy() for key in ("t_hit", "primitive_ids", "primitive_normals", "geometry_ids")}

    def cast(self, grid: RayGrid, times_s: np.ndarray, world_SE3_sensor: SE3, max_range_m: float) -> Hits:
        """Cast a ray grid; group g is measured at ``times_s[g]`` from the pose ``world_SE3_sensor[g]``.

        Args:
            grid: the sensor's rays.
            times_s: (G,) seconds since the drive's start.
            world_SE3_sensor: batch of G sensor poses, at those times.
            max_range_m: hits farther along the ray are dropped.

        Returns:
            Hits of the G*M rays.
        """
        world = self.world
        g_count, m_count, _ = grid.dirs_sensor.shape
        origins = world_SE3_sensor.translation  # (G,3)
        rotation = world_SE3_sensor.rotation
        # Explicit multiply-adds: numpy's matmul on (N,3) x (3,3) stacks is far slower than three axpys.
        if np.all(rotation == rotation[:1]):  # one orientation for all groups (e.g. a global-shutter camera)
            dirs = np.dot(grid.dirs_sensor.reshape(-1, 3), np.ascontiguousarray(rotation[0].T))
        else:
            d = grid.dirs_sensor
            dirs = (d[..., 0:1] * rotation[:, None, :, 0] + d[..., 1:2] * rotation[:, None, :, 1]
                    + d[..., 2:3] * rotation[:, None, :, 2]).reshape(-1, 3)
        n_rays = len(dirs)
        group = np.arange(n_rays) // m_count

        # --- static world (and, for one instant seen from one viewpoint, the objects posed at that instant) ---
        rays = np.empty((g_count, m_count, 6), dtype=np.float32)
        rays[:, :, :3] = origins[:, None, :]
        rays[:, :, 3:] = dirs.reshape(g_count, m_count, 3)
        single_time = (len(times_s) > 0 and bool(np.all(times_s == times_s[0])) and len(world.object_lwh_m) > 0
                       and bool(np.all(origins == origins[:1])))
        scene = self._scene_with_objects(float(times_s[0])) if single_time else self.static_scene
        res = self._cast_rays(scene, rays.reshape(-1, 6))
        t = res["t_hit"].astype(np.float64)
        prim = res["primitive_ids"].astype(np.int64)
        on_object = np.isfinite(t) & (res["geometry_ids"] == 1) if single_time else np.zeros(n_rays, dtype=bool)
        tri = np.where(np.isfinite(t) & ~on_object, prim, -1)
        material = np.where(tri >= 0, world.static.material[np.maximum(tri, 0)], -1)
        ground = np.flatnonzero(material == GROUND)
        t[ground] = -origins[group[ground], 2] / dirs[ground, 2]
        normal = res["primitive_normals"]  # unit, float32
        normal[ground] = [0.0, 0.0, 1.0]
        obj = np.full(n_rays, -1, dtype=np.int64)
        if single_time:
            obj[on_object] = self._posed_triangle_object[prim[on_object]]

        # --- objects, each ray at its own time ---
        pairs = None if single_time else self._candidates(grid, times_s, world_SE3_sensor, max_range_m)
        if pairs is not None:
            k, ray = pairs
            g = ray // m_count
            # Object poses once per (object, distinct time).
            t_unique, t_index = np.unique(times_s, return_inverse=True)
            n_t = len(t_unique)
            key = k * n_t + t_index[g]
            n_obj = len(world.object_lwh_m)
            if n_obj * n_t <= len(k):  # few distinct times: tabulate every object at every time
                centre_u, yaw_u = world.object_states(np.repeat(np.arange(n_obj), n_t), np.tile(t_unique, n_obj))
                centre, yaw = centre_u[key], yaw_u[key]
            else:
                uniq, inverse = np.unique(key, return_inverse=True)
                centre_u, yaw_u = world.object_states(uniq // n_t, t_unique[uniq % n_t])
                centre, yaw = centre_u[inverse], yaw_u[inverse]
            cos, sin = np.cos(yaw), np.sin(yaw)
            lwh = world.object_lwh_m[k]
            rel = origins[g] - centre
            local_o = np.stack([cos * rel[:, 0] + sin * rel[:, 1], -sin * rel[:, 0] + cos * rel[:, 1], rel[:, 2]], 1)
            d = dirs[ray]
            local_d = np.stack([cos * d[:, 0] + sin * d[:, 1], -sin * d[:, 0] + cos * d[:, 1], d[:, 2]], 1)
            t_pair = np.full(len(k), np.inf)
            n_local = np.zeros((len(k), 3))
            cls = world.object_class[k]
            for c, scene in enumerate(self.class_scenes):
                sel = np.flatnonzero(cls == c)
                if len(sel):
                    out = self._cast(scene, local_o[sel] / lwh[sel], local_d[sel] / lwh[sel])
                    t_pair[sel] = out["t_hit"]
                    n_local[sel] = out["primitive_normals"]
            hit = np.isfinite(t_pair)
            k, ray, t_pair, n_local = k[hit], ray[hit], t_pair[hit], n_local[hit] / lwh[hit]
            cos, sin = cos[hit], sin[hit]
            # Nearest object per ray, then keep it where it is nearer than the static hit.
            order = np.lexsort((t_pair, ray))
            first = order[np.r_[True, ray[order][1:] != ray[order][:-1]]] if len(order) else order
            better = t_pair[first] < t[ray[first]]
            first = first[better]
            r = ray[first]
            t[r] = t_pair[first]
            obj[r] = k[first]
            material[r] = -1
            tri[r] = -1
            nl = n_local[first]
            nl = nl / np.linalg.norm(nl, axis=1, keepdims=True)
            normal[r] = np.stack([cos[first] * nl[:, 0] - sin[first] * nl[:, 1],
                                  sin[first] * nl[:, 0] + cos[first] * nl[:, 1], nl[:, 2]], 1)

        t[~(t <= max_range_m)] = np.inf
        miss = ~np.isfinite(t)
        obj[miss], material[miss], tri[miss] = -1, -1, -1
        normal[miss] = 0.0
        hit = np.flatnonzero(~miss)
        point = np.full((n_rays, 3), np.nan)
        point[hit] = origins[group[hit]] + t[hit, None] * dirs[hit]
        return Hits(t, obj, material, tri, point, normal, dirs)

    def _candidates(self, grid: RayGrid, times_s: np.ndarray, world_SE3_sensor: SE3,
                    max_range_m: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(object, flat ray index) pairs that may hit an object, or None."""
        n_obj = len(self.bound_radius_m)
        if n_obj == 0:
            return None
        g_count, m_count, _ = grid.dirs_sensor.shape
        cg, cm = grid.cell
        sample_g, sample_m = grid.sample_index
        gc = len(sample_g)
        # Largest time gap between a ray of a cell and the cell's sample ray.
        cell_of_group = np.minimum(np.arange(g_count) // cg, gc - 1)
        dt_max = float(np.max(np.abs(times_s - times_s[sample_g][cell_of_group]))) if g_count else 0.0
        t_sample = times_s[sample_g]
        sensor = world_SE3_sensor[sample_g]
        kk = np.repeat(np.arange(n_obj), gc)
        centre, _ = self.world.object_states(kk, np.tile(t_sample, n_obj))
        rel = centre.reshape(n_obj, gc, 3) - sensor.translation[None]
        c_sensor = np.einsum("gji,ngj->ngi", sensor.rotation, rel)  # R^T (c - o)
        dist = np.linalg.norm(c_sensor, axis=2)  # (N,Gc)
        radius = (self.bound_radius_m + (self.object_speed_bound + _EGO_SPEED_BOUND_MPS) * dt_max + 0.02)[:, None]
        alpha = np.arcsin(np.clip(radius / np.maximum(dist, 1e-9), 0.0, 1.0))  # (N,Gc)
        sample_dirs = grid.dirs_sensor[sample_g][:, sample_m]  # (Gc,Mc,3)
        cos_angle = np.einsum("gmi,ngi->ngm", sample_dirs, c_sensor) / np.maximum(dist, 1e-9)[:, :, None]
        limit = np.minimum(alpha[:, :, None] + grid.cell_radius_rad[None] + _YAW_RATE_BOUND_RPS * dt_max, np.pi)
        cand = (cos_angle >= np.cos(limit)) | (dist <= radius)[:, :, None]
        cand &= (dist - radius <= max_range_m)[:, :, None]
        k, cgi, cmi = np.nonzero(cand)
        if len(k) == 0:
            return None
        og, om = np.meshgrid(np.arange(cg), np.arange(cm), indexing="ij")
        g = (cgi * cg)[:, None] + og.reshape(1, -1)
        m = (cmi * cm)[:, None] + om.reshape(1, -1)
        inside = (g < g_count) & (m < m_count)
        k = np.broadcast_to(k[:, None], g.shape)[inside]
        return k, (g * m_count + m)[inside]
