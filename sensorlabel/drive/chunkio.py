"""Direct file I/O on the chunks of *uncompressed* zarr v3 arrays in a local store (the fast path of a drive).

Lidar points and encoded images are stored without a compressor: their zarr v3 codec chain is the single ``bytes``
codec, so a chunk file is exactly the C-order little-endian bytes of the chunk (edge chunks padded to full size with
the fill value, as the v3 specification requires), at the key zarr's own ``encode_chunk_key`` gives (``c/i/0``).
Such a file can be streamed into and read by byte range with plain file calls, and the result is an ordinary zarr v3
array that zarr-python or any other v3 reader opens.

Why not ``array[a:b] = rows``: on this workload (100 KITTI sweeps of ~120k x 4 float32) zarr-python's write path
(an asyncio loop in a second thread, a codec pipeline per chunk, a ``zarr.json`` rewrite per resize) cost 5-7x more
than writing the same bytes to the chunk files, and its read path reads whole chunks where a sweep needs a byte range
of one or two. zarr still creates, describes and validates every array; only the bytes move through here, and
:func:`raw_layout` refuses any array whose encoding is not the trivial one, so other arrays take zarr's normal path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class RawLayout:
    """Where and how the chunk files of one uncompressed array lie.

    Attributes:
        directory: the array's folder (holding ``zarr.json`` and the chunk keys).
        chunk_rows: rows per chunk along axis 0 (the array is chunked along axis 0 only).
        row_shape: shape of one row (``()`` for 1-D).
        dtype: little-endian numpy dtype of the stored values.
        keys: callable chunk index -> chunk key relative to ``directory`` (zarr's encoding).
    """

    directory: Path
    chunk_rows: int
    row_shape: tuple[int, ...]
    dtype: np.dtype
    keys: Callable[[int], str]

    @property
    def row_nbytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def chunk_nbytes(self) -> int:
        return self.chunk_rows * self.row_nbytes

    def chunk_path(self, index: int) -> Path:
        return self.directory / self.keys(index)


def raw_layout(array) -> RawLayout | None:
    """The chunk-file layout of ``array`` when it can be read and written directly, else None.

    Direct I/O applies to a zarr v3 array in a LocalStore, chunked along axis 0 only (later axes whole), whose only
    codec is ``bytes`` with little-endian (or no, for 1-byte types) byte order, with a zero fill value.
    """
    from zarr.codecs import BytesCodec
    from zarr.core.metadata.v3 import ArrayV3Metadata
    from zarr.storage import LocalStore

    meta = array.metadata
    store = array.store_path.store
    if not isinstance(meta, ArrayV3Metadata) or not isinstance(store, LocalStore):
        return None
    codecs = meta.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    dtype = np.dtype(array.dtype)
    if dtype.itemsize > 1 and (codecs[0].endian is None or codecs[0].endian.value != "little"):
        return None
    if array.ndim == 0 or tuple(array.chunks[1:]) != tuple(array.shape[1:]) or meta.storage_transformers:
        return None
    fill = np.asarray(meta.fill_value, dtype=dtype)
    if fill.tobytes() != bytes(dtype.itemsize):
        return None
    tail = (0,) * (array.ndim - 1)
    return RawLayout(
        directory=Path(store.root) / array.store_path.path,
        chunk_rows=int(array.chunks[0]),
        row_shape=tuple(int(s) for s in array.shape[1:]),
        dtype=dtype.newbyteorder("<"),
        keys=lambda index: meta.encode_chunk_key((index, *tail)),
    )


class ChunkStreamWriter:
    """Appends rows to an uncompressed array by streaming them into its chunk files.

    Each append writes the caller's rows straight into the open chunk file (no copy, no buffering beyond the OS
    page cache); a chunk file is closed when full and the next one opened. :meth:`finish` pads the last chunk; the
    owner then sets the array's shape to :attr:`shape` (one ``zarr.json`` write, e.g. ``array.resize(shape)``).
    Until then the array reads as empty (shape 0), so a half-written array never passes as complete.
    """

    def __init__(self, array):
        layout = raw_layout(array)
        if layout is None:
            raise ValueError(f"{array.store_path}: not an uncompressed little-endian zarr v3 array in a local store")
        if array.shape[0] != 0:
            raise ValueError(f"{array.store_path}: streaming starts from an empty array, found shape {array.shape}")
        self.array = array
        self._layout = layout
        self._file = None
        self._chunk_index = 0
        self._rows_in_chunk = 0
        self.num_rows = 0

    def append(self, rows: np.ndarray) -> None:
        """Write ``rows`` ((R,) + row_shape, the array's dtype, C-contiguous) after the rows appended so far.

        Raises:
            ValueError: rows of another shape or dtype.
            OSError: the chunk file cannot be written.
        """
        layout = self._layout
        if rows.shape[1:] != layout.row_shape or rows.dtype != layout.dtype or not rows.flags.c_contiguous:
            raise ValueError(
                f"rows: expected C-contiguous (R,{layout.row_shape}) {layout.dtype}, got {rows.shape} {rows.dtype}"
            )
        data = memoryview(rows).cast("B") if rows.size else memoryview(b"")
        row_nbytes, pos = layout.row_nbytes, 0
        while pos < len(rows):
            if self._file is None:
                path = layout.chunk_path(self._chunk_index)
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "wb")  # noqa: SIM115 - kept open across appends until the chunk is full
            take = min(len(rows) - pos, layout.chunk_rows - self._rows_in_chunk)
            self._file.write(data[pos * row_nbytes : (pos + take) * row_nbytes])
            pos += take
            self._rows_in_chunk += take
            if self._rows_in_chunk == layout.chunk_rows:
                self._file.close()
                self._file = None
                self._chunk_index += 1
                self._rows_in_chunk = 0
        self.num_rows += len(rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape once every appended row is in: (num_rows,) + row_shape."""
        return (self.num_rows, *self._layout.row_shape)

    def finish(self) -> None:
        """Pad the last chunk file to full size with zero (fill value) bytes and close it.

        The padding is made by extending the file (``truncate`` to the chunk size): the extension reads as zero
        bytes, exactly as if written, without copying up to a chunk of zeros through the page cache.

        Raises:
            OSError: the chunk file cannot be written.
        """
        if self._file is not None:
            self._file.flush()
            self._file.truncate(self._layout.chunk_nbytes)
            self._file.close()
            self._file = None

    def discard(self) -> None:
        """Close the open chunk file without completing the array (the writer is being aborted)."""
        if self._file is not None:
            self._file.close()
            self._file = None


class ChunkTruncatedError(OSError):
    """A chunk file is shorter than the rows it must hold."""


def read_rows(layout: RawLayout, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of the array, read as byte ranges of the one or few chunk files that hold them.

    Returns:
        (stop - start,) + row_shape array of ``layout.dtype``.

    Raises:
        OSError: a chunk file is missing (FileNotFoundError) or shorter than the rows it must hold
            (ChunkTruncatedError).
    """
    out = np.empty((stop - start, *layout.row_shape), dtype=layout.dtype)
    if out.size == 0:
        return out
    buffer = memoryview(out).cast("B")
    row_nbytes, chunk_rows = layout.row_nbytes, layout.chunk_rows
    for index in range(start // chunk_rows, (stop - 1) // chunk_rows + 1):
        lo, hi = max(start, index * chunk_rows), min(stop, (index + 1) * chunk_rows)
        target = buffer[(lo - start) * row_nbytes : (hi - start) * row_nbytes]
        path = layout.chunk_path(index)
        with open(path, "rb", buffering=0) as file:
            file.seek((lo - index * chunk_rows) * row_nbytes)
            got = 0
            while got < len(target):
                n = file.readinto(target[got:])
                if not n:
                    raise ChunkTruncatedError(f"{path}: chunk file ends before row {lo + got // row_nbytes}")
                got += n
    return out


def read_bytes(layout: RawLayout, start: int, stop: int) -> bytes:
    """Rows ``start:stop`` as one bytes object: each chunk's byte range is read straight into a bytes object (one
    range needs no further copy; several are joined once).

    Raises:
        OSError: as :func:`read_rows`.
    """
    row_nbytes, chunk_rows = layout.row_nbytes, layout.chunk_rows
    parts = []
    for index in range(start // chunk_rows, (stop - 1) // chunk_rows + 1) if stop > start else ():
        lo, hi = max(start, index * chunk_rows), min(stop, (index + 1) * chunk_rows)
        path, size = layout.chunk_path(index), (hi - lo) * row_nbytes
        with open(path, "rb", buffering=0) as file:  # unbuffered: read(size) is one syscall into a new bytes object
            file.seek((lo - index * chunk_rows) * row_nbytes)
            part = file.read(size)
            while 0 < len(part) < size:  # a short read (rare on local files); one more copy only then
                more = file.read(size - len(part))
                if not more:
                    break
                part += more
        if len(part) != size:
            raise ChunkTruncatedError(f"{path}: chunk file ends before row {lo + len(part) // row_nbytes}")
        parts.append(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def check_chunk_files(layout: RawLayout, num_rows: int) -> str | None:
    """Every chunk file of an array of ``num_rows`` rows must exist with the full chunk size.

    Returns:
        None when complete, else the reason (how many chunks are present, or the first chunk of a wrong size).
    """
    expected = -(-num_rows // layout.chunk_rows)
    sizes = []
    for index in range(expected):
        try:
            sizes.append(os.stat(layout.chunk_path(index)).st_size)
        except FileNotFoundError:
            sizes.append(None)
    present = sum(s is not None for s in sizes)
    if present != expected:
        return f"truncated array: {present} of {expected} chunks are present"
    for index, size in enumerate(sizes):
        if size != layout.chunk_nbytes:
            return f"chunk {layout.keys(index)} has {size} bytes, expected {layout.chunk_nbytes}"
    return None
