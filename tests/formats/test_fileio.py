"""formats.fileio.read_ahead: importers read ahead on a thread but must behave exactly like a plain loop."""

import threading

import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats.fileio import prefetch, read_ahead
from sensorlabel.formats.kitti import import_kitti_tracking, read_kitti_velodyne


def test_results_in_order_and_bounded_ahead():
    started, consumed = [], []

    def read(i):
        started.append(i)
        return i * i

    for value in read_ahead(read, range(50), depth=3, files=lambda i: ()):
        # never more than depth + 1 reads submitted beyond what the loop has taken
        assert len(started) <= len(consumed) + 3 + 1  # depth 3
        consumed.append(value)
    assert consumed == [i * i for i in range(50)] and started == list(range(50))


def test_error_raises_at_its_item_and_early_close_cancels():
    def read(i):
        if i == 7:
            raise FormatError(f"file{i}", "bad")
        return i

    got = []
    with pytest.raises(FormatError, match="file7: bad"):
        for value in read_ahead(read, range(20), depth=3, files=lambda i: ()):
            got.append(value)
    assert got == list(range(7))  # the items before the bad one, as a plain loop gives them

    started = []
    reader = read_ahead(lambda i: started.append(i) or i, range(1000), depth=2, files=lambda i: ())
    assert [next(reader) for _ in range(5)] == list(range(5))
    reader.close()
    assert len(started) <= 5 + 2  # the rest never ran
    assert not any(t.name.startswith("read-ahead") for t in threading.enumerate())


def test_prefetch_is_a_hint_only(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 10)
    prefetch([tmp_path / "a.bin", tmp_path / "missing.bin", tmp_path])  # no error for a missing file or a folder
    assert list(read_ahead(lambda p: p.read_bytes(), [tmp_path / "a.bin"])) == [b"x" * 10]
    with pytest.raises(FileNotFoundError):  # the real read reports the missing file
        list(read_ahead(lambda p: p.read_bytes(), [tmp_path / "missing.bin"]))


def test_tracking_import_bad_sweep_mid_sequence(shared_data, tmp_path):
    """A truncated sweep in the middle of a sequence: the FormatError names it, no drive is left, no thread lingers."""
    root = tmp_path / "training"
    (root / "calib").mkdir(parents=True)
    (root / "velodyne/0000").mkdir(parents=True)
    (root / "calib/0000.txt").write_text((shared_data / "kitti_tracking/training/calib/0000.txt").read_text())
    source = (shared_data / "kitti_object_3frames/training/velodyne/000000.bin").read_bytes()
    for k in range(6):
        (root / f"velodyne/0000/{k:06d}.bin").write_bytes(source[:-6] if k == 3 else source)
    with pytest.raises(FormatError, match=r"000003\.bin.*not a multiple of 16"):
        import_kitti_tracking(tmp_path, tmp_path / "bad.drive", sequence="0000")
    assert not (tmp_path / "bad.drive").exists()
    assert not any(t.name.startswith("read-ahead") for t in threading.enumerate())
    (root / "velodyne/0000/000003.bin").write_bytes(source)
    drive = import_kitti_tracking(tmp_path, tmp_path / "good.drive", sequence="0000")
    expected = read_kitti_velodyne(root / "velodyne/0000/000000.bin")
    assert drive.num_frames == 6 and all(np.array_equal(drive.frame_sweep(k).points, expected) for k in range(6))
