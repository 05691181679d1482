"""The frame-preparation layer without Qt (model/render.py) and the session's cache and prefetch thread."""

from __future__ import annotations

import numpy as np
import pytest
from sensorlabel.viewer.model import render
from sensorlabel.viewer.model.palette import depth_colors
from sensorlabel.viewer.model.session import Session

from sensorlabel.drive import Drive
from sensorlabel.fusion import project_boxes
from sensorlabel.geometry.boxes import Boxes


def test_bev_raster_shows_the_highest_point_of_each_cell():
    points = np.array([[1.0, 2.0, 0.5], [1.04, 2.05, 1.5], [1.02, 2.01, -1.0],  # one cell, three heights
                       [-10.0, 5.0, 0.0], [80.0, 0.0, 9.0], [-75.1, 0.0, 9.0]], np.float32)  # 2 outside
    rgb32 = render.pack_rgb32(np.array([[10, 0, 0], [20, 0, 0], [30, 0, 0], [0, 40, 0], [0, 0, 50], [0, 0, 60]]))
    image = render.rasterize_bev(points, rgb32)
    n = round(2 * render.RASTER_HALF_M / render.RASTER_RES_M)
    assert image.shape == (n, n) and image.dtype == np.uint32

    def cell(x, y):
        return image[int((y + render.RASTER_HALF_M) / render.RASTER_RES_M),
                     int((x + render.RASTER_HALF_M) / render.RASTER_RES_M)]

    assert cell(1.0, 2.0) == rgb32[1]  # the highest of three
    assert cell(-10.0, 5.0) == rgb32[3]
    background = render.pack_rgb32(np.array([render.BACKGROUND_RGB]))[0]
    assert (image != background).sum() == 2  # the two points outside the raster are dropped
    assert (render.rasterize_bev(points[:0], rgb32[:0]) == background).all()
    assert render.pack_rgb32(np.array([[1, 2, 3]]))[0] == 0xFF010203


def test_camera_points_are_2x2_dots_nearest_on_top():  # BGRX pixels (QImage.Format_RGB32)
    image = np.zeros((20, 30, 4), np.uint8)
    uv = np.array([[5.2, 6.7], [5.0, 6.0], [20.0, 10.0]], np.float32)
    depth = np.array([5.0, 40.0, 12.0], np.float32)
    render.draw_points(image, uv, depth)
    near, _far, other = depth_colors(depth)
    assert (image[6:8, 5:7, 2::-1] == near).all()  # the near point covers the far one at the same pixel
    assert (image[10:12, 20:22, 2::-1] == other).all() and (image[6:8, 5:7, 3] == 255).all()
    assert (image[..., 3] > 0).sum() == 8


def test_wireframe_culling_keeps_every_visible_box(sim_and_drive):
    sim, path = sim_and_drive
    session = Session(Drive.open(path), prefetch=False)
    data = session.frame_data(1)
    boxes = sim.truth_boxes_ego(1)
    # More boxes around the car, including behind and far to the sides of every camera.
    ring = np.linspace(-np.pi, np.pi, 24, endpoint=False)
    extra = Boxes.from_yaw(np.c_[12 * np.cos(ring), 12 * np.sin(ring), np.zeros(24)], np.tile([4.0, 2.0, 1.6], (24, 1)),
                           ring, track_id=np.arange(24) + 1000, label=np.array(["Car"] * 24))
    boxes = Boxes.concatenate([boxes, extra])
    for cam in data.cameras:
        edges, box2d = render.project_wireframes(cam, boxes)
        full = project_boxes(boxes, cam.cam_SE3_ego, cam.camera, samples_per_edge=render.SAMPLES_PER_EDGE,
                             fraction_grid=1)
        culled = ~render.frustum_candidates(boxes, cam.cam_SE3_ego, cam.camera)
        assert culled.any() and (~culled).any()
        assert not full.in_image[culled].any()  # nothing culled reaches the image
        np.testing.assert_allclose(edges[~culled], full.edges_uv_px[~culled] / cam.scale)
        np.testing.assert_allclose(box2d[~culled], full.box2d_px[~culled] / cam.scale)
        assert np.isnan(edges[culled]).all() and np.isnan(box2d[culled]).all()


def test_prefetch_prepares_the_same_frame_as_a_synchronous_load(sim_and_drive):
    sim, path = sim_and_drive
    drive = Drive.open(path)
    ahead = Session(drive)
    boxes = ahead.boxes(2).boxes
    future = ahead.prefetch(2, "intensity", boxes)
    assert future is not None
    future.result(timeout=60)
    # What the prefetch put in the cache, taken right after it completed (before any call on this thread).
    prefetched = {key[0]: value for key, value in ahead._cache.items() if key[1] == 2}
    assert set(prefetched) == {"data", "render", "wire"}, "the prefetch prepared the frame and its wireframes"
    sync = Session(drive, prefetch=False)
    assert sync.prefetch(2) is None  # prefetching off
    a, b = ahead.frame_render(2, "intensity"), sync.frame_render(2, "intensity")
    assert a is prefetched["render"] and ahead.frame_data(2) is prefetched["data"]  # drawn from the prefetch
    assert a.rgba.dtype == np.uint8 and a.rgba.shape == (len(sim.sweep(2).points), 4)
    np.testing.assert_array_equal(a.rgba, b.rgba)
    np.testing.assert_array_equal(a.bev_rgb32, b.bev_rgb32)
    for x, y in zip(a.camera_images, b.camera_images):
        assert x.shape[2] == 4
        np.testing.assert_array_equal(x, y)
    # The prefetched wireframes are the ones drawn when the boxes have not changed (cache hit: the same object).
    assert ahead.wireframes(ahead.boxes(2).boxes, 2) is prefetched["wire"]
    assert ahead.wireframes(boxes, 2) is prefetched["wire"]
    moved = boxes.replace(center_m=boxes.center_m + np.array([1.0, 0.0, 0.0]))
    assert ahead.wireframes(moved, 2) is not ahead.wireframes(boxes, 2)  # an edit is projected anew
    assert ahead.prefetch(99) is None and ahead.prefetch(-1) is None
    ahead.set_aggregate(2)
    assert ahead.prefetch(3) is None  # aggregation reads the labels: UI thread only
    ahead.set_aggregate(1)
    before_close = ahead.prefetch(1)
    assert before_close is not None
    ahead.close()  # waits for the frame being prefetched
    assert before_close.done()
    assert ahead.prefetch(1) is None  # prefetching off after close
    with pytest.raises(ValueError):
        sync.frame_render(0, "rainbow")


def test_prefetch_uses_the_settings_of_the_moment_it_was_asked(sim_and_drive):
    import threading

    _, path = sim_and_drive
    session = Session(Drive.open(path))
    readers = []
    boxes_at = session.store.boxes_at
    session.store.boxes_at = lambda frame: readers.append(threading.current_thread()) or boxes_at(frame)
    gate = threading.Event()
    session._executor.submit(gate.wait, 60)  # hold the worker until the setting has changed
    future = session.prefetch(3, "height")
    assert future is not None
    session.set_aggregate(2)  # changed after the prefetch was asked, before it runs
    gate.set()
    future.result(timeout=60)
    keys = set(session._cache)
    assert ("render", 3, 1, "height") in keys and not any(key[2] != 1 for key in keys if key[1] == 3)
    assert all(thread is threading.main_thread() for thread in readers), "labels read off the UI thread"
    session.close()
