"""Keyframe propagation: interpolation in the world frame, ICP refinement, smoothing, extrapolation, confidence,
the review queue, and geometric proposals for unlabelled objects."""

from sensorlabel.propagation.propagate import (
    PropagationConfig,
    PropagationReport,
    propagate_drive,
)
from sensorlabel.propagation.review import review_queue

__all__ = ["PropagationConfig", "PropagationReport", "propagate_drive", "review_queue"]
