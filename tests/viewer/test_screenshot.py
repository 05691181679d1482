"""The whole window under Xvfb (software OpenGL): it renders the sweep and the boxes, and a mouse drag in the
bird's-eye view edits a box in labels.sqlite. On a synthetic drive and on a real SUSTech POINTS import."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui
from PySide6.QtTest import QTest
from sensorlabel.viewer.model.palette import class_color

from sensorlabel.drive import LabelStore
from tests.viewer.conftest import grab_rgb

pytestmark = pytest.mark.gl


def _color_pixels(image: np.ndarray, rgb, tol: int = 12) -> int:
    return int((np.abs(image.astype(np.int16) - np.array(rgb, np.int16)).max(axis=2) <= tol).sum())


def _drag(qtbot, widget, start: QtCore.QPointF, end: QtCore.QPointF) -> None:
    vp = widget.viewport()
    a = widget.mapFromScene(start)
    b = widget.mapFromScene(end)
    QTest.mousePress(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, a)
    for t in np.linspace(0.1, 1.0, 8):
        p = QtCore.QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y())))
        ev = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(p), vp.mapToGlobal(QtCore.QPointF(p)),
                               QtCore.Qt.MouseButton.NoButton, QtCore.Qt.MouseButton.LeftButton,
                               QtCore.Qt.KeyboardModifier.NoModifier)
        QtCore.QCoreApplication.sendEvent(vp, ev)
        qtbot.wait(5)
    QTest.mouseRelease(vp, QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier, b)


def _check_window_and_drag(qtbot, drive_path):
    from sensorlabel.viewer.app import build_window

    window, c = build_window(drive_path)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    frame = next(f for f in range(c.session.num_frames) if len(c.session.boxes(f)) and
                 c.session.frame_data(f).num_points)
    renders = window.view3d.render_count
    c.session.go_to(frame)
    qtbot.wait(200)
    assert window.view3d.render_count == renders + 1, "one OpenGL render per frame step"
    window.view3d.orbit(15, 0)  # what a mouse drag in the 3D view does
    qtbot.wait(50)
    assert window.view3d.render_count == renders + 2, "the 3D view re-renders after a camera move"
    shot = grab_rgb(window)
    assert shot.std() > 20, "the window is blank"
    view3d = grab_rgb(window.view3d)
    assert len(np.unique(view3d.reshape(-1, 3)[::7], axis=0)) > 50, "the 3D view shows no points"
    label = str(c.records.boxes.label[np.argmin(np.hypot(*c.records.boxes.center_m[:, :2].T))])
    assert _color_pixels(view3d, class_color(label)) > 20, "no box lines of the class colour in the 3D view"
    assert _color_pixels(grab_rgb(window.bev), class_color(label)) > 20, "no box outlines in the bird's-eye view"

    # Select the nearest box, zoom on it, drag it 1.5 m along ego x with the mouse.
    rec = c.records
    i = int(np.argmin(np.hypot(*rec.boxes.center_m[:, :2].T) + 1e3 * (rec.boxes.lwh_m[:, 0] < 2.5)))
    box_id, center = int(rec.box_id[i]), rec.boxes.center_m[i].copy()
    c.selection.select_track(int(rec.track_id[i]))
    window.bev.setXRange(center[0] - 8, center[0] + 8, padding=0)
    window.bev.setYRange(center[1] - 8, center[1] + 8, padding=0)
    qtbot.wait(50)
    vb = window.bev.getViewBox()
    _drag(qtbot, window.bev, vb.mapViewToScene(QtCore.QPointF(center[0], center[1])),
          vb.mapViewToScene(QtCore.QPointF(center[0] + 1.5, center[1])))
    stored = LabelStore(drive_path / "labels.sqlite").query()
    moved = stored.boxes.center_m[stored.box_id == box_id][0]
    assert np.isclose(moved[0] - center[0], 1.5, atol=0.15) and np.isclose(moved[1], center[1], atol=0.15)
    assert stored.source[stored.box_id == box_id][0] == "human"
    window.grab().save(str(drive_path.parent / "window.png"))
    window.close()


def test_window_renders_and_mouse_edit_synthetic(qtbot, drive_path):
    _check_window_and_drag(qtbot, drive_path)


@pytest.mark.realdata
def test_window_renders_and_mouse_edit_sustech(qtbot, shared_data, tmp_path):
    from sensorlabel.formats import import_drive

    path = tmp_path / "sustech.drive"
    import_drive("sustech", shared_data / "sustechpoints_example", path).close()
    _check_window_and_drag(qtbot, path)
