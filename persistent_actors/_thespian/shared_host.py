"""`SharedHost`: one thespian actor (one process) hosting many ``actor_of`` actors.

With ``[actor_system] host_processes = N`` on multiproc-tcp the guardian starts N shared hosts
and places each new top-level actor in one of them (the host with the fewest actors, the lowest
index on a tie), instead of one process per actor. Fewer processes means fewer TCP frames:
what one host sends to one destination while it handles one frame travels as one frame.

Each actor runs in a `_HostedCell`: the `ActorHost` logic (construction, supervision, stash,
the `Eventsourced` machine, back-off) with its thespian calls redirected to the shared host, as
an entity host's `_EntityCell`. Differences from an entity host: a cell is created by the
guardian (``CellEnvelope(cell, StartActor)``), never by a message; its messages to the guardian
(started, failed, recovery permits, stopping) go wrapped in `FromCell`, so the guardian keeps
claims, names and permits per cell exactly as per process; a cell that stopped is reported
(`CellExited`) as a child exit would be. A message for a cell that is gone is a dead letter.
Journal replies are routed back by the actor instance id they carry, snapshot replies by
(store, persistence id), deletion replies in request order per plugin.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import time
from collections import deque
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import (
    ActorExitRequest,
    ChildActorExited,
    DeadEnvelope,
    PoisonMessage,
    WakeupMessage,
)

from persistent_actors import _protocol as p
from persistent_actors._actor import ActorRef, HostedRef, reply_form
from persistent_actors._thespian.common import log
from persistent_actors._thespian.entity_host import _BY_METADATA, _IN_ORDER
from persistent_actors._thespian.frames import NESTED, FrameBatching, batched
from persistent_actors._thespian.host import ActorHost, _HostContext, _SystemView
from persistent_actors.messages import DeadLetter, Kill, PoisonPill

__all__ = ["SharedHost"]

# Most local messages (`SharedHost._drain_local`) delivered per thespian message.
_LOCAL_BUDGET = 1_000

# What a cell sends the guardian about itself: wrapped in FromCell (the others, e.g. a
# StopRequested about another actor, go as they are).
_ABOUT_ITSELF = (p.ActorStarted, p.ActorFailed, p.StartRecovery, p.RecoveryDone, p.ActorStopping)


def _key(address: Any) -> Any:
    return getattr(address, "addressDetails", address)


class _HostedContext(_HostContext):
    """A hosted actor's `ActorContext`: its ref is a `HostedRef`; every send names its sender."""

    def __init__(self, host: ActorHost, start: p.StartActor) -> None:
        super().__init__(host, start)
        assert isinstance(host, _HostedCell)  # noqa: S101 - only cells use this context
        self._self_ref = HostedRef(host.myAddress, start.name, host.cell)
        view = host.owner.system_view
        if view is not None:  # one per host, not one per actor
            self._system = view

    def _send(self, target: ActorRef, message: Any, sender: ActorRef | None) -> None:
        if target.address is None:
            target.tell(message)  # dead letters
            return
        wrapped = reply_form(target, message)
        if not isinstance(wrapped, p.Reply):
            # Always name the sender: the thespian sender is the host, shared by its actors.
            wrapped = p.Envelope(wrapped, sender if sender is not None else self._self_ref)
        self.send_to_address(target.address, wrapped)
        if isinstance(message, Kill | PoisonPill):
            self._stop_requested(target)


class _HostedCell(ActorHost):
    """One ``actor_of`` actor inside a `SharedHost`: thespian calls go to the host."""

    _context_class = _HostedContext
    # Its receives run inside the shared host's, and its sends go through the host's outbox.
    _outbox = NESTED

    def __init__(self, owner: SharedHost, cell: int) -> None:
        super().__init__()
        self.owner = owner
        self.cell = cell
        self.instance_ids: list[int] = []  # its Eventsourced instances (one per restart)

    @property
    def myAddress(self) -> Any:  # noqa: N802 - thespian's name
        return self.owner.myAddress

    def send(self, targetAddr: Any, msg: Any) -> None:  # noqa: N803 - thespian's names
        self.owner.cell_send(self, targetAddr, msg)

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:  # noqa: N802, N803
        self.owner.schedule(self.cell, timePeriod.total_seconds(), payload)

    def fire_timer(self, payload: Any) -> None:
        """Deliver one of the actor's own timers (the host multiplexes them on one wakeup)."""
        self._on_timer(payload)

    def exit(self) -> None:
        """Stop the actor as thespian's ActorExitRequest stops one (post_stop runs)."""
        self._on_exit()

    def _own_ref(self) -> ActorRef:
        return HostedRef(self.myAddress, self._start.name if self._start else None, self.cell)

    @property
    def stopped(self) -> bool:
        """True once the actor stopped (or failed to start)."""
        return self._stopped


