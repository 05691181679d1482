"""The viewer's model layer without Qt: commands and the undo stack, selection, session, editing geometry."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sensorlabel.viewer.model import editing, operations
from sensorlabel.viewer.model.commands import Command, HistoryConflictError, UndoStack
from sensorlabel.viewer.model.editing import BoxPose
from sensorlabel.viewer.model.selection import Selection
from sensorlabel.viewer.model.session import Session

from sensorlabel.drive import Drive, LabelStore


def test_model_does_not_import_qt():
    import subprocess

    code = ("import sys; import sensorlabel.viewer.model.session, sensorlabel.viewer.model.operations, "
            "sensorlabel.viewer.model.editing, sensorlabel.viewer.model.selection; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _pose(store, box_id):
    rec = store.query()
    i = int(np.flatnonzero(rec.box_id == box_id)[0])
    return BoxPose.from_boxes(rec.boxes, i)


def test_undo_stack_update_undo_redo_land_in_sqlite(drive_path):
    store = Drive.open(drive_path).labels
    stack = UndoStack(store)
    box_id = int(store.boxes_at(0).box_id[0])
    before = _pose(store, box_id)
    moved = editing.move(before, np.array([1.5, -0.5]))
    stack.execute(operations.update_box(box_id, moved))
    fresh = LabelStore(drive_path / "labels.sqlite")  # another connection sees the committed edit
    np.testing.assert_allclose(_pose(fresh, box_id).center_m, moved.center_m)
    assert fresh.query().source[fresh.query().box_id == box_id][0] == "human"
    assert stack.undo() and not stack.can_undo
    np.testing.assert_allclose(_pose(fresh, box_id).center_m, before.center_m)
    assert fresh.query().source[fresh.query().box_id == box_id][0] == "imported"
    assert stack.redo()
    np.testing.assert_allclose(_pose(fresh, box_id).center_m, moved.center_m)
    assert not stack.redo()


def test_command_with_several_edits_undoes_as_one_and_empty_commands_are_not_pushed(drive_path):
    store = Drive.open(drive_path).labels
    stack = UndoStack(store)
    n0 = store.count_boxes()
    ids = store.boxes_at(0).box_id[:3]

    def three(s):
        for b in ids:
            s.delete_boxes([b])

    stack.execute(Command("delete three", three))
    assert store.count_boxes() == n0 - 3
    stack.execute(Command("nothing", lambda s: None))
    assert stack.undo_text == "delete three"
    stack.undo()
    assert store.count_boxes() == n0


def test_undo_refuses_to_revert_another_writers_edit(drive_path):
    store = Drive.open(drive_path).labels
    stack = UndoStack(store)
    rec = store.boxes_at(0)
    stack.execute(operations.delete_boxes([rec.box_id[0]]))
    LabelStore(drive_path / "labels.sqlite").delete_boxes([rec.box_id[1]])  # another writer
    with pytest.raises(HistoryConflictError):
        stack.undo()
    assert store.count_boxes() == len(store.query())  # nothing was reverted
    assert rec.box_id[1] not in store.query().box_id


def test_track_operations_and_review(drive_path):
    store = Drive.open(drive_path).labels
    stack = UndoStack(store)
    rec = store.boxes_at(1)
    track = int(rec.track_id[0])
    new = stack.execute(operations.split_track(track, 2))
    assert set(store.frames_with_boxes(new).tolist()) <= {2, 3} and store.frames_with_boxes(track).max() < 2
    stack.execute(operations.merge_tracks(track, new))
    assert len(store.frames_with_boxes(track)) == len(store.query(track_ids=[track])) >= 2
    stack.execute(operations.set_class(track, "Truck"))
    assert {t.label for t in store.tracks() if t.track_id == track} == {"Truck"}
    for _ in range(3):
        stack.undo()
    assert {t.label for t in store.tracks() if t.track_id == track} != {"Truck"}
    assert new not in {t.track_id for t in store.tracks()}
    box = int(rec.box_id[1])
    stack.execute(operations.accept([box]))
    assert store.query().reviewed[store.query().box_id == box][0]
    stack.execute(operations.mark_keyframe(box))
    assert store.query().source[store.query().box_id == box][0] == "human"
    stack.execute(operations.reject([box]))
    assert box not in store.query().box_id


def test_copy_to_next_frame_is_fixed_in_the_world(sim_and_drive, drive_path):
    drive = Drive.open(drive_path)
    store = drive.labels
    rec = store.boxes_at(0)
    store.delete_boxes(store.boxes_at(1).box_id)
    ts = drive.frame_timestamps_ns[:2]
    poses = drive.world_SE3_ego(ts)
    UndoStack(store).execute(operations.copy_to_frame(rec, 0, 1, poses[1].inverse().compose(poses[0])))
    copied = store.boxes_at(1)
    assert len(copied) == 1 and copied.source[0] == "human" and copied.track_id[0] == rec.track_id[0]
    world0 = poses[0].transform_points(rec.boxes.center_m[:1])
    world1 = poses[1].transform_points(copied.boxes.center_m)
    np.testing.assert_allclose(world1, world0, atol=1e-6)
    ego_speed_m = np.linalg.norm(poses[1].translation - poses[0].translation)
    assert ego_speed_m > 0.3  # so the test would catch an ego-frame copy


def test_editing_geometry():
    pose = BoxPose(np.array([10.0, 5.0, 0.0]), np.array([4.0, 2.0, 1.5]), 0.0)
    grown = editing.resize_edge(pose, "front", np.array([13.0, 5.2]))  # front face from x=12 to x=13
    np.testing.assert_allclose(grown.lwh_m, [5.0, 2.0, 1.5])
    np.testing.assert_allclose(grown.center_m, [10.5, 5.0, 0.0])
    np.testing.assert_allclose(grown.center_m[0] - grown.lwh_m[0] / 2, 8.0)  # back face kept
    top = editing.set_face(pose, 2, 1.0, 1.25)  # top face up by 0.5, bottom fixed at -0.75
    np.testing.assert_allclose([top.lwh_m[2], top.center_m[2]], [2.0, 0.25])
    turned = editing.rotate_to(pose, np.array([10.0, 9.0]))
    assert np.isclose(turned.yaw_rad, np.pi / 2)
    snapped_turn = editing.rotate_to(pose, np.array([12.0, 6.2]), np.deg2rad(5))  # atan2(1.2, 2) = 31.0 deg
    assert np.isclose(snapped_turn.yaw_rad, np.deg2rad(30))
    snapped = editing.snap_yaw(np.deg2rad(32.4), np.deg2rad(5))
    assert np.isclose(snapped, np.deg2rad(30))
    assert editing.hit_test(pose, np.array([10.0, 5.0]), 0.2) == "move"
    assert editing.hit_test(pose, np.array([10.0, 6.05]), 0.2) == "left"
    assert editing.hit_test(pose, np.array([13.0, 5.0]), 0.2, handle_offset_m=1.0) == "rotate"
    assert editing.hit_test(pose, np.array([30.0, 5.0]), 0.2) == ""
    with pytest.raises(ValueError):
        editing.resize_edge(pose, "top", np.zeros(2))
    other = BoxPose(np.array([10.0, 5.0, 0.0]), np.array([1.0, 1.0, 1.0]), 0.3)
    boxes = type(pose.to_boxes()).concatenate([pose.to_boxes(1, "Car"), other.to_boxes(2, "Pedestrian")])
    assert editing.pick_box(boxes, np.array([10.1, 5.1])) == 1  # the smaller of two overlapping boxes
    assert editing.pick_box(boxes, np.array([11.5, 5.0])) == 0
    assert editing.pick_box(boxes, np.array([50.0, 5.0])) == -1
    assert editing.pick_box(boxes[np.zeros(2, bool)], np.zeros(2)) == -1


def test_new_box_and_fit_to_points_against_truth(sim_and_drive, drive_path):
    sim, _ = sim_and_drive
    session = Session(Drive.open(drive_path))
    points = session.frame_data(0).points_ego
    truth = sim.truth_boxes_ego(0)
    inside = truth.count_points(points)
    car = int(np.flatnonzero((truth.label == "Car") & (inside > 80))[0])
    new = editing.new_box_at(points, truth.center_m[car, :2], "Car")
    assert np.hypot(*(new.center_m[:2] - truth.center_m[car, :2])) < 1.0
    shifted = editing.move(BoxPose.from_boxes(truth, car), np.array([0.6, 0.0]))
    fitted = editing.fit_to_points(shifted, points)
    err_before = np.hypot(*(shifted.center_m[:2] - truth.center_m[car, :2]))
    err_after = np.hypot(*(fitted.center_m[:2] - truth.center_m[car, :2]))
    assert err_after < 0.5 * err_before


def test_session_frames_selection_and_projection(sim_and_drive, drive_path):
    sim, _ = sim_and_drive
    session = Session(Drive.open(drive_path))
    seen = []
    session.subscribe_frame(seen.append)
    assert session.step(1) == 1 and session.step(10) == 3 and session.go_to(-5) == 0
    assert seen == [1, 3, 0]
    data = session.frame_data(1)
    assert data.num_points == len(sim.sweep(1).points) and len(data.cameras) == 2
    # Ego-motion-compensated points: the points of the objects fall in the truth boxes (in the ego frame at the
    # frame time) far better than the raw sweep does (moving objects keep their own motion, hence the margin).
    truth = sim.truth_boxes_ego(1)
    obj = sim.point_track_ids(1) >= 0
    sweep = sim.sweep(1)
    raw_ego = sim.sensors[sweep.sensor].ego_SE3_sensor.transform_points(sweep.xyz_sensor.astype(np.float64))
    compensated = truth.points_in_boxes(data.points_ego[obj], margin_m=0.1).any(axis=0).mean()
    raw = truth.points_in_boxes(raw_ego[obj], margin_m=0.1).any(axis=0).mean()
    assert compensated > raw + 0.1
    assert truth.points_in_boxes(data.points_ego[obj], margin_m=0.3).any(axis=0).mean() > 0.97
    cam = data.cameras[0]
    w, h = cam.size_px
    assert cam.image_rgb.shape == (h, w, 3) and len(cam.uv_px) > 100
    assert (cam.uv_px >= -0.5).all() and (cam.uv_px[:, 0] <= w).all() and (cam.uv_px[:, 1] <= h).all()
    for mode in ("height", "intensity", "camera"):
        rgba = session.point_colors(data, mode)
        assert rgba.shape == (data.num_points, 4) and np.isfinite(rgba).all()
    with pytest.raises(ValueError):
        session.point_colors(data, "rainbow")
    rec = session.boxes(1)
    sel = Selection()
    sel.select_index(rec, 2)
    assert sel.index_in(rec) == 2
    rec2 = session.boxes(2)
    row = sel.index_in(rec2)
    assert row >= 0 and rec2.track_id[row] == rec.track_id[2]  # the selection follows its object to the next frame
    sel.clear()
    assert sel.index_in(rec) == -1
    session.set_aggregate(2)
    assert session.frame_data(1).num_points == data.num_points + len(sim.sweep(0).points)
