"""Scale-out over many drives on dask.distributed: one task per drive, done-markers, a summary.

``sensorlabel batch COMMAND DRIVES...`` runs one of :data:`COMMANDS` on every drive. Each drive is one Dask task
(``client.submit(..., pure=False)`` with a key naming the drive) on a :class:`distributed.LocalCluster` of worker
processes (one thread each) by default, or on an existing cluster given by its scheduler address. Results come back
through ``as_completed``, so a failing drive is reported with its error while the others finish.

Done-markers. After a command's outputs are committed, :func:`run_drive` writes ``X.drive/.batch/<command>.json``
atomically (temporary file, then ``os.replace``) holding the effective configuration and a fingerprint of the
drive as the command left it: the bytes of ``sensors.zarr/zarr.json`` and a digest of the label store's content
(tracks and boxes; for ``import``, the names, sizes and modification times of the source files). A re-run skips a
drive whose marker matches both, so a drive whose labels changed since (an annotator added keyframes) is redone. The
client checks the markers before it starts any cluster: a re-run with nothing to do starts no workers.

Crash safety. Labels are SQLite transactions and drives are created by ``os.replace``, so a worker killed in the
middle of a command leaves the previous committed state; the marker is written only after, so the drive is not
marked done. The scheduler reschedules the tasks of a dead worker on another worker (up to
``distributed.scheduler.allowed-failures`` deaths, then the drive is reported failed with ``KilledWorker``), and a
later run redoes any unmarked drive; every command is idempotent (labels are upserts keyed by frame and track).

Layer: top (next to the command line). ``dask.distributed`` is imported inside the functions that need it, so
``import sensorlabel`` stays fast.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sensorlabel.errors import FormatError, SchemaError, SensorlabelError

log = logging.getLogger(__name__)

COMMANDS = ("import", "fuse", "propagate", "export", "eval")
MARKER_DIR = ".batch"

#: Options of every command with their defaults; the effective options are written into the done-marker.
OPTION_DEFAULTS: dict[str, dict] = {
    "import": {"format": None, "overwrite": False, "importer_options": {}},
    "fuse": {"colorize": False, "aggregate": 0, "calibration_check": True},
    "propagate": {"refine": True, "extrapolate": True},
    "export": {"format": None, "exporter_options": {}},
    "eval": {"intervals": [5, 10, 20], "protocol": "track"},
}
_REQUIRED = {"import": ("format",), "export": ("format",)}

STATUS_DONE, STATUS_SKIPPED, STATUS_FAILED = "done", "skipped", "failed"
#: Kinds of failure: bad input (a SensorlabelError, exit code 2), a bug (any other exception), a lost task (the
#: worker died too often, or the cluster went away).
ERROR_BAD_INPUT, ERROR_BUG, ERROR_LOST = "bad-input", "bug", "lost"


@dataclass(frozen=True)
class DriveTask:
    """One drive's unit of work.

    Attributes:
        command: one of :data:`COMMANDS`.
        name: the drive's name (its folder name without ``.drive``), unique within a batch.
        drive: the ``.drive`` folder the command reads (for ``import``: the folder it creates).
        source: for ``import``, the source file or folder; else None.
        output: the output folder or file of ``fuse``/``export``/``eval`` (None: the command's default inside the
            drive).
        options: the effective options (:data:`OPTION_DEFAULTS` merged with the caller's).
    """

    command: str
    name: str
    drive: str
    source: str | None = None
    output: str | None = None
    options: dict = field(default_factory=dict)

    @property
    def marker_path(self) -> Path:
        """``X.drive/.batch/<command>.json``."""
        return Path(self.drive) / MARKER_DIR / f"{self.command}.json"

    def output_path(self) -> Path | None:
        """Where the command writes: ``output``, else its default inside the drive (None for ``import`` and
        ``propagate``, whose output is the drive itself)."""
        if self.output is not None:
            return Path(self.output)
        defaults = {"fuse": Path(self.drive) / "fusion",
                    "export": Path(self.drive) / "export" / str(self.options.get("format")),
                    "eval": Path(self.drive) / "eval" / "propagation.json"}
        return defaults.get(self.command)

    def config(self) -> dict:
        """The configuration recorded in the done-marker (JSON-normalised: tuples become lists)."""
        return json.loads(json.dumps({"command": self.command, "source": self.source, "output": self.output,
                                      "options": self.options}))


@dataclass(frozen=True)
class DriveResult:
    """What happened to one drive.

    Attributes:
        name: the drive's name. drive: its folder.
        status: ``"done"``, ``"skipped"`` (already done) or ``"failed"``.
        seconds: wall time of the command on its worker (0 for a skip decided by the client).
        message: a one-line summary, or the error (the SensorlabelError message; the exception type and message
            for a bug).
        error: None, or the kind of failure (``"bad-input"``, ``"bug"``, ``"lost"``).
        worker: ``host:pid`` of the process that ran it ("" when not run).
        traceback: the traceback of a bug, else "".
    """

    name: str
    drive: str
    status: str
    seconds: float = 0.0
    message: str = ""
    error: str | None = None
    worker: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class BatchReport:
    """The outcome of :func:`run_batch`: one result per drive, in the order the drives were given."""

    command: str
    results: list[DriveResult]
    wall_s: float

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when no drive failed; 1 when a drive failed from a bug or a lost worker; else 2 (bad input)."""
        errors = {r.error for r in self.results if r.status == STATUS_FAILED}
        if not errors:
            return 0
        return 1 if errors & {ERROR_BUG, ERROR_LOST} else 2

    def to_table(self) -> str:
        """The summary table: drive, status, seconds, message; then the totals."""
        header = ("drive", "status", "seconds", "message")
        rows = [(r.name, r.status if r.error is None else f"{r.status} ({r.error})", f"{r.seconds:.1f}",
                 r.message.replace("\n", " ")) for r in self.results]
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
        widths[3] = min(widths[3], 60)  # the ruler only: messages (errors in full) are never cut
        lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
                 "-+-".join("-" * w for w in widths)]
        lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        lines.append(f"{self.command}: {len(self.results)} drives, {self.count(STATUS_DONE)} done, "
                     f"{self.count(STATUS_SKIPPED)} skipped, {self.count(STATUS_FAILED)} failed "
                     f"in {self.wall_s:.1f} s")
        return "\n".join(lines)


