"""Write a synthetic drive to disk as a Drive (sensors.zarr + labels.sqlite)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from sensorlabel.geometry.boxes import Boxes
from sensorlabel.sim.simdrive import LIDAR_NAME, SimDrive

logger = logging.getLogger(__name__)

WITH_LABELS = ("none", "truth")


def write_sim_drive(sim: SimDrive, path: str | os.PathLike, with_labels: str = "none", *, overwrite: bool = False,
                    name: str | None = None, progress=None, workers: int = 2):
    """Generate every sweep and image of ``sim`` and write them as a drive.

    The drive holds the 100 Hz exact ego poses, one lidar sweep per frame and one JPEG per camera per frame; its
    metadata records the effective SimConfig under ``"sim_config"``. With ``with_labels="truth"`` every truth box
    (:meth:`SimDrive.truth_boxes_ego`) is stored with source ``"imported"``, confidence 1 and one label-store track
    per simulated object; each track's attributes hold ``{"sim_track_id": id}`` (the store's own ids are assigned
    in increasing sim id order, so they equal the sim ids when every object appears).

    Args:
        sim: the simulated drive.
        path: the ``NAME.drive`` folder to create.
        with_labels: ``"none"`` or ``"truth"``.
        overwrite: replace an existing drive.
        name: the drive's name (default: the folder name without ``.drive``).
        progress: optional callable ``progress(done_frames, total_frames)``.
        workers: threads generating frames concurrently.

    Returns:
        The opened Drive.

    Raises:
        ValueError: an unknown ``with_labels``.
        SchemaError/FormatError: from Drive.create (for example the path exists and overwrite is False).
    """
    from sensorlabel.drive import Drive

    if with_labels not in WITH_LABELS:
        raise ValueError(f"with_labels must be one of {WITH_LABELS}, got {with_labels!r}")
    path = Path(path)
    drive_name = name or (path.name[: -len(".drive")] if path.name.endswith(".drive") else path.name)
    metadata = {"sim_config": sim.config.to_dict()}
    with Drive.create(path, name=drive_name, source_format="sim", sensors=sim.sensors, overwrite=overwrite,
                      metadata=metadata) as writer:
        writer.write_poses(sim.pose_timestamps_ns, sim.world_SE3_ego)

        def generate(frame: int):
            return sim.sweep(frame), [sim.camera_image_bytes(camera, frame) for camera in sim.camera_names]

        # Frames are generated two at a time (Open3D and most of numpy release the GIL) and written in order.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for frame, (sweep, images) in enumerate(pool.map(generate, range(sim.num_frames))):
                writer.append_lidar_sweep(LIDAR_NAME, sweep.points, sweep.fields, sweep.timestamp_ns)
                for camera, encoded in zip(sim.camera_names, images):
                    writer.append_camera_image(camera, encoded, int(sim.camera_timestamps_ns(camera)[frame]))
                if progress is not None:
                    progress(frame + 1, sim.num_frames)
        drive = writer.finalize(sim.frame_timestamps_ns)
    if with_labels == "truth":
        per_frame = [sim.truth_boxes_ego(f) for f in range(sim.num_frames)]
        frames = np.concatenate([np.full(len(b), f, dtype=np.int64) for f, b in enumerate(per_frame)])
        boxes = Boxes.concatenate(per_frame)
        if len(boxes):
            store = drive.labels
            labels = dict(zip(boxes.track_id.tolist(), boxes.label.tolist()))
            store_id = {sim_id: store.add_track(labels[sim_id], {"sim_track_id": sim_id},
                                                description=f"sim track {sim_id}")
                        for sim_id in sorted(labels)}
            boxes = boxes.replace(track_id=np.array([store_id[t] for t in boxes.track_id.tolist()], dtype=np.int64))
            store.put_boxes(frames, boxes, source="imported", confidence=np.ones(len(boxes)),
                            description="simulator ground truth")
    logger.info("wrote synthetic drive %s (%d frames, labels=%s)", path, sim.num_frames, with_labels)
    return drive
