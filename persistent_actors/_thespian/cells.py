"""Cells: actors that run inside one thespian actor (a host) rather than in their own.

What an entity host (`EntityHost`, sharding) and a shared host (`SharedHost`, ``actor_of`` with
``[actor_system] host_processes``) have in common:

* `CellContext`: a hosted actor's context; every send names its sender (the thespian sender is
  the host, shared by its cells);
* `Cell`: the `ActorHost` logic with its thespian calls (address, send, wakeup, exit)
  redirected to the host;
* `CellHost`: the host's side: `cell_send` (plugin requests are noted so that the replies find
  their cell), `_plugin_reply` (journal replies by actor instance id, snapshot replies by
  persistence id, deletion replies in request order) and the cells' timers (one heap,
  multiplexed on one thespian wakeup).

Each host supplies how it finds a cell by key (`CellHost._cell`), what a cell's sends to the
host itself and to the guardian mean (`_send_home`, `_send_guardian`), and how it keys
snapshot and deletion requests (`_pid_key`, `_order_key`).
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from thespian.actors import Actor as ThespianActor

from persistent_actors import _protocol as p
from persistent_actors import messages as m
from persistent_actors._actor import ActorRef, reply_form
from persistent_actors._thespian.frames import NESTED, FrameBatching
from persistent_actors._thespian.host import ActorHost, _HostContext, _SystemView
from persistent_actors._thespian.moved import Move, address_key
from persistent_actors.messages import Kill, PoisonPill

if TYPE_CHECKING:
    from persistent_actors._thespian.local_journal import LocalJournals

__all__ = ["Cell", "CellContext", "CellHost"]

# Replies without a persistence id or instance id: delivered in request order (a plugin actor
# answers those one at a time, in order).
_IN_ORDER: dict[type[Any], str] = {
    m.DeleteMessagesSuccess: "delete-messages", m.DeleteMessagesFailure: "delete-messages",
    m.DeleteSnapshotsSuccess: "delete-snapshots", m.DeleteSnapshotsFailure: "delete-snapshots",
}
_BY_METADATA = (m.SaveSnapshotSuccess, m.SaveSnapshotFailure, m.DeleteSnapshotSuccess,
                m.DeleteSnapshotFailure)


class CellContext(_HostContext):
    """A cell's `ActorContext`: its ref is the cell's own; every send names its sender."""

    def __init__(self, host: ActorHost, start: p.StartActor) -> None:
        super().__init__(host, start)
        assert isinstance(host, Cell)  # noqa: S101 - only cells use this context
        self._self_ref = host._own_ref()  # noqa: SLF001 - the cell's ref kind
        self._cell_owner: CellHost[Any] = host.owner
        view = host.owner.system_view
        if view is not None:  # one per host, not one per cell
            self._system = view

    def write_messages(self, request: p.WriteMessages) -> None:
        """Hand `request` to the host; one it writes itself is never pickled, so not checked."""
        journals = self._cell_owner._journals  # noqa: SLF001 - the host's own
        if journals is not None and journals.is_local(self.journal):
            self._host.send(self.journal, request)
            return
        super().write_messages(request)

    def _send(self, target: ActorRef, message: Any, sender: ActorRef | None) -> None:
        if target.address is None:
            target.tell(message)  # dead letters
            return
        wrapped = reply_form(target, message)
        if not isinstance(wrapped, p.Reply):
            # Always name the sender: the thespian sender is the host, shared by its cells.
            wrapped = p.Envelope(wrapped, sender if sender is not None else self._self_ref)
        self.send_to_address(target.address, wrapped)
        if isinstance(message, Kill | PoisonPill):
            self._stop_requested(target)


class Cell(ActorHost):
    """One actor inside a `CellHost`: an `ActorHost` whose thespian calls go to the host."""

    _context_class: type[_HostContext] = CellContext
    # Its receives run inside the host's, and its sends go through the host's outbox.
    _outbox = NESTED

    def __init__(self, owner: CellHost[Any], key: Hashable) -> None:
        super().__init__()
        self.owner = owner
        self.key = key  # how the host finds it (`CellHost._cell`)
        self.instance_ids: list[int] = []  # its Eventsourced instances (one per restart)

    @property
    def myAddress(self) -> Any:  # noqa: N802 - thespian's name
        return self.owner.myAddress

    def send(self, targetAddr: Any, msg: Any) -> None:  # noqa: N803 - thespian's names
        self.owner.cell_send(self, targetAddr, msg)

    def wakeupAfter(self, timePeriod: Any, payload: Any = None) -> None:  # noqa: N802, N803
        self.owner.schedule(self.key, timePeriod.total_seconds(), payload)

    def fire_timer(self, payload: Any) -> None:
        """Deliver one of the actor's own timers (the host multiplexes them on one wakeup)."""
        self._on_timer(payload)

    def exit(self) -> None:
        """Stop the actor as thespian's ActorExitRequest stops one (post_stop runs)."""
        self._on_exit()

    @property
    def stopped(self) -> bool:
        """True once the actor stopped (or failed to start)."""
        return self._stopped


