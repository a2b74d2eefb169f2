"""A shared host's own instances of its actors' journals: writes without a process hop.

On multiproc-tcp a journal plugin runs in a process of its own (`PluginHost`), so each write
of an actor in a shared host (``[actor_system] host_processes``) costs two TCP frames and two
pickles, and the host waits for the journal's round trip before the actor's next command. A
journal whose plugin declares `Journal.concurrent_writers` (a file or a server that many
processes may write at once: the SQLite and PostgreSQL journals) is therefore also started
inside each shared host that has actors using it, and the host writes its actors' events with
that instance: the writes its actors request while it handles what its sockets hold are
gathered and stored in one ``write_messages`` (group commit, as the plugin host does), once
the transport has read what was ready (`lean_loop.after_reads`), and the results are handed
to the actors as their next messages.

Everything else (replay, deletes, the highest sequence number, plugin commands, queries) still
goes to the journal's plugin process, which reads what the hosts committed. So that a read
never overtakes a write of the same host, whatever the host gathered is written before any
other request to that journal leaves (a replay after a restart sees every earlier write).
Writes of one persistence id come from one host at a time (one live actor per id), in order.
A journal that cannot start in the host, or does not declare `concurrent_writers` in its own
class body, is used through its plugin process, as before.

The host does not wait for its commits: a thread of its own (`_Committer`) stores each
gathered batch while the host goes on reading its sockets and running its actors (the
commit's fsync, and its wait for another process's commit on the same file, take no turn
of the host's loop). The host's loop learns that a commit finished through a descriptor it
watches (`lean_loop.when_readable`) and hands the results to the actors; what the actors
wrote meanwhile was gathered and goes next, as one batch. One commit is in flight at a time,
so the batches of a journal are stored, and answered, in the order they were gathered. A
request that must not overtake the writes (see above) and the host's stop wait for the
commit in flight and write what is gathered at once (`LocalJournals.flush`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log
from persistent_actors._thespian.moved import Move
from persistent_actors._thespian.moved import address_key as _key
from persistent_actors._thespian.plugin_host import close_plugin, start_plugin, write_batch
from persistent_actors._thespian.wake_pipe import WakePipe
from persistent_actors.errors import JournalError
from persistent_actors.journal import Journal

__all__ = ["LocalJournals"]


_ABSENT: Any = object()


def _concurrent(plugin: Any) -> bool:
    """True if `plugin`'s own class declares it may be written from many processes."""
    declared = vars(type(plugin)).get("concurrent_writers")
    return isinstance(plugin, Journal) and callable(declared) and plugin.concurrent_writers()


def _not_written(_journal: Journal) -> None:
    """Nothing in a host process waits for a local commit (live queries read the store)."""


class _Local:
    """One started journal instance and the writes gathered for it."""

    __slots__ = ("address", "journal", "loop", "name", "pending")

    def __init__(self, address: Any, journal: Journal, loop: Any, name: str) -> None:
        self.address = address
        self.journal = journal
        self.loop = loop
        self.name = name
        self.pending: list[p.WriteMessages] = []


_Answer = Callable[[Any, p.WriteMessagesResult], None]
# A commit the committer finished: the journal, its batch and the outcomes per request.
_Done = tuple[_Local, list[p.WriteMessages], list[tuple[p.WriteOutcome, ...]]]


class _Committer:
    """The thread that stores a host's batches while the host goes on; it signals through `fd`.

    Each finished commit is queued and signalled down a pipe, whose read end (`fd`) the host's
    loop watches; `take` drains both.
    """

    def __init__(self, name: str) -> None:
        self._pipe = WakePipe()
        self.fd = self._pipe.fd
        self._jobs: queue.SimpleQueue[tuple[_Local, list[p.WriteMessages]] | None] = \
            queue.SimpleQueue()
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, local: _Local, batch: list[p.WriteMessages]) -> None:
        """Store `batch` in `local`'s journal on the committer's thread."""
        self._jobs.put((local, batch))

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            local, batch = job
            try:
                outcomes = write_batch(local.loop.run, local.journal, batch, _not_written)
            except BaseException as e:  # noqa: BLE001 - every write of the batch fails with it
                # Answered as a failed write_messages is (each item as write_batch maps it).
                outcomes = write_batch(_failing(e), local.journal, batch, _not_written)
            self._done.put((local, batch, outcomes))
            self._pipe.signal()

    def take(self) -> list[_Done]:
        """The commits finished so far (none waits); drains the signal."""
        self._pipe.drain()
        done: list[_Done] = []
        with contextlib.suppress(queue.Empty):
            while True:
                done.append(self._done.get_nowait())
        return done

    def wait(self) -> _Done:
        """Wait for the next commit to finish."""
        return self._done.get()

    def close(self) -> None:
        """End the thread (after the commit in flight) and close the pipe."""
        self._jobs.put(None)
        self._thread.join()
        self._pipe.close()


def _failing(error: BaseException) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """A `write_batch` runner whose ``write_messages`` fails with `error` (not run)."""

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        coro.close()
        raise JournalError(f"the commit failed: {error!r}") from error

    return run


