"""Timeline, track list and review queue."""

from __future__ import annotations

import json

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from ..model.palette import class_color


class Timeline(QtWidgets.QWidget):
    """Frames across; one row per track showing where it has boxes (human keyframes brighter), keyframe markers
    on top, and the current frame as a cursor. Click or drag to go to a frame.

    Signals:
        frameRequested(int)
    """

    frameRequested = QtCore.Signal(int)
    _LABEL_PX = 14  # the "frame N / M" row
    _HEADER_PX = 26  # label row + keyframe marker row, then one row per track

    def __init__(self, parent=None):
        super().__init__(parent)
        self.num_frames = 1
        self.frame = 0
        self.keyframes = np.zeros(0, np.int64)
        self._image: QtGui.QImage | None = None
        self.setMinimumHeight(80)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)

    def set_data(self, num_frames: int, track_ids: np.ndarray, frames: np.ndarray, rows: np.ndarray,
                 human: np.ndarray, labels: dict[int, str], keyframes: np.ndarray) -> None:
        """Presence of T tracks over F frames from the stored boxes: track ids (T,), then per box (N,) its frame, its
        row into the track ids and whether it is human; the track labels, and the keyframes (K,)."""
        self.num_frames = max(int(num_frames), 1)
        self.keyframes = keyframes
        t = max(len(track_ids), 1)
        grid = np.zeros((t, self.num_frames, 4), np.uint8)
        grid[:] = (30, 33, 41, 255)
        if len(frames):
            colors = np.array([class_color(labels.get(int(tid), "")) for tid in track_ids], np.uint8)[rows]
            dim = (colors.astype(np.float32) * np.where(human, 1.0, 0.55)[:, None]).astype(np.uint8)
            grid[rows, frames, :3] = dim
            grid[rows[human], frames[human], :3] = 255
        rgba = np.ascontiguousarray(grid)
        self._image = QtGui.QImage(rgba.data, self.num_frames, t, 4 * self.num_frames,
                                   QtGui.QImage.Format.Format_RGBA8888).copy()
        self.update()

    def set_frame(self, frame: int) -> None:
        self.frame = int(frame)
        self.update()

    def _x(self, frame: float) -> float:
        return (frame + 0.5) * self.width() / self.num_frames

    def paintEvent(self, event) -> None:
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(22, 24, 30))
        body = QtCore.QRect(0, self._HEADER_PX, self.width(), self.height() - self._HEADER_PX)
        if self._image is not None:
            p.drawImage(body, self._image)
        # Keyframe markers in their own row under the label row, so neither hides the other.
        top, tip = self._LABEL_PX + 1, self._HEADER_PX - 2
        p.setPen(QtGui.QPen(QtGui.QColor(255, 210, 80)))
        p.setBrush(QtGui.QColor(255, 210, 80))
        for k in self.keyframes:
            x = self._x(k)
            p.drawPolygon(QtGui.QPolygonF([QtCore.QPointF(x - 4, top), QtCore.QPointF(x + 4, top),
                                           QtCore.QPointF(x, tip)]))
        x = self._x(self.frame)
        p.setPen(QtGui.QPen(QtGui.QColor(80, 180, 255), 2))
        p.drawLine(QtCore.QPointF(x, 0), QtCore.QPointF(x, self.height()))
        # The label last, on its own background: the frame cursor passes under it, not through it.
        text = f"frame {self.frame} / {self.num_frames - 1}"
        box = QtCore.QRectF(p.fontMetrics().boundingRect(text)).adjusted(-3, 0, 3, 0)
        box.moveTopLeft(QtCore.QPointF(2, (self._LABEL_PX - box.height()) / 2))
        p.fillRect(box, QtGui.QColor(22, 24, 30))
        p.setPen(QtGui.QColor(200, 205, 215))
        p.drawText(box, QtCore.Qt.AlignmentFlag.AlignCenter, text)
        p.end()

    def _frame_at(self, x: float) -> int:
        return int(np.clip(np.floor(x / max(self.width(), 1) * self.num_frames), 0, self.num_frames - 1))

    def mousePressEvent(self, event) -> None:
        self.frameRequested.emit(self._frame_at(event.position().x()))

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & QtCore.Qt.MouseButton.LeftButton:
            self.frameRequested.emit(self._frame_at(event.position().x()))


def _table(headers: list[str]) -> QtWidgets.QTableWidget:
    table = QtWidgets.QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(20)
    table.horizontalHeader().setStretchLastSection(True)
    table.setAlternatingRowColors(True)
    return table


def _item(value, align_right: bool = False) -> QtWidgets.QTableWidgetItem:
    item = QtWidgets.QTableWidgetItem()
    item.setData(QtCore.Qt.ItemDataRole.DisplayRole, value)
    if align_right:
        item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
    return item


