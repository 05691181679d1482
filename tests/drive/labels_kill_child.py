"""Writer process for the label-store crash and concurrency tests (run as a script or imported by the tests).

As a script, ``python labels_kill_child.py STORE TOTAL`` applies the deterministic edit script :func:`apply_edit`
for edits 0..TOTAL-1, continuing after the last edit the store already holds (found from the edit log), and prints
``committed I EDIT_ID`` (flushed) after each commit has returned. The parent kills it at random moments.
"""

from __future__ import annotations

import sys

import numpy as np

from sensorlabel.drive.labels import LabelStore
from sensorlabel.geometry.boxes import Boxes

KILL_TAG = "kill-edit"
_LABELS = np.array(["Car", "Pedestrian", "Cyclist"])


def random_boxes(rng: np.random.Generator, n: int, track_id=None) -> Boxes:
    """n random boxes with full-precision float64 values (unit quaternions in any orientation)."""
    quat = rng.normal(size=(n, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    track = np.full(n, -1) if track_id is None else track_id
    return Boxes(rng.normal(scale=20.0, size=(n, 3)), rng.uniform(0.3, 6.0, size=(n, 3)), quat, track,
                 _LABELS[rng.integers(0, 3, n)], rng.uniform(0.0, 1.0, n))


def apply_edit(store: LabelStore, i: int) -> int:
    """Edit number ``i`` of the script; deterministic given the store's state. Returns the edit id (-1: no-op)."""
    rng = np.random.default_rng(1000 + i)
    tag = f"{KILL_TAG} {i}"
    kind = i % 5
    if kind in (0, 1):  # new tracks, up to ~200 boxes in one transaction
        n = 1 + (i * 37) % 200
        return store.put_boxes(np.full(n, i), random_boxes(rng, n), "tracked", description=tag).edit_id
    base = store.query(frames=[i - (7 if kind == 2 else kind)])  # a frame written by an earlier edit of kind 0
    if len(base) == 0:
        return store.put_boxes([i], random_boxes(rng, 1), "proposed", description=tag).edit_id
    if kind == 2:  # refine every box of that frame, which holds a human box by now (it is kept)
        boxes = random_boxes(rng, len(base), base.boxes.track_id)
        return store.put_boxes(base.frame, boxes, "refined", reviewed=rng.random(len(base)) < 0.5,
                               description=tag).edit_id
    if kind == 3:  # a human correction of the first box
        new = random_boxes(rng, 1)
        store.update_box(int(base.box_id[0]), center_m=new.center_m[0], lwh_m=new.lwh_m[0],
                         quat_wxyz=new.quat_wxyz[0], description=tag)
    else:  # delete the last box
        store.delete_boxes([int(base.box_id[-1])], description=tag)
    return store.history(1)[0].edit_id


def next_edit(store: LabelStore) -> int:
    """The first script edit the store does not hold yet (edits are applied in order, one transaction each)."""
    done = [int(e.description.split()[-1]) for e in store.history(limit=10**9) if e.description.startswith(KILL_TAG)]
    return max(done, default=-1) + 1


def concurrent_writer(path: str, writer: int, count: int, start_event) -> None:
    """One of several processes writing ``count`` single-box edits (frames writer*10000 + j) at the same time."""
    store = LabelStore(path, timeout_s=30.0)
    rng = np.random.default_rng(writer)
    start_event.wait()
    for j in range(count):
        store.put_boxes([writer * 10000 + j], random_boxes(rng, 1), "tracked", description=f"writer {writer} {j}")
    store.close()


def main(argv: list[str]) -> int:
    path, total = argv[1], int(argv[2])
    store = LabelStore(path, timeout_s=30.0)
    first = next_edit(store)
    print(f"ready {first}", flush=True)
    for i in range(first, total):
        edit_id = apply_edit(store, i)
        print(f"committed {i} {edit_id}", flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
