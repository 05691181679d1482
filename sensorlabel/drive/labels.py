"""The label store of a drive: 3D boxes, tracks and an undoable edit log in one SQLite file (WAL mode).

Boxes are stored in the **ego frame at their frame's timestamp**: geometric centre ``center_m``, size ``lwh_m`` and
``quat_wxyz`` (ego_R_object), keyed by ``(frame, track_id)``. Every box records where it came from (``source``: one of
:data:`SOURCES`), a confidence in [0, 1] and whether a person has reviewed it. A ``human`` box is a keyframe.

Crash safety and concurrency:

* Every public write is exactly one SQLite transaction (``BEGIN IMMEDIATE ... COMMIT``), its edit-log entry included;
  ``undo`` and ``redo`` are transactions too. With ``journal_mode=WAL`` and ``synchronous=FULL`` the write-ahead log is
  fsynced at every commit, so a commit that has returned survives a SIGKILL of the process (and a power cut), and an
  interrupted one leaves no trace.
* Several :class:`LabelStore` objects, in one process or many, may write to one file: SQLite serialises the
  transactions. A writer that cannot get the lock within ``timeout_s`` gets :class:`DriveLockedError` naming the file.
* One store object may be shared between threads (the viewer propagates in a worker thread): the connection is opened
  with ``check_same_thread=False`` and every call holds the store's lock. A store must not cross a ``fork``: open a
  new one in each process.

Edit log: each edit records the before and after images of every box and track row it changed (absent rows are
simply missing from that side), so undo writes back the before images and redo the after images, exactly. Undo
always takes the newest edit not yet undone, redo the oldest undone one, and a new edit after an undo discards the
undone edits (the usual linear history). The history is the database's: an undo undoes the newest edit of any
writer.

Protection of human work: automation (``source != "human"``) never overwrites a human box; :meth:`put_boxes` skips
those rows and reports them in :attr:`PutResult.skipped_human`. Updating a human box needs a human edit
(:meth:`update_box` with ``source="human"``); deleting boxes and editing tracks are human actions.

Schema (``SCHEMA_VERSION`` in table ``meta``, checked on open)::

    meta(key, value)
    tracks(track_id, label, attributes JSON)
    boxes(box_id, frame, track_id, cx_m, cy_m, cz_m, l_m, w_m, h_m, qw, qx, qy, qz,
          source CHECK IN SOURCES, confidence, reviewed, UNIQUE(frame, track_id))   -- indexed by frame and by track
    edits(edit_id, time_unix_ns, description, undone)
    edit_boxes(edit_id, phase 0=before|1=after, <all boxes columns>)
    edit_tracks(edit_id, phase, <all tracks columns>)

Box and track ids come from AUTOINCREMENT counters and are never reused, so an id a caller holds never names a
different box later, and redo can put rows back under their old ids.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensorlabel.errors import DriveLockedError, LabelStoreError, SchemaError
from sensorlabel.geometry.boxes import Boxes

logger = logging.getLogger(__name__)

#: Layout version written to ``meta.schema_version``; a store with another version is refused with SchemaError.
SCHEMA_VERSION = 1
#: Allowed values of a box's ``source``. ``human`` boxes are keyframes and are never overwritten by automation.
SOURCES = ("human", "imported", "interpolated", "tracked", "refined", "proposed")

_BOX_COLUMNS = ("box_id", "frame", "track_id", "cx_m", "cy_m", "cz_m", "l_m", "w_m", "h_m", "qw", "qx", "qy", "qz",
                "source", "confidence", "reviewed")
_TRACK_COLUMNS = ("track_id", "label", "attributes")
_BOX_COLS = ", ".join(_BOX_COLUMNS)
_TRACK_COLS = ", ".join(_TRACK_COLUMNS)
_SOURCES_SQL = ", ".join(f"'{s}'" for s in SOURCES)

_SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    track_id INTEGER PRIMARY KEY AUTOINCREMENT,
    label TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(attributes))
);
CREATE TABLE IF NOT EXISTS boxes (
    box_id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame INTEGER NOT NULL CHECK (frame >= 0),
    track_id INTEGER NOT NULL REFERENCES tracks(track_id) DEFERRABLE INITIALLY DEFERRED,
    cx_m REAL NOT NULL, cy_m REAL NOT NULL, cz_m REAL NOT NULL,
    l_m REAL NOT NULL CHECK (l_m > 0), w_m REAL NOT NULL CHECK (w_m > 0), h_m REAL NOT NULL CHECK (h_m > 0),
    qw REAL NOT NULL, qx REAL NOT NULL, qy REAL NOT NULL, qz REAL NOT NULL,
    source TEXT NOT NULL CHECK (source IN ({_SOURCES_SQL})),
    confidence REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    reviewed INTEGER NOT NULL CHECK (reviewed IN (0, 1)),
    UNIQUE (frame, track_id)
);
CREATE INDEX IF NOT EXISTS boxes_by_track ON boxes (track_id, frame);
CREATE TABLE IF NOT EXISTS edits (
    edit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_unix_ns INTEGER NOT NULL,
    description TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0 CHECK (undone IN (0, 1))
);
CREATE TABLE IF NOT EXISTS edit_boxes (
    edit_id INTEGER NOT NULL, phase INTEGER NOT NULL CHECK (phase IN (0, 1)),
    box_id INTEGER NOT NULL, frame INTEGER NOT NULL, track_id INTEGER NOT NULL,
    cx_m REAL NOT NULL, cy_m REAL NOT NULL, cz_m REAL NOT NULL, l_m REAL NOT NULL, w_m REAL NOT NULL, h_m REAL NOT NULL,
    qw REAL NOT NULL, qx REAL NOT NULL, qy REAL NOT NULL, qz REAL NOT NULL,
    source TEXT NOT NULL, confidence REAL NOT NULL, reviewed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS edit_boxes_by_edit ON edit_boxes (edit_id, phase);
CREATE TABLE IF NOT EXISTS edit_tracks (
    edit_id INTEGER NOT NULL, phase INTEGER NOT NULL CHECK (phase IN (0, 1)),
    track_id INTEGER NOT NULL, label TEXT NOT NULL, attributes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS edit_tracks_by_edit ON edit_tracks (edit_id, phase);
"""


