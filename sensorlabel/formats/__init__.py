"""Importers and exporters of recorded drives, with an explicit registry.

Every importer has the signature ``import_<fmt>(src: Path, out: Path, *, overwrite=False, **options) -> Drive`` and
every exporter ``export_<fmt>(drive: Drive, out_dir: Path, **options) -> list[Path]``. The registries map a format
name to ``"module:function"`` and resolve it on use, so ``import sensorlabel`` does not import pyarrow, mcap or
open3d. There is no probing: a format is available exactly when it is listed here.

Long imports report progress through :func:`progress`, which is silent unless a caller (the command line) turns it
on with :func:`show_progress`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from sensorlabel.errors import FormatError

if TYPE_CHECKING:
    from sensorlabel.drive import Drive

IMPORTERS: dict[str, str] = {
    "kitti-object": "sensorlabel.formats.kitti:import_kitti_object",
    "kitti-tracking": "sensorlabel.formats.kitti:import_kitti_tracking",
    "kitti-raw": "sensorlabel.formats.kitti:import_kitti_raw",
    "nuscenes": "sensorlabel.formats.nuscenes:import_nuscenes",
    "av2": "sensorlabel.formats.av2:import_av2",
    "sustech": "sensorlabel.formats.sustech:import_sustech",
    "pcd": "sensorlabel.formats.pcd:import_pcd",
    "mcap": "sensorlabel.formats.mcap:import_mcap",
}

EXPORTERS: dict[str, str] = {
    "kitti-tracking": "sensorlabel.formats.kitti:export_kitti_tracking",
    "kitti-object": "sensorlabel.formats.kitti:export_kitti_object",
    "nuscenes": "sensorlabel.formats.nuscenes:export_nuscenes",
    "nuscenes-tracking": "sensorlabel.formats.nuscenes:export_nuscenes_tracking",
    "openlabel": "sensorlabel.formats.openlabel:export_openlabel",
    "sustech": "sensorlabel.formats.sustech:export_sustech",
    "mcap": "sensorlabel.formats.mcap:export_mcap",
}

_SHOW_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("sensorlabel_show_progress", default=False)
_T = TypeVar("_T")


def _resolve(registry: dict[str, str], kind: str, fmt: str, path: Path) -> Callable:
    if fmt not in registry:
        raise FormatError(path, f"unknown {kind} format {fmt!r}; known: {', '.join(sorted(registry))}")
    module_name, function_name = registry[fmt].split(":")
    return getattr(importlib.import_module(module_name), function_name)


def get_importer(fmt: str) -> Callable[..., Drive]:
    """The importer function registered as ``fmt``.

    Raises:
        FormatError: an unknown format name.
    """
    return _resolve(IMPORTERS, "import", fmt, Path(fmt))


def get_exporter(fmt: str) -> Callable[..., list[Path]]:
    """The exporter function registered as ``fmt``.

    Raises:
        FormatError: an unknown format name.
    """
    return _resolve(EXPORTERS, "export", fmt, Path(fmt))


def import_drive(fmt: str, src: str | Path, out: str | Path, *, overwrite: bool = False, **options) -> Drive:
    """Import ``src`` in format ``fmt`` into the drive folder ``out``.

    Raises:
        FormatError: an unknown format (naming ``src``) or a source file that cannot be read (naming it).
    """
    src = Path(src)
    return _resolve(IMPORTERS, "import", fmt, src)(src, Path(out), overwrite=overwrite, **options)


def export_drive(drive: Drive | str | Path, fmt: str, out_dir: str | Path, **options) -> list[Path]:
    """Export a drive (opened, or its folder) in format ``fmt`` into ``out_dir``; returns the files written.

    Raises:
        FormatError: an unknown format; SchemaError: a folder that is not a drive.
    """
    from sensorlabel.drive import Drive

    if not isinstance(drive, Drive):
        drive = Drive.open(Path(drive))
    return _resolve(EXPORTERS, "export", fmt, drive.path)(drive, Path(out_dir), **options)


@contextlib.contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Within this block, :func:`progress` draws a tqdm bar on stderr (used by the command line)."""
    token = _SHOW_PROGRESS.set(enabled)
    try:
        yield
    finally:
        _SHOW_PROGRESS.reset(token)


def progress(iterable: Iterable[_T], *, total: int | None = None, desc: str = "") -> Iterable[_T]:
    """Wrap a long loop of an importer or exporter; a tqdm bar only inside :func:`show_progress`, else as is."""
    if not _SHOW_PROGRESS.get():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="item", leave=False)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` by streaming into a temporary sibling and ``os.replace``: readers never see half a file.

    ``write(handle)`` writes the content to a binary file handle (e.g. ``lambda fh: np.savez(fh, **arrays)``), so the
    content is never held in memory as a whole. On any failure the temporary file is removed and ``path`` is left as
    it was. No fsync: these are derived or exported files, written per frame, and an fsync each costs ~20x the write.

    Args:
        path: the file to create or replace (its folder is created when missing).
        write: handle -> anything; writes the whole content. Its exceptions other than OSError pass through.

    Returns:
        ``path``.

    Raises:
        FormatError: the file cannot be written (naming it and the OS reason).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    except OSError as exc:
        raise FormatError(path, f"cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise FormatError(path, f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` atomically (see :func:`atomic_write`).

    Raises:
        FormatError: the file cannot be written (naming it).
    """
    return atomic_write(path, lambda handle: handle.write(content))


__all__ = ["EXPORTERS", "IMPORTERS", "atomic_write", "atomic_write_bytes", "export_drive", "get_exporter",
           "get_importer", "import_drive", "progress", "show_progress"]
