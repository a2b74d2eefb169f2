"""`SharedHost`: one thespian actor (one process) hosting many ``actor_of`` actors.

With ``[actor_system] host_processes = N`` on multiproc-tcp (the default: N = the CPUs) the
guardian starts N shared hosts and places each new top-level actor in one of them (the host
with the fewest actors, the lowest index on a tie), as Akka.NET runs many actors on a thread
pool in one process. One process per actor (``host_processes = 0``, thespian's model, an
opt-in for isolation) costs a fork and a process' memory per actor and a TCP frame per
message. Fewer processes means fewer TCP frames: what one host sends to one destination while
it handles one frame travels as one frame.

Each actor runs in a `_HostedCell`: the `ActorHost` logic (construction, supervision, stash,
the `Eventsourced` machine, back-off) with its thespian calls redirected to the shared host, as
an entity host's `_EntityCell` (what both share is in `cells`). Differences from an entity
host: a cell is created by the guardian (``CellEnvelope(cell, StartActor)``), never by a
message; its messages to the guardian (started, failed, recovery permits, stopping) go wrapped
in `FromCell`, so the guardian keeps claims, names and permits per cell exactly as per process;
a cell that stopped is reported (`CellExited`) as a child exit would be. A message for a cell
that is gone is a dead letter. Journal replies are routed back by the actor instance id they
carry, snapshot replies by (store, persistence id), deletion replies in request order per
plugin.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from thespian.actors import (
    ActorExitRequest,
    ChildActorExited,
    DeadEnvelope,
    PoisonMessage,
    WakeupMessage,
)

from persistent_actors import _protocol as p
from persistent_actors._actor import ActorRef, HostedRef
from persistent_actors._thespian.cells import Cell, CellHost
from persistent_actors._thespian.common import log
from persistent_actors._thespian.frames import batched
from persistent_actors._thespian.host import _SystemView
from persistent_actors._thespian.moved import Move
from persistent_actors._thespian.moved import address_key as _key
from persistent_actors._thespian.thread_inbox import close_inbox, deliver_inbox, install_inbox
from persistent_actors.messages import DeadLetter

__all__ = ["SharedHost"]

# Most local messages (`SharedHost._drain_local`) delivered per thespian message.
_LOCAL_BUDGET = 1_000

# What a cell sends the guardian about itself: wrapped in FromCell (the others, e.g. a
# StopRequested about another actor, go as they are).
_ABOUT_ITSELF = (p.ActorStarted, p.ActorFailed, p.StartRecovery, p.RecoveryDone, p.ActorStopping)


class _HostedCell(Cell):
    """One ``actor_of`` actor inside a `SharedHost`: thespian calls go to the host.

    Its context is a `CellContext` (its ref a `HostedRef`); its key is its cell number.
    """

    owner: SharedHost
    key: int

    def __init__(self, owner: SharedHost, cell: int) -> None:
        super().__init__(owner, cell)
        self.cell = cell

    def _own_ref(self) -> ActorRef:
        return HostedRef(self.myAddress, self._start.name if self._start else None, self.cell)


class SharedHost(CellHost[_HostedCell]):
    """Hosts ``actor_of`` actors in cells; started by `StartSharedHost` (see module doc)."""

    _TIMER_PAYLOAD = p.CellTimer()
    _CHECK_PAYLOAD = p.CellTimer(check=True)

    def __init__(self) -> None:
        super().__init__()
        self._start: p.StartSharedHost | None = None
        self._cells: dict[int, _HostedCell] = {}
        # Messages between actors of this host (and to themselves): delivered here, after the
        # current message, without a trip through thespian (see `_drain_local`).
        self._local: deque[Any] = deque()
        self._drain_pending = False

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        match message:
            case p.Envelope(message=p.CellEnvelope() as inner):
                self._deliver(inner.cell, p.Envelope(
                    inner.message, message.sender, message.correlation_id, message.reply_to),
                    sender)
            case p.CellEnvelope(cell, inner):
                self._deliver(cell, inner, sender)
            case p.LocalFlush():
                self._start_local_flush()
            case p.LocalWritten():
                self._collect_local()
            case p.InboxWake():
                deliver_inbox(self)
            case p.StartSharedHost():
                self._start = message
                self._guardian = message.system.guardian
                install_inbox(self, self._guardian)  # its actors' other threads tell through it
                self.system_view = _SystemView(message.system)
                self.send(sender, p.SharedHostStarted(message.index))
            case WakeupMessage(payload=p.CellTimer(check=True)):
                self._check_timers()
            case WakeupMessage(payload=p.CellTimer()):
                self._fire_timers()
            case p.DrainLocal():
                self._drain_pending = False
            case ActorExitRequest():
                if self._guardian is not None:
                    # A stop, not a crash: the guardian must not restart this host's actors.
                    self.send(self._guardian, p.ActorStopping())
                self._flush_local()  # what its actors wrote before the stop is stored
                for cell in list(self._cells.values()):
                    cell.exit()  # post_stop of every actor
                self._cells.clear()
                self._close_local_journals()  # with what they wrote in post_stop
                close_inbox()
            case ChildActorExited():
                pass
            case PoisonMessage():
                log.error("shared host: a message it sent could not be delivered: %r (%s)",
                          message.poisonMessage, message.details)
            case p.PluginMoved():
                self.plugin_moved(message)
            case _:
                self._plugin_reply(message, sender)
        if self._local:
            self._drain_local()

    def _drain_local(self) -> None:
        """Deliver the messages the host's actors sent each other, in the order sent.

        Before the host's next thespian message: a tell from one hosted actor to another is
        handled before anything its sender caused outside later (the reply to an ask that
        made it tell, say), as it is when each actor has its own process. At most
        `_LOCAL_BUDGET` per thespian message: actors that keep telling each other (or
        themselves) must not starve the rest; a `DrainLocal` to itself continues.
        """
        local = self._local
        for _ in range(_LOCAL_BUDGET):
            if not local:
                return
            message = local.popleft()
            if type(message) is p.CellEnvelope:
                self._deliver(message.cell, message.message, self.myAddress)
            else:  # an Envelope around a CellEnvelope
                inner = message.message
                self._deliver(inner.cell, p.Envelope(
                    inner.message, message.sender, message.correlation_id, message.reply_to),
                    self.myAddress)
        if local and not self._drain_pending:
            self._drain_pending = True
            self.send(self.myAddress, p.DrainLocal())

    # -- delivery ----------------------------------------------------------------------------
    def _deliver(self, cell_id: int, message: Any, sender: Any) -> None:
        cell = self._cells.get(cell_id)
        if cell is None:
            if isinstance(message, p.StartActor) and self._start is not None:
                if message.journal is not None:
                    self._start_local_journals(f"host-{self._start.index}", message.journal,
                                               message.journal_plugin)
                cell = self._cells[cell_id] = _HostedCell(self, cell_id)
                cell.receiveMessage(message, sender)
                return
            inner = message.message if isinstance(message, p.Envelope) else message
            if not isinstance(inner, ActorExitRequest):  # stopping a stopped actor: nothing
                self._dead_letter(cell_id, message, sender)
            return
        inner = message.message if isinstance(message, p.Envelope) else message
        if isinstance(inner, ActorExitRequest):  # system.stop / context.stop of it
            cell.exit()  # post_stop, as for a stopped actor
            self._remove(cell)
            return
        cell.receiveMessage(message, sender)

    def _dead_letter(self, cell_id: int, message: Any, sender: Any) -> None:
        """A message for a cell that is gone: to the event stream as thespian's dead letter.

        As thespian hands the guardian a message to an exited process: the event stream
        publishes the DeadLetter and drops the dead actor's subscriptions.
        """
        if self._start is None:
            return
        inner = message.message if isinstance(message, p.Envelope) else message
        if isinstance(inner, DeadLetter) or type(inner).__module__ == p.__name__:
            return  # a plugin's answer, or a dead letter about a dead letter
        self.send(self._start.system.event_stream,
                  DeadEnvelope(p.CellAddress(self.myAddress, cell_id), message))

    def _remove(self, cell: _HostedCell) -> None:
        """`cell`'s actor is gone: forget it and tell the guardian (as a child's exit)."""
        if self._cells.get(cell.cell) is not cell:
            return
        del self._cells[cell.cell]
        for instance_id in cell.instance_ids:
            self._by_instance.pop(instance_id, None)
        self.send(self._guardian, p.FromCell(cell.cell, p.CellExited()))

    # -- what a CellHost needs ------------------------------------------------------------
    def _cell(self, key: Any) -> _HostedCell | None:
        return self._cells.get(key)

    def _send_home(self, cell: _HostedCell, message: Any) -> None:
        match message:
            case ActorExitRequest():  # the cell stopped itself (stop_actor)
                self._remove(cell)
                return
            case p.CellEnvelope() | p.Envelope(message=p.CellEnvelope()):
                self._local.append(message)  # to an actor of this host
                return
            case p.Reply():
                self.send(self.myAddress, message)  # an ask's reply via the host
            case p.Envelope(message=inner, sender=sender, correlation_id=None):
                # From the sender it names (none: a failure no plugin saw), not from itself.
                self._local.append(p.Envelope(p.CellEnvelope(cell.cell, inner), sender))
            case _:  # to itself (a timer): behind what it sent before
                self._local.append(p.Envelope(p.CellEnvelope(cell.cell, message),
                                              cell._own_ref()))  # noqa: SLF001

    def _send_guardian(self, cell: _HostedCell, message: Any) -> None:
        if isinstance(message, _ABOUT_ITSELF):
            message = p.FromCell(cell.cell, message)
        self.send(self._guardian, message)

    # Its actors may use different plugins: a request is noted per plugin.
    def _pid_key(self, plugin: Any, persistence_id: str) -> Any:
        return (_key(plugin), persistence_id)

    def _no_cell(self, message: Any) -> None:
        log.debug("shared host: no actor for %r", message)

    def _live_cells(self) -> list[_HostedCell]:
        return list(self._cells.values())

    def _move_starts(self, move: Move) -> None:
        if self._start is not None:
            self._start = move.start(self._start)

    def _local_result(self, journal: Any, result: p.WriteMessagesResult) -> None:
        cell = self._by_instance.get(result.actor_instance_id)
        if cell is None or cell.stopped:
            self._no_cell(result)
            return
        self._local.append(p.CellEnvelope(cell.cell, result))
