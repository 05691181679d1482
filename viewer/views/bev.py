"""Bird's-eye editor: the sweep rasterised from above, boxes as outlines; select, move, rotate, resize, create.

The points are drawn as one image (a max-height raster built with numpy in one pass, off the UI thread, see
:mod:`..model.render`), not as 120k scatter items.
Mouse: a click selects the box under it (or places a new box in "new box" mode); dragging the selected box moves
it, dragging its round handle rotates it (snapped to ``yaw_snap_deg`` when snapping is on or Shift is held),
dragging one of its faces resizes it with the opposite face fixed. The drag is previewed live and committed once,
on release, through :attr:`BirdsEyeEditor.boxEdited`. Dragging elsewhere pans, the wheel zooms.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from sensorlabel.geometry.boxes import Boxes

from ..model import editing
from ..model.editing import BoxPose
from ..model.palette import SELECTED_RGB
from ..model.render import BACKGROUND_RGB, RASTER_HALF_M

_BG = np.array(BACKGROUND_RGB, np.uint8)


class RasterItem(pg.GraphicsObject):
    """A (n,n) uint32 ``0xffRRGGBB`` raster drawn over a square of the view, shown without conversion (one
    ``drawImage``; pyqtgraph's ImageItem would rescale and convert it on every change)."""

    def __init__(self, half_m: float):
        super().__init__()
        self._rect = QtCore.QRectF(-half_m, -half_m, 2 * half_m, 2 * half_m)
        self._raster: np.ndarray | None = None
        self._qimage: QtGui.QImage | None = None

    def set_raster(self, rgb32: np.ndarray) -> None:
        raster = np.ascontiguousarray(rgb32, np.uint32)
        h, w = raster.shape
        self._raster = raster  # the QImage shares this buffer
        self._qimage = QtGui.QImage(raster.data, w, h, 4 * w, QtGui.QImage.Format.Format_RGB32)
        self.update()

    def boundingRect(self) -> QtCore.QRectF:
        return self._rect

    def paint(self, painter, option, widget=None) -> None:
        if self._qimage is not None:
            painter.drawImage(self._rect, self._qimage)


def outline_paths(boxes: Boxes) -> np.ndarray:
    """(N*7, 2) polyline vertices per box (4 corners closed, then the heading tick to the centre), NaN between
    boxes, for one ``connect='finite'`` curve."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 2))
    corners = boxes.bev_corners()  # (N,4,2)
    front = boxes.center_m[:, :2] + boxes.rotation[:, :2, 0] * (boxes.lwh_m[:, 0:1] / 2)
    path = np.concatenate([corners, corners[:, :1], front[:, None], boxes.center_m[:, None, :2],
                           np.full((n, 1, 2), np.nan)], axis=1)
    return path.reshape(-1, 2)


class _EditViewBox(pg.ViewBox):
    def __init__(self, editor: BirdsEyeEditor):
        super().__init__(lockAspect=True, enableMenu=False)
        self._editor = editor
        self._dragging = ""

    def mouseClickEvent(self, ev):
        if ev.button() == QtCore.Qt.MouseButton.LeftButton:
            ev.accept()
            self._editor._clicked(self.mapSceneToView(ev.scenePos()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        if ev.isStart():
            self._dragging = self._editor._grab(self.mapSceneToView(ev.buttonDownScenePos()))
        if not self._dragging:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        shift = bool(ev.modifiers() & QtCore.Qt.KeyboardModifier.ShiftModifier)
        self._editor._dragged(self._dragging, self.mapSceneToView(ev.scenePos()),
                              self.mapSceneToView(ev.buttonDownScenePos()), shift)
        if ev.isFinish():
            self._dragging = ""
            self._editor._drag_finished()


class BirdsEyeEditor(pg.PlotWidget):
    """Top view editor of the current frame.

    Signals:
        boxClicked(int): index of the clicked box in the boxes last given (-1 for empty space).
        boxEdited(object): a :class:`BoxPose` for the selected box after a drag (commit it).
        newBoxRequested(float, float): a click in new-box mode at ego x, y.
    """

    boxClicked = QtCore.Signal(int)
    boxEdited = QtCore.Signal(object)
    newBoxRequested = QtCore.Signal(float, float)

    def __init__(self, parent=None):
        self._vb = _EditViewBox(self)
        super().__init__(parent, viewBox=self._vb, background=tuple(_BG))
        self.setAspectLocked(True)
        self.showGrid(x=True, y=True, alpha=0.15)
        self.getPlotItem().hideButtons()
        for side in ("left", "bottom"):
            self.getAxis(side).setTextPen(pg.mkPen((150, 155, 170)))
            self.getAxis(side).setPen(pg.mkPen((80, 85, 100)))
            # A new raster repaints the whole viewport: the axes are then blitted from a pixmap, not re-drawn.
            self.getAxis(side).setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setLabel("bottom", "x ego (m)")
        self.setLabel("left", "y ego (m)")
        self.raster = RasterItem(RASTER_HALF_M)
        self.addItem(self.raster)
        self._class_curves: dict[tuple, pg.PlotCurveItem] = {}
        self.selected_curve = pg.PlotCurveItem(pen=pg.mkPen(SELECTED_RGB, width=2.5), connect="finite")
        self.selected_curve.setZValue(20)
        self.addItem(self.selected_curve)
        self.handles = pg.ScatterPlotItem(size=11, pen=pg.mkPen("w", width=1.5), brush=pg.mkBrush(40, 170, 255))
        self.handles.setZValue(21)
        self.addItem(self.handles)
        ego = pg.ScatterPlotItem([0.0], [0.0], symbol="t2", size=16, brush=pg.mkBrush(255, 255, 255, 200),
                                 pen=pg.mkPen(None))
        self.addItem(ego)
        self.setXRange(-30, 50)
        self.setYRange(-30, 30)
        self.boxes = Boxes.empty()
        self.selected = -1
        self.new_box_mode = False
        self.snap_enabled = False
        self.yaw_snap_deg = 5.0
        self._pose: BoxPose | None = None
        self._preview: BoxPose | None = None

    # ----- drawing --------------------------------------------------------------------------------------------------
    def set_raster(self, rgb32: np.ndarray) -> None:
        """Draw the cloud: the (n,n) uint32 raster of :func:`..model.render.rasterize_bev`."""
        self.raster.set_raster(rgb32)

    def set_boxes(self, boxes: Boxes, rgb: np.ndarray, selected: int = -1) -> None:
        """Draw N boxes with (N,3) uint8 colours; ``selected`` gets handles."""
        self.boxes, self.selected = boxes, selected
        self._pose = BoxPose.from_boxes(boxes, selected) if 0 <= selected < len(boxes) else None
        self._preview = None
        colors, group = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
        used = set()
        for g, color in enumerate(colors):
            key = tuple(int(c) for c in color)
            mask = group.reshape(-1) == g
            curve = self._class_curves.get(key)
            if curve is None:
                curve = pg.PlotCurveItem(pen=pg.mkPen(key, width=1.6), connect="finite")
                curve.setZValue(10)
                self.addItem(curve)
                self._class_curves[key] = curve
            xy = outline_paths(boxes[mask])
            curve.setData(xy[:, 0], xy[:, 1], connect="finite")
            used.add(key)
        for key, curve in self._class_curves.items():
            if key not in used:
                curve.setData([], [])
        self._draw_selected(self._pose)

    def _draw_selected(self, pose: BoxPose | None) -> None:
        if pose is None:
            self.selected_curve.setData([], [])
            self.handles.setData([], [])
            return
        xy = outline_paths(pose.to_boxes())
        self.selected_curve.setData(xy[:, 0], xy[:, 1], connect="finite")
        ex, ey = pose.axes_xy
        c = pose.center_m[:2]
        hl, hw = pose.lwh_m[0] / 2, pose.lwh_m[1] / 2
        edges = np.array([c + ex * hl, c - ex * hl, c + ey * hw, c - ey * hw])
        rot = pose.rotation_handle_xy(self._handle_offset())
        self.handles.setData(pos=np.vstack([edges, rot[None]]), symbol=["s"] * 4 + ["o"],
                             brush=[pg.mkBrush(255, 255, 255)] * 4 + [pg.mkBrush(40, 170, 255)])

    def _tolerance_m(self) -> float:
        """About 8 screen pixels in metres at the current zoom."""
        (x0, x1), _ = self._vb.viewRange()
        return max((x1 - x0) / max(self.width(), 1) * 8, 0.1)

    def _handle_offset(self) -> float:
        return max(3 * self._tolerance_m(), 0.6)

    # ----- interaction -------------------------------------------------------------------------------------------
    def _clicked(self, pos: QtCore.QPointF) -> None:
        xy = np.array([pos.x(), pos.y()])
        if self.new_box_mode:
            self.new_box_mode = False
            self.setCursor(QtCore.Qt.CursorShape.ArrowCursor)
            self.newBoxRequested.emit(float(xy[0]), float(xy[1]))
            return
        self.boxClicked.emit(editing.pick_box(self.boxes, xy))

    def _grab(self, pos: QtCore.QPointF) -> str:
        if self._pose is None:
            return ""
        return editing.hit_test(self._pose, np.array([pos.x(), pos.y()]), self._tolerance_m(), self._handle_offset())

    def _dragged(self, mode: str, pos: QtCore.QPointF, start: QtCore.QPointF, shift: bool) -> None:
        pose = self._pose
        xy = np.array([pos.x(), pos.y()])
        if mode == "move":
            new = editing.move(pose, xy - np.array([start.x(), start.y()]))
        elif mode == "rotate":
            snap = np.deg2rad(self.yaw_snap_deg) if (self.snap_enabled or shift) else None
            new = editing.rotate_to(pose, xy, snap)
        else:
            new = editing.resize_edge(pose, mode, xy)
        self._preview = new
        self._draw_selected(new)

    def _drag_finished(self) -> None:
        if self._preview is not None:
            pose, self._preview = self._preview, None
            self.boxEdited.emit(pose)

    def start_new_box(self) -> None:
        """The next click places a new box."""
        self.new_box_mode = True
        self.setCursor(QtCore.Qt.CursorShape.CrossCursor)

    def center_on(self, xy_m: np.ndarray) -> None:
        (x0, x1), (y0, y1) = self._vb.viewRange()
        hx, hy = (x1 - x0) / 2, (y1 - y0) / 2
        self.setXRange(xy_m[0] - hx, xy_m[0] + hx, padding=0)
        self.setYRange(xy_m[1] - hy, xy_m[1] + hy, padding=0)

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(520, 420)
