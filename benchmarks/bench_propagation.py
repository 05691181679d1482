"""Keyframe propagation on recorded and synthetic drives, with the baselines measured in the same run.

* Argoverse 2 log 7fab2350 (labels and poses, 156 frames, 11,364 boxes): share of cars at 3D IoU >= 0.7 for keyframe
  intervals 5, 10 and 20 (target >= 0.95 at 10, beating sensor-frame linear interpolation), and the wall time of a
  labels-only propagation of the log (target < 5 s) beside the time of the linear world-frame baseline.
* KITTI tracking sequences (labels and calibration only): all three intervals.
* A synthetic drive with ICP refinement at interval 10: share of cars at IoU >= 0.7 (target >= 0.95) and boxes per
  second, beside world-frame interpolation without ICP.

Usage: ``python benchmarks/bench_propagation.py [--quick]``. Prints one JSON line (format: benchmarks/README.md),
writes results/propagation.json and results/propagation.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def _gt_from_drive(drive):
    from sensorlabel.eval.propagation import GroundTruth

    rec = drive.labels.query(sources=["imported"])
    times = drive.frame_timestamps_ns
    return GroundTruth(rec.frame, rec.boxes, times, drive.world_SE3_ego(times))


def _labels_only_timing(gt, interval: int) -> tuple[float, float, int]:
    """Seconds for our labels-only propagation (keyframes -> store -> propagate -> written) and for the
    world-frame linear baseline on the same keyframes."""
    from sensorlabel.drive.labels import LabelStore
    from sensorlabel.eval.propagation import _DriveView, baseline_predictions, keyframe_mask
    from sensorlabel.propagation import PropagationConfig, propagate_drive

    key = keyframe_mask(gt, interval)
    with tempfile.TemporaryDirectory() as tmp:
        store = LabelStore(Path(tmp) / "labels.sqlite")
        kb = gt.boxes_ego[key]
        ids = {int(t): store.add_track(str(kb.label[kb.track_id == t][0])) for t in np.unique(kb.track_id)}
        store.put_boxes(gt.frame[key], kb.replace(track_id=np.array([ids[int(t)] for t in kb.track_id])), "human")
        t0 = time.perf_counter()
        report = propagate_drive(_DriveView(None, gt), PropagationConfig(refine=False), labels=store)
        ours = time.perf_counter() - t0
        store.close()
    t0 = time.perf_counter()
    baseline_predictions(gt, key)
    base = time.perf_counter() - t0
    return ours, base, sum(report.written.values())


def _car(res: dict, method: str) -> float:
    return res[method].get("car", {}).get("share_iou_ok", float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller synthetic drive, fewer KITTI sequences")
    args = parser.parse_args()
    from sensorlabel.eval.propagation import evaluate_propagation

    figures, checks, details = [], {}, {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-propagation-"))

    av2 = DATA / "av2_sensor" / "val" / "7fab2350-7eaf-3b7e-a39d-6937a4c1bede"
    if av2.is_dir():
        from sensorlabel.formats.av2 import import_av2

        drive = import_av2(av2, tmp / "av2.drive")
        gt = _gt_from_drive(drive)
        res = evaluate_propagation(gt, (5, 10, 20))
        details["av2"] = res
        for k in ("5", "10", "20"):
            figures.append({"name": f"av2_cars_iou0.7_share_k{k}", "value": _car(res[k], "ours"), "unit": "share",
                            "baseline_name": "linear interpolation in the sensor frame (CVAT)",
                            "baseline_value": _car(res[k], "linear_sensor"),
                            "ratio": _car(res[k], "ours") / max(_car(res[k], "linear_sensor"), 1e-9),
                            "target": 0.95 if k == "10" else None})
        checks["av2_k10_cars_ge_0.95"] = _car(res["10"], "ours") >= 0.95
        checks["av2_k10_beats_linear_sensor"] = _car(res["10"], "ours") > _car(res["10"], "linear_sensor")
        ours_s, base_s, written = _labels_only_timing(gt, 10)
        figures.append({"name": "av2_labels_only_propagation_wall", "value": ours_s, "unit": "s",
                        "baseline_name": "linear world-frame baseline, same keyframes (in memory, no store)",
                        "baseline_value": base_s, "ratio": base_s / max(ours_s, 1e-9), "target": None})
        details["av2_boxes_written"] = written
        checks["av2_labels_only_under_5s"] = ours_s < 5.0

    kitti = DATA / "kitti_tracking"
    if kitti.is_dir():
        from sensorlabel.formats.kitti import import_kitti_tracking

        seqs = sorted(p.stem for p in (kitti / "training" / "label_02").glob("*.txt"))
        seqs = seqs[:3] if args.quick else seqs
        per_k: dict[str, list] = {"5": [], "10": [], "20": []}
        for seq in seqs:
            drive = import_kitti_tracking(kitti, tmp / f"kitti_{seq}.drive", sequence=seq)
            res = evaluate_propagation(_gt_from_drive(drive), (5, 10, 20), methods=("ours", "linear_sensor"))
            details[f"kitti_{seq}"] = res
            for k in per_k:
                per_k[k].append((res[k]["ours"].get("car", {}).get("boxes", 0), _car(res[k], "ours"),
                                 _car(res[k], "linear_sensor")))
        for k, rows in per_k.items():
            rows = np.array([r for r in rows if r[0] > 0])
            w = rows[:, 0] / rows[:, 0].sum()
            ours, base = float(np.sum(w * rows[:, 1])), float(np.sum(w * rows[:, 2]))
            figures.append({"name": f"kitti_tracking_cars_iou0.7_share_k{k}", "value": ours, "unit": "share",
                            "baseline_name": "linear interpolation in the sensor frame", "baseline_value": base,
                            "ratio": ours / max(base, 1e-9), "target": None})

    from sensorlabel.eval.propagation import GroundTruth
    from sensorlabel.geometry.boxes import Boxes
    from sensorlabel.propagation import PropagationConfig
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive

    frames = 30 if args.quick else 60
    sim = simulate(SimConfig(seed=1, num_frames=frames, num_cameras=1, image_size_px=(320, 180)))
    drive = write_sim_drive(sim, tmp / "sim.drive")
    parts = [sim.truth_boxes_ego(f) for f in range(frames)]
    gt = GroundTruth(np.concatenate([np.full(len(b), f) for f, b in enumerate(parts)]), Boxes.concatenate(parts),
                     drive.frame_timestamps_ns, drive.world_SE3_ego(drive.frame_timestamps_ns))
    t0 = time.perf_counter()
    res = evaluate_propagation(gt, (10,), drive=drive, methods=("ours", "linear_world", "linear_sensor"))
    icp_s = time.perf_counter() - t0
    res_interp = evaluate_propagation(gt, (10,), drive=drive, config=PropagationConfig(refine=False),
                                      methods=("ours",))
    details["synthetic_k10"] = res
    details["synthetic_k10_interpolation_only"] = res_interp
    n_boxes = res["10"]["ours"]["all"]["boxes"]
    figures.append({"name": "synthetic_cars_iou0.7_share_k10_icp", "value": _car(res["10"], "ours"), "unit": "share",
                    "baseline_name": "our world-frame interpolation without ICP",
                    "baseline_value": _car(res_interp["10"], "ours"),
                    "ratio": _car(res["10"], "ours") / max(_car(res_interp["10"], "ours"), 1e-9), "target": 0.95})
    figures.append({"name": "synthetic_icp_boxes_per_second", "value": n_boxes / icp_s, "unit": "boxes/s",
                    "baseline_name": None, "baseline_value": None, "ratio": None, "target": None})
    checks["synthetic_k10_cars_ge_0.95"] = _car(res["10"], "ours") >= 0.95

    record = {"benchmark": "propagation", "figures": figures, "checks": checks,
              "details": {"frames_synthetic": frames, **{k: v for k, v in details.items() if k.startswith("av2_")}}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "propagation.json").write_text(json.dumps({**record, "details": details}, indent=2, default=float))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = [f for f in figures if f["unit"] == "share"]
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(shares))
    ax.bar(x - 0.2, [f["value"] for f in shares], 0.4, label="sensorlabel")
    ax.bar(x + 0.2, [f["baseline_value"] for f in shares], 0.4, label="baseline")
    ax.set_xticks(x, [f["name"].replace("_cars_iou0.7_share", "") for f in shares], rotation=30, ha="right")
    ax.set_ylabel("cars with 3D IoU >= 0.7")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "propagation.png", dpi=100)
    print(json.dumps(record, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
