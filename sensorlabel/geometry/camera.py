"""Camera models: pinhole with OpenCV radial-tangential distortion, and fisheye (OpenCV's Kannala-Brandt model).

Camera frame (OpenCV): x right, y down, z forward (optical axis). Pixel coordinates ``uv_px`` have their origin at
the centre of the top-left pixel, so the image covers [-0.5, width-0.5] x [-0.5, height-0.5].

Distortion formulas are OpenCV's (docs.opencv.org, "Camera Calibration and 3D Reconstruction" and the ``fisheye``
module). Undistortion, which has no closed form, is delegated to ``cv2.undistortPoints`` and
``cv2.fisheye.undistortPoints``.

A point projects only when it is in front of the camera (``z > near_m``), inside the domain where the distortion
polynomial is one-to-one, and inside the image. The radial-tangential polynomial folds back on itself far outside
the image; without the domain limit, points far off-axis would land inside the image (xtreme1 #292's symptom).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sensorlabel.errors import CalibrationError

NEAR_M = 0.1
# cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS: a good start for the Newton polish (the default stops after 5).
_UNDISTORT_CRITERIA = (3, 20, 1e-14)


def _check_intrinsics(fx: float, fy: float, cx: float, cy: float, width: int, height: int, dist: np.ndarray) -> None:
    values = {"fx_px": fx, "fy_px": fy, "cx_px": cx, "cy_px": cy}
    for name, value in values.items():
        if not np.isfinite(value):
            raise CalibrationError(f"camera intrinsics: {name} is not finite: {value}")
    if fx <= 0 or fy <= 0:
        raise CalibrationError(f"camera intrinsics: focal lengths must be positive, got fx_px={fx}, fy_px={fy}")
    if width <= 0 or height <= 0:
        raise CalibrationError(f"camera intrinsics: image size must be positive, got {width}x{height}")
    if not np.isfinite(dist).all():
        raise CalibrationError(f"camera distortion has non-finite coefficients: {dist.tolist()}")


#: The one-to-one sheet of the pinhole distortion map: the Jacobian determinant stays above this (a 0.25 slope
#: margin, squared), see ``PinholeCamera._on_sheet``.
SHEET_MIN_JACOBIAN_DET = 0.0625


def distortion_jacobian(x, y, k1, k2, p1, p2, k3):
    """Entries (j00, j01 = j10, j11) of the Jacobian of the OpenCV radial-tangential distortion map at normalised
    coordinates ``x, y`` (arrays or scalars). Plain arithmetic, so the compiled fusion kernels use it as it is
    (numba's on-disk cache does not notice an edit here: touch ``sensorlabel/fusion/kernels.py`` after one)."""
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    d_radial = k1 + r2 * (2 * k2 + 3 * k3 * r2)
    j00 = radial + 2 * x * x * d_radial + 2 * p1 * y + 6 * p2 * x
    j01 = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
    j11 = radial + 2 * y * y * d_radial + 6 * p1 * y + 2 * p2 * x
    return j00, j01, j11


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole camera with OpenCV radial-tangential distortion ``(k1, k2, p1, p2, k3)``.

    Attributes:
        fx_px, fy_px, cx_px, cy_px: intrinsics in pixels.
        width_px, height_px: image size.
        distortion: (5,) float64 ``k1, k2, p1, p2, k3`` (zeros for an ideal pinhole).

    Raises:
        CalibrationError: non-finite or non-positive intrinsics.
    """

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width_px: int
    height_px: int
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))
    model: str = field(default="pinhole", init=False)

    def __post_init__(self) -> None:
        dist = np.zeros(5)
        given = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        if len(given) > 5:
            raise CalibrationError(f"pinhole distortion: expected at most 5 coefficients, got {len(given)}")
        dist[: len(given)] = given
        object.__setattr__(self, "distortion", dist)
        _check_intrinsics(self.fx_px, self.fy_px, self.cx_px, self.cy_px, self.width_px, self.height_px, dist)
        object.__setattr__(self, "_r2_max", self._monotonic_r2_limit())

    @property
    def K(self) -> np.ndarray:
        """(3,3) intrinsic matrix."""
        return np.array([[self.fx_px, 0, self.cx_px], [0, self.fy_px, self.cy_px], [0, 0, 1.0]])

    @property
    def max_normalised_radius2(self) -> float:
        """Largest squared normalised radius ``(x/z)^2 + (y/z)^2`` that ``project`` accepts (the distortion model's
        one-to-one domain, see ``_monotonic_r2_limit``)."""
        return self._r2_max

    def _distort(self, xy: np.ndarray) -> np.ndarray:
        k1, k2, p1, p2, k3 = self.distortion
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return np.stack([xd, yd], axis=1)

    def _jacobian(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Entries (j00, j01 = j10, j11) of the Jacobian of the distortion map at normalised points (N,2)."""
        k1, k2, p1, p2, k3 = self.distortion
        return distortion_jacobian(xy[:, 0], xy[:, 1], k1, k2, p1, p2, k3)

    def _newton_undistort(self, xy: np.ndarray, xy_distorted: np.ndarray, iterations: int = 20) -> np.ndarray:
        """Polish undistorted normalised coordinates (N,2) by Newton's method on the analytic Jacobian.

        OpenCV's fixed-point iteration stalls for strong distortion near the edge of the one-to-one domain; a few
        Newton steps from its answer converge quadratically. Steps are damped (full, 1/2, 1/4, 1/8: the one with
        the smallest residual wins, and only if it improves). Points stop once their residual is below 1e-13.
        """
        xy = xy.copy()
        active = np.arange(len(xy))
        for _ in range(iterations):
            cur, target = xy[active], xy_distorted[active]
            residual = self._distort(cur) - target
            err = np.linalg.norm(residual, axis=1)
            moving = err > 1e-13
            active, cur, target = active[moving], cur[moving], target[moving]
            residual, err = residual[moving], err[moving]
            if len(active) == 0:
                break
            j00, j01, j11 = self._jacobian(cur)
            det = j00 * j11 - j01 * j01
            ok = np.abs(det) > 1e-12
            safe = np.where(ok, det, 1.0)
            step = np.stack([(j11 * residual[:, 0] - j01 * residual[:, 1]) / safe,
                             (j00 * residual[:, 1] - j01 * residual[:, 0]) / safe], axis=1)
            best, best_err = cur, err
            for fraction in (1.0, 0.5, 0.25, 0.125):
                candidate = np.where(ok[:, None], cur - fraction * step, cur)
                cand_err = np.linalg.norm(self._distort(candidate) - target, axis=1)
                better = cand_err < best_err
                best = np.where(better[:, None], candidate, best)
                best_err = np.where(better, cand_err, best_err)
            xy[active] = best
            active = active[best_err < err]  # a point that cannot improve is done
        return xy

    def _monotonic_r2_limit(self) -> float:
        """Largest squared normalised radius up to which the radial map r -> r(1 + k1 r^2 + ...) still grows,
        capped a little beyond the image corners."""
        corners = np.array(
            [[-0.5, -0.5], [self.width_px - 0.5, -0.5], [-0.5, self.height_px - 0.5],
             [self.width_px - 0.5, self.height_px - 0.5]]
        )
        xy = (corners - [self.cx_px, self.cy_px]) / [self.fx_px, self.fy_px]
        reach = float(np.max(np.sum(xy**2, axis=1)))  # distorted radius^2 of the farthest corner
        k1, _, _, _, k3 = self.distortion
        k2 = self.distortion[1]
        r = np.linspace(0, np.sqrt(reach) * 3 + 1e-6, 4000)
        r2 = r * r
        deriv = 1 + 3 * k1 * r2 + 5 * k2 * r2**2 + 7 * k3 * r2**3  # d/dr of r * radial(r)
        # Stop where the map flattens (slope 0.25), short of the fold: there undistortion is ill-conditioned.
        falling = np.flatnonzero(deriv <= 0.25)
        r_max = r[falling[0] - 1] if len(falling) else r[-1]
        return float(r_max**2)

    def _on_sheet(self, xy: np.ndarray) -> np.ndarray:
        """(N,) bool: normalised coordinates (N,2) on the distortion map's one-to-one sheet. Inside the radial limit
        the tangential terms can still fold the map; a Jacobian determinant well above zero keeps every point on
        the sheet (the same 0.25 slope margin, squared)."""
        j00, j01, j11 = self._jacobian(xy)
        return (np.sum(xy * xy, axis=1) <= self._r2_max) & (j00 * j11 - j01 * j01 > SHEET_MIN_JACOBIAN_DET)

    def project_unclipped(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points without the image-bounds test (e.g. box edges that leave the image).

        Args:
            points_cam: (N,3) points in the camera frame, metres.

        Returns:
            uv_px (N,2) float64 (meaningful only where in_domain, possibly outside the image) and in_domain (N,)
            bool: in front of the camera (z > 0.1 m) and within the distortion model's one-to-one domain.

        Raises:
            ValueError: points_cam is not (N,3).
        """
        p = np.asarray(points_cam, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points_cam: expected (N,3), got {p.shape}")
        z = p[:, 2]
        front = z > NEAR_M
        xy = p[:, :2] / np.where(front, z, 1.0)[:, None]
        uv = self._distort(xy) * [self.fx_px, self.fy_px] + [self.cx_px, self.cy_px]
        return uv, front & self._on_sheet(xy)

    def project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points.

        Args:
            points_cam: (N,3) points in the camera frame, metres.

        Returns:
            uv_px (N,2) float64 (meaningful only where valid) and valid (N,) bool: in front of the camera
            (z > 0.1 m), within the distortion model's one-to-one domain and inside the image.

        Raises:
            ValueError: points_cam is not (N,3).
        """
        uv, in_domain = self.project_unclipped(points_cam)
        return uv, in_domain & self.in_image(uv)

    def in_image(self, uv_px: np.ndarray) -> np.ndarray:
        """(N,) bool: pixel coordinates inside the image bounds."""
        return (
            (uv_px[:, 0] >= -0.5) & (uv_px[:, 0] <= self.width_px - 0.5)
            & (uv_px[:, 1] >= -0.5) & (uv_px[:, 1] <= self.height_px - 0.5)
        )

    def unproject(self, uv_px: np.ndarray) -> np.ndarray:
        """Unit viewing rays of pixels.

        Args:
            uv_px: (N,2) pixel coordinates.

        Returns:
            (N,3) unit vectors in the camera frame (z > 0); a point at range r along ray i is ``r * rays[i]``.
        """
        import cv2

        uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 1, 2)
        if len(uv) == 0:
            return np.zeros((0, 3))
        xy_cv = cv2.undistortPoints(uv, self.K, self.distortion, criteria=_UNDISTORT_CRITERIA).reshape(-1, 2)
        xy_d = (uv.reshape(-1, 2) - [self.cx_px, self.cy_px]) / [self.fx_px, self.fy_px]
        # Far out the map has a second preimage beyond the fold. Newton polishes OpenCV's answer; only pixels whose
        # root is off the one-to-one sheet or not converged try two more starts well inside, keeping the best root.
        def cost(root: np.ndarray, target: np.ndarray) -> np.ndarray:
            return np.linalg.norm(self._distort(root) - target, axis=1) + np.where(self._on_sheet(root), 0.0, 1.0)

        xy = self._newton_undistort(xy_cv, xy_d)
        best = cost(xy, xy_d)
        retry = np.flatnonzero(best > 1e-9)
        if len(retry):
            target = xy_d[retry]
            scale = np.minimum(1.0, 0.9 * np.sqrt(self._r2_max / np.maximum(np.sum(target**2, axis=1), 1e-300)))
            for start in (target * scale[:, None], 0.5 * target):
                root = self._newton_undistort(start, target)
                c = cost(root, target)
                take = c < best[retry]
                xy[retry[take]] = root[take]
                best[retry[take]] = c[take]
        rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)

    def in_fov(self, points_cam: np.ndarray) -> np.ndarray:
        """(N,) bool: the points project into the image (same rule as :meth:`project`)."""
        return self.project(points_cam)[1]


