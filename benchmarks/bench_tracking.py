"""Tracker on the KITTI tracking sequences: sAMOTA, MOTA, IDS, HOTA and frames per second.

Detections come from the KITTI tracking ground truth in ``../shared/data/kitti_tracking`` (10 labelled sequences)
through the seeded error model of ``benchmarks/kitti_detections.py`` (misses, noise, heading flips, false positives,
scores), written to a temporary folder (the data is non-commercial and stays out of the repository).

Speed (tracker ``update`` calls only; reading files and converting boxes are excluded, the same for every variant):

* ``online``: one :class:`Tracker` per sequence, frame after frame -- the online case.
* ``lockstep``: all sequences in one tracker, one stream each (what ``sensorlabel track`` does for a folder);
  frames per second count every sequence's frames.
* ``baseline``: the same tracker with per-track Kalman predict/update calls and per-pair affinities in Python
  loops (the AB3DMOT style), checked to give the same tracks; the ratio online / baseline is the vectorisation gain.

The vectorised variants run ``--repeats`` times (best kept, as the least disturbed by other jobs); the baseline once.

Each is timed by the wall clock and by this process's CPU time: on a shared machine (other jobs on the same cores)
the wall clock counts time the process waited for a core; the load average is recorded with the figures.

Metrics: ``sensorlabel.eval.kitti_filter.evaluate_kitti_tracking`` on the lockstep results (3D IoU 0.25, KITTI's
filtering rules). Usage: ``python benchmarks/bench_tracking.py [--quick] [--seed 0]``. Prints one JSON line, writes
``benchmarks/results/tracking.json`` and ``benchmarks/results/tracking.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kitti_detections import KITTI_TRACKING, generate  # noqa: E402

from sensorlabel.eval.kitti_filter import evaluate_kitti_tracking  # noqa: E402
from sensorlabel.formats.kitti import write_kitti_tracking_labels  # noqa: E402
from sensorlabel.tracking.association import METRICS, Association, paired_affinity  # noqa: E402
from sensorlabel.tracking.kitti_detections import (  # noqa: E402
    UP_SE3_RECT,
    kitti_sensor_frame_config,
    read_kitti_detections,
    run_tracker,
    split_frames,
    track_kitti_sequences,
)
from sensorlabel.tracking.tracker import Tracker  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_SEQS = ["0000", "0003", "0017"]


class LoopTracker(Tracker):
    """The same tracker with one Kalman call per track and one affinity call per pair (the baseline)."""

    def _predict(self, group, dt_s):
        for i in range(len(group)):
            x, P = group.model.predict(group.x[i:i + 1], group.P[i:i + 1], dt_s)
            group.x[i], group.P[i] = x[0], P[0]

    def _correct(self, group, rows, box7):
        for r, z in zip(rows, box7):
            x, P = group.model.update(group.x[r:r + 1], group.P[r:r + 1], z[None])
            group.x[r], group.P[r] = x[0], P[0]

    def _associate(self, tracks_box7, track_class, detections_box7, detection_class, track_stream, detection_stream):
        t, d = len(tracks_box7), len(detections_box7)
        pairs, values = [], []
        for i in range(t):
            for j in range(d):
                if track_class[i] != detection_class[j] or track_stream[i] != detection_stream[j]:
                    continue
                a, b = tracks_box7[i:i + 1], detections_box7[j:j + 1]
                gate = 0.5 * (np.linalg.norm(a[0, 4:7]) + np.linalg.norm(b[0, 4:7])) + self.config.gate_margin_m
                if np.linalg.norm(a[0, :3] - b[0, :3]) > gate:
                    continue
                metric = METRICS[self._metric[track_class[i]]]
                value = float(paired_affinity(a, b, metric)[0])
                thr = self._threshold[track_class[i]]
                if (-value <= thr) if metric == "center_distance" else (value >= thr):
                    pairs.append((i, j))
                    values.append(value)
        if not pairs:
            return Association(np.zeros((0, 2), np.int64), np.zeros(0), np.arange(t), np.arange(d))
        rows = sorted({p[0] for p in pairs})
        cols = sorted({p[1] for p in pairs})
        span = max(abs(v) for v in values) + 1.0
        forbidden = 2.0 * span * (min(len(rows), len(cols)) + 1)
        cost = np.full((len(rows), len(cols)), forbidden)
        for (i, j), v in zip(pairs, values):
            cost[rows.index(i), cols.index(j)] = -v
        sr, sc = linear_sum_assignment(cost)
        ok = cost[sr, sc] < forbidden
        mr, mc = np.asarray(rows)[sr[ok]], np.asarray(cols)[sc[ok]]
        return Association(np.stack([mr, mc], axis=1).astype(np.int64), -cost[sr[ok], sc[ok]],
                           np.setdiff1d(np.arange(t), mr), np.setdiff1d(np.arange(d), mc))


def _timed(tracker: Tracker, batch) -> tuple[float, float, list]:
    """(wall seconds, CPU seconds of this process, outputs)."""
    start, cpu = time.perf_counter(), time.process_time()
    outputs = run_tracker(tracker, batch)
    return time.perf_counter() - start, time.process_time() - cpu, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only sequences {QUICK_SEQS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant, the baseline included (best is kept)")
    args = parser.parse_args(argv)
    if not (KITTI_TRACKING / "label_02").is_dir():
        print(json.dumps({"skipped": f"KITTI tracking labels not found at {KITTI_TRACKING}"}))
        return 0
    config = kitti_sensor_frame_config()
    with tempfile.TemporaryDirectory() as tmp:
        det_dir, res_dir = Path(tmp) / "detections", Path(tmp) / "results"
        names = generate(det_dir, args.seed, QUICK_SEQS if args.quick else None)
        tables = [read_kitti_detections(det_dir / f"{n}.txt") for n in names]
        batches = [split_frames([t], [UP_SE3_RECT]) for t in tables]
        frames = int(sum(b.num_frames for b in batches))
        detections = int(sum(len(t) for t in tables))

        # Best of `repeats` runs for every variant: on a shared machine the minimum is the least disturbed.
        t_online, c_online = np.inf, np.inf
        for _ in range(args.repeats):
            runs = [_timed(Tracker(config), b) for b in batches]
            t_online = min(t_online, sum(r[0] for r in runs))
            c_online = min(c_online, sum(r[1] for r in runs))
        outs_online = [r[2] for r in runs]
        lockstep_batch = split_frames(tables, [UP_SE3_RECT] * len(tables))
        t_lockstep, c_lockstep = np.inf, np.inf
        for _ in range(args.repeats):
            dt, dc, _ = _timed(Tracker(config), lockstep_batch)
            t_lockstep, c_lockstep = min(t_lockstep, dt), min(c_lockstep, dc)
        # The baseline is timed alike: best of the same number of runs.
        t_base, c_base = np.inf, np.inf
        for _ in range(args.repeats):
            runs = [_timed(LoopTracker(config), b) for b in batches]
            t_base = min(t_base, sum(r[0] for r in runs))
            c_base = min(c_base, sum(r[1] for r in runs))
        identical = all(np.array_equal(o.track_id, r.track_id) and np.allclose(o.box7, r.box7)
                        for run, ref in zip(runs, outs_online) for o, r in zip(run[2], ref))

        res_dir.mkdir()
        for name, result in zip(names, track_kitti_sequences(tables, None, config)):
            write_kitti_tracking_labels(res_dir / f"{name}.txt", result)
        report = evaluate_kitti_tracking(KITTI_TRACKING / "label_02", res_dir, names)

    fps_online, fps_lockstep, fps_base = frames / t_online, frames / t_lockstep, frames / t_base
    load_1min = os.getloadavg()[0]
    keys = ("sAMOTA", "AMOTA", "AMOTP", "MOTA", "MOTP", "IDS", "FRAG", "FP", "FN", "HOTA", "precision", "recall")
    record = {
        "benchmark": "tracking_kitti",
        "sequences": names,
        "frames": frames,
        "detections": detections,
        "mean_detections_per_frame": detections / frames,
        "fps_online": fps_online,
        "fps_lockstep_all_sequences": fps_lockstep,
        "fps_baseline_python_loops": fps_base,
        "speedup_online_vs_baseline": fps_online / fps_base,
        "cpu_fps_online": frames / c_online,
        "cpu_fps_lockstep_all_sequences": frames / c_lockstep,
        "cpu_fps_baseline_python_loops": frames / c_base,
        "cpu_speedup_online_vs_baseline": c_base / c_online,
        "cpu_us_per_frame_online": 1e6 * c_online / frames,
        "repeats": args.repeats,
        "load_average_1min": load_1min,
        "baseline_identical_tracks": bool(identical),
        "target_fps": 1000,
        "meets_target_online": fps_online >= 1000,
        "meets_target_lockstep": fps_lockstep >= 1000,
        "metrics": {cls: {k: m[k] for k in keys} for cls, m in report["classes"].items()},
        "iou_threshold": 0.25,
        "tracker_config": config.to_dict(),
        "detections_seed": args.seed,
        "quick": args.quick,
    }
    car = record["metrics"].get("Car", {})
    summary = {
        "benchmark": "tracking",
        "figures": [
            {"name": "fps_one_tracker_per_sequence", "value": fps_online, "unit": "frames/s",
             "baseline_name": "same tracker with per-track and per-pair Python loops", "baseline_value": fps_base,
             "ratio": fps_online / fps_base, "target": None},
            {"name": "cpu_fps_one_tracker_per_sequence", "value": frames / c_online, "unit": "frames/s",
             "baseline_name": "target 1,000 frames/s", "baseline_value": 1000.0,
             "ratio": (frames / c_online) / 1000.0, "target": 1.0},
            {"name": "fps_all_sequences_one_tracker", "value": fps_lockstep, "unit": "frames/s",
             "baseline_name": "same tracker with Python loops", "baseline_value": fps_base,
             "ratio": fps_lockstep / fps_base, "target": None},
            *[{"name": f"car_{k}", "value": float(car[k]), "unit": "", "baseline_name": None,
               "baseline_value": None, "ratio": None, "target": None} for k in ("sAMOTA", "MOTA", "HOTA", "IDS")
              if k in car],
        ],
        "checks": {"baseline_identical_tracks": bool(identical)},
        "details": {k: v for k, v in record.items() if k != "tracker_config"},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracking.json").write_text(json.dumps({**summary, "details": record}, indent=2))
    _plot(record, RESULTS / "tracking.png")
    print(json.dumps(summary))
    return 0


def _plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["baseline\n(Python loops)", "online\n(vectorised)", "lockstep\n(all sequences)"]
    fps = [record["fps_baseline_python_loops"], record["fps_online"], record["fps_lockstep_all_sequences"]]
    cpu = [record["cpu_fps_baseline_python_loops"], record["cpu_fps_online"], record["cpu_fps_lockstep_all_sequences"]]
    x = np.arange(3)
    ax1.bar(x - 0.2, fps, 0.4, color="tab:blue", label="wall clock")
    ax1.bar(x + 0.2, cpu, 0.4, color="tab:green", label="process CPU time")
    ax1.set_xticks(x, names)
    ax1.axhline(record["target_fps"], color="red", linestyle="--", label="target 1,000 fps")
    ax1.set_yscale("log")
    ax1.set_ylabel("frames per second")
    ax1.set_title(f"Tracker speed, {record['frames']} KITTI frames, {record['mean_detections_per_frame']:.1f} det/frame"
                  f"\n(machine load {record['load_average_1min']:.1f} on {os.cpu_count()} cores)", fontsize=9)
    ax1.legend()
    classes = list(record["metrics"])
    width = 0.2
    for k, key in enumerate(["sAMOTA", "MOTA", "HOTA", "AMOTA"]):
        ax2.bar(np.arange(len(classes)) + (k - 1.5) * width, [record["metrics"][c][key] for c in classes], width,
                label=key)
    ax2.set_xticks(np.arange(len(classes)), [f"{c}\nIDS {record['metrics'][c]['IDS']}" for c in classes])
    ax2.set_ylim(0, 1.15)
    ax2.set_title("KITTI tracking (3D IoU 0.25), synthetic detections")
    ax2.legend(loc="upper center", ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
