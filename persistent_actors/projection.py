"""Projections: resumable consumers of a query (Akka's "resumable projection" pattern).

A projection reads a query from the offset it stored last, calls a handler for each envelope,
and stores the offset after it, so a restarted projection goes on where it stopped::

    async with SqliteOffsetStore("read-model.db") as store:   # closed when the block ends
        projection = Projection(
            "apm", lambda offset: journal.events_by_tag("game", offset), count_action, store)
        await projection.run()      # returns when the query ends; cancel it to stop a live one

* `Projection` is **at-least-once**: the offset is stored after each batch of handled
  envelopes, so after a crash the envelopes handled since the last stored offset are handled
  again (make the handler idempotent, or use the next one).
* `ExactlyOnceProjection` is **exactly-once**: the handler receives the SQLite connection of the
  offset store, inside a transaction; its writes and the new offset commit together or not at
  all. That connection is an ``aiosqlite`` one, so the handler can await its statements; this
  is the one place the library uses aiosqlite (the SQLite plugins run their own connections).

Envelopes are handled in batches of whatever the query has ready (at most `batch_size`): one
offset write, or one transaction, per batch rather than per event. A handler that raises is
retried with exponential back-off, or the projection stops, as its `ErrorStrategy` says; the
stored offset never moves past an envelope that was not handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import sqlite3
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import aiosqlite

from persistent_actors.errors import ConfigError, ProjectionError
from persistent_actors.query import (
    NO_OFFSET,
    EventEnvelope,
    NoOffset,
    Offset,
    Sequence,
    more_follow,
)

__all__ = [
    "ErrorStrategy",
    "ExactlyOnceProjection",
    "InmemOffsetStore",
    "OffsetStore",
    "Projection",
    "SqliteOffsetStore",
]

log = logging.getLogger("persistent_actors.projection")

H = TypeVar("H")

Source = Callable[[Offset], AsyncIterator[EventEnvelope]]
"""Starts the projection's query from an offset, e.g. ``lambda o: journal.events_by_tag(t, o)``."""

Handler = Callable[[EventEnvelope], Awaitable[None] | None]
"""An at-least-once handler: sync or async, called once per envelope (more after a crash)."""

SqliteHandler = Callable[[EventEnvelope, aiosqlite.Connection], Awaitable[None]]
"""An exactly-once handler: writes through the connection, inside the projection's transaction."""

DEFAULT_BATCH_SIZE: Final = 100


# -- offset stores ----------------------------------------------------------------------------
class OffsetStore(ABC):
    """Where projections keep their offsets, by projection id."""

    @abstractmethod
    async def load(self, projection_id: str) -> Offset:
        """The offset stored for `projection_id`, or `NoOffset()` if none."""

    @abstractmethod
    async def save(self, projection_id: str, offset: Offset) -> None:
        """Store `offset` for `projection_id` (durably, for a persistent store)."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources; idempotent."""

    async def __aenter__(self) -> OffsetStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class InmemOffsetStore(OffsetStore):
    """Offsets in a dict: for tests, or a projection that rebuilds from scratch on each start."""

    def __init__(self) -> None:
        self.offsets: dict[str, Offset] = {}

    async def load(self, projection_id: str) -> Offset:
        """See `OffsetStore.load`."""
        return self.offsets.get(_checked_id(projection_id), NO_OFFSET)

    async def save(self, projection_id: str, offset: Offset) -> None:
        """See `OffsetStore.save`."""
        _offset_value(offset)  # as SqliteOffsetStore checks it: the stores are swappable
        self.offsets[_checked_id(projection_id)] = offset


def _checked_id(projection_id: Any) -> str:
    if not isinstance(projection_id, str) or not projection_id:
        raise ValueError(f"projection_id must be a non-empty str, got {projection_id!r}")
    return projection_id


