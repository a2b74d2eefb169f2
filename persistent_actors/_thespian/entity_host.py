"""`EntityHost`: one thespian actor hosting many entities of one type (Akka's Shard).

Each entity runs in an `_EntityCell`: the `ActorHost` logic (construction, supervision, stash,
the `Eventsourced` machine, back-off) with its thespian calls redirected to the entity host.
Messages reach an entity as `ShardEnvelope`s; journal replies are routed back by the actor
instance id they carry, snapshot and deletion replies by persistence id or in request order
(a plugin actor answers those one at a time, in order).

Lifecycle, as in Akka's cluster sharding:

* an entity starts on its first message (``cls(entity_id, *args, **kwargs)``);
* passivation (``context.passivate()``, idle for ``passivate_idle_after`` seconds, or the least
  recently used one when ``max_active_entities`` are active) sends it a `PoisonPill` through
  its mailbox; messages arriving meanwhile are buffered (at most ``internal_stash_capacity``;
  more are dead letters) and start its next incarnation;
* recovery permits are counted per host: at most ``max_concurrent_recoveries`` of its
  entities recover at once, the others wait in request order;
* remember-entities (``[sharding] remember_entities``): a `ShardMemory` per owned shard journals
  which entities run; when the host starts (a restart too) the remembered ones start again
  without a message. As in Akka, automatic passivation (idle, active limit) is off for them:
  only ``context.passivate()`` makes an entity forgotten.
"""

from __future__ import annotations

import datetime
import time
from collections import OrderedDict, deque
from typing import Any, Final

from thespian.actors import ActorExitRequest, ChildActorExited, PoisonMessage, WakeupMessage

from persistent_actors import _protocol as p
from persistent_actors._actor import ActorRef, AskRef, EntityRef
from persistent_actors._sharding import shard_of, shards_of_host
from persistent_actors._thespian.cells import Cell, CellContext, CellHost
from persistent_actors._thespian.common import log
from persistent_actors._thespian.frames import batched
from persistent_actors._thespian.host import ActorHost, _SystemView
from persistent_actors._thespian.moved import Move
from persistent_actors._thespian.shard_memory import (
    EntityStarted,
    EntityStopped,
    ShardMemory,
    memory_id,
)
from persistent_actors._thespian.thread_inbox import close_inbox, deliver_inbox, install_inbox
from persistent_actors.messages import PoisonPill

# The PoisonPill the host passivates an entity with: this one object, known by identity.
_PASSIVATION_PILL: Final = PoisonPill()

__all__ = ["EntityHost"]

_PASSIVATE = "passivate"
# How often the idle check runs at most, and at least (seconds).
_MIN_IDLE_CHECK = 0.05
_MAX_IDLE_CHECK = 10.0


class _EntityContext(CellContext):
    """An entity's `ActorContext`: its ref is an `EntityRef`; it can passivate."""

    def __init__(self, host: ActorHost, start: p.StartActor) -> None:
        super().__init__(host, start)
        assert isinstance(host, _EntityCell)  # noqa: S101 - only entity cells use this context
        self._cell = host

    @property
    def entity_id(self) -> str:
        """The id of this entity."""
        return self._cell.entity_id

    def passivate(self) -> None:
        """Stop this entity once the messages before this call are handled (Akka's Passivate)."""
        self._cell.owner.passivate(self._cell)


def _from_itself(message: Any, type_name: str, entity_id: str) -> bool:
    """True for a message an entity sent itself (a timer's, a tell to its own ref).

    The host wraps those with the entity's own ref as sender (`EntityHost._send_home`).
    """
    if type(message) is not p.Envelope:
        return False
    sender = message.sender
    return type(sender) is EntityRef and sender.entity_id == entity_id and \
        sender.type_name == type_name


