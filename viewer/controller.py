"""The controller: connects the views' signals to the model and runs every operation as an undoable command.

No polling: views tell the controller what the user did (signals), the controller runs a command through the
:class:`~.model.commands.UndoStack` (every write is committed at once), and the stack's change notification
redraws. Propagation runs on a QThread with a progress bar and a cancel button; its notification reaches the UI
thread through a queued signal.

Every operation is also a plain method (``delete_selected()``, ``set_class("Car")``, ``edit_selected(pose)`` ...)
so that tests and scripts can drive the viewer without dialogs.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore, QtWidgets

from sensorlabel.errors import SensorlabelError
from sensorlabel.propagation import review_queue

from .model import editing, operations
from .model.commands import UndoStack
from .model.editing import BoxPose
from .model.palette import class_colors
from .model.selection import Selection
from .model.session import COLOR_MODES, Session

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shortcut:
    """One action: its name (method of :class:`Controller`), key sequence, menu and description."""

    name: str
    keys: str
    menu: str
    text: str


#: Every action with its keyboard shortcut; the Help menu and the README list this table.
SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("start_new_box", "N", "Edit", "New box: click in the bird's-eye view, then it is fitted to the points"),
    Shortcut("delete_selected", "Del", "Edit", "Delete the selected box"),
    Shortcut("ask_class", "C", "Edit", "Change the class of the selected track"),
    Shortcut("ask_track", "T", "Edit", "Move the selected box to another track"),
    Shortcut("ask_merge", "M", "Edit", "Merge another track into the selected track"),
    Shortcut("split_selected", "S", "Edit", "Split the selected track: this frame on becomes a new track"),
    Shortcut("mark_keyframe", "K", "Edit", "Mark keyframe: make the selected box a human box"),
    Shortcut("fit_selected", "F", "Edit", "Fit the selected box to its points"),
    Shortcut("copy_to_next_frame", "Ctrl+D", "Edit", "Copy the selected box to the next frame and go there"),
    Shortcut("accept_review", "A", "Review", "Accept the current review entry (or the selected box)"),
    Shortcut("reject_review", "R", "Review", "Reject (delete) the current review entry (or the selected box)"),
    Shortcut("next_review", "Ctrl+Right", "Review", "Go to the next review entry"),
    Shortcut("undo", "Ctrl+Z", "Edit", "Undo the last operation"),
    Shortcut("redo", "Ctrl+Shift+Z", "Edit", "Redo"),
    Shortcut("start_propagation", "P", "Tools", "Propagate keyframes in the background (progress, cancel)"),
    Shortcut("cancel_propagation", "Esc", "Tools", "Cancel propagation / new box; clear the selection"),
    Shortcut("next_frame", "Right", "View", "Next frame"),
    Shortcut("previous_frame", "Left", "View", "Previous frame"),
    Shortcut("toggle_play", "Space", "View", "Play / pause"),
    Shortcut("select_next_box", "Tab", "View", "Select the next box of this frame"),
    Shortcut("toggle_snap", "Y", "View", "Yaw snapping on/off (5 degree steps; hold Shift while rotating)"),
    Shortcut("color_height", "1", "View", "Colour points by height"),
    Shortcut("color_intensity", "2", "View", "Colour points by intensity"),
    Shortcut("color_camera", "3", "View", "Colour points by camera RGB"),
)


class _PropagationWorker(QtCore.QObject):
    progress = QtCore.Signal(int, int)
    finished = QtCore.Signal(object)
    failed = QtCore.Signal(str)

    def __init__(self, stack: UndoStack, drive):
        super().__init__()
        self.cancel_event = threading.Event()
        self._stack, self._drive = stack, drive

    @QtCore.Slot()
    def run(self) -> None:
        command = operations.propagate(self._drive, progress=lambda d, t: self.progress.emit(int(d), int(t)),
                                       cancel=self.cancel_event.is_set)
        try:
            self.finished.emit(self._stack.execute(command))
        except Exception as exc:  # reported in the UI; the store has rolled back whatever failed
            logger.exception("propagation failed")
            self.failed.emit(str(exc))


class Controller(QtCore.QObject):
    """Glue between a :class:`Session`, the undo stack and the main window's views.

    Signals:
        labelsChanged: emitted (queued, from any thread) after every change of the labels through the stack.
        message(str): a status line for the user.
        propagationFinished(object): the PropagationReport (``cancelled`` set when the user cancelled).
    """

    labelsChanged = QtCore.Signal()
    message = QtCore.Signal(str)
    propagationFinished = QtCore.Signal(object)

    def __init__(self, session: Session, window):
        super().__init__()
        self.session = session
        self.window = window
        self.stack = UndoStack(session.store)
        self.selection = Selection()
        self.color_mode = "height"
        self.new_box_label = "Car"
        self.records = session.boxes()
        self._thread: QtCore.QThread | None = None
        self._worker: _PropagationWorker | None = None
        self._play = QtCore.QTimer(self)
        self._play.setInterval(100)
        self._play.timeout.connect(self._play_step)
        self.stack.subscribe(self.labelsChanged.emit)
        self.labelsChanged.connect(self.refresh_labels)
        self._prefetch_pending = False
        self.prefetch_future = None  # the frame being prepared ahead (a concurrent.futures.Future), if any
        self._direction = 1  # of the last step: the frame to prefetch is the next one that way
        self._last_frame = session.frame
        session.subscribe_frame(self._frame_changed)
        self.selection.subscribe(lambda _t: self.refresh_boxes())
        w = window
        w.bev.boxClicked.connect(self._select_index)
        w.bev.boxEdited.connect(self.edit_selected)
        w.bev.newBoxRequested.connect(lambda x, y: self.new_box_at(np.array([x, y])))
        w.ortho.boxEdited.connect(self.edit_selected)
        w.cameras.boxClicked.connect(self._select_index)
        w.timeline.frameRequested.connect(self.session.go_to)
        w.tracks.trackActivated.connect(self.selection.select_track)
        w.review.entryActivated.connect(self._review_activated)
        w.review.acceptRequested.connect(lambda b: self._run(operations.accept([b])))
        w.review.rejectRequested.connect(lambda b: self._run(operations.reject([b])))
        self.message.connect(w.show_message)

    # ----- drawing ---------------------------------------------------------------------------------------------------
    def _frame_changed(self, frame: int) -> None:
        if frame != self._last_frame:
            self._direction = 1 if frame > self._last_frame else -1
        self._last_frame = frame
        self.refresh_frame()

    def refresh_frame(self) -> None:
        """Draw the current frame: its prepared sensor data (cached, usually prefetched), then its boxes; then mark
        the next frames for prefetching (the window starts them once it has painted this one: :meth:`prefetch_next`)."""
        s, w = self.session, self.window
        render = s.frame_render(color_mode=self.color_mode)
        w.view3d.set_points(s.frame_data().points_ego, render.rgba)
        w.bev.set_raster(render.bev_rgb32)
        w.timeline.set_frame(s.frame)
        self.refresh_boxes()
        self._prefetch_pending = True  # started by the window once it has painted this frame (prefetch_next)

    def prefetch_next(self) -> None:
        """Start preparing the next two frames in the stepping direction, with their boxes as stored now (the window
        calls this after painting, so that the worker does not compete with the paint of the frame on screen)."""
        if not self._prefetch_pending:
            return
        self._prefetch_pending = False
        s = self.session
        # Two frames ahead: when the user holds the step key, the worker prepares frame +2 while the UI thread
        # draws frame +1 (one worker thread, so they are prepared in this order).
        for ahead in (1, 2):
            nxt = s.frame + ahead * self._direction
            if 0 <= nxt < s.num_frames:
                future = s.prefetch(nxt, self.color_mode, s.boxes(nxt).boxes)
                self.prefetch_future = future or self.prefetch_future

    def refresh_boxes(self) -> None:
        """Draw the current frame's boxes (read from the store) in every view."""
        s = self.session
        self.records = s.boxes()
        boxes = self.records.boxes
        rgb = class_colors(boxes.label)
        sel = self.selection.index_in(self.records)
        w = self.window
        w.view3d.set_boxes(boxes, rgb, sel)
        w.view3d.start_render()  # rasterised by the GL threads while the other views are prepared below
        w.bev.set_boxes(boxes, rgb, sel)
        data = s.frame_data()
        w.cameras.set_frame(data.cameras, s.frame_render(color_mode=self.color_mode).camera_images,
                            s.wireframes(boxes), rgb, sel)
        w.ortho.set_box(BoxPose.from_boxes(boxes, sel) if sel >= 0 else None, data.points_ego)
        if self.selection.track_id is not None:
            w.tracks.select_track(self.selection.track_id)
        w.update_status(s, self.records, sel)
        w.update_undo(self.stack)

    def refresh_labels(self) -> None:
        """After an edit: the boxes, the timeline, the track list and the review queue."""
        self.refresh_boxes()
        self.refresh_overview()

    def refresh_overview(self) -> None:
        s, w = self.session, self.window
        store = s.store
        tracks = store.tracks()
        all_boxes = store.query()
        track_ids, rows = np.unique(all_boxes.track_id, return_inverse=True)
        w.timeline.set_data(s.num_frames, track_ids, all_boxes.frame, rows.reshape(-1),
                            all_boxes.source == "human", {t.track_id: t.label for t in tracks},
                            np.unique(all_boxes.frame[all_boxes.source == "human"]))
        w.tracks.set_tracks(tracks, all_boxes)
        queue = review_queue(store)
        w.review.set_queue(queue[: w.review.LIMIT], len(queue))

    # ----- running commands ---------------------------------------------------------------------------------------
    def _run(self, command) -> tuple[bool, object]:
        """Execute a command; a refused edit (SensorlabelError) is reported, not raised. Returns (ok, result)."""
        try:
            result = self.stack.execute(command)
        except SensorlabelError as exc:
            self.message.emit(f"{command.description}: {exc}")
            return False, None
        self.message.emit(command.description)
        return True, result

    def _selected(self) -> int:
        index = self.selection.index_in(self.records)
        if index < 0:
            self.message.emit("select a box first")
        return index

    def _select_index(self, index: int) -> None:
        self.selection.select_index(self.records, index)

    # ----- operations (also the public, dialog-free API) ---------------------------------------------------------
    def edit_selected(self, pose: BoxPose) -> None:
        """Commit a new pose for the selected box (move, rotate, resize, numeric entry)."""
        index = self._selected()
        if index >= 0:
            self._run(operations.update_box(int(self.records.box_id[index]), pose))

    def start_new_box(self) -> None:
        self.window.bev.start_new_box()
        self.message.emit(f"click where the new {self.new_box_label} is (Esc cancels)")

    def new_box_at(self, xy_m: np.ndarray, label: str | None = None) -> int:
        """Create a box at ego x-y, fitted to the points there, in a new track; it becomes selected.

        Returns:
            The new box id (-1 when refused).
        """
        label = label or self.new_box_label
        pose = editing.new_box_at(self.session.frame_data().points_ego, np.asarray(xy_m, dtype=np.float64), label)
        ok, box_id = self._run(operations.create_box(self.session.frame, pose, label))
        if not ok:
            return -1
        rec = self.session.boxes()
        hit = np.flatnonzero(rec.box_id == box_id)
        if len(hit):
            self.selection.select_track(int(rec.track_id[hit[0]]))
        return int(box_id)

    def delete_selected(self) -> None:
        index = self._selected()
        if index >= 0:
            self._run(operations.delete_boxes([self.records.box_id[index]]))

    def set_class(self, label: str) -> None:
        """Change the class of the selected track."""
        index = self._selected()
        if index >= 0 and label:
            self.new_box_label = label
            self._run(operations.set_class(int(self.records.track_id[index]), label))

    def ask_class(self) -> None:
        index = self._selected()
        if index < 0:
            return
        known = sorted({t.label for t in self.session.store.tracks()} | {"Car", "Pedestrian", "Cyclist"})
        current = str(self.records.boxes.label[index])
        label, ok = QtWidgets.QInputDialog.getItem(self.window, "Class", "Class of the track:", known,
                                                   known.index(current) if current in known else 0, True)
        if ok:
            self.set_class(label.strip())

    def change_track(self, track_id: int) -> None:
        """Move the selected box to ``track_id``; the selection follows it."""
        index = self._selected()
        if index >= 0 and self._run(operations.change_track(int(self.records.box_id[index]), track_id))[0]:
            self.selection.select_track(track_id)

    def ask_track(self) -> None:
        if self._selected() >= 0:
            value, ok = QtWidgets.QInputDialog.getInt(self.window, "Track", "Move the box to track:", 0, 0, 2**31 - 1)
            if ok:
                self.change_track(value)

    def merge_into_selected(self, other_track_id: int) -> None:
        """Merge ``other_track_id`` into the selected track."""
        index = self._selected()
        if index >= 0:
            self._run(operations.merge_tracks(int(self.records.track_id[index]), other_track_id))

    def ask_merge(self) -> None:
        if self._selected() >= 0:
            value, ok = QtWidgets.QInputDialog.getInt(self.window, "Merge", "Merge this track into the selected one:",
                                                      0, 0, 2**31 - 1)
            if ok:
                self.merge_into_selected(value)

    def split_selected(self) -> int:
        """Split the selected track at the current frame; the new track (this frame on) becomes selected."""
        index = self._selected()
        if index < 0:
            return -1
        ok, new = self._run(operations.split_track(int(self.records.track_id[index]), self.session.frame))
        if ok:
            self.selection.select_track(int(new))
            return int(new)
        return -1

    def mark_keyframe(self) -> None:
        index = self._selected()
        if index >= 0:
            self._run(operations.mark_keyframe(int(self.records.box_id[index])))

    def fit_selected(self) -> None:
        index = self._selected()
        if index >= 0:
            pose = editing.fit_to_points(BoxPose.from_boxes(self.records.boxes, index),
                                         self.session.frame_data().points_ego)
            self._run(operations.update_box(int(self.records.box_id[index]), pose, "fit"))

    def copy_to_next_frame(self) -> None:
        index = self._selected()
        s = self.session
        if index < 0 or s.frame + 1 >= s.num_frames:
            return
        ts = s.drive.frame_timestamps_ns
        poses = s.drive.world_SE3_ego(np.array([ts[s.frame], ts[s.frame + 1]]))
        to_SE3_from = poses[1].inverse().compose(poses[0])
        if self._run(operations.copy_to_frame(self.records, index, s.frame + 1, to_SE3_from))[0]:
            s.step(1)

    def _review_target(self) -> int:
        box = self.window.review.current_box()
        if box < 0:
            index = self._selected()
            box = int(self.records.box_id[index]) if index >= 0 else -1
        return box

    def accept_review(self) -> None:
        box = self._review_target()
        if box >= 0:
            self._run(operations.accept([box]))
            self.next_review()

    def reject_review(self) -> None:
        box = self._review_target()
        if box >= 0:
            self._run(operations.reject([box]))
            self.next_review()

    def next_review(self) -> None:
        queue = self.window.review
        if len(queue.box_ids):
            self._review_activated(int(queue.frames[0]), int(queue.box_ids[0]))

    def _review_activated(self, frame: int, box_id: int) -> None:
        self.session.go_to(frame)
        rec = self.session.boxes(frame)
        hit = np.flatnonzero(rec.box_id == box_id)
        if len(hit):
            self.selection.select_track(int(rec.track_id[hit[0]]))
            self.window.bev.center_on(rec.boxes.center_m[hit[0], :2])

    def undo(self) -> None:
        try:
            if self.stack.undo():
                self.message.emit("undone")
        except SensorlabelError as exc:
            self.message.emit(str(exc))

    def redo(self) -> None:
        try:
            if self.stack.redo():
                self.message.emit("redone")
        except SensorlabelError as exc:
            self.message.emit(str(exc))

    # ----- propagation ---------------------------------------------------------------------------------------------
    def start_propagation(self) -> None:
        """Propagate every keyframed track on a worker thread; progress and cancel are in the status bar."""
        if self._thread is not None:
            self.message.emit("propagation is already running")
            return
        self._thread = QtCore.QThread(self)
        self._worker = _PropagationWorker(self.stack, self.session.drive)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.window.show_progress)
        self._worker.finished.connect(self._propagation_done)
        self._worker.failed.connect(self._propagation_failed)
        self.window.show_progress(0, 1)
        self._thread.start()
        self.message.emit("propagating keyframes ... (Esc cancels)")

    def cancel_propagation(self) -> None:
        if self._worker is not None:
            self._worker.cancel_event.set()
            self.message.emit("cancelling propagation ...")
        else:
            self.window.bev.new_box_mode = False
            self.selection.clear()

    def _stop_thread(self) -> None:
        self._thread.quit()
        self._thread.wait()
        self._thread = self._worker = None
        self.window.show_progress(-1, -1)

    def _propagation_done(self, report) -> None:
        self._stop_thread()
        if report.cancelled:
            self.message.emit("propagation cancelled: nothing written")
        else:
            self.message.emit(f"propagation: {report.written} from {report.keyframes} keyframes "
                              f"in {report.seconds:.1f} s (Ctrl+Z undoes it)")
        self.propagationFinished.emit(report)

    def _propagation_failed(self, text: str) -> None:
        self._stop_thread()
        self.message.emit(f"propagation failed: {text}")

    # ----- view ------------------------------------------------------------------------------------------------------
    def next_frame(self) -> None:
        self.session.step(1)

    def previous_frame(self) -> None:
        self.session.step(-1)

    def toggle_play(self) -> None:
        if self._play.isActive():
            self._play.stop()
        else:
            self._play.start()

    def _play_step(self) -> None:
        if self.session.frame + 1 >= self.session.num_frames:
            self._play.stop()
        else:
            self.session.step(1)

    def select_next_box(self) -> None:
        n = len(self.records)
        if n:
            self._select_index((self.selection.index_in(self.records) + 1) % n)

    def toggle_snap(self) -> None:
        bev = self.window.bev
        bev.snap_enabled = not bev.snap_enabled
        self.message.emit(f"yaw snapping {'on' if bev.snap_enabled else 'off'} ({bev.yaw_snap_deg:g} degree steps)")

    def set_color_mode(self, mode: str) -> None:
        if mode not in COLOR_MODES:
            raise ValueError(f"colour mode must be one of {COLOR_MODES}, got {mode!r}")
        self.color_mode = mode
        self.window.color_combo.setCurrentText(mode)
        self.refresh_frame()

    def color_height(self) -> None:
        self.set_color_mode("height")

    def color_intensity(self) -> None:
        self.set_color_mode("intensity")

    def color_camera(self) -> None:
        self.set_color_mode("camera")

    def set_aggregate(self, sweeps: int) -> None:
        self.session.set_aggregate(sweeps)
        self.refresh_frame()
