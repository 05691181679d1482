"""Fusion on real recorded data (../shared/data): KITTI 2D boxes, nuScenes cameras, SUSTech points per camera."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sensorlabel.formats.kitti import kitti_to_boxes_velo, read_kitti_calib, read_kitti_object_labels
from sensorlabel.fusion import (
    CameraView,
    OcclusionConfig,
    colorize_points,
    project_boxes,
    project_sweep,
    render_points_on_image,
    static_pose,
    visible_points,
)
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.camera import PinholeCamera
from sensorlabel.geometry.se3 import SE3


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N,4) x1 y1 x2 y2 boxes."""
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _kitti_camera(calib, image_path: Path) -> tuple[PinholeCamera, SE3]:
    """Camera 2 model and cam2_SE3_velo from the calibration (P2 = K [I | K^-1 p4] in rect)."""
    h, w = cv2.imread(str(image_path)).shape[:2]
    P2 = calib.P2
    K = P2[:, :3]
    camera = PinholeCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h)
    cam2_SE3_rect = SE3(np.eye(3), np.linalg.solve(K, P2[:, 3]))
    return camera, cam2_SE3_rect.compose(calib.rect_SE3_velo)


KITTI_FRAMES = [("kitti_object_3frames/training", f"{i:06d}") for i in range(3)]


@pytest.mark.parametrize("folder,stem", KITTI_FRAMES + [("kitti_object_mmdet3d_000008", "000008")])
def test_kitti_2d_boxes_match_labels(shared_data: Path, folder: str, stem: str) -> None:
    root = shared_data / folder
    if folder.startswith("kitti_object_mmdet3d"):
        calib_path, label_path, image_path = (root / "derived" / f"calib_{stem}.txt",
                                              root / "derived" / f"label_2_{stem}.txt", root / f"{stem}.png")
    else:
        calib_path, label_path, image_path = (root / "calib" / f"{stem}.txt", root / "label_2" / f"{stem}.txt",
                                              root / "image_2" / f"{stem}.png")
    calib = read_kitti_calib(calib_path)
    table = read_kitti_object_labels(label_path)
    table = table[table.type != "DontCare"]
    assert len(table) > 0
    boxes_velo = kitti_to_boxes_velo(table, calib)
    camera, cam_SE3_velo = _kitti_camera(calib, image_path)
    proj = project_boxes(boxes_velo, cam_SE3_velo, camera)
    assert proj.in_image.all()
    iou = _iou(proj.box2d_px, table.bbox_2d_px)
    assert iou.min() >= 0.85, iou


def _nuscenes_info(shared_data: Path) -> dict:
    path = shared_data / "nuscenes_mmdet3d_demo" / "derived" / "n015-2018-07-24-11-22-45+0800.info.json"
    return json.loads(path.read_text())["data_list"][0]


def _nuscenes_boxes(bbox_3d: list) -> Boxes:
    arr = np.asarray(bbox_3d, dtype=np.float64).reshape(-1, 7)
    center = arr[:, :3] + np.stack([np.zeros(len(arr)), np.zeros(len(arr)), arr[:, 5] / 2], axis=1)
    return Boxes.from_yaw(center, arr[:, 3:6], arr[:, 6])


