"""The review queue: automated boxes that nobody has reviewed yet, lowest confidence first."""

from __future__ import annotations

import numpy as np

AUTOMATED_SOURCES = ("interpolated", "tracked", "refined", "proposed")


def review_queue(store, limit: int | None = None):
    """Unreviewed automated boxes ordered by confidence, lowest first (ties by frame, then track).

    Args:
        store: a LabelStore.
        limit: keep only the first ``limit`` entries.

    Returns:
        BoxRecords in review order.
    """
    rec = store.query(sources=list(AUTOMATED_SOURCES))
    rec = rec[~rec.reviewed]
    order = np.lexsort((rec.boxes.track_id, rec.frame, rec.confidence))
    if limit is not None:
        order = order[:limit]
    return rec[order]
