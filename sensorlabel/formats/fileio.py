"""Small file helpers shared by the format readers: every failure becomes a FormatError naming the file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from sensorlabel.errors import FormatError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_T = TypeVar("_T")
_R = TypeVar("_R")


def prefetch(paths: Iterable[str | os.PathLike], advice: int | None = None) -> None:
    """Give the kernel an access hint for each of ``paths`` (``posix_fadvise`` over the whole file, which returns
    without waiting). The default, ``POSIX_FADV_WILLNEED``, starts reading the files into the page cache now, so that
    several files' disk reads are in flight at once; ``os.POSIX_FADV_DONTNEED`` evicts their clean pages instead. A
    hint only: a missing or unreadable file, or a system without ``posix_fadvise``, is ignored (the real read
    reports it).

    Args:
        paths: the files.
        advice: an ``os.POSIX_FADV_*`` constant; None for ``POSIX_FADV_WILLNEED``.
    """
    if not hasattr(os, "posix_fadvise"):
        return
    if advice is None:
        advice = os.POSIX_FADV_WILLNEED
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, advice)
        except OSError:
            pass
        finally:
            os.close(fd)


def read_ahead(read: Callable[[_T], _R], items: Iterable[_T], depth: int = 4,
               files: Callable[[_T], Iterable[str | os.PathLike]] = lambda item: (item,)) -> Iterator[_R]:
    """``read(item)`` for each of ``items`` in order, with up to ``depth`` items read ahead.

    An importer reads item i+1.. while it stores item i: when an item is queued its ``files(item)`` are
    :func:`prefetch`-ed (the kernel reads them from the disk in the background, several at once), and one thread
    runs ``read`` (numpy and file reads release the GIL) while the caller writes. At most ``depth`` + 1 results are
    held. A failed read raises its exception when its item comes up, in order, as a plain loop would; closing the
    iterator early cancels the reads not yet started.

    Args:
        read: item -> result; its exceptions pass through unchanged.
        items: the items in order (by default each is one file path).
        depth: how many items are queued beyond the one being consumed.
        files: item -> the file paths it will read (for the prefetch hint).

    Raises:
        whatever ``read`` raises, at the position of the item that failed.
    """
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        try:
            for item in items:
                prefetch(files(item))
                pending.append(pool.submit(read, item))
                if len(pending) > depth:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
            for future in pending:
                future.cancel()


def read_file_bytes(path: Path) -> bytes:
    """The whole file (possibly empty).

    Raises:
        FormatError: unreadable, naming the OS reason.
    """
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None


def read_nonempty_bytes(path: Path) -> bytes:
    """The whole file.

    Raises:
        FormatError: unreadable (naming the OS reason) or empty.
    """
    data = read_file_bytes(path)
    if not data:
        raise FormatError(path, "empty file")
    return data


def image_file_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels of an image file: a PNG from its 24-byte header, anything else by decoding it.

    Raises:
        FormatError: unreadable (naming the OS reason), empty, or not a decodable image.
    """
    import cv2

    try:
        with open(path, "rb") as handle:
            header = handle.read(24)
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if not header:
        raise FormatError(path, "empty file")
    if header[:8] == _PNG_SIGNATURE and len(header) >= 24 and header[12:16] == b"IHDR":
        return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    image = cv2.imdecode(np.frombuffer(read_nonempty_bytes(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FormatError(path, "not a decodable image")
    return int(image.shape[1]), int(image.shape[0])


def read_float32_records(path: str | os.PathLike, columns: Sequence[str]) -> np.ndarray:
    """A flat file of little-endian float32 records, one field per name in ``columns`` (a lidar ``.bin`` sweep).

    Args:
        path: the file.
        columns: the record's field names in file order, e.g. ``("x", "y", "z", "reflectance")`` (for messages).

    Returns:
        (N, len(columns)) float32, N >= 1, every value finite.

    Raises:
        FormatError: unreadable (naming the OS reason), empty, a size that is not a whole number of records, or a
            non-finite value (naming the first such point, its field and value).
    """
    path = Path(path)
    record = 4 * len(columns)
    layout = f"{len(columns)} float32 per point: {' '.join(columns)}"
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise FormatError(path, f"empty file (no points; {layout})")
            if size % record:
                raise FormatError(path, f"size {size} bytes is not a multiple of {record} ({layout})")
            raw = np.fromfile(handle, dtype="<f4")
    except OSError as exc:
        raise FormatError(path, f"cannot read: {exc.strerror or exc}") from None
    if raw.size * 4 != size:
        raise FormatError(path, f"read {raw.size * 4} of {size} bytes (the file changed while it was read)")
    points = raw.reshape(-1, len(columns))
    # min and max propagate NaN and reach +-inf when any value is infinite: two cheap float32 passes (no float64
    # conversion, no boolean mask) decide exactly whether every value is finite
    if not (np.isfinite(raw.min()) and np.isfinite(raw.max())):
        i = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        j = int(np.flatnonzero(~np.isfinite(points[i]))[0])
        raise FormatError(path, f"point {i} is not finite: {columns[j]} = {points[i, j]} in {points[i].tolist()}")
    return points


def read_json(path: Path):
    """The parsed content of a UTF-8 JSON file.

    Raises:
        FormatError: unreadable (naming the OS reason), not UTF-8, not valid JSON, or nested too deeply to parse.
    """
    try:
        return json.loads(read_file_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(path, f"not valid JSON: {exc}") from None