def test_nuscenes_boxes_project_into_the_right_cameras(shared_data: Path) -> None:
    """Truth per camera: mmdet3d's ``cam_instances`` (the boxes with a corner in front of the camera whose projected
    outline meets the image) and their ``center_2d`` (the projection of the box's bottom centre ``bbox_3d[:3]``).

    * every box listed for a camera projects into it, and its bottom centre lands on ``center_2d`` (< 0.01 px);
    * a box we place in a camera that mmdet3d does not list straddles the camera plane (mmdet3d drops corners behind
      the camera instead of clipping edges, so it may miss those; nothing else may differ);
    * a box whose centre is in a camera's view projects there; a box entirely behind a camera never does.

    (The ``bbox`` 2D boxes of this file sit h/2 lower than the 3D boxes' outlines, an mmdet3d conversion quirk, so
    they are not used; the KITTI test checks 2D boxes against human labels.)
    """
    info = _nuscenes_info(shared_data)
    arr = np.asarray([inst["bbox_3d"] for inst in info["instances"]])
    boxes = _nuscenes_boxes(arr)  # LIDAR_TOP frame
    labels = np.asarray([inst["bbox_label"] for inst in info["instances"]])
    corners = boxes.corners().reshape(-1, 3)
    seen_by = np.zeros(len(boxes), dtype=int)
    for name, cam in info["images"].items():
        K = np.asarray(cam["cam2img"])[:3, :3]
        camera = PinholeCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], 1600, 900)
        cam_SE3_lidar = SE3.from_matrix(np.asarray(cam["lidar2cam"]))
        proj = project_boxes(boxes, cam_SE3_lidar, camera)
        z_corners = cam_SE3_lidar.transform_points(corners).reshape(-1, 8, 3)[..., 2]
        straddles = (z_corners <= 0.1).any(axis=1) & (z_corners > 0.1).any(axis=1)
        listed = np.zeros(len(boxes), bool)
        truth = info["cam_instances"][name]
        if truth:
            bottom_cam = cam_SE3_lidar.transform_points(arr[:, :3])
            truth_bottom = np.asarray([t["bbox_3d"][:3] for t in truth])
            dist = np.linalg.norm(bottom_cam[:, None] - truth_bottom[None], axis=2)
            match = dist.argmin(axis=0)
            assert dist.min(axis=0).max() < 1e-3
            listed[match] = True
            assert proj.in_image[match].all(), name
            view = CameraView(name, camera, cam_SE3_lidar, 0)
            _, (pts,) = project_sweep(arr[match, :3], 0, SE3.identity(), [view], static_pose())
            center_2d = np.asarray([t["center_2d"] for t in truth])[pts.point_index]
            assert len(pts) > 0 and np.abs(pts.uv_px - center_2d).max() < 0.01
        # Instances of classes outside mmdet3d's 10 (bbox_label -1) are never listed; they are not compared.
        extra = proj.in_image & ~listed & (labels >= 0)
        assert not (extra & ~straddles).any(), (name, np.flatnonzero(extra & ~straddles))
        centre_in = camera.project(cam_SE3_lidar.transform_points(boxes.center_m))[1]
        assert proj.in_image[centre_in].all()
        behind = (z_corners <= 0.1).all(axis=1)
        assert not proj.in_image[behind].any() and (proj.visible_fraction[behind] == 0).all()
        assert (proj.visible_fraction[centre_in] > 0).all()
        seen_by += proj.in_image
    # Boxes around the car are seen by one camera or two (overlaps), never by cameras facing away.
    dist = np.linalg.norm(boxes.center_m[:, :2], axis=1)
    assert (seen_by[dist > 3] >= 1).mean() > 0.95 and seen_by.max() <= 3


def _sustech_frame(shared_data: Path, stem: str = "000970"):
    from sensorlabel.formats.sustech import read_sustech_calib, read_sustech_labels, read_sustech_pcd

    root = shared_data / "sustechpoints_example"
    points, fields, _ = read_sustech_pcd(root / "lidar" / f"{stem}.pcd")
    cal = read_sustech_calib(root / "calib" / "camera" / "front.json")
    image = cv2.cvtColor(cv2.imread(str(root / "camera" / "front" / f"{stem}.jpg")), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    K = cal.K
    camera = PinholeCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h)
    labels = read_sustech_labels(root / "label" / f"{stem}.json")
    return points, fields, cal.cam_SE3_lidar, camera, image, labels


def test_sustech_front_camera_points_and_colours(shared_data: Path, tmp_path: Path) -> None:
    points, fields, cam_SE3_lidar, camera, image, labels = _sustech_frame(shared_data)
    # No ego poses in this example: the lidar frame is the ego frame and the ego is static.
    view = CameraView("front", camera, cam_SE3_lidar, 0)
    _, (proj,) = project_sweep(points[:, :3], 0, SE3.identity(), [view], static_pose())
    assert 0.85 * 15000 <= len(proj) <= 1.15 * 15000, len(proj)
    vis = visible_points(proj, OcclusionConfig())
    assert 0.5 * len(proj) < len(vis) <= len(proj)
    col = colorize_points(len(points), [vis], [image])
    assert col.seen.sum() == len(vis)
    assert (col.rgb[~col.seen] == [255, 0, 255]).all()
    # Points inside labelled boxes that the camera sees take the colour of the image pixel they project to.
    on_objects = labels.boxes.points_in_boxes(points[:, :3]).any(axis=0)[vis.point_index]
    assert on_objects.sum() > 100
    h, w = image.shape[:2]
    col_px = np.clip(np.rint(vis.uv_px[on_objects, 0]), 0, w - 1).astype(int)
    row_px = np.clip(np.rint(vis.uv_px[on_objects, 1]), 0, h - 1).astype(int)
    np.testing.assert_array_equal(col.rgb[vis.point_index[on_objects]], image[row_px, col_px])
    out = tmp_path / "sustech_000970_front_coloured.png"
    # Top: the points by depth over the image. Bottom: the points alone, drawn in the colours they took, on black:
    # when the colours are right it reads as a sparse copy of the image.
    overlay = render_points_on_image(image, vis, None, radius_px=3)
    coloured = render_points_on_image(np.zeros_like(image), vis, col.rgb, radius_px=4)
    half = (image.shape[1] // 2, image.shape[0] // 2)
    panel = np.concatenate([cv2.resize(overlay, half), cv2.resize(coloured, half)], axis=0)
    assert cv2.imwrite(str(out), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    assert out.stat().st_size > 10_000
    # The colour of each visible point equals the image pixel it lands on.
    uv = np.rint(vis.uv_px).astype(int)
    assert np.array_equal(col.rgb[vis.point_index], image[uv[:, 1], uv[:, 0]])
