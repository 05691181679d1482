"""Keyframe propagation over a drive: human keyframes become complete, smooth, point-fitted tracks.

For each track with human boxes (keyframes):

1. interpolate between keyframes in the world frame (:mod:`.interpolate`), one size per track;
2. where the drive has lidar sweeps, refine every non-key box by ICP against an object model accumulated from the
   keyframes (:mod:`.refine`), falling back to sliding the box over its points when ICP has too little to work on;
3. extrapolate before the first and after the last keyframe frame by frame (constant twist prediction, then ICP),
   until the object leaves ``max_range_m`` or shows fewer than ``min_points`` points twice in a row;
4. smooth every track with an RTS smoother, keyframes fixed (:mod:`.smooth`);
5. give every box a confidence and write it with its source: ``interpolated`` (no points used), ``refined`` (fitted
   to points) or ``tracked`` (extrapolated). Human boxes are never changed: the label store refuses automated writes
   over them.

Confidence in [0, 1] is the mean of four scores: points inside the final box ``1 - exp(-n / 15)``, ICP fitness, the
agreement with the motion prior ``exp(-d / 0.5 m)`` where d is the distance the fit moved the box, and the nearness to
a keyframe ``exp(-frames / 20)``. Boxes placed without points get the last two only, halved, so they always rank
below fitted boxes in the review queue.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.geometry.se3 import SE3
from sensorlabel.propagation.interpolate import KeyframeTrack
from sensorlabel.propagation.refine import (
    GROUND_CLEARANCE_M,
    build_object_model,
    fit_box_to_points,
    icp_yaw_translation,
    object_frame_points,
)
from sensorlabel.propagation.smooth import KEYFRAME_VARIANCE, rts_smooth

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PropagationConfig:
    """Settings of :func:`propagate_drive`; written beside its output as ``propagation.json``."""

    refine: bool = True
    smooth: bool = True
    extrapolate: bool = True
    search_margin_m: float = 1.0
    min_points: int = 8
    min_fitness: float = 0.3
    max_range_m: float = 80.0
    icp_max_iterations: int = 25
    icp_max_correspondence_m: tuple[float, float] = (1.0, 0.2)
    max_extrapolation_frames: int = 50


@dataclass
class PropagationReport:
    """What a propagation run did."""

    tracks: int = 0
    keyframes: int = 0
    written: dict = field(default_factory=dict)
    skipped_human: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _TrackWork:
    key: KeyframeTrack
    key_frames: np.ndarray
    model: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    model_parts: list = field(default_factory=list)
    tree: object = None
    # frame -> (world pose, source, points inside, fitness, prior deviation m)
    results: dict = field(default_factory=dict)
    # extrapolation state per direction (+1 forward, -1 backward): stopped flag and consecutive low-point frames
    stopped: set = field(default_factory=set)
    lows: dict = field(default_factory=lambda: {1: 0, -1: 0})


def _sweep_points_world(drive, frame: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Points of the frame's first-lidar sweep in the world, each placed with the ego pose at its own time."""
    sweep = drive.frame_sweep(frame)
    if sweep is None or len(sweep.points) == 0:
        return None
    times = sweep.point_times_ns()
    ego_SE3_lidar = drive.sensors[sweep.sensor].ego_SE3_sensor
    points_ego = ego_SE3_lidar.transform_points(sweep.xyz_sensor.astype(np.float64))
    unique_t, inverse = np.unique(times, return_inverse=True)
    poses = drive.world_SE3_ego(unique_t)
    if len(unique_t) == 1:
        return poses[0].transform_points(points_ego), times
    return poses[inverse].transform_points(points_ego), times


def _object_points(points_world: np.ndarray, times: np.ndarray, pose: SE3, lwh: np.ndarray, margin: float):
    """Points (and times) in a grown box around ``pose``, ground slice removed."""
    local = pose.inverse().transform_points(points_world)
    half = lwh / 2.0 + margin
    keep = np.all(np.abs(local) <= half, axis=1) & (local[:, 2] >= -lwh[2] / 2.0 + GROUND_CLEARANCE_M)
    return points_world[keep], times[keep]


