"""Persistence query: the event log as asyncio async iterators (Akka's Persistence Query).

The team that stores events and the teams that use them are different: a consumer reads the
journal, never the actors. Get a `ReadJournal` from a running system with
``system.read_journal()``, or without one with `open_read_journal(config)` (SQLite: from another
process than the writer). Every query yields `EventEnvelope`s; events are decoded with the
serializer registry and the journal's read adapters, exactly as replay decodes them.

Current queries (``current_*``) deliver what was stored when they started and end. Live queries
never end: after the stored events they wait for new ones, without polling the database in a
loop (each `EventLog` implementation documents how it notices new events).

**Global order and offsets.** Every stored event has an ``ordering`` in one global order of the
journal; `Sequence(ordering)` is the envelope's offset. Offsets are exclusive: a query started
from an envelope's offset resumes with the event after it. The order must grow as a *visible
prefix*: once a reader can see the event at ordering n, it can see every event below n, and no
later commit inserts below n. That is what makes resuming by offset exact; Akka.NET issue 2257
was a SQL journal whose identity column was assigned at insert but committed out of order, so
offset paging skipped events. Both shipped journals give the prefix guarantee by construction
(see `journal_plugins.sqlite_query.SqliteEventLog` and `journal_plugins.inmem.InmemJournal`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from persistent_actors._config import JOURNAL, PluginConfig, load_settings, resolve_plugin
from persistent_actors.adapters import EventAdapters, event_adapters_for
from persistent_actors.errors import PluginError
from persistent_actors.event_log import EventLog, EventPage, PersistenceIdPage, StoredEvent
from persistent_actors.journal import Journal
from persistent_actors.stored import MAX_SEQUENCE_NR, unstorable

if TYPE_CHECKING:
    import os

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_REFRESH_INTERVAL",
    "NO_OFFSET",
    "EventEnvelope",
    "EventLog",
    "EventLogReadJournal",
    "EventPage",
    "NoOffset",
    "Offset",
    "PersistenceIdPage",
    "ReadJournal",
    "Sequence",
    "StoredEvent",
    "SyncReadJournal",
    "open_read_journal",
]

T = TypeVar("T")

# Events fetched per round-trip to the store.
DEFAULT_PAGE_SIZE: Final = 500
MAX_PAGE_SIZE: Final = 1_000_000  # events per round trip, as the journals' replay_page_size
# Longest time an idle live query waits before it reads again even without a change signal
# (Akka's refresh-interval). Logs that notice changes wake it earlier.
DEFAULT_REFRESH_INTERVAL: Final = 3.0


# -- offsets and envelopes ------------------------------------------------------------------
class Offset(ABC):
    """Where a query by tag or over all events starts (exclusive). See `Sequence`, `NoOffset`."""

    @property
    @abstractmethod
    def ordering(self) -> int:
        """The global ordering after which the query resumes (0: from the beginning)."""


@dataclasses.dataclass(frozen=True, slots=True)
class NoOffset(Offset):
    """Start from the beginning of the log."""

    @property
    def ordering(self) -> int:
        """Always 0."""
        return 0


NO_OFFSET: Final = NoOffset()


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Sequence(Offset):
    """An offset in the journal's global order: a query from it starts *after* `value`."""

    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.value, int) or isinstance(self.value, bool) or self.value < 0:
            raise ValueError(f"Sequence offset must be an int >= 0, got {self.value!r}")

    @property
    def ordering(self) -> int:
        """The same as `value`."""
        return self.value


@dataclasses.dataclass(frozen=True, slots=True)
class EventEnvelope:
    """One event as a query delivers it.

    `offset` is the event's place in the global order (resume a query from it to continue
    after this event); `timestamp` is seconds since the epoch when it was persisted; `tags`
    are the tags it was stored with.
    """

    offset: Offset
    persistence_id: str
    sequence_nr: int
    event: Any
    timestamp: float
    tags: tuple[str, ...] = ()


