"""The selection: one box, remembered by its track so that it follows the object from frame to frame (pure Python)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Selection:
    """The selected track (and so its box in the current frame).

    Attributes:
        track_id: the selected track, or None.
    """

    def __init__(self):
        self.track_id: int | None = None
        self._listeners: list[Callable[[int | None], None]] = []

    def subscribe(self, listener: Callable[[int | None], None]) -> None:
        """Call ``listener(track_id)`` when the selection changes."""
        self._listeners.append(listener)

    def select_track(self, track_id: int | None) -> None:
        track_id = None if track_id is None or int(track_id) < 0 else int(track_id)
        if track_id != self.track_id:
            self.track_id = track_id
            for listener in list(self._listeners):
                listener(track_id)

    def clear(self) -> None:
        self.select_track(None)

    def index_in(self, records) -> int:
        """Row of the selected track's box in BoxRecords of one frame, -1 when it has none there."""
        if self.track_id is None or len(records) == 0:
            return -1
        hit = np.flatnonzero(records.track_id == self.track_id)
        return int(hit[0]) if len(hit) else -1

    def select_index(self, records, index: int) -> None:
        """Select the track of row ``index`` of ``records`` (-1 clears)."""
        self.select_track(int(records.track_id[index]) if 0 <= index < len(records) else None)