class TrackList(QtWidgets.QWidget):
    """Every track: id, class, boxes, sources, mean confidence and attributes.

    Signals:
        trackActivated(int): a track row was clicked.
    """

    trackActivated = QtCore.Signal(int)
    HEADERS = ["track", "class", "boxes", "sources", "conf", "attributes"]

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = _table(self.HEADERS)
        self.table.setSortingEnabled(True)
        self.table.cellClicked.connect(lambda r, _c: self.trackActivated.emit(int(self.table.item(r, 0).text())))
        layout.addWidget(self.table)

    def set_tracks(self, tracks, records) -> None:
        """Fill from ``store.tracks()`` and ``store.query()`` (all boxes), aggregated with numpy."""
        ids = np.array([t.track_id for t in tracks], np.int64)
        count = np.zeros(len(ids), np.int64)
        conf = np.zeros(len(ids))
        sources: dict[int, str] = {}
        if len(records) and len(ids):
            row = np.searchsorted(ids, records.track_id)
            ok = (row < len(ids)) & (ids[np.minimum(row, len(ids) - 1)] == records.track_id)
            count = np.bincount(row[ok], minlength=len(ids))
            conf = np.bincount(row[ok], weights=records.confidence[ok], minlength=len(ids)) / np.maximum(count, 1)
            pairs = np.unique(np.stack([row[ok], np.unique(records.source, return_inverse=True)[1].reshape(-1)[ok]],
                                       1), axis=0)
            names = np.unique(records.source)
            for r, s in pairs:
                sources[int(r)] = (sources.get(int(r), "") + " " + str(names[s])).strip()
        table = self.table
        table.setSortingEnabled(False)
        table.setRowCount(len(tracks))
        for r, t in enumerate(tracks):
            color = QtGui.QColor(*class_color(t.label))
            label = _item(t.label)
            label.setForeground(color)
            cells = [_item(int(t.track_id), True), label, _item(int(count[r]), True), _item(sources.get(r, "")),
                     _item(f"{conf[r]:.2f}", True), _item(json.dumps(t.attributes) if t.attributes else "")]
            for c, cell in enumerate(cells):
                table.setItem(r, c, cell)
        table.setSortingEnabled(True)
        table.resizeColumnsToContents()

    def select_track(self, track_id: int) -> None:
        for r in range(self.table.rowCount()):
            if int(self.table.item(r, 0).text()) == track_id:
                self.table.blockSignals(True)
                self.table.selectRow(r)
                self.table.blockSignals(False)
                return
        self.table.clearSelection()


class ReviewQueue(QtWidgets.QWidget):
    """Unreviewed automated boxes, lowest confidence first, with accept and reject.

    Signals:
        entryActivated(int, int): frame and box id of a clicked entry.
        acceptRequested(int), rejectRequested(int): box id.
    """

    entryActivated = QtCore.Signal(int, int)
    acceptRequested = QtCore.Signal(int)
    rejectRequested = QtCore.Signal(int)
    HEADERS = ["conf", "frame", "track", "class", "source"]
    LIMIT = 500

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary = QtWidgets.QLabel("")
        layout.addWidget(self.summary)
        self.table = _table(self.HEADERS)
        self.table.cellClicked.connect(self._activated)
        layout.addWidget(self.table)
        buttons = QtWidgets.QHBoxLayout()
        self.accept_button = QtWidgets.QPushButton("Accept (A)")
        self.reject_button = QtWidgets.QPushButton("Reject (R)")
        self.accept_button.clicked.connect(lambda: self._act(self.acceptRequested))
        self.reject_button.clicked.connect(lambda: self._act(self.rejectRequested))
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.reject_button)
        layout.addLayout(buttons)
        self.frames = np.zeros(0, np.int64)
        self.box_ids = np.zeros(0, np.int64)

    def set_queue(self, records, total: int) -> None:
        """Show BoxRecords in review order (``total`` is the full queue length)."""
        self.frames, self.box_ids = records.frame, records.box_id
        self.summary.setText(f"{total} boxes to review" + (f" (first {len(records)} shown)" if total > len(records)
                                                           else ""))
        table = self.table
        table.setRowCount(len(records))
        for r in range(len(records)):
            conf = float(records.confidence[r])
            cells = [_item(f"{conf:.2f}", True), _item(int(records.frame[r]), True),
                     _item(int(records.track_id[r]), True), _item(str(records.boxes.label[r])),
                     _item(str(records.source[r]))]
            cells[0].setForeground(QtGui.QColor(255, int(80 + 175 * conf), 80))
            for c, cell in enumerate(cells):
                table.setItem(r, c, cell)

    def current_box(self) -> int:
        """Box id of the selected entry (the first entry when none is selected), -1 when the queue is empty."""
        if len(self.box_ids) == 0:
            return -1
        rows = self.table.selectionModel().selectedRows()
        return int(self.box_ids[rows[0].row() if rows else 0])

    def _activated(self, row: int, _col: int) -> None:
        self.entryActivated.emit(int(self.frames[row]), int(self.box_ids[row]))

    def _act(self, signal) -> None:
        box = self.current_box()
        if box >= 0:
            signal.emit(box)
