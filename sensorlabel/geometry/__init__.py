"""Geometry core: rigid transforms, oriented boxes, IoU and camera models."""

from sensorlabel.geometry.boxes import BOX_EDGES, Boxes
from sensorlabel.geometry.se3 import SE3, interpolate_poses

__all__ = ["BOX_EDGES", "Boxes", "SE3", "interpolate_poses"]
