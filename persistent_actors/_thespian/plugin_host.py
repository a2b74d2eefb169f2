"""`PluginHost`: the thespian actor that runs one journal or snapshot-store plugin.

Plugins are asyncio code; the host runs them on an event loop of their own, which it drives on
its own thread while it waits for each operation (see `_PluginLoop`). Writes are
group-committed: write requests are gathered until a `Flush` the host sends itself arrives
(the mailbox is FIFO, so every request queued before it joins the batch), then go to the
plugin in one `write_messages` call, i.e. one transaction for many actors. On multiproc-tcp
the `Flush` is not sent but handed over by the transport loop after it has read what its
sockets hold (`lean_loop.after_reads`): a send to itself would be queued ahead of the frames
of writes already waiting there (each host's frame its own transaction, and fsync), and would
cost a wake-up connection of thespian's own. On the simple base,
where every actor shares one send queue, a request that arrives with that queue empty is
written at once: the `Flush` would be the very next message, so nothing could join the batch.
Any other request first flushes what is gathered, so a read never overtakes a write.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, TypeVarTuple, overload

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest, ChildActorExited, PoisonMessage, WakeupMessage

from persistent_actors import _protocol as p
from persistent_actors._config import JOURNAL, resolve_plugin
from persistent_actors._thespian.common import log, portable_error
from persistent_actors._thespian.event_log import EVENT_LOG_MESSAGES, EventLogService
from persistent_actors._thespian.frames import FrameBatching, batched, frame_has_more
from persistent_actors._thespian.wakeups import runs_in_order
from persistent_actors.errors import JournalError, PluginError
from persistent_actors.journal import (
    MAY_BLOCK,
    ROWS_PER_PAGE,
    AtomicWrite,
    Journal,
    ReplayedRows,
    replay_rows_of,
)
from persistent_actors.messages import (
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    DeleteSnapshotFailure,
    DeleteSnapshotsFailure,
    DeleteSnapshotsSuccess,
    DeleteSnapshotSuccess,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
)
from persistent_actors.snapshot import SelectedSnapshot, SnapshotStore

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Most events per replay message (a plugin's page is split above it): large enough to
# amortise thespian's per-message cost on TCP, small enough to keep a message well under a
# megabyte.
REPLAY_CHUNK = ROWS_PER_PAGE


_FLUSH = p.Flush()  # the host hands itself this one (see `lean_loop.after_reads`)


class _EagerLoop(asyncio.SelectorEventLoop):
    """An event loop that can run a new task's first step at once (see `_PluginLoop._drive`).

    While `_held` is a list, the next `call_soon` (the one a new task makes to schedule its
    first step) is recorded there instead of being queued.
    """

    _held: list[tuple[Callable[..., object], tuple[Any, ...], contextvars.Context | None]] | None
    _held = None

    def call_soon(self, callback: Callable[[*Ts], object], *args: *Ts,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        held = self._held
        if held is None:
            return super().call_soon(callback, *args, context=context)
        self._held = None
        held.append((callback, args, context))
        # A task ignores what call_soon returns (a Handle would cost 0.2 us per operation).
        return None  # type: ignore[return-value]


class _PluginLoop:
    """An event loop of the plugin's own, run only while the host waits for an operation.

    `run` drives it on the host's own thread, so an operation costs no thread switch (handing
    each operation to a loop thread and back is a large share of a one-event persist). The
    host blocks for the operation either way, and nothing else needs the loop meanwhile, so
    the plugin may block it (`journal.may_block`). A thread that already runs another event
    loop (the simple base driven synchronously from asyncio code) cannot run this one: then
    the same loop is driven from a helper thread.

    Each operation is a task started eagerly, as Python 3.12's eager tasks are: its first step
    runs at once, in the task (``asyncio.current_task`` and the running loop are set), and
    only a task that then waits for something runs the loop. An SQLite operation, which runs
    inline when it may block, so never waits, costs no trip through the loop's scheduler and
    selector (about 10 us per operation, a fifth of a one-event persist's own time).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop = _EagerLoop()
        self._helper: ThreadPoolExecutor | None = None
        # The plugin's operations may take their first step outside a task (`_step_inline`).
        self.inline = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        context = contextvars.copy_context()
        context.run(MAY_BLOCK.set, True)
        if asyncio.events._get_running_loop() is None:  # noqa: SLF001 - no raise, as in asyncio
            return self._drive(coro, context)
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        return self._helper.submit(self._drive, coro, context).result()

    def _drive(self, coro: Coroutine[Any, Any, T], context: contextvars.Context) -> T:
        if self.inline:
            return self._step_inline(coro, context)
        loop = self._loop
        held: list[tuple[Callable[..., object], tuple[Any, ...],
                         contextvars.Context | None]] = []
        loop._held = held  # noqa: SLF001 - our own loop class
        try:
            task = loop.create_task(coro, context=context)
        finally:
            loop._held = None  # noqa: SLF001
        if held:
            step, args, step_context = held[0]
            asyncio.events._set_running_loop(loop)  # noqa: SLF001 - what run_forever sets
            try:
                (step_context or context).run(step, *args)
            finally:
                asyncio.events._set_running_loop(None)  # noqa: SLF001
        if task.done():
            return task.result()
        return loop.run_until_complete(task)

    def _step_inline(self, coro: Coroutine[Any, Any, T], context: contextvars.Context) -> T:
        """Run the first step of `coro` with no task around it; the rest, if any, in a task.

        For a plugin whose class declares `inline_first_step`: its step sees the running loop
        and the context, but ``asyncio.current_task()`` is None. An SQLite operation that runs
        inline completes in that step, which saves creating and stepping a task (about
        1.5 us). If the step waits for a future, a task resumes the coroutine once the future
        is done, as a task of its own would (the future's result or exception reaches the
        coroutine where it awaits).
        """
        loop = self._loop
        asyncio.events._set_running_loop(loop)  # noqa: SLF001 - what run_forever sets
        try:
            waited = context.run(coro.send, None)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            asyncio.events._set_running_loop(None)  # noqa: SLF001
        return loop.run_until_complete(loop.create_task(_resume(coro, waited), context=context))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            # asyncio.to_thread (used by plugins to close) started the default executor.
            self.run(self._loop.shutdown_default_executor())
        finally:
            if self._helper is not None:
                self._helper.shutdown(wait=True)
                self._helper = None
            self._loop.close()


async def _resume(coro: Coroutine[Any, Any, T], waited: Any) -> T:
    """Go on with `coro`, which yielded `waited` (a future, or None for a bare yield)."""
    while True:
        if waited is None:
            await asyncio.sleep(0)
        else:
            waited._asyncio_future_blocking = False  # noqa: SLF001 - as a task resets it
            await asyncio.wait((waited,))
        try:
            waited = coro.send(None)
        except StopIteration as done:
            result: T = done.value
            return result


async def _next_page(source: AsyncIterator[ReplayedRows]) -> ReplayedRows | None:
    return await anext(source, None)


def _idle_probe(actor: ThespianActor) -> Callable[[], bool] | None:
    """On thespian's simple base: a function that is True while no message waits anywhere.

    The simple base runs every actor from one send queue; None on any other base (or thespian
    version), where the host cannot see what is queued and always sends itself `Flush`.
    """
    system = getattr(getattr(getattr(actor, "_myRef", None), "_system", None), "_systemBase",
                     None)
    queue = getattr(system, "_pendingSends", None)
    if not isinstance(queue, Sized):
        return None
    return lambda: not queue


def write_batch(run: Callable[[Coroutine[Any, Any, Any]], Any], journal: Journal | None,
                requests: Sequence[p.WriteMessages],
                written: Callable[[Journal], None]) -> list[tuple[p.WriteOutcome, ...]]:
    """Write the AtomicWrites of `requests` in one ``journal.write_messages``, run by `run`.

    Returns the outcomes per request, item by item. A batch that fails fails every write in it
    (`WriteFailed`); a write the journal rejects is `WriteRejected`. `written` is called once
    something was stored (live queries wake on it).
    """
    writes = [item for request in requests for item in request.items
              if isinstance(item, AtomicWrite)]
    results: list[BaseException | None] | None = None
    failure: BaseException | None = None
    if writes and journal is not None:
        try:
            results = run(journal.write_messages(writes))
            failure = _bad_write_results(journal, results, len(writes))
        except Exception as e:  # noqa: BLE001 - a failed batch fails every write in it
            failure = e
    elif writes:
        failure = JournalError("no journal plugin is running")
    if failure is not None:
        failure = portable_error(failure)
    elif results is not None and results.count(None) == len(results) and len(writes) == (
            len(requests[0].items) if len(requests) == 1
            else sum(len(request.items) for request in requests)):
        # The usual answer: every item an AtomicWrite, all stored.
        assert journal is not None  # noqa: S101 - results come from it
        written(journal)
        return [(p.STORED,) * len(request.items) for request in requests]
    result_iter = iter(results or ())
    answers: list[tuple[p.WriteOutcome, ...]] = []
    for request in requests:
        outcomes: list[p.WriteOutcome] = []
        for item in request.items:
            match item:
                case AtomicWrite():
                    if failure is not None:
                        outcomes.append(p.WriteFailed(failure))
                    else:
                        error = next(result_iter)
                        outcomes.append(p.STORED if error is None
                                        else p.WriteRejected(portable_error(error)))
                case p.RejectedItem():
                    outcomes.append(p.WriteRejected(item.cause))
                case p.LoopMessage():
                    outcomes.append(p.Looped())
        answers.append(tuple(outcomes))
    if results is not None and None in results:
        assert journal is not None  # noqa: S101 - results come from it
        written(journal)
    return answers


def _bad_write_results(journal: Journal, results: Any, writes: int) -> JournalError | None:
    """The contract error in what `write_messages` returned, or None.

    One result per write, each None (stored) or an exception (rejected): a True taken for a
    rejection left the actor's state without an event that was stored (and replayed).
    """
    name = f"{type(journal).__qualname__}.write_messages"
    if not isinstance(results, list | tuple):
        return JournalError(f"{name} returned {type(results).__name__}: expected a list of one "
                            "result per write")
    if len(results) != writes:
        return JournalError(f"journal returned {len(results)} results for {writes} writes")
    if results.count(None) != writes:
        for index, result in enumerate(results):
            if result is not None and not isinstance(result, BaseException):
                return JournalError(
                    f"{name} returned {result!r} for write {index}: expected None (stored) "
                    "or an exception (rejected)")
    return None


def _check_highest(journal: Journal, highest: Any) -> int:
    if not isinstance(highest, int) or isinstance(highest, bool) or highest < 0:
        raise JournalError(f"{type(journal).__qualname__}.read_highest_sequence_nr returned "
                           f"{highest!r}: expected an int >= 0")
    return highest


def _as_bytes(payload: Any, what: str) -> bytes:
    if type(payload) is bytes:
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)  # a driver's memoryview (psycopg's bytea) does not pickle
    raise PluginError(f"{what} returned a payload of type {type(payload).__name__}: "
                      "expected bytes")


