"""Rigid transforms in 3D, vectorised over a leading batch axis.

Naming follows av2-api: a transform is ``target_SE3_source`` and maps points from ``source`` into ``target``.
Composition reads right to left: ``cam_SE3_lidar = cam_SE3_ego.compose(ego_SE3_lidar)``.

An :class:`SE3` is either a single transform (``rotation (3,3)``, ``translation (3,)``) or a batch of N
transforms (``rotation (N,3,3)``, ``translation (N,3)``). Batched operations broadcast like numpy: a single
transform composes with a batch, and a batch of N composes element-wise with another batch of N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from sensorlabel.errors import InvalidTransformError

_ORTHONORMAL_TOL = 1e-5


def first_non_increasing(values) -> int | None:
    """Index of the first element that is not strictly greater than the one before it, or None.

    Args:
        values: (N,) numbers, e.g. timestamps in ns (compared in their own dtype, so int64 ns stay exact).

    Returns:
        i >= 1 with ``values[i] <= values[i - 1]`` for the smallest such i; None when the values increase strictly
        (always for N <= 1).
    """
    bad = np.flatnonzero(np.diff(np.asarray(values)) <= 0)
    return int(bad[0]) + 1 if bad.size else None


def _check_rotation(rotation: np.ndarray) -> None:
    """Raise InvalidTransformError naming the first bad rotation (NaN, not orthonormal, or a reflection)."""
    flat = rotation.reshape(-1, 3, 3)
    finite = np.isfinite(flat).all(axis=(1, 2))
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidTransformError(f"rotation[{i}] has non-finite entries: {flat[i].tolist()}")
    gram = np.einsum("nji,njk->nik", flat, flat)
    err = np.abs(gram - np.eye(3)).max(axis=(1, 2))
    bad = err > _ORTHONORMAL_TOL
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidTransformError(
            f"rotation[{i}] is not orthonormal (max |R^T R - I| = {err[i]:.3g}): {flat[i].tolist()}"
        )
    det = np.linalg.det(flat)
    if (det < 0).any():
        i = int(np.flatnonzero(det < 0)[0])
        raise InvalidTransformError(f"rotation[{i}] is a reflection (det = {det[i]:.3g}): {flat[i].tolist()}")


@dataclass(frozen=True, eq=False)
class SE3:
    """A rigid transform ``target_SE3_source`` (or a batch of them).

    Attributes:
        rotation: (3,3) or (N,3,3) float64, ``target_R_source``; orthonormal with det +1.
        translation: (3,) or (N,3) float64 in metres, the source origin expressed in the target frame.

    Raises:
        ValueError: on shapes that do not match.
        InvalidTransformError: on NaN/inf entries or a rotation that is not a proper rotation (tolerance 1e-5).
    """

    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        rotation = np.asarray(self.rotation, dtype=np.float64)
        translation = np.asarray(self.translation, dtype=np.float64)
        if rotation.ndim not in (2, 3) or rotation.shape[-2:] != (3, 3):
            raise ValueError(f"rotation: expected (3,3) or (N,3,3), got {rotation.shape}")
        if translation.shape != rotation.shape[:-2] + (3,):
            raise ValueError(f"translation: expected {rotation.shape[:-2] + (3,)}, got {translation.shape}")
        _check_rotation(rotation)
        if not np.isfinite(translation).all():
            bad = np.argwhere(~np.isfinite(translation.reshape(-1, 3)).all(axis=1))[0, 0]
            raise InvalidTransformError(
                f"translation[{bad}] has non-finite entries: {translation.reshape(-1, 3)[bad].tolist()}"
            )
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "translation", translation)

    @classmethod
    def _trusted(cls, rotation: np.ndarray, translation: np.ndarray) -> SE3:
        """Build without validation, for results of operations on already valid transforms."""
        out = object.__new__(cls)
        object.__setattr__(out, "rotation", rotation)
        object.__setattr__(out, "translation", translation)
        return out

    # ----- construction -----------------------------------------------------------------------------------------
    @classmethod
    def identity(cls, n: int | None = None) -> SE3:
        """The identity, single (n=None) or a batch of n."""
        if n is None:
            return cls._trusted(np.eye(3), np.zeros(3))
        return cls._trusted(np.broadcast_to(np.eye(3), (n, 3, 3)).copy(), np.zeros((n, 3)))

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> SE3:
        """From homogeneous (4,4) or (N,4,4) matrices. The last row must be [0,0,0,1].

        Raises:
            ValueError: wrong shape. InvalidTransformError: bad rotation, NaN, or a bad last row.
        """
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim not in (2, 3) or m.shape[-2:] != (4, 4):
            raise ValueError(f"matrix: expected (4,4) or (N,4,4), got {m.shape}")
        last = m[..., 3, :].reshape(-1, 4)
        if not np.allclose(last, [0.0, 0.0, 0.0, 1.0], atol=1e-9):
            raise InvalidTransformError(f"last row of the homogeneous matrix is not [0,0,0,1]: {last[0].tolist()}")
        return cls(m[..., :3, :3], m[..., :3, 3])

    @classmethod
    def from_quat_wxyz(cls, quat_wxyz: np.ndarray, translation: np.ndarray) -> SE3:
        """From unit quaternions (w, x, y, z), shape (4,) or (N,4), and translations (3,) or (N,3).

        Quaternions are normalised; a zero or non-finite quaternion raises InvalidTransformError.
        """
        q = np.asarray(quat_wxyz, dtype=np.float64)
        if q.shape[-1:] != (4,) or q.ndim not in (1, 2):
            raise ValueError(f"quat_wxyz: expected (4,) or (N,4), got {q.shape}")
        norm = np.linalg.norm(q, axis=-1)
        if not np.all(np.isfinite(norm)) or np.any(norm < 1e-9):
            raise InvalidTransformError(f"quat_wxyz is zero or non-finite: {q.reshape(-1, 4)[0].tolist()}")
        rot = Rotation.from_quat(q[..., [1, 2, 3, 0]]).as_matrix()
        return cls(rot, translation)

    @classmethod
    def from_yaw(cls, yaw_rad: np.ndarray | float, translation: np.ndarray) -> SE3:
        """A rotation about +z by ``yaw_rad`` (scalar or (N,)) followed by ``translation`` ((3,) or (N,3))."""
        yaw = np.asarray(yaw_rad, dtype=np.float64)
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.zeros(yaw.shape + (3, 3))
        rot[..., 0, 0], rot[..., 0, 1] = c, -s
        rot[..., 1, 0], rot[..., 1, 1] = s, c
        rot[..., 2, 2] = 1.0
        return cls(rot, translation)

    # ----- conversion -------------------------------------------------------------------------------------------
    def as_matrix(self) -> np.ndarray:
        """Homogeneous matrices, (4,4) or (N,4,4)."""
        m = np.zeros(self.rotation.shape[:-2] + (4, 4))
        m[..., :3, :3] = self.rotation
        m[..., :3, 3] = self.translation
        m[..., 3, 3] = 1.0
        return m

    def as_quat_wxyz(self) -> np.ndarray:
        """Unit quaternions (w, x, y, z) with w >= 0, shape (4,) or (N,4)."""
        q = Rotation.from_matrix(self.rotation).as_quat()[..., [3, 0, 1, 2]]
        return np.where(q[..., :1] < 0, -q, q)

    def yaw_rad(self) -> np.ndarray:
        """Heading about +z in (-pi, pi]: the angle of the rotated x axis in the xy plane. Scalar array or (N,)."""
        return np.arctan2(self.rotation[..., 1, 0], self.rotation[..., 0, 0])

    # ----- algebra ----------------------------------------------------------------------------------------------
    @property
    def is_batch(self) -> bool:
        return self.rotation.ndim == 3

    def __len__(self) -> int:
        if not self.is_batch:
            raise TypeError("a single SE3 has no length")
        return self.rotation.shape[0]

    def __getitem__(self, index) -> SE3:
        """Index or mask a batch; an integer index gives a single transform."""
        if not self.is_batch:
            raise TypeError("a single SE3 cannot be indexed")
        return SE3._trusted(self.rotation[index], self.translation[index])

    def compose(self, other: SE3) -> SE3:
        """``self ∘ other``: with ``self = a_SE3_b`` and ``other = b_SE3_c`` returns ``a_SE3_c``."""
        rotation = self.rotation @ other.rotation
        translation = np.einsum("...ij,...j->...i", self.rotation, other.translation) + self.translation
        return SE3._trusted(rotation, translation)

    def inverse(self) -> SE3:
        """``b_SE3_a`` from ``a_SE3_b``."""
        rot_t = np.swapaxes(self.rotation, -1, -2)
        return SE3._trusted(rot_t, -np.einsum("...ij,...j->...i", rot_t, self.translation))

    def transform_points(self, points_source: np.ndarray) -> np.ndarray:
        """Map points from the source frame into the target frame.

        Args:
            points_source: (P,3) for a single transform. For a batch of N: (N,3), one point per transform
                (per-point poses, used for motion compensation), or (N,P,3).

        Returns:
            float64 array of the input's shape, in the target frame.
        """
        p = np.asarray(points_source, dtype=np.float64)
        if p.shape[-1:] != (3,):
            raise ValueError(f"points: expected (...,3), got {p.shape}")
        if not self.is_batch:
            return p @ self.rotation.T + self.translation
        n = self.rotation.shape[0]
        if p.ndim == 2 and p.shape[0] == n:
            return np.einsum("nij,nj->ni", self.rotation, p) + self.translation
        if p.ndim == 3 and p.shape[0] == n:
            return np.einsum("nij,npj->npi", self.rotation, p) + self.translation[:, None, :]
        raise ValueError(f"points: expected ({n},3) or ({n},P,3) for a batch of {n} transforms, got {p.shape}")

    def allclose(self, other: SE3, atol: float = 1e-9) -> bool:
        """True when rotations and translations agree to ``atol``."""
        return bool(
            np.allclose(self.rotation, other.rotation, atol=atol)
            and np.allclose(self.translation, other.translation, atol=atol)
        )

    @staticmethod
    def stack(transforms: list[SE3]) -> SE3:
        """Stack single transforms into a batch of len(transforms)."""
        if not transforms:
            return SE3._trusted(np.zeros((0, 3, 3)), np.zeros((0, 3)))
        return SE3._trusted(
            np.stack([t.rotation for t in transforms]), np.stack([t.translation for t in transforms])
        )


def interpolate_poses(
    timestamps_ns: np.ndarray,
    poses: SE3,
    query_ns: np.ndarray,
    *,
    extrapolate: bool = False,
) -> SE3:
    """Interpolate timed poses: rotation by slerp (geodesic on SO(3)), translation linearly.

    Args:
        timestamps_ns: (T,) int64, strictly increasing.
        poses: batch of T transforms, e.g. ``world_SE3_ego`` at those times.
        query_ns: (Q,) int64 (or a scalar) times to evaluate.
        extrapolate: outside [t_0, t_{T-1}] continue the first/last segment at constant velocity.
            When False, times outside the range raise ValueError.

    Returns:
        SE3 batch of Q transforms (a single SE3 for a scalar query).

    Raises:
        ValueError: fewer than one pose, unsorted timestamps, or a query outside the range without extrapolate.
    """
    t = np.asarray(timestamps_ns, dtype=np.int64)
    q = np.asarray(query_ns, dtype=np.int64)
    scalar = q.ndim == 0
    q = q.reshape(-1)
    if t.ndim != 1 or len(t) == 0 or len(t) != len(poses):
        raise ValueError(f"timestamps_ns: expected (T,) with T = len(poses) >= 1, got {t.shape}")
    i = first_non_increasing(t)
    if i is not None:
        raise ValueError(f"timestamps_ns must increase strictly; index {i} has {t[i]} after {t[i - 1]}")
    if not extrapolate and len(q) and (q.min() < t[0] or q.max() > t[-1]):
        raise ValueError(f"query time outside the pose range [{t[0]}, {t[-1]}] ns: [{q.min()}, {q.max()}] ns")
    if len(t) == 1:
        out = SE3._trusted(np.repeat(poses.rotation, len(q), 0), np.repeat(poses.translation, len(q), 0))
        return out[0] if scalar else out
    seg = np.clip(np.searchsorted(t, q, side="right") - 1, 0, len(t) - 2)
    t0, t1 = t[seg], t[seg + 1]
    # Differences in int64 before the float division keep nanosecond precision on epoch timestamps.
    alpha = (q - t0).astype(np.float64) / (t1 - t0).astype(np.float64)
    r0 = poses.rotation[seg]
    r1 = poses.rotation[seg + 1]
    delta = Rotation.from_matrix(np.swapaxes(r0, -1, -2) @ r1).as_rotvec()
    rotation = r0 @ Rotation.from_rotvec(delta * alpha[:, None]).as_matrix()
    translation = poses.translation[seg] + alpha[:, None] * (poses.translation[seg + 1] - poses.translation[seg])
    out = SE3._trusted(rotation, translation)
    return out[0] if scalar else out
