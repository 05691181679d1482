"""Online 3D multi-object tracking: Kalman motion models, association, the tracker, detection file I/O."""

from sensorlabel.tracking.association import METRICS, Association, associate, paired_affinity
from sensorlabel.tracking.motion import ConstantTurnRate, ConstantVelocity, MotionModel, MotionNoise, make_motion_model
from sensorlabel.tracking.tracker import (
    ClassTrackingConfig,
    Tracker,
    TrackerConfig,
    TrackOutput,
    boxes_to_box7,
    default_class_configs,
    track_sequence,
)

__all__ = [
    "METRICS",
    "Association",
    "ClassTrackingConfig",
    "ConstantTurnRate",
    "ConstantVelocity",
    "MotionModel",
    "MotionNoise",
    "TrackOutput",
    "Tracker",
    "TrackerConfig",
    "associate",
    "boxes_to_box7",
    "default_class_configs",
    "make_motion_model",
    "paired_affinity",
    "track_sequence",
]
