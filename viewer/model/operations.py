"""The viewer's operations as undoable commands (see :mod:`.commands`). Pure Python, no Qt.

Each factory returns a :class:`~.commands.Command` whose ``apply`` makes the label store writes; run it with
:meth:`UndoStack.execute`. Every write is committed at once. Boxes are in the ego frame of their frame.
"""

from __future__ import annotations

import numpy as np

from .commands import Command
from .editing import BoxPose


def update_box(box_id: int, pose: BoxPose, what: str = "edit") -> Command:
    """Set a box's centre, size and heading (a human edit: the box becomes a keyframe)."""
    def apply(store):
        store.update_box(int(box_id), center_m=pose.center_m, lwh_m=pose.lwh_m, quat_wxyz=pose.quat_wxyz,
                         source="human", description=f"{what} box {box_id}")

    return Command(f"{what} box {box_id}", apply)


def create_box(frame: int, pose: BoxPose, label: str, track_id: int = -1) -> Command:
    """Add a human box at ``frame``: in a new track of class ``label`` (track_id -1) or in an existing track.

    The command's result is the new box id.
    """
    def apply(store):
        boxes = pose.to_boxes(track_id, label)
        result = store.put_boxes(np.array([frame]), boxes, source="human", confidence=np.ones(1),
                                 description=f"new {label} box at frame {frame}")
        return int(result.box_ids[0])

    return Command(f"new {label} box", apply)


def _count_boxes(ids: list[int]) -> str:
    return f"{len(ids)} box{'es' if len(ids) > 1 else ''}"


def delete_boxes(box_ids) -> Command:
    ids = [int(b) for b in np.atleast_1d(box_ids)]

    def apply(store):
        store.delete_boxes(ids, description=f"delete boxes {ids}")

    return Command(f"delete {_count_boxes(ids)}", apply)


def set_class(track_id: int, label: str) -> Command:
    def apply(store):
        store.set_track_label(int(track_id), label)

    return Command(f"class of track {track_id} -> {label}", apply)


def change_track(box_id: int, track_id: int) -> Command:
    """Move a box into another existing track (which must have no box in that frame)."""
    def apply(store):
        store.update_box(int(box_id), track_id=int(track_id), source="human",
                         description=f"box {box_id} -> track {track_id}")

    return Command(f"box {box_id} to track {track_id}", apply)


def merge_tracks(keep_id: int, remove_id: int) -> Command:
    def apply(store):
        store.merge_tracks(int(keep_id), int(remove_id))

    return Command(f"merge track {remove_id} into {keep_id}", apply)


def split_track(track_id: int, first_frame: int) -> Command:
    """Boxes of the track from ``first_frame`` on go to a new track; the result is the new track id."""
    def apply(store):
        return store.split_track(int(track_id), int(first_frame))

    return Command(f"split track {track_id} at frame {first_frame}", apply)


def mark_keyframe(box_id: int) -> Command:
    """Make an automated box a human keyframe as it stands (confidence 1, reviewed)."""
    def apply(store):
        store.update_box(int(box_id), source="human", reviewed=True, description=f"keyframe box {box_id}")

    return Command(f"mark box {box_id} as keyframe", apply)


def copy_to_frame(records, box_index: int, to_frame: int, to_SE3_from=None) -> Command:
    """Copy a box to another frame of its track as a human box, fixed in the world (the ego moves between frames).

    Args:
        records: the BoxRecords holding the box. box_index: its row.
        to_frame: the target frame.
        to_SE3_from: single SE3 from the ego frame of the box's frame to the ego frame of ``to_frame``
            (``world_SE3_ego(t_to)^-1 . world_SE3_ego(t_from)``); None copies the ego-frame box unchanged.
    """
    box = records.boxes[[box_index]]
    if to_SE3_from is not None:
        box = box.transform(to_SE3_from)
    track_id = int(box.track_id[0])
    from_frame = int(records.frame[box_index])

    def apply(store):
        return int(store.put_boxes(np.array([to_frame]), box, source="human", confidence=np.ones(1),
                                   description=f"copy track {track_id} to frame {to_frame}").box_ids[0])

    return Command(f"copy track {track_id} from frame {from_frame} to {to_frame}", apply)


def accept(box_ids) -> Command:
    ids = [int(b) for b in np.atleast_1d(box_ids)]

    def apply(store):
        store.set_reviewed(ids, True, description=f"accept boxes {ids}")

    return Command(f"accept {_count_boxes(ids)}", apply)


def reject(box_ids) -> Command:
    ids = [int(b) for b in np.atleast_1d(box_ids)]

    def apply(store):
        store.delete_boxes(ids, description=f"reject boxes {ids}")

    return Command(f"reject {_count_boxes(ids)}", apply)


def propagate(drive, config=None, progress=None, cancel=None, track_ids=None) -> Command:
    """Run :func:`sensorlabel.propagation.propagate_drive` as one undoable command (all its writes undo together).

    The result is the PropagationReport; a cancelled run writes nothing and pushes nothing.
    """
    from sensorlabel.propagation import PropagationConfig, propagate_drive

    cfg = PropagationConfig() if config is None else config

    def apply(store):
        return propagate_drive(drive, cfg, track_ids=track_ids, progress=progress, cancel=cancel,
                               labels=None if store is drive.labels else store)

    return Command("propagate keyframes", apply)
