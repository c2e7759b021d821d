"""Undo and redo of project edits, independent of how an edit was made, kept in the store.

Every edit is recorded as row snapshots: for each changed row of the project
store, its values before and after (``None`` when the row did not exist).
Undo writes the ``before`` values back, redo the ``after`` values. Because an
entry is data, not code, a click, a brush stroke, an import or a relabel are
all undone the same way. A row that was edited (not added or deleted) keeps
only the columns the edit changed, so undo leaves the others (an image's size
or hash, read later) as they are.

Both stacks live in the project store's ``history`` table
(:data:`samdesk.storage.HISTORY_TABLE`), written in the same transaction as
the edit, the undo or the redo they record: undo and redo survive closing the
project and a crash (``kill -9``), and a failed commit leaves the history as
it was. The history is bounded: it keeps the newest :data:`MAX_EDITS` (500)
edits, dropping the oldest first once there are more or once the kept edits
take more than :data:`MAX_BYTES` (64 MiB) of JSON; the newest edit is always
kept, whatever its size.

A *chain* is a run of edits committed one by one that a person undoes as one:
the frames a propagation run writes. Its rows share a ``grp`` number in the
``history`` table; undo and redo move a whole chain, and it counts as one edit
against :data:`MAX_EDITS`.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_EDITS = 500
"""The most undo steps kept per project."""
MAX_BYTES = 64 * 1024 * 1024
"""The most bytes of stored undo steps (their JSON) kept per project."""

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
    chain: bool = False
    """Join the edit before when it is a chained one of the same description."""

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
"""Writes one row to the store: ``(table, row_id, values or None to delete)``.

