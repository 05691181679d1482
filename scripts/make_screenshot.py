"""Write docs/screenshot.png (the README's picture): the viewer on a synthetic drive with 6 cameras, a box selected.

    python scripts/make_screenshot.py            # re-executes itself under xvfb-run when there is no display
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"


def main() -> int:
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv])
    os.environ.setdefault("LIBGL_ALWAYS_SOFTWARE", "1")
    import numpy as np
    from PySide6 import QtWidgets

    from sensorlabel.propagation import propagate_drive
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive
    from sensorlabel.viewer.app import build_window, share_gl_contexts

    tmp = Path(tempfile.mkdtemp(prefix="screenshot_"))
    try:
        sim = simulate(SimConfig(seed=0, num_frames=12, num_cameras=6, image_size_px=(960, 540)))
        drive = write_sim_drive(sim, tmp / "demo.drive", with_labels="truth")
        # Keyframes at frames 0 and 11 (human), the rest filled by propagation: the review queue has entries.
        store = drive.labels
        rec = store.query()
        store.delete_boxes(rec.box_id[(rec.frame > 0) & (rec.frame < 11)])
        keys = store.query()
        for box_id in keys.box_id:
            store.update_box(int(box_id), source="human")
        propagate_drive(drive)
        drive.close()
        share_gl_contexts()
        app = QtWidgets.QApplication([])
        window, controller = build_window(tmp / "demo.drive")
        window.resize(1800, 1060)
        window.show()
        controller.session.go_to(5)
        rec = controller.records
        near = np.hypot(*rec.boxes.center_m[:, :2].T) + 1e3 * (rec.boxes.label != "Car")
        controller.selection.select_track(int(rec.track_id[int(np.argmin(near))]))
        for _ in range(20):
            app.processEvents()
        OUT.parent.mkdir(exist_ok=True)
        window.grab().save(str(OUT))
        print(f"wrote {OUT}")
        window.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
