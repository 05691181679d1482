"""Command-pattern undo stack on top of the label store's own undo/redo.

Every viewer operation is a :class:`Command`: a description and an ``apply(store)`` that performs one or more label
store writes. Each write is already one committed SQLite transaction with an edit-log entry (there is no save step),
so the stack does not keep before/after copies itself. It records which store edits a command produced and undoes
or redoes exactly those through :meth:`LabelStore.undo` / :meth:`LabelStore.redo`, so one Ctrl+Z reverts one whole
operation (a propagation run writes several edits; a merge writes one).

The store's history is linear and shared by every writer of the file. Before undoing, the stack checks that the
newest live edits of the store are the command's own; if another writer has committed since, the undo is refused
with :class:`HistoryConflictError` rather than reverting someone else's work. Redo is checked the same way.

Pure Python: no Qt. The stack is thread-safe (propagation runs its command on a worker thread), and refuses a new
command while another one is running (:class:`StackBusyError`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sensorlabel.errors import LabelStoreError

logger = logging.getLogger(__name__)


class HistoryConflictError(LabelStoreError):
    """The label store's newest edits are not the ones this undo/redo expects (another writer committed)."""


class StackBusyError(LabelStoreError):
    """A command is still running (for example a propagation on its worker thread)."""


@dataclass
class Command:
    """One undoable viewer operation.

    Attributes:
        description: shown in the Edit menu ("Undo move box 12") and written to the store's edit log.
        apply: performs the store writes; returns any value the caller wants back (e.g. the new box id).
        edit_ids: the store edits the command produced, oldest first (filled in by :class:`UndoStack`).
        result: what ``apply`` returned.
    """

    description: str
    apply: Callable[[object], object]
    edit_ids: list[int] = field(default_factory=list)
    result: object = None


def _newest_edit_id(store) -> int:
    history = store.history(limit=1)
    return history[0].edit_id if history else 0


class UndoStack:
    """Undo/redo of whole commands over a :class:`~sensorlabel.drive.LabelStore`.

    Args:
        store: the drive's label store.
    """

    def __init__(self, store):
        self.store = store
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every change of the labels through this stack."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        """Description of the command an undo would revert ('' when none)."""
        return self._undo[-1].description if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].description if self._redo else ""

    def execute(self, command: Command) -> object:
        """Run a command now (its writes are committed when this returns) and push it on the undo stack.

        A command that writes nothing (e.g. a propagation that was cancelled) is not pushed.

        Returns:
            ``command.result``.

        Raises:
            StackBusyError: another command is running.
            Whatever ``command.apply`` raises (a refused edit writes nothing, and nothing is pushed).
        """
        if not self._lock.acquire(blocking=False):
            raise StackBusyError(f"{self.store.path}: busy with another operation; try again when it has finished")
        try:
            before = _newest_edit_id(self.store)
            try:
                command.result = command.apply(self.store)
            finally:
                # Record whatever was committed, even when apply failed half-way through several writes.
                fresh = [e for e in self.store.history(limit=1000) if e.edit_id > before and not e.undone]
                command.edit_ids = sorted(e.edit_id for e in fresh)
                if command.edit_ids:
                    self._undo.append(command)
                    self._redo.clear()
                    logger.info("%s (store edits %s)", command.description, command.edit_ids)
        finally:
            self._lock.release()
        self._notify()
        return command.result

    def undo(self) -> bool:
        """Revert the newest command. Returns False when there is nothing to undo.

        Raises:
            HistoryConflictError: the store's newest live edits are not this command's (another writer).
            StackBusyError: a command is running.
        """
        with self._guard():
            if not self._undo:
                return False
            command = self._undo[-1]
            n = len(command.edit_ids)
            live = [e.edit_id for e in self.store.history(limit=n + self._undone_count() + 1) if not e.undone][:n]
            if sorted(live) != command.edit_ids:
                raise HistoryConflictError(f"{self.store.path}: cannot undo {command.description!r}: the label store "
                                           f"has newer edits {live} than this command's {command.edit_ids}")
            for _ in range(n):
                self.store.undo()
            self._redo.append(self._undo.pop())
        self._notify()
        return True

    def redo(self) -> bool:
        """Re-apply the command undone last. Returns False when there is nothing to redo.

        Raises:
            HistoryConflictError: the store's oldest undone edits are not this command's.
            StackBusyError: a command is running.
        """
        with self._guard():
            if not self._redo:
                return False
            command = self._redo[-1]
            n = len(command.edit_ids)
            undone = [e.edit_id for e in self.store.history(limit=self._undone_count() + 1) if e.undone]
            if sorted(undone)[:n] != command.edit_ids:
                raise HistoryConflictError(f"{self.store.path}: cannot redo {command.description!r}: the label store's "
                                           f"undone edits {sorted(undone)[:n]} are not this command's "
                                           f"{command.edit_ids}")
            for _ in range(n):
                self.store.redo()
            self._undo.append(self._redo.pop())
        self._notify()
        return True

    def _undone_count(self) -> int:
        return sum(len(c.edit_ids) for c in self._redo)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise StackBusyError(f"{self.store.path}: busy with another operation; try again when it has finished")
        try:
            yield
        finally:
            self._lock.release()
