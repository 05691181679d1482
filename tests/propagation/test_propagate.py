"""propagate_drive on a small simulated drive, scored against the simulator's exact truth."""

import json

import numpy as np
import pytest

from sensorlabel.eval.propagation import (
    GroundTruth,
    evaluate_propagation,
    keyframe_mask,
    match_automated,
    store_keyframes,
)
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.iou import iou_3d_paired
from sensorlabel.propagation import PropagationConfig, propagate_drive, review_queue
from sensorlabel.sim import SimConfig, simulate, write_sim_drive

FRAMES = 12


@pytest.fixture(scope="module")
def sim_drive(tmp_path_factory):
    sim = simulate(SimConfig(seed=3, num_frames=FRAMES, num_beams=48, azimuth_steps=1200, num_cameras=1,
                             image_size_px=(160, 90), num_cars=8, num_pedestrians=5, num_cyclists=2))
    drive = write_sim_drive(sim, tmp_path_factory.mktemp("prop") / "sim.drive")
    parts = [sim.truth_boxes_ego(f) for f in range(FRAMES)]
    truth = Boxes.concatenate(parts)
    frame = np.concatenate([np.full(len(b), f) for f, b in enumerate(parts)])
    return sim, drive, truth, frame


@pytest.fixture(scope="module")
def gt(sim_drive):
    """The simulator truth as GroundTruth (frame times and ego poses are those of every drive written from it)."""
    _, drive, truth, frame = sim_drive
    return GroundTruth(frame, truth, drive.frame_timestamps_ns, drive.world_SE3_ego(drive.frame_timestamps_ns))


def test_propagation_fills_between_keyframes_accurately_and_leaves_humans_alone(sim_drive, gt):
    _, drive, truth, frame = sim_drive
    key = keyframe_mask(gt, 5, protocol="track")
    ids = store_keyframes(drive.labels, frame, truth, key)
    before = drive.labels.query(sources=["human"])
    report = propagate_drive(drive)
    after = drive.labels.query()
    human = after[after.source == "human"]
    assert np.array_equal(human.boxes.center_m, before.boxes.center_m)
    assert np.array_equal(human.boxes.quat_wxyz, before.boxes.quat_wxyz)
    assert report.written.get("refined", 0) > 0 and report.skipped_human == 0
    # Every non-key truth box inside its track's keyframe span has a propagated box, close to the truth.
    candidates = np.flatnonzero(~key)
    found, idx = match_automated(after, ids, frame, truth.track_id, candidates)
    assert np.array_equal(found, candidates)
    auto = after[idx]
    assert set(np.unique(auto.source)) <= {"refined", "interpolated"}
    # No human box sits at a non-key (frame, track) slot.
    human_slots = set(zip(human.frame.tolist(), human.boxes.track_id.tolist()))
    store_tid = np.array([ids[int(t)] for t in truth.track_id[candidates]])
    assert not human_slots & set(zip(frame[candidates].tolist(), store_tid.tolist()))
    iou = iou_3d_paired(auto.boxes, truth[found])
    cars = truth.label[found] == "Car"
    assert np.mean(iou[cars] >= 0.7) >= 0.95
    assert np.all((auto.confidence >= 0) & (auto.confidence <= 1))
    queue = review_queue(drive.labels)
    assert np.all(np.diff(queue.confidence) >= 0) and len(queue) == len(after) - len(human)
    cfg = json.loads((drive.path / "propagation.json").read_text())
    assert cfg["config"]["refine"] is True and cfg["report"]["tracks"] == report.tracks
    # A second run rewrites the same slots: no duplicates, humans still untouched.
    propagate_drive(drive)
    again = drive.labels.query()
    assert len(again) == len(after)
    assert np.array_equal(again[again.source == "human"].boxes.center_m, human.boxes.center_m)


def test_cancel_writes_nothing_and_a_human_edit_survives(sim_drive, gt, tmp_path):
    sim, _, truth, frame = sim_drive
    drive = write_sim_drive(sim, tmp_path / "again.drive")
    key = keyframe_mask(gt, 5, protocol="track")
    store_keyframes(drive.labels, frame, truth, key)
    n_before = len(drive.labels.query())
    report = propagate_drive(drive, cancel=lambda: True)
    assert report.cancelled and len(drive.labels.query()) == n_before
    # A human box placed at a non-key frame is never overwritten by propagation.
    some = np.flatnonzero(~key)[0]
    rec = drive.labels.query(sources=["human"])
    track = rec.boxes.track_id[rec.boxes.label == truth.label[some]][0]
    odd = truth[[some]].replace(track_id=np.array([track]), center_m=truth.center_m[[some]] + [5.0, 0, 0])
    drive.labels.put_boxes(np.array([frame[some]]), odd, source="human")
    report = propagate_drive(drive)
    kept = drive.labels.query(frames=[int(frame[some])], track_ids=[int(track)])
    assert kept.source[0] == "human" and np.allclose(kept.boxes.center_m, odd.center_m)


def test_evaluation_ranks_methods_on_the_simulator(sim_drive, gt):
    _, drive, _, _ = sim_drive
    res = evaluate_propagation(gt, (5,), drive=drive, config=PropagationConfig(refine=False))["5"]
    share = {m: res[m]["all"]["share_iou_ok"] for m in res}
    assert share["ours"] >= share["linear_world"] >= share["linear_sensor"] > share["copy_last"]
    assert res["ours"]["all"]["coverage"] == 1.0


def test_drive_point_count_equals_the_points_of_every_frame_sweep(sim_drive):
    """The demo reports Drive.num_points (read from the offsets) as its point count."""
    _, drive, _, _ = sim_drive
    total = sum(len(drive.frame_sweep(f).points) for f in range(drive.num_frames))
    assert drive.num_points() == drive.num_points(drive.lidar_names[0]) == total > 0
