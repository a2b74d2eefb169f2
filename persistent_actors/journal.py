"""Journal plugin API: the stored form of events and the coroutines every journal implements.

A journal never sees thespian messages: the runtime's plugin actor turns its protocol into calls on
this interface. Payloads arrive already serialized (msgpack bytes plus a manifest), so every plugin
stores the same bytes and none of them ever pickles.
"""

from __future__ import annotations

import contextvars
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, ClassVar, Final, TypeVar

from persistent_actors.errors import ConfigError, PluginError
from persistent_actors.event_log import EventLog
from persistent_actors.stored import MAX_SEQUENCE_NR, AtomicWrite, PersistentRepr, ReplayedRows

T = TypeVar("T")

__all__ = [
    "MAX_SEQUENCE_NR",
    "AtomicWrite",
    "EventLog",
    "Journal",
    "PersistentRepr",
    "ReplayedRows",
    "check_settings",
    "int_setting",
    "may_block",
    "replay_rows_of",
]

# Events per `ReplayedRows` page of the default `Journal.replay_rows`.
ROWS_PER_PAGE: Final = 500

# Set by the runtime's plugin host on the coroutines it runs (see `may_block`).
MAY_BLOCK: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "persistent_actors_may_block", default=False)


def may_block() -> bool:
    """Plugin API: True if the running coroutine may block its event loop for a short while.

    The runtime runs each plugin on an event loop of its own and waits for every operation, so
    nothing else needs that loop meanwhile: a plugin whose I/O blocks anyway (SQLite) may do
    it inline there, instead of paying two thread switches per call for a hop to a worker
    thread. False everywhere else, e.g. for a plugin used directly from application asyncio
    code, where blocking would stall the application.
    """
    return MAY_BLOCK.get()


def check_settings(owner: str, settings: Mapping[str, Any], allowed: Collection[str]) -> None:
    """Plugin API: raise `ConfigError` naming the first key of `settings` that `owner` lacks.

    A typo in a settings key would otherwise silently fall back to a default (for example a
    durability pragma), so every plugin (journal or snapshot store) rejects what it does not
    know: call it first thing in ``__init__``.
    """
    for key in settings:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            msg = f"{owner}: unknown setting {key!r} (known settings: {known})"
            raise ConfigError(msg)


def int_setting(owner: str, settings: Mapping[str, Any], key: str, default: int, *,
                minimum: int, maximum: int | None = None) -> int:
    """Plugin API: ``settings[key]`` (or `default`) as an int >= `minimum` (and <= `maximum`).

    Raises:
        ConfigError: the value is not an int (bools are not) or is out of range; the message
            names `owner` and `key`.

    """
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or \
            (maximum is not None and value > maximum):
        expected = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        msg = f"{owner}: setting {key!r} must be an int {expected}, got {value!r}"
        raise ConfigError(msg)
    return value


