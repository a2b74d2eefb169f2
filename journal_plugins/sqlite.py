"""SQLite journal and snapshot store: durable by default (WAL, synchronous=FULL).

Settings (both classes):

* ``path`` (required): the database file. A missing folder is created (with its parents);
  it must be writable. Journal and snapshot store may share one file or use two.
* ``synchronous``: ``"FULL"`` (default: a commit survives power loss), ``"NORMAL"``, ``"OFF"``
  or ``"EXTRA"``.
* ``journal_mode``: ``"WAL"`` (default), ``"DELETE"``, ``"TRUNCATE"`` or ``"PERSIST"``.
* ``busy_timeout``: milliseconds to wait for another connection's lock (default 5000).
* ``replay_page_size`` (journal only): events fetched per query during replay (default 500).

`start` never overwrites a file it does not recognise: a file that is not an SQLite database,
is visibly truncated, or holds a foreign ``journal``/``snapshot`` table makes it raise
`PluginError` naming the file.

Schema: ``journal`` holds one row per event, keyed by a global insertion ``ordering`` for the
read side, with ``UNIQUE(persistence_id, sequence_nr)``; ``journal_tags`` holds its tags, indexed
by tag; ``journal_metadata`` records the highest sequence number of each id when events are
deleted, so a sequence number is never reused, exactly as in the in-memory journal. Deleting
events removes their rows, except the id's first row, which stays as an empty tombstone
(``deleted = 1``) so the id keeps its place in the read side's order of persistence ids, and the
row holding the largest ``ordering`` of the table, which keeps that ordering from being given
again (new files have no ``AUTOINCREMENT``; files created with it keep it). New files
are created with ``auto_vacuum = INCREMENTAL`` and every delete returns the freed pages to the
file system (``PRAGMA incremental_vacuum``); a file created before keeps its size and reuses the
freed pages for new events (``VACUUM`` shrinks it offline).
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from journal_plugins._sqlite_db import (
    _COMMON_KEYS,
    _JOURNAL_COLUMNS,
    _JOURNAL_KEYS,
    _JOURNAL_SCHEMA,
    _SNAPSHOT_COLUMNS,
    _SNAPSHOT_SCHEMA,
    WriterLock,
    _connect,
    _Connection,
    _parse_options,
    _rollback,
    _start,
    commit_signal_key,
)
from journal_plugins.sqlite_query import SqliteEventLog
from persistent_actors.errors import (
    JournalError,
    PluginError,
    SequenceConflictError,
    SnapshotStoreError,
)
from persistent_actors.event_log import EventLog, change_signal
from persistent_actors.journal import (
    MAX_SEQUENCE_NR,
    AtomicWrite,
    Journal,
    PersistentRepr,
    ReplayedRows,
)
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

__all__ = ["SqliteJournal", "SqliteSnapshotStore"]

_Page = TypeVar("_Page", list[PersistentRepr], ReplayedRows)
_T = TypeVar("_T")

_INSERT_EVENT: Final = """INSERT INTO journal
    (persistence_id, sequence_nr, manifest, payload, writer_uuid, timestamp)
    VALUES (?, ?, ?, ?, ?, ?)"""
# Looks the event's ordering up by its key, so tags of a whole batch go in one executemany.
_INSERT_TAG: Final = """INSERT INTO journal_tags (ordering, position, tag)
    SELECT ordering, ?, ? FROM journal WHERE persistence_id = ? AND sequence_nr = ?"""
_LAST_LIVE: Final = """SELECT max(sequence_nr) FROM journal
    WHERE persistence_id = ? AND sequence_nr <= ? AND deleted = 0"""
_HIGHEST: Final = """SELECT max(
        coalesce((SELECT max(sequence_nr) FROM journal WHERE persistence_id = ?), 0),
        coalesce((SELECT max_sequence_nr FROM journal_metadata WHERE persistence_id = ?), 0))"""
# `WHERE` before `ON CONFLICT` is required by SQLite's grammar for an upsert from a SELECT.
_REMEMBER_HIGHEST: Final = """INSERT INTO journal_metadata (persistence_id, max_sequence_nr)
    SELECT persistence_id, max(sequence_nr) FROM journal WHERE persistence_id = ?
    GROUP BY persistence_id
    ON CONFLICT (persistence_id)
    DO UPDATE SET max_sequence_nr = max(max_sequence_nr, excluded.max_sequence_nr)"""
_DELETE_TAGS: Final = """DELETE FROM journal_tags WHERE ordering IN (
    SELECT ordering FROM journal
    WHERE persistence_id = ? AND sequence_nr <= ? AND deleted = 0)"""
_TOMBSTONE: Final = """UPDATE journal SET deleted = 1, manifest = '', payload = x''
    WHERE persistence_id = ? AND sequence_nr <= ? AND deleted = 0"""
# Every deleted row but the id's first goes: journal_metadata already holds the highest number.
# The row holding the table's largest ordering stays too (a tombstone), so the next write's
# ordering (max + 1, `_sqlite_db._JOURNAL_SCHEMA`) is above every ordering ever given; a later
# delete purges it once newer rows are above it.
_PURGE: Final = """DELETE FROM journal
    WHERE persistence_id = ? AND sequence_nr <= ? AND deleted = 1
    AND ordering > (SELECT min(ordering) FROM journal WHERE persistence_id = ?)
    AND ordering < (SELECT max(ordering) FROM journal)"""
# Replay reads a page of events without their tags, then asks whether any tag row lies in the
# page's range of orderings (one seek in journal_tags' primary key). Only then are the page's
# tags read: the join that reads tags with the events costs about as much as the events
# themselves, and most histories have no tags. Tags are committed with their event, so a tag
# of an event the page saw is visible to the later statements.
_REPLAY_PAGE: Final = """SELECT ordering, sequence_nr, manifest, payload, writer_uuid, timestamp
    FROM journal
    WHERE persistence_id = ? AND sequence_nr >= ? AND sequence_nr <= ? AND deleted = 0
    ORDER BY sequence_nr LIMIT ?"""
# Recovery's page (`replay_rows`): only the columns it needs.
# A manifest or writer equal to the previous page's last (?5, ?6) comes back as NULL: Python
# then builds no str per row for the common run of one manifest and one writer.
_ROWS_PAGE: Final = """SELECT sequence_nr,
        CASE WHEN manifest = ?5 THEN NULL ELSE manifest END,
        payload,
        CASE WHEN writer_uuid = ?6 THEN NULL ELSE writer_uuid END
    FROM journal
    WHERE persistence_id = ?1 AND sequence_nr >= ?2 AND sequence_nr <= ?3 AND deleted = 0
    ORDER BY sequence_nr LIMIT ?4"""
# Recovery's later pages (`_RowsReader`), once a page gave the manifest and writer to expect:
# the payload and one column that is NULL for a row of that manifest and writer, the manifest
# for a row of that writer but another manifest, and else (another writer, or the row at or
# past ?7, the page's last if its sequence numbers run without a gap) the row's sequence
# number, manifest and writer as a JSON array (a blob, to tell it from a manifest). Every
# column costs sqlite3 about 0.5-0.7 ms per 10,000 rows even when NULL, and the sequence
# numbers of a page without gaps follow from its first and last.
_SHORT_PAGE: Final = """SELECT payload,
        CASE WHEN sequence_nr < ?7 AND manifest = ?5 AND writer_uuid = ?6 THEN NULL
            WHEN sequence_nr < ?7 AND writer_uuid = ?6 THEN manifest
            ELSE CAST(json_array(sequence_nr, manifest, writer_uuid) AS BLOB) END
    FROM journal
    WHERE persistence_id = ?1 AND sequence_nr >= ?2 AND sequence_nr <= ?3 AND deleted = 0
    ORDER BY sequence_nr LIMIT ?4"""
_ANY_TAG_BETWEEN: Final = """SELECT EXISTS (
    SELECT 1 FROM journal_tags WHERE ordering >= ? AND ordering <= ?)"""
_TAGS_OF_RANGE: Final = """SELECT t.ordering, t.tag
    FROM journal AS j JOIN journal_tags AS t ON t.ordering = j.ordering
    WHERE j.persistence_id = ? AND j.sequence_nr >= ? AND j.sequence_nr <= ?
    ORDER BY t.ordering, t.position"""
_DELETED_UP_TO: Final = """SELECT persistence_id, max_sequence_nr FROM journal_metadata
    WHERE persistence_id IN ({marks})"""
# The one-id case of `_DELETED_UP_TO`, without formatting a statement per write.
_DELETED_UP_TO_ONE: Final = """SELECT persistence_id, max_sequence_nr FROM journal_metadata
    WHERE persistence_id = ?"""
_ORPHAN_TAGS: Final = """SELECT count(*) FROM journal_tags AS t
    WHERE NOT EXISTS (SELECT 1 FROM journal AS j WHERE j.ordering = t.ordering AND j.deleted = 0)"""

_SAVE_SNAPSHOT: Final = """INSERT INTO snapshot
    (persistence_id, sequence_nr, timestamp, manifest, payload) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (persistence_id, sequence_nr) DO UPDATE SET
    timestamp = excluded.timestamp, manifest = excluded.manifest, payload = excluded.payload"""
_LOAD_SNAPSHOT: Final = """SELECT sequence_nr, timestamp, manifest, payload FROM snapshot
    WHERE persistence_id = ? AND sequence_nr >= ? AND sequence_nr <= ?
    AND timestamp >= ? AND timestamp <= ?
    ORDER BY sequence_nr DESC, timestamp DESC LIMIT 1"""
_DELETE_SNAPSHOTS: Final = """DELETE FROM snapshot
    WHERE persistence_id = ? AND sequence_nr >= ? AND sequence_nr <= ?
    AND timestamp >= ? AND timestamp <= ?"""
_DELETE_SNAPSHOT: Final = """DELETE FROM snapshot
    WHERE persistence_id = ? AND sequence_nr = ? AND (? = 0.0 OR timestamp <= ?)"""


class SqliteJournal(Journal):
    """Plugin API: a journal in an SQLite file; see the module docstring for settings.

    `write_messages` stores its whole list in one transaction (group commit). A write reusing a
    stored sequence number is rejected with `SequenceConflictError` while the others commit
    (a batch that hits a conflict is redone with one savepoint per `AtomicWrite`). A database
    failure raises `JournalError` and commits nothing.
    Replay reads pages on a second, read-only connection, so it never blocks writers in WAL
    mode and holds at most `replay_page_size` events in memory.
    """

    inline_first_step = True  # see Journal.inline_first_step: no task needed

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._options = _parse_options(type(self).__name__, self.settings, _JOURNAL_KEYS)
        # Each operation is one function on the connection's own thread, and that thread
        # takes them in call order: transactions never interleave, and a read of the highest
        # sequence number queued after a write sees it.
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        # The live queries' change-signal key, taken once the file exists (it is a real path).
        self._signal_key = ""
        # Taken around every write transaction (see `WriterLock`); set at start.
        self._lock: WriterLock | None = None

    def concurrent_writers(self) -> bool:
        """Plugin API: True: many processes may write one file (SQLite's lock serialises them).

        Each waits for the others' transactions up to ``busy_timeout``. Not for an in-memory
        database (``path = ":memory:"``), which is private to its connection.
        """
        return str(self._options.path) != ":memory:"

    async def start(self) -> None:
        """Plugin API: open the file (creating it and the schema if needed).

        Raises:
            PluginError: the folder is missing or read-only, the file is not an SQLite
                database or is corrupted, or it holds foreign tables of the same names.

        """
        owner = type(self).__name__
        writer = await _start(owner, self._options, _JOURNAL_SCHEMA, _JOURNAL_COLUMNS)
        reader = _Connection(f"sqlite-{owner}-reader")
        try:
            await reader.open(functools.partial(
                _connect, owner, self._options, set_journal_mode=False, reader=True))
        except BaseException as e:
            await reader.close()
            await writer.close()
            if isinstance(e, sqlite3.Error):
                msg = f"{owner}: cannot open SQLite database {str(self._options.path)!r}: {e}"
                raise PluginError(msg) from e
            raise
        self._signal_key = commit_signal_key(self._options.path)
        self._lock = WriterLock(self._options.path)
        self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Plugin API: close both connections; idempotent."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for db in (writer, reader):
            if db is not None:
                await db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _locked(self, db: sqlite3.Connection, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(db, *args)`` under the writers' lock (on the connection's thread)."""
        lock = self._lock
        return fn(db, *args) if lock is None else lock(db, fn, *args)

    def _connections(self) -> tuple[_Connection, _Connection]:
        if self._writer is None or self._reader is None:
            msg = f"{type(self).__name__} is not started (or already closed)"
            raise JournalError(msg)
        return self._writer, self._reader

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: store `writes` in one transaction; reject only conflicting AtomicWrites.

        Raises:
            JournalError: the database failed; nothing of this call was committed.

        """
        if not writes:
            return []
        writer, _ = self._connections()
        try:
            results: list[BaseException | None] = await writer.run(
                self._locked, _write_transaction, writes)
        except (sqlite3.Error, ValueError) as e:  # ValueError: connection closed
            msg = f"{type(self).__name__}: writing {len(writes)} atomic writes failed: {e}"
            raise JournalError(msg) from e
        change_signal.notify(self._signal_key)  # wakes live queries of this process at once
        return results

    @classmethod
    def open_event_log(cls, settings: Mapping[str, Any] | None = None) -> EventLog:
        """The read side of a journal with these settings: reads the file directly.

        See `journal_plugins.sqlite_query.SqliteEventLog`; used by ``system.read_journal()``
        and ``persistent_actors.query.open_read_journal``.
        """
        return SqliteEventLog(settings)

    async def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        """Plugin API: yield live events with `from <= sequence_nr <= to`, at most `max_count`.

        Pages of `replay_page_size` events are read by sequence number, so writes committed
        between pages never cause an event to be skipped or repeated. `from_sequence_nr = -1`
        yields only the last live event up to `to`.

        Raises:
            JournalError: the database failed.

        """
        async for page in self._pages(_replay_page, persistence_id, from_sequence_nr,
                                      to_sequence_nr, max_count):
            for event in page:
                yield event

    async def replay_rows(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[ReplayedRows]:
        """Plugin API: recovery's replay, one `ReplayedRows` per `replay_page_size` events.

        The first page's select reads the four columns recovery needs, each later page's
        only the payload and what differs from the page before (`_RowsReader`): a run of one
        manifest and one writer costs one str each per page, and no object is built per
        event.

        Raises:
            JournalError: the database failed.

        """
        async for page in self._pages(_RowsReader(), persistence_id, from_sequence_nr,
                                      to_sequence_nr, max_count):
            yield page

    async def _pages(
        self, read: Callable[[sqlite3.Connection, str, int, int, int], tuple[_Page, int]],
        persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int,
    ) -> AsyncIterator[_Page]:
        """The non-empty pages `read` returns, each read on the connection by sequence number."""
        _, reader = self._connections()
        # Clamped so every bound fits SQLite's signed 64-bit INTEGER.
        to_nr = min(to_sequence_nr, MAX_SEQUENCE_NR)
        next_nr = max(from_sequence_nr, -MAX_SEQUENCE_NR)
        remaining = max_count
        if from_sequence_nr == -1 and max_count > 0:  # only the last live event (JVM)
            try:
                rows = await reader.execute_fetchall(_LAST_LIVE, (persistence_id, to_nr))
            except (sqlite3.Error, ValueError) as e:
                msg = f"{type(self).__name__}: replay of {persistence_id!r} failed: {e}"
                raise JournalError(msg) from e
            if rows[0][0] is None:
                return
            next_nr, remaining = int(rows[0][0]), 1
        while remaining > 0 and next_nr <= to_nr:
            limit = min(self._options.replay_page_size, remaining)
            try:
                # A page is read, and its objects built, on the connection's thread.
                page, last_nr = await reader.run(read, persistence_id, next_nr, to_nr, limit)
            except (sqlite3.Error, ValueError) as e:
                msg = f"{type(self).__name__}: replay of {persistence_id!r} failed: {e}"
                raise JournalError(msg) from e
            if len(page):
                yield page
            if len(page) < limit:
                return
            remaining -= len(page)
            next_nr = last_nr + 1

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Plugin API: the highest sequence number ever stored, deleted or not (0 if none).

        Waits for an in-flight write to finish, so the answer includes it.
        """
        writer, _ = self._connections()
        try:
            rows = await writer.execute_fetchall(_HIGHEST, (persistence_id,) * 2)
        except (sqlite3.Error, ValueError) as e:
            msg = f"{type(self).__name__}: reading highest of {persistence_id!r} failed: {e}"
            raise JournalError(msg) from e
        return int(rows[0][0])

    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Plugin API: erase events with `sequence_nr <= to_sequence_nr` (inclusive).

        Payloads and tags are erased; a tombstone row keeps each sequence number taken, and
        `journal_metadata` records the highest in the same transaction.

        Raises:
            JournalError: the database failed; nothing was deleted.

        """
        writer, _ = self._connections()
        to_nr = min(to_sequence_nr, MAX_SEQUENCE_NR)
        try:
            await writer.run(self._locked, _delete_transaction, persistence_id, to_nr)
        except (sqlite3.Error, ValueError) as e:
            msg = f"{type(self).__name__}: deleting events of {persistence_id!r} failed: {e}"
            raise JournalError(msg) from e


    async def integrity_check(self) -> list[str]:
        """Plugin API: what ``PRAGMA integrity_check`` reports, and tags of no stored event."""
        _, reader = self._connections()
        try:
            return await reader.run(_integrity_check)
        except (sqlite3.Error, ValueError) as e:
            return [f"integrity check failed: {e}"]


# -- the journal's transactions: each runs whole on the connection's thread ------------------
def _write_transaction(
    db: sqlite3.Connection, writes: Sequence[AtomicWrite]
) -> list[BaseException | None]:
    """Insert every write in one transaction; reject only the AtomicWrites that conflict.

    The usual, conflict-free batch goes in as a single executemany, with no savepoint (two
    statements more per one-event write). A batch that hits a constraint is rolled back
    whole and redone in a new transaction with one savepoint per AtomicWrite, to find out
    which writes to reject.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        used = _deleted_up_to(db, writes)
        # `used` is empty unless an id of the batch had events deleted: the usual case.
        if not used or not any(
            w.lowest_sequence_nr <= used.get(w.persistence_id, 0) for w in writes
        ):
            try:
                _insert(db, writes)
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                used = _deleted_up_to(db, writes)
            else:
                db.execute("COMMIT")
                return [None] * len(writes)
        results = [_write_atomic(db, write, used) for write in writes]
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
    return results


def _deleted_up_to(db: sqlite3.Connection, writes: Sequence[AtomicWrite]) -> dict[str, int]:
    """The highest number recorded at a delete, per id of `writes` that has one.

    Deleted rows are gone, so UNIQUE no longer sees their numbers: this keeps them used. One
    query per batch, cheaper than a trigger or a guarded ``INSERT ... SELECT``, which run once
    per event.
    """
    if len(writes) == 1:  # one persist: no set, no formatted statement
        return dict(db.execute(_DELETED_UP_TO_ONE, (writes[0].persistence_id,)).fetchall())
    pids = sorted({w.payload[0].persistence_id for w in writes})  # no property call each
    used: dict[str, int] = {}
    for start in range(0, len(pids), 500):  # below SQLite's limit on bound parameters
        chunk = pids[start:start + 500]
        # Only '?' marks are formatted in; the statement is cached per chunk length.
        sql = _DELETED_UP_TO.format(marks=",".join("?" * len(chunk)))
        used.update(db.execute(sql, chunk).fetchall())
    return used


def _write_atomic(db: sqlite3.Connection, write: AtomicWrite,
                  used: Mapping[str, int]) -> BaseException | None:
    """Insert one AtomicWrite under a savepoint; return its rejection, if any."""
    if write.lowest_sequence_nr <= used.get(write.persistence_id, 0):
        return SequenceConflictError(
            f"persistence id {write.persistence_id!r} already used sequence numbers up to "
            f"{used[write.persistence_id]} (deleted since); got {write.lowest_sequence_nr}..."
            f"{write.highest_sequence_nr}")
    db.execute("SAVEPOINT atomic_write")
    try:
        _insert(db, (write,))
    except sqlite3.IntegrityError as e:
        db.execute("ROLLBACK TO atomic_write")
        db.execute("RELEASE atomic_write")
        if e.sqlite_errorcode in (
            sqlite3.SQLITE_CONSTRAINT_UNIQUE,
            sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY,
        ):
            conflict = SequenceConflictError(
                f"persistence id {write.persistence_id!r} already has sequence numbers in "
                f"{write.lowest_sequence_nr}..{write.highest_sequence_nr}"
            )
            conflict.__cause__ = e
            return conflict
        rejected = JournalError(f"write of {write.persistence_id!r} rejected: {e}")
        rejected.__cause__ = e
        return rejected
    db.execute("RELEASE atomic_write")
    return None


_row_of: Final = operator.attrgetter(
    "persistence_id", "sequence_nr", "manifest", "payload", "writer_uuid", "timestamp")
_payload_of: Final = operator.attrgetter("payload")
_tags_of: Final = operator.attrgetter("tags")


def _insert(db: sqlite3.Connection, writes: Sequence[AtomicWrite]) -> None:
    if len(writes) == 1 and len(writes[0].payload) == 1:
        # One event: execute costs less than executemany's iteration.
        events: Sequence[PersistentRepr] = writes[0].payload
        db.execute(_INSERT_EVENT, _row_of(events[0]))
    else:
        events = list(itertools.chain.from_iterable(map(_payload_of, writes)))
        # Rows are made at C speed as executemany binds them, and dropped one by one: a
        # persist_async burst (thousands of one-event writes) builds no list of row tuples,
        # whose allocations would also set off the garbage collector.
        db.executemany(_INSERT_EVENT, map(_row_of, events))
    if any(map(_tags_of, events)):
        db.executemany(_INSERT_TAG, [
            (position, tag, repr_.persistence_id, repr_.sequence_nr)
            for repr_ in events if repr_.tags
            for position, tag in enumerate(repr_.tags)
        ])


def _delete_transaction(db: sqlite3.Connection, persistence_id: str, to_nr: int) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_REMEMBER_HIGHEST, (persistence_id,))
        db.execute(_DELETE_TAGS, (persistence_id, to_nr))
        db.execute(_TOMBSTONE, (persistence_id, to_nr))
        db.execute(_PURGE, (persistence_id, to_nr, persistence_id))
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
    _reclaim(db)


