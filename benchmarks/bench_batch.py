#!/usr/bin/env python
"""Batch scaling: ``sensorlabel batch propagate`` over 8 synthetic drives on 1 and on 2 Dask workers.

Drives (tests/batch/simdrives.py): 20 frames at 10 Hz, 32 beams x 512 azimuth steps (about 16k points per sweep),
one 320x180 camera, 6 cars, 4 pedestrians and 2 cyclists; human keyframes at every 5th frame from the simulator
truth; propagation with ICP refinement (the default config). Every run works on fresh copies of the same drives.

Two ways to run the batch, each on 1 and on 2 worker processes (one thread each):
* cold: ``run_batch`` starts its own LocalCluster (what ``sensorlabel batch`` does on one machine): the wall time
  holds the cluster start and each worker process's first imports (open3d, scipy, zarr);
* warm: an already running cluster whose workers have imported the library (``--scheduler``, a real cluster).

Figures: the speed-up of 2 workers over 1 (warm, and cold); the per-drive overhead of Dask, (batch wall time on
1 worker - sum of the direct in-process run times) / drives, warm and cold, against the direct run time per drive
(direct: :func:`sensorlabel.batch.run_drive` in this process after a warm-up run); a re-run with every drive done
(all skipped from the done-markers, no cluster started).

Checks: every drive done in every run, the automated boxes of every drive match the truth (mean 3D IoU > 0.7),
the re-run skips every drive.

Run: ``python benchmarks/bench_batch.py [--quick]`` (--quick: 4 drives of 11 frames). Prints one JSON line
(format: benchmarks/run_all.py) and writes benchmarks/results/batch.json and batch.png. The 2-worker figures need
2 free cores; on a shared machine read the ratios, not the absolute times.
"""

from __future__ import annotations

import os

# The direct runs use one thread, as the Dask workers do (their nanny starts them with these variables set to 1):
# the comparison is then per core. Set before numpy and open3d are imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
MIN_MEAN_IOU = 0.7


def _fresh_copies(pristine: list[Path], dest: Path) -> list[Path]:
    dest.mkdir(parents=True)
    return [Path(shutil.copytree(p, dest / p.name)) for p in pristine]


def _mean_ious(drives: list[Path], truths: list[dict]) -> list[float]:
    from tests.batch.simdrives import automated_iou

    return [float(automated_iou(d, t)[0].mean()) for d, t in zip(drives, truths)]


def _warm_worker() -> None:
    """Import what a propagation task imports, as a long-running worker of a real cluster already has."""
    import open3d  # noqa: F401
    import scipy.spatial  # noqa: F401

    import sensorlabel.propagation  # noqa: F401


def _burn(_: int) -> float:
    """A fixed pure-Python CPU load; returns its seconds."""
    t0 = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


def cpu_parallelism() -> float:
    """How many cores this run really gets: 2 x (one burn alone) / (two burns in two processes at once).

    2.0 on an idle 2-core machine; about 1.0 when other work takes the second core. The 2-worker speed-up cannot
    exceed it.
    """
    from multiprocessing import get_context

    with get_context("spawn").Pool(2) as pool:
        pool.map(_burn, range(2))  # start-up out of the timing
        single = min(pool.apply(_burn, (0,)) for _ in range(2))
        t0 = time.perf_counter()
        pool.map(_burn, range(2), chunksize=1)
        both = time.perf_counter() - t0
    return 2.0 * single / both


