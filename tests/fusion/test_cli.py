"""`sensorlabel fuse` on a small synthetic drive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sensorlabel.cli import main
from sensorlabel.drive import Drive
from sensorlabel.sim import SimConfig, simulate, write_sim_drive


def test_fuse_writes_stats_colours_and_aggregates(tmp_path: Path, capsys) -> None:
    sim = simulate(SimConfig(seed=5, num_frames=3, num_cameras=2, image_size_px=(320, 180), azimuth_steps=512,
                             num_beams=32))
    path = tmp_path / "small.drive"
    write_sim_drive(sim, path, with_labels="truth")
    assert main(["fuse", str(path), "--colorize", "--aggregate", "2"]) == 0
    out = capsys.readouterr().out
    assert "cam_front" in out and "flagged frames" in out
    fusion = path / "fusion"
    stats = json.loads((fusion / "stats.json").read_text())
    config = json.loads((fusion / "config.json").read_text())
    assert config["colorize"] and config["aggregate_sweeps"] == 2
    assert len(stats) == 3
    for rec in stats:
        assert {c["camera"] for c in rec["cameras"]} == {"cam_front", "cam_front_left"}
        for cam in rec["cameras"]:
            assert 0 < cam["visible"] <= cam["projected"]
            assert "score" in cam["calibration"]
    drive = Drive.open(path)
    colors = np.load(fusion / "colors.npz")
    sizes = np.diff(colors["offsets"])
    assert list(sizes) == [len(drive.frame_sweep(f).points) for f in range(3)]
    front_visible = [next(c["visible"] for c in rec["cameras"] if c["camera"] == "cam_front") for rec in stats]
    assert colors["seen"][: sizes[0]].sum() >= front_visible[0]
    agg = np.load(fusion / "aggregate.npz")
    n_agg = np.diff(agg["offsets"])
    assert n_agg[0] < n_agg[1]  # frame 0 has one sweep, frame 1 two
    assert set(np.unique(agg["sweep_offset"][agg["offsets"][1]:agg["offsets"][2]])) == {0, 1}


def test_fuse_on_a_missing_drive_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["fuse", str(tmp_path / "nothing.drive")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing.drive" in err
