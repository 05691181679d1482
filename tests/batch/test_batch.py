"""sensorlabel batch on dask.distributed: one task per drive, failures reported, re-runs skipped, killed workers.

Drives: tests/batch/simdrives.py (32 beams x 512 azimuth steps, one 320x180 camera, 11 frames, human keyframes at
every 5th frame from the simulator truth). Clusters: LocalCluster, 2 worker processes, one thread each.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sensorlabel.batch import (
    ERROR_BAD_INPUT,
    ERROR_LOST,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_SKIPPED,
    drive_fingerprint,
    is_done,
    plan_tasks,
    run_batch,
    run_drive,
)
from sensorlabel.errors import SensorlabelError
from tests.batch.simdrives import automated_iou, integrity_ok, killing_runner, make_keyframed_drive

pytestmark = pytest.mark.timeout(240)

MIN_MEAN_IOU = 0.7


@pytest.fixture(scope="module")
def base_drives(tmp_path_factory):
    """Four keyframed synthetic drives (seeds 0..3) and their truth, built once; tests work on copies."""
    root = tmp_path_factory.mktemp("base")
    return [(root / f"d{i}.drive", make_keyframed_drive(root / f"d{i}.drive", seed=i)) for i in range(4)]


def _copy(base, dest, name):
    path = dest / f"{name}.drive"
    shutil.copytree(base, path)
    return path


def _human_count(path) -> int:
    return automated_iou(path, {})[1]


def test_batch_propagate_reports_corrupt_drive_and_rerun_does_nothing(base_drives, tmp_path, capsys, monkeypatch):
    import sensorlabel.batch as batch
    from sensorlabel.cli import main

    drives = [_copy(base, tmp_path, f"drive{i}") for i, (base, _) in enumerate(base_drives)]
    corrupt = drives[2]
    (corrupt / "sensors.zarr" / "zarr.json").write_text("this is not json {")

    rc = main(["batch", "propagate", *map(str, drives), "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 2  # a drive failed on bad input
    rows = {line.split("|")[0].strip(): line for line in out.splitlines() if "|" in line}
    assert "failed (bad-input)" in rows["drive2"] and "sensors.zarr" in rows["drive2"], out
    assert not (corrupt / ".batch" / "propagate.json").exists()
    for i in (0, 1, 3):
        assert rows[f"drive{i}"].split("|")[1].strip() == "done", out
        marker = json.loads((drives[i] / ".batch" / "propagate.json").read_text())
        assert marker["config"]["options"] == {"refine": True, "extrapolate": True}
        iou, humans = automated_iou(drives[i], base_drives[i][1])
        assert humans == _human_count(base_drives[i][0])  # keyframes untouched
        assert len(iou) >= humans  # the frames between and around the keyframes are filled
        assert iou.mean() > MIN_MEAN_IOU, (i, iou.mean())
        assert integrity_ok(drives[i])

    good = [drives[i] for i in (0, 1, 3)]
    before = [drive_fingerprint(d) for d in good]

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started although every drive is done")

    monkeypatch.setattr(batch, "_connect", no_cluster)
    rc = main(["batch", "propagate", *map(str, good), "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("| skipped ") == 3, out
    assert [drive_fingerprint(d) for d in good] == before


def test_killed_worker_leaves_no_half_written_drive(base_drives, tmp_path):
    import dask

    once = _copy(base_drives[0][0], tmp_path, "killonce-a")
    always = _copy(base_drives[1][0], tmp_path, "killalways-b")
    humans_always = _human_count(always)
    # One worker death is tolerated per task (rescheduled on another worker); a second makes it a KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        report = run_batch("propagate", [once, always], workers=2, runner=killing_runner)
    by_name = {r.name: r for r in report.results}

    assert (tmp_path / "killonce-a.killed").exists()  # it really was killed once, mid-write
    assert by_name["killonce-a"].status == STATUS_DONE, by_name["killonce-a"]
    iou, humans = automated_iou(once, base_drives[0][1])
    assert humans == _human_count(base_drives[0][0]) and iou.mean() > MIN_MEAN_IOU
    assert is_done(plan_tasks("propagate", [once])[0])

    failed = by_name["killalways-b"]
    assert failed.status == STATUS_FAILED and failed.error == ERROR_LOST and "KilledWorker" in failed.message
    iou, humans = automated_iou(always, base_drives[1][1])
    assert humans == humans_always and len(iou) == 0  # the old state: the uncommitted delete never happened
    assert not (always / ".batch" / "propagate.json").exists()
    assert integrity_ok(once) and integrity_ok(always)
    assert report.exit_code == 1


def test_marker_tracks_labels_and_config(base_drives, tmp_path):
    path = _copy(base_drives[0][0], tmp_path, "m")
    task = plan_tasks("propagate", [path])[0]
    assert not is_done(task)
    assert run_drive(task).status == STATUS_DONE
    assert is_done(task) and run_drive(task).status == STATUS_SKIPPED
    assert not is_done(plan_tasks("propagate", [path], options={"refine": False})[0])

    from sensorlabel.drive.labels import LabelStore

    store = LabelStore(path / "labels.sqlite")
    rec = store.query(sources=["human"])
    store.update_box(int(rec.box_id[0]), center_m=rec.boxes.center_m[0] + np.array([0.3, 0.0, 0.0]))
    store.close()
    assert not is_done(task)  # an annotator changed a keyframe: the drive is redone


def test_eval_export_import_per_drive(tmp_path):
    path = tmp_path / "truth.drive"
    make_keyframed_drive(path, seed=7, labels="truth")
    result = run_drive(plan_tasks("eval", [path], options={"intervals": [5]})[0])
    assert result.status == STATUS_DONE, result
    scores = json.loads((path / "eval" / "propagation.json").read_text())["results"]["5"]
    assert scores["ours"]["all"]["mean_iou"] > MIN_MEAN_IOU
    assert scores["ours"]["all"]["mean_iou"] >= scores["copy_last"]["all"]["mean_iou"]

    result = run_drive(plan_tasks("export", [path], out=tmp_path / "export", options={"format": "mcap"})[0])
    assert result.status == STATUS_DONE, result
    bag = tmp_path / "export" / "truth" / "truth.mcap"
    imported = plan_tasks("import", [bag], out=tmp_path / "drives", options={"format": "mcap"})[0]
    result = run_drive(imported)
    assert result.status == STATUS_DONE, result
    from sensorlabel.drive import Drive

    assert Drive.open(tmp_path / "drives" / "truth.drive").num_frames == Drive.open(path).num_frames
    assert run_drive(imported).status == STATUS_SKIPPED
    bag.touch()  # a changed source is imported again (the drive exists: without --overwrite that is reported)
    again = run_drive(imported)
    assert again.status == STATUS_FAILED and again.error == ERROR_BAD_INPUT and "exists" in again.message

    missing = run_drive(plan_tasks("fuse", [tmp_path / "nothing.drive"])[0])
    assert missing.status == STATUS_FAILED and missing.error == ERROR_BAD_INPUT and "nothing.drive" in missing.message


@pytest.mark.parametrize("command, drives, kwargs, match", [
    ("sing", ["a.drive"], {}, "unknown command"),
    ("propagate", [], {}, "no drives"),
    ("propagate", ["x/a.drive", "y/a.drive"], {}, "same drive name"),
    ("propagate", ["a.drive"], {"options": {"colorize": True}}, "unknown option"),
    ("export", ["a.drive"], {}, "'format' is required"),
    ("import", ["src"], {"options": {"format": "pcd"}}, "--out"),
])
def test_plan_rejects_bad_arguments(command, drives, kwargs, match):
    with pytest.raises(SensorlabelError, match=match):
        plan_tasks(command, drives, **kwargs)
