"""Viewer figures: the frame step (load the frame, then draw the 3D view, the bird's-eye view and 6 camera panels) on a
synthetic drive with ~120k-point sweeps and 6 cameras, time to open a drive, and peak memory.

A step is timed from the step command (``session.go_to``) to the moment every view has painted: the event queue is
run until it is empty, and the 3D view renders its OpenGL frame and reads it back inside its paint event, so the GL
work is inside the time. Both the wall time and the UI thread's CPU time (``time.thread_time``) are recorded,
because the machine is shared (and the process CPU time, which adds the software rasteriser's threads). Steps, each over >= 20 frames of the drive:

* ``paced``: the user steps (or plays) no faster than a frame is prepared: the next frame is prefetched on the
  worker thread during the idle time after the previous step (the benchmark waits for it before the next step);
* ``back_to_back``: steps as fast as possible, prefetch on (a step waits for the frame the worker is preparing);
* ``cold``: prefetch off and caches cleared before every step: the frame is loaded, projected and drawn on demand,
  within the step (the UI thread decodes the images and draws the camera panels with two short-lived helper
  threads, and the GL rasteriser's threads draw the 3D view meanwhile).

Baseline, measured in the same run on the same drive and display: the previous implementation (the viewer of
commit ``dda0a5f``, extracted with ``git archive``), cold steps as it had no prefetch. Each viewer runs in a fresh
child process of its own (the same path for both), so that open time and peak memory (``ru_maxrss``) are comparable:
the parent, which simulated and wrote the drive, measures neither.

Runs under an X display with software OpenGL (``LIBGL_ALWAYS_SOFTWARE=1``); the script re-executes itself under
``xvfb-run`` when there is no display. Prints one JSON line (the record format of benchmarks/README.md), writes
benchmarks/results/viewer.json and viewer.png.

    python benchmarks/bench_viewer.py [--quick] [--drive X.drive] [--no-baseline]
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

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASELINE_COMMIT = "dda0a5f"
LIMIT_MS = 100.0
MODES = ("paced", "back_to_back", "cold")


def _make_drive(path: Path, frames: int) -> None:
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive

    sim = simulate(SimConfig(seed=0, num_frames=frames, num_cameras=6, image_size_px=(960, 540)))
    write_sim_drive(sim, path, with_labels="truth", overwrite=True).close()


def _paint(app) -> None:
    """Run the event queue until it is empty (the paint events of every view included)."""
    app.processEvents()
    app.processEvents()


def _steps(app, controller, frames: list[int], mode: str) -> tuple[list[float], list[float], list[float]]:
    """Wall, UI-thread CPU and process CPU seconds of each step to ``frames`` (the process CPU includes the
    software rasteriser's threads, and the prefetch of the next frame when it starts before the queue is empty)."""
    session = controller.session
    wall, cpu, proc = [], [], []
    for f in frames:
        if mode == "paced":
            future = getattr(controller, "prefetch_future", None)
            while future is not None and not future.done():
                app.processEvents()
                time.sleep(0.002)
            _paint(app)
        elif mode == "cold":
            if hasattr(session, "clear_cache"):
                session.clear_cache()
            else:
                session._cache.clear()
        t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        session.go_to(f)
        _paint(app)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        proc.append(time.process_time() - p0)
    return wall, cpu, proc


def _summary(wall: list[float], cpu: list[float], proc: list[float]) -> dict:
    return {"median_wall_ms": 1e3 * statistics.median(wall), "median_cpu_ms": 1e3 * statistics.median(cpu),
            "median_process_cpu_ms": 1e3 * statistics.median(proc),
            "p90_wall_ms": 1e3 * sorted(wall)[int(0.9 * (len(wall) - 1))], "steps": len(wall),
            "wall_ms": [round(1e3 * t, 1) for t in wall], "cpu_ms": [round(1e3 * t, 1) for t in cpu]}


def _run_viewer(drive: Path, modes: list[str]) -> dict:
    """Open the viewer on ``drive`` (whichever ``viewer`` package is importable as ``sensorlabel.viewer`` or, for
    the baseline, as ``viewer``) and time the steps of each mode."""
    os.environ.setdefault("LIBGL_ALWAYS_SOFTWARE", "1")
    from PySide6 import QtWidgets

    if os.environ.get("SENSORLABEL_VIEWER_BASELINE"):
        from viewer.app import (  # the extracted previous implementation
            build_window,
            share_gl_contexts,
        )
    else:
        from sensorlabel.viewer.app import build_window, share_gl_contexts

    share_gl_contexts()
    app = QtWidgets.QApplication([])
    t0 = time.perf_counter()
    window, controller = build_window(drive)
    window.resize(1600, 1000)
    window.show()
    _paint(app)
    out = {"open_drive_s": time.perf_counter() - t0}
    n = controller.session.num_frames
    out["points_per_sweep"] = controller.session.frame_data(0).num_points
    out["cameras"] = len(controller.session.drive.camera_names)
    forward = list(range(1, n))
    for mode in modes:
        if mode == "cold" and hasattr(controller.session, "close"):
            controller.session.close()  # prefetch off from here on
        controller.session.go_to(0)
        _paint(app)
        out[mode] = _summary(*_steps(app, controller, forward, mode))
    out["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    window.close()
    return out


def _in_child(drive: Path, modes: list[str], out_json: Path, env: dict) -> dict:
    """:func:`_run_viewer` in a fresh child process with environment ``env``; its figures, or ``{"error": ...}``."""
    proc = subprocess.run([sys.executable, __file__, "--child", str(drive), "--modes", ",".join(modes),
                           "--out", str(out_json)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_json.exists():
        return {"error": proc.stderr[-600:]}
    return json.loads(out_json.read_text())


def _baseline(drive: Path, tmp: Path) -> dict:
    """The previous implementation, cold steps, in a child process (its package extracted from git)."""
    src = tmp / "baseline"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BASELINE_COMMIT, "viewer"], capture_output=True,
                             check=False)
    if archive.returncode != 0:
        return {"error": f"git archive {BASELINE_COMMIT} failed: {archive.stderr.decode()[:200]}"}
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    env = dict(os.environ, SENSORLABEL_VIEWER_BASELINE="1", PYTHONPATH=str(src))
    return _in_child(drive, ["cold"], tmp / "baseline.json", env)


def _current(drive: Path, tmp: Path) -> dict:
    """This implementation, every mode, in a child process.

    Raises:
        RuntimeError: the child failed (its stderr in the message).
    """
    env = {k: v for k, v in os.environ.items() if k != "SENSORLABEL_VIEWER_BASELINE"}
    out = _in_child(drive, list(MODES), tmp / "current.json", env)
    if "error" in out:
        raise RuntimeError(f"the current viewer failed: {out['error']}")
    return out


def _plot(current: dict, baseline: dict, points: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for mode, style in (("paced", "o-"), ("back_to_back", "^-"), ("cold", "s-")):
        ax.plot(current[mode]["wall_ms"], style, label=f"{mode} (median {current[mode]['median_wall_ms']:.0f} ms)")
    if "cold" in baseline:
        ax.plot(baseline["cold"]["wall_ms"], "x--",
                label=f"previous implementation, cold (median {baseline['cold']['median_wall_ms']:.0f} ms)")
    ax.axhline(LIMIT_MS, color="r", ls=":", label=f"{LIMIT_MS:.0f} ms limit")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("wall ms (step to all views painted)")
    ax.set_title(f"viewer frame step, {points:,} points, 6 cameras, software GL under Xvfb")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "viewer.png", dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer frames (8 steps)")
    parser.add_argument("--drive", type=Path, help="an existing drive instead of a fresh synthetic one")
    parser.add_argument("--no-baseline", action="store_true", help="skip the previous implementation")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--modes", default="cold", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24", sys.executable, *sys.argv])
    if args.child:  # a viewer's own process (_in_child)
        args.out.write_text(json.dumps(_run_viewer(args.child, args.modes.split(","))))
        return 0
    frames = 9 if args.quick else 21
    tmp = Path(tempfile.mkdtemp(prefix="bench_viewer_"))
    try:
        drive = args.drive
        if drive is None:
            drive = tmp / "bench.drive"
            _make_drive(drive, frames)
        baseline = {} if args.no_baseline else _baseline(drive, tmp)
        current = _current(drive, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    paced = current["paced"]["median_wall_ms"]
    base = baseline.get("cold", {}).get("median_wall_ms")
    figures = [
        {"name": "frame_step_paced_median", "value": paced, "unit": "ms",
         "baseline_name": f"previous implementation ({BASELINE_COMMIT}), cold step", "baseline_value": base,
         "ratio": base / paced if base else None, "target": base / LIMIT_MS if base else None},
        {"name": "frame_step_cold_median", "value": current["cold"]["median_wall_ms"], "unit": "ms",
         "baseline_name": f"previous implementation ({BASELINE_COMMIT}), cold step", "baseline_value": base,
         "ratio": base / current["cold"]["median_wall_ms"] if base else None,
         "target": base / LIMIT_MS if base else None},
        {"name": "frame_step_paced_ui_cpu_median", "value": current["paced"]["median_cpu_ms"], "unit": "ms",
         "baseline_name": "previous implementation, UI thread CPU",
         "baseline_value": baseline.get("cold", {}).get("median_cpu_ms"),
         "ratio": (baseline["cold"]["median_cpu_ms"] / current["paced"]["median_cpu_ms"]) if base else None,
         "target": None},
        {"name": "open_drive", "value": current["open_drive_s"], "unit": "s",
         "baseline_name": "previous implementation", "baseline_value": baseline.get("open_drive_s"),
         "ratio": baseline["open_drive_s"] / current["open_drive_s"] if base else None, "target": None},
        {"name": "peak_memory", "value": current["peak_memory_mb"], "unit": "MiB",
         "baseline_name": "previous implementation", "baseline_value": baseline.get("peak_memory_mb"),
         "ratio": baseline["peak_memory_mb"] / current["peak_memory_mb"] if base else None, "target": None},
    ]
    record = {
        "benchmark": "viewer",
        "figures": figures,
        "checks": {"all_steps_timed": all(current[m]["steps"] == current["paced"]["steps"] for m in MODES)},
        "details": {
            "limit_ms": LIMIT_MS, "limit_met_paced": paced <= LIMIT_MS,
            "target_note": "target = baseline / 100 ms, so ratio >= target means the 100 ms limit is met",
            "points_per_sweep": current["points_per_sweep"], "cameras": current["cameras"],
            "gl": "software (LIBGL_ALWAYS_SOFTWARE=1) under Xvfb", "load_average_1min": os.getloadavg()[0],
            "current": current, "baseline": baseline,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "viewer.json").write_text(json.dumps(record, indent=2))
    _plot(current, baseline, current["points_per_sweep"])
    print(json.dumps(record))
    return 0 if all(record["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
