"""Drive-level fusion: the array functions of this package run over every frame of a drive (``sensorlabel fuse``).

Outputs, written beside the drive in ``X.drive/fusion/`` (each file written to a temporary name, then ``os.replace``):

* ``stats.json``: per frame and camera, the points that project, the points visible after the depth buffer, the
  calibration score, the best correction of its window of frames (checked jointly) and whether the frame is flagged;
* ``colors.npz`` (``--colorize``): ``rgb (P_total,3) uint8``, ``seen (P_total,)``, ``camera_index`` and
  ``offsets (F+1,)`` (frame f's points are ``offsets[f]:offsets[f+1]``, in the order of its lidar sweep);
* ``aggregate.npz`` (``--aggregate N``): per frame, the last N sweeps in the ego frame at the frame's time with
  moving objects transferred along their labelled tracks: ``points (M,3) float32``, ``sweep_offset (M,)`` (0 = this
  frame, 1 = the one before, ...), ``offsets (F+1,)``;
* ``config.json``: the effective configuration.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sensorlabel.formats import atomic_write, atomic_write_bytes
from sensorlabel.fusion.aggregation import SweepInput, aggregate_sweeps
from sensorlabel.fusion.calibcheck import (
    CalibCheckConfig,
    CalibFrame,
    check_calibration,
    edge_distance,
    edge_points_ref,
)
from sensorlabel.fusion.colorize import colorize_points
from sensorlabel.fusion.occlusion import OcclusionConfig, visible_mask
from sensorlabel.fusion.projection import CameraView, project_sweep
from sensorlabel.geometry.boxes import Boxes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FuseConfig:
    """Effective configuration of ``sensorlabel fuse`` (written to ``fusion/config.json``).

    Attributes:
        colorize: write per-point colours.
        aggregate_sweeps: N > 1 writes N-sweep aggregates; 0 or 1 writes none.
        calibration_check: run the calibration check on every frame and camera.
        calibration_window: frames checked jointly (a window of consecutive frames shares one search; each frame
            gets its own scores and flag).
        rolling_iterations: row-time iterations for rolling-shutter cameras.
        occlusion: depth-buffer parameters. calibration: calibration-check parameters.
    """

    colorize: bool = False
    aggregate_sweeps: int = 0
    calibration_check: bool = True
    calibration_window: int = 3
    rolling_iterations: int = 2
    occlusion: OcclusionConfig = field(default_factory=OcclusionConfig)
    calibration: CalibCheckConfig = field(default_factory=CalibCheckConfig)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["occlusion"] = self.occlusion.to_dict()
        out["calibration"] = self.calibration.to_dict()
        return out


@dataclass(frozen=True)
class FuseReport:
    """What ``fuse_drive`` computed.

    Attributes:
        out_dir: the folder written. stats: per-frame records (see ``stats.json``).
        flagged: (frame, camera) pairs whose calibration looks off.
    """

    out_dir: Path
    stats: list[dict]
    flagged: list[tuple[int, str]]

    def to_text(self) -> str:
        cams: dict[str, list[dict]] = {}
        for rec in self.stats:
            for cam in rec["cameras"]:
                cams.setdefault(cam["camera"], []).append(cam)
        lines = [f"fusion of {len(self.stats)} frames -> {self.out_dir}"]
        for name, recs in cams.items():
            proj = np.mean([r["projected"] for r in recs])
            vis = np.mean([r["visible"] for r in recs])
            scores = [r["calibration"]["score"] for r in recs if r.get("calibration")]
            score = f", calibration score {np.nanmean(scores):.3f}" if scores and np.isfinite(scores).any() else ""
            lines.append(f"  {name}: {proj:.0f} points projected, {vis:.0f} visible per frame{score}")
        lines.append(f"flagged frames ({len(self.flagged)}): " + (", ".join(f"{f}:{c}" for f, c in self.flagged)
                                                                  if self.flagged else "none"))
        return "\n".join(lines)


def _boxes_at(drive, frame: int) -> Boxes:
    records = drive.labels.boxes_at(frame)
    return records.boxes if len(records) else Boxes.empty()


def _check_window(drive, pending: dict[str, list], config: CalibCheckConfig) -> list[tuple[int, str]]:
    """Run the calibration check of every camera over the window's frames; fill each frame's camera record."""
    flagged = []
    for name, items in pending.items():
        calibration = drive.sensors[name]
        result = check_calibration(name, [ev for _, ev, _ in items], calibration.camera,
                                   calibration.ego_SE3_sensor.inverse(), drive.world_SE3_ego, config)
        window = [items[0][0], items[-1][0]]
        for i, (frame, _, cam_rec) in enumerate(items):
            cam_rec["calibration"] = {
                "score": float(result.frame_scores[i]), "best_score": float(result.frame_best_scores[i]),
                "flagged": bool(result.frame_flagged[i]), "window": window,
                "window_score": result.score, "window_best_score": result.best_score,
                "correction_rotvec_rad": result.correction_rotvec_rad.tolist(),
                "correction_deg": result.correction_deg, "time_offset_s": result.time_offset_s,
                "num_edge_points": result.num_edge_points}
            if result.frame_flagged[i]:
                flagged.append((frame, name))
    return flagged


def fuse_drive(drive, config: FuseConfig = FuseConfig(), out_dir: str | os.PathLike | None = None,
               progress=None) -> FuseReport:
    """Project, occlude, check the calibration, colour and aggregate every frame of a drive.

    Args:
        drive: an opened :class:`~sensorlabel.drive.Drive`.
        config: what to compute.
        out_dir: output folder (default ``drive.path / "fusion"``).
        progress: optional callable ``(done, total)``.

    Returns:
        A :class:`FuseReport`.
    """
    out = Path(out_dir) if out_dir is not None else Path(drive.path) / "fusion"
    out.mkdir(parents=True, exist_ok=True)
    lidar = drive.lidar_names[0] if drive.lidar_names else None
    stats, flagged = [], []
    pending: dict[str, list] = {}  # camera -> [(frame, CalibFrame, camera record)] of the current window
    colors, color_offsets = [], [0]
    agg_points, agg_sweep, agg_offsets = [], [], [0]
    window: deque[SweepInput | None] = deque(maxlen=max(config.aggregate_sweeps, 1))  # the sweeps aggregated
    if lidar is not None:
        ego_SE3_lidar = drive.sensors[lidar].ego_SE3_sensor
    for frame in range(drive.num_frames):
        record = {"frame": frame, "timestamp_ns": int(drive.frame_timestamps_ns[frame]), "cameras": []}
        sweep = drive.frame_sweep(frame) if lidar is not None else None
        n_points = 0 if sweep is None else len(sweep.points)
        times_ns = None if sweep is None else sweep.point_times_ns()
        boxes = _boxes_at(drive, frame) if config.calibration_check or config.aggregate_sweeps > 1 else None
        if sweep is not None:
            views, image_index = [], []
            for cam in drive.camera_names:
                idx = drive.frame_camera_index(frame, cam)
                if idx >= 0:
                    views.append(CameraView.from_calibration(drive.sensors[cam],
                                                             int(drive.camera_timestamps_ns(cam)[idx])))
                    image_index.append(idx)
            ref_ns = int(sweep.timestamp_ns)
            points_ref, projections = project_sweep(sweep.xyz_sensor, times_ns, ego_SE3_lidar, views,
                                                    drive.world_SE3_ego, ref_ns,
                                                    rolling_iterations=config.rolling_iterations)
            visible = [p.select(visible_mask(p, config.occlusion)) for p in projections]
            need_images = config.colorize or config.calibration_check
            images = [drive.camera_image(v.name, i) for v, i in zip(views, image_index)] if need_images else []
            if config.calibration_check and views:
                # Returns on labelled objects move between the lidar and the camera time: leave them out.
                exclude = None
                if len(boxes):
                    exclude = boxes.points_in_boxes(np.asarray(points_ref), margin_m=0.3).any(axis=0)
                ring = sweep.field("ring") if "ring" in sweep.fields else None
                edges_ref, edge_weight = edge_points_ref(sweep.xyz_sensor, times_ns, ego_SE3_lidar,
                                                         drive.world_SE3_ego, ref_ns, ring=ring, exclude=exclude,
                                                         config=config.calibration)
            for c, (view, proj, vis) in enumerate(zip(views, projections, visible)):
                cam_rec = {"camera": view.name, "projected": len(proj), "visible": len(vis)}
                if config.calibration_check:
                    evidence = CalibFrame(edges_ref, edge_weight, edge_distance(images[c], config.calibration), ref_ns,
                                          int(view.timestamp_ns))
                    pending.setdefault(view.name, []).append((frame, evidence, cam_rec))
                record["cameras"].append(cam_rec)
            if config.colorize:
                col = colorize_points(n_points, visible, images)
                colors.append(col)
        elif config.colorize:
            colors.append(None)
        if config.colorize:
            color_offsets.append(color_offsets[-1] + n_points)
        if config.aggregate_sweeps > 1 and lidar is not None:
            window.append(None if sweep is None else
                          SweepInput(sweep.xyz_sensor, times_ns, int(sweep.timestamp_ns), boxes))
            inputs = [s for s in window if s is not None]
            if inputs:
                cloud = aggregate_sweeps(inputs, ego_SE3_lidar, drive.world_SE3_ego,
                                         int(drive.frame_timestamps_ns[frame]))
                agg_points.append(cloud.points)
                agg_sweep.append((len(inputs) - 1 - cloud.sweep_index).astype(np.int16))
            agg_offsets.append(agg_offsets[-1] + (len(agg_points[-1]) if inputs else 0))
        stats.append(record)
        if config.calibration_check and ((frame + 1) % max(config.calibration_window, 1) == 0
                                         or frame == drive.num_frames - 1):
            flagged.extend(_check_window(drive, pending, config.calibration))
            pending = {}
        if progress is not None:
            progress(frame + 1, drive.num_frames)

    atomic_write_bytes(out / "stats.json", json.dumps(stats, indent=1).encode())
    atomic_write_bytes(out / "config.json", json.dumps(config.to_dict(), indent=1).encode())
    if config.colorize:
        total = color_offsets[-1]
        rgb = np.zeros((total, 3), np.uint8)
        seen = np.zeros(total, bool)
        cam_idx = np.full(total, -1, np.int16)
        for f, col in enumerate(colors):
            if col is not None:
                sl = slice(color_offsets[f], color_offsets[f + 1])
                rgb[sl], seen[sl], cam_idx[sl] = col.rgb, col.seen, col.camera_index
        atomic_write(out / "colors.npz", lambda fh: np.savez(fh, rgb=rgb, seen=seen, camera_index=cam_idx,
                                                             offsets=np.asarray(color_offsets, np.int64)))
    if config.aggregate_sweeps > 1:
        pts = np.concatenate(agg_points) if agg_points else np.zeros((0, 3), np.float32)
        src = np.concatenate(agg_sweep) if agg_sweep else np.zeros(0, np.int16)
        atomic_write(out / "aggregate.npz", lambda fh: np.savez(fh, points=pts, sweep_offset=src,
                                                                offsets=np.asarray(agg_offsets, np.int64)))
    logger.info("fused %d frames into %s (%d flagged)", drive.num_frames, out, len(flagged))
    return FuseReport(out, stats, flagged)