def _reclaim(db: sqlite3.Connection) -> None:
    """Give the pages a delete freed back to the file system (auto_vacuum = INCREMENTAL)."""
    # executescript steps the pragma to its end; execute() frees one page per step.
    db.executescript("PRAGMA incremental_vacuum;")


def _integrity_check(db: sqlite3.Connection) -> list[str]:
    problems = [str(row[0]) for row in db.execute("PRAGMA integrity_check").fetchall()]
    problems = [] if problems == ["ok"] else problems
    orphans = int(db.execute(_ORPHAN_TAGS).fetchone()[0])
    if orphans:
        problems.append(f"{orphans} tag rows belong to no stored event")
    return problems


class _RowsReader:
    """Reads recovery's pages, remembering the last manifest and writer.

    The first page is `_ROWS_PAGE` (each row's own strings); each later page is
    `_SHORT_PAGE`, whose sequence numbers are ``range(first, first + n)`` when its last row
    shows that they have no gap, as they usually have none. Any page that does not show it
    (a gap: a rejected write consumed its number; rows deleted) is read again as
    `_ROWS_PAGE`.
    """

    __slots__ = ("manifest", "writer")

    def __init__(self) -> None:
        self.manifest: str | None = None  # None: no page read yet, every row has its own
        self.writer: str | None = None

    def __call__(self, db: sqlite3.Connection, persistence_id: str, from_nr: int, to_nr: int,
                 limit: int) -> tuple[ReplayedRows, int]:
        page: ReplayedRows | None = None
        if self.manifest is not None and self.writer is not None:
            last = min(to_nr, from_nr + limit - 1)  # the last row of a page without a gap
            rows = db.execute(_SHORT_PAGE, (persistence_id, from_nr, to_nr, limit,
                                            self.manifest, self.writer, last)).fetchall()
            if not rows:
                return ReplayedRows((), (), (), ()), 0
            page = _short_page(rows, from_nr, self.manifest, self.writer)
        if page is None:
            params = (persistence_id, from_nr, to_nr, limit, self.manifest, self.writer)
            rows = db.execute(_ROWS_PAGE, params).fetchall()
            if not rows:
                return ReplayedRows((), (), (), ()), 0
            nrs, manifests, payloads, writers = zip(*rows, strict=True)
            page = ReplayedRows(nrs, _filled(manifests, self.manifest), payloads,
                                _filled(writers, self.writer))
        self.manifest, self.writer = page.manifests[-1], page.writer_uuids[-1]
        return page, page.sequence_nrs[-1]