# ----- value types ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Track:
    """One object track.

    Attributes:
        track_id: the track's id (never reused).
        label: class name, e.g. ``"Car"``; every box of the track has this class.
        attributes: free JSON-serialisable attributes (e.g. ``{"parked": True}``).
    """

    track_id: int
    label: str
    attributes: dict


@dataclass(frozen=True)
class Edit:
    """One entry of the edit log.

    Attributes:
        edit_id: increasing id of the edit (never reused).
        time_unix_ns: wall-clock time of the commit, ns since the Unix epoch.
        description: what the edit did (the caller's description or a generated one).
        undone: True when the edit has been undone and can be redone.
        num_box_rows: number of box rows the edit changed (created, changed or deleted).
        num_track_rows: number of track rows the edit changed.
    """

    edit_id: int
    time_unix_ns: int
    description: str
    undone: bool
    num_box_rows: int
    num_track_rows: int


@dataclass(frozen=True)
class PutResult:
    """Outcome of :meth:`LabelStore.put_boxes`, row for row with the input.

    Attributes:
        box_ids: (N,) int64 ids of the written boxes, -1 for skipped rows.
        track_ids: (N,) int64 track of each row (the new track for rows given with track_id -1).
        skipped_human: (N,) bool, True where an automated write met a human box and left it alone.
        edit_id: id of the edit-log entry, -1 when nothing was written (no edit is logged then).
    """

    box_ids: np.ndarray
    track_ids: np.ndarray
    skipped_human: np.ndarray
    edit_id: int = -1


