"""PCD / PLY / BIN readers and the point-cloud-folder importer."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sensorlabel.errors import FormatError
from sensorlabel.formats import import_drive
from sensorlabel.formats.pcd import (
    columns_to_lidar_points,
    lzf_decompress,
    read_bin,
    read_pcd,
    read_ply,
    sweep_timestamps_ns,
    write_pcd,
)


def _columns(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=n).astype(np.float32), "y": rng.normal(size=n).astype(np.float32),
        "z": rng.normal(size=n).astype(np.float32), "intensity": rng.integers(0, 255, n).astype(np.uint8),
        "ring": rng.integers(0, 64, n).astype(np.uint16), "normal": rng.normal(size=(n, 3)),
        "stamp": rng.integers(-5, 5, n).astype(np.int64),
    }


@pytest.mark.parametrize("data", ["ascii", "binary"])
def test_write_read_round_trip_every_dtype_and_count(tmp_path, data):
    columns = _columns()
    cloud = read_pcd(write_pcd(tmp_path / "c.pcd", columns, data))
    assert cloud.num_points == 50 and list(cloud.columns) == list(columns)
    for name, values in columns.items():
        assert cloud.columns[name].dtype == values.dtype
        np.testing.assert_array_equal(cloud.columns[name], values)


def test_open3d_reads_our_files_and_we_read_its_compressed_ones(tmp_path):
    import open3d as o3d

    xyz = np.random.default_rng(1).uniform(-50, 50, (2000, 3))
    xyz[1000:] = xyz[0]  # repeated bytes make LZF emit back references, overlapping ones included
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    for compressed in (True, False):
        o3d.io.write_point_cloud(str(tmp_path / "o.pcd"), cloud, write_ascii=False, compressed=compressed)
        ours = read_pcd(tmp_path / "o.pcd")
        got = np.stack([ours.columns[a] for a in "xyz"], axis=1)
        np.testing.assert_allclose(got, xyz, atol=1e-5 * 50)
        assert b"binary_compressed" in (tmp_path / "o.pcd").read_bytes()[:300] or not compressed
    write_pcd(tmp_path / "w.pcd", {k: v for k, v in _columns().items() if k in "xyz"})
    theirs = np.asarray(o3d.io.read_point_cloud(str(tmp_path / "w.pcd")).points)
    np.testing.assert_array_equal(theirs[:, 0], _columns()["x"])


def test_comments_anywhere_in_the_header_cvat_7325(tmp_path):
    text = (b"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7  # trailing comment\n# a whole line\n"
            b"FIELDS x y z # what follows is the size\nSIZE 4 4 4\nTYPE F F F\n#\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\n"
            b"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii # ascii data\n1 2 3\n4 5 6\n")
    (tmp_path / "c.pcd").write_bytes(text)
    cloud = read_pcd(tmp_path / "c.pcd")
    np.testing.assert_array_equal(cloud.columns["z"], [3, 6])


def test_padding_count_zero_and_trailing_bytes(tmp_path):
    header = (b"VERSION 0.7\nFIELDS x y z _ intensity _ ring\nSIZE 4 4 4 1 4 1 2\nTYPE F F F U F U U\n"
              b"COUNT 1 1 1 4 1 0 1\nWIDTH 3\nHEIGHT 1\nPOINTS 3\nDATA binary\n")
    records = b"".join(struct.pack("<fff4sfH", i, 2 * i, 3 * i, b"\xaa" * 4, 10.0 * i, i) for i in range(3))
    (tmp_path / "p.pcd").write_bytes(header + records + b"\x00" * 100)
    cloud = read_pcd(tmp_path / "p.pcd")
    assert list(cloud.columns) == ["x", "y", "z", "intensity", "ring"]
    np.testing.assert_array_equal(cloud.columns["intensity"], [0, 10, 20])
    np.testing.assert_array_equal(cloud.columns["ring"], [0, 1, 2])


def test_lzf_decoder_literals_and_overlapping_matches():
    assert lzf_decompress(bytes([2]) + b"abc", 3) == b"abc"
    # 'ab' then a match of length 6 at distance 2: 'ababab' (overlapping copy)
    assert lzf_decompress(bytes([1]) + b"ab" + bytes([(4 << 5) | 0, 1]), 8) == b"abababab"
    with pytest.raises(FormatError, match="outside the output"):
        lzf_decompress(bytes([(1 << 5), 5]), 3, "x.pcd")
    with pytest.raises(FormatError, match="decodes to 3 bytes, the header says 4"):
        lzf_decompress(bytes([2]) + b"abc", 4, "x.pcd")


@pytest.mark.parametrize(("header_change", "reason"), [
    ((b"POINTS 3", b"POINTS 4"), "POINTS 4 != WIDTH 3 x HEIGHT 1"),
    ((b"SIZE 4 4 4", b"SIZE 4 4"), "PCD header SIZE has 2 entries for 3 FIELDS"),
    ((b"TYPE F F F", b"TYPE F F Q"), "field 'z': unsupported TYPE Q with SIZE 4"),
    ((b"DATA binary", b"DATA zipped"), "DATA must be one of"),
    ((b"WIDTH 3", b"WIDTH three"), "WIDTH must be an integer"),
    ((b"VERSION 0.7\n", b"VERSION 0.7\nCOLOR red\n"), "unknown PCD header key 'COLOR'"),
])
def test_header_inconsistencies_raise_format_error(tmp_path, header_change, reason):
    good = (b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3\nHEIGHT 1\nPOINTS 3\n"
            b"DATA binary\n" + np.zeros(9, "<f4").tobytes())
    (tmp_path / "bad.pcd").write_bytes(good.replace(*header_change))
    with pytest.raises(FormatError, match=f"bad.pcd: {reason}"):
        read_pcd(tmp_path / "bad.pcd")


def test_truncated_and_empty_payloads(tmp_path):
    path = write_pcd(tmp_path / "t.pcd", _columns())
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(FormatError, match="t.pcd: binary payload has .* needed"):
        read_pcd(path)
    path.write_bytes(b"")
    with pytest.raises(FormatError, match="t.pcd: no 'DATA' line"):
        read_pcd(path)


def test_ply_ascii_and_binary_with_faces(tmp_path):
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh.create_box()
    for ascii_ in (True, False):
        o3d.io.write_triangle_mesh(str(tmp_path / "m.ply"), mesh, write_ascii=ascii_)
        cloud = read_ply(tmp_path / "m.ply")
        got = np.stack([cloud.columns[a] for a in "xyz"], axis=1)
        np.testing.assert_allclose(got, np.asarray(mesh.vertices), atol=1e-6)
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat binary_big_endian 1.0\nelement vertex 5\nproperty float x\n"
                                       b"end_header\n" + b"\x00" * 8)
    with pytest.raises(FormatError, match="bad.ply: PLY payload has 8 bytes, 20 needed"):
        read_ply(tmp_path / "bad.ply")


def test_bin_records(tmp_path):
    table = np.arange(20, dtype="<f4").reshape(5, 4)
    table.tofile(tmp_path / "000001.bin")
    cloud = read_bin(tmp_path / "000001.bin")
    np.testing.assert_array_equal(cloud.columns["intensity"], table[:, 3])
    (tmp_path / "000002.bin").write_bytes(table.tobytes()[:-3])
    with pytest.raises(FormatError, match="000002.bin: size 77 bytes is not a multiple of 16"):
        read_bin(tmp_path / "000002.bin")


def test_lidar_field_mapping_and_time_conventions():
    n = 4
    base = {"x": np.arange(n, dtype=np.float32), "y": np.zeros(n, np.float32), "z": np.zeros(n, np.float32)}
    points, fields = columns_to_lidar_points(dict(base), "a.pcd")
    assert fields == ("x", "y", "z", "intensity") and (points[:, 3] == 0).all()
    ouster = {**base, "reflectivity": np.ones(n), "ring": np.arange(n, dtype=np.uint16),
              "t": np.array([0, 25_000_000, 50_000_000, 75_000_000], np.uint32)}
    points, fields = columns_to_lidar_points(ouster, "a.pcd")
    assert fields == ("x", "y", "z", "intensity", "ring", "t_offset_s")
    np.testing.assert_allclose(points[:, 5], [0, 0.025, 0.05, 0.075], atol=1e-9)
    hesai = {**base, "intensity": np.ones(n, np.float32),
             "timestamp": 1_600_000_000.0 + np.array([0, 0.01, 0.02, 0.03])}
    points, _ = columns_to_lidar_points(hesai, "a.pcd", timestamp_ns=1_600_000_000_000_000_000)
    np.testing.assert_allclose(points[:, 4], [0, 0.01, 0.02, 0.03], atol=1e-6)
    organised = {**base, "x": np.array([1, np.nan, 3, np.inf], np.float32)}
    points, _ = columns_to_lidar_points(organised, "a.pcd")
    np.testing.assert_array_equal(points[:, 0], [1, 3])
    with pytest.raises(FormatError, match="a.pcd: no 'z' field"):
        columns_to_lidar_points({"x": base["x"], "y": base["y"]}, "a.pcd")
    with pytest.raises(FormatError, match="spans .* more than one sweep"):
        columns_to_lidar_points({**base, "timestamp": np.array([0.0, 1, 2, 3])}, "a.pcd")


@pytest.mark.parametrize(("names", "expected_ns", "how"), [
    (["1600000000.100000.pcd", "1600000000.200000.pcd"], [1_600_000_000_100_000_000, 1_600_000_000_200_000_000], "s"),
    (["1600000000100000000.pcd", "1600000000200000000.pcd"], [1_600_000_000_100_000_000, 1_600_000_000_200_000_000],
     "ns"),
    (["1600000000100000.bin", "1600000000200000.bin"], [1_600_000_000_100_000_000, 1_600_000_000_200_000_000], "us"),
    (["000950.pcd", "000965.pcd"], [0, 100_000_000], "Hz"),
    (["b.pcd", "a.pcd"], [0, 100_000_000], "Hz"),
])
def test_sweep_timestamps_from_names(names, expected_ns, how):
    stamps, rule = sweep_timestamps_ns(names)
    np.testing.assert_array_equal(stamps, expected_ns)
    assert how in rule


def test_import_a_folder_of_mixed_sweeps(tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    for i in range(3):
        columns = {k: v for k, v in _columns(seed=i).items() if k in ("x", "y", "z", "intensity", "ring")}
        write_pcd(folder / f"{1_600_000_000 + i}.500000.pcd", columns, "binary" if i else "ascii")
    (folder / "notes.txt").write_text("not a sweep")
    drive = import_drive("pcd", folder, tmp_path / "s.drive")
    assert drive.num_frames == 3 and drive.lidar_names == ["lidar"] and not drive.has_poses
    np.testing.assert_array_equal(drive.frame_timestamps_ns, 1_600_000_000_500_000_000 + np.arange(3) * 10**9)
    sweep = drive.frame_sweep(2)
    assert sweep.fields == ("x", "y", "z", "intensity", "ring")
    np.testing.assert_array_equal(sweep.points[:, 0], _columns(seed=2)["x"])
    (folder / f"{1_600_000_003}.500000.pcd").write_bytes(b"VERSION 0.7\nFIELDS x\n")
    with pytest.raises(FormatError, match="1600000003.500000.pcd: no 'DATA' line"):
        import_drive("pcd", folder, tmp_path / "t.drive")
    assert not (tmp_path / "t.drive").exists()