def _bytes_rows(journal: Journal, rows: Any) -> ReplayedRows:
    """`rows` with payloads as bytes (they travel pickled to the recovering actor)."""
    if not isinstance(rows, ReplayedRows):
        raise PluginError(f"{type(journal).__qualname__}.replay_rows yielded "
                          f"{type(rows).__name__}: expected ReplayedRows")
    payloads = rows.payloads
    if payloads and type(payloads[0]) is bytes and type(payloads[-1]) is bytes:
        return rows  # the usual: a plugin's column is all of one type
    what = f"{type(journal).__qualname__}.replay_rows"
    return ReplayedRows(rows.sequence_nrs, rows.manifests,
                        [_as_bytes(payload, what) for payload in payloads], rows.writer_uuids)


def _checked_snapshot(store: SnapshotStore, request: p.LoadSnapshot,
                      selected: Any) -> SelectedSnapshot | None:
    """What `load` returned, checked: None or a snapshot of the requested id, bytes payload."""
    name = f"{type(store).__qualname__}.load"
    if selected is None:
        return None
    if not isinstance(selected, SelectedSnapshot):
        raise PluginError(f"{name} returned {type(selected).__name__}: expected a "
                          "SelectedSnapshot or None")
    if selected.metadata.persistence_id != request.persistence_id:
        raise PluginError(f"{name} returned a snapshot of {selected.metadata.persistence_id!r} "
                          f"for {request.persistence_id!r}")
    if type(selected.payload) is not bytes:
        return SelectedSnapshot(selected.metadata, selected.manifest,
                                _as_bytes(selected.payload, name))
    return selected


