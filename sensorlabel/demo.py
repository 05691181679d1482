"""The main job, ``sensorlabel demo``: a synthetic drive, keyframes every 10th frame from its ground truth, the
frames between filled by propagation, and a report scored against the exact truth.

Layer: next to the command line (it uses the simulator, the drive, propagation and evaluation).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

KEYFRAME_INTERVAL = 10


@dataclass
class DemoReport:
    """Figures of one demo run."""

    drive_path: str
    frames: int
    points: int
    cameras: int
    truth_boxes: int
    keyframe_boxes: int
    filled_boxes: int
    written_by_source: dict
    mean_iou_filled: float
    share_car_iou_ge_0_7: float
    scores: dict = field(default_factory=dict)
    baseline_scores: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    peak_memory_mb: float = 0.0

    def to_text(self) -> str:
        lines = [
            f"sensorlabel demo: {self.drive_path}",
            f"  frames {self.frames}, lidar points {self.points:,}, cameras {self.cameras}",
            (f"  ground-truth boxes {self.truth_boxes}, human keyframe boxes {self.keyframe_boxes} "
             f"(every {KEYFRAME_INTERVAL}th frame), filled boxes {self.filled_boxes} {self.written_by_source}"),
            f"  mean 3D IoU of the filled boxes vs truth: {self.mean_iou_filled:.3f}",
            f"  cars with 3D IoU >= 0.7: {self.share_car_iou_ge_0_7:.1%}",
        ]
        for name, sc in self.baseline_scores.items():
            lines.append(f"  baseline {name:<14} mean IoU {sc['mean_iou']:.3f}, cars >= 0.7: {sc['car_share']:.1%}")
        lines.append("  wall time " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        lines.append(f"  peak memory {self.peak_memory_mb:.0f} MB")
        return "\n".join(lines)


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_demo(out: Path, *, num_frames: int = 100, seed: int = 0, view: bool = False) -> DemoReport:
    """Generate, keyframe, propagate and score; optionally open the viewer.

    Args:
        out: folder for ``demo.drive`` and ``demo_report.json`` (created; an earlier demo drive is replaced).
        num_frames: frames of the synthetic drive.
        seed: simulator seed.
        view: open the viewer afterwards when a display is present.

    Returns:
        DemoReport (also written to ``out/demo_report.json``).
    """
    from sensorlabel.eval.propagation import (
        GroundTruth,
        baseline_predictions,
        keyframe_mask,
        match_automated,
        score_boxes,
        store_keyframes,
    )
    from sensorlabel.geometry.boxes import Boxes
    from sensorlabel.propagation.propagate import propagate_drive
    from sensorlabel.sim import SimConfig, simulate, write_sim_drive

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    sim = simulate(SimConfig(seed=seed, num_frames=num_frames, image_size_px=(640, 360)))
    drive = write_sim_drive(sim, out / "demo.drive", overwrite=True)
    seconds["simulate+import"] = time.perf_counter() - t0

    frames, parts = [], []
    for f in range(drive.num_frames):
        boxes = sim.truth_boxes_ego(f)
        frames.append(np.full(len(boxes), f, dtype=np.int64))
        parts.append(boxes)
    truth = Boxes.concatenate(parts)
    frame = np.concatenate(frames)
    gt = GroundTruth(frame, truth, drive.frame_timestamps_ns, drive.world_SE3_ego(drive.frame_timestamps_ns))
    key = keyframe_mask(gt, KEYFRAME_INTERVAL, protocol="global")

    store = drive.labels
    id_map = store_keyframes(store, frame, truth, key, description="demo keyframes from ground truth")

    t1 = time.perf_counter()
    report = propagate_drive(drive)
    seconds["propagate"] = time.perf_counter() - t1

    rec = store.query()
    auto = rec.source != "human"
    found, rows = match_automated(rec, id_map, frame, truth.track_id, np.flatnonzero(~key))
    scores = score_boxes(gt, found, rec.boxes[rows], ~key)
    baselines = {}
    for name, (idx, pred) in baseline_predictions(gt, key).items():
        sc = score_boxes(gt, idx, pred, ~key)
        baselines[name] = {"mean_iou": sc["all"]["mean_iou"], "car_share": sc.get("car", {}).get("share_iou_ok", 0.0)}
    seconds["total"] = time.perf_counter() - t0

    demo = DemoReport(
        drive_path=str(drive.path),
        frames=drive.num_frames,
        points=drive.num_points(),
        cameras=len(drive.camera_names),
        truth_boxes=len(truth),
        keyframe_boxes=int(key.sum()),
        filled_boxes=int(auto.sum()),
        written_by_source=report.written,
        mean_iou_filled=scores["all"]["mean_iou"],
        share_car_iou_ge_0_7=scores.get("car", {}).get("share_iou_ok", 0.0),
        scores=scores,
        baseline_scores=baselines,
        seconds=seconds,
        peak_memory_mb=_peak_memory_mb(),
    )
    tmp = out / "demo_report.json.tmp"
    import json

    tmp.write_text(json.dumps(asdict(demo), indent=2))
    os.replace(tmp, out / "demo_report.json")
    if view:
        _open_viewer(drive.path)
    return demo


def _open_viewer(path: Path) -> None:
    """Open the desktop viewer when it is installed and a display is present; otherwise say why not."""
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        log.warning("no display: not opening the viewer (run `sensorlabel view %s` on a desktop)", path)
        return
    try:
        from sensorlabel.viewer.app import run_viewer
    except ImportError as exc:
        log.warning("viewer not available (%s): install the 'viewer' extra", exc)
        return
    run_viewer(path)