class LocalJournals:
    """The journals a shared host writes itself, by the address of their plugin actor."""

    def __init__(self, host_name: str) -> None:
        self._host_name = host_name
        # `_key(address)` -> its instance here, or None: through the plugin process.
        self._by_key: dict[Any, _Local | None] = {}
        self._gathering: list[_Local] = []  # those with pending writes, in first-write order
        # Commits in the background, once `commit_in_background` set it up; None: inline.
        self._committer: _Committer | None = None
        self._stop_watch: Callable[[], None] | None = None
        self._in_flight = False  # a batch is with the committer

    def commit_in_background(self, watch: Callable[[int], Callable[[], None] | None]) -> None:
        """Commit on a thread of the host's own from now on, if the host's loop can be woken.

        `watch(fd)` asks the host's loop to hand the host a message whenever `fd` is readable
        (`lean_loop.when_readable`) and returns the function that stops it, or None if it
        cannot (then commits stay inline). The host then passes that message to `collect`.
        """
        if self._committer is not None:
            return
        committer = _Committer(f"persistent_actors-commits@{self._host_name}")
        stop = watch(committer.fd)
        if stop is None:
            committer.close()
            return
        self._committer, self._stop_watch = committer, stop

    def register(self, address: Any, start: p.StartPlugin | None) -> bool:
        """Start the journal `start` describes here, if its plugin allows; True if this call did.

        Decided once per address (a later call returns False): a plugin that does not declare
        `concurrent_writers`, or fails to start here (logged), is used through its plugin
        process.
        """
        key = _key(address)
        if key in self._by_key:
            return False
        local: _Local | None = None
        if start is not None:
            name = f"persistent_actors-{start.kind}:{start.plugin_id}@{self._host_name}"
            try:
                started = start_plugin(start, name, accept=_concurrent)
            except Exception:  # noqa: BLE001 - the plugin process still serves it
                log.warning("shared host: journal %s could not start in this process; its "
                            "writes go to its plugin process", start.plugin_id, exc_info=True)
                started = None
            if started is not None:
                local = _Local(address, started[0], started[1], name)
        self._by_key[key] = local
        return local is not None

    def is_local(self, address: Any) -> bool:
        """True if the journal at `address` runs in this process."""
        return self._by_key.get(_key(address)) is not None

    def moved(self, move: Move) -> None:
        """The journal's plugin process moved (`p.PluginMoved`): keyed by its new address.

        The instance here lives on (its writes never went through the dead process), now
        answering for the new address.
        """
        local = self._by_key.pop(move.old, _ABSENT)
        if local is _ABSENT:
            return
        if local is not None:
            local.address = move.new
        self._by_key[_key(move.new)] = local

    def write(self, address: Any, request: p.WriteMessages) -> bool:
        """Gather `request` for the journal at `address`; True if it is written here.

        The caller arranges a `flush` soon (the first write of a batch returns True with
        `has_pending` newly set).
        """
        local = self._by_key.get(_key(address))
        if local is None:
            return False
        if not local.pending:
            self._gathering.append(local)
        local.pending.append(request)
        return True

    @property
    def has_pending(self) -> bool:
        """True while writes are gathered and not yet handed to a commit."""
        return bool(self._gathering)

    @property
    def unstored(self) -> bool:
        """True while writes are gathered or a commit is in flight (`flush` has work)."""
        return self._in_flight or bool(self._gathering)

    def start_flush(self, answer: _Answer) -> None:
        """Start writing what is gathered; results go to `answer` once stored (see `collect`).

        In the background: hands the first journal's batch to the committer, unless a commit
        is in flight (then what is gathered goes when it finishes). Inline (no committer):
        as `flush`.
        """
        committer = self._committer
        if committer is None:
            self.flush(answer)
        elif not self._in_flight and self._gathering:
            self._in_flight = True
            committer.submit(*self._next_batch())

    def collect(self, answer: _Answer) -> None:
        """`answer` the commits that finished (the host's loop said so); start the next one."""
        committer = self._committer
        if committer is None:
            return
        self._answer_finished(committer, answer)
        self.start_flush(answer)

    def flush(self, answer: _Answer) -> None:
        """Write everything gathered now (one ``write_messages`` per journal) and `answer` each.

        Waits for the commit in flight first (and answers it). `answer(address, result)` gets
        each request's result, in request order per journal.
        """
        committer = self._committer
        if committer is not None:
            self._answer_finished(committer, answer)
            if self._in_flight:
                _answer(committer.wait(), answer)
                self._in_flight = False
        while self._gathering:
            local, batch = self._next_batch()
            outcomes = write_batch(local.loop.run, local.journal, batch, _not_written)
            _answer((local, batch, outcomes), answer)

    def _next_batch(self) -> tuple[_Local, list[p.WriteMessages]]:
        """The first gathering journal and what it gathered, which it no longer holds."""
        local = self._gathering.pop(0)
        batch, local.pending = local.pending, []
        return local, batch

    def _answer_finished(self, committer: _Committer, answer: _Answer) -> None:
        """`answer` every commit the committer finished so far (none waits)."""
        for done in committer.take():
            self._in_flight = False
            _answer(done, answer)

    def close(self) -> None:
        """Close every journal started here (after a last `flush` by the caller)."""
        committer, self._committer = self._committer, None
        if committer is not None:
            if self._stop_watch is not None:
                self._stop_watch()
            committer.close()
        for local in self._by_key.values():
            if local is not None:
                close_plugin(local.journal, local.loop, local.name)
        self._by_key.clear()
        self._gathering.clear()


def _answer(done: _Done, answer: _Answer) -> None:
    local, batch, outcomes = done
    for request, outcome in zip(batch, outcomes, strict=True):
        answer(local.address, p.WriteMessagesResult(outcome, request.actor_instance_id))
