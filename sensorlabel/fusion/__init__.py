"""Lidar-camera fusion in one shared frame: motion-compensated projection, occlusion, box projection, colour,
multi-sweep aggregation and a calibration check.

The core works on arrays (points, times, poses as a function of time, camera models); :mod:`sensorlabel.fusion.drive`
adds thin helpers on top of a :class:`~sensorlabel.drive.Drive`.
"""

from sensorlabel.fusion.aggregation import AggregatedCloud, SweepInput, aggregate_sweeps
from sensorlabel.fusion.boxproject import BoxProjection, boxes_in_camera, project_boxes
from sensorlabel.fusion.calibcheck import (
    CalibCheckConfig,
    CalibCheckResult,
    CalibFrame,
    LidarEdges,
    calibration_frame,
    check_calibration,
    corrected_view,
    edge_distance,
    edge_map,
    edge_points_ref,
    lidar_edge_points,
)
from sensorlabel.fusion.colorize import UNSEEN_RGB, Colorization, colorize_points, render_points_on_image
from sensorlabel.fusion.occlusion import OcclusionConfig, depth_buffer, visible_mask, visible_points
from sensorlabel.fusion.projection import (
    CameraView,
    PoseFn,
    Projection,
    compensate_points,
    project_points,
    project_sweep,
    static_pose,
)

__all__ = [
    "AggregatedCloud", "BoxProjection", "CalibCheckConfig", "CalibCheckResult", "CalibFrame", "CameraView",
    "Colorization", "LidarEdges", "calibration_frame", "edge_distance", "edge_points_ref",
    "lidar_edge_points",
    "OcclusionConfig", "PoseFn", "Projection", "SweepInput", "UNSEEN_RGB", "aggregate_sweeps", "boxes_in_camera",
    "check_calibration", "colorize_points", "compensate_points", "corrected_view", "depth_buffer", "edge_map",
    "project_boxes", "project_points", "project_sweep", "render_points_on_image", "static_pose",
    "visible_mask", "visible_points",
]
