"""Camera panels: the image with the lidar points coloured by depth and the box wireframes.

The image with its points comes prepared from the session (:mod:`..model.render`, built off the UI thread). Here the
box wireframes are drawn into a copy of it with OpenCV, and the panel paints the result as one ``QImage`` scaled
to fit (a plain widget: no graphics scene, so a frame costs one image blit per panel). Wireframes come from
:func:`sensorlabel.fusion.project_boxes`: each edge is clipped at the near plane and sampled, so distorted cameras
draw curved edges and boxes behind the camera draw nothing. Boxes entirely outside the camera's viewing frustum are
culled first, and a panel reuses its projection while neither the frame nor the boxes change (a selection change
only redraws). A click on a box selects it (the smallest enclosing 2D box under the click wins).
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.camera import NEAR_M

from ..model.palette import SELECTED_RGB
from ..model.session import CameraFrame

_EMPTY_RGB = (28, 30, 36)
_BG = QtGui.QColor(18, 20, 26)
SAMPLES_PER_EDGE = 8
_LABEL_PX = 14


def _normalised_bounds(camera) -> np.ndarray | None:
    """(4,) x/z and y/z limits (lo_x, hi_x, lo_y, hi_y) of the image, widened by 10 %, from rays through its
    border; None when the field of view reaches 90 degrees off axis (fisheye), where no such bound exists."""
    w, h = camera.width_px, camera.height_px
    s = np.linspace(0, 1, 17)
    border = np.concatenate([np.c_[s * (w - 1), np.zeros_like(s)], np.c_[s * (w - 1), np.full_like(s, h - 1)],
                             np.c_[np.zeros_like(s), s * (h - 1)], np.c_[np.full_like(s, w - 1), s * (h - 1)]])
    rays = camera.unproject(border)
    if not np.isfinite(rays).all() or (rays[:, 2] < 0.05).any():
        return None
    xn, yn = rays[:, 0] / rays[:, 2], rays[:, 1] / rays[:, 2]
    pad_x, pad_y = 0.1 * (xn.max() - xn.min()), 0.1 * (yn.max() - yn.min())
    return np.array([xn.min() - pad_x, xn.max() + pad_x, yn.min() - pad_y, yn.max() + pad_y])


_BOUNDS: dict[int, tuple[object, np.ndarray | None]] = {}


def frustum_candidates(boxes: Boxes, cam_SE3_ego, camera) -> np.ndarray:
    """(N,) bool: the box may be visible. False when all 8 corners are behind the near plane or all outside one
    side of the image's (widened) viewing pyramid; the box is convex, so it is then entirely out of view."""
    if len(boxes) == 0:
        return np.zeros(0, bool)
    corners = cam_SE3_ego.transform_points(boxes.corners().reshape(-1, 3)).reshape(-1, 8, 3)
    x, y, z = corners[..., 0], corners[..., 1], corners[..., 2]
    out = (z <= NEAR_M).all(axis=1)
    cached = _BOUNDS.get(id(camera))
    if cached is None or cached[0] is not camera:
        cached = _BOUNDS[id(camera)] = (camera, _normalised_bounds(camera))
    bounds = cached[1]
    if bounds is not None:
        lo_x, hi_x, lo_y, hi_y = bounds
        out |= (x < lo_x * z).all(axis=1) | (x > hi_x * z).all(axis=1)
        out |= (y < lo_y * z).all(axis=1) | (y > hi_y * z).all(axis=1)
    return ~out


