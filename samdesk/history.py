"""Undo and redo of project edits, independent of how an edit was made.

Every edit is recorded as row snapshots: for each changed row of the project
store, its values before and after (``None`` when the row did not exist).
Undo writes the ``before`` values back, redo the ``after`` values. Because an
entry is data, not code, a click, a brush stroke, an import or a relabel are
all undone the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class RowChange:
    """One row of ``table`` with key ``row_id`` going from ``before`` to ``after``."""

    table: str
    row_id: int
    before: Row | None
    after: Row | None


@dataclass
class HistoryEntry:
    """One undo step: what a person did, as the rows it changed, in order."""

    description: str
    changes: list[RowChange] = field(default_factory=list)

    def merged_changes(self) -> list[RowChange]:
        """Changes with several edits of one row folded into one (first before, last after)."""
        order: list[tuple[str, int]] = []
        folded: dict[tuple[str, int], RowChange] = {}
        for change in self.changes:
            key = (change.table, change.row_id)
            if key in folded:
                first = folded[key]
                folded[key] = RowChange(change.table, change.row_id, first.before, change.after)
            else:
                order.append(key)
                folded[key] = change
        return [folded[k] for k in order if folded[k].before != folded[k].after]


ApplyRow = Callable[[str, int, Row | None], None]
"""Writes one row to the store: ``(table, row_id, values or None to delete)``."""


class History:
    """A bounded undo stack and a redo stack of :class:`HistoryEntry`."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self._undo: list[HistoryEntry] = []
        self._redo: list[HistoryEntry] = []

    def push(self, entry: HistoryEntry) -> None:
        """Record a new edit; it clears the redo stack."""
        changes = entry.merged_changes()
        if not changes:
            return
        self._undo.append(HistoryEntry(entry.description, changes))
        del self._undo[: max(0, len(self._undo) - self.limit)]
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str | None:
        return self._undo[-1].description if self._undo else None

    @property
    def redo_text(self) -> str | None:
        return self._redo[-1].description if self._redo else None

    def undo(self, apply: ApplyRow) -> HistoryEntry | None:
        """Write back the ``before`` rows of the last edit, newest change first."""
        if not self._undo:
            return None
        entry = self._undo.pop()
        for change in reversed(entry.changes):
            apply(change.table, change.row_id, change.before)
        self._redo.append(entry)
        return entry

    def redo(self, apply: ApplyRow) -> HistoryEntry | None:
        """Write again the ``after`` rows of the last undone edit, oldest first."""
        if not self._redo:
            return None
        entry = self._redo.pop()
        for change in entry.changes:
            apply(change.table, change.row_id, change.after)
        self._undo.append(entry)
        return entry

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