# ----- planning ------------------------------------------------------------------------------------------------------
def drive_name(path: str | os.PathLike) -> str:
    """A drive's name: its folder name without ``.drive`` (for a source: its name without the extension)."""
    path = Path(path)
    name = path.name
    if name.endswith(".drive"):
        return name[: -len(".drive")]
    return path.stem if path.is_file() else name


def plan_tasks(command: str, drives: Sequence[str | os.PathLike], *, out: str | os.PathLike | None = None,
               options: dict | None = None) -> list[DriveTask]:
    """One :class:`DriveTask` per drive.

    Outputs: ``import`` creates ``OUT/<name>.drive`` (``out`` required); ``fuse`` writes into ``OUT/<name>/``
    (default ``X.drive/fusion``); ``export`` into ``OUT/<name>/`` (default ``X.drive/export/<format>``); ``eval``
    writes ``OUT/<name>.propagation.json`` (default ``X.drive/eval/propagation.json``); ``propagate`` writes labels.

    Args:
        command: one of :data:`COMMANDS`.
        drives: ``.drive`` folders (for ``import``: source files or folders).
        out: output root (see above).
        options: command options, keys of :data:`OPTION_DEFAULTS` ``[command]``.

    Returns:
        The tasks, in the order of ``drives``.

    Raises:
        SensorlabelError: an unknown command or option, a missing required option, no drives, two drives with the
            same name, or ``import`` without ``out``.
    """
    if command not in COMMANDS:
        raise SensorlabelError(f"batch: unknown command {command!r}; known: {', '.join(COMMANDS)}")
    if not drives:
        raise SensorlabelError(f"batch {command}: no drives given")
    given = dict(options or {})
    unknown = sorted(set(given) - set(OPTION_DEFAULTS[command]))
    if unknown:
        raise SensorlabelError(f"batch {command}: unknown option(s) {', '.join(unknown)}; "
                               f"known: {', '.join(OPTION_DEFAULTS[command])}")
    effective = {**OPTION_DEFAULTS[command], **given}
    for key in _REQUIRED.get(command, ()):
        if effective[key] is None:
            raise SensorlabelError(f"batch {command}: option {key!r} is required")
    if command == "import" and out is None:
        raise SensorlabelError("batch import: --out DIR is required (the drives are created as DIR/NAME.drive)")
    out_root = None if out is None else Path(out).absolute()
    tasks, seen = [], {}
    for given_path in drives:
        path = Path(given_path).absolute()
        name = drive_name(path)
        if name in seen:
            raise SensorlabelError(f"batch {command}: {seen[name]} and {path} have the same drive name {name!r}")
        seen[name] = path
        if command == "import":
            tasks.append(DriveTask(command, name, str(out_root / f"{name}.drive"), source=str(path),
                                   options=effective))
            continue
        output = None
        if out_root is not None and command in ("fuse", "export"):
            output = str(out_root / name)
        elif out_root is not None and command == "eval":
            output = str(out_root / f"{name}.propagation.json")
        tasks.append(DriveTask(command, name, str(path), output=output, options=effective))
    return tasks


