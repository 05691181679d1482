"""A crash loses nothing: the viewer edits, gets SIGKILL, and every edit is in labels.sqlite when reopened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from sensorlabel.drive import Drive


def test_sigkill_after_edits_keeps_every_edit(drive_path):
    n_boxes = len(Drive.open(drive_path).labels.query())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("kill_child.py")), str(drive_path), "5"],
                             stdout=subprocess.PIPE, text=True, env=env)
    edits = []
    try:
        for line in child.stdout:
            if line.strip() == "READY":
                break
            edits.append(json.loads(line))
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL and len(edits) == 6
    stored = Drive.open(drive_path).labels.query()
    last = {}
    for e in edits[:-1]:
        last[e["box_id"]] = e["center_m"]
    for box_id, center in last.items():
        row = stored.box_id == box_id
        if row.any():  # the final delete may have removed one of the moved boxes
            np.testing.assert_allclose(stored.boxes.center_m[row][0], center, atol=1e-9)
            assert stored.source[row][0] == "human"
    assert len(stored) == n_boxes - 1