class _EntityCell(Cell):
    """One entity inside an `EntityHost`: an `ActorHost` whose thespian calls go to the host."""

    _context_class = _EntityContext
    owner: EntityHost
    # How the host finds this cell: its entity id (a shard's memory: the shard).
    key: str | int

    def __init__(self, owner: EntityHost, entity_id: str) -> None:
        super().__init__(owner, entity_id)
        self.entity_id = entity_id
        self.type_name = owner.type_name
        self.passivating = False
        self.last_used = time.monotonic()

    # Why its constructor or pre_start failed (an asker is told at once); a class default,
    # so a running entity's dict does not hold it.
    start_error: BaseException | None = None

    def _prepare_instance(self, actor: Any) -> None:
        actor.entity_id = self.entity_id

    # The host's start message is shared by its entities (one each cost 0.2 KB): the entity
    # id (the first constructor argument, and part of the name) comes from the cell.
    def _constructor_args(self) -> tuple[Any, ...]:
        return (self.entity_id, *super()._constructor_args())

    def _own_ref(self) -> ActorRef:
        return EntityRef(self.myAddress, self.type_name, self.entity_id)

    def _left_behind(self, messages: list[tuple[Any, Any]], *, failed: bool) -> None:
        # Stopped on purpose (PoisonPill, system.stop, context.stop) with messages stashed
        # behind the stop (it arrived while a persist or the recovery was pending): they are
        # the entity's next messages, so they start its next incarnation, as the messages a
        # passivation buffers do. Not after a failure: that would restart it at once, for
        # ever if the journal keeps failing.
        if failed:
            super()._left_behind(messages, failed=failed)
            return
        self.owner.redeliver(self.entity_id, messages)

    def _name(self) -> str:
        return f"{self.owner.entity_class_name}({self.type_name}/{self.entity_id!r})"


class _MemoryCell(_EntityCell):
    """The `ShardMemory` of one shard: not an entity (no id, never passivated)."""

    def __init__(self, owner: EntityHost, shard: int) -> None:
        super().__init__(owner, memory_id(owner.type_name, shard))
        self.shard = shard
        self.key = shard

    def _name(self) -> str:
        return f"ShardMemory({self.entity_id!r})"

    def _left_behind(self, messages: list[tuple[Any, Any]], *, failed: bool) -> None:
        Cell._left_behind(self, messages, failed=failed)  # noqa: SLF001 - not an entity: dead letters


