"""formats.fileio: read_ahead (importers read ahead on a thread but must behave exactly like a plain loop), the
float32 record reader, the image size reader, and formats.atomic_write."""

import os
import threading

import cv2
import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats import atomic_write, atomic_write_bytes
from sensorlabel.formats.fileio import image_file_size, prefetch, read_ahead, read_float32_records
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


def test_float32_records_check_the_file_size_and_name_the_bad_field(tmp_path):
    points = np.arange(40, dtype="<f4").reshape(10, 4)
    path = tmp_path / "sweep.bin"
    path.write_bytes(points.tobytes())
    assert np.array_equal(read_float32_records(path, ("x", "y", "z", "reflectance")), points)
    path.write_bytes(points.tobytes() + b"\x00\x00")  # a partial float: np.fromfile alone would drop it silently
    with pytest.raises(FormatError, match=r"sweep\.bin.*size 162 bytes is not a multiple of 16"):
        read_float32_records(path, ("x", "y", "z", "reflectance"))
    path.write_bytes(b"")
    with pytest.raises(FormatError, match=r"sweep\.bin.*empty file"):
        read_float32_records(path, ("x", "y", "z", "reflectance"))
    points[7, 2] = np.inf
    path.write_bytes(points.tobytes())
    with pytest.raises(FormatError, match=r"sweep\.bin: point 7 is not finite: z = inf"):
        read_float32_records(path, ("x", "y", "z", "reflectance"))
    with pytest.raises(FormatError, match=r"missing\.bin.*cannot read"):
        read_float32_records(tmp_path / "missing.bin", ("x", "y", "z"))


def test_image_file_size_png_header_and_decoded_jpeg(tmp_path):
    image = np.zeros((37, 53, 3), np.uint8)
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())
    (tmp_path / "a.jpg").write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    assert image_file_size(tmp_path / "a.png") == (53, 37) == image_file_size(tmp_path / "a.jpg")
    for name, reason in (("bad.jpg", "not a decodable image"), ("empty.png", "empty file"),
                         ("missing.png", "cannot read")):
        with pytest.raises(FormatError, match=f"{name}.*{reason}"):
            image_file_size(tmp_path / name)


def test_atomic_write_streams_and_leaves_no_partial_file(tmp_path):
    arrays = {"points": np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32), "offsets": np.arange(5)}
    path = atomic_write(tmp_path / "sub" / "a.npz", lambda fh: np.savez(fh, **arrays))
    with np.load(path) as data:
        assert all(np.array_equal(data[k], v) for k, v in arrays.items())
    atomic_write_bytes(path, b"old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path / "sub") == ["a.npz"]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FormatError, match="cannot write"):
        atomic_write_bytes(tmp_path / "file" / "x.bin", b"x")
