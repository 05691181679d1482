"""3D view of the current sweep: one scatter item for all points, one line item for every box edge and heading."""

from __future__ import annotations

import numpy as np
import pyqtgraph.opengl as gl
from PySide6 import QtCore, QtGui

from sensorlabel.geometry.boxes import BOX_EDGES, Boxes

from ..model.palette import SELECTED_RGB

#: Track-id labels drawn at most (the nearest boxes get them; text items are the one per-box object of the view).
MAX_LABELS = 48


def box_segments(boxes: Boxes) -> np.ndarray:
    """(N*28, 3) line-segment end points for ``GLLinePlotItem(mode='lines')``: the 12 edges of every box plus two
    heading segments (box centre to front-face centre, at mid and top height)."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 3), np.float32)
    corners = boxes.corners()  # (N,8,3)
    edges = corners[:, BOX_EDGES.reshape(-1)]  # (N,24,3)
    front_center = _front_center(boxes)
    heading = np.stack([boxes.center_m, front_center], axis=1)  # (N,2,3)
    lift = boxes.rotation @ np.array([0.0, 0.0, 0.5]) * boxes.lwh_m[:, 2:3]
    top_heading = heading + lift[:, None, :]
    return np.concatenate([edges, heading, top_heading], axis=1).reshape(-1, 3).astype(np.float32)


def _front_center(boxes: Boxes) -> np.ndarray:
    """(N,3) centre of the front face (+x of the box)."""
    return boxes.center_m + boxes.rotation[:, :, 0] * (boxes.lwh_m[:, 0:1] / 2)


class View3D(gl.GLViewWidget):
    """The sweep in 3D (ego frame) with the frame's boxes."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackgroundColor(QtGui.QColor(18, 20, 26))
        self.setCameraPosition(pos=QtGui.QVector3D(8, 0, 0), distance=55, elevation=32, azimuth=200)
        grid = gl.GLGridItem()
        grid.setSize(160, 160)
        grid.setSpacing(10, 10)
        grid.setColor((70, 75, 90, 120))
        grid.translate(0, 0, -1.9)
        self.addItem(grid)
        self.scatter = gl.GLScatterPlotItem(pos=np.zeros((1, 3), np.float32), color=(0, 0, 0, 0), size=2.0,
                                            pxMode=True, glOptions="opaque")
        self.addItem(self.scatter)
        self.lines = gl.GLLinePlotItem(pos=np.zeros((2, 3), np.float32), mode="lines", width=1.5, antialias=False,
                                       glOptions="opaque")
        self.addItem(self.lines)
        self._labels: list[gl.GLTextItem] = []
        self.setMinimumSize(200, 150)

    def set_points(self, points_ego: np.ndarray, rgba: np.ndarray) -> None:
        """Replace the cloud: (P,3) float32 positions and (P,4) float32 colours in [0, 1]."""
        if len(points_ego) == 0:
            points_ego, rgba = np.zeros((1, 3), np.float32), np.zeros((1, 4), np.float32)
        self.scatter.setData(pos=points_ego, color=rgba)

    def set_boxes(self, boxes: Boxes, rgb: np.ndarray, selected: int = -1) -> None:
        """Replace the boxes: N boxes with (N,3) uint8 class colours; ``selected`` is drawn white."""
        segments = box_segments(boxes)
        if len(segments) == 0:
            self.lines.setData(pos=np.zeros((2, 3), np.float32), color=(0, 0, 0, 0))
        else:
            colors = np.repeat(rgb.astype(np.float32) / 255, 28, axis=0)
            if 0 <= selected < len(boxes):
                colors[28 * selected:28 * (selected + 1), :3] = np.array(SELECTED_RGB) / 255
            rgba = np.concatenate([colors, np.ones((len(colors), 1), np.float32)], axis=1)
            self.lines.setData(pos=segments, color=rgba, mode="lines", width=1.5)
        self._set_labels(boxes, rgb)

    def _set_labels(self, boxes: Boxes, rgb: np.ndarray) -> None:
        n = min(len(boxes), MAX_LABELS)
        order = np.argsort(np.hypot(boxes.center_m[:, 0], boxes.center_m[:, 1]))[:n] if len(boxes) else []
        while len(self._labels) < n:
            item = gl.GLTextItem(font=QtGui.QFont("Sans", 8))
            self.addItem(item)
            self._labels.append(item)
        for item, i in zip(self._labels, order):
            top = boxes.center_m[i] + np.array([0.0, 0.0, boxes.lwh_m[i, 2] / 2 + 0.3])
            item.setData(pos=top, text=str(int(boxes.track_id[i])), color=QtGui.QColor(*[int(c) for c in rgb[i]]))
            item.setVisible(True)
        for item in self._labels[n:]:
            item.setVisible(False)

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(640, 420)
