"""Projection without the image-bounds test: the domain rule of ``project`` alone (used for box edges)."""

from __future__ import annotations

import numpy as np
import pytest

from sensorlabel.geometry.camera import SHEET_MIN_JACOBIAN_DET, FisheyeCamera, PinholeCamera

# Strong tangential terms: the map folds inside the radial limit, so the Jacobian rule matters.
FOLDING = PinholeCamera(500.0, 500.0, 640.0, 360.0, 1280, 720, [-0.05, 0.0, 0.08, -0.06, 0.0])
FISHEYE = FisheyeCamera(300.0, 300.0, 640.0, 400.0, 1280, 800, [0.05, -0.01, 0.002, 0.0])


@pytest.mark.parametrize("camera", [FOLDING, FISHEYE])
def test_unclipped_projection_is_project_without_the_image_bounds(camera) -> None:
    pts = np.random.default_rng(3).uniform([-60, -40, -5], [60, 40, 20], size=(100000, 3))
    uv, in_domain = camera.project_unclipped(pts)
    uv_ref, valid = camera.project(pts)
    np.testing.assert_array_equal(uv, uv_ref)
    np.testing.assert_array_equal(valid, in_domain & camera.in_image(uv))
    outside = in_domain & ~camera.in_image(uv)
    assert outside.sum() > 100  # in the model's domain but off the image: kept here, dropped by project
    assert not in_domain[pts[:, 2] <= 0.1].any()


def test_points_past_the_fold_are_out_of_domain() -> None:
    pts = np.random.default_rng(4).uniform([-60, -40, 0.2], [60, 40, 20], size=(200000, 3))
    xy = pts[:, :2] / pts[:, 2:3]
    j00, j01, j11 = FOLDING._jacobian(xy)
    folded = (np.sum(xy * xy, axis=1) <= FOLDING.max_normalised_radius2) \
        & (j00 * j11 - j01 * j01 <= SHEET_MIN_JACOBIAN_DET)
    _, in_domain = FOLDING.project_unclipped(pts)
    assert folded.sum() > 100 and not in_domain[folded].any()
