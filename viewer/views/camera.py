"""Camera panels: the image with the lidar points coloured by depth and the box wireframes, drawn into the image.

Points and wireframes are rendered with numpy and OpenCV into one RGB array per panel and shown by one ImageItem,
so a frame costs one texture upload per camera. Wireframes come from :func:`sensorlabel.fusion.project_boxes`:
each edge is clipped at the near plane and sampled, so distorted cameras draw curved edges and boxes behind the
camera draw nothing. A click on a box selects it (the smallest enclosing 2D box under the click wins).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from sensorlabel.geometry.boxes import Boxes

from ..model.palette import _DEPTH_LUT, SELECTED_RGB, depth_bins
from ..model.session import CameraFrame

_EMPTY_RGB = (28, 30, 36)
SAMPLES_PER_EDGE = 8


def render_panel(cam: CameraFrame, boxes: Boxes, rgb: np.ndarray, selected: int = -1,
                 show_points: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draw one panel.

    Args:
        cam: the camera at this frame. boxes: N boxes, ego frame at the frame time. rgb: (N,3) uint8 box colours.
        selected: index of the selected box (drawn thicker, white). show_points: draw the projected points.

    Returns:
        The (h,w,3) uint8 image and the (N,4) enclosing 2D boxes in image pixels (NaN when not visible).
    """
    import cv2

    from sensorlabel.fusion import project_boxes

    w, h = cam.size_px
    if cam.image_rgb is not None:
        image = cam.image_rgb.copy()
        h, w = image.shape[:2]
    else:
        image = np.empty((h, w, 3), np.uint8)
        image[:] = _EMPTY_RGB
    if show_points and len(cam.uv_px):
        bins = depth_bins(cam.depth_m)
        order = np.argsort(255 - bins, kind="stable")  # radix sort of uint8: near points drawn last, on top
        col = np.clip(cam.uv_px[order, 0].astype(np.int32), 0, w - 2)
        row = np.clip(cam.uv_px[order, 1].astype(np.int32), 0, h - 2)
        colors = _DEPTH_LUT[bins[order]]
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):  # 2x2 dots
            image[row + dr, col + dc] = colors
    box2d = np.full((len(boxes), 4), np.nan)
    if len(boxes):
        proj = project_boxes(boxes, cam.cam_SE3_ego, cam.camera, samples_per_edge=SAMPLES_PER_EDGE, fraction_grid=1)
        box2d = proj.box2d_px / cam.scale
        edges = proj.edges_uv_px / cam.scale  # (N,12,S,2)
        whole = np.isfinite(edges).all(axis=(2, 3))  # edges with every sample valid
        # Far off-image samples are clamped so the fixed-point cast cannot overflow (OpenCV clips the lines).
        fixed = np.round(np.clip(np.nan_to_num(edges), -4 * w, 4 * w) * 16).astype(np.int32) if whole.any() else None
        thick = 2 if w >= 400 else 1
        for key in {tuple(int(c) for c in col) for col in rgb}:
            mine = np.flatnonzero((rgb == np.array(key, np.uint8)).all(axis=1))
            mine = mine[mine != selected]
            polylines = list(fixed[mine][whole[mine]]) if fixed is not None else []
            if polylines:
                cv2.polylines(image, polylines, False, key, thick, cv2.LINE_AA, shift=4)
        if 0 <= selected < len(boxes) and fixed is not None and whole[selected].any():
            cv2.polylines(image, list(fixed[selected][whole[selected]]), False, SELECTED_RGB, thick + 1,
                          cv2.LINE_AA, shift=4)
    return image, box2d


def pick_box_2d(box2d: np.ndarray, u: float, v: float) -> int:
    """Index of the smallest enclosing 2D box containing pixel (u, v); -1 for none."""
    if len(box2d) == 0:
        return -1
    with np.errstate(invalid="ignore"):
        inside = (box2d[:, 0] <= u) & (u <= box2d[:, 2]) & (box2d[:, 1] <= v) & (v <= box2d[:, 3])
    if not inside.any():
        return -1
    area = np.where(inside, (box2d[:, 2] - box2d[:, 0]) * (box2d[:, 3] - box2d[:, 1]), np.inf)
    return int(np.argmin(area))


class CameraPanel(pg.GraphicsLayoutWidget):
    """One camera.

    Signals:
        boxClicked(int): the index of the box clicked in the image (-1 for none).
    """

    boxClicked = QtCore.Signal(int)

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setBackground((18, 20, 26))
        self.ci.setContentsMargins(0, 0, 0, 0)
        self.name = name
        self.label = self.addLabel(f"<span style='color:#9aa3b5;font-size:8pt'>{name}</span>", row=0, col=0)
        self.vb = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True, enableMouse=False, enableMenu=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self._box2d = np.zeros((0, 4))
        self.setMinimumSize(160, 100)
        self.scene().sigMouseClicked.connect(self._clicked)

    def set_frame(self, cam: CameraFrame, boxes: Boxes, rgb: np.ndarray, selected: int = -1,
                  show_points: bool = True) -> None:
        image, self._box2d = render_panel(cam, boxes, rgb, selected, show_points)
        first = self.image.image is None or self.image.image.shape != image.shape
        self.image.setImage(image, autoLevels=False, levels=(0, 255))
        if first:
            self.vb.autoRange(padding=0)

    def _clicked(self, ev) -> None:
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return
        pos = self.vb.mapSceneToView(ev.scenePos())
        self.boxClicked.emit(pick_box_2d(self._box2d, pos.x(), pos.y()))


class CameraGrid(QtWidgets.QWidget):
    """All camera panels in a grid (three per row)."""

    boxClicked = QtCore.Signal(int)

    def __init__(self, names: list[str], parent=None):
        super().__init__(parent)
        layout = QtWidgets.QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.panels = []
        columns = 3 if len(names) > 4 else max(len(names), 1)
        for i, name in enumerate(names):
            panel = CameraPanel(name)
            panel.boxClicked.connect(self.boxClicked)
            layout.addWidget(panel, i // columns, i % columns)
            self.panels.append(panel)
        if not names:
            note = QtWidgets.QLabel("this drive has no cameras")
            note.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            layout.addWidget(note, 0, 0)

    def set_frame(self, cameras, boxes: Boxes, rgb: np.ndarray, selected: int = -1, show_points: bool = True):
        for panel, cam in zip(self.panels, cameras):
            panel.set_frame(cam, boxes, rgb, selected, show_points)