_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS projection_offset (
    projection_id TEXT PRIMARY KEY,
    current_offset INTEGER NOT NULL,
    updated_at REAL NOT NULL
)"""
_LOAD: Final = "SELECT current_offset FROM projection_offset WHERE projection_id = ?"
_SAVE: Final = """INSERT INTO projection_offset (projection_id, current_offset, updated_at)
    VALUES (?, ?, ?) ON CONFLICT (projection_id) DO UPDATE SET
    current_offset = excluded.current_offset, updated_at = excluded.updated_at"""
_SYNCHRONOUS: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


def _offset_value(offset: Offset) -> int:
    if not isinstance(offset, NoOffset | Sequence):
        raise TypeError(f"a projection offset must be NoOffset() or Sequence(n), got {offset!r}")
    return offset.ordering


class SqliteOffsetStore(OffsetStore):
    """Offsets in a table ``projection_offset`` of an SQLite file, usually the read model's.

    Its connection is also where an `ExactlyOnceProjection`'s handler writes, so the read model
    and the offset commit in one transaction.

    Args:
        path: the database file (created if missing; its folder must exist).
        synchronous: SQLite's ``synchronous`` pragma (``"FULL"``: a commit survives power loss).
        busy_timeout: milliseconds to wait for another connection's write lock.

    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 busy_timeout: int = 5000) -> None:
        if not isinstance(path, str | os.PathLike):
            # Path(5) raised "expected str, bytes or os.PathLike object", naming no argument.
            raise TypeError(f"SqliteOffsetStore: path must be a str or os.PathLike (the "
                            f"database file), got {path!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(f"SqliteOffsetStore: synchronous must be one of "
                              f"{sorted(_SYNCHRONOUS)}, got {synchronous!r}")
        if not isinstance(busy_timeout, int) or isinstance(busy_timeout, bool) or busy_timeout < 0:
            raise ConfigError(f"SqliteOffsetStore: busy_timeout must be an int >= 0, got "
                              f"{busy_timeout!r}")
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._db: aiosqlite.Connection | None = None
        # Its locks, made for the event loop that uses them (`_locks`): asyncio binds a lock to
        # the loop it first waited in, and a store used again in a second asyncio.run failed.
        # Of the two, `opening` lets several projections starting together on one store open
        # one connection (each setting WAL mode at once failed with "database is locked").
        self._loop: weakref.ReferenceType[asyncio.AbstractEventLoop] | None = None
        self._lock = self._opening = asyncio.Lock()

    def _locks(self) -> tuple[asyncio.Lock, asyncio.Lock]:
        """(the transaction lock, the opening lock) of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop() is not loop:
            self._lock, self._opening = asyncio.Lock(), asyncio.Lock()
            self._loop = weakref.ref(loop)
        return self._lock, self._opening

    async def connection(self) -> aiosqlite.Connection:
        """The store's connection (autocommit mode), opened and set up on first use.

        Raises:
            ProjectionError: the file cannot be opened or is not a SQLite database.

        """
        if self._db is not None:
            return self._db
        async with self._locks()[1]:
            if self._db is None:
                self._db = await self._open()
            return self._db

    async def _open(self) -> aiosqlite.Connection:
        connecting = aiosqlite.connect(self.path, isolation_level=None)
        # Its worker thread as a daemon: a store nobody closed (a script that ends, a
        # projection that crashed) kept the process from exiting, for ever. What it stored is
        # committed; an open transaction is rolled back by SQLite.
        thread = getattr(connecting, "_thread", connecting)
        if isinstance(thread, threading.Thread):
            thread.daemon = True
        try:
            db = await connecting
        except sqlite3.Error as e:
            raise ProjectionError(f"cannot open offset store {str(self.path)!r}: {e}") from e
        try:
            # Both values were validated against fixed sets / as an int in __init__.
            await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {self._synchronous}")
            await db.execute(_SCHEMA)
        except sqlite3.Error as e:
            await db.close()
            raise ProjectionError(f"cannot use offset store {str(self.path)!r}: {e}") from e
        except BaseException:
            await db.close()
            raise
        return db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed if the block ends normally, else rolled back."""
        async with self._locks()[0]:
            db = await self.connection()
            try:
                # Inside the try: a cancel while BEGIN waits for the file's write lock does not
                # stop aiosqlite's thread from running it, so the ROLLBACK (queued after it on
                # that thread) must follow, or the connection stays in a transaction, holding
                # the lock, and every later BEGIN fails.
                await db.execute("BEGIN IMMEDIATE")
                yield db
            except BaseException:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def save_in(self, db: aiosqlite.Connection, projection_id: str, offset: Offset) -> None:
        """Store `offset` through `db`, inside the caller's transaction."""
        await db.execute(_SAVE, (_checked_id(projection_id), _offset_value(offset), time.time()))

    async def load(self, projection_id: str) -> Offset:
        """See `OffsetStore.load`."""
        _checked_id(projection_id)
        db = await self.connection()
        rows = list(await db.execute_fetchall(_LOAD, (projection_id,)))
        return Sequence(int(rows[0][0])) if rows else NO_OFFSET

    async def save(self, projection_id: str, offset: Offset) -> None:
        """See `OffsetStore.save`."""
        async with self.transaction() as db:
            await self.save_in(db, projection_id, offset)

    async def close(self) -> None:
        """Close the connection; idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def __aenter__(self) -> SqliteOffsetStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


# -- error handling ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ErrorStrategy:
    """What a projection does when its handler raises.

    `max_retries` is how often the failing envelope is retried before the projection stops
    (0: stop at once; None: retry forever). Retry n waits ``min_backoff * 2**n`` seconds, at
    most `max_backoff`. Stopping raises `ProjectionError` from `run`; the stored offset is that
    of the last envelope handled.
    """

    max_retries: int | None = 0
    min_backoff: float = 0.1
    max_backoff: float = 10.0

    def __post_init__(self) -> None:
        if self.max_retries is not None and (
            not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise ValueError(f"max_retries must be None or an int >= 0, got {self.max_retries!r}")
        for name in ("min_backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds in [0, 1e9], got {value!r}")
            if not 0 <= value <= 1e9:  # NaN fails too
                raise ValueError(f"{name} must be a number of seconds in [0, 1e9], got {value!r}")
        if not self.min_backoff <= self.max_backoff:
            raise ValueError(f"need 0 <= min_backoff <= max_backoff, got {self.min_backoff!r} "
                             f"and {self.max_backoff!r}")

    @classmethod
    def stop(cls) -> ErrorStrategy:
        """Stop at the first failure."""
        return cls(0)

    @classmethod
    def retry(cls, max_retries: int | None = None, min_backoff: float = 0.1,
              max_backoff: float = 10.0) -> ErrorStrategy:
        """Retry with exponential back-off (forever by default), then stop."""
        return cls(max_retries, min_backoff, max_backoff)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        return float(min(self.max_backoff, self.min_backoff * 2 ** min(retry, 62)))


# -- runners ------------------------------------------------------------------------------------
_END: Final = object()
_MORE: Final = object()  # a batch was cut (full, or nothing more ready): read on


@dataclasses.dataclass(frozen=True, slots=True)
class _SourceFailed:
    error: BaseException


async def _call(handler: Callable[..., Any], *args: Any) -> None:
    result = handler(*args)
    if inspect.isawaitable(result):
        await result


class _Runner(ABC, Generic[H]):
    def __init__(self, projection_id: str, source: Source, handler: H,
                 error_strategy: ErrorStrategy | None, batch_size: int) -> None:
        _checked_id(projection_id)
        if not callable(source) or not callable(handler):
            raise TypeError("source and handler must be callables")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if error_strategy is not None and not isinstance(error_strategy, ErrorStrategy):
            raise TypeError(f"error_strategy must be an ErrorStrategy (ErrorStrategy.stop() or "
                            f".retry(...)), got {error_strategy!r}")
        self.projection_id = projection_id
        self.source = source
        self.handler = handler
        self.error_strategy = error_strategy or ErrorStrategy()
        self.batch_size = batch_size
        self.handled = 0
        """Envelopes handled by this instance (again after a restart: at-least-once)."""

    @property
    @abstractmethod
    def offset_store(self) -> OffsetStore:
        """Where the offset is kept."""

    @abstractmethod
    async def _process(self, batch: list[EventEnvelope]) -> None:
        """Handle a batch and store the offset after it."""

    async def run(self) -> None:
        """Run until the query ends (a current query) or the task is cancelled (a live one).

        Raises:
            ProjectionError: the handler failed and the error strategy gave up, or the query
                failed; the stored offset is that of the last envelope handled.

        """
        offset = await self.offset_store.load(self.projection_id)
        # Bounded: the query is read ahead by at most one batch (back-pressure).
        queue: asyncio.Queue[Any] = asyncio.Queue(self.batch_size)

        async def feed() -> None:
            try:
                source = self.source(offset)
                try:
                    async for envelope in source:
                        await queue.put(envelope)
                finally:
                    aclose = getattr(source, "aclose", None)
                    if aclose is not None:
                        await aclose()
            except Exception as e:  # noqa: BLE001 - handed to the consumer, which raises it
                await queue.put(_SourceFailed(e))
                return
            await queue.put(_END)

        producer = asyncio.ensure_future(feed())
        try:
            while True:
                item = await queue.get()
                batch: list[EventEnvelope] = []
                # Take what is ready: a batch is "whatever arrived", never a wait for more.
                while isinstance(item, EventEnvelope):
                    batch.append(item)
                    if len(batch) >= self.batch_size or queue.empty():
                        item = _MORE
                        break
                    item = queue.get_nowait()
                # A batch never ends inside the envelopes of one stored event (a read adapter
                # split it): the rest come right after it, and its offset covers them all.
                while batch and more_follow(batch[-1]) and item is _MORE:
                    following = await queue.get()
                    if isinstance(following, EventEnvelope):
                        batch.append(following)
                    else:
                        item = following  # the end, or a failure: after this batch
                if batch:
                    await self._process(batch)
                if item is not _MORE and item is not _END and \
                        not isinstance(item, EventEnvelope | _SourceFailed):
                    raise ProjectionError(
                        f"projection {self.projection_id!r}: its source yielded a "
                        f"{type(item).__name__}, not an EventEnvelope (a projection reads "
                        "events_by_tag or all_events from the offset it is given)")
                if item is _END:
                    return
                if isinstance(item, _SourceFailed):
                    raise ProjectionError(f"projection {self.projection_id!r}: its query failed: "
                                          f"{type(item.error).__name__}: {item.error}"
                                          ) from item.error
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer

    async def _with_strategy(self, envelope: EventEnvelope,
                             attempt: Callable[[], Awaitable[None]],
                             first_error: BaseException | None = None) -> None:
        """Run `attempt` until it succeeds or the strategy gives up (`first_error` counts)."""
        retries = 0
        error = first_error
        while True:
            if error is None:
                try:
                    await attempt()
                except Exception as e:  # noqa: BLE001 - the strategy decides
                    error = e
                else:
                    self.handled += 1
                    return
            limit = self.error_strategy.max_retries
            if limit is not None and retries >= limit:
                raise ProjectionError(
                    f"projection {self.projection_id!r} stopped: its handler failed on event "
                    f"{envelope.sequence_nr} of {envelope.persistence_id!r} (offset "
                    f"{envelope.offset}) after {retries} retries: {type(error).__name__}: {error}"
                ) from error
            delay = self.error_strategy.backoff(retries)
            log.warning("projection %r: handler failed on event %d of %r (%s: %s); retry %d in "
                        "%.2fs", self.projection_id, envelope.sequence_nr,
                        envelope.persistence_id, type(error).__name__, error, retries + 1, delay)
            await asyncio.sleep(delay)  # the back-off itself, not a synchronisation
            retries += 1
            error = None


class Projection(_Runner[Handler]):
    """An at-least-once projection: handler first, then the offset (see the module docstring).

    Args:
        projection_id: names the stored offset; keep it stable across restarts.
        source: starts the query from an offset.
        handler: called with each envelope, in order (sync or async).
        offset_store: where the offset is kept.
        error_strategy: retry or stop when the handler raises (default: stop).
        batch_size: envelopes handled per stored offset at most; after a crash at most this
            many are handled again.

    """

    def __init__(self, projection_id: str, source: Source, handler: Handler,
                 offset_store: OffsetStore, *, error_strategy: ErrorStrategy | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        super().__init__(projection_id, source, handler, error_strategy, batch_size)
        if not isinstance(offset_store, OffsetStore):
            raise TypeError(f"offset_store must be an OffsetStore (InmemOffsetStore, "
                            f"SqliteOffsetStore, ...), got {offset_store!r}")
        self._store = offset_store

    @property
    def offset_store(self) -> OffsetStore:
        """Where the offset is kept."""
        return self._store

    async def _process(self, batch: list[EventEnvelope]) -> None:
        last: Offset | None = None
        try:
            for envelope in batch:
                await self._with_strategy(envelope, functools.partial(_call, self.handler,
                                                                      envelope))
                if not more_follow(envelope):  # only once every envelope of its event is handled
                    last = envelope.offset
        except ProjectionError:
            if last is not None:  # keep the progress made before the envelope that failed
                await self._store.save(self.projection_id, last)
            raise
        if last is not None:
            await self._store.save(self.projection_id, last)


class ExactlyOnceProjection(_Runner[SqliteHandler]):
    """An exactly-once projection: the handler's writes and the offset commit together.

    The handler is ``async def handler(envelope, db)``: it writes through `db` (the offset
    store's aiosqlite connection, inside an open transaction) and must not commit or roll back.
    A batch is one transaction. If the handler raises, the transaction is rolled back, the
    envelopes before the failing one are committed again, and the failing one is retried alone
    (each attempt its own transaction) as the error strategy says.

    Args:
        projection_id: names the stored offset; keep it stable across restarts.
        source: starts the query from an offset.
        handler: writes the read model for one envelope.
        offset_store: the SQLite file holding both the read model and the offset.
        error_strategy: retry or stop when the handler raises (default: stop).
        batch_size: envelopes per transaction at most.

    """

    def __init__(self, projection_id: str, source: Source, handler: SqliteHandler,
                 offset_store: SqliteOffsetStore, *,
                 error_strategy: ErrorStrategy | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not isinstance(offset_store, SqliteOffsetStore):
            raise TypeError("ExactlyOnceProjection needs a SqliteOffsetStore (the handler's "
                            f"writes share its transaction), got {type(offset_store).__name__}")
        super().__init__(projection_id, source, handler, error_strategy, batch_size)
        self._store = offset_store

    @property
    def offset_store(self) -> SqliteOffsetStore:
        """The SQLite file holding the read model and the offset."""
        return self._store

    async def _process(self, batch: list[EventEnvelope]) -> None:
        failed_at, error = await self._try_batch(batch)
        if error is None:
            self.handled += len(batch)
            return
        # The failing envelope's stored event is retried whole (every envelope a read adapter
        # split it into, one transaction): its offset covers them all.
        start = failed_at
        while start > 0 and more_follow(batch[start - 1]):
            start -= 1
        end = failed_at
        while end < len(batch) - 1 and more_follow(batch[end]):
            end += 1
        if start > 0:
            await self._process(batch[:start])
        group = batch[start:end + 1]

        async def alone() -> None:
            async with self._store.transaction() as db:
                for envelope in group:
                    await self.handler(envelope, db)
                await self._store.save_in(db, self.projection_id, group[-1].offset)

        await self._with_strategy(batch[failed_at], alone, first_error=error)
        self.handled += len(group) - 1  # _with_strategy counted one
        if end + 1 < len(batch):
            await self._process(batch[end + 1:])

    async def _try_batch(self, batch: list[EventEnvelope]) -> tuple[int, BaseException | None]:
        """Handle `batch` in one transaction; on a handler error, where and what it was."""
        index = 0
        handled = False
        try:
            async with self._store.transaction() as db:
                for index, envelope in enumerate(batch):  # noqa: B007 - read in the except
                    await self.handler(envelope, db)
                handled = True
                await self._store.save_in(db, self.projection_id, batch[-1].offset)
        except Exception as e:
            if handled:  # the handlers were fine: storing the offset or committing failed
                raise ProjectionError(f"projection {self.projection_id!r}: committing to "
                                      f"{str(self._store.path)!r} failed: {e}") from e
            return index, e
        return len(batch), None