def _count_inside(points_world: np.ndarray, pose: SE3, lwh: np.ndarray) -> int:
    if len(points_world) == 0:
        return 0
    local = pose.inverse().transform_points(points_world)
    return int(np.all(np.abs(local) <= lwh / 2.0 + 0.05, axis=1).sum())


def _at_time(work: _TrackWork, pose_at_obs: SE3, t_obs: int, t_frame: int) -> SE3:
    """Carry a pose found at the points' mean time to the frame time along the track's interpolated motion."""
    if t_obs == t_frame:
        return pose_at_obs
    prior = work.key.pose_at(np.array([t_obs, t_frame]))
    return pose_at_obs.compose(prior[0].inverse().compose(prior[1]))


def _fit(work: _TrackWork, cfg: PropagationConfig, pts_world, times, prior: SE3, t_frame: int):
    """Refine one box. Returns (pose at frame time, source, points inside, fitness, deviation)."""
    lwh = work.key.lwh_m
    obs, obs_t = _object_points(pts_world, times, prior, lwh, cfg.search_margin_m)
    if len(obs) < cfg.min_points:
        return prior, "interpolated", _count_inside(pts_world, prior, lwh), 0.0, 0.0
    t_obs = int(np.round(obs_t.mean()))
    prior_obs = _at_time(work, prior, t_frame, t_obs)
    pose_obs, fitness = prior_obs, 0.0
    if len(work.model) >= cfg.min_points:
        res = icp_yaw_translation(work.model, obs, prior_obs, max_iterations=cfg.icp_max_iterations,
                                  max_correspondence_m=cfg.icp_max_correspondence_m, model_tree=work.tree)
        if res.fitness >= cfg.min_fitness:
            pose_obs, fitness = res.world_SE3_object, res.fitness
    if fitness == 0.0:
        inside, _ = _object_points(obs, obs_t, prior_obs, lwh, 0.3)
        pose_obs = fit_box_to_points(prior_obs, lwh, inside)
    pose = _at_time(work, pose_obs, t_obs, t_frame)
    deviation = float(np.linalg.norm(pose.translation - prior.translation))
    return pose, "refined", _count_inside(pts_world, pose, lwh), fitness, deviation


def _confidence(source: str, n_points: int, fitness: float, deviation: float, frames_from_key: int) -> float:
    key = np.exp(-frames_from_key / 20.0)
    motion = np.exp(-deviation / 0.5)
    if source == "interpolated":
        return float(0.5 * (key + motion) / 2.0)
    pts = 1.0 - np.exp(-n_points / 15.0)
    return float((pts + fitness + motion + key) / 4.0)


def _keyframe_tracks(store, frame_times: np.ndarray, world_SE3_ego_frames: SE3, track_ids) -> list[_TrackWork]:
    humans = store.query(sources=["human"], track_ids=track_ids)
    works = []
    for tid in np.unique(humans.boxes.track_id):
        sel = humans.boxes.track_id == tid
        frames = humans.frame[sel]
        key = KeyframeTrack.from_ego_boxes(humans.boxes[sel], frame_times[frames], world_SE3_ego_frames[frames])
        works.append(_TrackWork(key=key, key_frames=np.sort(frames)))
    return works