def _short_page(rows: list[tuple[bytes, str | bytes | None]], from_nr: int, manifest: str,
                writer: str) -> ReplayedRows | None:
    """The page of `_SHORT_PAGE` `rows` from `from_nr`; None unless it has no gap."""
    n = len(rows)
    payloads, marks = zip(*rows, strict=True)
    end = marks[-1]
    if type(end) is not bytes:
        return None  # the last row is before ?7, so the page has a gap
    last_nr, last_manifest, last_writer = json.loads(end)
    if last_nr != from_nr + n - 1:
        return None  # n rows from from_nr to last_nr: none missing only if this holds
    # A tuple, not the range: recovery iterates the numbers several times (replay filter,
    # window, handler loop), and a range makes a new int object each time.
    nrs = tuple(range(from_nr, from_nr + n))
    if marks.count(None) == n - 1:  # the usual page: one manifest and one writer
        return ReplayedRows(nrs, [*itertools.repeat(manifest, n - 1),
                            last_manifest], payloads,
                            [*itertools.repeat(writer, n - 1), last_writer])
    manifests: list[str] = []
    writers: list[str] = []
    for mark in marks:
        if mark is None:
            manifests.append(manifest)
            writers.append(writer)
        elif type(mark) is str:
            manifests.append(mark)
            writers.append(writer)
        else:  # another writer from here on (a sequence number checked by the last row's)
            _, row_manifest, row_writer = json.loads(mark)
            manifests.append(row_manifest)
            writers.append(row_writer)
    return ReplayedRows(nrs, manifests, payloads, writers)