class SharedHost(FrameBatching, ThespianActor):  # type: ignore[misc]
    """Hosts ``actor_of`` actors in cells; started by `StartSharedHost` (see module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self._start: p.StartSharedHost | None = None
        self.system_view: _SystemView | None = None
        self._guardian: Any = None
        self._cells: dict[int, _HostedCell] = {}
        self._by_instance: dict[int, _HostedCell] = {}
        self._by_pid: dict[tuple[Any, str], int] = {}  # (store, persistence id) -> cell
        self._in_order: dict[tuple[str, Any], deque[int]] = {}  # (kind, plugin) -> cells
        # The cells' timers: one heap, one thespian wakeup for its earliest (as EntityHost).
        self._timers: list[tuple[float, int, int, Any]] = []
        self._timer_seq = itertools.count()
        self._armed_for: float | None = None
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
            case p.StartSharedHost():
                self._start = message
                self._guardian = message.system.guardian
                self.system_view = _SystemView(message.system)
                self.send(sender, p.SharedHostStarted(message.index))
            case WakeupMessage(payload=p.CellTimer()):
                self._fire_timers()
            case p.DrainLocal():
                self._drain_pending = False
            case ActorExitRequest():
                if self._guardian is not None:
                    # A stop, not a crash: the guardian must not restart this host's actors.
                    self.send(self._guardian, p.ActorStopping())
                for cell in list(self._cells.values()):
                    cell.exit()  # post_stop of every actor
                self._cells.clear()
            case ChildActorExited():
                pass
            case PoisonMessage():
                log.error("shared host: a message it sent could not be delivered: %r (%s)",
                          message.poisonMessage, message.details)
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

    def cell_send(self, cell: _HostedCell, address: Any, message: Any) -> None:
        """Send for `cell`: to itself, to the guardian, or to anyone else (a plugin)."""
        if address == self.myAddress:
            match message:
                case ActorExitRequest():  # the cell stopped itself (stop_actor)
                    self._remove(cell)
                    return
                case p.CellEnvelope() | p.Envelope(message=p.CellEnvelope()):
                    self._local.append(message)  # to an actor of this host
                    return
                case p.Reply():
                    pass  # an ask's reply via the host
                case _:  # to itself (a timer, a snapshot failure): behind what it sent before
                    self._local.append(p.Envelope(p.CellEnvelope(cell.cell, message),
                                                  cell._own_ref()))  # noqa: SLF001
                    return
            self.send(address, message)
            return
        if address == self._guardian:
            if isinstance(message, _ABOUT_ITSELF):
                message = p.FromCell(cell.cell, message)
            self.send(address, message)
            return
        instance_id = getattr(message, "actor_instance_id", None)
        if isinstance(instance_id, int) and self._by_instance.get(instance_id) is not cell:
            self._by_instance[instance_id] = cell
            cell.instance_ids.append(instance_id)
        match message:
            case p.SaveSnapshot(metadata=md) | p.DeleteSnapshot(metadata=md):
                self._by_pid[(_key(address), md.persistence_id)] = cell.cell
            case p.DeleteMessagesTo():
                self._in_order.setdefault(("delete-messages", _key(address)),
                                          deque()).append(cell.cell)
            case p.DeleteSnapshots():
                self._in_order.setdefault(("delete-snapshots", _key(address)),
                                          deque()).append(cell.cell)
        self.send(address, message)

    def _plugin_reply(self, message: Any, sender: Any) -> None:
        cell: _HostedCell | None = None
        instance_id = getattr(message, "actor_instance_id", None)
        if isinstance(instance_id, int) and type(message).__module__ == p.__name__:
            cell = self._by_instance.get(instance_id)
        elif isinstance(message, _BY_METADATA):
            cell_id = self._by_pid.get((_key(sender), message.metadata.persistence_id))
            cell = self._cells.get(cell_id) if cell_id is not None else None
        elif type(message) in _IN_ORDER:
            waiting = self._in_order.get((_IN_ORDER[type(message)], _key(sender)))
            if waiting:
                cell = self._cells.get(waiting.popleft())
        if cell is None or cell.stopped:
            log.debug("shared host: no actor for %r", message)
            return
        cell.receiveMessage(message, sender)

    # -- timers --------------------------------------------------------------------------------
    def schedule(self, cell: int, delay: float, payload: Any) -> None:
        """Hand `payload` to the cell's `_on_timer` after `delay` seconds (if it still runs)."""
        due = time.monotonic() + max(delay, 0.001)
        heapq.heappush(self._timers, (due, next(self._timer_seq), cell, payload))
        self._arm()

    def _arm(self) -> None:
        if not self._timers:
            return
        due = self._timers[0][0]
        if self._armed_for is not None and self._armed_for <= due:
            return  # a wakeup at or before it is pending already
        self._armed_for = due
        delay = max(due - time.monotonic(), 0.001)
        self.wakeupAfter(datetime.timedelta(seconds=delay), payload=p.CellTimer())

    def _fire_timers(self) -> None:
        self._armed_for = None
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, cell_id, payload = heapq.heappop(self._timers)
            cell = self._cells.get(cell_id)
            if cell is not None:
                cell.fire_timer(payload)
        self._arm()