def project_wireframes(cam: CameraFrame, boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """The boxes' clipped, sampled edges and enclosing 2D boxes in one camera, in *reduced* image pixels.

    Args:
        cam: the camera at this frame. boxes: N boxes, ego frame at the frame time.

    Returns:
        edges (N,12,S,2) float64 (NaN where clipped, out of the model's domain, or the box is out of view) and
        box2d (N,4) ``x1, y1, x2, y2`` (NaN when not visible).
    """
    from sensorlabel.fusion import project_boxes

    n = len(boxes)
    edges = np.full((n, 12, SAMPLES_PER_EDGE, 2), np.nan)
    box2d = np.full((n, 4), np.nan)
    keep = np.flatnonzero(frustum_candidates(boxes, cam.cam_SE3_ego, cam.camera))
    if len(keep):
        proj = project_boxes(boxes[keep], cam.cam_SE3_ego, cam.camera, samples_per_edge=SAMPLES_PER_EDGE,
                             fraction_grid=1)
        edges[keep] = proj.edges_uv_px / cam.scale
        box2d[keep] = proj.box2d_px / cam.scale
    return edges, box2d


def draw_wireframes(image: np.ndarray, edges: np.ndarray, rgb: np.ndarray, selected: int = -1) -> None:
    """Draw (N,12,S,2) edge polylines into an (h,w,3) uint8 image in place: one ``cv2.polylines`` call per colour,
    the selected box last, thicker and white. Edges with a clipped sample are skipped."""
    import cv2

    if len(edges) == 0:
        return
    h, w = image.shape[:2]
    whole = np.isfinite(edges).all(axis=(2, 3))  # (N,12) edges with every sample valid
    if not whole.any():
        return
    # Far off-image samples are clamped so the fixed-point cast cannot overflow (OpenCV clips the lines).
    fixed = np.round(np.clip(np.nan_to_num(edges), -4 * w, 4 * w) * 16).astype(np.int32)
    thick = 2 if w >= 400 else 1
    others = np.ones(len(edges), bool)
    if 0 <= selected < len(edges):
        others[selected] = False
    colors, group = np.unique(rgb, axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, color in enumerate(colors):
        mask = whole & ((group == g) & others)[:, None]
        if mask.any():
            cv2.polylines(image, list(fixed[mask]), False, tuple(int(c) for c in color), thick, cv2.LINE_AA, shift=4)
    if not others.all() and whole[selected].any():
        cv2.polylines(image, list(fixed[selected][whole[selected]]), False, SELECTED_RGB, thick + 1, cv2.LINE_AA,
                      shift=4)


def render_panel(cam: CameraFrame, base: np.ndarray | None, boxes: Boxes, rgb: np.ndarray, selected: int = -1,
                 projection: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one panel.

    Args:
        cam: the camera at this frame. base: its prepared (h,w,3) uint8 image (points drawn), None for no image.
        boxes: N boxes, ego frame at the frame time. rgb: (N,3) uint8 box colours.
        selected: index of the selected box (drawn thicker, white).
        projection: the result of :func:`project_wireframes` for these boxes, when already known.

    Returns:
        The (h,w,3) uint8 image and the (N,4) enclosing 2D boxes in image pixels (NaN when not visible).
    """
    if base is not None:
        image = base.copy()
    else:
        w, h = cam.size_px
        image = np.empty((h, w, 3), np.uint8)
        image[:] = _EMPTY_RGB
    edges, box2d = projection if projection is not None else project_wireframes(cam, boxes)
    draw_wireframes(image, edges, rgb, selected)
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


def _boxes_key(boxes: Boxes) -> tuple:
    """The boxes' geometry, to tell whether a projection can be reused."""
    return (len(boxes), boxes.center_m.tobytes(), boxes.lwh_m.tobytes(), boxes.quat_wxyz.tobytes())


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
        self._image_rgb: np.ndarray | None = None
        self._qimage: QtGui.QImage | None = None
        self._box2d = np.zeros((0, 4))
        self._key: tuple | None = None
        self._cam: CameraFrame | None = None
        self._projection: tuple[np.ndarray, np.ndarray] | None = None
        self.setMinimumSize(160, 100)

    def set_frame(self, cam: CameraFrame, base: np.ndarray | None, boxes: Boxes, rgb: np.ndarray,
                  selected: int = -1) -> None:
        """Show ``cam`` with its prepared image ``base`` and the boxes."""
        key = _boxes_key(boxes)
        if cam is not self._cam or key != self._key:
            self._projection, self._key, self._cam = project_wireframes(cam, boxes), key, cam
        image, self._box2d = render_panel(cam, base, boxes, rgb, selected, self._projection)
        self._image_rgb = image  # the QImage shares this buffer
        h, w = image.shape[:2]
        self._qimage = QtGui.QImage(image.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
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

    def set_frame(self, cameras, images, boxes: Boxes, rgb: np.ndarray, selected: int = -1) -> None:
        """Show every camera: ``cameras`` the frame's CameraFrames, ``images`` their prepared images."""
        for panel, cam, base in zip(self.panels, cameras, images):
            panel.set_frame(cam, base, boxes, rgb, selected)