def _filled(column: Sequence[str | None], same: str | None) -> Sequence[str]:
    """`column` with each NULL (equal to `same`, both columns are NOT NULL) put back."""
    if same is None or None not in column:
        return column  # type: ignore[return-value]  # no NULL in it
    if column.count(None) == len(column):
        return [same] * len(column)
    return [same if value is None else value for value in column]


def _replay_page(
    db: sqlite3.Connection, persistence_id: str, from_nr: int, to_nr: int, limit: int
) -> tuple[list[PersistentRepr], int]:
    rows = db.execute(_REPLAY_PAGE, (persistence_id, from_nr, to_nr, limit)).fetchall()
    if not rows:
        return [], 0
    return _reprs_of(db, persistence_id, rows), rows[-1][1]


def _reprs_of(db: sqlite3.Connection, persistence_id: str,
              rows: list[Any]) -> list[PersistentRepr]:
    orderings = [row[0] for row in rows]
    (tagged,) = db.execute(_ANY_TAG_BETWEEN, (min(orderings), max(orderings))).fetchone()
    if not tagged:
        return [PersistentRepr(persistence_id, nr, manifest, payload, writer_uuid, timestamp)
                for _, nr, manifest, payload, writer_uuid, timestamp in rows]
    tags: dict[int, list[str]] = {}
    params = (persistence_id, rows[0][1], rows[-1][1])
    for ordering, tag in db.execute(_TAGS_OF_RANGE, params):
        tags.setdefault(ordering, []).append(tag)
    return [PersistentRepr(persistence_id, nr, manifest, payload, writer_uuid, timestamp,
                           tuple(tags.get(ordering, ())))
            for ordering, nr, manifest, payload, writer_uuid, timestamp in rows]


