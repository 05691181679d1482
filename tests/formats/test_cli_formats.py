"""``sensorlabel import`` / ``export`` as a user runs them: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sensorlabel.formats import EXPORTERS, IMPORTERS
from sensorlabel.formats.pcd import write_pcd


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sensorlabel", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def sweeps(tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_pcd(folder / f"{i:06d}.pcd", {a: rng.normal(size=20).astype(np.float32) for a in "xyz"})
    return folder


def test_registry_names_every_issue_format():
    assert set(IMPORTERS) == {"kitti-object", "kitti-tracking", "kitti-raw", "nuscenes", "av2", "sustech", "pcd",
                              "mcap"}
    assert {"kitti-tracking", "kitti-object", "nuscenes", "openlabel", "sustech", "mcap"} <= set(EXPORTERS)
    assert all(":" in target for target in [*IMPORTERS.values(), *EXPORTERS.values()])


def test_import_export_and_options(sweeps, tmp_path):
    done = _run("import", "pcd", sweeps, "--out", "a.drive", "--option", "lidar_name=velo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 frames" in done.stdout and "velo" in done.stdout
    again = _run("import", "pcd", sweeps, "--out", "a.drive", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert _run("import", "pcd", sweeps, "--out", "a.drive", "--overwrite", cwd=tmp_path).returncode == 0
    exported = _run("export", "a.drive", "--format", "openlabel", "--out", "out", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    doc = json.loads((tmp_path / "out" / "sweeps.openlabel.json").read_text())  # the drive is named after SRC
    assert list(doc["openlabel"]["streams"]) == ["lidar"]  # the --overwrite import used the default name
    assert len(doc["openlabel"]["frames"]) == 2


@pytest.mark.parametrize("garbage", [b"", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 9\nPOINTS 9\n"
                                          b"DATA binary\n\x00\x00"])
def test_bad_file_gives_one_line_naming_it_and_exit_2(sweeps, tmp_path, garbage):
    bad = sweeps / "000002.pcd"
    bad.write_bytes(garbage)
    done = _run("import", "pcd", sweeps, "--out", "b.drive", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(bad) in lines[0] and ("DATA" in lines[0] or "POINTS" in lines[0] or "bytes" in lines[0])
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "b.drive").exists()


def test_bad_bag_and_missing_source(tmp_path):
    (tmp_path / "x.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x01" * 40)
    done = _run("import", "mcap", tmp_path / "x.mcap", "--out", "c.drive", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "x.mcap: corrupt MCAP" in done.stderr
    missing = _run("import", "sustech", tmp_path / "nowhere", "--out", "d.drive", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr


def test_unknown_format_is_a_format_error_naming_the_source(tmp_path):
    from sensorlabel.errors import FormatError
    from sensorlabel.formats import get_importer, import_drive

    with pytest.raises(FormatError, match="unknown import format 'kitty'; known: av2, kitti-object"):
        get_importer("kitty")
    with pytest.raises(FormatError, match=f"{tmp_path}: unknown import format 'ros1'"):
        import_drive("ros1", tmp_path, tmp_path / "x.drive")
