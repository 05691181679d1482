"""Camera models: project/unproject round trips, nothing behind the camera, no folding, bad intrinsics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorlabel.errors import CalibrationError
from sensorlabel.geometry.camera import FisheyeCamera, PinholeCamera

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
PROPERTY = settings(max_examples=30, deadline=None)

# Strong barrel distortion with tangential terms (a 94-degree automotive lens), and a 165-degree fisheye.
STRONG_PINHOLE = PinholeCamera(1266.0, 1278.0, 955.0, 545.0, 1920, 1080, distortion=(-0.3, 0.09, 0.0015, -0.001, -0.01))
FISHEYE = FisheyeCamera(560.0, 561.0, 640.0, 482.0, 1280, 960, distortion=(0.08, -0.02, 0.004, -0.0008))
CAMERAS = [PinholeCamera(800.0, 800.0, 640.0, 360.0, 1280, 720), STRONG_PINHOLE, FISHEYE]


def random_pinhole(rng: np.random.Generator) -> PinholeCamera:
    k1, k2, k3 = rng.uniform(-0.5, 0.3), rng.uniform(-0.2, 0.2), rng.uniform(-0.05, 0.05)
    p1, p2 = rng.uniform(-0.01, 0.01, 2)
    width, height = int(rng.integers(320, 2000)), int(rng.integers(240, 1500))
    f = rng.uniform(0.4, 1.5) * width
    return PinholeCamera(f, f * rng.uniform(0.98, 1.02), width / 2 + rng.uniform(-20, 20),
                         height / 2 + rng.uniform(-20, 20), width, height, distortion=(k1, k2, p1, p2, k3))


def random_fisheye(rng: np.random.Generator) -> FisheyeCamera:
    width, height = int(rng.integers(320, 2000)), int(rng.integers(240, 1500))
    f = rng.uniform(0.2, 0.5) * width
    return FisheyeCamera(f, f, width / 2, height / 2, width, height,
                         distortion=(rng.uniform(-0.1, 0.1), rng.uniform(-0.05, 0.05), rng.uniform(-0.01, 0.01),
                                     rng.uniform(-0.002, 0.002)))


def angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=1), np.sum(u * v, axis=1)))


def points_in_view(rng: np.random.Generator, camera, n: int) -> np.ndarray:
    """Points at 0.5-80 m along the rays of random pixels of the image."""
    uv = rng.uniform([-0.5, -0.5], [camera.width_px - 0.5, camera.height_px - 0.5], (n, 2))
    return camera.unproject(uv) * rng.uniform(0.5, 80, (n, 1))


@pytest.mark.parametrize("camera", CAMERAS, ids=["ideal", "strong_radtan", "fisheye"])
def test_project_unproject_round_trip(camera):
    rng = np.random.default_rng(0)
    uv = rng.uniform([-0.5, -0.5], [camera.width_px - 0.5, camera.height_px - 0.5], (5000, 2))
    # The image corners (a hair inside, the bounds are closed and round trips end 1e-13 px off) and the centre.
    inset = 1e-6
    corners = [[-0.5 + inset, -0.5 + inset], [camera.width_px - 0.5 - inset, camera.height_px - 0.5 - inset],
               [-0.5 + inset, camera.height_px - 0.5 - inset], [camera.width_px - 0.5 - inset, -0.5 + inset]]
    uv = np.concatenate([uv, corners, [[camera.cx_px, camera.cy_px]]])
    rays = camera.unproject(uv)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    assert (rays[:, 2] > 0).all()
    points = rays * rng.uniform(0.5, 200, (len(rays), 1))
    uv_back, valid = camera.project(points)
    assert valid.all()
    np.testing.assert_allclose(uv_back, uv, atol=1e-6)
    # And the other way: points -> pixels -> rays along the points.
    uv_p, valid_p = camera.project(points)
    np.testing.assert_allclose(angle_deg(camera.unproject(uv_p[valid_p]), points[valid_p]), 0.0, atol=1e-6)
    np.testing.assert_array_equal(camera.in_fov(points), valid)


@PROPERTY
@given(SEEDS)
def test_round_trip_random_cameras(seed):
    rng = np.random.default_rng(seed)
    for camera in (random_pinhole(rng), random_fisheye(rng)):
        points = rng.normal(0, 1, (2000, 3)) * [20, 10, 30]
        uv, valid = camera.project(points)
        if valid.any():
            assert angle_deg(camera.unproject(uv[valid]), points[valid]).max() < 1e-5
        assert camera.in_image(uv[valid]).all()


@PROPERTY
@given(SEEDS)
def test_points_behind_the_camera_never_project(seed):
    rng = np.random.default_rng(seed)
    xy = rng.normal(0, 1, (3000, 2)) * rng.choice([1e-3, 1, 100], (3000, 1))
    z = -np.abs(rng.normal(0, 1, 3000)) * rng.choice([0.0, 1e-9, 1, 100], 3000)  # z <= 0, including -0 and 0
    points = np.c_[xy, z]
    points = np.concatenate([points, [[0.0, 0.0, 0.0], [0, 0, -1.0], [1e-9, 0, 0], [0, 0, -1e-12]]])
    for camera in (random_pinhole(rng), random_fisheye(rng), *CAMERAS):
        uv, valid = camera.project(points)
        assert not valid.any()
        assert not camera.in_fov(points).any()


@PROPERTY
@given(SEEDS)
def test_far_off_axis_points_never_fold_into_the_image(seed):
    """Beyond the fold of the distortion polynomial, a point must not land in the image: any point that projects
    must be on the ray of its pixel."""
    rng = np.random.default_rng(seed)
    direction = rng.uniform(-1, 1, (20000, 2))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    tan_off_axis = np.exp(rng.uniform(np.log(0.05), np.log(1e4), 20000))  # up to ~90 degrees off the axis
    points = np.c_[direction * tan_off_axis[:, None], np.ones(20000)] * rng.uniform(0.5, 50, (20000, 1))
    for camera in (random_pinhole(rng), random_fisheye(rng), STRONG_PINHOLE, FISHEYE):
        uv, valid = camera.project(points)
        if valid.any():
            assert angle_deg(camera.unproject(uv[valid]), points[valid]).max() < 1e-4


def test_strong_barrel_distortion_folds_without_the_domain_limit():
    """The guarded case is real: with this lens points far off axis land inside the image through the bare
    polynomial, but project() rejects them."""
    camera = STRONG_PINHOLE
    off_axis = np.radians(np.linspace(50.0, 89.9, 2000))
    points = np.c_[np.tan(off_axis), np.zeros(2000), np.ones(2000)]
    bare_uv = camera._distort(points[:, :2]) * [camera.fx_px, camera.fy_px] + [camera.cx_px, camera.cy_px]
    folded = camera.in_image(bare_uv) & (np.degrees(off_axis) > 55)  # the image edge is 47 degrees off axis
    assert folded.sum() > 10
    assert not camera.project(points[folded])[1].any()


def test_known_projection_and_K():
    camera = PinholeCamera(800.0, 600.0, 640.0, 360.0, 1280, 720)
    uv, valid = camera.project(np.array([[1.0, -0.5, 4.0], [0.0, 0.0, 0.05]]))
    np.testing.assert_allclose(uv[0], [640 + 200, 360 - 75])
    assert valid.tolist() == [True, False]  # the second is nearer than 0.1 m
    np.testing.assert_array_equal(camera.K, [[800, 0, 640], [0, 600, 360], [0, 0, 1]])
    assert camera.model == "pinhole" and FISHEYE.model == "fisheye"
    # The fisheye maps the angle from the axis linearly when undistorted: theta * f from the centre.
    plain = FisheyeCamera(300.0, 300.0, 500.0, 500.0, 1000, 1000)
    uv_f, valid_f = plain.project(np.array([[1.0, 0.0, 1.0]]))
    np.testing.assert_allclose(uv_f, [[500 + 300 * np.pi / 4, 500]])
    assert valid_f.all()


def test_image_bounds():
    camera = PinholeCamera(100.0, 100.0, 49.5, 39.5, 100, 80)
    uv = np.array([[-0.5, -0.5], [99.5, 79.5], [-0.51, 0], [0, 79.51]])
    assert camera.in_image(uv).tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PinholeCamera(0.0, 800.0, 640.0, 360.0, 1280, 720), "fx_px=0.0"),
        (lambda: PinholeCamera(800.0, -1.0, 640.0, 360.0, 1280, 720), "fy_px=-1.0"),
        (lambda: PinholeCamera(800.0, 800.0, np.nan, 360.0, 1280, 720), "cx_px is not finite: nan"),
        (lambda: PinholeCamera(np.inf, 800.0, 640.0, 360.0, 1280, 720), "fx_px is not finite: inf"),
        (lambda: PinholeCamera(800.0, 800.0, 640.0, 360.0, 0, 720), "0x720"),
        (lambda: PinholeCamera(800.0, 800.0, 640.0, 360.0, 1280, 720, distortion=(0.1, np.nan)), "nan"),
        (lambda: PinholeCamera(800.0, 800.0, 640.0, 360.0, 1280, 720, distortion=np.zeros(8)), "got 8"),
        (lambda: FisheyeCamera(800.0, 800.0, 640.0, np.inf, 1280, 720), "cy_px is not finite: inf"),
        (lambda: FisheyeCamera(800.0, 800.0, 640.0, 360.0, 1280, -2), "1280x-2"),
        (lambda: FisheyeCamera(800.0, 800.0, 640.0, 360.0, 1280, 720, distortion=np.zeros(5)), "got 5"),
        (lambda: FisheyeCamera(800.0, 800.0, 640.0, 360.0, 1280, 720, distortion=(np.inf, 0, 0, 0)), "inf"),
    ],
)
def test_invalid_intrinsics_raise_calibration_error(make, message):
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(")):
        make()


def test_wrong_point_shapes():
    for camera in CAMERAS:
        with pytest.raises(ValueError, match=r"\(4, 2\)"):
            camera.project(np.zeros((4, 2)))
