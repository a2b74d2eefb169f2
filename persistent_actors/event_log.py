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
import dataclasses
from abc import ABC, abstractmethod

from persistent_actors.stored import PersistentRepr

__all__ = ["EventLog", "EventPage", "PersistenceIdPage", "StoredEvent"]


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

    async def wait_for_change(self, highest_ordering: int, timeout: float) -> None:
        """Return when events above `highest_ordering` may exist, or after `timeout` seconds.

        May return early. This default just sleeps, which makes an idle live query re-read
        every `refresh_interval`; implementations that can notice commits override it.
        """
        del highest_ordering
        await asyncio.sleep(timeout)

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release connections; idempotent."""
