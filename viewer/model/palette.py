"""Colours of classes and sources, shared by every view (pure Python)."""

from __future__ import annotations

import zlib

import numpy as np

#: Fixed colours for the common classes (the simulator's and the usual dataset names); others get a stable colour
#: from :data:`_PALETTE` chosen by a hash of the name, so a class keeps its colour across sessions.
_FIXED_RGB = {
    "car": (255, 158, 0), "regular_vehicle": (255, 158, 0), "vehicle": (255, 158, 0), "van": (255, 190, 60),
    "truck": (255, 99, 71), "large_vehicle": (255, 99, 71), "box_truck": (255, 99, 71), "bus": (220, 20, 60),
    "pedestrian": (0, 200, 255), "cyclist": (190, 90, 255), "bicycle": (190, 90, 255), "bicyclist": (190, 90, 255),
    "motorcycle": (140, 110, 255), "motorcyclist": (140, 110, 255), "unknown": (200, 200, 200),
}
_PALETTE = [(78, 201, 176), (240, 220, 80), (255, 127, 80), (100, 149, 237), (218, 112, 214), (154, 205, 50),
            (255, 105, 180), (64, 224, 208), (244, 164, 96), (147, 112, 219), (60, 179, 113), (250, 128, 114)]
#: Colour of the selected box.
SELECTED_RGB = (255, 255, 255)


def class_color(label: str) -> tuple[int, int, int]:
    """RGB (0-255) of a class name."""
    key = str(label).lower()
    if key in _FIXED_RGB:
        return _FIXED_RGB[key]
    return _PALETTE[zlib.crc32(key.encode()) % len(_PALETTE)]


def class_colors(labels: np.ndarray) -> np.ndarray:
    """(N,3) uint8 colours of N class names (one lookup per distinct name)."""
    labels = np.asarray(labels, dtype=str)
    if len(labels) == 0:
        return np.zeros((0, 3), np.uint8)
    names, inverse = np.unique(labels, return_inverse=True)
    table = np.array([class_color(n) for n in names], dtype=np.uint8)
    return table[inverse.reshape(-1)]


_DEPTH_STOPS = np.array([[255, 40, 40], [255, 220, 0], [40, 220, 90], [40, 140, 255], [90, 60, 255]], np.float64)
_DEPTH_LUT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_DEPTH_STOPS)), _DEPTH_STOPS[:, c])
                       for c in range(3)], axis=1).astype(np.uint8)


def depth_bins(depth_m: np.ndarray, max_depth_m: float = 60.0) -> np.ndarray:
    """(N,) uint8 depth quantised to 256 steps over [0, max_depth_m] (the index into the depth colour table)."""
    return (np.clip(np.asarray(depth_m, np.float32) * (255.0 / max_depth_m), 0, 255)).astype(np.uint8)


def depth_colors(depth_m: np.ndarray, max_depth_m: float = 60.0) -> np.ndarray:
    """(N,3) uint8 colours of depths: near red, through yellow and green, far blue."""
    return _DEPTH_LUT[depth_bins(depth_m, max_depth_m)]
