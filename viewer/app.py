"""The main window and :func:`run_viewer` (``sensorlabel view X.drive``).

Layout: the 3D view and the bird's-eye editor side by side, the camera panels below them; on the right the
orthographic views of the selected box with its numeric form, and the track list and review queue; at the bottom
the timeline with play and step. Every action is in a menu with its shortcut, and Help lists them all.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from .controller import SHORTCUTS
from .views.bev import BirdsEyeEditor
from .views.camera import CameraGrid
from .views.ortho import OrthoPanel
from .views.panels import ReviewQueue, Timeline, TrackList

logger = logging.getLogger(__name__)

SHORTCUT_KEYS: dict[str, str] = {s.name: s.keys for s in SHORTCUTS}

_STYLE = """
QMainWindow, QWidget { background: #16181e; color: #d5d9e2; font-size: 9pt; }
QDockWidget::title { background: #20232b; padding: 3px 6px; color: #9aa3b5; }
QTableWidget { background: #1b1e25; alternate-background-color: #20232b; gridline-color: #2a2e38;
               selection-background-color: #2f5b8a; }
QHeaderView::section { background: #242832; color: #9aa3b5; border: none; padding: 2px 4px; }
QPushButton, QToolButton, QComboBox, QSpinBox, QDoubleSpinBox { background: #262a34; border: 1px solid #353a47;
               border-radius: 3px; padding: 2px 6px; }
QPushButton:hover, QToolButton:hover { background: #30364a; }
QToolBar { background: #1c1f26; border: none; spacing: 4px; }
QStatusBar { background: #1c1f26; color: #9aa3b5; }
QTabBar::tab { background: #20232b; padding: 4px 10px; color: #9aa3b5; }
QTabBar::tab:selected { background: #2b3040; color: #e6e9ef; }
QMenuBar { background: #1c1f26; } QMenu { background: #20232b; }
QMenu::item:selected { background: #2f5b8a; }
QSplitter::handle { background: #262a34; }
QProgressBar { border: 1px solid #353a47; border-radius: 3px; text-align: center; background: #1b1e25; }
QProgressBar::chunk { background: #2f7bd0; }
"""


def _configure_pyqtgraph() -> None:
    import pyqtgraph as pg

    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, foreground=(200, 205, 215))


def build_window(drive_path: str | os.PathLike, *, camera_target_width_px: int = 480, with_3d: bool = True):
    """Open a drive and build the main window and its controller (without showing or running an event loop).

    Args:
        drive_path: the ``NAME.drive`` folder.
        camera_target_width_px: camera panels decode images at the smallest reduction at least this wide.
        with_3d: build the OpenGL 3D view (needs a display; False replaces it by an empty placeholder).

    Returns:
        (window, controller).

    Raises:
        SchemaError: not a drive.
    """
    from sensorlabel.drive import Drive

    from .controller import Controller
    from .model.session import Session

    if QtWidgets.QApplication.instance() is None:
        raise RuntimeError("create a QApplication before build_window")
    _configure_pyqtgraph()
    drive = Drive.open(drive_path)
    session = Session(drive, camera_target_width_px=camera_target_width_px)
    window = MainWindow(session, with_3d=with_3d)
    controller = Controller(session, window)
    window.attach(controller)
    controller.refresh_frame()
    controller.refresh_overview()
    return window, controller


class MainWindow(QtWidgets.QMainWindow):
    """The viewer's window; the views are attributes (view3d, bev, ortho, cameras, timeline, tracks, review)."""

    def __init__(self, session, with_3d: bool = True):
        super().__init__()
        self.session = session
        drive = session.drive
        self.setWindowTitle(f"sensorlabel - {drive.name} ({drive.source_format}, {drive.num_frames} frames)")
        self.setStyleSheet(_STYLE)
        if with_3d:
            from .views.view3d import View3D

            self.view3d = View3D()
        else:
            self.view3d = _No3D()
        self.bev = BirdsEyeEditor()
        self.cameras = CameraGrid(drive.camera_names)
        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        top.addWidget(self.view3d if with_3d else QtWidgets.QLabel("3D view off"))
        top.addWidget(self.bev)
        top.setSizes([640, 560])
        center = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        center.addWidget(top)
        center.addWidget(self.cameras)
        center.setSizes([520, 330] if drive.camera_names else [800, 0])
        self.setCentralWidget(center)

        self.ortho = OrthoPanel()
        self.tracks = TrackList()
        self.review = ReviewQueue()
        tabs = QtWidgets.QTabWidget()
        tabs.addTab(self.review, "Review queue")
        tabs.addTab(self.tracks, "Tracks")
        right = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        right.addWidget(self.ortho)
        right.addWidget(tabs)
        right.setSizes([330, 420])
        right.setMaximumWidth(440)
        dock = QtWidgets.QDockWidget("Selected box  ·  tracks  ·  review", self)
        dock.setObjectName("side")
        dock.setWidget(right)
        dock.setMaximumWidth(460)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)

        self.timeline = Timeline()
        tl = QtWidgets.QDockWidget("Timeline  (tracks over frames; yellow marks = keyframes)", self)
        tl.setObjectName("timeline")
        tl.setWidget(self.timeline)
        tl.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.BottomDockWidgetArea, tl)

        self.status = QtWidgets.QLabel("")
        self.statusBar().addWidget(self.status, 1)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setMaximumWidth(220)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self.show_progress(-1, -1)
        self.actions_by_name: dict[str, QtGui.QAction] = {}
        self.resize(1600, 1000)

    def attach(self, controller) -> None:
        """Create the menus, the toolbar and the shortcuts, wired to ``controller``."""
        self.controller = controller
        menus = {name: self.menuBar().addMenu(name) for name in ("File", "Edit", "Review", "View", "Tools")}
        quit_action = menus["File"].addAction("Quit")
        quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        for sc in SHORTCUTS:
            action = QtGui.QAction(sc.text, self)
            action.setShortcut(QtGui.QKeySequence(sc.keys))
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(getattr(controller, sc.name))
            menus[sc.menu].addAction(action)
            self.addAction(action)
            self.actions_by_name[sc.name] = action
        help_menu = self.menuBar().addMenu("Help")
        help_menu.addAction("Keyboard shortcuts", self.show_shortcuts)
        self.cancel_button.clicked.connect(controller.cancel_propagation)

        bar = self.addToolBar("frames")
        bar.setObjectName("frames")
        bar.setMovable(False)
        for name, text in (("previous_frame", "◀"), ("toggle_play", "▶ / ❚❚"), ("next_frame", "▶")):
            bar.addAction(text, getattr(controller, name)).setToolTip(self.actions_by_name[name].text())
        self.frame_spin = QtWidgets.QSpinBox()
        self.frame_spin.setRange(0, max(self.session.num_frames - 1, 0))
        self.frame_spin.setPrefix("frame ")
        self.frame_spin.setKeyboardTracking(False)
        self.frame_spin.valueChanged.connect(self.session.go_to)
        bar.addWidget(self.frame_spin)
        bar.addSeparator()
        bar.addWidget(QtWidgets.QLabel(" colour "))
        self.color_combo = QtWidgets.QComboBox()
        self.color_combo.addItems(["height", "intensity", "camera"])
        self.color_combo.textActivated.connect(controller.set_color_mode)
        bar.addWidget(self.color_combo)
        bar.addWidget(QtWidgets.QLabel(" sweeps "))
        agg = QtWidgets.QSpinBox()
        agg.setRange(1, 10)
        agg.setToolTip("aggregate this many sweeps (motion-compensated, moving objects transferred)")
        agg.valueChanged.connect(controller.set_aggregate)
        bar.addWidget(agg)
        snap = QtWidgets.QCheckBox("yaw snap")
        snap.toggled.connect(lambda on: setattr(self.bev, "snap_enabled", on))
        bar.addWidget(snap)
        bar.addSeparator()
        for name, text in (("start_new_box", "New box"), ("fit_selected", "Fit"), ("mark_keyframe", "Keyframe"),
                           ("copy_to_next_frame", "Copy →"), ("delete_selected", "Delete"),
                           ("start_propagation", "Propagate")):
            bar.addAction(text, getattr(controller, name)).setToolTip(
                f"{self.actions_by_name[name].text()} ({SHORTCUT_KEYS[name]})")

    def show_shortcuts(self) -> None:
        QtWidgets.QMessageBox.information(self, "Keyboard shortcuts", shortcuts_html())

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def show_progress(self, done: int, total: int) -> None:
        running = total > 0
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if running:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def update_status(self, session, records, selected: int) -> None:
        data = session.frame_data()
        t = (data.timestamp_ns - int(session.drive.frame_timestamps_ns[0])) / 1e9
        text = (f"frame {session.frame}/{session.num_frames - 1}  t={t:.2f} s  ·  {data.num_points:,} points  ·  "
                f"{len(records)} boxes")
        if selected >= 0:
            b = records.boxes
            text += (f"  ·  selected: track {int(b.track_id[selected])} {b.label[selected]} "
                     f"({records.source[selected]}, conf {records.confidence[selected]:.2f}"
                     f"{', reviewed' if records.reviewed[selected] else ''})")
        self.status.setText(text)
        if hasattr(self, "frame_spin") and self.frame_spin.value() != session.frame:
            self.frame_spin.blockSignals(True)
            self.frame_spin.setValue(session.frame)
            self.frame_spin.blockSignals(False)

    def update_undo(self, stack) -> None:
        if not self.actions_by_name:
            return
        undo, redo = self.actions_by_name["undo"], self.actions_by_name["redo"]
        undo.setText(f"Undo {stack.undo_text}" if stack.can_undo else "Undo")
        redo.setText(f"Redo {stack.redo_text}" if stack.can_redo else "Redo")

    def event(self, event) -> bool:
        handled = super().event(event)
        if event.type() == QtCore.QEvent.Type.UpdateRequest and hasattr(self, "controller"):
            self.controller.prefetch_next()  # every view has painted: the worker may start on the next frame
        return handled

    def closeEvent(self, event) -> None:
        self.session.close()
        super().closeEvent(event)


class _No3D:
    """Stand-in for the 3D view when OpenGL is off (benchmarks of the 2D views, headless tests)."""

    def set_points(self, *args) -> None:
        pass

    def set_boxes(self, *args) -> None:
        pass

    def start_render(self) -> None:
        pass


def shortcuts_html() -> str:
    """The shortcut table as HTML (Help menu)."""
    rows = "".join(f"<tr><td><b>{s.keys}</b></td><td>{s.text}</td></tr>" for s in SHORTCUTS)
    return f"<table cellspacing=4>{rows}</table>"


def shortcuts_markdown() -> str:
    """The shortcut table as Markdown (the README's section)."""
    lines = ["| key | action |", "|---|---|"] + [f"| `{s.keys}` | {s.text} |" for s in SHORTCUTS]
    return "\n".join(lines)


def share_gl_contexts() -> None:
    """Make every OpenGL context share resources. pyqtgraph compiles each GL item's shader program once, in the
    first context; a second 3D view (a reopened window) can use it only within one share group. Call before the
    QApplication exists."""
    QtCore.QCoreApplication.setAttribute(QtCore.Qt.ApplicationAttribute.AA_ShareOpenGLContexts)


def run_viewer(path: str | os.PathLike) -> int:
    """Open the viewer on a drive and run the Qt event loop until the window closes.

    Args:
        path: the ``NAME.drive`` folder.

    Returns:
        The event loop's exit code.

    Raises:
        SchemaError: not a drive.
    """
    if QtWidgets.QApplication.instance() is None:
        share_gl_contexts()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    app.setApplicationName("sensorlabel")
    window, _controller = build_window(Path(path))  # the window keeps the controller
    window.show()
    logger.info("viewer on %s", path)
    return int(app.exec())


