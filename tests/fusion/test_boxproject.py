"""The enclosing 2D box of projected boxes against shapely's hull-and-clip on every box."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from sensorlabel.fusion import project_boxes
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3
from tests.fusion.test_projection import FISHEYE, PINHOLE

CAM_SE3_EGO = SE3(np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]]), np.zeros(3))


@pytest.mark.parametrize("camera", [PINHOLE, FISHEYE])
def test_enclosing_box_equals_the_clipped_hull_of_the_edges(camera) -> None:
    rng = np.random.default_rng(3)
    n = 400  # boxes inside, across the border, beside and behind the camera
    boxes = Boxes.from_yaw(rng.uniform([-10, -30, -3], [60, 30, 3], (n, 3)), rng.uniform(0.5, 6, (n, 3)),
                           rng.uniform(-np.pi, np.pi, n))
    proj = project_boxes(boxes, CAM_SE3_EGO, camera, samples_per_edge=8)
    image = shapely.box(0.0, 0.0, camera.width_px - 1.0, camera.height_px - 1.0)
    kinds = set()
    for i in range(n):
        samples = proj.edges_uv_px[i].reshape(-1, 2)
        samples = samples[np.isfinite(samples).all(axis=1)]
        clipped = shapely.MultiPoint(samples).convex_hull.intersection(image) if len(samples) else None
        if clipped is None or clipped.is_empty:
            assert np.isnan(proj.box2d_px[i]).all() and not proj.in_image[i]
            kinds.add("out")
        else:
            np.testing.assert_allclose(proj.box2d_px[i], clipped.bounds, atol=1e-9)
            kinds.add("crossing" if (samples < 0).any() or (samples[:, 0] > camera.width_px - 1).any()
                      or (samples[:, 1] > camera.height_px - 1).any() else "inside")
    assert kinds == {"out", "crossing", "inside"}
