"""Viewer figures: frame step (load the frame, then draw the 3D view, the bird's-eye view and 6 camera panels) on a
synthetic drive with ~120k-point sweeps and 6 cameras, time to open a drive, and peak memory.

Runs under an X display with software OpenGL (start it with ``xvfb-run -a python benchmarks/bench_viewer.py``; the
script re-executes itself under xvfb-run when there is no display). Baseline, measured in the same run: the naive
frame step (decode every image at full size, no reduced decode, nothing cached), as a ratio.

Prints one JSON line, writes benchmarks/results/viewer.json and viewer.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _make_drive(path: Path, frames: int) -> None:
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive

    sim = simulate(SimConfig(seed=0, num_frames=frames, num_cameras=6, image_size_px=(960, 540)))
    write_sim_drive(sim, path, with_labels="truth", overwrite=True).close()


def _step_times(window, controller, app, frames: list[int]) -> list[float]:
    times = []
    for f in frames:
        t0 = time.perf_counter()
        controller.session.go_to(f)  # load (cold: every frame is new) and update every view's data
        app.processEvents()  # paint everything that changed: 3D (GL), bird's-eye, 6 camera panels, ortho views
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer frames")
    parser.add_argument("--drive", type=Path, help="an existing drive instead of a fresh synthetic one")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv])
    os.environ.setdefault("LIBGL_ALWAYS_SOFTWARE", "1")
    frames = 8 if args.quick else 20
    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    try:
        path = args.drive
        if path is None:
            path = tmp / "bench.drive"
            _make_drive(path, frames)
        from PySide6 import QtWidgets

        from sensorlabel.viewer.app import build_window, share_gl_contexts

        share_gl_contexts()
        app = QtWidgets.QApplication([])
        t0 = time.perf_counter()
        window, controller = build_window(path)
        window.show()
        app.processEvents()
        open_s = time.perf_counter() - t0
        n = controller.session.num_frames
        points = controller.session.frame_data(0).num_points
        steps = _step_times(window, controller, app, list(range(1, n)))
        # Warm steps: back over cached frames (what stepping back and forth costs).
        warm = _step_times(window, controller, app, [n - 2, n - 1] * 3)
        # Baseline: full-size decode of every image (no IMREAD_REDUCED_*), same draw.
        controller.session.camera_target_width_px = 10_000
        controller.session._cache.clear()
        base = _step_times(window, controller, app, list(range(0, min(n, 8))))
        record = {
            "points_per_sweep": points, "cameras": len(controller.session.drive.camera_names), "frames": n,
            "frame_step_median_ms": 1e3 * statistics.median(steps), "frame_step_p90_ms": 1e3 * sorted(steps)[
                int(0.9 * (len(steps) - 1))], "frame_step_cached_median_ms": 1e3 * statistics.median(warm),
            "baseline_full_decode_median_ms": 1e3 * statistics.median(base),
            "speedup_vs_baseline": statistics.median(base) / statistics.median(steps),
            "open_drive_s": open_s, "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "gl": "software (LIBGL_ALWAYS_SOFTWARE=1) under Xvfb", "load_average": os.getloadavg()[0],
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "viewer.json").write_text(json.dumps(record, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([1e3 * s for s in steps], "o-", label="frame step (cold: load + draw)")
        ax.plot([1e3 * s for s in base], "s-", label="baseline: full-size image decode")
        ax.axhline(100, color="r", ls="--", label="100 ms target")
        ax.set_xlabel("step")
        ax.set_ylabel("ms")
        ax.set_title(f"viewer frame step, {points:,} points, 6 cameras, software GL")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "viewer.png", dpi=110)
        print(json.dumps(record))
        window.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
