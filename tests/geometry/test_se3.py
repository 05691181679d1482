"""Property tests of SE3 and interpolate_poses: seeded by hypothesis, sampled with numpy's RNG."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from sensorlabel.errors import InvalidTransformError
from sensorlabel.geometry import SE3, interpolate_poses
from sensorlabel.geometry.se3 import first_non_increasing

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
BATCH = st.integers(min_value=1, max_value=20)
PROPERTY = settings(max_examples=40, deadline=None)


def random_se3(rng: np.random.Generator, n: int | None = None) -> SE3:
    """A random rigid transform (uniform rotation, translation up to 100 m), single or a batch of n."""
    rot = Rotation.random(n, random_state=rng).as_matrix()
    trans = rng.uniform(-100, 100, (3,) if n is None else (n, 3))
    return SE3(rot, trans)


@PROPERTY
@given(SEEDS)
def test_inverse_round_trip_single(seed):
    rng = np.random.default_rng(seed)
    a_SE3_b = random_se3(rng)
    assert a_SE3_b.compose(a_SE3_b.inverse()).allclose(SE3.identity(), atol=1e-12)
    assert a_SE3_b.inverse().compose(a_SE3_b).allclose(SE3.identity(), atol=1e-12)
    assert a_SE3_b.inverse().inverse().allclose(a_SE3_b, atol=1e-12)
    points_b = rng.uniform(-50, 50, (100, 3))
    points_a = a_SE3_b.transform_points(points_b)
    np.testing.assert_allclose(a_SE3_b.inverse().transform_points(points_a), points_b, atol=1e-10)
    # A rigid transform keeps distances.
    np.testing.assert_allclose(np.linalg.norm(points_a[1:] - points_a[:-1], axis=1),
                               np.linalg.norm(points_b[1:] - points_b[:-1], axis=1), rtol=1e-12)


@PROPERTY
@given(SEEDS, BATCH)
def test_inverse_round_trip_batched(seed, n):
    rng = np.random.default_rng(seed)
    poses = random_se3(rng, n)
    assert poses.compose(poses.inverse()).allclose(SE3.identity(n), atol=1e-12)
    points = rng.uniform(-50, 50, (n, 7, 3))
    np.testing.assert_allclose(poses.inverse().transform_points(poses.transform_points(points)), points, atol=1e-10)
    one_each = rng.uniform(-50, 50, (n, 3))
    np.testing.assert_allclose(poses.inverse().transform_points(poses.transform_points(one_each)), one_each,
                               atol=1e-10)
    # Element i of the batch behaves as the single transform i.
    single = poses[n - 1]
    np.testing.assert_allclose(single.transform_points(points[n - 1]), poses.transform_points(points)[n - 1])


@PROPERTY
@given(SEEDS, BATCH)
def test_composition_is_associative_and_matches_matrices(seed, n):
    rng = np.random.default_rng(seed)
    a, b, c = random_se3(rng), random_se3(rng), random_se3(rng)
    assert a.compose(b).compose(c).allclose(a.compose(b.compose(c)), atol=1e-9)
    np.testing.assert_allclose(a.compose(b).as_matrix(), a.as_matrix() @ b.as_matrix(), atol=1e-9)
    pa, pb, pc = random_se3(rng, n), random_se3(rng, n), random_se3(rng, n)
    assert pa.compose(pb).compose(pc).allclose(pa.compose(pb.compose(pc)), atol=1e-9)
    np.testing.assert_allclose(pa.compose(pb).as_matrix(), pa.as_matrix() @ pb.as_matrix(), atol=1e-9)
    # A single transform broadcasts over a batch.
    np.testing.assert_allclose(a.compose(pb).as_matrix(), a.as_matrix()[None] @ pb.as_matrix(), atol=1e-9)
    # Composition transforms points like applying one after the other.
    points = rng.uniform(-10, 10, (5, 3))
    np.testing.assert_allclose(a.compose(b).transform_points(points), a.transform_points(b.transform_points(points)),
                               atol=1e-9)


@PROPERTY
@given(SEEDS, BATCH)
def test_matrix_and_quaternion_round_trips(seed, n):
    rng = np.random.default_rng(seed)
    poses = random_se3(rng, n)
    assert SE3.from_matrix(poses.as_matrix()).allclose(poses, atol=1e-12)
    assert SE3.from_matrix(poses[0].as_matrix()).allclose(poses[0], atol=1e-12)
    quat_wxyz = poses.as_quat_wxyz()
    assert quat_wxyz.shape == (n, 4)
    assert (quat_wxyz[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(quat_wxyz, axis=1), 1.0, atol=1e-12)
    assert SE3.from_quat_wxyz(quat_wxyz, poses.translation).allclose(poses, atol=1e-10)
    # q and -q are the same rotation; an unnormalised quaternion is normalised.
    assert SE3.from_quat_wxyz(-3.0 * quat_wxyz, poses.translation).allclose(poses, atol=1e-10)
    # Against scipy's own conversion (w last there).
    expected = Rotation.from_matrix(poses.rotation).as_quat()[:, [3, 0, 1, 2]]
    expected *= np.sign(expected[:, :1] + (expected[:, :1] == 0))
    np.testing.assert_allclose(quat_wxyz, expected, atol=1e-12)


def test_from_yaw_and_yaw_rad():
    yaw = np.array([0.0, 0.5, -2.0, np.pi / 2])
    poses = SE3.from_yaw(yaw, np.zeros((4, 3)))
    np.testing.assert_allclose(poses.yaw_rad(), yaw, atol=1e-12)
    np.testing.assert_allclose(poses[3].transform_points(np.array([[1.0, 0, 0]])), [[0, 1, 0]], atol=1e-12)


def test_interpolate_endpoints_exact_and_known_midpoint():
    t = np.array([1_000_000_000_000_000_000, 1_000_000_000_100_000_000], dtype=np.int64)  # epoch ns, 0.1 s apart
    poses = SE3.stack([SE3.from_yaw(0.0, [0.0, 0.0, 0.0]), SE3.from_yaw(np.pi / 2, [10.0, -4.0, 2.0])])
    at_ends = interpolate_poses(t, poses, t)
    np.testing.assert_allclose(at_ends.rotation, poses.rotation, atol=1e-15)
    np.testing.assert_array_equal(at_ends.translation, poses.translation)
    mid = interpolate_poses(t, poses, t[0] + 50_000_000)
    assert not mid.is_batch
    np.testing.assert_allclose(mid.yaw_rad(), np.pi / 4, atol=1e-12)
    np.testing.assert_allclose(mid.rotation, SE3.from_yaw(np.pi / 4, np.zeros(3)).rotation, atol=1e-12)
    np.testing.assert_allclose(mid.translation, [5.0, -2.0, 1.0], atol=1e-12)
    quarter = interpolate_poses(t, poses, np.array([t[0] + 25_000_000]))
    np.testing.assert_allclose(quarter.yaw_rad(), [np.pi / 8], atol=1e-12)


@PROPERTY
@given(SEEDS)
def test_interpolation_is_geodesic(seed):
    """Random poses: the interpolated rotation lies on the geodesic (angles add up) and endpoints are hit."""
    rng = np.random.default_rng(seed)
    num = 5
    t = np.cumsum(rng.integers(1_000_000, 100_000_000, num)).astype(np.int64)
    poses = random_se3(rng, num)
    q = rng.integers(t[0], t[-1], 20, endpoint=True)
    out = interpolate_poses(t, poses, q)
    seg = np.clip(np.searchsorted(t, q, side="right") - 1, 0, num - 2)
    r0, r1, r = poses.rotation[seg], poses.rotation[seg + 1], out.rotation
    angle = lambda x, y: Rotation.from_matrix(np.swapaxes(x, -1, -2) @ y).magnitude()  # noqa: E731
    np.testing.assert_allclose(angle(r0, r) + angle(r, r1), angle(r0, r1), atol=1e-9)
    alpha = (q - t[seg]) / (t[seg + 1] - t[seg])
    np.testing.assert_allclose(angle(r0, r), alpha * angle(r0, r1), atol=1e-9)
    assert interpolate_poses(t, poses, t).allclose(poses, atol=1e-12)


def test_extrapolation_flag():
    t = np.array([0, 100_000_000], dtype=np.int64)
    poses = SE3.stack([SE3.from_yaw(0.0, [0.0, 0, 0]), SE3.from_yaw(0.1, [1.0, 0, 0])])
    with pytest.raises(ValueError, match="outside the pose range"):
        interpolate_poses(t, poses, np.array([200_000_000]))
    with pytest.raises(ValueError, match="outside the pose range"):
        interpolate_poses(t, poses, np.array([-1]))
    ahead = interpolate_poses(t, poses, np.array([200_000_000, -100_000_000]), extrapolate=True)
    np.testing.assert_allclose(ahead.yaw_rad(), [0.2, -0.1], atol=1e-12)
    np.testing.assert_allclose(ahead.translation, [[2.0, 0, 0], [-1.0, 0, 0]], atol=1e-12)
    single = interpolate_poses(t[:1], poses[:1], np.array([5, 7]), extrapolate=True)
    assert single.allclose(SE3.identity(2))


def test_interpolation_rejects_bad_timestamps():
    poses = SE3.identity(3)
    with pytest.raises(ValueError, match="increase strictly"):
        interpolate_poses(np.array([0, 5, 5]), poses, np.array([1]))
    with pytest.raises(ValueError, match=r"\(2,\)"):
        interpolate_poses(np.array([0, 5]), poses, np.array([1]))


def test_invalid_rotations_raise_with_the_value():
    skewed = np.eye(3)
    skewed[0, 1] = 0.1
    with pytest.raises(InvalidTransformError, match="not orthonormal") as info:
        SE3(skewed, np.zeros(3))
    assert "0.1" in str(info.value)
    with pytest.raises(InvalidTransformError, match="reflection"):
        SE3(np.diag([1.0, 1.0, -1.0]), np.zeros(3))
    nan_rot = np.eye(3)
    nan_rot[2, 2] = np.nan
    with pytest.raises(InvalidTransformError, match="nan"):
        SE3(nan_rot, np.zeros(3))
    with pytest.raises(InvalidTransformError, match=r"translation\[1\].*inf"):
        SE3(np.stack([np.eye(3)] * 2), np.array([[0, 0, 0], [0, np.inf, 0.0]]))
    batch = np.stack([np.eye(3), np.eye(3), 2 * np.eye(3)])
    with pytest.raises(InvalidTransformError, match=r"rotation\[2\]"):
        SE3(batch, np.zeros((3, 3)))
    bad_last_row = np.eye(4)
    bad_last_row[3, 0] = 1.0
    with pytest.raises(InvalidTransformError, match="last row"):
        SE3.from_matrix(bad_last_row)
    with pytest.raises(InvalidTransformError, match="zero"):
        SE3.from_quat_wxyz(np.zeros(4), np.zeros(3))
    with pytest.raises(InvalidTransformError):
        SE3.from_quat_wxyz(np.array([np.nan, 0, 0, 1.0]), np.zeros(3))
    assert issubclass(InvalidTransformError, ValueError)


@pytest.mark.parametrize(
    ("rotation_shape", "translation_shape", "shown"),
    [((3, 2), (3,), r"\(3, 2\)"), ((2, 3, 3), (3,), r"\(3,\)"), ((3, 3), (2, 3), r"\(2, 3\)"),
     ((4, 3, 3, 1), (4, 3), r"\(4, 3, 3, 1\)")],
)
def test_wrong_shapes_raise_value_error_naming_the_shape(rotation_shape, translation_shape, shown):
    rotation = np.zeros(rotation_shape)
    with pytest.raises(ValueError, match=shown):
        SE3(rotation, np.zeros(translation_shape))


def test_wrong_shapes_in_methods():
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        SE3.from_matrix(np.eye(3))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        SE3.from_quat_wxyz(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        SE3.identity().transform_points(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        SE3.identity(2).transform_points(np.zeros((3, 3)))


def test_first_non_increasing():
    assert first_non_increasing([]) is None and first_non_increasing([5]) is None
    assert first_non_increasing(np.array([1, 2, 3], dtype=np.int64)) is None
    assert first_non_increasing([1, 2, 2, 1]) == 2  # a repeat counts, and the first offender is named
    assert first_non_increasing([3, 1, 2]) == 1
    big = np.array([2**62, 2**62 + 1, 2**62 + 1], dtype=np.int64)  # exact in int64 (float64 would merge them all)
    assert first_non_increasing(big) == 2 and first_non_increasing(big[:2]) is None
