"""Queries of a journal whose events live inside the actor system (the in-memory journal).

The journal's data is in its plugin actor, which on the multiproc base is another OS process.
So the read side talks to that actor: `HostedEventLog` (facade side) sends `EventLogQuery`
messages, which `EventLogService` (inside the `PluginHost`) runs against the journal's
`EventLog` methods between write batches, so a read never sees half a batch.

Waiting for new events does not poll:

* in the plugin actor's own process (the simple base), the host fires a process-local
  `change_signal` after every batch it stored, and the waiting query wakes at once;
* from another process, the query sends `WaitForEvents`, which the host holds and answers as
  soon as a batch is stored (or after the timeout, so a vanished asker leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import functools
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log, portable_error
from persistent_actors.errors import AskTimeoutError, PluginError
from persistent_actors.event_log import EventLog, EventPage, PersistenceIdPage, change_signal
from persistent_actors.journal import Journal

__all__ = [
    "DescribeEventLog",
    "EventLogInfo",
    "EventLogQuery",
    "EventLogService",
    "HostedEventLog",
    "WaitForEvents",
]

# Seconds a remote live query's WaitForEvents is held by the plugin actor at most.
_REMOTE_WAIT: float = 5.0
# Extra seconds the asker waits for a reply beyond the request's own timeout.
_REPLY_SLACK: float = 30.0
# Worker threads of one HostedEventLog (each waiting remote live query holds one).
_MAX_THREADS: int = 32


# -- protocol --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class FetchEvents:
    """`EventLog.fetch_events` as a message."""

    after_ordering: int
    limit: int
    tag: str | None
    max_ordering: int | None

    def run(self, log_: EventLog) -> Awaitable[EventPage]:
        """Call the method."""
        return log_.fetch_events(self.after_ordering, self.limit, tag=self.tag,
                                 max_ordering=self.max_ordering)


@dataclasses.dataclass(frozen=True, slots=True)
class FetchEventsByPersistenceId:
    """`EventLog.fetch_events_by_persistence_id` as a message."""

    persistence_id: str
    from_sequence_nr: int
    to_sequence_nr: int
    limit: int
    max_ordering: int | None

    def run(self, log_: EventLog) -> Awaitable[EventPage]:
        """Call the method."""
        return log_.fetch_events_by_persistence_id(
            self.persistence_id, self.from_sequence_nr, self.to_sequence_nr, self.limit,
            max_ordering=self.max_ordering)


@dataclasses.dataclass(frozen=True, slots=True)
class FetchPersistenceIds:
    """`EventLog.fetch_persistence_ids` as a message."""

    after_ordering: int
    limit: int
    max_ordering: int | None

    def run(self, log_: EventLog) -> Awaitable[PersistenceIdPage]:
        """Call the method."""
        return log_.fetch_persistence_ids(self.after_ordering, self.limit,
                                          max_ordering=self.max_ordering)


@dataclasses.dataclass(frozen=True, slots=True)
class HighestOrdering:
    """`EventLog.highest_ordering` as a message."""

    def run(self, log_: EventLog) -> Awaitable[int]:
        """Call the method."""
        return log_.highest_ordering()


EventLogCall = FetchEvents | FetchEventsByPersistenceId | FetchPersistenceIds | HighestOrdering


@dataclasses.dataclass(frozen=True, slots=True)
class EventLogQuery:
    """Facade -> plugin actor: run `call`; answered with a `Reply` of its result or a Failure."""

    call: EventLogCall
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class WaitForEvents:
    """Facade -> plugin actor: reply (the highest ordering) once it exceeds `highest_ordering`.

    Answered at the latest after `timeout` seconds.
    """

    highest_ordering: int
    timeout: float
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class DescribeEventLog:
    """Facade -> plugin actor: answered with `EventLogInfo`, or a Failure if no EventLog."""

    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class EventLogInfo:
    """Where the plugin actor runs, and the key of its process-local change signal."""

    process_id: int
    signal_key: str


EVENT_LOG_MESSAGES = (EventLogQuery, WaitForEvents, DescribeEventLog)


# -- plugin actor side -------------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class _Waiter:
    requester: Any
    highest_ordering: int
    correlation_id: str


def _event_log_of(journal: Any) -> EventLog | None:
    """The hosted journal's read-side log (`Journal.event_log`), or None."""
    return journal.event_log() if isinstance(journal, Journal) else None