@dataclass(frozen=True, eq=False)
class BoxRecords:
    """Stored boxes with their bookkeeping, as a struct of arrays sorted by (frame, track_id).

    Attributes:
        frame: (N,) int64 frame index of each box.
        boxes: N Boxes in the ego frame at their frame's timestamp; ``label`` is the track's class and
            ``score`` equals ``confidence``.
        source: (N,) str, one of :data:`SOURCES`.
        confidence: (N,) float64 in [0, 1].
        reviewed: (N,) bool.
        box_id: (N,) int64.

    Raises:
        ValueError: when the arrays do not all have N rows.
    """

    frame: np.ndarray
    boxes: Boxes
    source: np.ndarray
    confidence: np.ndarray
    reviewed: np.ndarray
    box_id: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        converted = {"frame": np.asarray(self.frame, dtype=np.int64), "source": np.asarray(self.source, dtype=str),
                     "confidence": np.asarray(self.confidence, dtype=np.float64),
                     "reviewed": np.asarray(self.reviewed, dtype=bool),
                     "box_id": np.asarray(self.box_id, dtype=np.int64)}
        for name, arr in converted.items():
            if arr.shape != (n,):
                raise ValueError(f"{name}: expected ({n},), got {arr.shape}")
            object.__setattr__(self, name, arr)

    @classmethod
    def empty(cls) -> BoxRecords:
        """No boxes."""
        return cls(np.zeros(0, np.int64), Boxes.empty(), np.zeros(0, dtype="<U1"), np.zeros(0), np.zeros(0, bool),
                   np.zeros(0, np.int64))

    @property
    def track_id(self) -> np.ndarray:
        """(N,) int64 track of each box (same as ``boxes.track_id``)."""
        return self.boxes.track_id

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> BoxRecords:
        """Select with an integer, a slice, an index array or a boolean mask; always returns BoxRecords."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = index if isinstance(index, slice) else np.asarray(index)
        return BoxRecords(self.frame[idx], self.boxes[idx], self.source[idx], self.confidence[idx],
                          self.reviewed[idx], self.box_id[idx])


# ----- validation helpers --------------------------------------------------------------------------------------------
def _check_source(source) -> str:
    if not isinstance(source, str) or source not in SOURCES:
        raise LabelStoreError(f"source must be one of {SOURCES}, got {source!r}")
    return source


def _int_array(values, name: str) -> np.ndarray:
    """(N,) int64 from integers (or integral floats); anything else raises LabelStoreError naming the value."""
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1:
        raise LabelStoreError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise LabelStoreError(f"{name}[{int(np.flatnonzero(bad)[0])}] is not an integer: {arr[bad][0]!r}")
        return arr.astype(np.int64)
    raise LabelStoreError(f"{name}: expected integers, got dtype {arr.dtype} ({arr[:3].tolist()!r})")


def _check_confidence(values, n: int) -> np.ndarray:
    conf = np.asarray(values, dtype=np.float64)
    if conf.shape != (n,):
        raise LabelStoreError(f"confidence: expected ({n},), got {conf.shape}")
    bad = ~np.isfinite(conf) | (conf < 0) | (conf > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LabelStoreError(f"confidence[{i}] must be in [0, 1], got {conf[i]!r}")
    return conf


def _check_label(label) -> str:
    if not isinstance(label, str) or not label:
        raise LabelStoreError(f"a track label must be a non-empty string, got {label!r}")
    return label


def _attributes_json(attributes) -> str:
    if attributes is None:
        return "{}"
    if not isinstance(attributes, dict):
        raise LabelStoreError(f"track attributes must be a dict, got {type(attributes).__name__}: {attributes!r}")
    try:
        return json.dumps(attributes, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LabelStoreError(f"track attributes are not JSON-serialisable ({exc}): {attributes!r}") from None


def _json_ids(ids) -> str:
    return json.dumps(np.asarray(ids, dtype=np.int64).tolist())


# ----- the store ---------------------------------------------------------------------------------------------------
class LabelStore:
    """Boxes, tracks and the edit log of one drive, in an SQLite file.

    Args:
        path: the ``labels.sqlite`` file; created with an empty store when missing (its folder must exist).
        timeout_s: how long a write waits for another writer's transaction before :class:`DriveLockedError`.

    Raises:
        SchemaError: the file is not SQLite (garbage, truncated), is an SQLite database of something else, or holds
            another schema version; the message names the path.
        DriveLockedError: the store had to be created but another writer held the lock for ``timeout_s``.
        LabelStoreError: SQLite cannot open the file at all (permissions).
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float = 10.0):
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        if not self.path.parent.is_dir():
            raise SchemaError(self.path, f"folder {self.path.parent} does not exist")
        if self.path.exists() and not self.path.is_file():
            raise SchemaError(self.path, "not a file")
        try:
            self._conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._open_schema()
        except sqlite3.Error as exc:
            self.close()
            translated = self._translate(exc)
            if translated is exc:  # e.g. "unable to open database file" (permissions, a read-only folder)
                translated = LabelStoreError(f"{self.path}: cannot open the label store: {exc}")
            raise translated from None
        except BaseException:
            self.close()
            raise

    # ----- connection management ------------------------------------------------------------------------------------
    def _open_schema(self) -> None:
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SchemaError(self.path, f"cannot switch journal_mode to WAL (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables - {"sqlite_sequence"}:
                raise SchemaError(self.path, f"an SQLite database but not a label store (tables {sorted(tables)})")
            with self._transaction() as tx:
                # Another process may have created it while we waited for the lock: CREATE ... IF NOT EXISTS.
                for statement in _SCHEMA_SQL.split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
            logger.info("created label store %s", self.path)
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = None if row is None else row[0]
            raise SchemaError(self.path, f"meta.schema_version is {found!r}, this version reads {SCHEMA_VERSION}")
        check = conn.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise SchemaError(self.path, f"damaged SQLite file: quick_check says {check[:3]}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LabelStoreError(f"{self.path}: the label store is closed")
        if os.getpid() != self._pid:
            raise LabelStoreError(f"{self.path}: a LabelStore cannot cross a fork; open a new one in this process")
        return self._conn

    def _translate(self, exc: sqlite3.Error) -> Exception:
        """The sensorlabel error for an SQLite error: locks -> DriveLockedError, damage -> SchemaError."""
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
            return DriveLockedError(f"{self.path}: the label store is locked by another writer "
                                    f"(waited {self.timeout_s:g} s): {message}")
        if isinstance(exc, sqlite3.DatabaseError) and any(
                key in message for key in ("not a database", "malformed", "corrupt", "disk image")):
            return SchemaError(self.path, f"not a readable SQLite label store ({message})")
        return exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE (waits up to timeout_s for the lock) ... COMMIT, or ROLLBACK."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc) from None
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                translated = self._translate(exc)
                if translated is exc:
                    raise
                raise translated from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction (a consistent snapshot while other writers commit)."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN DEFERRED")
                try:
                    yield conn
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                translated = self._translate(exc)
                if translated is exc:
                    raise
                raise translated from None

    def close(self) -> None:
        """Close the connection (idempotent). Committed edits are already durable."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    # ----- edit-log machinery ---------------------------------------------------------------------------------------
    @staticmethod
    def _next_id(conn: sqlite3.Connection, table: str) -> int:
        """The first id AUTOINCREMENT has never handed out for ``table`` (inside the write transaction)."""
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return 1 if row is None else int(row[0]) + 1

    @staticmethod
    def _begin_edit(conn: sqlite3.Connection, description: str) -> int:
        """Log a new edit, first discarding the undone edits (their redo is no longer possible)."""
        undone = "SELECT edit_id FROM edits WHERE undone = 1"
        conn.execute(f"DELETE FROM edit_boxes WHERE edit_id IN ({undone})")
        conn.execute(f"DELETE FROM edit_tracks WHERE edit_id IN ({undone})")
        conn.execute("DELETE FROM edits WHERE undone = 1")
        cur = conn.execute("INSERT INTO edits (time_unix_ns, description, undone) VALUES (?, ?, 0)",
                           (time.time_ns(), description))
        return int(cur.lastrowid)

    @staticmethod
    def _snapshot(conn: sqlite3.Connection, edit_id: int, phase: int, box_ids_json: str, track_ids_json: str) -> None:
        """Copy the current rows of the given boxes and tracks into the edit log (phase 0 before, 1 after)."""
        conn.execute(f"INSERT INTO edit_boxes (edit_id, phase, {_BOX_COLS}) SELECT ?, ?, {_BOX_COLS} FROM boxes "
                     "WHERE box_id IN (SELECT value FROM json_each(?))", (edit_id, phase, box_ids_json))
        conn.execute(f"INSERT INTO edit_tracks (edit_id, phase, {_TRACK_COLS}) SELECT ?, ?, {_TRACK_COLS} "
                     "FROM tracks WHERE track_id IN (SELECT value FROM json_each(?))",
                     (edit_id, phase, track_ids_json))

    @contextmanager
    def _edit(self, conn: sqlite3.Connection, description: str, box_ids, track_ids) -> Iterator[int]:
        """Log an edit around a mutation of exactly the given box and track rows; yields the edit id."""
        edit_id = self._begin_edit(conn, description)
        boxes_json, tracks_json = _json_ids(box_ids), _json_ids(track_ids)
        self._snapshot(conn, edit_id, 0, boxes_json, tracks_json)
        yield edit_id
        self._snapshot(conn, edit_id, 1, boxes_json, tracks_json)

    @staticmethod
    def _restore(conn: sqlite3.Connection, edit_id: int, phase: int) -> None:
        """Write back one side of an edit: the touched rows become exactly their logged images."""
        conn.execute("DELETE FROM boxes WHERE box_id IN (SELECT box_id FROM edit_boxes WHERE edit_id = ?)", (edit_id,))
        conn.execute("DELETE FROM tracks WHERE track_id IN (SELECT track_id FROM edit_tracks WHERE edit_id = ?)",
                     (edit_id,))
        conn.execute(f"INSERT INTO tracks ({_TRACK_COLS}) SELECT {_TRACK_COLS} FROM edit_tracks "
                     "WHERE edit_id = ? AND phase = ?", (edit_id, phase))
        conn.execute(f"INSERT INTO boxes ({_BOX_COLS}) SELECT {_BOX_COLS} FROM edit_boxes "
                     "WHERE edit_id = ? AND phase = ?", (edit_id, phase))

    def undo(self) -> bool:
        """Undo the newest edit that is not undone. Returns False when there is nothing to undo."""
        with self._transaction() as conn:
            row = conn.execute("SELECT edit_id FROM edits WHERE undone = 0 ORDER BY edit_id DESC LIMIT 1").fetchone()
            if row is None:
                return False
            self._restore(conn, row[0], phase=0)
            conn.execute("UPDATE edits SET undone = 1 WHERE edit_id = ?", (row[0],))
        return True

    def redo(self) -> bool:
        """Redo the oldest undone edit. Returns False when there is nothing to redo."""
        with self._transaction() as conn:
            row = conn.execute("SELECT edit_id FROM edits WHERE undone = 1 ORDER BY edit_id ASC LIMIT 1").fetchone()
            if row is None:
                return False
            self._restore(conn, row[0], phase=1)
            conn.execute("UPDATE edits SET undone = 0 WHERE edit_id = ?", (row[0],))
        return True

    def history(self, limit: int = 50) -> list[Edit]:
        """The newest ``limit`` edits, newest first (undone ones included, flagged)."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT e.edit_id, e.time_unix_ns, e.description, e.undone, "
                "(SELECT count(*) FROM edit_boxes b WHERE b.edit_id = e.edit_id), "
                "(SELECT count(*) FROM edit_tracks t WHERE t.edit_id = e.edit_id) "
                "FROM edits e ORDER BY e.edit_id DESC LIMIT ?", (int(limit),)).fetchall()
        return [Edit(int(i), int(t), d, bool(u), int(nb), int(nt)) for i, t, d, u, nb, nt in rows]

    def prune_history(self, keep_last: int) -> int:
        """Forget all but the newest ``keep_last`` edits (their before/after images make the log grow with every
        bulk write); the forgotten edits can no longer be undone. The labels themselves do not change.

        Returns:
            The number of edits removed.

        Raises:
            LabelStoreError: keep_last < 0.
        """
        if int(keep_last) < 0:
            raise LabelStoreError(f"keep_last must be >= 0, got {keep_last}")
        with self._transaction() as conn:
            old = "SELECT edit_id FROM edits ORDER BY edit_id DESC LIMIT -1 OFFSET ?"
            conn.execute(f"DELETE FROM edit_boxes WHERE edit_id IN ({old})", (int(keep_last),))
            conn.execute(f"DELETE FROM edit_tracks WHERE edit_id IN ({old})", (int(keep_last),))
            return conn.execute(f"DELETE FROM edits WHERE edit_id IN ({old})", (int(keep_last),)).rowcount

    # ----- tracks -------------------------------------------------------------------------------------------------
    @staticmethod
    def _require_ids(conn: sqlite3.Connection, table: str, column: str, ids) -> None:
        """LabelStoreError naming the first of ``ids`` that ``table.column`` does not hold (and how many more)."""
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        found = np.array([r[0] for r in conn.execute(
            f"SELECT {column} FROM {table} WHERE {column} IN (SELECT value FROM json_each(?))", (_json_ids(ids),))],
            dtype=np.int64)
        missing = np.setdiff1d(ids, found)
        if missing.size:
            raise LabelStoreError(f"unknown {column} {int(missing[0])}" +
                                  (f" (and {missing.size - 1} more)" if missing.size > 1 else ""))
    def add_track(self, label: str, attributes: dict | None = None, description: str = "") -> int:
        """Create an empty track of class ``label``; returns its id.

        Raises:
            LabelStoreError: empty label or attributes that are not a JSON-serialisable dict.
        """
        label = _check_label(label)
        attrs = _attributes_json(attributes)
        with self._transaction() as conn:
            track_id = self._next_id(conn, "tracks")
            with self._edit(conn, description or f"add track {track_id} ({label})", [], [track_id]):
                conn.execute("INSERT INTO tracks (track_id, label, attributes) VALUES (?, ?, ?)",
                             (track_id, label, attrs))
        return track_id

    def add_tracks(self, labels, attributes=None, description: str = "") -> np.ndarray:
        """Create empty tracks in one transaction and one edit (one undo removes them all); returns their ids.

        Args:
            labels: (K,) class of each new track (non-empty strings).
            attributes: None, or K dicts (or None) of JSON-serialisable attributes, one per track.
            description: text for the edit log (a summary is generated when empty).

        Returns:
            (K,) int64 ids of the new tracks, in input order (consecutive). Nothing is written (and no edit logged)
            when K is 0.

        Raises:
            LabelStoreError: as :meth:`add_track` for any track, or ``attributes`` of another length than ``labels``.
        """
        labels = [str(_check_label(label)) for label in labels]
        if attributes is None:
            attributes = [None] * len(labels)
        attributes = list(attributes)
        if len(attributes) != len(labels):
            raise LabelStoreError(f"attributes: expected {len(labels)} entries (one per label), got {len(attributes)}")
        attrs = [_attributes_json(a) for a in attributes]
        if not labels:
            return np.zeros(0, np.int64)
        with self._transaction() as conn:
            track_ids = self._next_id(conn, "tracks") + np.arange(len(labels), dtype=np.int64)
            text = description or f"add {len(labels)} tracks ({track_ids[0]}..{track_ids[-1]})"
            with self._edit(conn, text, [], track_ids):
                conn.executemany("INSERT INTO tracks (track_id, label, attributes) VALUES (?, ?, ?)",
                                 zip(track_ids.tolist(), labels, attrs))
        return track_ids

    def tracks(self) -> list[Track]:
        """All tracks, by id."""
        with self._reading() as conn:
            rows = conn.execute(f"SELECT {_TRACK_COLS} FROM tracks ORDER BY track_id").fetchall()
        return [Track(int(i), label, json.loads(attrs)) for i, label, attrs in rows]

    def set_track_label(self, track_id: int, label: str, description: str = "") -> None:
        """Change a track's class (a human edit; every box of the track takes it).

        Raises:
            LabelStoreError: unknown track or empty label.
        """
        label = _check_label(label)
        track_id = int(track_id)
        with self._transaction() as conn:
            self._require_ids(conn, "tracks", "track_id", [track_id])
            with self._edit(conn, description or f"label track {track_id} as {label}", [], [track_id]):
                conn.execute("UPDATE tracks SET label = ? WHERE track_id = ?", (label, track_id))

    def set_track_attributes(self, track_id: int, attributes: dict, description: str = "") -> None:
        """Replace a track's attributes.

        Raises:
            LabelStoreError: unknown track, or attributes that are not a JSON-serialisable dict.
        """
        attrs = _attributes_json(attributes)
        track_id = int(track_id)
        with self._transaction() as conn:
            self._require_ids(conn, "tracks", "track_id", [track_id])
            with self._edit(conn, description or f"set attributes of track {track_id}", [], [track_id]):
                conn.execute("UPDATE tracks SET attributes = ? WHERE track_id = ?", (attrs, track_id))

    def _track_boxes(self, conn: sqlite3.Connection, track_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(box_id, frame, is_human) of a track's boxes, by frame."""
        rows = conn.execute("SELECT box_id, frame, source = 'human' FROM boxes WHERE track_id = ? ORDER BY frame",
                            (track_id,)).fetchall()
        arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return arr[:, 0], arr[:, 1], arr[:, 2].astype(bool)

    def merge_tracks(self, keep_id: int, remove_id: int, description: str = "") -> None:
        """Move every box of ``remove_id`` into ``keep_id`` and delete ``remove_id`` (a human edit).

        Where both tracks have a box in one frame, ``keep_id``'s box stays, unless only ``remove_id``'s box is a
        human one: then the human box is kept (moved into ``keep_id``). The kept track's label and attributes stay.

        Raises:
            LabelStoreError: unknown track, or keep_id == remove_id.
        """
        keep_id, remove_id = int(keep_id), int(remove_id)
        if keep_id == remove_id:
            raise LabelStoreError(f"cannot merge track {keep_id} into itself")
        with self._transaction() as conn:
            self._require_ids(conn, "tracks", "track_id", [keep_id, remove_id])
            keep_box, keep_frame, keep_human = self._track_boxes(conn, keep_id)
            rm_box, rm_frame, rm_human = self._track_boxes(conn, remove_id)
            _, ik, ir = np.intersect1d(keep_frame, rm_frame, assume_unique=True, return_indices=True)
            removed_wins = rm_human[ir] & ~keep_human[ik]
            delete_ids = np.concatenate([keep_box[ik[removed_wins]], rm_box[ir[~removed_wins]]])
            move_ids = np.setdiff1d(rm_box, delete_ids)
            touched = np.concatenate([keep_box[ik], rm_box])
            text = description or f"merge track {remove_id} into {keep_id}"
            with self._edit(conn, text, touched, [remove_id]):
                conn.execute("DELETE FROM boxes WHERE box_id IN (SELECT value FROM json_each(?))",
                             (_json_ids(delete_ids),))
                conn.execute("UPDATE boxes SET track_id = ? WHERE box_id IN (SELECT value FROM json_each(?))",
                             (keep_id, _json_ids(move_ids)))
                conn.execute("DELETE FROM tracks WHERE track_id = ?", (remove_id,))

    def split_track(self, track_id: int, first_frame: int, description: str = "") -> int:
        """Move the boxes of ``track_id`` at frames >= ``first_frame`` into a new track (same label and attributes).

        Returns:
            The new track's id.

        Raises:
            LabelStoreError: unknown track, negative first_frame, or no box at or after first_frame.
        """
        track_id = int(track_id)
        first_frame = int(_int_array(first_frame, "first_frame")[0])
        if first_frame < 0:
            raise LabelStoreError(f"first_frame must be >= 0, got {first_frame}")
        with self._transaction() as conn:
            self._require_ids(conn, "tracks", "track_id", [track_id])
            box_ids, frames, _ = self._track_boxes(conn, track_id)
            moving = box_ids[frames >= first_frame]
            if moving.size == 0:
                raise LabelStoreError(f"track {track_id} has no box at frame >= {first_frame}; nothing to split")
            new_id = self._next_id(conn, "tracks")
            text = description or f"split track {track_id} at frame {first_frame} into {new_id}"
            with self._edit(conn, text, moving, [new_id]):
                conn.execute("INSERT INTO tracks (track_id, label, attributes) SELECT ?, label, attributes FROM tracks "
                             "WHERE track_id = ?", (new_id, track_id))
                conn.execute("UPDATE boxes SET track_id = ? WHERE box_id IN (SELECT value FROM json_each(?))",
                             (new_id, _json_ids(moving)))
        return new_id

    def delete_track(self, track_id: int, description: str = "") -> None:
        """Delete a track and all its boxes, human ones included (a human edit).

        Raises:
            LabelStoreError: unknown track.
        """
        track_id = int(track_id)
        with self._transaction() as conn:
            self._require_ids(conn, "tracks", "track_id", [track_id])
            box_ids, _, _ = self._track_boxes(conn, track_id)
            with self._edit(conn, description or f"delete track {track_id}", box_ids, [track_id]):
                conn.execute("DELETE FROM boxes WHERE track_id = ?", (track_id,))
                conn.execute("DELETE FROM tracks WHERE track_id = ?", (track_id,))

    # ----- boxes --------------------------------------------------------------------------------------------------
    def put_boxes(self, frames, boxes: Boxes, source: str, confidence=None, reviewed=False,
                  description: str = "") -> PutResult:
        """Insert or update boxes, keyed by (frame, track_id), in one transaction and one edit.

        A row whose (frame, track) already has a box updates that box in place (its box_id stays). Rows with
        ``track_id == -1`` each start a new track whose class is the row's ``boxes.label``; for existing tracks
        ``boxes.label`` is ignored (change a class with :meth:`set_track_label`). An automated write
        (``source != "human"``) skips every row whose stored box is a human one and reports it.

        Args:
            frames: (N,) int frame index of each box, >= 0.
            boxes: N Boxes in the ego frame at each frame's timestamp.
            source: one of :data:`SOURCES`, for all rows.
            confidence: (N,) in [0, 1]; None takes ``boxes.score``.
            reviewed: bool for all rows or (N,) bool.
            description: text for the edit log (a summary is generated when empty).

        Returns:
            PutResult, row for row with the input.

        Raises:
            LabelStoreError: bad source, frames of the wrong shape or negative, confidence outside [0, 1],
                unknown track ids, the same (frame, track) twice, or a new track without a label.
        """
        if not isinstance(boxes, Boxes):
            raise LabelStoreError(f"boxes must be sensorlabel.geometry.Boxes, got {type(boxes).__name__}")
        source = _check_source(source)
        n = len(boxes)
        frames = _int_array(frames, "frames")
        if frames.shape != (n,):
            raise LabelStoreError(f"frames: expected ({n},) for {n} boxes, got {frames.shape}")
        if (frames < 0).any():
            i = int(np.flatnonzero(frames < 0)[0])
            raise LabelStoreError(f"frames[{i}] must be >= 0, got {frames[i]}")
        conf = _check_confidence(boxes.score if confidence is None else confidence, n)
        rev = np.asarray(reviewed, dtype=bool)
        if rev.shape not in ((), (n,)):
            raise LabelStoreError(f"reviewed: expected a bool or ({n},), got shape {rev.shape}")
        rev = np.broadcast_to(rev, (n,))
        track = boxes.track_id.copy()
        if (track < -1).any():
            raise LabelStoreError(f"track_id must be >= 0 or -1 (new track), got {track[track < -1][0]}")
        new_track = track == -1
        empty_label = new_track & (boxes.label == "")
        if empty_label.any():
            raise LabelStoreError(f"row {int(np.flatnonzero(empty_label)[0])} starts a new track (track_id -1) "
                                  "but has no label")
        keyed = np.flatnonzero(~new_track)
        pairs = np.stack([frames[keyed], track[keyed]], axis=1)
        uniq, counts = np.unique(pairs, axis=0, return_counts=True)
        if (counts > 1).any():
            f, t = uniq[counts > 1][0]
            raise LabelStoreError(f"(frame {f}, track_id {t}) appears {counts[counts > 1][0]} times in one put_boxes")

        box_ids = np.full(n, -1, np.int64)
        skipped = np.zeros(n, bool)
        with self._transaction() as conn:
            if keyed.size:
                self._require_ids(conn, "tracks", "track_id", track[keyed])
                # One index probe of UNIQUE(frame, track_id) per requested pair.
                hits = np.array(conn.execute(
                    "SELECT j.key, b.box_id, b.source = 'human' FROM json_each(?) AS j CROSS JOIN boxes AS b "
                    "ON b.frame = json_extract(j.value, '$[0]') AND b.track_id = json_extract(j.value, '$[1]')",
                    (json.dumps(pairs.tolist()),)).fetchall(), dtype=np.int64).reshape(-1, 3)
                protected = (hits[:, 2] == 1) & (source != "human")
                skipped[keyed[hits[protected, 0]]] = True
                box_ids[keyed[hits[~protected, 0]]] = hits[~protected, 1]
            write = ~skipped
            fresh = write & (box_ids == -1)
            if not write.any():
                return PutResult(box_ids, track, skipped, -1)
            box_ids[fresh] = self._next_id(conn, "boxes") + np.arange(int(fresh.sum()))
            new_track_ids = self._next_id(conn, "tracks") + np.arange(int(new_track.sum()))
            track[new_track] = new_track_ids
            kept = f" ({int(skipped.sum())} human boxes kept)" if skipped.any() else ""
            text = description or f"put {int(write.sum())} {source} boxes{kept}"
            with self._edit(conn, text, box_ids[write], new_track_ids) as edit_id:
                if new_track_ids.size:
                    conn.executemany("INSERT INTO tracks (track_id, label, attributes) VALUES (?, ?, '{}')",
                                     zip(new_track_ids.tolist(), boxes.label[new_track].tolist()))
                values = [*boxes.center_m.T, *boxes.lwh_m.T, *boxes.quat_wxyz.T, np.full(n, source), conf,
                          rev.astype(np.int64)]
                insert = np.flatnonzero(fresh)
                conn.executemany(f"INSERT INTO boxes ({_BOX_COLS}) VALUES ({', '.join('?' * 16)})",
                                 zip(*(c[insert].tolist() for c in [box_ids, frames, track, *values])))
                # An updated row keeps its box_id, frame and track: only the value columns change (no index work).
                update = np.flatnonzero(write & ~fresh)
                conn.executemany("UPDATE boxes SET cx_m = ?, cy_m = ?, cz_m = ?, l_m = ?, w_m = ?, h_m = ?, qw = ?, "
                                 "qx = ?, qy = ?, qz = ?, source = ?, confidence = ?, reviewed = ? WHERE box_id = ?",
                                 zip(*(c[update].tolist() for c in [*values, box_ids])))
        logger.debug("%s: %s (edit %d)", self.path, text, edit_id)
        return PutResult(box_ids, track, skipped, edit_id)

    def update_box(self, box_id: int, *, center_m=None, lwh_m=None, quat_wxyz=None, track_id: int | None = None,
                   label: str | None = None, source: str = "human", reviewed: bool | None = None,
                   confidence: float | None = None, description: str = "") -> None:
        """Change one box; a human edit by default.

        Args:
            box_id: the box.
            center_m: (3,) new centre, ego frame; None keeps it. Likewise ``lwh_m`` (3,) and ``quat_wxyz`` (4,).
            track_id: move the box to this existing track (which must have no box in the box's frame).
            label: new class of the box's track (all its boxes take it).
            source: the box's new source; an automated source cannot change a human box.
            reviewed: new reviewed flag; None keeps it.
            confidence: new confidence in [0, 1]; None keeps it, except that a human edit sets 1.0.
            description: text for the edit log.

        Raises:
            LabelStoreError: unknown box or track, bad source/values, an automated edit of a human box, or a track
                that already has a box in that frame.
        """
        source = _check_source(source)
        box_id = int(box_id)
        with self._transaction() as conn:
            row = conn.execute(f"SELECT {_BOX_COLS} FROM boxes WHERE box_id = ?", (box_id,)).fetchone()
            if row is None:
                raise LabelStoreError(f"unknown box_id {box_id}")
            frame, old_track, old_source = row[1], row[2], row[13]
            if old_source == "human" and source != "human":
                raise LabelStoreError(f"box {box_id} is a human box; an automated edit (source {source!r}) "
                                      "cannot change it")
            try:
                new = Boxes(np.asarray(row[3:6] if center_m is None else center_m, np.float64).reshape(1, -1),
                            np.asarray(row[6:9] if lwh_m is None else lwh_m, np.float64).reshape(1, -1),
                            np.asarray(row[9:13] if quat_wxyz is None else quat_wxyz, np.float64).reshape(1, -1))
            except ValueError as exc:
                raise LabelStoreError(f"box {box_id}: {exc}") from None
            new_track = old_track if track_id is None else int(track_id)
            if new_track != old_track:
                self._require_ids(conn, "tracks", "track_id", [new_track])
                clash = conn.execute("SELECT box_id FROM boxes WHERE frame = ? AND track_id = ?",
                                     (frame, new_track)).fetchone()
                if clash is not None:
                    raise LabelStoreError(f"track {new_track} already has box {clash[0]} in frame {frame}")
            if confidence is None:
                conf = 1.0 if source == "human" else row[14]
            else:
                conf = float(_check_confidence([confidence], 1)[0])
            rev = row[15] if reviewed is None else int(bool(reviewed))
            label = None if label is None else _check_label(label)
            text = description or f"update box {box_id} ({source})"
            with self._edit(conn, text, [box_id], [] if label is None else [new_track]):
                conn.execute(
                    "UPDATE boxes SET track_id = ?, cx_m = ?, cy_m = ?, cz_m = ?, l_m = ?, w_m = ?, h_m = ?, "
                    "qw = ?, qx = ?, qy = ?, qz = ?, source = ?, confidence = ?, reviewed = ? WHERE box_id = ?",
                    (new_track, *new.center_m[0].tolist(), *new.lwh_m[0].tolist(), *new.quat_wxyz[0].tolist(),
                     source, conf, rev, box_id))
                if label is not None:
                    conn.execute("UPDATE tracks SET label = ? WHERE track_id = ?", (label, new_track))

    def delete_boxes(self, box_ids, description: str = "") -> None:
        """Delete boxes (a human edit: human boxes may be deleted). Their tracks stay, possibly empty.

        Raises:
            LabelStoreError: an unknown box id.
        """
        ids = np.unique(_int_array(box_ids, "box_ids"))
        if ids.size == 0:
            return
        with self._transaction() as conn:
            self._require_ids(conn, "boxes", "box_id", ids)
            with self._edit(conn, description or f"delete {ids.size} boxes", ids, []):
                conn.execute("DELETE FROM boxes WHERE box_id IN (SELECT value FROM json_each(?))", (_json_ids(ids),))

    def set_reviewed(self, box_ids, reviewed: bool = True, description: str = "") -> None:
        """Mark boxes as reviewed (or not).

        Raises:
            LabelStoreError: an unknown box id.
        """
        ids = np.unique(_int_array(box_ids, "box_ids"))
        if ids.size == 0:
            return
        flag = int(bool(reviewed))
        with self._transaction() as conn:
            self._require_ids(conn, "boxes", "box_id", ids)
            text = description or f"mark {ids.size} boxes {'reviewed' if flag else 'unreviewed'}"
            with self._edit(conn, text, ids, []):
                conn.execute("UPDATE boxes SET reviewed = ? WHERE box_id IN (SELECT value FROM json_each(?))",
                             (flag, _json_ids(ids)))

    # ----- queries ------------------------------------------------------------------------------------------------
    def query(self, frames=None, track_ids=None, sources=None) -> BoxRecords:
        """Boxes matching every given filter (None = no filter), sorted by (frame, track_id).

        Args:
            frames: an int or (K,) ints.
            track_ids: an int or (K,) ints.
            sources: a source or a sequence of sources.

        Raises:
            LabelStoreError: an unknown source or non-integer frames/track ids.
        """
        where, params = [], []
        if frames is not None:
            where.append("b.frame IN (SELECT value FROM json_each(?))")
            params.append(_json_ids(_int_array(frames, "frames")))
        if track_ids is not None:
            where.append("b.track_id IN (SELECT value FROM json_each(?))")
            params.append(_json_ids(_int_array(track_ids, "track_ids")))
        if sources is not None:
            wanted = [sources] if isinstance(sources, str) else list(sources)
            where.append("b.source IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([_check_source(s) for s in wanted]))
        sql = (f"SELECT {', '.join('b.' + c for c in _BOX_COLUMNS)}, t.label FROM boxes b "
               "JOIN tracks t ON t.track_id = b.track_id" + (" WHERE " + " AND ".join(where) if where else "") +
               " ORDER BY b.frame, b.track_id")
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        if not rows:
            return BoxRecords.empty()
        cols = list(zip(*rows))
        numbers = np.array(cols[3:13], dtype=np.float64).T
        confidence = np.array(cols[14], dtype=np.float64)
        boxes = Boxes(numbers[:, 0:3], numbers[:, 3:6], numbers[:, 6:10], np.array(cols[2], np.int64),
                      np.array(cols[16], dtype=str), confidence)
        return BoxRecords(np.array(cols[1], np.int64), boxes, np.array(cols[13], dtype=str), confidence,
                          np.array(cols[15], dtype=bool), np.array(cols[0], np.int64))

    def boxes_at(self, frame: int) -> BoxRecords:
        """All boxes of one frame, by track."""
        return self.query(frames=[frame])

    def frames_with_boxes(self, track_id: int) -> np.ndarray:
        """(K,) int64 sorted frames where ``track_id`` has a box.

        Raises:
            LabelStoreError: unknown track.
        """
        with self._reading() as conn:
            self._require_ids(conn, "tracks", "track_id", [int(track_id)])
            rows = conn.execute("SELECT frame FROM boxes WHERE track_id = ? ORDER BY frame", (int(track_id),))
            return np.array([r[0] for r in rows], dtype=np.int64)

    def count_boxes(self) -> int:
        """Number of stored boxes."""
        with self._reading() as conn:
            return int(conn.execute("SELECT count(*) FROM boxes").fetchone()[0])