class _LeadingPart(EventEnvelope):
    """An envelope that more envelopes of its stored event follow (a read adapter split it).

    Its offset is the event's, complete only with the last of them: projections store no
    offset after it (`more_follow`). Otherwise it is an `EventEnvelope` like any.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventEnvelope):
            return NotImplemented
        return _fields(self) == _fields(other)

    __hash__ = EventEnvelope.__hash__

    def __repr__(self) -> str:  # the dataclass repr starts with the class's own name
        return "EventEnvelope" + EventEnvelope.__repr__(self).removeprefix("_LeadingPart")


def _fields(envelope: EventEnvelope) -> tuple[Any, ...]:
    return (envelope.offset, envelope.persistence_id, envelope.sequence_nr, envelope.event,
            envelope.timestamp, envelope.tags)


def more_follow(envelope: EventEnvelope) -> bool:
    """True if more envelopes of `envelope`'s stored event follow it (a read adapter split it).

    A consumer that stores offsets stores one only after the last of them: the offset names
    the stored event, and resuming after it skips every envelope of that event.
    """
    return type(envelope) is _LeadingPart


# -- the consumer's API ---------------------------------------------------------------------
class ReadJournal(ABC):
    """Queries over a journal (Akka.NET's read journal with all of its query interfaces).

    Every query is an async generator of `EventEnvelope`s (or ids); iterate with ``async for``
    and leave early whenever you like (``aclose()`` a live query you stop pulling from, or
    use ``contextlib.aclosing``). Close the read journal when done (``async with``).
    """

    @abstractmethod
    def current_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int = 0,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
    ) -> AsyncGenerator[EventEnvelope, None]:
        """Events of one id with ``from <= sequence_nr <= to`` stored now, in order; then end."""

    @abstractmethod
    def events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int = 0,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
    ) -> AsyncGenerator[EventEnvelope, None]:
        """Like the current query, then new events as they are stored; ends at `to_sequence_nr`."""

    @abstractmethod
    def current_events_by_tag(self, tag: str,
                              offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """Events stored with `tag` after `offset` (exclusive), in global order; then end."""

    @abstractmethod
    def events_by_tag(self, tag: str,
                      offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """Like the current query, then new tagged events as they are stored; never ends."""

    @abstractmethod
    def current_all_events(self, offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """Every event after `offset` (exclusive), in global order; then end."""

    @abstractmethod
    def all_events(self, offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """Like the current query, then every new event as it is stored; never ends."""

    @abstractmethod
    def current_persistence_ids(self) -> AsyncGenerator[str, None]:
        """Each persistence id with stored events (deleted ones too), once; then end."""

    @abstractmethod
    def persistence_ids(self) -> AsyncGenerator[str, None]:
        """Like the current query, then each new id once as its first event is stored."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release resources; idempotent."""

    async def __aenter__(self) -> ReadJournal:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _check_pid(persistence_id: Any) -> None:
    if not isinstance(persistence_id, str) or not persistence_id:
        raise ValueError(f"persistence_id must be a non-empty str, got {persistence_id!r}")
    _check_text("persistence_id", persistence_id)


def _check_text(name: str, text: str) -> None:
    """Refuse a str no journal stores (`unstorable`), the same way on every plugin."""
    reason = unstorable(text)
    if reason is not None:
        raise ValueError(f"{name} {text[:80]!r} cannot be stored ({reason}): no event can "
                         "have it")


def _check_nr(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def _check_offset(offset: Any) -> int:
    if not isinstance(offset, NoOffset | Sequence):
        raise TypeError(f"offset must be NoOffset() or Sequence(n), got {offset!r}")
    return offset.ordering


class EventLogReadJournal(ReadJournal):
    """A `ReadJournal` over any `EventLog`: paging, decoding, read adapters and live waiting.

    Args:
        log: the journal's event log.
        adapters: the journal's event adapters (read adapters apply to every query).
        page_size: events fetched per round-trip.
        refresh_interval: the longest an idle live query waits before reading again even
            without a change signal from the log.

    """

    def __init__(self, log: EventLog, adapters: EventAdapters | None = None, *,
                 page_size: int = DEFAULT_PAGE_SIZE,
                 refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> None:
        if not isinstance(page_size, int) or isinstance(page_size, bool) or \
                not 1 <= page_size <= MAX_PAGE_SIZE:  # (10**20 failed inside SQLite)
            raise ValueError(f"page_size must be an int in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        if not isinstance(refresh_interval, int | float) or isinstance(refresh_interval, bool) \
                or not 0 < refresh_interval < math.inf:  # NaN fails too: it busy-looped
            raise ValueError(f"refresh_interval must be a positive, finite number of seconds, "
                             f"got {refresh_interval!r}")
        self.log = log
        self.adapters = adapters if adapters is not None else EventAdapters()
        self.page_size = page_size
        self.refresh_interval = float(refresh_interval)

    async def close(self) -> None:
        """Close the event log."""
        await self.log.close()

    def _envelopes(self, stored: StoredEvent) -> list[EventEnvelope]:
        repr_ = stored.event
        offset = Sequence(stored.ordering)
        events = self.adapters.from_journal(repr_)
        last = len(events) - 1
        return [(EventEnvelope if i == last else _LeadingPart)(
                    offset, repr_.persistence_id, repr_.sequence_nr, event, repr_.timestamp,
                    repr_.tags)
                for i, event in enumerate(events)]

    # -- by persistence id -----------------------------------------------------------------
    def current_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int = 0,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
    ) -> AsyncGenerator[EventEnvelope, None]:
        """See `ReadJournal.current_events_by_persistence_id`."""
        return self._by_persistence_id(persistence_id, from_sequence_nr, to_sequence_nr,
                                       live=False)

    def events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int = 0,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
    ) -> AsyncGenerator[EventEnvelope, None]:
        """See `ReadJournal.events_by_persistence_id`."""
        return self._by_persistence_id(persistence_id, from_sequence_nr, to_sequence_nr,
                                       live=True)

    async def _by_persistence_id(self, persistence_id: str, from_sequence_nr: int,
                                 to_sequence_nr: int, *, live: bool,
                                 ) -> AsyncGenerator[EventEnvelope, None]:
        _check_pid(persistence_id)
        _check_nr("from_sequence_nr", from_sequence_nr)
        _check_nr("to_sequence_nr", to_sequence_nr)
        next_nr = max(from_sequence_nr, 1)
        bound: int | None = None  # a current query sees only what was stored when it began
        while next_nr <= to_sequence_nr:
            page = await self.log.fetch_events_by_persistence_id(
                persistence_id, next_nr, to_sequence_nr, self.page_size, max_ordering=bound)
            if not live and bound is None:
                bound = page.highest_ordering
            for stored in page.events:
                # Paging by sequence number (not ordering) keeps the id's own order.
                next_nr = stored.event.sequence_nr + 1
                for envelope in self._envelopes(stored):
                    yield envelope
            if len(page.events) == self.page_size:
                continue
            if not live:
                return
            if next_nr <= to_sequence_nr:
                await self.log.wait_for_change(page.highest_ordering, self.refresh_interval)

    # -- by tag and all events -------------------------------------------------------------
    def current_events_by_tag(self, tag: str,
                              offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """See `ReadJournal.current_events_by_tag`."""
        return self._by_ordering(offset, _checked_tag(tag), live=False)

    def events_by_tag(self, tag: str,
                      offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """See `ReadJournal.events_by_tag`."""
        return self._by_ordering(offset, _checked_tag(tag), live=True)

    def current_all_events(self, offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """See `ReadJournal.current_all_events`."""
        return self._by_ordering(offset, None, live=False)

    def all_events(self, offset: Offset = NO_OFFSET) -> AsyncGenerator[EventEnvelope, None]:
        """See `ReadJournal.all_events`."""
        return self._by_ordering(offset, None, live=True)

    async def _by_ordering(self, offset: Offset, tag: str | None, *,
                           live: bool) -> AsyncGenerator[EventEnvelope, None]:
        after = _check_offset(offset)
        bound: int | None = None
        while True:
            page = await self.log.fetch_events(after, self.page_size, tag=tag,
                                               max_ordering=bound)
            if not live and bound is None:
                bound = page.highest_ordering
            for stored in page.events:
                for envelope in self._envelopes(stored):
                    yield envelope
            # Not the last event's ordering: the page may have scanned past non-matching ones.
            after = max(after, page.scanned_to)
            if bound is not None and after >= bound:
                return
            if after >= page.highest_ordering:
                await self.log.wait_for_change(page.highest_ordering, self.refresh_interval)

    # -- persistence ids -------------------------------------------------------------------
    def current_persistence_ids(self) -> AsyncGenerator[str, None]:
        """See `ReadJournal.current_persistence_ids`."""
        return self._persistence_ids(live=False)

    def persistence_ids(self) -> AsyncGenerator[str, None]:
        """See `ReadJournal.persistence_ids`."""
        return self._persistence_ids(live=True)

    async def _persistence_ids(self, *, live: bool) -> AsyncGenerator[str, None]:
        after = 0
        bound: int | None = None
        while True:
            page = await self.log.fetch_persistence_ids(after, self.page_size,
                                                        max_ordering=bound)
            if not live and bound is None:
                bound = page.highest_ordering
            for _, persistence_id in page.ids:
                yield persistence_id
            after = max(after, page.scanned_to)
            if bound is not None and after >= bound:
                return
            if after >= page.highest_ordering:
                await self.log.wait_for_change(page.highest_ordering, self.refresh_interval)


def _checked_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty str, got {tag!r}")
    _check_text("tag", tag)
    return tag


# -- getting one ----------------------------------------------------------------------------
def standalone_event_log(config: PluginConfig) -> EventLog | None:
    """The journal's own `EventLog` that needs no actor system (`Journal.open_event_log`)."""
    cls = resolve_plugin(JOURNAL, config.spec)
    log = cls.open_event_log(config.settings)
    if log is not None and not isinstance(log, EventLog):
        raise PluginError(f"{cls.__qualname__}.open_event_log returned {type(log).__name__}, "
                          "not an EventLog")
    return log


def connect_read_journal(config: PluginConfig, hosted: Callable[[str], EventLog] | None, *,
                         page_size: int = DEFAULT_PAGE_SIZE,
                         refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> ReadJournal:
    """Build the read journal of `config`: the plugin's standalone log, else `hosted(id)`.

    Raises:
        PluginError: the journal plugin supports no queries (or needs a running system).

    """
    log = standalone_event_log(config)
    if log is None:
        cls = resolve_plugin(JOURNAL, config.spec)
        if cls.event_log is Journal.event_log:
            raise PluginError(f"journal plugin {config.spec!r} (journal {config.plugin_id!r}) "
                              "does not support queries: it offers no EventLog")
        if hosted is None:
            raise PluginError(f"journal plugin {config.spec!r} keeps its events inside the actor "
                              "system: query it with system.read_journal()")
        log = hosted(config.plugin_id)
    return EventLogReadJournal(log, event_adapters_for(config.adapters), page_size=page_size,
                               refresh_interval=refresh_interval)


def open_read_journal(config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
                      plugin_id: str | None = None, *, page_size: int = DEFAULT_PAGE_SIZE,
                      refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> ReadJournal:
    """Open the read journal of a configured journal without starting an actor system.

    Takes the same config as `ActorSystem` (a mapping, a TOML path, or None for the
    environment). Works for journals that store outside the system (SQLite), so a consumer
    process can read what another process writes.

    Raises:
        ConfigError: the config is invalid.
        PluginError: the journal cannot be queried without its actor system (in-memory).

    """
    settings = load_settings(config)
    return connect_read_journal(settings.plugin(JOURNAL, plugin_id), None, page_size=page_size,
                                refresh_interval=refresh_interval)


# -- the blocking form, for scripts -----------------------------------------------------------
async def _collect(source: AsyncIterator[T]) -> list[T]:
    return [item async for item in source]


async def _next(source: AsyncIterator[T]) -> T:
    return await anext(source)


async def _aclose_when_idle(source: Any) -> None:
    """``source.aclose()`` once the generator no longer runs (a cancelled `_next` may still)."""
    for _ in range(1000):  # a cancelled step ends within a few loop turns
        if not getattr(source, "ag_running", False):
            break
        await asyncio.sleep(0.001)
    await source.aclose()


class SyncReadJournal:
    """A `ReadJournal` for scripts without asyncio.

    Current queries return lists, live ones blocking iterators. It runs the read journal on an
    event loop in a thread of its own. `close` also ends the live iterators other threads are
    blocked in (they stop as if the query had ended); an interrupt (Ctrl-C) in a blocked
    iteration cancels the query and propagates as itself.
    """

    def __init__(self, read_journal: ReadJournal) -> None:
        if not isinstance(read_journal, ReadJournal):
            # Accepted before, it failed at the first query with an AttributeError, after a
            # thread and its event loop had been started for it.
            raise TypeError(f"SyncReadJournal wraps a ReadJournal (system.read_journal() or "
                            f"open_read_journal(config)), got {read_journal!r}")
        self.read_journal = read_journal
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="persistent_actors-read-journal", daemon=True)
        self._thread.start()
        self._closed = False
        self._closing = False  # `close` began: iterators it cancels end quietly
        self._pending: set[concurrent.futures.Future[Any]] = set()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise PluginError("this SyncReadJournal is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        self._pending.add(future)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupt while waiting: the query's task is cancelled too
            raise
        finally:
            self._pending.discard(future)

    def _iterate(self, source: AsyncIterator[T]) -> Generator[T, None, None]:
        try:
            while True:
                try:
                    item = self._run(_next(source))
                except StopAsyncIteration:
                    return
                except concurrent.futures.CancelledError:
                    if self._closing:
                        return  # `close` ended it
                    raise
                yield item
        finally:
            # At interpreter exit (an iterator still held by a variable is finalized then) the
            # loop thread runs no more: waiting for it hung the exit for ever.
            if hasattr(source, "aclose") and not self._closing and not sys.is_finalizing():
                self._run(_aclose_when_idle(source))

    def current_events_by_persistence_id(self, persistence_id: str, from_sequence_nr: int = 0,
                                         to_sequence_nr: int = MAX_SEQUENCE_NR,
                                         ) -> list[EventEnvelope]:
        """See `ReadJournal.current_events_by_persistence_id`."""
        return self._run(_collect(self.read_journal.current_events_by_persistence_id(
            persistence_id, from_sequence_nr, to_sequence_nr)))

    def events_by_persistence_id(self, persistence_id: str, from_sequence_nr: int = 0,
                                 to_sequence_nr: int = MAX_SEQUENCE_NR,
                                 ) -> Generator[EventEnvelope, None, None]:
        """See `ReadJournal.events_by_persistence_id`."""
        return self._iterate(self.read_journal.events_by_persistence_id(
            persistence_id, from_sequence_nr, to_sequence_nr))

    def current_events_by_tag(self, tag: str, offset: Offset = NO_OFFSET) -> list[EventEnvelope]:
        """See `ReadJournal.current_events_by_tag`."""
        return self._run(_collect(self.read_journal.current_events_by_tag(tag, offset)))

    def events_by_tag(self, tag: str,
                      offset: Offset = NO_OFFSET) -> Generator[EventEnvelope, None, None]:
        """See `ReadJournal.events_by_tag`."""
        return self._iterate(self.read_journal.events_by_tag(tag, offset))

    def current_all_events(self, offset: Offset = NO_OFFSET) -> list[EventEnvelope]:
        """See `ReadJournal.current_all_events`."""
        return self._run(_collect(self.read_journal.current_all_events(offset)))

    def all_events(self, offset: Offset = NO_OFFSET) -> Generator[EventEnvelope, None, None]:
        """See `ReadJournal.all_events`."""
        return self._iterate(self.read_journal.all_events(offset))

    def current_persistence_ids(self) -> list[str]:
        """See `ReadJournal.current_persistence_ids`."""
        return self._run(_collect(self.read_journal.current_persistence_ids()))

    def persistence_ids(self) -> Generator[str, None, None]:
        """See `ReadJournal.persistence_ids`."""
        return self._iterate(self.read_journal.persistence_ids())

    def close(self) -> None:
        """Close the read journal and stop the loop thread; idempotent.

        Live iterators that other threads are blocked in end (their queries are cancelled).
        """
        if self._closed:
            return
        self._closing = True
        for waiting in list(self._pending):
            waiting.cancel()
        try:
            self._run(self.read_journal.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> SyncReadJournal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