class EventLogService:
    """Answers the read side's messages inside a `PluginHost` (see the module docstring).

    Args:
        send: the host's ``send(address, message)``.
        wakeup_after: the host's ``wakeupAfter(delay, payload)``.
        run: runs a coroutine on the plugin's event loop and returns its result.

    """

    def __init__(self, send: Callable[[Any, Any], None],
                 wakeup_after: Callable[[datetime.timedelta, Any], None],
                 run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self._send = send
        self._wakeup_after = wakeup_after
        self._run = run
        self._signal_key = f"event-log:{uuid.uuid4().hex}"
        self._waiters: dict[str, _Waiter] = {}

    def handle(self, message: Any, sender: Any, journal: Any) -> None:
        """Answer one of `EVENT_LOG_MESSAGES` from `sender`."""
        event_log = _event_log_of(journal)
        if event_log is None:
            self._send(sender, p.Reply(message.correlation_id, p.Failure(PluginError(
                f"the journal plugin {type(journal).__name__} supports no queries (its "
                "event_log() returns None)"))))
            return
        journal = event_log
        match message:
            case DescribeEventLog(correlation_id):
                self._send(sender, p.Reply(correlation_id,
                                           EventLogInfo(os.getpid(), self._signal_key)))
            case EventLogQuery(call, correlation_id):
                try:
                    result: Any = self._run(_as_coroutine(call.run(journal)))
                except Exception as e:  # noqa: BLE001 - reported to the asker
                    result = p.Failure(portable_error(e))
                self._send(sender, p.Reply(correlation_id, result))
            case WaitForEvents(highest, timeout, correlation_id):
                current = self._highest(journal)
                if current is None or current > highest:
                    self._send(sender, p.Reply(correlation_id, current or 0))
                    return
                self._waiters[correlation_id] = _Waiter(sender, highest, correlation_id)
                self._wakeup_after(datetime.timedelta(seconds=max(0.0, timeout)),
                                   correlation_id)

    def on_wakeup(self, payload: Any) -> bool:
        """Release a `WaitForEvents` whose timeout passed; False if `payload` is not ours."""
        if not isinstance(payload, str) or payload not in self._waiters:
            return False
        waiter = self._waiters.pop(payload)
        self._send(waiter.requester, p.Reply(waiter.correlation_id, waiter.highest_ordering))
        return True

    def written(self, journal: Any) -> None:
        """A batch was stored: wake local waiters and answer the remote ones it satisfies."""
        journal = _event_log_of(journal)
        if journal is None:
            return
        change_signal.notify(self._signal_key)
        if not self._waiters:
            return
        current = self._highest(journal)
        if current is None:
            return
        for key, waiter in list(self._waiters.items()):
            if current > waiter.highest_ordering:
                del self._waiters[key]
                self._send(waiter.requester, p.Reply(waiter.correlation_id, current))

    def _highest(self, journal: EventLog) -> int | None:
        try:
            result: int = self._run(journal.highest_ordering())
        except Exception:  # noqa: BLE001 - the waiter then re-reads and sees the error
            log.debug("highest_ordering failed", exc_info=True)
            return None
        return result


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


# -- facade side ---------------------------------------------------------------------------------
class Request(Protocol):
    """The external side's blocking request (`Endpoint.request`), as the hosted log uses it."""

    def __call__(self, target: Any, build: Callable[[str], Any], timeout: float, what: str,
                 cancel: threading.Event | None = None) -> Any:
        """Send ``build(correlation_id)`` to `target`; return the reply (None if cancelled)."""


class HostedEventLog(EventLog):
    """An `EventLog` whose data lives in a plugin actor; every call is a message to it.

    Calls block a worker thread (the endpoint's request is synchronous), never the caller's
    event loop. The threads are this log's own, because a waiting remote live query holds one:
    sharing the loop's small default executor would let a few waiting queries starve every
    other `asyncio.to_thread` user. A cancelled call gives its thread back within one listen
    slice.
    """

    def __init__(self, request: Request, address: Any, info: EventLogInfo,
                 timeout: float = 60.0) -> None:
        self._request = request
        self._address = address
        self._info = info
        self._timeout = timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(
            _MAX_THREADS, thread_name_prefix="persistent_actors-query")

    @classmethod
    def connect(cls, request: Request, address: Any) -> HostedEventLog:
        """Ask the plugin actor at `address` how to reach its log (blocking)."""
        reply = request(address, DescribeEventLog, 60.0, "describing the journal's event log")
        if isinstance(reply, p.Failure):
            raise reply.error
        return cls(request, address, reply)

    async def _call(self, build: Callable[[str], Any], timeout: float, what: str) -> Any:
        cancel = threading.Event()
        call = functools.partial(self._request, self._address, build, timeout, what,
                                 cancel=cancel)
        try:
            reply = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except asyncio.CancelledError:
            cancel.set()
            raise
        if isinstance(reply, p.Failure):
            raise reply.error
        return reply

    async def _query(self, call: EventLogCall) -> Any:
        return await self._call(lambda corr: EventLogQuery(call, corr), self._timeout,
                                f"querying the journal ({type(call).__name__})")

    async def close(self) -> None:
        """Let the worker threads go (a waiting one ends within a listen slice)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def highest_ordering(self) -> int:
        """See `EventLog.highest_ordering`."""
        result: int = await self._query(HighestOrdering())
        return result

    async def fetch_events(self, after_ordering: int, limit: int, *, tag: str | None = None,
                           max_ordering: int | None = None) -> EventPage:
        """See `EventLog.fetch_events`."""
        page: EventPage = await self._query(FetchEvents(after_ordering, limit, tag, max_ordering))
        return page

    async def fetch_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, limit: int, *,
        max_ordering: int | None = None,
    ) -> EventPage:
        """See `EventLog.fetch_events_by_persistence_id`."""
        page: EventPage = await self._query(FetchEventsByPersistenceId(
            persistence_id, from_sequence_nr, to_sequence_nr, limit, max_ordering))
        return page

    async def fetch_persistence_ids(self, after_ordering: int, limit: int, *,
                                    max_ordering: int | None = None) -> PersistenceIdPage:
        """See `EventLog.fetch_persistence_ids`."""
        page: PersistenceIdPage = await self._query(
            FetchPersistenceIds(after_ordering, limit, max_ordering))
        return page

    async def wait_for_change(self, highest_ordering: int, timeout: float) -> None:
        """Wake on the plugin actor's signal (same process) or its answer to a long poll."""
        if self._info.process_id == os.getpid():
            key = self._info.signal_key
            generation = change_signal.generation(key)
            # A batch stored after the caller's read but before `generation` was taken.
            if await self.highest_ordering() > highest_ordering:
                return
            await change_signal.wait(key, generation, timeout)
            return
        wait = min(timeout, _REMOTE_WAIT)
        try:
            await self._call(lambda corr: WaitForEvents(highest_ordering, wait, corr),
                             wait + _REPLY_SLACK, "waiting for new events")
        except AskTimeoutError:
            return  # the next fetch reports a dead plugin actor, if that is what happened
