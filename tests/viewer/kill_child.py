"""Child of the kill test: opens the viewer (offscreen) on a drive, makes edits through the controller, reports each
committed edit on stdout, then waits to be killed."""

import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6 import QtWidgets
from sensorlabel.viewer.app import build_window
from sensorlabel.viewer.model import editing

app = QtWidgets.QApplication([])
window, c = build_window(sys.argv[1], with_3d=False)
for k in range(int(sys.argv[2])):
    c.session.go_to(k % c.session.num_frames)
    c.selection.select_index(c.records, k % len(c.records))
    index = c.selection.index_in(c.records)
    pose = editing.move(editing.BoxPose.from_boxes(c.records.boxes, index), np.array([0.1 * (k + 1), 0.0]))
    c.edit_selected(pose)
    print(json.dumps({"box_id": int(c.records.box_id[index]), "center_m": pose.center_m.tolist()}), flush=True)
c.delete_selected()
print(json.dumps({"deleted": int(c.records.box_id.size)}), flush=True)
print("READY", flush=True)
while True:
    app.processEvents()
    time.sleep(0.01)
