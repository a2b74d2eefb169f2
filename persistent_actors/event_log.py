"""Plugin API, read side: a journal's stored events in one global order.

A journal plugin that supports Persistence Query offers an `EventLog` in one of two ways,
both declared on `persistent_actors.journal.Journal`:

* ``Journal.open_event_log(settings)`` (classmethod): a log that reads the store directly,
  without an actor system (SQLite and PostgreSQL: another process can read the file or server);
* ``Journal.event_log()`` (instance method): the running journal's own log, reached through the
  actor system that hosts it (the in-memory journal: its events live in that process only).

**Global order.** Every stored event has an ``ordering``. The order must grow as a *visible
prefix*: once a reader can see the event at ordering n, it can see every event below n, and no
later commit inserts below n. Resuming a query by offset is exact only under that rule (Akka.NET
issue 2257: a SQL journal whose identity column was assigned at insert but committed out of
order made offset paging skip events).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from abc import ABC, abstractmethod

from persistent_actors.stored import PersistentRepr

__all__ = [
    "ChangeSignal", "EventLog", "EventPage", "PersistenceIdPage", "StoredEvent", "change_signal",
]


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """Plugin API: a stored event and its `ordering` in the journal's global order."""

    ordering: int
    event: PersistentRepr


@dataclasses.dataclass(frozen=True, slots=True)
class EventPage:
    """Plugin API: one page of a fetch.

    `highest_ordering` is the log's highest ordering when the page was read (every returned
    event is at or below it). `scanned_to` (ordering-based fetches) is how far the page got:
    every matching event up to it has been returned now or before, so the next page starts
    after it.
    """

    events: tuple[StoredEvent, ...]
    highest_ordering: int
    scanned_to: int


@dataclasses.dataclass(frozen=True, slots=True)
class PersistenceIdPage:
    """Plugin API: persistence ids with the ordering of their first event; see `EventPage`."""

    ids: tuple[tuple[int, str], ...]
    highest_ordering: int
    scanned_to: int


class EventLog(ABC):
    """Plugin API: a journal's stored events in one global order, as the read side needs them.

    Contract (the query TCK, `persistent_actors.testing.ReadJournalSpec`, checks it):

    * orderings are positive, unique and grow as a *visible prefix* (see the module docstring);
    * deleted events are never returned, and `limit` counts only returned events;
    * a fetch with ``max_ordering=None`` reads up to the current highest ordering;
    * every fetch is consistent on its own (one read of the store).
    """

    @abstractmethod
    async def highest_ordering(self) -> int:
        """The highest ordering stored so far (0 if none), deleted events included."""

    @abstractmethod
    async def fetch_events(self, after_ordering: int, limit: int, *, tag: str | None = None,
                           max_ordering: int | None = None) -> EventPage:
        """Events with ``after_ordering < ordering <= max_ordering``, by ordering, at most `limit`.

        With `tag`, only events stored with that tag.
        """

    @abstractmethod
    async def fetch_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, limit: int, *,
        max_ordering: int | None = None,
    ) -> EventPage:
        """Events of one id with ``from <= sequence_nr <= to`` (inclusive), by sequence number.

        Only events with ``ordering <= max_ordering``; at most `limit`. `scanned_to` is unused.
        """

    @abstractmethod
    async def fetch_persistence_ids(self, after_ordering: int, limit: int, *,
                                    max_ordering: int | None = None) -> PersistenceIdPage:
        """Ids whose first event has ``after < ordering <= max_ordering``, in that order."""

    async def page_bound(self, max_ordering: int | None) -> tuple[int, int]:
        """The highest ordering now, and the upper bound a page read next may use.

        The highest is read first: by the visible-prefix rule everything at or below it has
        committed, so a page bounded by it is final. Logs whose fetches are one consistent read
        of their own (the in-memory journal) need not use it.
        """
        highest = await self.highest_ordering()
        return highest, highest if max_ordering is None else min(max_ordering, highest)

    async def wait_for_change(self, highest_ordering: int, timeout: float) -> None:
        """Return when events above `highest_ordering` may exist, or after `timeout` seconds.

        May return early. This default just sleeps, which makes an idle live query re-read
        every `refresh_interval`; implementations that can notice commits override it.
        """
        del highest_ordering
        await asyncio.sleep(timeout)

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release connections; idempotent."""


# -- waking live queries -------------------------------------------------------------------------
def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChangeSignal:
    """Plugin API: process-local change notifications between threads and event loops, by key.

    A writer calls `notify(key)` after it committed; a live query (`EventLog.wait_for_change`)
    waits with `wait(key, generation, timeout)`. The generation counter closes the race between
    "I read everything" and "I start waiting": a reader takes `generation(key)` *before* it
    reads, and `wait` returns at once if a commit happened since. It helps only where the writer
    runs in the reader's process (the SQLite journal on the simple base, a plugin actor hosting
    the in-memory journal); across processes a plugin needs its own cheap check (the SQLite
    plugin polls ``PRAGMA data_version``). Use the shared instance `change_signal`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def generation(self, key: str) -> int:
        """How many times `key` was notified so far."""
        with self._lock:
            return self._generations.get(key, 0)

    def notify(self, key: str) -> None:
        """Record a change of `key` and wake everyone waiting on it."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            waiters = self._waiters.pop(key, None)
        if not waiters:  # the usual case: no live query waits
            return
        for loop, future in waiters:
            # The waiter's loop may have closed meanwhile: nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    async def wait(self, key: str, generation: int, timeout: float) -> bool:
        """Wait until `key` is notified after `generation`; False if `timeout` passed first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._generations.get(key, 0) != generation:
                return True
            self._waiters.setdefault(key, []).append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(key)
                if waiting is not None and entry in waiting:
                    waiting.remove(entry)
        return True


change_signal = ChangeSignal()
