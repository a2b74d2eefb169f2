"""The read side of the SQLite journal: an `EventLog` on its own read-only connection.

It reads the journal's file directly, so it works in any process, also one with no actor
system (``persistent_actors.query.open_read_journal(config)``), and never blocks the writer
(WAL mode: readers see the last commit, writers go on).

**Why the global order is a visible prefix (Akka.NET issue 2257 cannot happen).** ``ordering``
is an ``INTEGER PRIMARY KEY``: SQLite gives each new row the largest stored value plus one,
*inside* the writing transaction, and the journal never purges the row holding the largest
(files created before keep ``AUTOINCREMENT``, which does the same with a counter), so a new row's
value is above every value ever used. SQLite admits one writer at a time per
database file (every journal write is a ``BEGIN IMMEDIATE`` transaction, which takes the file's
write lock), so write transactions are serialized: the one that commits later has allocated
larger orderings, whatever process or connection it came from, and a rolled-back transaction's
numbers are given back and reused by the next writer, above everything committed. Each read is
one statement, i.e. one consistent snapshot. So a reader that sees ordering n sees every row
below n that will ever exist, and resuming "after n" never skips an event that commits later.
(Deleted events keep their row as a tombstone; queries skip them, but their orderings stay
taken.)

**How live queries notice new events without polling the database in a loop.**

* The writer is in this process (the simple base, or a plugin used directly): `SqliteJournal`
  fires a process-local signal after each commit, and the waiting query wakes at once.
* The writer is another process (the multiproc base, another program): the waiting query asks
  SQLite ``PRAGMA data_version`` every `poll_interval` seconds (default 0.25). That pragma
  reads a counter from the WAL index in shared memory; it does no table read and no disk I/O,
  and changes exactly when another connection committed. Only then is the journal queried.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from journal_plugins._sqlite_db import (
    _EVENTS_OF_ID,
    _JOURNAL_KEYS,
    _connect,
    _Connection,
    _fold_stored,
    _parse_options,
    commit_signal_key,
)
from persistent_actors.errors import ConfigError, JournalError
from persistent_actors.event_log import (
    EventLog,
    EventPage,
    PersistenceIdPage,
    change_signal,
)
from persistent_actors.journal import MAX_SEQUENCE_NR

__all__ = ["DEFAULT_POLL_INTERVAL", "SqliteEventLog"]

DEFAULT_POLL_INTERVAL: Final = 0.25
# Orderings scanned per persistence-id query at most, so one call stays cheap on a big log.
_ID_SCAN_WINDOW: Final = 10_000

# The journal never purges the row of the largest ordering (`sqlite._PURGE`).
_HIGHEST: Final = "SELECT coalesce(max(ordering), 0) FROM journal"
# A file created with AUTOINCREMENT: its counter also covers rows an older version purged.
_HIGHEST_COUNTED: Final = """SELECT max(coalesce((SELECT max(ordering) FROM journal), 0),
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'journal'), 0))"""
# Whether the file has a journal, and whether it has AUTOINCREMENT's counter table (created with
# the journal table, in the same transaction).
_HAS_JOURNAL: Final = """SELECT
    count(*) FILTER (WHERE name = 'journal'), count(*) FILTER (WHERE name = 'sqlite_sequence')
    FROM sqlite_master WHERE type = 'table'"""
# Each page query limits the live events first (the deleted filter is inside the LIMIT), then
# joins their tags: one row per tag, folded back into events by _fold.
_ALL_PAGE: Final = """SELECT j.*, t.tag FROM (
        SELECT ordering, persistence_id, sequence_nr, manifest, payload, writer_uuid, timestamp
        FROM journal
        WHERE ordering > ? AND ordering <= ? AND deleted = 0
        ORDER BY ordering LIMIT ?) AS j
    LEFT JOIN journal_tags AS t ON t.ordering = j.ordering
    ORDER BY j.ordering, t.position"""
_TAG_PAGE: Final = """SELECT j.*, t.tag FROM (
        SELECT ordering, persistence_id, sequence_nr, manifest, payload, writer_uuid, timestamp
        FROM journal WHERE ordering IN (
            SELECT m.ordering FROM journal_tags AS m JOIN journal AS e ON e.ordering = m.ordering
            WHERE m.tag = ? AND m.ordering > ? AND m.ordering <= ? AND e.deleted = 0
            GROUP BY m.ordering ORDER BY m.ordering LIMIT ?)) AS j
    LEFT JOIN journal_tags AS t ON t.ordering = j.ordering
    ORDER BY j.ordering, t.position"""
# Ids first seen in the window: grouped first, then one index probe per id (not per row) for
# an older row, which for an id seen before stops at its first entry.
_NEW_IDS: Final = """SELECT w.persistence_id, w.first FROM (
        SELECT persistence_id, min(ordering) AS first FROM journal
        WHERE ordering > ? AND ordering <= ? GROUP BY persistence_id) AS w
    WHERE NOT EXISTS (
        SELECT 1 FROM journal AS o WHERE o.persistence_id = w.persistence_id AND o.ordering <= ?)
    ORDER BY w.first LIMIT ?"""

class SqliteEventLog(EventLog):
    """Plugin API: the SQLite journal's `EventLog` (see the module docstring).

    Args:
        settings: the journal's settings (``path`` is required; ``busy_timeout`` is used, the
            write-side settings are accepted and ignored).
        poll_interval: seconds between ``PRAGMA data_version`` checks while a live query waits
            for a commit made by another process.

    A missing file, or one without a journal yet, reads as an empty log: a consumer may start
    before the writer ever ran.

    """

    def __init__(self, settings: Mapping[str, Any] | None = None, *,
                 poll_interval: float = DEFAULT_POLL_INTERVAL) -> None:
        self._owner = type(self).__name__
        self._options = _parse_options(self._owner, dict(settings or {}), _JOURNAL_KEYS)
        if not isinstance(poll_interval, int | float) or poll_interval <= 0:
            raise ConfigError(f"{self._owner}: poll_interval must be a positive number of "
                              f"seconds, got {poll_interval!r}")
        self._poll_interval = float(poll_interval)
        self._key = commit_signal_key(self._options.path)
        self._db: _Connection | None = None
        self._highest = _HIGHEST  # chosen when the connection opens

    @property
    def path(self) -> Path:
        """The database file."""
        return self._options.path

    async def _connection(self) -> _Connection | None:
        """The read-only connection, opened on first use; None while there is no journal."""
        if self._db is not None:
            return self._db
        if not self._options.path.is_file():
            return None
        db = _Connection(f"sqlite-{self._owner}")
        try:
            await db.open(functools.partial(
                _connect, self._owner, self._options, set_journal_mode=False, reader=True))
        except BaseException as e:
            await db.close()
            if isinstance(e, sqlite3.Error):
                msg = f"{self._owner}: cannot open {str(self._options.path)!r} for reading: {e}"
                raise JournalError(msg) from e
            raise
        try:
            rows = await db.execute_fetchall(_HAS_JOURNAL)
        except BaseException:
            await db.close()
            raise
        if rows and rows[0][1]:
            self._highest = _HIGHEST_COUNTED
        if not rows or not rows[0][0] or self._db is not None:
            # No journal yet; or another query of this log connected while we did (keep one,
            # and end the other's thread).
            await db.close()
            return self._db
        self._db = db
        return db

    async def _fetch(self, what: str, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            db = await self._connection()
            if db is None:
                return []
            return await db.execute_fetchall(sql, params)
        except (sqlite3.Error, ValueError) as e:  # ValueError: the connection was closed
            msg = f"{self._owner}: {what} on {str(self._options.path)!r} failed: {e}"
            raise JournalError(msg) from e

    async def close(self) -> None:
        """Close the connection; idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def highest_ordering(self) -> int:
        """Plugin API: the highest ordering stored (0 if none)."""
        try:
            db = await self._connection()  # first: it picks the statement for this file
            if db is None:
                return 0
            rows = await db.execute_fetchall(self._highest)
        except (sqlite3.Error, ValueError) as e:  # ValueError: the connection was closed
            msg = (f"{self._owner}: reading the highest ordering on "
                   f"{str(self._options.path)!r} failed: {e}")
            raise JournalError(msg) from e
        return int(rows[0][0])

    async def fetch_events(self, after_ordering: int, limit: int, *, tag: str | None = None,
                           max_ordering: int | None = None) -> EventPage:
        """Plugin API: live events after `after_ordering` (with `tag`), by ordering."""
        highest, bound = await self.page_bound(max_ordering)
        if bound <= after_ordering:
            return EventPage((), highest, after_ordering)
        if tag is None:
            rows = await self._fetch("reading events", _ALL_PAGE, (after_ordering, bound, limit))
        else:
            rows = await self._fetch(f"reading events tagged {tag!r}", _TAG_PAGE,
                                     (tag, after_ordering, bound, limit))
        events = _fold_stored(rows)
        scanned = events[-1].ordering if len(events) >= limit else bound
        return EventPage(tuple(events), highest, scanned)

    async def fetch_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, limit: int, *,
        max_ordering: int | None = None,
    ) -> EventPage:
        """Plugin API: live events of one id, by sequence number."""
        highest, bound = await self.page_bound(max_ordering)
        rows = await self._fetch(
            f"reading events of {persistence_id!r}", _EVENTS_OF_ID,
            (persistence_id, max(from_sequence_nr, -MAX_SEQUENCE_NR),
             min(to_sequence_nr, MAX_SEQUENCE_NR), bound, limit))
        return EventPage(tuple(_fold_stored(rows)), highest, bound)

    async def fetch_persistence_ids(self, after_ordering: int, limit: int, *,
                                    max_ordering: int | None = None) -> PersistenceIdPage:
        """Plugin API: ids by the ordering of their first event.

        Scans at most a window of orderings per call, so it stays cheap on a long log; a page
        that is not full says, in `scanned_to`, how far it got.
        """
        highest, bound = await self.page_bound(max_ordering)
        upper = min(bound, after_ordering + _ID_SCAN_WINDOW)
        if upper <= after_ordering:
            return PersistenceIdPage((), highest, after_ordering)
        rows = await self._fetch("reading persistence ids", _NEW_IDS,
                                 (after_ordering, upper, after_ordering, limit))
        ids = tuple((int(first), str(pid)) for pid, first in rows)
        scanned = ids[-1][0] if len(ids) >= limit else upper
        return PersistenceIdPage(ids, highest, scanned)

    async def wait_for_change(self, highest_ordering: int, timeout: float) -> None:
        """Wake on this process's commit signal, or on a changed ``PRAGMA data_version``."""
        deadline = time.monotonic() + timeout
        generation = change_signal.generation(self._key)
        version = await self._data_version()
        # A commit between the caller's read and the two snapshots above.
        if await self.highest_ordering() > highest_ordering:
            return
        while (remaining := deadline - time.monotonic()) > 0:
            if await change_signal.wait(self._key, generation,
                                        min(self._poll_interval, remaining)):
                return
            if await self._data_version() != version:
                return

    async def _data_version(self) -> int | None:
        # None while there is no journal yet: the connection appears with it, which changes
        # the value and wakes the waiter.
        rows = await self._fetch("reading data_version", "PRAGMA data_version", ())
        return int(rows[0][0]) if rows else None