``values`` holds every column for a row that does not exist, only the columns
to change for one that does."""


def _to_json(value: object) -> object:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot keep a {type(value).__name__} in the undo history")


def _from_json(obj: dict[str, Any]) -> object:
    if len(obj) == 1 and "$bytes" in obj:
        return base64.b64decode(obj["$bytes"])
    return obj


def encode_changes(changes: list[RowChange]) -> str:
    """``changes`` as JSON text; an edited row keeps only the columns that changed."""
    items = []
    for change in changes:
        before, after = change.before, change.after
        if before is not None and after is not None:
            keys = [k for k in after if k not in before or before[k] != after[k]]
            before = {k: before.get(k) for k in keys}
            after = {k: after[k] for k in keys}
        items.append([change.table, change.row_id, before, after])
    return json.dumps(items, default=_to_json, separators=(",", ":"))


def decode_changes(text: str) -> list[RowChange]:
    """The changes :func:`encode_changes` wrote."""
    items = json.loads(text, object_hook=_from_json)
    return [RowChange(table, int(row_id), before, after) for table, row_id, before, after in items]


class History:
    """The undo and redo stacks of one project, kept in its store's ``history`` table.

    ``connection`` returns the project's connection; :meth:`push`,
    :meth:`undo` and :meth:`redo` run inside the caller's write transaction.
    ``limit`` and ``max_bytes`` bound the undo stack (see the module docstring);
    the redo stack only ever holds edits taken from it.
    """

    def __init__(self, connection: Callable[[], sqlite3.Connection],
                 mutex: threading.RLock | None = None, limit: int = MAX_EDITS,
                 max_bytes: int = MAX_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self._connection = connection
        self._mutex = mutex or threading.RLock()

    def push(self, entry: HistoryEntry) -> None:
        """Record a new edit; it clears the redo stack and drops edits past the bound."""
        changes = entry.merged_changes()
        if not changes:
            return
        text = encode_changes(changes)
        with self._mutex:
            conn = self._in_transaction()
            conn.execute("DELETE FROM history WHERE stack='redo'")
            group = self._chain_group(conn, entry) if entry.chain else None
            conn.execute("INSERT INTO history (seq, stack, bytes, description, changes, grp) "
                         "VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM history), "
                         "'undo', ?, ?, ?, ?)", (len(text), entry.description, text, group))
            self._trim(conn)

    @staticmethod
    def _chain_group(conn: sqlite3.Connection, entry: HistoryEntry) -> int:
        """The ``grp`` of the top undo edit when it is a chain ``entry`` joins, else a new one."""
        top = conn.execute("SELECT grp, description FROM history WHERE stack='undo' "
                           "ORDER BY seq DESC LIMIT 1").fetchone()
        if top is not None and top[0] is not None and top[1] == entry.description:
            return int(top[0])
        return int(conn.execute("SELECT COALESCE(MAX(grp), 0) + 1 FROM history").fetchone()[0])

    def _trim(self, conn: sqlite3.Connection) -> None:
        count, total = conn.execute("SELECT COUNT(DISTINCT COALESCE(grp, -seq)), TOTAL(bytes) "
                                    "FROM history WHERE stack='undo'").fetchone()
        if count <= self.limit and total <= self.max_bytes:
            return
        kept, size, cut, last = 0, 0, None, object()
        for seq, nbytes, group in conn.execute("SELECT seq, bytes, grp FROM history "
                                               "WHERE stack='undo' ORDER BY seq DESC"):
            if group is not None and group == last:  # the rest of a kept chain stays
                size += nbytes
                continue
            if kept and (kept >= self.limit or size + nbytes > self.max_bytes):
                cut = seq
                break
            kept, size, last = kept + 1, size + nbytes, group
        if cut is not None:
            conn.execute("DELETE FROM history WHERE stack='undo' AND seq<=?", (cut,))

    def _in_transaction(self) -> sqlite3.Connection:
        conn = self._connection()
        assert conn.in_transaction, "history is written inside the edit's transaction"
        return conn

    def _top(self, stack: str, columns: str = "seq, description, changes") -> Any:
        """The ``columns`` of the newest entry on ``stack``, or None."""
        with self._mutex:
            try:
                return self._connection().execute(
                    f"SELECT {columns} FROM history WHERE stack=? ORDER BY seq DESC LIMIT 1",
                    (stack,)).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):  # an older store, opened read-only
                    return None
                raise

    def _description(self, stack: str) -> str | None:
        found = self._top(stack, "description")
        return None if found is None else str(found[0])

    @property
    def can_undo(self) -> bool:
        return self._description("undo") is not None

    @property
    def can_redo(self) -> bool:
        return self._description("redo") is not None

    @property
    def undo_text(self) -> str | None:
        return self._description("undo")

    @property
    def redo_text(self) -> str | None:
        return self._description("redo")

    def undo(self, apply: ApplyRow) -> HistoryEntry | None:
        """Write back the ``before`` rows of the last edit, newest change first."""
        return self._step("undo", "redo", apply)

    def redo(self, apply: ApplyRow) -> HistoryEntry | None:
        """Write again the ``after`` rows of the last undone edit, oldest first."""
        return self._step("redo", "undo", apply)

    def _step(self, source: str, target: str, apply: ApplyRow) -> HistoryEntry | None:
        """Apply the top entry (or chain) of ``source`` and move it on top of ``target``."""
        with self._mutex:
            found = self._top(source, "seq, description, changes, grp")
            if found is None:
                return None
            conn = self._in_transaction()
            seq, description, text, group = found
            steps = [(seq, text)]
            if group is not None:  # the whole chain, oldest first
                steps = [tuple(r) for r in conn.execute(
                    "SELECT seq, changes FROM history WHERE stack=? AND grp=? ORDER BY seq",
                    (source, group))]
            entry = HistoryEntry(description, [c for _, t in steps for c in decode_changes(t)])
            if source == "undo":
                for change in reversed(entry.changes):
                    apply(change.table, change.row_id, change.before)
            else:
                for change in entry.changes:
                    apply(change.table, change.row_id, change.after)
            for step_seq, _ in steps:  # oldest first: the chain keeps its order on top
                conn.execute("UPDATE history SET stack=?, seq=(SELECT MAX(seq) + 1 FROM "
                             "history) WHERE seq=?", (target, step_seq))
            return entry

    def clear(self) -> None:
        """Forget every undo and redo step (one statement, so all or nothing)."""
        with self._mutex:
            self._connection().execute("DELETE FROM history")
