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
from sensorlabel.geometry.lie import wrap_angle
from sensorlabel.geometry.se3 import SE3
from sensorlabel.propagation.interpolate import KeyframeTrack
from sensorlabel.propagation.refine import (
    box_points_mask,
    build_object_model,
    fit_box_to_points,
    icp_yaw_translation,
    object_frame_points,
)
from sensorlabel.propagation.smooth import KEYFRAME_VARIANCE, rts_smooth

log = logging.getLogger(__name__)

POSE_TIME_STEP_NS = 100_000


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
    # ICP may turn a box at most this far from the motion prior; beyond, the partial view is ambiguous (a box seen
    # from one side fits several headings) and only the translation is fitted.
    max_yaw_correction_rad: float = float(np.deg2rad(5.0))
    # ICP takes every k-th of the n observed points, k = max(1, floor(n / max_icp_points)): below twice this many
    # all are used, and more are thinned to between this many and just under twice as many, so this is not a hard
    # cap. A near car returns thousands, and beyond a few hundred the pose no longer improves while the cost grows
    # linearly.
    max_icp_points: int = 600
    model_voxel_m: float = 0.08
    # Objects shorter than this (pedestrians) show no heading in their points: translation only.
    min_length_for_yaw_m: float = 2.0


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
    # interior (non-key) frames between the first and last keyframe, and their interpolated poses (one batch)
    interior: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    interior_prior: SE3 | None = None
    # extrapolation state per direction (+1 forward, -1 backward): stopped flag and consecutive low-point frames
    stopped: set = field(default_factory=set)
    lows: dict = field(default_factory=lambda: {1: 0, -1: 0})