def propagate_drive(
    drive,
    config: PropagationConfig = PropagationConfig(),
    *,
    track_ids: list[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    labels=None,
) -> PropagationReport:
    """Fill every frame of every keyframed track of ``drive`` and write the boxes to its label store.

    Args:
        drive: an opened :class:`sensorlabel.drive.Drive`.
        config: settings.
        track_ids: limit to these tracks (default: every track with a human box).
        progress: called as ``progress(done, total)`` over frames.
        cancel: polled between frames; returning True stops without writing anything.
        labels: the label store to read keyframes from and write to (default ``drive.labels``; evaluation passes
            a scratch store so the drive's own labels stay untouched). The config file is written only for the
            drive's own store.

    Returns:
        PropagationReport; nothing is written when cancelled.
    """
    from scipy.spatial import cKDTree

    start = time.perf_counter()
    report = PropagationReport()
    frame_times = np.asarray(drive.frame_timestamps_ns, dtype=np.int64)
    num_frames = len(frame_times)
    world_SE3_ego_frames = drive.world_SE3_ego(frame_times)
    store = drive.labels if labels is None else labels
    works = _keyframe_tracks(store, frame_times, world_SE3_ego_frames, track_ids)
    report.tracks, report.keyframes = len(works), int(sum(len(w.key_frames) for w in works))
    if not works:
        return report
    has_points = config.refine and bool(drive.lidar_names)
    total_steps = num_frames * (3 if has_points else 1)
    step = 0

    def tick() -> bool:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total_steps)
        return bool(cancel is not None and cancel())

    cache: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def sweep(frame: int):
        if frame not in cache:
            if len(cache) > 4:
                cache.pop(next(iter(cache)))
            cache[frame] = _sweep_points_world(drive, frame)
        return cache[frame]

    # Pass 1: object models from the keyframes.
    if has_points:
        key_frames_all = np.unique(np.concatenate([w.key_frames for w in works]))
        for frame in key_frames_all:
            data = sweep(int(frame))
            for w in works:
                if data is None or frame not in w.key_frames:
                    continue
                pose = w.key.pose_at(np.array([frame_times[frame]]))[0]
                obs, obs_t = _object_points(data[0], data[1], pose, w.key.lwh_m, 0.1)
                if len(obs):
                    pose_obs = _at_time(w, pose, int(frame_times[frame]), int(np.round(obs_t.mean())))
                    w.model_parts.append(object_frame_points(obs, pose_obs, w.key.lwh_m, 0.1))
            if tick():
                report.cancelled = True
                return report
        for w in works:
            w.model = build_object_model(w.model_parts)
            w.model_parts = []
            w.tree = cKDTree(w.model) if len(w.model) >= 3 else None

    # Pass 2: frames between keyframes, and forward extrapolation.
    for frame in range(num_frames):
        t = int(frame_times[frame])
        data = sweep(frame) if has_points else None
        for w in works:
            first, last = int(w.key_frames[0]), int(w.key_frames[-1])
            if frame in w.key_frames or frame < first:
                continue
            if frame < last:
                prior = w.key.pose_at(np.array([t]))[0]
                if data is None:
                    w.results[frame] = (prior, "interpolated", 0, 0.0, 0.0)
                else:
                    w.results[frame] = _fit(w, config, data[0], data[1], prior, t)
            elif has_points and config.extrapolate and data is not None:
                _extrapolate_step(w, config, frame, frame - 1, frame_times, world_SE3_ego_frames, data)
        if tick():
            report.cancelled = True
            return report

    # Pass 3: backward extrapolation.
    if has_points and config.extrapolate:
        for frame in range(num_frames - 1, -1, -1):
            data = sweep(frame)
            for w in works:
                if frame < int(w.key_frames[0]) and data is not None:
                    _extrapolate_step(w, config, frame, frame + 1, frame_times, world_SE3_ego_frames, data)
            if tick():
                report.cancelled = True
                return report

    _smooth_and_write(store, works, frame_times, world_SE3_ego_frames, config, report)
    report.seconds = time.perf_counter() - start
    if labels is None:
        _write_config(drive, config, report)
    return report