class EntityHost(CellHost[_EntityCell]):
    """Hosts the entities of one type whose shards map to it; started by `StartEntityHost`."""

    _TIMER_PAYLOAD = p.EntityTimer(None, "timers")
    _CHECK_PAYLOAD = p.EntityTimer(None, "timers-check")

    def __init__(self) -> None:
        super().__init__()
        self.type_name = ""
        self._start: p.StartEntityHost | None = None
        self._entity_start: p.StartActor | None = None  # shared by the entities
        self.entity_class_name = ""
        self._cells: OrderedDict[str, _EntityCell] = OrderedDict()  # least recently used first
        self._passivating = 0
        self._buffers: dict[str, deque[tuple[Any, Any]]] = {}
        # remember-entities: the memory cell of each owned shard; ids recovered, to start.
        self._remember = False
        self._memories: dict[int, _MemoryCell] = {}
        self._memory_mail: deque[tuple[_MemoryCell, Any]] = deque()
        self._to_wake: deque[str] = deque()
        self._recovering: set[_EntityCell] = set()
        self._recovery_queue: deque[_EntityCell] = deque()
        self._ready: deque[tuple[str, Any, Any]] = deque()
        # Results of the writes this host stored itself (`local_journal`), for `_drain`.
        self._journal_results: deque[tuple[p.WriteMessagesResult, Any]] = deque()

    # -- thespian entry point ----------------------------------------------------------------
    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        match message:
            case p.Envelope(message=p.ShardEnvelope() as shard):
                if self._accepts(shard):
                    self._deliver(shard.entity_id, p.Envelope(
                        shard.message, message.sender, message.correlation_id,
                        message.reply_to), sender)
            case p.ShardEnvelope():
                if self._accepts(message):
                    self._deliver(message.entity_id, message.message, sender)
            case p.StartEntityHost():
                self._on_start(message, sender)
            case p.EntityTimer(str(entity_id), "passivate"):  # see _PASSIVATE
                self._passivate_now(entity_id)
            case WakeupMessage(payload=p.EntityTimer(None, "timers")):
                self._fire_timers()
            case WakeupMessage(payload=p.EntityTimer(None, "timers-check")):
                self._check_timers()
            case WakeupMessage(payload=p.EntityTimer(None, _)):
                self._idle_check()
            case p.LocalFlush():
                self._start_local_flush()
            case p.LocalWritten():
                self._collect_local()
            case p.InboxWake():
                deliver_inbox(self)
            case ActorExitRequest():
                if self._start is not None:
                    # A stop, not a crash: the guardian must not restart this host.
                    self.send(self._start.system.guardian, p.ActorStopping())
                self._flush_local()  # what its entities wrote before the stop is stored
                for cell in [*self._cells.values(), *self._memories.values()]:
                    cell.exit()  # post_stop of every entity
                self._cells.clear()
                self._memories.clear()
                self._close_local_journals()  # with what they wrote in post_stop
                close_inbox()
            case ChildActorExited():
                pass
            case PoisonMessage():
                log.error("entity host %s: a message it sent could not be delivered: %r (%s)",
                          self.type_name, message.poisonMessage, message.details)
            case p.PluginMoved():
                self.plugin_moved(message)
            case _:
                self._plugin_reply(message, sender)
        self._drain()
        self._grant_recoveries()

    def _drain(self) -> None:
        """What the last message left to do: buffered messages, memory mail, remembered ids."""
        while self._ready or self._memory_mail or self._to_wake or self._journal_results:
            while self._journal_results:  # of writes this host stored itself
                self._plugin_reply(*self._journal_results.popleft())
            while self._ready:  # buffered messages of passivated entities, in arrival order
                self._deliver(*self._ready.popleft())
            while self._memory_mail:
                memory, message = self._memory_mail.popleft()
                if self._memories.get(memory.shard) is memory:
                    memory.receiveMessage(message, self.myAddress)
            while self._to_wake:  # remembered entities: started without a message
                entity_id = self._to_wake.popleft()
                if entity_id not in self._cells:
                    self._start_entity(entity_id)

    def _on_start(self, start: p.StartEntityHost, guardian: Any) -> None:
        self._start = start
        self._guardian = start.system.guardian
        install_inbox(self, self._guardian)  # its entities' other threads tell through it
        self.system_view = _SystemView(start.system)
        self.type_name = start.type_name
        self.entity_class_name = start.cls.__qualname__
        self._entity_start = p.StartActor(
            start.cls, start.args, start.kwargs, start.type_name, start.system, start.journal,
            start.snapshot_store, 0, start.event_adapters)
        if start.journal is not None:
            self._start_local_journals(f"{start.type_name}-{start.host_index}", start.journal,
                                       start.journal_plugin)
        self._remember = start.sharding.remembers(start.type_name)
        if self._remember:  # each owned shard's memory recovers, then starts its entities
            for shard in shards_of_host(start.host_index, start.host_count,
                                        start.sharding.shards):
                self._memory(shard)
        else:
            self._schedule_idle_check()
        self.send(guardian, p.EntityHostStarted(start.correlation_id))

    # -- delivery ----------------------------------------------------------------------------
    def _accepts(self, shard: p.ShardEnvelope) -> bool:
        if self._start is None or shard.type_name != self.type_name:
            log.warning("entity host %r: dropped a message for %s/%s", self.type_name,
                        shard.type_name, shard.entity_id)
            return False
        return True

    def _deliver(self, entity_id: str, message: Any, sender: Any) -> None:
        """Hand `message` (bare, or an `Envelope`) to the entity, starting it if needed."""
        cell = self._cells.get(entity_id)
        if (cell is None or cell.passivating) and type(message) is p.Envelope and \
                type(message.message) is p.TimerFired:
            # A firing of a timer its incarnation had when it passivated (already on its way
            # here): passivation cancelled that timer, so it must not start the next one.
            return
        if cell is not None and cell.passivating:
            buffer = self._buffers.setdefault(entity_id, deque())
            assert self._start is not None  # noqa: S101
            capacity = self._start.system.internal_stash_capacity
            if len(buffer) >= capacity:
                log.warning("entity %s/%s is passivating and %d messages wait for it already "
                            "([persistence] internal_stash_capacity); this one is a dead letter",
                            self.type_name, entity_id, capacity)
                cell.publish_dead_letter(message, sender)
                return
            buffer.append((message, sender))
            return
        inner = message.message if isinstance(message, p.Envelope) else message
        if isinstance(inner, ActorExitRequest):  # system.stop / context.stop of it
            if cell is not None:
                cell.exit()  # post_stop, as for a stopped actor
                self._remove(cell)
            return
        if cell is None:
            cell = self._start_entity(entity_id)
            if cell.start_error is not None and type(message) is p.Envelope and \
                    isinstance(message.correlation_id, str):
                # Its constructor (or pre_start) raised: the ask fails now with that error,
                # as `actor_of` would, instead of timing out.
                reply_to = message.reply_to if message.reply_to is not None else sender
                self.send(reply_to, p.Reply(message.correlation_id,
                                            p.AskRefused(cell.start_error)))
                return
        elif not _from_itself(message, self.type_name, entity_id):
            # Activity for idle passivation and the LRU limit; its own timers and tells to
            # itself are none (in Akka those skip the shard). A new cell is fresh already.
            self._cells.move_to_end(entity_id)
            cell.last_used = time.monotonic()
        cell.receiveMessage(message, sender)

    def _start_entity(self, entity_id: str) -> _EntityCell:
        start = self._start
        assert start is not None  # noqa: S101
        limit = start.sharding.max_active_entities
        if self._remember:
            self._memory_tell(entity_id, EntityStarted(entity_id))
        elif len(self._cells) - self._passivating >= limit:
            for cell in self._cells.values():  # least recently used first
                if not cell.passivating:
                    self.passivate(cell)
                    break
        cell = _EntityCell(self, entity_id)
        self._cells[entity_id] = cell
        cell.receiveMessage(self._entity_start, start.system.guardian)
        return cell

    def _send_home(self, cell: _EntityCell, message: Any) -> None:
        match message:
            case ActorExitRequest():
                self._remove(cell)
                return
            case _ if isinstance(cell, _MemoryCell):  # a snapshot failure, say
                self._memory_mail.append((cell, message))
                return
            case p.ShardEnvelope() | p.Envelope(message=p.ShardEnvelope()) | p.Reply():
                pass  # to another entity of this host, or an ask's reply via the host
            case p.Envelope(message=inner, sender=sender, correlation_id=None):
                # From the sender it names (none: a failure no plugin saw), not from itself.
                message = p.Envelope(p.ShardEnvelope(self.type_name, cell.entity_id, inner),
                                     sender)
            case _:  # to itself (a timer): its mailbox, behind the rest
                message = p.Envelope(p.ShardEnvelope(self.type_name, cell.entity_id, message),
                                     EntityRef(self.myAddress, self.type_name, cell.entity_id))
        self.send(self.myAddress, message)

    def _send_guardian(self, cell: _EntityCell, message: Any) -> None:
        match message:  # recovery permits are counted per host
            case p.StartRecovery():
                if cell not in self._recovering and cell not in self._recovery_queue:
                    self._recovery_queue.append(cell)
            case p.RecoveryDone():
                self._recovering.discard(cell)
            case p.ActorFailed(_, error):
                log.error("entity %s/%s could not start: %s", self.type_name,
                          cell.entity_id, error)
                cell.start_error = error
            case p.ActorStarted() | p.ActorStopping():
                pass  # the guardian does not track entities
            case _:
                self.send(self._guardian, message)

    # The entities of a host are of one class, started with the host's journal and snapshot
    # store: the persistence id alone names a snapshot request.
    def _pid_key(self, plugin: Any, persistence_id: str) -> Any:
        return persistence_id

    def _no_cell(self, message: Any) -> None:
        log.debug("entity host %r: no entity for %r", self.type_name, message)

    def _local_result(self, journal: Any, result: p.WriteMessagesResult) -> None:
        self._journal_results.append((result, journal))

    def _live_cells(self) -> list[_EntityCell]:
        return [*self._cells.values(), *self._memories.values()]

    def _move_starts(self, move: Move) -> None:
        if self._start is not None:
            self._start = move.start(self._start)
        if self._entity_start is not None:  # shared by the entities: moved once for all
            self._entity_start = move.start(self._entity_start)

    def _cell(self, key: Any) -> _EntityCell | None:
        """The running cell `key` names: an entity by id, a shard's memory by shard."""
        return self._cells.get(key) if isinstance(key, str) else self._memories.get(key)

    # -- remember-entities ---------------------------------------------------------------------
    def _memory(self, shard: int) -> _MemoryCell:
        """The memory cell of `shard`, started (it recovers first) if it is not running."""
        memory = self._memories.get(shard)
        if memory is not None and not memory.stopped:
            return memory
        start = self._start
        assert start is not None  # noqa: S101
        memory = self._memories[shard] = _MemoryCell(self, shard)

        def recovered(ids: set[str]) -> None:
            self._to_wake.extend(sorted(ids))  # started at the end of this message

        # Constructed as ShardMemory(persistence id, recovered): the cell puts its id first.
        memory.receiveMessage(p.StartActor(
            ShardMemory, (recovered,), {}, memory.entity_id, start.system,
            start.journal, start.snapshot_store, 0, None), start.system.guardian)
        return memory

    def _memory_tell(self, entity_id: str, message: EntityStarted | EntityStopped) -> None:
        assert self._start is not None  # noqa: S101
        memory = self._memory(shard_of(entity_id, self._start.sharding.shards))
        self._memory_mail.append((memory, message))

    # -- passivation ---------------------------------------------------------------------------
    def passivate(self, cell: _EntityCell) -> None:
        """Start passivating `cell`: buffer its messages, then stop it through its mailbox."""
        if cell.passivating or cell.stopped or self._cells.get(cell.entity_id) is not cell:
            return
        cell.passivating = True
        self._passivating += 1
        self.send(self.myAddress, p.EntityTimer(cell.entity_id, _PASSIVATE))

    def _passivate_now(self, entity_id: str) -> None:
        cell = self._cells.get(entity_id)
        if cell is None or not cell.passivating:
            return
        if cell.stopped:
            self._remove(cell)
            return
        # A PoisonPill: a persistent entity handles what it stashed while persisting first.
        cell.receiveMessage(_PASSIVATION_PILL, self.myAddress)

    def _schedule_idle_check(self) -> None:
        assert self._start is not None  # noqa: S101
        idle = self._start.sharding.passivate_idle_after
        if idle > 0:
            period = min(max(idle / 2, _MIN_IDLE_CHECK), _MAX_IDLE_CHECK)
            self.wakeupAfter(datetime.timedelta(seconds=period), payload=p.EntityTimer(None, None))

    def _idle_check(self) -> None:
        assert self._start is not None  # noqa: S101
        if self._remember:
            return  # as in Akka: remembered entities are passivated only on request
        cutoff = time.monotonic() - self._start.sharding.passivate_idle_after
        for cell in list(self._cells.values()):  # least recently used first
            if cell.last_used > cutoff:
                break
            self.passivate(cell)
        self._schedule_idle_check()

    def redeliver(self, entity_id: str, messages: list[tuple[Any, Any]]) -> None:
        """Deliver what a stopping entity left stashed to its next incarnation (after this turn).

        `messages` are (message, sender ref) pairs, in order; each goes back as the envelope it
        came in, so a reply still reaches its asker.
        """
        for message, sender in messages:
            if message is _PASSIVATION_PILL:
                # Stashed behind another stop (a user's PoisonPill), it was meant for the
                # incarnation that stopped: carried over, it stopped the next one right after
                # its recovery, whose start at max_active_entities passivated another entity,
                # and so on for ever, the real messages carried along and never handled.
                continue
            if isinstance(sender, AskRef):
                envelope = p.Envelope(message, None, sender.correlation_id, sender.address)
            else:
                envelope = p.Envelope(message, sender if sender.address is not None else None)
            self._ready.append((entity_id, envelope, self.myAddress))

    def _remove(self, cell: _EntityCell) -> None:
        """`cell` stopped: forget it; buffered messages start its next incarnation."""
        if isinstance(cell, _MemoryCell):  # failed (a write): the next tell starts another
            if self._memories.get(cell.shard) is not cell:
                return
            del self._memories[cell.shard]
        elif self._cells.get(cell.entity_id) is not cell:
            return
        else:
            self._forget_entity(cell)
        for instance_id in cell.instance_ids:
            self._by_instance.pop(instance_id, None)
        self._recovering.discard(cell)
        if cell in self._recovery_queue:
            self._recovery_queue.remove(cell)

    def _forget_entity(self, cell: _EntityCell) -> None:
        del self._cells[cell.entity_id]
        if cell.passivating:
            self._passivating -= 1
            if self._remember:  # passivated: not started again with the host
                self._memory_tell(cell.entity_id, EntityStopped(cell.entity_id))
        buffered = self._buffers.pop(cell.entity_id, None)
        if buffered:
            # Delivered at the end of the current message (the stopping cell may still be on
            # the stack), before the next one: their order is kept.
            self._ready.extend((cell.entity_id, message, sender) for message, sender in buffered)

    # -- recovery permits ----------------------------------------------------------------------
    def _grant_recoveries(self) -> None:
        if self._start is None:
            return
        limit = self._start.max_concurrent_recoveries
        while self._recovery_queue and len(self._recovering) < limit:
            cell = self._recovery_queue.popleft()
            if self._cell(cell.key) is not cell or cell.stopped:
                continue
            self._recovering.add(cell)
            cell.receiveMessage(p.RecoveryPermitted(), self._start.system.guardian)
