"""Small synthetic drives with human keyframes from the simulator's truth, their scoring, and a fault-injecting
batch runner. Used by tests/batch and benchmarks/bench_batch.py; importable by Dask worker processes.

Size of a drive (stated in the test and benchmark reports): 32 beams x 512 azimuth steps (about 16k points per
sweep), one 320x180 camera, 6 cars, 4 pedestrians, 2 cyclists, ``num_frames`` frames at 10 Hz.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import numpy as np

KEYFRAME_INTERVAL = 5
SIM_SIZE = {"num_beams": 32, "azimuth_steps": 512, "num_cameras": 1, "image_size_px": (320, 180), "num_cars": 6,
            "num_pedestrians": 4, "num_cyclists": 2}


def make_keyframed_drive(path: Path, seed: int, num_frames: int = 11, labels: str = "keyframes"
                         ) -> dict[tuple[int, int], object]:
    """Simulate a drive and write it with ``labels="keyframes"``: the truth at every 5th frame as human boxes, or
    ``"truth"``: every truth box as ``imported`` (the ground truth of ``eval``).

    Each store track carries ``{"sim_track_id": id}`` so automated boxes can be matched back to the truth.

    Returns:
        ``{(frame, sim_track_id): Boxes of one}``: the truth of every frame, in the ego frame.
    """
    from sensorlabel.eval.propagation import store_keyframes
    from sensorlabel.geometry.boxes import Boxes
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive

    sim = simulate(SimConfig(seed=seed, num_frames=num_frames, **SIM_SIZE))
    drive = write_sim_drive(sim, path, with_labels="truth" if labels == "truth" else "none")
    frames, parts = [], []
    for f in range(drive.num_frames):
        boxes = sim.truth_boxes_ego(f)
        frames.append(np.full(len(boxes), f, dtype=np.int64))
        parts.append(boxes)
    truth, frame = Boxes.concatenate(parts), np.concatenate(frames)
    truth_by_key = {(int(f), int(t)): truth[np.array([i])] for i, (f, t) in enumerate(zip(frame, truth.track_id))}
    if labels == "truth":
        drive.labels.close()
        return truth_by_key
    key = frame % KEYFRAME_INTERVAL == 0
    store = drive.labels
    store_keyframes(store, frame[key], truth[key], description="keyframes from the simulator truth",
                    id_attribute="sim_track_id")
    store.close()
    return truth_by_key


def automated_iou(drive_path: Path, truth: dict) -> tuple[np.ndarray, int]:
    """3D IoU of every automated box (source != human) of a drive against the simulator truth.

    Returns:
        (IoU per automated box that has a truth box at its frame, number of human boxes in the store).
    """
    from sensorlabel.drive.labels import LabelStore
    from sensorlabel.geometry.boxes import Boxes
    from sensorlabel.geometry.iou import iou_3d_paired

    store = LabelStore(Path(drive_path) / "labels.sqlite")
    try:
        sim_id = {t.track_id: int(t.attributes["sim_track_id"]) for t in store.tracks()}
        rec = store.query()
    finally:
        store.close()
    auto = np.flatnonzero(rec.source != "human")
    pairs = [(i, truth.get((int(rec.frame[i]), sim_id[int(rec.boxes.track_id[i])]))) for i in auto]
    pairs = [(i, t) for i, t in pairs if t is not None]
    if not pairs:
        return np.zeros(0), int(np.sum(rec.source == "human"))
    pred = rec.boxes[np.array([i for i, _ in pairs])]
    gt = Boxes.concatenate([t for _, t in pairs])
    return iou_3d_paired(pred, gt), int(np.sum(rec.source == "human"))


def integrity_ok(drive_path: Path) -> bool:
    """PRAGMA integrity_check of the drive's labels.sqlite."""
    conn = sqlite3.connect(Path(drive_path) / "labels.sqlite")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def _die_mid_write(drive_path: Path) -> None:
    """Open a write transaction on the labels, delete every box, and SIGKILL this process before the commit."""
    conn = sqlite3.connect(Path(drive_path) / "labels.sqlite", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM boxes")
    os.kill(os.getpid(), signal.SIGKILL)


def killing_runner(task, force: bool = False):
    """A batch runner that kills its worker process in the middle of a label write.

    Drives named ``killonce-*`` die on their first attempt only (a flag file beside the drive remembers it),
    ``killalways-*`` on every attempt, but only once the ``killonce-*`` drives beside them are done: two workers
    dying at the same instant leave the scheduler no worker, and it then hands every waiting task to the first
    worker back, which would charge one death to two tasks. The other drives run normally.
    """
    import time

    from sensorlabel.batch import run_drive

    drive = Path(task.drive)
    flag = drive.parent / f"{task.name}.killed"
    if task.name.startswith("killalways"):
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and not all(
                (other / ".batch" / f"{task.command}.json").exists() for other in drive.parent.glob("killonce-*.drive")):
            time.sleep(0.2)
        flag.touch()
        _die_mid_write(drive)
    if task.name.startswith("killonce") and not flag.exists():
        flag.touch()
        _die_mid_write(drive)
    return run_drive(task, force=force)