class SqliteSnapshotStore(SnapshotStore):
    """Plugin API: a snapshot store in an SQLite file (table ``snapshot``).

    Takes the same settings as `SqliteJournal` except ``replay_page_size``; it may share the
    journal's file. Each operation is a single statement, hence atomic on its own.
    """

    inline_first_step = True  # see Journal.inline_first_step: no task needed

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._options = _parse_options(type(self).__name__, self.settings, _COMMON_KEYS)
        self._db: _Connection | None = None

    async def start(self) -> None:
        """Plugin API: open the file (creating it and the schema if needed).

        Raises:
            PluginError: the folder is missing or read-only, the file is not an SQLite
                database or is corrupted, or it holds a foreign ``snapshot`` table.

        """
        self._db = await _start(
            type(self).__name__, self._options, _SNAPSHOT_SCHEMA, _SNAPSHOT_COLUMNS
        )

    async def close(self) -> None:
        """Plugin API: close the connection; idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def _run(self, what: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self._db is None:
            msg = f"{type(self).__name__} is not started (or already closed)"
            raise SnapshotStoreError(msg)
        try:
            return list(await self._db.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as e:
            msg = f"{type(self).__name__}: {what} failed: {e}"
            raise SnapshotStoreError(msg) from e

    async def load(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> SelectedSnapshot | None:
        """Plugin API: the matching snapshot with the highest sequence number, or None."""
        if criteria.is_none:
            return None
        rows = await self._run(
            f"loading a snapshot of {persistence_id!r}",
            _LOAD_SNAPSHOT,
            (persistence_id, *_criteria_params(criteria)),
        )
        if not rows:
            return None
        nr, timestamp, manifest, payload = rows[0]
        return SelectedSnapshot(
            SnapshotMetadata(persistence_id, nr, timestamp), manifest, bytes(payload)
        )

    async def save(self, metadata: SnapshotMetadata, manifest: str, payload: bytes) -> None:
        """Plugin API: store a snapshot, replacing any at the same sequence number."""
        await self._run(
            f"saving a snapshot of {metadata.persistence_id!r}",
            _SAVE_SNAPSHOT,
            (metadata.persistence_id, metadata.sequence_nr, metadata.timestamp, manifest, payload),
        )

    async def delete(self, metadata: SnapshotMetadata) -> None:
        """Plugin API: delete the snapshot at `metadata.sequence_nr`.

        A non-zero `metadata.timestamp` only deletes a snapshot taken at or before it.
        """
        await self._run(
            f"deleting a snapshot of {metadata.persistence_id!r}",
            _DELETE_SNAPSHOT,
            (metadata.persistence_id, metadata.sequence_nr, metadata.timestamp, metadata.timestamp),
        )

    async def delete_by_criteria(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> None:
        """Plugin API: delete every snapshot of `persistence_id` matching `criteria`."""
        await self._run(
            f"deleting snapshots of {persistence_id!r}",
            _DELETE_SNAPSHOTS,
            (persistence_id, *_criteria_params(criteria)),
        )
        if self._db is not None:
            try:
                await self._db.run(_reclaim)
            except (sqlite3.Error, ValueError) as e:
                msg = f"{type(self).__name__}: reclaiming space after a delete failed: {e}"
                raise SnapshotStoreError(msg) from e


def _criteria_params(criteria: SnapshotSelectionCriteria) -> tuple[Any, ...]:
    # SQLite stores and compares IEEE infinities, so the default open bound binds as is.
    return (
        criteria.min_sequence_nr,
        min(criteria.max_sequence_nr, MAX_SEQUENCE_NR),
        criteria.min_timestamp,
        criteria.max_timestamp,
    )