class Journal(ABC):
    """Plugin API: an asynchronous event journal.

    Contract (the plugin TCK, `persistent_actors.testing.JournalSpec`, checks all of it):

    * each `AtomicWrite` is stored entirely or not at all;
    * writes of one persistence id are never reordered;
    * the highest sequence number of a persistence id never decreases, not even after
      `delete_messages_to` removed every event;
    * bounds are inclusive.

    All coroutines run on one event loop owned by the runtime; they are never called concurrently
    for the same persistence id. That loop runs only while the runtime waits for one of them:
    a task the plugin leaves running in the background makes progress during later calls only.
    """

    # The runtime may run the first step of this class's coroutines outside an asyncio task
    # when `may_block()` is set (about 1.5 us less per operation): True only where that step
    # never calls ``asyncio.current_task()`` or ``asyncio.timeout()``. What the step awaits
    # then runs in a task, as usual. Read from the concrete class's own body only: a subclass
    # adds code of its own, so it does not inherit a True.
    inline_first_step: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        """Plugin API: validate `settings` (raise `ConfigError` naming a bad one); no I/O.

        The runtime also constructs every configured plugin once when the actor system
        starts, only to check its settings, so a constructor must not open anything.
        """
        self.settings: Mapping[str, Any] = dict(settings or {})

    def concurrent_writers(self) -> bool:
        """Plugin API: True if instances in many processes may write this store at once.

        That is: several instances of this class built from the same settings, each in a
        process of its own, may write (and delete) at the same time, each persistence id
        written by one instance at a time, and what one instance committed is what every
        other reads (a database file or server, not memory). The runtime then lets each
        shared host process (``[actor_system] host_processes``) write its actors' events with
        an instance of its own, with no trip to the journal's plugin process. Read from the
        concrete class's own body only (as `inline_first_step`): a subclass that adds code,
        such as a test journal that injects failures, is written from its plugin process.
        The default is False.
        """
        return False

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Plugin API: open connections; raise a clear error if the store is unusable."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Plugin API: release every resource; must be idempotent."""

    async def receive_plugin_internal(self, message: Any) -> Any:
        """Plugin API: handle a plugin-specific command (Akka's ``ReceivePluginInternal``).

        Reached through ``ActorSystem.plugin_command``; the persistence test kit uses it to
        change a test plugin's behaviour. The default accepts nothing.
        """
        raise PluginError(f"{type(self).__name__} accepts no plugin commands (got {message!r})")

    @classmethod
    def open_event_log(cls, settings: Mapping[str, Any] | None = None) -> EventLog | None:
        """Plugin API (read side): a log that reads the store without an actor system, or None.

        Override when another process can read the store directly (a file, a server); the
        read side then never goes through the actor system. See `persistent_actors.event_log`.
        """
        del settings
        return None

    def event_log(self) -> EventLog | None:
        """Plugin API (read side): this running journal's own log, or None (no queries).

        Used when `open_event_log` returns None: queries then reach the journal through the
        actor system that hosts it, between its write batches.
        """
        return None

    async def integrity_check(self) -> list[str]:
        """Plugin API: problems the store's own consistency check finds (default: none).

        For operators (``persistent-actors journal verify``): a database with a check of its
        own (SQLite's ``PRAGMA integrity_check``) returns one line per problem it reports.
        """
        return []

    @abstractmethod
    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: store `writes`, returning one entry per write, in order.

        `None` means stored; an exception means that write was *rejected* (not stored, e.g. a
        sequence-number conflict) and the others are unaffected. Raising means every write
        *failed*, and whether any was stored is unknown.
        """

    @abstractmethod
    def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        """Plugin API: yield stored events with `from <= sequence_nr <= to`, at most `max_count`.

        Deleted events are skipped. Implementations stream (bounded memory), in sequence order.
        Optionally, `from_sequence_nr = -1` yields only the last live event up to `to` (the
        JVM's replay-only-last; the TCK flag `supports_replay_only_last` says a plugin does).
        """

    async def replay_rows(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[ReplayedRows]:
        """Plugin API (optional): the events `replay_messages` yields, as pages of columns.

        Recovery replays through this method: a plugin that overrides it hands over rows as
        its database returns them, without building a `PersistentRepr` per event. The same
        contract as `replay_messages` (bounds, `max_count`, deleted events skipped, sequence
        order, `from_sequence_nr = -1`); pages may have any size, none empty. The default
        groups what `replay_messages` yields; it is also used when a subclass overrides
        `replay_messages` but not this method (see `replay_rows_of`).
        """
        page: list[PersistentRepr] = []
        source = _generator(self, "replay_messages", self.replay_messages(
            persistence_id, from_sequence_nr, to_sequence_nr, max_count))
        async for repr_ in source:
            page.append(repr_)
            if len(page) >= ROWS_PER_PAGE:
                yield ReplayedRows.of(page)
                page = []
        if page:
            yield ReplayedRows.of(page)

    @abstractmethod
    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Plugin API: the highest sequence number ever stored for the id (0 if none).

        Deleted events still count: the result never decreases. `from_sequence_nr` is a hint
        that nothing below it needs to be read.
        """

    @abstractmethod
    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Plugin API: permanently delete events up to `to_sequence_nr` (inclusive)."""


def replay_rows_of(
    journal: Journal, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int,
    max_count: int,
) -> AsyncIterator[ReplayedRows]:
    """`journal.replay_rows(...)`, unless a subclass overrides only `replay_messages`.

    A class that changes `replay_messages` (a wrapper, a test plugin) but inherits the
    `replay_rows` of a plugin it extends would otherwise be bypassed: then the default of
    `Journal`, which reads through `replay_messages`, is used.
    """
    mro = type(journal).__mro__
    rows_owner = next(c for c in mro if "replay_rows" in c.__dict__)
    messages_owner = next(c for c in mro if "replay_messages" in c.__dict__)
    if issubclass(rows_owner, messages_owner):
        return _generator(journal, "replay_rows", journal.replay_rows(
            persistence_id, from_sequence_nr, to_sequence_nr, max_count))
    return Journal.replay_rows(journal, persistence_id, from_sequence_nr, to_sequence_nr,
                               max_count)


def _generator(journal: Journal, method: str, source: AsyncIterator[T]) -> AsyncIterator[T]:
    """`source`, unless the plugin wrote `method` as a coroutine instead of an async generator.

    ``async def`` returning a list gave "'async for' requires an object with __aiter__
    method, got coroutine" (and a "never awaited" warning), naming neither.
    """
    if inspect.iscoroutine(source):
        source.close()  # no "never awaited" warning on top
        raise TypeError(f"{type(journal).__qualname__}.{method} must be an async generator "
                        "(an async def that yields), not a coroutine")
    return source