@overload
def start_plugin(start: p.StartPlugin, name: str) -> tuple[Any, _PluginLoop]: ...


@overload
def start_plugin(start: p.StartPlugin, name: str, *,
                 accept: Callable[[Any], bool]) -> tuple[Any, _PluginLoop] | None: ...


def start_plugin(start: p.StartPlugin, name: str, *,
                 accept: Callable[[Any], bool] | None = None) -> tuple[Any, _PluginLoop] | None:
    """Construct and start the plugin `start` names, on a `_PluginLoop` named `name`.

    With `accept`: None, unstarted, if the constructed plugin is not accepted (constructing
    opens nothing, `Journal.__init__`'s contract). Raises what resolving, constructing or
    starting the plugin raised (the loop is closed).
    """
    cls = resolve_plugin(start.kind, start.spec)
    plugin = cls(start.settings)
    if accept is not None and not accept(plugin):
        return None
    loop = _PluginLoop(name)
    try:
        loop.run(_started_within(plugin, start, PLUGIN_START_TIMEOUT))
    except BaseException:
        loop.close()
        raise
    # Declared by the class itself (see Journal.inline_first_step), not inherited.
    loop.inline = vars(cls).get("inline_first_step") is True
    return plugin, loop


# Seconds a plugin's start() may take: one that never returns held the thread that runs it
# (on the simple base the whole system, and its shutdown, for ever). Below the 60 s that
# creating an actor or starting the system waits, so their error is this one.
PLUGIN_START_TIMEOUT = 50.0