C = TypeVar("C", bound=Cell)

# What an address is to `CellHost.cell_send` (_LOCAL_JOURNAL: a journal the host writes
# itself, see `local_journal`).
_HOME, _GUARDIAN, _ELSEWHERE, _LOCAL_JOURNAL = 0, 1, 2, 3
_MAX_ADDRESS_KINDS = 256
# Seconds by which the wakeup a host armed for its timers may be overdue before it is taken
# for lost: the next `schedule` arms another, and the check (`CellHost._check_timers`) fires
# the timers itself. One lost wakeup stopped every timer of a host for good (seen once under
# load). A duplicate is harmless: `_fire_timers` fires what is due and arms for the rest.
_WAKEUP_OVERDUE = 1.0
_LOCAL_FLUSH = p.LocalFlush()
_LOCAL_WRITTEN = p.LocalWritten()


class CellHost(FrameBatching, ThespianActor, Generic[C]):  # type: ignore[misc]
    """A thespian actor hosting cells of type `C`: their sends, plugin replies and timers."""

    # The wakeup payload that means "the cells' timers are due", and the one of the check
    # that their wakeup came (`_check_timers`).
    _TIMER_PAYLOAD: Any = None
    _CHECK_PAYLOAD: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.system_view: _SystemView | None = None
        self._guardian: Any = None
        self._by_instance: dict[int, C] = {}
        self._by_pid: dict[Any, Hashable] = {}  # `_pid_key` -> cell key
        self._in_order: dict[Any, deque[Hashable]] = {}  # `_order_key` -> cell keys, in order
        # The cells' timers (recovery ticks, back-off, scheduled messages): one heap, and one
        # thespian wakeup for its earliest deadline. Thespian's multiproc base re-sorts its
        # list of pending wakeups on every add, so one wakeup per cell made each cell start
        # cost O(cells).
        self._timers: list[tuple[float, int, Hashable, Any]] = []
        self._timer_seq = itertools.count()
        self._armed_for: float | None = None
        self._check_for: float | None = None  # when the pending check is due
        # id(address) -> (address, the guardian then, what it is: _HOME, _GUARDIAN or
        # _ELSEWHERE), for `cell_send`: thespian's address equality is a chain of Python
        # calls, two per send, and a cell sends to few address objects (its journal, the
        # asker's address of one incoming frame).
        self._address_kinds: dict[int, tuple[Any, Any, int]] = {}
        # The journals this host writes itself (see `local_journal`; multiproc-tcp only), and
        # how it hands itself `LocalFlush` once its transport read what its sockets hold.
        self._journals: LocalJournals | None = None
        self._after_reads: Callable[[Any], None] | None = None

    # -- what each host supplies -----------------------------------------------------------
    def _cell(self, key: Any) -> C | None:
        """The running cell `key` names, if any."""
        raise NotImplementedError

    def _send_home(self, cell: C, message: Any) -> None:
        """`cell` sends `message` to the host's own address."""
        raise NotImplementedError

    def _send_guardian(self, cell: C, message: Any) -> None:
        """`cell` sends `message` to the guardian."""
        raise NotImplementedError

    def _pid_key(self, plugin: Any, persistence_id: str) -> Any:
        """How a snapshot request to `plugin` about `persistence_id` is noted."""
        raise NotImplementedError

    def _order_key(self, kind: str, plugin: Any) -> Any:
        """How deletion requests of `kind` to `plugin` are queued (per kind and plugin)."""
        return (kind, address_key(plugin))

    def _no_cell(self, message: Any) -> None:
        """A plugin's reply found no running cell."""
        raise NotImplementedError

    def _local_result(self, journal: Any, result: p.WriteMessagesResult) -> None:
        """Queue `result` (of a write this host stored itself) for its cell, after this message."""
        raise NotImplementedError

    def _live_cells(self) -> list[C]:
        """Every cell the host holds (`ActorHost.plugin_moved` leaves a stopped one alone)."""
        raise NotImplementedError

    def _move_starts(self, move: Move) -> None:
        """Replace the dead address of `move` in the host's own start records."""
        raise NotImplementedError

    # -- a runtime process moved (`p.PluginMoved`) -------------------------------------------
    def plugin_moved(self, moved: p.PluginMoved) -> None:
        """The process at `moved.old` died and runs again at `moved.new`: hold the new one.

        In the host's start records, its system view, its own journal instances, and each
        cell (`ActorHost.plugin_moved`); a cell that waited for an answer from the dead process
        gets its failure now, as that plugin's answer.
        """
        move = Move(moved)
        self._move_starts(move)
        if self.system_view is not None:
            self.system_view.moved(move)
        journals = self._journals
        writes_here = journals is not None and journals.is_local(moved.old)
        if journals is not None:
            journals.moved(move)
        self._address_kinds.clear()
        # Deletion requests the dead process never answered: none will come.
        for key in [key for key in self._in_order if key[1] == move.old]:
            del self._in_order[key]
        for cell in self._live_cells():
            lost = cell.plugin_moved(move, writes_here=writes_here)
            if lost is not None:
                cell.receiveMessage(lost, moved.new)

    # -- the journals it writes itself (`local_journal`) ---------------------------------------
    def _start_local_journals(self, name: str, journal: Any, plugin: p.StartPlugin | None
                              ) -> None:
        """Write the cells' events to `journal` here if its plugin allows (multiproc-tcp only).

        `plugin` says how to start it (None: through its plugin process only); `name` names
        this host in the plugin's loop name and in logs.
        """
        transport = getattr(getattr(self, "_myRef", None), "transport", None)
        if transport is None or plugin is None:
            return  # the simple base: the plugin host shares this process already
        # Imported only where a transport runs (local_journal loads the plugin host's module).
        from persistent_actors._thespian.lean_loop import (  # noqa: PLC0415
            after_reads,
            when_readable,
        )
        from persistent_actors._thespian.local_journal import LocalJournals  # noqa: PLC0415
        if self._journals is None:
            self._journals = LocalJournals(name)
            self._after_reads = after_reads(self)
            # The commits run on a thread of the host's own; this loop hears when one is done.
            self._journals.commit_in_background(
                lambda fd: when_readable(self, fd, _LOCAL_WRITTEN))
        if self._journals.register(journal, plugin):
            self._address_kinds.clear()  # that address is now a local journal

    def _write_local(self, journal: Any, request: p.WriteMessages) -> None:
        """Gather `request` for the journal at `journal`, which this host writes itself."""
        journals = self._journals
        assert journals is not None  # noqa: S101 - only set journals are local
        first = not journals.has_pending
        journals.write(journal, request)
        if first:  # once the sockets' frames are read: their writes join this batch
            if self._after_reads is not None:
                self._after_reads(_LOCAL_FLUSH)
            else:
                self.send(self.myAddress, _LOCAL_FLUSH)

    def _start_local_flush(self) -> None:
        """`LocalFlush`: start storing what `_write_local` gathered (see `LocalJournals`)."""
        journals = self._journals
        if journals is not None and journals.has_pending:
            journals.start_flush(self._local_result)

    def _collect_local(self) -> None:
        """`LocalWritten`: hand the results of finished commits to `_local_result`."""
        if self._journals is not None:
            self._journals.collect(self._local_result)

    def _flush_local(self) -> None:
        """Store what `_write_local` gathered, and any commit in flight, before going on.

        Each result goes to `_local_result`. For a request that must not overtake the writes,
        and for the host's stop.
        """
        journals = self._journals
        if journals is not None and journals.unstored:
            journals.flush(self._local_result)

    def _close_local_journals(self) -> None:
        """Write what is gathered, then close the journals started here (the host stops)."""
        self._flush_local()
        if self._journals is not None:
            self._journals.close()

    # -- sends and plugin replies ------------------------------------------------------------
    def cell_send(self, cell: C, address: Any, message: Any) -> None:
        """Send for `cell`: to the host itself, to the guardian, or to anyone else (a plugin)."""
        known = self._address_kinds.get(id(address))
        if known is not None and known[0] is address and known[1] is self._guardian:
            kind = known[2]
        else:
            kind = self._address_kind(address)
        if kind == _HOME:
            self._send_home(cell, message)
            return
        if kind == _GUARDIAN:
            self._send_guardian(cell, message)
            return
        instance_id = getattr(message, "actor_instance_id", None)
        if isinstance(instance_id, int) and self._by_instance.get(instance_id) is not cell:
            self._by_instance[instance_id] = cell
            cell.instance_ids.append(instance_id)
        if kind == _LOCAL_JOURNAL:
            if type(message) is p.WriteMessages:
                self._write_local(address, message)
                return
            self._flush_local()  # no other request overtakes a write of this host
        match message:
            case p.SaveSnapshot(metadata=md) | p.DeleteSnapshot(metadata=md):
                self._by_pid[self._pid_key(address, md.persistence_id)] = cell.key
            case p.DeleteMessagesTo():
                self._in_order.setdefault(self._order_key("delete-messages", address),
                                          deque()).append(cell.key)
            case p.DeleteSnapshots():
                self._in_order.setdefault(self._order_key("delete-snapshots", address),
                                          deque()).append(cell.key)
        self.send(address, message)

    def _address_kind(self, address: Any) -> int:
        """What `address` is to `cell_send` (thespian's equality), remembered per object."""
        if address == self.myAddress:
            kind = _HOME
        elif address == self._guardian:
            kind = _GUARDIAN
        elif self._journals is not None and self._journals.is_local(address):
            kind = _LOCAL_JOURNAL
        else:
            kind = _ELSEWHERE
        kinds = self._address_kinds
        if len(kinds) >= _MAX_ADDRESS_KINDS:
            kinds.clear()  # new address objects keep coming (one per incoming frame's asker)
        # The entry keeps `address` alive, so its id names no other object while it is here.
        kinds[id(address)] = (address, self._guardian, kind)
        return kind

    def _plugin_reply(self, message: Any, sender: Any) -> None:
        cell: C | None = None
        instance_id = getattr(message, "actor_instance_id", None)
        if isinstance(instance_id, int) and type(message).__module__ == p.__name__:
            cell = self._by_instance.get(instance_id)
        elif isinstance(message, _BY_METADATA):
            key = self._by_pid.get(self._pid_key(sender, message.metadata.persistence_id))
            cell = self._cell(key) if key is not None else None
        elif type(message) in _IN_ORDER:
            waiting = self._in_order.get(self._order_key(_IN_ORDER[type(message)], sender))
            if waiting:
                cell = self._cell(waiting.popleft())
        if cell is None or cell.stopped:
            self._no_cell(message)
            return
        cell.receiveMessage(message, sender)

    # -- timers --------------------------------------------------------------------------------
    def schedule(self, key: Hashable, delay: float, payload: Any) -> None:
        """Hand `payload` to the cell's `_on_timer` after `delay` seconds (if it still runs)."""
        due = time.monotonic() + max(delay, 0.001)
        heapq.heappush(self._timers, (due, next(self._timer_seq), key, payload))
        self._arm()

    def _arm(self) -> None:
        if not self._timers:
            return
        due = self._timers[0][0]
        armed = self._armed_for
        now = time.monotonic()
        # Unless a wakeup at or before it is pending already (and not long overdue).
        if armed is None or armed > due or now >= armed + _WAKEUP_OVERDUE:
            self._armed_for = armed = due
            self.wakeupAfter(datetime.timedelta(seconds=max(due - now, 0.001)),
                             payload=self._TIMER_PAYLOAD)
        # Every timer of the host rides on that one wakeup, and each firing of a periodic
        # timer is scheduled only when its previous one is handled: if that wakeup never came,
        # no timer of the host fired again, and nothing arms another while no new timer is
        # scheduled. So a second wakeup, the check, follows it while timers are pending (one
        # at a time, about one a second) and fires them if it did not come. A check that was
        # lost itself is replaced as that wakeup is.
        check = self._check_for
        if check is None or now >= check + _WAKEUP_OVERDUE:
            self._check_for = check = armed + _WAKEUP_OVERDUE
            self.wakeupAfter(datetime.timedelta(seconds=max(check - now, 0.001)),
                             payload=self._CHECK_PAYLOAD)

    def _check_timers(self) -> None:
        """The check's wakeup: fire the timers if their wakeup is long overdue (lost)."""
        now = time.monotonic()
        if self._check_for is not None and now < self._check_for:
            return  # one taken for lost that came after all: the one pending now serves
        self._check_for = None
        armed = self._armed_for
        if armed is not None and now >= armed + _WAKEUP_OVERDUE:
            self._fire_timers()  # and arms both again for what is left
        else:
            self._arm()  # the next check, while timers are pending

    def _fire_timers(self) -> None:
        self._armed_for = None
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, key, payload = heapq.heappop(self._timers)
            cell = self._cell(key)
            if cell is not None:
                cell.fire_timer(payload)
        self._arm()
