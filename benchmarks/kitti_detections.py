"""Seeded synthetic detections from the KITTI tracking ground truth, in AB3DMOT's detection CSV layout.

The real KITTI tracking data in ``../shared/data/kitti_tracking`` has labels but no detector output, so the tracker
benchmark makes detections from the labels with a simple, documented error model (all draws from one seeded
generator per sequence, so a run is reproducible):

* Classes Car, Pedestrian and Cyclist are detected; other labelled types (Van, Truck, ...) and DontCare are not.
* Misses: a labelled object is dropped with probability ``0.08 + 0.12 * occluded`` (occlusion level 0..2) plus
  ``0.1`` when it is farther than 40 m: occluded and distant objects are missed more, as with a real detector.
* Localisation noise: centre ``N(0, 0.10 m + 0.005 * distance)`` per axis, sizes times ``N(1, 0.04)``, heading
  ``N(0, 0.08 rad)``, and 3% of the boxes flipped by pi (a common detector error). The 2D box gets N(0, 3 px).
* False positives: ``Poisson(0.8)`` per frame, placed uniformly in the camera's view 5-50 m ahead with the sizes
  of a random class; their 2D box is the projection through P2.
* Scores: true detections ``U(0.35, 1.0)``, false positives ``U(0.0, 0.6)``, so a score threshold trades recall for
  precision as with a real detector (sAMOTA integrates over that trade-off).

Usage: ``python benchmarks/kitti_detections.py --out DIR [--seed 0] [--seqs 0000 0002 ...]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sensorlabel.formats.kitti import (
    KittiLabelTable,
    kitti_to_boxes_rect,
    project_boxes_to_image,
    read_kitti_calib,
    read_kitti_tracking_labels,
)
from sensorlabel.geometry.boxes import Boxes
from sensorlabel.tracking.kitti_detections import write_kitti_detections

KITTI_TRACKING = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kitti_tracking" / "training"
DETECTED_TYPES = ("Car", "Pedestrian", "Cyclist")
IMAGE_SIZE_PX = (1242, 375)
# Typical (h, w, l) per class for false positives.
_FP_SIZES = {"Car": (1.5, 1.6, 3.9), "Pedestrian": (1.75, 0.65, 0.85), "Cyclist": (1.75, 0.6, 1.75)}


def synthesize_sequence(labels: KittiLabelTable, P2: np.ndarray, rng: np.random.Generator) -> KittiLabelTable:
    """Noisy detections with misses and false positives for one sequence's labels (see the module docstring)."""
    gt = labels[np.isin(labels.type, DETECTED_TYPES) & (labels.track_id >= 0)]
    n = len(gt)
    distance = np.linalg.norm(gt.location_rect_m[:, [0, 2]], axis=1)
    p_miss = 0.08 + 0.12 * np.clip(gt.occluded, 0, 2) + 0.1 * (distance > 40.0)
    keep = rng.random(n) >= p_miss
    det = gt[keep]
    m = len(det)
    sigma = 0.10 + 0.005 * distance[keep]
    loc = det.location_rect_m + rng.normal(0.0, 1.0, (m, 3)) * sigma[:, None]
    hwl = det.hwl_m * rng.normal(1.0, 0.04, (m, 3)).clip(0.8, 1.2)
    ry = det.rotation_y_rad + rng.normal(0.0, 0.08, m) + np.pi * (rng.random(m) < 0.03)
    ry = (ry + np.pi) % (2 * np.pi) - np.pi
    bbox = det.bbox_2d_px + rng.normal(0.0, 3.0, (m, 4))
    true_part = KittiLabelTable(det.frame, np.full(m, -1), det.type, np.zeros(m), np.zeros(m, np.int64), det.alpha,
                                bbox, hwl, loc, ry, rng.uniform(0.35, 1.0, m))

    frames = np.arange(int(labels.frame.max()) + 1 if len(labels) else 0)
    n_fp = rng.poisson(0.8, frames.size)
    fp_frame = np.repeat(frames, n_fp)
    k = fp_frame.size
    fp_type = rng.choice(np.array(DETECTED_TYPES), size=k, p=[0.7, 0.15, 0.15])
    fp_hwl = np.array([_FP_SIZES[t] for t in fp_type.tolist()]).reshape(k, 3) * rng.normal(1.0, 0.08, (k, 3))
    z = rng.uniform(5.0, 50.0, k)
    x = rng.uniform(-0.6, 0.6, k) * z
    y = rng.normal(1.65, 0.1, k)  # bottom of the box on the road, ~1.65 m below the camera
    fp_ry = rng.uniform(-np.pi, np.pi, k)
    fp_loc = np.stack([x, y, z], axis=1)
    fp_table = KittiLabelTable(fp_frame, np.full(k, -1), fp_type, np.zeros(k), np.zeros(k, np.int64),
                               (fp_ry - np.arctan2(x, z) + np.pi) % (2 * np.pi) - np.pi, np.zeros((k, 4)), fp_hwl,
                               fp_loc, fp_ry, rng.uniform(0.0, 0.6, k))
    fp_boxes = kitti_to_boxes_rect(fp_table) if k else Boxes.empty()
    fp_bbox, _ = project_boxes_to_image(fp_boxes, P2, IMAGE_SIZE_PX)
    fp_table = KittiLabelTable(fp_table.frame, fp_table.track_id, fp_table.type, fp_table.truncated,
                               fp_table.occluded, fp_table.alpha, fp_bbox, fp_table.hwl_m, fp_table.location_rect_m,
                               fp_table.rotation_y_rad, fp_table.score)
    both = KittiLabelTable.concatenate([true_part, fp_table])
    order = np.lexsort((rng.random(len(both)), both.frame))  # per frame, in no particular order
    return both[order]


def generate(out_dir: Path, seed: int = 0, sequences: list[str] | None = None,
             root: Path = KITTI_TRACKING) -> list[str]:
    """Write ``out_dir/SEQ.txt`` for every labelled sequence (or the given ones). Returns the sequence names."""
    names = sequences or sorted(p.stem for p in (root / "label_02").glob("*.txt"))
    for name in names:
        labels = read_kitti_tracking_labels(root / "label_02" / f"{name}.txt")
        calib = read_kitti_calib(root / "calib" / f"{name}.txt")
        rng = np.random.default_rng([seed, int(name)])
        write_kitti_detections(out_dir / f"{name}.txt", synthesize_sequence(labels, calib.P2, rng))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seqs", nargs="*", default=None)
    args = parser.parse_args(argv)
    names = generate(args.out, args.seed, args.seqs)
    print(f"wrote detections for {len(names)} sequences to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