async def _started_within(plugin: Any, start: p.StartPlugin, timeout: float) -> None:
    kind = start.kind.replace("_", " ")
    try:
        await asyncio.wait_for(plugin.start(), timeout)
    except TimeoutError:
        raise PluginError(f"{kind} {start.plugin_id!r} (plugin {start.spec!r}) did not start "
                          f"within {timeout:g} s") from None
    except PluginError:
        raise
    except Exception as e:
        # A bare ConnectionRefusedError said nothing of which store could not start.
        raise PluginError(f"{kind} {start.plugin_id!r} (plugin {start.spec!r}) failed to "
                          f"start: {type(e).__name__}: {e}") from e


def close_plugin(plugin: Journal | SnapshotStore | None, loop: _PluginLoop, name: str) -> None:
    """Close `plugin` (best effort: a failure is logged), then its `loop`."""
    if plugin is not None:
        try:
            loop.run(plugin.close())
        except Exception:  # noqa: BLE001 - closing is best effort
            log.exception("plugin %s failed to close", name)
    loop.close()


class PluginHost(FrameBatching, ThespianActor):  # type: ignore[misc]
    """Hosts one plugin instance; created and started by the guardian."""

    def __init__(self) -> None:
        super().__init__()
        self._loop: _PluginLoop | None = None
        self._journal: Journal | None = None
        self._snapshots: SnapshotStore | None = None
        self._pending: list[tuple[p.WriteMessages, Any]] = []
        self._flush_scheduled = False
        self._idle: Callable[[], bool] | None = None  # set at start (see `_idle_probe`)
        # Set at start on multiproc-tcp: hands the host its `Flush` behind the frames the
        # transport reads next (see `lean_loop.after_reads`).
        self._after_reads: Callable[[Any], None] | None = None
        # Set at start: a batch's results go as one `InOrder` (see `wakeups.runs_in_order`).
        self._in_order = False
        self._plugin_id = "?"
        # The read side's queries and long polls (see _thespian/event_log.py).
        self._queries = EventLogService(self.send, self.wakeupAfter, self._run)

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        match message:
            case p.StartPlugin():
                self._on_start(message, sender)
            case ActorExitRequest():
                self._flush()  # writes requested before it, whose Flush may still be due
                self._close()
            case p.WriteMessages():
                self._pending.append((message, sender))
                if self._flush_scheduled:
                    pass
                elif self._idle is not None and self._idle() and not frame_has_more(self):
                    self._flush()  # nothing queued could join the batch: no Flush round trip
                else:
                    self._flush_scheduled = True
                    if self._after_reads is not None:
                        self._after_reads(_FLUSH)  # behind what the sockets hold now
                    else:
                        self.send(self.myAddress, p.Flush())
            case p.Flush():
                self._flush_scheduled = False
                self._flush()
            case p.InOrder():  # not handed over by the send loop (see `_flush`)
                for address, result in message.sends:
                    self.send(address, result)
            case ChildActorExited():
                pass
            case p.PluginCommand():
                self._flush()  # a command applies after every write requested before it
                self._plugin_command(message, sender)
            case WakeupMessage():
                self._queries.on_wakeup(message.payload)
            case _ if isinstance(message, EVENT_LOG_MESSAGES):
                self._flush()  # a query sees every write requested before it
                self._queries.handle(message, sender, self._journal)
            case PoisonMessage():
                log.warning("plugin %s: reply could not be delivered: %s", self._plugin_id,
                            message.details)
            case _:
                self._flush()
                self._handle_request(message, sender)

    # -- lifecycle ---------------------------------------------------------------------------
    def _on_start(self, start: p.StartPlugin, guardian: Any) -> None:
        self._plugin_id = f"{start.kind}:{start.plugin_id}"
        self._idle = _idle_probe(self)
        if getattr(getattr(self, "_myRef", None), "transport", None) is not None:
            # Imported only where a transport runs (the TCP transport's module).
            from persistent_actors._thespian.lean_loop import after_reads  # noqa: PLC0415
            self._after_reads = after_reads(self)
        self._in_order = runs_in_order(self)
        try:
            plugin, self._loop = start_plugin(start, f"persistent_actors-{self._plugin_id}")
        except Exception as e:  # noqa: BLE001 - reported to the guardian, then we stop
            log.debug("plugin %s failed to start", self._plugin_id, exc_info=True)
            self._close()
            self.send(guardian, p.PluginFailed(start.plugin_id, start.kind, portable_error(e)))
            self.send(self.myAddress, ActorExitRequest())
            return
        if start.kind == JOURNAL:
            self._journal = plugin
        else:
            self._snapshots = plugin
        self.send(guardian, p.PluginStarted(start.plugin_id, start.kind))

    def _close(self) -> None:
        if self._loop is not None:
            close_plugin(self._journal or self._snapshots, self._loop, self._plugin_id)
            self._loop = None
        self._journal = self._snapshots = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None  # noqa: S101
        return self._loop.run(coro)

    # -- writes (group commit) ---------------------------------------------------------------
    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        outcomes = self._write([request for request, _ in batch])
        if self._in_order and len(batch) > 1:
            # One queue entry for all results; each is handled as if queued on its own.
            self.send(self.myAddress, p.InOrder(tuple(
                (requester, p.new_write_result(outcome, request.actor_instance_id))
                for (request, requester), outcome in zip(batch, outcomes, strict=True))))
            return
        for (request, requester), outcome in zip(batch, outcomes, strict=True):
            self.send(requester, p.WriteMessagesResult(outcome, request.actor_instance_id))

    def write_direct(self, request: p.WriteMessages) -> p.WriteMessagesResult | None:
        """Write `request` now and return its result, or None if it must go as a message.

        The direct hand-off of the simple base (`_thespian/direct_journal.py`): the caller has
        checked that no message waits anywhere, so the request would be written alone, at
        once, as `receiveMessage` writes it with the send queue empty. None while a batch is
        gathered, a `Flush` is due, the host is inside a receive of its own, or no journal runs
        (then the message path answers, as before).
        """
        if self._pending or self._flush_scheduled or self._outbox is not None or \
                self._journal is None:
            return None
        (outcomes,) = self._write((request,))
        return p.WriteMessagesResult(outcomes, request.actor_instance_id)

    def join_batch(self, request: p.WriteMessages, requester: Any) -> bool:
        """Add `request` from `requester` to the batch being gathered; False: send it instead.

        The other half of the simple base's hand-off (`_thespian/direct_journal.py`): where
        other work is queued, the request joins the group commit without its own message, as
        if it had arrived now, and one `Flush` (the one queued already, or one sent now, which
        queues behind everything else) writes it with the rest; the result comes as a message,
        as before. False while the host is inside a receive of its own or no journal runs.
        """
        if self._outbox is not None or self._journal is None:
            return False
        self._pending.append((request, requester))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.send(self.myAddress, p.Flush())  # not in a receive: queued at once
        return True

    def _write(self, requests: Sequence[p.WriteMessages]) -> list[tuple[p.WriteOutcome, ...]]:
        """Write the AtomicWrites of `requests` in one `write_messages`; outcomes per request."""
        return write_batch(self._run, self._journal, requests, self._queries.written)

    def _plugin_command(self, command: p.PluginCommand, sender: Any) -> None:
        plugin = self._journal or self._snapshots
        result: Any
        if plugin is None:
            result = p.Failure(JournalError(f"plugin {self._plugin_id} is not running"))
        else:
            try:
                result = self._run(plugin.receive_plugin_internal(command.message))
            except Exception as e:  # noqa: BLE001 - reported to the caller
                result = p.Failure(portable_error(e))
        self.send(sender, p.Reply(command.correlation_id, result))

    # -- everything else ---------------------------------------------------------------------
    def _handle_request(self, message: Any, sender: Any) -> None:
        journal, snapshots = self._journal, self._snapshots
        match message:
            case p.ReplayMessages() if journal is not None:
                self._replay(journal, message, sender)
            case p.DeleteMessagesTo(pid, to) if journal is not None:
                try:
                    self._run(journal.delete_messages_to(pid, to))
                    reply: Any = DeleteMessagesSuccess(to)
                except Exception as e:  # noqa: BLE001 - reported to the actor
                    reply = DeleteMessagesFailure(portable_error(e), to)
                self.send(sender, reply)
            case p.LoadSnapshot() if snapshots is not None:
                try:
                    selected = _checked_snapshot(snapshots, message, self._run(
                        snapshots.load(message.persistence_id, message.criteria)))
                    reply = p.LoadSnapshotResult(selected, message.to_sequence_nr,
                                                 message.actor_instance_id)
                except Exception as e:  # noqa: BLE001 - reported to the actor
                    reply = p.LoadSnapshotFailed(portable_error(e), message.actor_instance_id)
                self.send(sender, reply)
            case p.SaveSnapshot(md, manifest, payload) if snapshots is not None:
                try:
                    self._run(snapshots.save(md, manifest, payload))
                    reply = SaveSnapshotSuccess(md)
                except Exception as e:  # noqa: BLE001 - reported to the actor
                    reply = SaveSnapshotFailure(md, portable_error(e))
                self.send(sender, reply)
            case p.DeleteSnapshot(md) if snapshots is not None:
                try:
                    self._run(snapshots.delete(md))
                    reply = DeleteSnapshotSuccess(md)
                except Exception as e:  # noqa: BLE001 - reported to the actor
                    reply = DeleteSnapshotFailure(md, portable_error(e))
                self.send(sender, reply)
            case p.DeleteSnapshots(pid, criteria) if snapshots is not None:
                try:
                    self._run(snapshots.delete_by_criteria(pid, criteria))
                    reply = DeleteSnapshotsSuccess(criteria)
                except Exception as e:  # noqa: BLE001 - reported to the actor
                    reply = DeleteSnapshotsFailure(criteria, portable_error(e))
                self.send(sender, reply)
            case _:
                log.warning("plugin %s ignored unexpected message %r", self._plugin_id, message)

    def _replay(self, journal: Journal, request: p.ReplayMessages, sender: Any) -> None:
        instance = request.actor_instance_id
        chunks = 0
        try:
            highest = _check_highest(journal, self._run(journal.read_highest_sequence_nr(
                request.persistence_id, max(0, request.from_sequence_nr - 1))))
            to = min(request.to_sequence_nr, highest)
            if to > 0 and request.from_sequence_nr <= to and request.max_count > 0:
                source = replay_rows_of(journal, request.persistence_id,
                                        request.from_sequence_nr, to, request.max_count)
                try:
                    # One chunk per page, the columns as the plugin returned them; a page
                    # larger than `REPLAY_CHUNK` (a plugin's `replay_page_size` may be up to
                    # a million) is split, so no one message carries an unbounded history.
                    while (page := self._run(_next_page(source))) is not None:
                        rows = _bytes_rows(journal, page)
                        for start in range(0, len(rows), REPLAY_CHUNK):
                            chunk = rows if len(rows) <= REPLAY_CHUNK else rows.slice(
                                start, start + REPLAY_CHUNK)
                            self.send(sender, p.ReplayedMessages(chunk, instance, chunks))
                            chunks += 1
                finally:
                    aclose = getattr(source, "aclose", None)
                    if aclose is not None:
                        self._run(aclose())
        except Exception as e:  # noqa: BLE001 - reported to the recovering actor
            self.send(sender, p.ReplayMessagesFailure(portable_error(e), instance))
            return
        self.send(sender, p.RecoverySuccess(highest, instance, chunks))
