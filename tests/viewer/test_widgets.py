"""pytest-qt: the window's views and the controller, without OpenGL (the 3D view is covered by the GL tests)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore

from sensorlabel.drive import LabelStore
from tests.viewer.conftest import grab_rgb


@pytest.fixture
def app_window(qtbot, drive_path):
    from sensorlabel.viewer.app import build_window

    window, controller = build_window(drive_path, with_3d=False)
    qtbot.addWidget(window)
    window.show()
    return window, controller


def _stored(drive_path):
    return LabelStore(drive_path / "labels.sqlite").query()


def test_controller_operations_commit_and_undo(app_window, drive_path):
    window, c = app_window
    n0 = len(_stored(drive_path))
    c.select_next_box()
    track = c.selection.track_id
    assert track is not None and window.ortho.pose is not None
    c.delete_selected()
    assert len(_stored(drive_path)) == n0 - 1
    window.actions_by_name["undo"].trigger()
    assert len(_stored(drive_path)) == n0
    assert window.actions_by_name["undo"].text() == "Undo"
    window.actions_by_name["redo"].trigger()
    assert len(_stored(drive_path)) == n0 - 1
    c.undo()
    c.session.go_to(1)
    c.selection.select_track(track)
    c.set_class("Truck")
    assert {t.label for t in LabelStore(drive_path / "labels.sqlite").tracks() if t.track_id == track} == {"Truck"}
    new_track = c.split_selected()
    stored = _stored(drive_path)
    assert set(stored.frame[stored.track_id == new_track]) <= {1, 2, 3} and c.selection.track_id == new_track
    c.mark_keyframe()
    stored = _stored(drive_path)
    assert stored.source[(stored.track_id == new_track) & (stored.frame == 1)][0] == "human"
    c.copy_to_next_frame()
    assert c.session.frame == 2
    stored = _stored(drive_path)
    assert stored.source[(stored.track_id == new_track) & (stored.frame == 2)][0] == "human"


def test_numeric_form_and_ortho_faces_set_the_box(app_window, drive_path, qtbot):
    window, c = app_window
    c.select_next_box()
    box_id = int(c.records.box_id[c.selection.index_in(c.records)])
    spin = window.ortho.spins["l"]
    spin.setValue(6.25)
    spin.editingFinished.emit()
    stored = _stored(drive_path)
    assert np.isclose(stored.boxes.lwh_m[stored.box_id == box_id][0, 0], 6.25)
    # Drag end of the top face line in the side view: the height becomes top - bottom, the bottom stays.
    lwh = stored.boxes.lwh_m[stored.box_id == box_id][0]
    side = window.ortho.views["side"]
    line = next(ln for ln, axis, sign in side.lines if axis == 2 and sign > 0)
    line.setValue(lwh[2] / 2 + 0.4)
    line.sigPositionChangeFinished.emit(line)
    stored = _stored(drive_path)
    assert np.isclose(stored.boxes.lwh_m[stored.box_id == box_id][0, 2], lwh[2] + 0.4)


def test_camera_click_selects_the_box_and_timeline_steps(app_window, qtbot):
    window, c = app_window
    panel = next(p for p in window.cameras.panels if np.isfinite(p._box2d).all(axis=1).any())
    index = int(np.flatnonzero(np.isfinite(panel._box2d).all(axis=1))[0])
    x1, y1, x2, y2 = panel._box2d[index]
    hits = [i for i in range(len(panel._box2d)) if np.isfinite(panel._box2d[i]).all()
            and panel._box2d[i, 0] <= (x1 + x2) / 2 <= panel._box2d[i, 2]
            and panel._box2d[i, 1] <= (y1 + y2) / 2 <= panel._box2d[i, 3]]
    view_pt = panel.image_to_widget((x1 + x2) / 2, (y1 + y2) / 2).toPoint()
    with qtbot.waitSignal(panel.boxClicked) as blocker:
        qtbot.mouseClick(panel, QtCore.Qt.MouseButton.LeftButton, pos=view_pt)
    assert blocker.args[0] in hits and c.selection.index_in(c.records) == blocker.args[0]
    qtbot.mouseClick(window.timeline, QtCore.Qt.MouseButton.LeftButton,
                     pos=QtCore.QPoint(int(window.timeline.width() * 0.9), 30))
    assert c.session.frame == c.session.num_frames - 1 and window.timeline.frame == c.session.frame
    c.previous_frame()
    assert window.frame_spin.value() == c.session.num_frames - 2


def test_review_queue_accept_reject_and_propagation_in_background(app_window, drive_path, qtbot):
    window, c = app_window
    store = LabelStore(drive_path / "labels.sqlite")
    rec = store.query()
    # Keyframes at frames 0 and 3 of one track, the frames between deleted: propagation refills them.
    track = int(np.bincount(rec.track_id).argmax())
    mine = rec[rec.track_id == track]
    store.delete_boxes(mine.box_id[(mine.frame > 0) & (mine.frame < 3)])
    store.update_box(int(mine.box_id[mine.frame == 0][0]), source="human")
    store.update_box(int(mine.box_id[mine.frame == 3][0]), source="human")
    c.refresh_labels()
    with qtbot.waitSignal(c.propagationFinished, timeout=60_000) as blocker:
        c.start_propagation()
        assert window.progress.isVisibleTo(window)
    assert not blocker.args[0].cancelled and not window.progress.isVisibleTo(window)
    qtbot.waitUntil(lambda: len(window.review.box_ids) > 0, timeout=5000)
    filled = store.query(track_ids=[track])
    assert set(filled.frame.tolist()) >= {1, 2}
    queue = window.review
    confidences = [float(queue.table.item(r, 0).text()) for r in range(queue.table.rowCount())]
    assert confidences == sorted(confidences)
    first = int(queue.box_ids[0])
    c.accept_review()
    assert store.query().reviewed[store.query().box_id == first][0]
    second = int(window.review.box_ids[0])
    window.review.reject_button.click()
    assert second not in store.query().box_id
    c.undo(), c.undo(), c.undo()  # reject, accept, and the whole propagation
    assert not set(store.query(track_ids=[track]).frame.tolist()) & {1, 2}


def test_new_box_by_click_in_the_birds_eye_view(app_window, drive_path, qtbot, sim_and_drive):
    window, c = app_window
    sim, _ = sim_and_drive
    truth = sim.truth_boxes_ego(0)
    points = c.session.frame_data().points_ego
    car = int(np.flatnonzero((truth.label == "Car") & (truth.count_points(points) > 80))[0])
    before = LabelStore(drive_path / "labels.sqlite").boxes_at(0)
    c.delete_selected()  # nothing selected: a message, no write
    store = LabelStore(drive_path / "labels.sqlite")
    store.delete_boxes(before.box_id[before.track_id == truth.track_id[car]])
    c.refresh_labels()
    window.bev.start_new_box()
    with qtbot.waitSignal(window.bev.newBoxRequested):
        window.bev._clicked(QtCore.QPointF(*truth.center_m[car, :2]))
    after = store.boxes_at(0)
    new = after[~np.isin(after.box_id, before.box_id)]
    assert len(new) == 1 and new.source[0] == "human"
    assert np.hypot(*(new.boxes.center_m[0, :2] - truth.center_m[car, :2])) < 1.0
    assert c.selection.track_id == int(new.track_id[0])


def test_timeline_label_is_not_hidden_by_keyframe_markers(qtbot):
    from sensorlabel.viewer.views.panels import Timeline

    timeline = Timeline()
    qtbot.addWidget(timeline)
    timeline.resize(400, 90)
    frames = np.arange(50)
    keyframes = np.arange(0, 50, 2)  # a keyframe marker every 16 px, from x = 4
    timeline.set_data(50, np.array([7]), frames, np.zeros(50, np.int64), frames % 10 == 0, {7: "Car"}, keyframes)
    timeline.set_frame(1)  # the cursor at x = 12, inside the label
    rgb = grab_rgb(timeline).astype(int)
    yellow = (np.abs(rgb - [255, 210, 80]).max(axis=2) < 40)
    assert not yellow[: Timeline._LABEL_PX].any(), "a keyframe marker is drawn in the label row"
    top, tip = Timeline._LABEL_PX + 1, Timeline._HEADER_PX - 2  # the marker triangle: 9 px wide at top, 10 rows
    for k in keyframes:  # every marker is whole, below the label row
        x = round(timeline._x(k))
        marker = yellow[: Timeline._HEADER_PX, max(x - 5, 0): x + 6]
        rows = np.flatnonzero(marker.any(axis=1))
        assert marker.sum() >= 40 and rows[0] == top and rows[-1] == tip, f"keyframe {k}: marker not whole"
        assert marker[top].sum() >= 8, f"keyframe {k}: the top of the marker is hidden"
    text = rgb[:, :120][: Timeline._LABEL_PX].min(axis=2) > 150  # light text pixels
    assert text.sum() > 40, "the frame label is not drawn"
