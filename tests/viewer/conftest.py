"""Fixtures of the viewer tests: a small synthetic drive with truth labels (written once, copied per test)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("LIBGL_ALWAYS_SOFTWARE", "1")


def _share_gl_contexts() -> None:
    # pyqtgraph caches compiled shader programs per class: every GL view must share one context group, set before
    # pytest-qt creates the QApplication (as run_viewer does). This runs when the conftest is imported: a
    # pytest_sessionstart hook here would never run when pytest starts from the repository root, because this
    # conftest is only loaded during collection, after the session has started.
    from sensorlabel.viewer.app import share_gl_contexts

    share_gl_contexts()


_share_gl_contexts()


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # pytest-xvfb has started Xvfb (and set DISPLAY) in its own pytest_configure by now; without a display (run
    # with -p no:xvfb) the non-GL widgets still work on the offscreen platform and the GL tests are skipped.
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        skip = pytest.mark.skip(reason="needs an X display (install Xvfb and pytest-xvfb)")
        for item in items:
            if item.get_closest_marker("gl"):
                item.add_marker(skip)

def grab_rgb(widget) -> np.ndarray:
    """(h,w,3) uint8 RGB screenshot of a widget (``QWidget.grab``)."""
    from PySide6 import QtGui

    img = widget.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
    return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())[:, : 3 * img.width()] \
        .reshape(img.height(), img.width(), 3).copy()


SMALL_SIM = dict(seed=3, num_frames=4, num_beams=24, azimuth_steps=720, num_cameras=2, image_size_px=(320, 180),
                 num_cars=8, num_pedestrians=3, num_cyclists=1)


@pytest.fixture(scope="session")
def sim_and_drive(tmp_path_factory):
    """(SimDrive, path of a drive with truth labels as 'imported' boxes)."""
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive

    sim = simulate(SimConfig(**SMALL_SIM))
    path = tmp_path_factory.mktemp("viewer") / "small.drive"
    write_sim_drive(sim, path, with_labels="truth").close()
    return sim, path


@pytest.fixture
def drive_path(sim_and_drive, tmp_path) -> Path:
    """A private copy of the small drive (tests edit its labels)."""
    dst = tmp_path / "edit.drive"
    shutil.copytree(sim_and_drive[1], dst)
    return dst