# ----- fingerprints and markers --------------------------------------------------------------------------------------
def _source_fingerprint(source: Path) -> str:
    """Names, sizes and modification times of the source file, or of every file under the source folder."""
    digest = hashlib.sha256()
    if not source.exists():
        raise FormatError(source, "no such file or folder")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        st = path.stat()
        digest.update(f"{path.relative_to(source) if path != source else path.name}\0{st.st_size}\0"
                      f"{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def drive_fingerprint(drive_path: str | os.PathLike) -> str:
    """A digest of a drive's state: the bytes of ``sensors.zarr/zarr.json`` and the content of its labels.

    The labels part hashes every track (id, class, attributes) and box (frame, track, pose, size, source,
    confidence, reviewed), not the file's size or time, which SQLite's WAL checkpoints change without a change of
    content.

    Raises:
        SchemaError: no such drive, or a labels file that is not a label store.
    """
    from sensorlabel.drive.labels import LabelStore
    from sensorlabel.drive.schema import LABELS_SQLITE, SENSORS_ZARR

    path = Path(drive_path)
    attrs = path / SENSORS_ZARR / "zarr.json"
    labels = path / LABELS_SQLITE
    try:
        digest = hashlib.sha256(attrs.read_bytes())
    except OSError as exc:
        raise SchemaError(attrs, f"cannot read: {exc.strerror or exc}") from None
    if not labels.is_file():
        return digest.hexdigest()
    store = LabelStore(labels)
    try:
        tracks = [(t.track_id, t.label, t.attributes) for t in store.tracks()]
        rec = store.query()
    finally:
        store.close()
    digest.update(json.dumps(tracks, sort_keys=True, default=str).encode())
    for array in (rec.frame, rec.boxes.track_id, rec.boxes.center_m, rec.boxes.lwh_m, rec.boxes.quat_wxyz,
                  rec.confidence, rec.reviewed):
        digest.update(array.tobytes())
    digest.update("\0".join(map(str, rec.source)).encode())
    return digest.hexdigest()


def task_fingerprint(task: DriveTask) -> str:
    """The fingerprint recorded in (and compared with) a task's done-marker.

    Raises:
        SensorlabelError: the drive or source cannot be read.
    """
    if task.command == "import":
        return _source_fingerprint(Path(task.source))
    return drive_fingerprint(task.drive)


def read_marker(task: DriveTask) -> dict | None:
    """The task's done-marker, or None when it is absent or unreadable."""
    try:
        marker = json.loads(task.marker_path.read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _outputs_exist(task: DriveTask) -> bool:
    out = task.output_path()
    return out is None or out.exists()


def is_done(task: DriveTask) -> bool:
    """True when the task's marker records the same configuration and the drive (or source) has not changed.

    Any error while checking (a drive that does not open, an unreadable labels file) means "not done": the task
    then runs and reports that error.
    """
    marker = read_marker(task)
    if marker is None or marker.get("config") != task.config() or not _outputs_exist(task):
        return False
    try:
        return marker.get("fingerprint") == task_fingerprint(task)
    except Exception as exc:  # noqa: BLE001 - any failure to check means "run it" and let the run report it
        log.debug("%s: cannot check the done-marker (%s); running it", task.drive, exc)
        return False


def write_marker(task: DriveTask, seconds: float, message: str) -> Path:
    """Write the task's done-marker atomically (after its outputs are committed); returns its path."""
    from sensorlabel import __version__
    from sensorlabel.formats import atomic_write_bytes

    marker = {
        "command": task.command,
        "config": task.config(),
        "fingerprint": task_fingerprint(task),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "message": message,
        "worker": _worker_id(),
        "sensorlabel_version": __version__,
    }
    return atomic_write_bytes(task.marker_path, (json.dumps(marker, indent=2) + "\n").encode())


# ----- the commands, per drive ---------------------------------------------------------------------------------------
def _run_import(task: DriveTask) -> str:
    from sensorlabel.formats import import_drive

    opts = task.options
    drive = import_drive(opts["format"], task.source, task.drive, overwrite=bool(opts["overwrite"]),
                         **opts["importer_options"])
    try:
        boxes = drive.labels.count_boxes()
    finally:
        drive.labels.close()
    return f"{drive.num_frames} frames, {len(drive.sensors)} sensors, {boxes} boxes"


def _run_fuse(task: DriveTask) -> str:
    from sensorlabel.drive import Drive
    from sensorlabel.fusion.pipeline import FuseConfig, fuse_drive

    opts = task.options
    if int(opts["aggregate"]) < 0:
        raise SensorlabelError(f"aggregate must be >= 0, got {opts['aggregate']}")
    config = FuseConfig(colorize=bool(opts["colorize"]), aggregate_sweeps=int(opts["aggregate"]),
                        calibration_check=bool(opts["calibration_check"]))
    report = fuse_drive(Drive.open(task.drive), config, task.output_path())
    return f"{len(report.stats)} frames fused, {len(report.flagged)} (frame, camera) flagged -> {report.out_dir}"


def _run_propagate(task: DriveTask) -> str:
    from sensorlabel.drive import Drive
    from sensorlabel.propagation import PropagationConfig, propagate_drive

    drive = Drive.open(task.drive)
    config = PropagationConfig(refine=bool(task.options["refine"]), extrapolate=bool(task.options["extrapolate"]))
    try:
        report = propagate_drive(drive, config)
    finally:
        drive.labels.close()
    written = ", ".join(f"{k} {v}" for k, v in sorted(report.written.items())) or "nothing"
    return f"{report.tracks} tracks from {report.keyframes} keyframes; wrote {written}"


def _run_export(task: DriveTask) -> str:
    from sensorlabel.formats import export_drive

    fmt = task.options["format"]
    out = task.output_path()
    written = export_drive(task.drive, fmt, out, **task.options["exporter_options"])
    return f"{len(written)} files ({fmt}) -> {out}"


def _run_eval(task: DriveTask) -> str:
    """Propagation from the drive's own keyframe protocol scored against its ``imported`` boxes."""
    import numpy as np

    from sensorlabel.drive import Drive
    from sensorlabel.eval.propagation import GroundTruth, evaluate_propagation
    from sensorlabel.formats import atomic_write_bytes

    drive = Drive.open(task.drive)
    truth = drive.labels.query(sources=["imported"])
    if len(truth) == 0:
        raise SensorlabelError(f"{drive.path}: no 'imported' boxes to evaluate against (ground truth is the "
                               "drive's imported labels)")
    intervals = tuple(int(k) for k in task.options["intervals"])
    if not intervals or min(intervals) < 1:
        raise SensorlabelError(f"intervals must be positive integers, got {list(task.options['intervals'])}")
    frame_times = np.asarray(drive.frame_timestamps_ns, dtype=np.int64)
    gt = GroundTruth(truth.frame, truth.boxes, frame_times, drive.world_SE3_ego(frame_times))
    try:
        results = evaluate_propagation(gt, intervals, drive=drive, protocol=str(task.options["protocol"]))
    except ValueError as exc:  # an unknown protocol
        raise SensorlabelError(f"eval: {exc}") from None
    finally:
        drive.labels.close()
    out = task.output_path()
    atomic_write_bytes(out, (json.dumps({"drive": str(drive.path), "config": task.config(), "results": results},
                                        indent=2) + "\n").encode())
    parts = []
    for k, methods in results.items():
        ours = methods.get("ours", {}).get("all", {}).get("mean_iou")
        base = methods.get("linear_world", {}).get("all", {}).get("mean_iou")
        if ours is not None:
            parts.append(f"k={k} mean IoU {ours:.3f}" + ("" if base is None else f" (linear_world {base:.3f})"))
    return "; ".join(parts) + f" -> {out}"


_RUNNERS: dict[str, Callable[[DriveTask], str]] = {
    "import": _run_import,
    "fuse": _run_fuse,
    "propagate": _run_propagate,
    "export": _run_export,
    "eval": _run_eval,
}


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_drive(task: DriveTask, force: bool = False) -> DriveResult:
    """Run one task in this process (on a Dask worker, or directly): skip it when done, else run it, then mark it.

    Never raises for a failing drive: a :class:`SensorlabelError` becomes a ``failed`` result of kind
    ``"bad-input"`` with its message; any other exception one of kind ``"bug"`` with its type, message and
    traceback.

    Args:
        task: the task.
        force: run even when the done-marker says the drive is done.

    Returns:
        The DriveResult.
    """
    start = time.perf_counter()
    if not force and is_done(task):
        return DriveResult(task.name, task.drive, STATUS_SKIPPED, time.perf_counter() - start,
                           "already done (marker matches)", worker=_worker_id())
    try:
        message = _RUNNERS[task.command](task)
        write_marker(task, time.perf_counter() - start, message)
    except SensorlabelError as exc:
        log.info("%s %s failed: %s", task.command, task.drive, exc)
        return DriveResult(task.name, task.drive, STATUS_FAILED, time.perf_counter() - start, str(exc),
                           ERROR_BAD_INPUT, _worker_id())
    except Exception as exc:  # noqa: BLE001 - a bug in one drive must not stop the batch; it is reported in full
        log.exception("%s %s failed with a bug", task.command, task.drive)
        return DriveResult(task.name, task.drive, STATUS_FAILED, time.perf_counter() - start,
                           f"{type(exc).__name__}: {exc}", ERROR_BUG, _worker_id(), traceback.format_exc())
    return DriveResult(task.name, task.drive, STATUS_DONE, time.perf_counter() - start, message,
                       worker=_worker_id())


# ----- the batch -----------------------------------------------------------------------------------------------------
def _connect(scheduler: str | None, workers: int | None, num_tasks: int):
    """A distributed Client and the LocalCluster it owns (None when connecting to ``scheduler``).

    Raises:
        SensorlabelError: the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise SensorlabelError(f"batch: cannot connect to the Dask scheduler {scheduler}: {exc}") from None
        log.info("connected to %s (%d workers)", scheduler, len(client.scheduler_info().get("workers", {})))
        return client, None
    if workers is None:
        workers = max(1, min(num_tasks, os.cpu_count() or 1))
    import dask

    # A drive is a long task: a worker holds exactly the one it runs (no prefetched second task), which balances the
    # tail of the batch and, when a worker dies, charges the death to that one task only.
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    log.info("local cluster of %d workers, dashboard %s", workers, client.dashboard_link)
    return client, cluster


def run_batch(
    command: str,
    drives: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    options: dict | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: Callable[[DriveResult, int, int], None] | None = None,
    runner: Callable[..., DriveResult] = run_drive,
) -> BatchReport:
    """Run ``command`` on every drive, one Dask task per drive.

    Drives whose done-marker matches are skipped without starting a cluster (checked here on the client; drives
    on a filesystem the client does not see are checked by their task on the worker).

    Args:
        command: one of :data:`COMMANDS`.
        drives: ``.drive`` folders (``import``: source files or folders).
        out: output root (see :func:`plan_tasks`).
        options: command options (:data:`OPTION_DEFAULTS`).
        scheduler: address of an existing scheduler (``tcp://host:8786``); None starts a LocalCluster.
        workers: worker processes of the LocalCluster (default: min(drives to run, CPU count)).
        force: redo drives that are done.
        progress: called as ``progress(result, finished, total)`` after every drive.
        runner: the per-drive function, ``runner(task, force=...) -> DriveResult`` (default :func:`run_drive`);
            must be importable by the workers. Tests wrap it to inject faults.

    Returns:
        BatchReport with one result per drive, in the order of ``drives``.

    Raises:
        SensorlabelError: bad arguments (:func:`plan_tasks`, ``workers`` < 1) or an unreachable scheduler.
    """
    start = time.perf_counter()
    tasks = plan_tasks(command, drives, out=out, options=options)
    if workers is not None and workers < 1:
        raise SensorlabelError(f"batch: --workers must be >= 1, got {workers}")
    if workers is not None and scheduler:
        log.warning("--workers %d is ignored: the cluster at %s has its own workers", workers, scheduler)
    results: dict[str, DriveResult] = {}

    def finish(result: DriveResult) -> None:
        results[result.name] = result
        if progress is not None:
            progress(result, len(results), len(tasks))

    pending = []
    for task in tasks:
        local = Path(task.source if task.command == "import" else task.drive).exists()
        if not force and local and is_done(task):
            finish(DriveResult(task.name, task.drive, STATUS_SKIPPED, 0.0, "already done (marker matches)"))
        else:
            # The client has checked: the worker need not check again; when the client cannot see the path, the
            # worker checks.
            pending.append((task, force or local))
    if pending:
        from distributed import as_completed

        client, cluster = _connect(scheduler, workers, len(pending))
        try:
            token = uuid.uuid4().hex[:8]
            futures = {
                client.submit(runner, task, force=run_anyway, key=f"sensorlabel-{command}-{task.name}-{token}",
                              pure=False, retries=1): task
                for task, run_anyway in pending
            }
            for future in as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker, CancelledError, a lost scheduler
                    result = DriveResult(task.name, task.drive, STATUS_FAILED, 0.0,
                                         f"{type(exc).__name__}: {exc}", ERROR_LOST)
                finish(result)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return BatchReport(command, [results[t.name] for t in tasks], time.perf_counter() - start)


__all__ = ["BatchReport", "COMMANDS", "DriveResult", "DriveTask", "OPTION_DEFAULTS", "drive_fingerprint", "is_done",
           "plan_tasks", "read_marker", "run_batch", "run_drive", "task_fingerprint", "write_marker"]