@dataclass(frozen=True)
class FisheyeCamera:
    """Fisheye camera, OpenCV ``cv2.fisheye`` (Kannala-Brandt) model with coefficients ``k1..k4``.

    ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)`` with theta the angle from the
    optical axis. Points need z > 0.1 m (in front of the image plane) and theta <= ``max_theta_rad`` to project;
    ``max_theta_rad`` is lowered to where theta_d(theta) flattens (slope 0.25) when that comes first.

    Raises:
        CalibrationError: non-finite or non-positive intrinsics.
    """

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width_px: int
    height_px: int
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(4))
    max_theta_rad: float = np.deg2rad(89.0)
    model: str = field(default="fisheye", init=False)

    def __post_init__(self) -> None:
        dist = np.zeros(4)
        given = np.asarray(self.distortion, dtype=np.float64).reshape(-1)
        if len(given) > 4:
            raise CalibrationError(f"fisheye distortion: expected at most 4 coefficients, got {len(given)}")
        dist[: len(given)] = given
        object.__setattr__(self, "distortion", dist)
        _check_intrinsics(self.fx_px, self.fy_px, self.cx_px, self.cy_px, self.width_px, self.height_px, dist)
        theta = np.linspace(0, self.max_theta_rad, 2000)
        k1, k2, k3, k4 = dist
        deriv = 1 + 3 * k1 * theta**2 + 5 * k2 * theta**4 + 7 * k3 * theta**6 + 9 * k4 * theta**8
        # As for the pinhole: stop where the map flattens (slope 0.25), short of the fold, where a pixel no longer
        # pins down its ray.
        if (deriv <= 0.25).any():
            object.__setattr__(self, "max_theta_rad", float(theta[np.flatnonzero(deriv <= 0.25)[0] - 1]))
        # Where theta -> theta_d stays increasing (up to pi): unproject solves for theta inside this bracket.
        theta = np.linspace(0, np.pi, 4000)
        deriv = 1 + 3 * k1 * theta**2 + 5 * k2 * theta**4 + 7 * k3 * theta**6 + 9 * k4 * theta**8
        falling = np.flatnonzero(deriv <= 0)
        object.__setattr__(self, "_theta_monotonic_rad", float(theta[falling[0] - 1] if len(falling) else np.pi))

    @property
    def K(self) -> np.ndarray:
        """(3,3) intrinsic matrix."""
        return np.array([[self.fx_px, 0, self.cx_px], [0, self.fy_px, self.cy_px], [0, 0, 1.0]])

    def project_unclipped(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points (N,3) without the image-bounds test, as PinholeCamera.project_unclipped:
        in_domain is in front (z > 0.1 m) and within ``max_theta_rad`` of the axis."""
        p = np.asarray(points_cam, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points_cam: expected (N,3), got {p.shape}")
        r = np.hypot(p[:, 0], p[:, 1])
        theta = np.arctan2(r, p[:, 2])
        k1, k2, k3, k4 = self.distortion
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.where(r > 1e-12, theta_d / np.where(r > 1e-12, r, 1.0), 1.0 / np.maximum(p[:, 2], 1e-12))
        xy = p[:, :2] * scale[:, None]
        uv = xy * [self.fx_px, self.fy_px] + [self.cx_px, self.cy_px]
        return uv, (p[:, 2] > NEAR_M) & (theta <= self.max_theta_rad)

    def project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project camera-frame points (N,3); returns uv_px (N,2) and valid (N,) as PinholeCamera.project."""
        uv, in_domain = self.project_unclipped(points_cam)
        return uv, in_domain & self.in_image(uv)

    def in_image(self, uv_px: np.ndarray) -> np.ndarray:
        """(N,) bool: pixel coordinates inside the image bounds."""
        return (
            (uv_px[:, 0] >= -0.5) & (uv_px[:, 0] <= self.width_px - 0.5)
            & (uv_px[:, 1] >= -0.5) & (uv_px[:, 1] <= self.height_px - 0.5)
        )

    def unproject(self, uv_px: np.ndarray) -> np.ndarray:
        """(N,2) pixels -> (N,3) unit rays in the camera frame (see PinholeCamera.unproject).

        theta is recovered from theta_d by Newton's method on the 1-D polynomial, safeguarded by bisection inside
        the bracket where the polynomial increases (plain Newton can jump to a second root past the fold of the
        polynomial and return a ray far from the pixel's). Working with theta rather than tan(theta) keeps rays
        near 90 degrees accurate. Pixels beyond the fold get the ray at the fold's angle.
        """
        uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
        xy_d = (uv - [self.cx_px, self.cy_px]) / [self.fx_px, self.fy_px]
        theta_d = np.hypot(xy_d[:, 0], xy_d[:, 1])
        k1, k2, k3, k4 = self.distortion
        low = np.zeros_like(theta_d)
        high = np.full_like(theta_d, self._theta_monotonic_rad)
        theta = np.minimum(theta_d, high)
        residual_before = np.full_like(theta_d, np.inf)
        for _ in range(60):
            t2 = theta * theta
            f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
            df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
            low = np.where(f <= 0, theta, low)
            high = np.where(f >= 0, theta, high)
            # Newton unless it leaves the bracket or the last step did not halve the residual (it can cycle).
            stalled = np.abs(f) > 0.5 * residual_before
            residual_before = np.abs(f)
            with np.errstate(divide="ignore", invalid="ignore"):
                step = theta - f / df
            newton = (df > 0) & (step >= low) & (step <= high) & ~stalled
            theta, before = np.where(newton, step, 0.5 * (low + high)), theta
            if np.all(np.abs(theta - before) <= 1e-15):
                break
        with np.errstate(invalid="ignore", divide="ignore"):
            direction = np.where(theta_d[:, None] > 1e-15, xy_d / np.where(theta_d > 1e-15, theta_d, 1.0)[:, None], 0.0)
        return np.concatenate([direction * np.sin(theta)[:, None], np.cos(theta)[:, None]], axis=1)

    def in_fov(self, points_cam: np.ndarray) -> np.ndarray:
        """(N,) bool: the points project into the image."""
        return self.project(points_cam)[1]


CameraModel = PinholeCamera | FisheyeCamera
