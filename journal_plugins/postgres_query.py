"""The read side of the PostgreSQL journal: an `EventLog` that connects by the journal's DSN.

It needs no actor system: any process that can reach the server reads the journal
(``persistent_actors.query.open_read_journal(config)``), while writers on other processes and
hosts go on. Why offsets are exact (every event delivered once, in ordering order, even under
concurrent writers) is explained in `journal_plugins.postgres`: the ordering lock makes the
committed orderings a visible prefix, so a page bounded by the highest ordering read just
before it is final.

**Live queries without polling the table.** The journal has a statement-level trigger that
runs ``pg_notify('<schema>.journal', '')`` in every write transaction; PostgreSQL delivers it
when, and only if, the transaction commits. A waiting live query ``LISTEN``s on one dedicated
connection and wakes at once, whichever process or host wrote. The read journal's periodic
refresh (``refresh_interval``) stays as the safety net: if the listening connection drops, a
wait simply times out and the query re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Final

import asyncpg

from journal_plugins._postgres_db import (
    _JOURNAL_KEYS,
    DB_ERRORS,
    LOST,
    Options,
    parse_options,
    reason,
    redact,
    reset_connection,
    server_settings,
)
from persistent_actors.errors import JournalError
from persistent_actors.event_log import EventLog, EventPage, PersistenceIdPage, StoredEvent
from persistent_actors.journal import MAX_SEQUENCE_NR, PersistentRepr

__all__ = ["PostgresEventLog"]

# Orderings scanned per persistence-id query at most, so one call stays cheap on a big log.
_ID_SCAN_WINDOW: Final = 10_000
_COLUMNS: Final = ("j.ordering, j.persistence_id, j.sequence_nr, j.manifest, j.payload, "
                   "j.writer_uuid, j.created_at, j.tags")
_DB_ERRORS: Final = DB_ERRORS


class PostgresEventLog(EventLog):
    """Plugin API: the PostgreSQL journal's `EventLog` (see the module docstring).

    Args:
        settings: the journal's settings (``dsn``, ``schema``, ``pool_size`` and
            ``connect_timeout`` are used; ``replay_page_size`` is accepted and ignored).

    Connections open on first use, on the event loop that uses the log. A schema without a
    journal yet reads as an empty log: a consumer may start before any writer ever ran.

    """

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self._owner = type(self).__name__
        self._options: Options = parse_options(self._owner, dict(settings or {}), _JOURNAL_KEYS)
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._listener: asyncpg.Connection | None = None
        self._notified = asyncio.Event()
        self._generation = 0
        # The loop the connections, the lock and the event belong to (asyncpg's connections
        # serve the loop that opened them).
        self._loop: asyncio.AbstractEventLoop | None = None
        journal = self._options.table("journal")
        self._highest = f"SELECT coalesce(max(ordering), 0) FROM {journal}"
        self._all_page = f"""SELECT {_COLUMNS} FROM {journal} AS j
            WHERE j.ordering > $1 AND j.ordering <= $2 AND NOT j.deleted
            ORDER BY j.ordering LIMIT $3"""
        self._tag_page = f"""SELECT {_COLUMNS} FROM {self._options.table("journal_tags")} AS t
            JOIN {journal} AS j ON j.ordering = t.ordering
            WHERE t.tag = $1 AND t.ordering > $2 AND t.ordering <= $3 AND NOT j.deleted
            ORDER BY t.ordering LIMIT $4"""
        self._id_page = f"""SELECT {_COLUMNS} FROM {journal} AS j
            WHERE j.persistence_id = $1 AND j.sequence_nr >= $2 AND j.sequence_nr <= $3
            AND j.ordering <= $4 AND NOT j.deleted ORDER BY j.sequence_nr LIMIT $5"""
        # Ids first seen in the window: grouped first, then one probe per id for an older row.
        self._new_ids = f"""SELECT w.persistence_id, w.first FROM (
                SELECT persistence_id, min(ordering) AS first FROM {journal}
                WHERE ordering > $1 AND ordering <= $2 GROUP BY persistence_id) AS w
            WHERE NOT EXISTS (SELECT 1 FROM {journal} AS o
                              WHERE o.persistence_id = w.persistence_id AND o.ordering <= $1)
            ORDER BY w.first LIMIT $3"""

    @property
    def options(self) -> Options:
        """The validated settings."""
        return self._options

    def _on_this_loop(self) -> None:
        """Forget the connections of another event loop (a second ``asyncio.run``).

        They cannot serve this one: every read failed with "Event loop is closed" (or "attached
        to a different loop"). They are dropped without a goodbye (their loop may be closed);
        the server ends their sessions when the sockets close.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
            for connections in (pool, listener):
                if connections is not None:
                    with contextlib.suppress(RuntimeError):  # their loop is closed
                        connections.terminate()
            self._opening = None
            self._notified = asyncio.Event()
        self._loop = loop

    async def _connections(self) -> asyncpg.Pool:
        self._on_this_loop()
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # queries started together share one pool
            if self._pool is None:
                o = self._options
                try:
                    self._pool = await asyncpg.create_pool(
                        o.dsn, min_size=0, max_size=o.pool_size, timeout=o.connect_timeout,
                        reset=reset_connection,
                        server_settings=server_settings(o.dsn, "persistent_actors-query"))
                except _DB_ERRORS as e:
                    msg = (f"{self._owner}: cannot connect to PostgreSQL at {redact(o.dsn)!r}: "
                           f"{reason(e, o)}")
                    raise JournalError(msg) from e
        return self._pool

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[Any]:
        pool = await self._connections()
        try:
            try:
                return list(await pool.fetch(sql, *args))
            except LOST:  # a read: once more, on a fresh connection (a live query goes on)
                return list(await pool.fetch(sql, *args))
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return []  # no journal yet: an empty log
        except _DB_ERRORS as e:
            msg = (f"{self._owner}: {what} in schema {self._options.schema!r} failed: "
                   f"{reason(e, self._options)}")
            raise JournalError(msg) from e

    async def close(self) -> None:
        """Close the connections; idempotent."""
        self._on_this_loop()  # those of a loop gone are dropped
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*_DB_ERRORS):
                await asyncio.wait_for(listener.close(), 5)
            listener.terminate()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, *_DB_ERRORS):
                pool.terminate()

    async def highest_ordering(self) -> int:
        """Plugin API: the highest ordering stored (0 if none)."""
        rows = await self._fetch("reading the highest ordering", self._highest)
        return int(rows[0][0]) if rows else 0

    async def fetch_events(self, after_ordering: int, limit: int, *, tag: str | None = None,
                           max_ordering: int | None = None) -> EventPage:
        """Plugin API: live events after `after_ordering` (with `tag`), by ordering."""
        highest, bound = await self.page_bound(max_ordering)
        if bound <= after_ordering:
            return EventPage((), highest, after_ordering)
        if tag is None:
            rows = await self._fetch("reading events", self._all_page, after_ordering, bound,
                                     limit)
        else:
            rows = await self._fetch(f"reading events tagged {tag!r}", self._tag_page, tag,
                                     after_ordering, bound, limit)
        events = [_stored(row) for row in rows]
        scanned = events[-1].ordering if len(events) >= limit else bound
        return EventPage(tuple(events), highest, scanned)

    async def fetch_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, limit: int, *,
        max_ordering: int | None = None,
    ) -> EventPage:
        """Plugin API: live events of one id, by sequence number."""
        highest, bound = await self.page_bound(max_ordering)
        rows = await self._fetch(
            f"reading events of {persistence_id!r}", self._id_page, persistence_id,
            max(from_sequence_nr, -MAX_SEQUENCE_NR), min(to_sequence_nr, MAX_SEQUENCE_NR),
            bound, limit)
        return EventPage(tuple(_stored(row) for row in rows), highest, bound)

    async def fetch_persistence_ids(self, after_ordering: int, limit: int, *,
                                    max_ordering: int | None = None) -> PersistenceIdPage:
        """Plugin API: ids by the ordering of their first event (a window per call)."""
        highest, bound = await self.page_bound(max_ordering)
        upper = min(bound, after_ordering + _ID_SCAN_WINDOW)
        if upper <= after_ordering:
            return PersistenceIdPage((), highest, after_ordering)
        rows = await self._fetch("reading persistence ids", self._new_ids, after_ordering,
                                 upper, limit)
        ids = tuple((int(first), str(pid)) for pid, first in rows)
        scanned = ids[-1][0] if len(ids) >= limit else upper
        return PersistenceIdPage(ids, highest, scanned)

    async def wait_for_change(self, highest_ordering: int, timeout: float) -> None:
        """Wake on the journal's NOTIFY (any writer, any host), or after `timeout`."""
        self._on_this_loop()
        generation = self._generation
        await self._listen()
        # A commit between the caller's read and the LISTEN above.
        if await self.highest_ordering() > highest_ordering:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._generation == generation and (remaining := deadline - loop.time()) > 0:
            self._notified.clear()
            if self._generation != generation:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._notified.wait(), remaining)

    async def _listen(self) -> None:
        """Open the listening connection if it is not (or no longer) open.

        Failing to connect is not an error here: the wait then lasts its timeout, and the
        read journal re-reads (the periodic refresh).
        """
        if self._listener is not None and not self._listener.is_closed():
            return
        o = self._options
        try:
            listener = await asyncpg.connect(
                o.dsn, timeout=o.connect_timeout,
                server_settings=server_settings(o.dsn, "persistent_actors-listen"))
        except _DB_ERRORS:
            return
        try:
            await listener.add_listener(o.channel, self._on_notify)
        except _DB_ERRORS:
            listener.terminate()
            return
        if self._listener is not None:  # another wait connected meanwhile
            await listener.close()
            return
        self._listener = listener

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        del connection, pid, channel, payload
        self._generation += 1
        self._notified.set()


def _stored(row: Any) -> StoredEvent:
    ordering, pid, nr, manifest, payload, writer_uuid, timestamp, tags = row
    return StoredEvent(int(ordering), PersistentRepr(
        persistence_id=pid, sequence_nr=nr, manifest=manifest, payload=payload,
        writer_uuid=writer_uuid, timestamp=timestamp, tags=tuple(tags)))