def _extrapolate_step(w: _TrackWork, cfg: PropagationConfig, frame: int, prev: int, frame_times: np.ndarray,
                      world_SE3_ego_frames: SE3, data) -> None:
    """Predict the box at ``frame`` from the two frames before it (toward the keyframes), then fit it.

    Stops for good in this direction when the prediction leaves ``max_range_m`` of the ego, after
    ``max_extrapolation_frames``, or after two frames in a row with fewer than ``min_points`` points.
    """
    step = 1 if frame > prev else -1
    if step in w.stopped:
        return
    anchor = int(w.key_frames[-1] if step > 0 else w.key_frames[0])
    if abs(frame - anchor) > cfg.max_extrapolation_frames:
        w.stopped.add(step)
        return
    def known(f: int) -> SE3 | None:
        if f in w.results:
            return w.results[f][0]
        if f in w.key_frames:
            return w.key.pose_at(np.array([frame_times[f]]))[0]
        return None
    p1 = known(prev)
    if p1 is None:
        return
    p0 = known(prev - step)
    prior = p1 if p0 is None else p1.compose(p0.inverse().compose(p1))  # constant twist per frame
    if np.linalg.norm(prior.translation[:2] - world_SE3_ego_frames[frame].translation[:2]) > cfg.max_range_m:
        w.stopped.add(step)
        return
    pose, source, n_in, fitness, dev = _fit(w, cfg, data[0], data[1], prior, int(frame_times[frame]))
    if n_in < cfg.min_points or source == "interpolated":
        w.lows[step] += 1
        if w.lows[step] >= 2:
            w.stopped.add(step)
            return
    else:
        w.lows[step] = 0
    w.results[frame] = (pose, "tracked", n_in, fitness, dev)


def _smooth_and_write(store, works, frame_times, world_SE3_ego_frames, cfg, report) -> None:
    num_frames = len(frame_times)
    k = len(works)
    meas = np.full((k, num_frames, 4), np.nan)
    var = np.full((k, num_frames, 4), np.nan)
    for i, w in enumerate(works):
        for frame, res in w.results.items():
            pose, source, _, fitness, _ = res
            meas[i, frame] = [*pose.translation, float(pose.yaw_rad())]
            sigma = 0.3 if source == "interpolated" else 0.05 + 0.2 * (1.0 - fitness)
            var[i, frame] = [sigma**2, sigma**2, sigma**2, (sigma / 2.0) ** 2]
        key_poses = w.key.world_SE3_object
        meas[i, w.key_frames] = np.concatenate([key_poses.translation, key_poses.yaw_rad()[:, None]], axis=1)
        var[i, w.key_frames] = KEYFRAME_VARIANCE
        # Yaw unwrapped along time so the filter sees no 2*pi jumps.
        yaw = meas[i, :, 3]
        ok = np.isfinite(yaw)
        yaw[ok] = np.unwrap(yaw[ok])
    smoothed = rts_smooth(frame_times.astype(np.float64) * 1e-9, meas, var) if cfg.smooth else meas
    by_source: dict[str, list] = {}
    for i, w in enumerate(works):
        for frame, res in w.results.items():
            pose, source, n_in, fitness, dev = res
            x, y, z, yaw = smoothed[i, frame]
            if not np.all(np.isfinite([x, y, z, yaw])):
                continue
            nearest_key = int(np.min(np.abs(w.key_frames - frame)))
            conf = _confidence(source, n_in, fitness, dev, nearest_key)
            by_source.setdefault(source, []).append((frame, x, y, z, yaw, w.key, conf))
    for source, rows in by_source.items():
        frames = np.array([r[0] for r in rows], dtype=np.int64)
        world = Boxes.from_yaw(
            np.array([[r[1], r[2], r[3]] for r in rows]),
            np.array([r[5].lwh_m for r in rows]),
            np.array([r[4] for r in rows]),
            np.array([r[5].track_id for r in rows]),
            np.array([r[5].label for r in rows]),
        )
        boxes_ego = world.transform(world_SE3_ego_frames[frames].inverse())
        result = store.put_boxes(frames, boxes_ego, source=source,
                                        confidence=np.array([r[6] for r in rows]),
                                        description=f"propagation: {len(rows)} {source} boxes")
        report.written[source] = int((result.box_ids >= 0).sum())
        report.skipped_human += int(np.sum(result.skipped_human))


def _write_config(drive, config: PropagationConfig, report: PropagationReport) -> None:
    """The effective config and the report, beside the labels (atomic replace)."""
    path = Path(drive.path) / "propagation.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"config": asdict(config), "report": report.to_dict()}, indent=2))
    os.replace(tmp, path)
