"""Three orthographic views (top, side, rear) of the points around the selected box, in the box frame, as in
SUSTechPOINTS. Each face of the box is a draggable line, and a form of spin boxes sets every value numerically.

Top: box x (length) across, y up. Side: x across, z up. Rear: y across (mirrored, as seen from behind), z up.
Dragging a line moves that face with the opposite face fixed (:func:`~..model.editing.set_face`); the result is
emitted once, when the drag ends, through :attr:`OrthoPanel.boxEdited`.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from sensorlabel.geometry.lie import wrap_angle

from ..model import editing
from ..model.editing import BoxPose

MARGIN_M = 1.5
# (name, horizontal axis, vertical axis, mirror horizontal)
_VIEWS = (("top", 0, 1, False), ("side", 0, 2, False), ("rear", 1, 2, True))


class _OrthoView(pg.PlotWidget):
    faceMoved = QtCore.Signal(int, float, float)  # axis, sign, coordinate in the box frame

    def __init__(self, name: str, h_axis: int, v_axis: int, mirror: bool):
        super().__init__(background=(18, 20, 26))
        self.h_axis, self.v_axis = h_axis, v_axis
        self.setAspectLocked(True)
        self.getPlotItem().hideButtons()
        self.getPlotItem().setMenuEnabled(False)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.setTitle(f"<span style='color:#9aa3b5;font-size:9pt'>{name}</span>")
        if mirror:
            self.invertX(True)
        self.scatter = pg.ScatterPlotItem(size=2.5, pen=None, brush=pg.mkBrush(200, 220, 255), pxMode=True)
        self.addItem(self.scatter)
        self.lines = []
        for axis, angle in ((h_axis, 90), (v_axis, 0)):
            for sign in (-1.0, 1.0):
                line = pg.InfiniteLine(angle=angle, movable=True, pen=pg.mkPen((255, 200, 60), width=2),
                                       hoverPen=pg.mkPen((255, 255, 255), width=3))
                line.sigPositionChangeFinished.connect(
                    lambda ln, a=axis, s=sign: self.faceMoved.emit(a, s, float(ln.value())))
                self.addItem(line)
                self.lines.append((line, axis, sign))
        self.setMinimumSize(120, 100)

    def show_box(self, local_points: np.ndarray, lwh_m: np.ndarray) -> None:
        self.scatter.setData(local_points[:, self.h_axis], local_points[:, self.v_axis])
        for line, axis, sign in self.lines:
            line.blockSignals(True)
            line.setValue(sign * lwh_m[axis] / 2)
            line.blockSignals(False)
            line.setVisible(True)
        hh = lwh_m[self.h_axis] / 2 + MARGIN_M
        hv = lwh_m[self.v_axis] / 2 + MARGIN_M
        self.setRange(xRange=(-hh, hh), yRange=(-hv, hv), padding=0.02)

    def clear_box(self) -> None:
        self.scatter.setData([], [])
        for line, _, _ in self.lines:
            line.setVisible(False)


class OrthoPanel(QtWidgets.QWidget):
    """The three views and the numeric form of the selected box.

    Signals:
        boxEdited(object): the new :class:`BoxPose` after a face drag or a numeric entry.
    """

    boxEdited = QtCore.Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.pose: BoxPose | None = None
        self._shown = False
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        views = QtWidgets.QHBoxLayout()
        self.views = {}
        for name, h, v, mirror in _VIEWS:
            view = _OrthoView(name, h, v, mirror)
            view.faceMoved.connect(self._face_moved)
            views.addWidget(view)
            self.views[name] = view
        layout.addLayout(views, 1)
        form = QtWidgets.QGridLayout()
        self.spins: dict[str, QtWidgets.QDoubleSpinBox] = {}
        fields = (("x", "m", -500, 500), ("y", "m", -500, 500), ("z", "m", -50, 50),
                  ("l", "m", 0.1, 50), ("w", "m", 0.1, 50), ("h", "m", 0.1, 20), ("yaw", "°", -180, 180))
        for i, (name, unit, lo, hi) in enumerate(fields):
            spin = QtWidgets.QDoubleSpinBox()
            spin.setRange(lo, hi)
            spin.setDecimals(1 if name == "yaw" else 2)
            spin.setSingleStep(1.0 if name == "yaw" else 0.05)
            spin.setSuffix(f" {unit}")
            spin.setKeyboardTracking(False)
            spin.editingFinished.connect(self._numeric_changed)
            form.addWidget(QtWidgets.QLabel(name), i // 3 if i < 6 else 2, 2 * (i % 3) if i < 6 else 0)
            form.addWidget(spin, i // 3 if i < 6 else 2, (2 * (i % 3) if i < 6 else 0) + 1)
            self.spins[name] = spin
        layout.addLayout(form)
        self.set_box(None, np.zeros((0, 3)))

    def set_box(self, pose: BoxPose | None, points_ego: np.ndarray) -> None:
        """Show the points around ``pose`` (None clears the views and disables the form)."""
        if pose is None and self.pose is None and self._shown:
            return  # nothing selected before or now: leave the views alone (no repaint on a frame step)
        self._shown = True
        self.pose = pose
        for spin in self.spins.values():
            spin.setEnabled(pose is not None)
        if pose is None:
            for view in self.views.values():
                view.clear_box()
            return
        local = editing.points_near_box(points_ego, pose, MARGIN_M)
        for view in self.views.values():
            view.show_box(local, pose.lwh_m)
        values = dict(zip("xyz", pose.center_m)) | dict(zip("lwh", pose.lwh_m)) | {"yaw": np.rad2deg(pose.yaw_rad)}
        for name, spin in self.spins.items():
            spin.blockSignals(True)
            spin.setValue(float(values[name]))
            spin.blockSignals(False)

    def _face_moved(self, axis: int, sign: float, coordinate_m: float) -> None:
        if self.pose is not None:
            self.boxEdited.emit(editing.set_face(self.pose, axis, sign, coordinate_m))

    def _numeric_changed(self) -> None:
        if self.pose is None:
            return
        v = {name: spin.value() for name, spin in self.spins.items()}
        new = BoxPose(np.array([v["x"], v["y"], v["z"]]), np.array([v["l"], v["w"], v["h"]]),
                      float(np.deg2rad(v["yaw"])))
        old = self.pose
        if (np.allclose(new.center_m, old.center_m, atol=5e-3) and np.allclose(new.lwh_m, old.lwh_m, atol=5e-3)
                and abs(wrap_angle(new.yaw_rad - old.yaw_rad)) < 1e-3):
            return
        self.boxEdited.emit(new)