def _batch(pristine: list[Path], dest: Path, workers: int, warm: bool):
    """(wall seconds, BatchReport, drives) of one batch on fresh copies; warm: on a started, warmed cluster."""
    from distributed import Client, LocalCluster

    from sensorlabel.batch import run_batch

    drives = _fresh_copies(pristine, dest)
    if not warm:
        t0 = time.perf_counter()
        report = run_batch("propagate", drives, workers=workers)
        return time.perf_counter() - t0, report, drives
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(_warm_worker)
        t0 = time.perf_counter()
        report = run_batch("propagate", drives, scheduler=cluster.scheduler_address)
        return time.perf_counter() - t0, report, drives


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="4 drives of 11 frames instead of 8 of 20")
    args = parser.parse_args(argv)
    num_drives, num_frames = (4, 11) if args.quick else (8, 20)

    sys.path.insert(0, str(REPO))
    from sensorlabel.batch import STATUS_DONE, STATUS_SKIPPED, plan_tasks, run_batch, run_drive
    from tests.batch.simdrives import SIM_SIZE, make_keyframed_drive

    work = Path(tempfile.mkdtemp(prefix="sensorlabel-bench-batch-"))
    try:
        start = time.perf_counter()
        pristine_root = work / "pristine"
        pristine_root.mkdir()
        truths, pristine = [], []
        for i in range(num_drives):
            path = pristine_root / f"sim{i:02d}.drive"
            truths.append(make_keyframed_drive(path, seed=100 + i, num_frames=num_frames))
            pristine.append(path)
        simulate_s = time.perf_counter() - start

        # Direct, in-process, after a warm-up (imports, open3d) on a scratch copy.
        warm = _fresh_copies(pristine[:1], work / "warmup")
        run_drive(plan_tasks("propagate", warm)[0], force=True)
        direct = _fresh_copies(pristine, work / "direct")
        direct_s = []
        for task in plan_tasks("propagate", direct):
            t0 = time.perf_counter()
            result = run_drive(task, force=True)
            direct_s.append(time.perf_counter() - t0)
            if result.status != STATUS_DONE:
                raise RuntimeError(f"direct run failed: {result}")
        ious = {"direct": _mean_ious(direct, truths)}

        walls, reports = {}, {}
        for mode in ("warm", "cold"):
            for workers in (1, 2):
                run = f"{mode}_{workers}"
                walls[run], reports[run], drives = _batch(pristine, work / run, workers, mode == "warm")
                ious[run] = _mean_ious(drives, truths)
        parallelism = cpu_parallelism()
        t0 = time.perf_counter()
        rerun = run_batch("propagate", drives, workers=2)  # the drives of the last run, all done
        rerun_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)

    sum_direct = float(sum(direct_s))
    n = num_drives

    def speedup(mode: str) -> dict:
        return {"name": f"propagate_{n}_drives_2_workers_{mode}", "value": round(walls[f"{mode}_2"], 2), "unit": "s",
                "baseline_name": f"the same batch on 1 worker ({mode})", "baseline_value": round(walls[f"{mode}_1"], 2),
                "ratio": round(walls[f"{mode}_1"] / walls[f"{mode}_2"], 3), "target": None}

    def overhead(mode: str) -> dict:
        per_drive = (walls[f"{mode}_1"] - sum_direct) / n
        return {"name": f"dask_overhead_per_drive_1_worker_{mode}", "value": round(per_drive, 3), "unit": "s",
                "baseline_name": "direct in-process run per drive (ratio: direct sum / batch wall)",
                "baseline_value": round(sum_direct / n, 3), "ratio": round(sum_direct / walls[f"{mode}_1"], 3),
                "target": None}

    checks = {
        "all_drives_done": all(r.status == STATUS_DONE for rep in reports.values() for r in rep.results),
        f"mean_iou_above_{MIN_MEAN_IOU}": all(v > MIN_MEAN_IOU for vals in ious.values() for v in vals),
        "rerun_all_skipped": all(r.status == STATUS_SKIPPED for r in rerun.results),
    }
    record = {
        "benchmark": "batch",
        "figures": [
            speedup("warm"), speedup("cold"), overhead("warm"), overhead("cold"),
            {"name": f"rerun_{n}_done_drives", "value": round(rerun_s, 3), "unit": "s",
             "baseline_name": "the cold 1-worker batch that did the work", "baseline_value": round(walls["cold_1"], 2),
             "ratio": round(walls["cold_1"] / max(rerun_s, 1e-6), 1), "target": None},
        ],
        "checks": checks,
        "details": {
            "drives": n, "frames_per_drive": num_frames, "keyframe_interval": 5,
            "sim": {k: list(v) if isinstance(v, tuple) else v for k, v in SIM_SIZE.items()},
            "simulate_and_write_s": round(simulate_s, 2),
            "direct_s": [round(s, 3) for s in direct_s],
            "task_s": {run: [round(r.seconds, 3) for r in rep.results] for run, rep in reports.items()},
            "wall_s": {**{run: round(w, 2) for run, w in walls.items()}, "rerun": round(rerun_s, 3)},
            "mean_iou": {k: [round(v, 3) for v in vals] for k, vals in ious.items()},
            "cpu_count": os.cpu_count(), "cpu_parallelism_measured": round(parallelism, 2), "threads_per_process": 1,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(record, indent=2) + "\n")
    _plot(record, RESULTS / "batch.png")
    print(json.dumps(record))
    return 0 if all(checks.values()) else 1


def _plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = record["details"]
    w = d["wall_s"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = ["direct\n(sum)", "warm\n1 worker", "warm\n2 workers", "cold\n1 worker", "cold\n2 workers",
              "re-run\n(all done)"]
    values = [sum(d["direct_s"]), w["warm_1"], w["warm_2"], w["cold_1"], w["cold_2"], w["rerun"]]
    bars = ax1.bar(labels, values, color=["#888888", "#4c72b0", "#55a868", "#8fa8d8", "#9fd0a8", "#c44e52"])
    ax1.bar_label(bars, fmt="%.1f")
    ax1.set_ylabel("wall time (s)")
    ax1.set_title(f"propagate {d['drives']} drives: speed-up warm {record['figures'][0]['ratio']:.2f}x, "
                  f"cold {record['figures'][1]['ratio']:.2f}x (cores available: "
                  f"{d['cpu_parallelism_measured']:.2f})", fontsize=10)
    x = np.arange(d["drives"])
    series = [("direct", d["direct_s"])] + [(run, d["task_s"][run]) for run in ("warm_1", "warm_2", "cold_1", "cold_2")]
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series):
        ax2.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=name)
    ax2.set_xlabel("drive")
    ax2.set_ylabel("seconds per drive (on its worker)")
    ax2.set_title(f"Dask overhead per drive: warm {record['figures'][2]['value']:.2f} s, "
                  f"cold {record['figures'][3]['value']:.2f} s", fontsize=10)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
