"""Import throughput of KITTI Velodyne sweeps vs a bare ``np.fromfile`` of the same files, and random access to a
frame of the imported drive (points + image) vs reading the source files.

Data: the 3 real KITTI object frames (Geiger et al., CVPR 2012) from ../shared/data, repeated into a temporary
KITTI object layout of N frames (velodyne + image_2 + calib). Prints one JSON line; writes
benchmarks/results/import.json and import.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def _make_layout(root: Path, n: int) -> list[Path]:
    src = DATA / "kitti_object_3frames" / "training"
    for sub in ("velodyne", "image_2", "calib"):
        (root / "training" / sub).mkdir(parents=True)
    bins = []
    for i in range(n):
        k = i % 3
        stem = f"{i:06d}"
        shutil.copyfile(src / f"velodyne/{k:06d}.bin", root / f"training/velodyne/{stem}.bin")
        shutil.copyfile(src / f"image_2/{k:06d}.png", root / f"training/image_2/{stem}.png")
        shutil.copyfile(src / "calib/000000.txt", root / f"training/calib/{stem}.txt")  # one calibration for all
        bins.append(root / f"training/velodyne/{stem}.bin")
    return bins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="30 sweeps instead of 100")
    parser.add_argument("--frames", type=int, default=None)
    args = parser.parse_args()
    if not (DATA / "kitti_object_3frames").is_dir():
        print(json.dumps({"skipped": f"no real data at {DATA}"}))
        return 0
    from sensorlabel.drive import Drive
    from sensorlabel.formats.kitti import import_kitti_object

    n = args.frames or (30 if args.quick else 100)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bins = _make_layout(tmp / "kitti", n)
        images = [Path(str(b).replace("velodyne", "image_2").replace(".bin", ".png")) for b in bins]
        # warm the page cache for both sides, so both read from memory
        for b in bins:
            np.fromfile(b, dtype=np.float32)
        t0 = time.perf_counter()
        total_points = sum(len(np.fromfile(b, dtype=np.float32).reshape(-1, 4)) for b in bins)
        fromfile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        drive = import_kitti_object(tmp / "kitti", tmp / "bench.drive")
        import_s = time.perf_counter() - t0
        # import without images: only the Velodyne sweeps (the figure the issue asks for)
        for img in images:
            img.unlink()
        t0 = time.perf_counter()
        import_kitti_object(tmp / "kitti", tmp / "bench_lidar.drive")
        import_lidar_s = time.perf_counter() - t0
        _make_images(images)
        # random access: points + image of a random frame
        rng = np.random.default_rng(0)
        picks = rng.integers(0, n, 50)
        drive = Drive.open(tmp / "bench.drive")
        t0 = time.perf_counter()
        for f in picks:
            sweep = drive.frame_sweep(int(f))
            image = drive.camera_image_bytes("image_02", drive.frame_camera_index(int(f), "image_02"))
            assert len(sweep.points) and image
        drive_ms = (time.perf_counter() - t0) / len(picks) * 1e3
        t0 = time.perf_counter()
        for f in picks:
            pts = np.fromfile(bins[f], dtype=np.float32).reshape(-1, 4)
            data = images[f].read_bytes()
            assert len(pts) and data
        source_ms = (time.perf_counter() - t0) / len(picks) * 1e3
    record = {
        "benchmark": "import",
        "sweeps": n,
        "points": int(total_points),
        "fromfile_sweeps_per_s": n / fromfile_s,
        "import_lidar_only_sweeps_per_s": n / import_lidar_s,
        "import_lidar_only_vs_fromfile_ratio": fromfile_s / import_lidar_s,
        "import_with_images_sweeps_per_s": n / import_s,
        "import_with_images_vs_fromfile_ratio": fromfile_s / import_s,
        "target_ratio": 0.5,
        "random_access_drive_ms": drive_ms,
        "random_access_source_ms": source_ms,
        "random_access_drive_vs_source_ratio": drive_ms / source_ms,
        "python": sys.version.split()[0],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "import.json").write_text(json.dumps(record, indent=2))
    _plot(record)
    print(json.dumps(record))
    return 0


def _make_images(images: list[Path]) -> None:
    src = DATA / "kitti_object_3frames" / "training" / "image_2"
    for i, img in enumerate(images):
        shutil.copyfile(src / f"{i % 3:06d}.png", img)


def _plot(record: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar(["np.fromfile", "import (lidar)", "import (+images)"],
          [record["fromfile_sweeps_per_s"], record["import_lidar_only_sweeps_per_s"],
           record["import_with_images_sweeps_per_s"]])
    a.set_ylabel("sweeps / s")
    a.set_title(f"KITTI Velodyne import, {record['sweeps']} sweeps")
    b.bar(["drive", "source files"], [record["random_access_drive_ms"], record["random_access_source_ms"]])
    b.set_ylabel("ms per frame (points + image)")
    b.set_title("random frame access")
    fig.tight_layout()
    fig.savefig(RESULTS / "import.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main())