@dataclass(frozen=True)
class _SweepWorld:
    """One sweep in the world frame with a 2-D KD-tree, so each box crops its neighbourhood without a full pass."""

    points_world: np.ndarray  # (P,3)
    times_ns: np.ndarray  # (P,)
    tree_xy: object  # scipy cKDTree over points_world[:, :2]

    def near(self, center_world: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
        idx = self.tree_xy.query_ball_point(center_world[:2], radius_m)
        idx = np.asarray(idx, dtype=np.int64)
        return self.points_world[idx], self.times_ns[idx]


def _sweep_points_world(drive, frame: int) -> _SweepWorld | None:
    """Points of the frame's first-lidar sweep in the world, each placed with the ego pose at its own time."""
    sweep = drive.frame_sweep(frame)
    if sweep is None or len(sweep.points) == 0:
        return None
    times = sweep.point_times_ns()
    ego_SE3_lidar = drive.sensors[sweep.sensor].ego_SE3_sensor
    points_ego = ego_SE3_lidar.transform_points(sweep.xyz_sensor.astype(np.float64))
    from scipy.spatial import cKDTree

    # Poses are looked up on a 0.1 ms grid: at 30 m/s that moves a point by at most 1.5 mm, and a sweep needs
    # ~1,000 pose interpolations instead of one per point.
    unique_t, inverse = np.unique(times // POSE_TIME_STEP_NS * POSE_TIME_STEP_NS, return_inverse=True)
    poses = drive.world_SE3_ego(unique_t)
    if len(unique_t) == 1:
        world = poses[0].transform_points(points_ego)
    else:
        world = poses[inverse].transform_points(points_ego)
    return _SweepWorld(world, times, cKDTree(world[:, :2], balanced_tree=False, compact_nodes=False))


def _object_points(points_world: np.ndarray, times: np.ndarray, pose: SE3, lwh: np.ndarray, margin: float):
    """Points (and times) in a grown box around ``pose``, ground slice removed."""
    _, keep = box_points_mask(points_world, pose, lwh, margin)
    return points_world[keep], times[keep]


def _count_inside(points_world: np.ndarray, pose: SE3, lwh: np.ndarray) -> int:
    if len(points_world) == 0:
        return 0
    return int(box_points_mask(points_world, pose, lwh, 0.05, drop_ground=False)[1].sum())


def _at_time(work: _TrackWork, pose_at_obs: SE3, t_obs: int, t_frame: int) -> SE3:
    """Carry a pose found at the points' mean time to the frame time along the track's interpolated motion."""
    if t_obs == t_frame:
        return pose_at_obs
    prior = work.key.pose_at(np.array([t_obs, t_frame]))
    return pose_at_obs.compose(prior[0].inverse().compose(prior[1]))


def _fit(work: _TrackWork, cfg: PropagationConfig, sweep: _SweepWorld, prior: SE3, t_frame: int):
    """Refine one box. Returns (pose at frame time, source, points inside, fitness, deviation)."""
    lwh = work.key.lwh_m
    pts_world, times = sweep.near(prior.translation, float(np.linalg.norm(lwh[:2]) / 2 + 2 * cfg.search_margin_m))
    obs, obs_t = _object_points(pts_world, times, prior, lwh, cfg.search_margin_m)
    if len(obs) < cfg.min_points:
        return prior, "interpolated", _count_inside(pts_world, prior, lwh), 0.0, 0.0
    t_obs = int(np.round(obs_t.mean()))
    prior_obs = _at_time(work, prior, t_frame, t_obs)
    pose_obs, fitness = prior_obs, 0.0
    if len(work.model) >= cfg.min_points:
        sample = obs[:: max(1, len(obs) // cfg.max_icp_points)]

        def icp(fit_yaw: bool):
            return icp_yaw_translation(work.model, sample, prior_obs, max_iterations=cfg.icp_max_iterations,
                                       max_correspondence_m=cfg.icp_max_correspondence_m, model_tree=work.tree,
                                       fit_yaw=fit_yaw)

        res = icp(bool(lwh[0] >= cfg.min_length_for_yaw_m))
        turn = wrap_angle(res.world_SE3_object.yaw_rad() - prior_obs.yaw_rad())
        if abs(turn) > cfg.max_yaw_correction_rad:
            res = icp(False)
        if res.fitness >= cfg.min_fitness:
            pose_obs, fitness = res.world_SE3_object, res.fitness
    if fitness == 0.0:
        inside, _ = _object_points(obs, obs_t, prior_obs, lwh, 0.3)
        pose_obs = fit_box_to_points(prior_obs, lwh, inside)
    pose = _at_time(work, pose_obs, t_obs, t_frame)
    deviation = float(np.linalg.norm(pose.translation - prior.translation))
    return pose, "refined", _count_inside(pts_world, pose, lwh), fitness, deviation


def _confidence(source: np.ndarray, n_points: np.ndarray, fitness: np.ndarray, deviation: np.ndarray,
                frames_from_key: np.ndarray) -> np.ndarray:
    """(M,) confidence in [0, 1] (module docstring), vectorised over boxes."""
    key = np.exp(-frames_from_key / 20.0)
    motion = np.exp(-deviation / 0.5)
    pts = 1.0 - np.exp(-n_points / 15.0)
    fitted = (pts + fitness + motion + key) / 4.0
    return np.where(source == "interpolated", 0.5 * (key + motion) / 2.0, fitted)


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

    # Every sweep is read once. Keyframe sweeps are kept from pass 1 for pass 2, and the sweeps before the latest
    # first keyframe from pass 2 for the backward pass 3 (the only frames it visits); pass 2 drops every other
    # sweep once it is done with it.
    last_first = max(int(w.key_frames[0]) for w in works)
    backward = has_points and config.extrapolate
    reused = {int(f) for w in works for f in w.key_frames}
    if backward:
        reused |= set(range(last_first))
    cache: dict[int, _SweepWorld | None] = {}

    def sweep(frame: int):
        if frame in cache:
            return cache[frame]
        data = _sweep_points_world(drive, frame)
        if frame in reused:
            cache[frame] = data
        return data

    # Pass 1: object models from the keyframes.
    if has_points:
        key_frames_all = np.unique(np.concatenate([w.key_frames for w in works]))
        for frame in key_frames_all:
            data = sweep(int(frame))
            for w in works:
                if data is None or frame not in w.key_frames:
                    continue
                pose = w.key.pose_at(np.array([frame_times[frame]]))[0]
                near, near_t = data.near(pose.translation, float(np.linalg.norm(w.key.lwh_m[:2]) / 2 + 1.0))
                obs, obs_t = _object_points(near, near_t, pose, w.key.lwh_m, 0.1)
                if len(obs):
                    pose_obs = _at_time(w, pose, int(frame_times[frame]), int(np.round(obs_t.mean())))
                    w.model_parts.append(object_frame_points(obs, pose_obs, w.key.lwh_m, 0.1))
            if tick():
                report.cancelled = True
                return report
        for w in works:
            w.model = build_object_model(w.model_parts, voxel_m=config.model_voxel_m)
            w.model_parts = []
            w.tree = cKDTree(w.model) if len(w.model) >= 3 else None

    # Pass 2: frames between keyframes (priors interpolated for all of a track's frames in one call), and forward
    # extrapolation.
    for w in works:
        span = np.arange(int(w.key_frames[0]) + 1, int(w.key_frames[-1]))
        w.interior = np.setdiff1d(span, w.key_frames)
        w.interior_prior = w.key.pose_at(frame_times[w.interior]) if len(w.interior) else None
    if not has_points:
        step = num_frames - 1
        tick()
    else:
        for frame in range(num_frames):
            t = int(frame_times[frame])
            data = sweep(frame)
            for w in works:
                if frame <= int(w.key_frames[0]) or frame in w.key_frames:
                    continue
                if frame < int(w.key_frames[-1]):
                    prior = w.interior_prior[int(np.searchsorted(w.interior, frame))]
                    if data is None:
                        w.results[frame] = (prior, "interpolated", 0, 0.0, 0.0)
                    else:
                        w.results[frame] = _fit(w, config, data, prior, t)
                elif config.extrapolate and data is not None:
                    _extrapolate_step(w, config, frame, frame - 1, frame_times, world_SE3_ego_frames, data)
            if not backward or frame >= last_first:
                cache.pop(frame, None)
            if tick():
                report.cancelled = True
                return report

    # Pass 3: backward extrapolation, over the frames before the latest first keyframe (a tick for every frame).
    if backward:
        for frame in range(num_frames - 1, -1, -1):
            if frame < last_first:
                data = sweep(frame)
                for w in works:
                    if frame < int(w.key_frames[0]) and data is not None:
                        _extrapolate_step(w, config, frame, frame + 1, frame_times, world_SE3_ego_frames, data)
            if tick():
                report.cancelled = True
                return report

    _smooth_and_write(store, works, frame_times, world_SE3_ego_frames, config, report)
    report.seconds = time.perf_counter() - start
    log.info("propagated %d tracks from %d keyframes: %s in %.1f s", report.tracks, report.keyframes,
             report.written, report.seconds)
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
    # The frame-to-frame motion comes from the keyframes' last (or first) segment, continued along its twist;
    # differencing the previous estimates instead would compound their noise into the heading.
    seg = w.key.pose_at(np.array([frame_times[prev], frame_times[frame]]))
    prior = p1.compose(seg[0].inverse().compose(seg[1]))
    if np.linalg.norm(prior.translation[:2] - world_SE3_ego_frames[frame].translation[:2]) > cfg.max_range_m:
        w.stopped.add(step)
        return
    pose, source, n_in, fitness, dev = _fit(w, cfg, data, prior, int(frame_times[frame]))
    # Sparse far points pull the height around; a road user stays on the ground the keyframes put it on.
    pose = SE3._trusted(pose.rotation, np.r_[pose.translation[:2], prior.translation[2]])
    if n_in < cfg.min_points or source == "interpolated":
        w.lows[step] += 1
        if w.lows[step] >= 2:
            w.stopped.add(step)
            return
    else:
        w.lows[step] = 0
    w.results[frame] = (pose, "tracked", n_in, fitness, dev)


def _track_rows(w: _TrackWork) -> dict[str, np.ndarray]:
    """One track's automated boxes as arrays: frame, x, y, z, yaw (world), source, points, fitness, deviation.

    Interior frames without a point-based result keep their interpolated prior.
    """
    fitted = np.array(sorted(w.results), dtype=np.int64)
    missing = np.setdiff1d(w.interior, fitted)
    frames = [fitted, missing]
    poses = [SE3.stack([w.results[int(f)][0] for f in fitted]) if len(fitted) else None,
             w.interior_prior[np.searchsorted(w.interior, missing)] if len(missing) else None]
    trans = np.concatenate([p.translation for p in poses if p is not None] or [np.zeros((0, 3))])
    yaw = np.concatenate([p.yaw_rad() for p in poses if p is not None] or [np.zeros(0)])
    res = [w.results[int(f)] for f in fitted]
    source = np.array([r[1] for r in res] + ["interpolated"] * len(missing), dtype=object)
    numbers = np.array([r[2:] for r in res], dtype=np.float64).reshape(-1, 3)
    numbers = np.concatenate([numbers, np.zeros((len(missing), 3))])
    frame = np.concatenate(frames)
    return {"frame": frame, "xyz": trans, "yaw": yaw, "source": source, "points": numbers[:, 0],
            "fitness": numbers[:, 1], "deviation": numbers[:, 2]}


def _smooth_and_write(store, works, frame_times, world_SE3_ego_frames, cfg, report) -> None:
    """Smooth the tracks that used points (interpolation alone is already the exact geodesic), score and write."""
    num_frames = len(frame_times)
    rows = [_track_rows(w) for w in works]
    smoothable = [i for i, r in enumerate(rows) if cfg.smooth and np.any(r["source"] != "interpolated")]
    if smoothable:
        meas = np.full((len(smoothable), num_frames, 4), np.nan)
        var = np.full_like(meas, np.nan)
        for j, i in enumerate(smoothable):
            r, w = rows[i], works[i]
            sigma = np.where(r["source"] == "interpolated", 0.3, 0.05 + 0.2 * (1.0 - r["fitness"]))
            meas[j, r["frame"]] = np.concatenate([r["xyz"], r["yaw"][:, None]], axis=1)
            var[j, r["frame"]] = np.stack([sigma**2] * 3 + [(sigma / 2.0) ** 2], axis=1)
            key_poses = w.key.world_SE3_object
            meas[j, w.key_frames] = np.concatenate([key_poses.translation, key_poses.yaw_rad()[:, None]], axis=1)
            var[j, w.key_frames] = KEYFRAME_VARIANCE
            yaw = meas[j, :, 3]
            ok = np.isfinite(yaw)
            yaw[ok] = np.unwrap(yaw[ok])  # no 2*pi jumps for the filter
        smoothed = rts_smooth(frame_times.astype(np.float64) * 1e-9, meas, var)
        for j, i in enumerate(smoothable):
            r = rows[i]
            r["xyz"] = smoothed[j, r["frame"], :3]
            r["yaw"] = smoothed[j, r["frame"], 3]
    parts = []
    for r, w in zip(rows, works):
        if len(r["frame"]) == 0:
            continue
        dist = np.abs(r["frame"][:, None] - w.key_frames[None, :]).min(axis=1)
        conf = _confidence(r["source"], r["points"], r["fitness"], r["deviation"], dist)
        n = len(r["frame"])
        parts.append((r["frame"], Boxes.from_yaw(r["xyz"], np.tile(w.key.lwh_m, (n, 1)), r["yaw"],
                                                  np.full(n, w.key.track_id), np.full(n, w.key.label)),
                      r["source"], conf))
    if not parts:
        return
    frames = np.concatenate([p[0] for p in parts])
    world = Boxes.concatenate([p[1] for p in parts])
    sources = np.concatenate([p[2] for p in parts])
    confidence = np.concatenate([p[3] for p in parts])
    boxes_ego = world.transform(world_SE3_ego_frames[frames].inverse())
    for source in np.unique(sources):
        sel = sources == source
        result = store.put_boxes(frames[sel], boxes_ego[sel], source=str(source), confidence=confidence[sel],
                                 description=f"propagation: {int(sel.sum())} {source} boxes")
        report.written[str(source)] = int((result.box_ids >= 0).sum())
        report.skipped_human += int(np.sum(result.skipped_human))


def _write_config(drive, config: PropagationConfig, report: PropagationReport) -> None:
    """The effective config and the report, beside the labels (atomic replace)."""
    path = Path(drive.path) / "propagation.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"config": asdict(config), "report": report.to_dict()}, indent=2))
    os.replace(tmp, path)
