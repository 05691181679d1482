"""Camera panels: the image with the lidar points coloured by depth and the box wireframes.

The image with its points and the boxes' wireframe projection come prepared from the session (:mod:`..model.render`,
usually built ahead on the prefetch thread). Here the wireframes are drawn into a copy of the image with OpenCV,
and the panel paints the result as one ``QImage`` scaled to fit (a plain widget: no graphics scene, so a frame
costs one image blit per panel). Wireframes come from :func:`sensorlabel.fusion.project_boxes`: each edge is
clipped at the near plane and sampled, so distorted cameras draw curved edges and boxes behind the camera draw
nothing. A click on a box selects it (the smallest enclosing 2D box under the click wins).
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..model.palette import SELECTED_RGB
from ..model.render import BACKGROUND_RGB
from ..model.session import CameraFrame

_EMPTY_RGB = (28, 30, 36)
_BG = QtGui.QColor(*BACKGROUND_RGB)
_LABEL_PX = 14


def draw_wireframes(image: np.ndarray, edges: np.ndarray, rgb: np.ndarray, selected: int = -1) -> None:
    """Draw (N,12,S,2) edge polylines into an (h,w,4) uint8 BGRX image in place, ``rgb`` (N,3) their colours: one ``cv2.polylines`` call per
    colour, 1 px antialiased (a 2 px antialiased line costs twice as much to rasterise), the selected box last, 2 px
    and white. Edges with a clipped sample are skipped."""
    import cv2

    if len(edges) == 0:
        return
    w = image.shape[1]
    whole = np.isfinite(edges).all(axis=(2, 3))  # (N,12) edges with every sample valid
    if not whole.any():
        return
    # Far off-image samples are clamped so the fixed-point cast cannot overflow (OpenCV clips the lines).
    fixed = np.round(np.clip(np.nan_to_num(edges), -4 * w, 4 * w) * 16).astype(np.int32)
    others = np.ones(len(edges), bool)
    if 0 <= selected < len(edges):
        others[selected] = False
    colors, group = np.unique(rgb, axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, color in enumerate(colors):
        mask = whole & ((group == g) & others)[:, None]
        if mask.any():
            cv2.polylines(image, list(fixed[mask]), False, (*(int(c) for c in color[::-1]), 255), 1, cv2.LINE_AA,
                          shift=4)
    if not others.all() and whole[selected].any():
        cv2.polylines(image, list(fixed[selected][whole[selected]]), False, (*SELECTED_RGB[::-1], 255), 2,
                      cv2.LINE_AA, shift=4)


def render_panel(cam: CameraFrame, base: np.ndarray | None, rgb: np.ndarray, selected: int,
                 projection: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Draw one panel.

    Args:
        cam: the camera at this frame. base: its prepared (h,w,4) uint8 BGRX image (points drawn), None for no image.
        rgb: (N,3) uint8 colours of the N boxes. selected: index of the selected box (drawn thicker, white).
        projection: :func:`..model.render.project_wireframes` of the boxes in this camera.

    Returns:
        The (h,w,4) uint8 BGRX image (``QImage.Format_RGB32``).
    """
    if base is not None:
        image = base.copy()
    else:
        w, h = cam.size_px
        image = np.empty((h, w, 4), np.uint8)
        image[:] = (*_EMPTY_RGB[::-1], 255)
    draw_wireframes(image, projection[0], rgb, selected)
    return image


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


class CameraPanel(QtWidgets.QWidget):
    """One camera: its name above the image, the image scaled to fit (aspect kept).

    Signals:
        boxClicked(int): the index of the box clicked in the image (-1 for none).
    """

    boxClicked = QtCore.Signal(int)

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.name = name
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: np.ndarray | None = None
        self._qimage: QtGui.QImage | None = None
        self._box2d = np.zeros((0, 4))
        self.setMinimumSize(160, 100)

    def set_frame(self, cam: CameraFrame, base: np.ndarray | None, rgb: np.ndarray, selected: int,
                  projection: tuple[np.ndarray, np.ndarray]) -> None:
        """Show ``cam`` with its prepared image ``base`` and the boxes' ``projection`` (edges, 2D boxes)."""
        image = render_panel(cam, base, rgb, selected, projection)
        self._box2d = projection[1]
        self._image = image  # the QImage shares this buffer
        h, w = image.shape[:2]
        self._qimage = QtGui.QImage(image.data, w, h, 4 * w, QtGui.QImage.Format.Format_RGB32)
        self.update()

    def image_rect(self) -> QtCore.QRectF:
        """Where the image is drawn in the widget (below the name, scaled to fit, centred)."""
        if self._qimage is None:
            return QtCore.QRectF()
        w, h = self._qimage.width(), self._qimage.height()
        avail_w, avail_h = self.width(), max(self.height() - _LABEL_PX, 1)
        s = min(avail_w / w, avail_h / h)
        return QtCore.QRectF((avail_w - s * w) / 2, _LABEL_PX + (avail_h - s * h) / 2, s * w, s * h)

    def image_to_widget(self, u: float, v: float) -> QtCore.QPointF:
        """Widget position of image pixel (u, v) (pixel centres at integers)."""
        r = self.image_rect()
        s = r.width() / self._qimage.width()
        return QtCore.QPointF(r.x() + (u + 0.5) * s, r.y() + (v + 0.5) * s)

    def widget_to_image(self, pos: QtCore.QPointF) -> tuple[float, float]:
        r = self.image_rect()
        s = r.width() / self._qimage.width()
        return (pos.x() - r.x()) / s - 0.5, (pos.y() - r.y()) / s - 0.5

    def paintEvent(self, event) -> None:
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), _BG)
        p.setPen(QtGui.QColor(154, 163, 181))
        p.drawText(QtCore.QRectF(0, 0, self.width(), _LABEL_PX), QtCore.Qt.AlignmentFlag.AlignCenter, self.name)
        if self._qimage is not None:
            p.drawImage(self.image_rect(), self._qimage)
        p.end()

    def mousePressEvent(self, event) -> None:
        if event.button() != QtCore.Qt.MouseButton.LeftButton or self._qimage is None:
            return
        u, v = self.widget_to_image(event.position())
        self.boxClicked.emit(pick_box_2d(self._box2d, u, v))


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

    def set_frame(self, cameras, images, projections, rgb: np.ndarray, selected: int = -1) -> None:
        """Show every camera: ``cameras`` the frame's CameraFrames, ``images`` their prepared images and
        ``projections`` the boxes' wireframes in each (see :meth:`..model.session.Session.wireframes`)."""
        for panel, cam, base, projection in zip(self.panels, cameras, images, projections):
            panel.set_frame(cam, base, rgb, selected, projection)
