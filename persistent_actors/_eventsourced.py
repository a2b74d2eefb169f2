"""The event-sourcing state machine behind every `PersistentActor` (Akka's ``Eventsourced``).

It is independent of thespian: it talks to its host only through an `EntityCell`, so one
thespian actor could host many entities, and to the user's actor only through the callbacks of
`PersistentBehavior` (which `PersistentActor` provides). The rules it implements, as Akka's:

* handlers run after the write, after the command handler returned, in call order; nested
  persists run after the outer layer;
* every persist call made while handling one message goes to the journal in one batch, with at
  most one batch in flight; calls made meanwhile form the next batch;
* while a stashing persist is pending, or during recovery, other messages are stashed and later
  handled one by one in arrival order;
* a rejected write consumes its sequence number and the actor continues; a failed write stops it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from persistent_actors import _protocol as p
from persistent_actors._actor import DEAD_LETTERS, ActorRef, refuse_coroutine
from persistent_actors._replay_filter import OFF, ReplayFilter, ReplayFilterSettings
from persistent_actors._serialization import Serializer, clip
from persistent_actors.adapters import EventAdapters, Tagged
from persistent_actors.errors import (
    ConfigError,
    IllegalActorStateError,
    JournalError,
    RecoveryError,
    RecoveryTimedOutError,
    ReplayFilterError,
    SerializationError,
    SnapshotStoreError,
    StashOverflowError,
)
from persistent_actors.journal import MAX_SEQUENCE_NR, AtomicWrite, PersistentRepr, ReplayedRows
from persistent_actors.messages import (
    DeleteMessagesFailure,
    DeleteSnapshotFailure,
    DeleteSnapshotsFailure,
    PoisonPill,
    RecoveryCompleted,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
    SnapshotOffer,
)
from persistent_actors.recovery import Recovery
from persistent_actors.retention import RetentionCriteria, retention_of
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria
from persistent_actors.stored import unstorable
from persistent_actors.supervision import (
    DiscardToDeadLetterStrategy,
    ReplyToStrategy,
    StashOverflowStrategy,
    ThrowOverflowExceptionStrategy,
)

log = logging.getLogger("persistent_actors.persistence")

_FAILURE_REPLIES = (
    SaveSnapshotFailure, DeleteMessagesFailure, DeleteSnapshotFailure, DeleteSnapshotsFailure,
)
# The commands the machine looks at itself before or after the actor's handler.
_SPECIAL_COMMANDS = (PoisonPill, SaveSnapshotSuccess, *_FAILURE_REPLIES)


class EntityCell(Protocol):
    """What the machine needs from whatever hosts it."""

    journal: Any
    snapshot_store: Any
    recovery_event_timeout: float
    internal_stash_capacity: int
    replay_filter: ReplayFilterSettings

    def schedule(self, delay: float, message: Any) -> None:
        """Deliver `message` to this actor after `delay` seconds."""

    def dead_letter(self, message: Any, sender: ActorRef) -> None:
        """Publish `message` as a dead letter."""

    def send_to_address(self, address: Any, message: Any) -> None:
        """Send a protocol message to a plugin actor."""

    def write_messages(self, request: p.WriteMessages) -> None:
        """Send a write request to the journal; its `WriteMessagesResult` comes as a message."""

    def send_to_self(self, message: Any) -> None:
        """Enqueue `message` in this actor's own mailbox."""

    def stop_self(self, *, failed: bool = False) -> None:
        """Stop the actor after the current message; `failed`: because a plugin failed."""

    def set_sender(self, sender: ActorRef) -> None:
        """Make `sender` what ``self.sender`` returns."""

    def begin_handling(self) -> None:
        """Forget whether the previous message was unhandled."""

    def was_unhandled(self) -> bool:
        """True if the user called ``unhandled`` since `begin_handling`."""


class PersistentBehavior(Protocol):
    """What the machine calls on the user's actor (`PersistentActor` implements it)."""

    @property
    def recovery(self) -> Recovery:
        """How to recover."""

    @property
    def internal_stash_overflow_strategy(self) -> StashOverflowStrategy:
        """What happens to a message that does not fit the stash."""

    @property
    def retention(self) -> RetentionCriteria | None:
        """Snapshot every N events, keep K (`persistent_actors.retention`), or None."""

    def snapshot_state(self) -> Any:
        """The state a retention snapshot stores."""

    def on_command(self, message: Any) -> None:
        """Handle a command."""

    def _receive_command(self, message: Any) -> None:
        """Hand a command to `on_command`, or to a mixin's own handling first."""

    def _on_replay_success(self) -> None:
        """Replay ended, before `RecoveryCompleted` is handled (a mixin's hook)."""

    def on_recover(self, message: Any) -> None:
        """Apply a replayed event, a snapshot offer or `RecoveryCompleted`."""

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        """Recovery failed; the actor stops after this."""

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        """A write failed; the actor stops after this."""

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        """A write was rejected; the actor continues."""


# A pending handler call: (event, handler, stashing, sender). A tuple, not a class: one is
# made per persisted event, and a tuple costs a quarter of a slotted instance's __init__.
_Invocation = tuple[Any, Callable[[Any], None], bool, ActorRef]


# The plugins' replies to this machine (each carries the `actor_instance_id` it is for).
_PLUGIN_REPLIES = frozenset({
    p.WriteMessagesResult, p.ReplayedMessages, p.RecoverySuccess, p.ReplayMessagesFailure,
    p.LoadSnapshotResult, p.LoadSnapshotFailed,
})

# Messages for the machine itself, never stashed.
_MACHINE_MESSAGES = _PLUGIN_REPLIES | {p.RecoveryTick}

_RECOVERY_STARTED = "recovery-started"
_REPLAYING = "replaying"
_PROCESSING = "processing"
_STOPPED = "stopped"


class _ReplayOrder:
    """The chunks of one replay put back in order, and its end if it overtook them."""

    __slots__ = ("early", "expected", "highest", "next")

    def __init__(self) -> None:
        self.next = 0  # the index of the next chunk to apply
        self.early: dict[int, ReplayedRows] = {}
        self.highest: int | None = None  # RecoverySuccess arrived: its highest sequence nr
        self.expected = 0  # ... and how many chunks came before it


class Eventsourced:
    """Drives one `PersistentActor` instance: recovery, persist batching, stash, replies."""

    # The command whose handler raised, for the restart's log and pre_restart (see
    # `ActorHost._restart`); a class default, so an instance's dict holds it only after one.
    failed_command: Any = None

    def __init__(  # noqa: PLR0917 - internal constructor, called in one place
        self,
        actor: PersistentBehavior,
        cell: EntityCell,
        persistence_id: str,
        instance_id: int,
        serializer: Serializer,
        stash: deque[tuple[Any, ActorRef]] | None = None,
        adapters: EventAdapters | None = None,
    ) -> None:
        self.actor = actor
        self.cell = cell
        self.persistence_id = persistence_id
        self.instance_id = instance_id
        self.serializer = serializer
        # The journal's event adapters (tags, upcasting); none bound: store and replay as is.
        self.adapters = adapters if adapters is not None else EventAdapters(serializer=serializer)
        self.log = log
        self.writer_uuid = uuid.uuid4().hex
        self.last_sequence_nr = 0
        self._sequence_nr = 0  # last sequence number handed out by persist
        self._state = _RECOVERY_STARTED
        self._recovery = Recovery()
        # Both deques are created on first use (an empty deque costs 760 bytes; an entity host
        # keeps many idle machines).
        self._stash: deque[tuple[Any, ActorRef]] | None = stash
        self._pending: deque[_Invocation] | None = None
        # The one pending invocation while there is no deque (`_pend`): an actor that never
        # has two persists pending at once never makes one. A deque made at an actor's first
        # persist stayed alive with it, one object more per actor for the cyclic collector:
        # with 10,000 carts each pass of 100 first requests set off a collection (6 % of
        # service_async_10k). Never set while `_pending` is a deque.
        self._one: _Invocation | None = None
        self._pending_stashing = 0
        self._stash_capacity = 0  # internal_stash_capacity, set by the first stash
        self._event_batch: list[p.WriteItem] = []
        self._journal_batch: list[p.WriteItem] = []
        self._in_flight: tuple[p.WriteItem, ...] = ()
        self._write_in_progress = False
        self._sender: ActorRef | None = None
        self._snapshot_criteria = SnapshotSelectionCriteria.latest()
        # The newest snapshot that could not be decoded, while a replay from the first event
        # stands in for it and has not shown that event yet (`_check_fallback`).
        self._undecodable_snapshot = 0
        self._progress = 0.0  # monotonic time recovery last made progress
        self._replay_filter: ReplayFilter | None = None
        # The command on_command is handling (what the user's `stash()` sets aside).
        self.current_command: tuple[Any, ActorRef] | None = None
        self._retention: RetentionCriteria | None = None
        # Where PersistentActor's `_receive_command` would only call on_command, on_command is
        # called directly (one call less per command); a mixin's hook (at-least-once
        # delivery) is kept. An actor that does not say calls its hook.
        self._hooked: bool = getattr(actor, "_command_hook", True)
        self._replay_order: _ReplayOrder | None = None  # while replaying

    # -- state ------------------------------------------------------------------------------
    @property
    def is_recovering(self) -> bool:
        """True until recovery has finished."""
        return self._state in (_RECOVERY_STARTED, _REPLAYING)

    def lost_reply(self, reason: str, *, journal: bool, snapshot_store: bool,
                   writes: bool) -> Any:
        """The failure this machine gets for a request lost in a dead plugin process, or None.

        The process of its journal (`journal`) or snapshot store (`snapshot_store`) died, and
        the requests in flight to it will never be answered; `writes`: its writes went there
        too (not to a journal its host writes itself). Returns the reply to hand to `receive`
        as the plugin's answer, its error saying `reason`: a recovery waiting for that plugin
        fails (Akka's ``onRecoveryFailure``: the actor stops), a write in flight fails as
        Akka's journal circuit breaker fails it after its call timeout (``onPersistFailure``:
        it may or may not have been stored; the actor stops). None if it waits for neither.
        """
        if self._state == _STOPPED:
            return None
        if self.is_recovering:
            if not self._progress:  # recovery has not begun (it waits for its permit)
                return None
            if self._state == _RECOVERY_STARTED:
                return p.LoadSnapshotFailed(SnapshotStoreError(reason), self.instance_id) \
                    if snapshot_store else None
            return p.ReplayMessagesFailure(JournalError(reason), self.instance_id) \
                if journal else None
        if writes and self._write_in_progress:
            error = JournalError(f"{reason}; the write may or may not have been stored")
            return p.WriteMessagesResult(tuple(p.WriteFailed(error) for _ in self._in_flight),
                                         self.instance_id)
        return None

    @property
    def stash(self) -> deque[tuple[Any, ActorRef]]:
        """Messages waiting for the actor (kept across restarts)."""
        if self._stash is None:
            self._stash = deque()
        return self._stash

    # -- recovery ---------------------------------------------------------------------------
    def recovery_settings(self) -> tuple[Recovery, RetentionCriteria | None]:
        """The actor's `recovery` and `retention`, checked (the host reads them at start too).

        Raises:
            TypeError: `recovery` is not a `Recovery`.
            ConfigError: `retention` is not valid.

        """
        recovery = self.actor.recovery
        if not isinstance(recovery, Recovery):
            raise TypeError(f"{type(self.actor).__qualname__}.recovery must be a Recovery, "
                            f"got {type(recovery).__name__}")
        return recovery, retention_of(self.actor)

    def start_recovery(self) -> None:
        """Begin recovery: load a snapshot (unless the criteria select none), then replay."""
        try:
            recovery, self._retention = self.recovery_settings()
        except (TypeError, ConfigError) as e:
            self._fail_recovery(e, None)
            return
        self._recovery = recovery
        self._progress = time.monotonic()
        # Replay comes from the journal, not from whoever sent the message that made the last
        # incarnation fail (the context outlives a restart): from no sender, as in Akka.
        self._sender = DEAD_LETTERS
        self.cell.set_sender(DEAD_LETTERS)
        if self.cell.replay_filter.mode != OFF:
            self._replay_filter = ReplayFilter(self.cell.replay_filter, self.persistence_id)
        self.cell.schedule(self.cell.recovery_event_timeout, p.RecoveryTick(self.instance_id))
        to = recovery.to_sequence_nr
        if recovery.from_snapshot.is_none or self.cell.snapshot_store is None:
            self._on_snapshot_result(p.LoadSnapshotResult(None, to, self.instance_id))
        else:
            self._load_snapshot(recovery.from_snapshot.limit(to))

    def _load_snapshot(self, criteria: SnapshotSelectionCriteria) -> None:
        self._snapshot_criteria = criteria
        to = self._recovery.to_sequence_nr
        self.cell.send_to_address(
            self.cell.snapshot_store,
            p.LoadSnapshot(self.persistence_id, criteria, to, self.instance_id))

    def _check_recovery_progress(self) -> None:
        """Fail recovery that went `recovery_event_timeout` seconds without progress."""
        if not self.is_recovering:
            return
        timeout = self.cell.recovery_event_timeout
        idle = time.monotonic() - self._progress
        if idle < timeout:
            self.cell.schedule(timeout - idle, p.RecoveryTick(self.instance_id))
            return
        phase = "loading a snapshot" if self._state == _RECOVERY_STARTED else "replaying events"
        self._fail_recovery(RecoveryTimedOutError(
            f"recovery of {self.persistence_id!r} made no progress for {timeout}s while "
            f"{phase}; highest sequence number seen: {self.last_sequence_nr}"), None)

    def _on_snapshot_result(self, result: p.LoadSnapshotResult) -> None:
        if result.snapshot is not None:
            md = result.snapshot.metadata
            try:
                state = self.serializer.from_binary(result.snapshot.manifest,
                                                    result.snapshot.payload)
            except SerializationError as e:
                # Akka's SnapshotDecodeFailure: try the next older snapshot; with none left,
                # the result is None and every event is replayed.
                log.warning("snapshot %d of %r cannot be decoded (%s); trying an older one",
                            md.sequence_nr, self.persistence_id, clip(str(e)))
                self._undecodable_snapshot = max(self._undecodable_snapshot, md.sequence_nr)
                # A snapshot at 0 (saved before any event) has no older one: a limit of -1
                # is not valid criteria, so go straight to the full replay.
                if md.sequence_nr < 1 or \
                        md.sequence_nr - 1 < self._snapshot_criteria.min_sequence_nr:
                    self._on_snapshot_result(p.LoadSnapshotResult(
                        None, result.to_sequence_nr, self.instance_id))
                else:
                    self._load_snapshot(self._snapshot_criteria.limit(md.sequence_nr - 1))
                return
            self._undecodable_snapshot = 0  # an older snapshot stands in: no full replay
            self.last_sequence_nr = md.sequence_nr
            if not self._recover_with(SnapshotOffer(md, state)):
                return
            if self.cell.was_unhandled():
                self.last_sequence_nr = 0  # unhandled offer: fall back to a full replay
        self._state = _REPLAYING
        self._replay_order = _ReplayOrder()
        self.cell.send_to_address(
            self.cell.journal,
            p.ReplayMessages(self.persistence_id, self.last_sequence_nr + 1,
                             result.to_sequence_nr, self._recovery.replay_max, self.instance_id),
        )

    def _recover_with(self, message: Any) -> bool:
        """Call on_recover; on an exception fail recovery and return False."""
        self.cell.begin_handling()
        try:
            result = self.actor.on_recover(message)  # type: ignore[func-returns-value]
            if result is not None:
                refuse_coroutine(result, "on_recover")
        except Exception as e:  # noqa: BLE001 - any user error fails recovery, as in Akka
            event = None if isinstance(message, SnapshotOffer | RecoveryCompleted) else message
            self._fail_recovery(e, event)
            return False
        return True

    def _on_chunk(self, message: p.ReplayedMessages) -> None:
        """Apply replayed chunks in their order; finish if the end already arrived."""
        order = self._replay_order
        if order is None:  # not numbered by its sender: as it comes
            self._on_replayed(message.rows)
            return
        order.early[message.chunk] = message.rows
        while order.next in order.early and self._state == _REPLAYING:
            rows = order.early.pop(order.next)
            order.next += 1
            self._on_replayed(rows)
        self._finish_replay_if_complete(order)

    def _finish_replay_if_complete(self, order: _ReplayOrder) -> None:
        """Recovery succeeds once its end arrived and every chunk before it was applied."""
        if order.highest is not None and order.next >= order.expected and \
                self._state == _REPLAYING:
            self._replay_order = None
            self._on_recovery_success(order.highest)

    def _check_fallback(self, first: int) -> bool:
        """After undecodable snapshots, a full replay must start at event 1; else fail.

        Events the snapshots covered may have been deleted (retention, `delete_messages`):
        the ones left would rebuild a wrong state, silently. `first` is the first replayed
        sequence number, or the highest stored one when none was replayed.
        """
        newest, self._undecodable_snapshot = self._undecodable_snapshot, 0
        if first <= 1:
            return True
        self._fail_recovery(RecoveryError(
            f"no snapshot of {self.persistence_id!r} could be decoded (the newest is at "
            f"{newest}) and the events before {first} are deleted: replaying the rest would "
            "rebuild a wrong state; register the snapshot's class (or an alias for its old "
            "manifest) again"), None)
        return False

    def _on_replayed(self, rows: ReplayedRows) -> None:
        if self._undecodable_snapshot and rows.sequence_nrs and \
                not self._check_fallback(rows.sequence_nrs[0]):
            return
        if self._replay_filter is None:
            self._apply_replayed(rows)
            return
        try:
            released = self._replay_filter.feed_rows(rows)
        except ReplayFilterError as e:
            self._fail_recovery(e, None)
            return
        for part in released:
            if self._state == _STOPPED:  # a handler failed
                return
            self._apply_replayed(part)

    def _apply_replayed(self, rows: ReplayedRows) -> None:
        if self.adapters.is_empty:
            self._replay_plain(rows)
            return
        for repr_ in rows.reprs(self.persistence_id):
            try:
                # Read adapters may turn one stored event into several (or none): upcasting.
                events = self.adapters.from_journal(repr_)
            except SerializationError as e:  # (its text names the event already)
                self._fail_recovery(RecoveryError(str(e)), None)
                return
            self.last_sequence_nr = repr_.sequence_nr
            for event in events:
                if not self._recover_with(event) or self._state == _STOPPED:
                    return

    def _replay_plain(self, rows: ReplayedRows) -> None:
        """`_apply_replayed` without read adapters: one stored event is one event.

        Replay is the hot path of recovery (hundreds of events per chunk): the chunk's
        columns are decoded in one call, then handed to `on_recover` in a tight loop.
        `last_sequence_nr` is each event's own while its handler runs, as in Akka. The
        unhandled flag is not reset per event: nothing reads it after a replayed event (the
        next command or `RecoveryCompleted` resets it first).
        """
        events, error = self.serializer.from_binary_columns(rows.manifests, rows.payloads)
        on_recover = self.actor.on_recover
        event: Any = None
        try:
            for nr, event in zip(rows.sequence_nrs, events, strict=False):  # up to an error
                self.last_sequence_nr = nr
                on_recover(event)
                if self._state == _STOPPED:  # it stopped itself: no handler runs after
                    return
        except Exception as e:  # noqa: BLE001 - any user error fails recovery, as in Akka
            self._fail_recovery(e, event)
            return
        if error is not None:
            bad = rows.sequence_nrs[len(events)]
            self._fail_recovery(RecoveryError(
                f"cannot decode event {bad} of {self.persistence_id!r}: {error}"), None)

    def _on_recovery_success(self, highest: int) -> None:
        if self._undecodable_snapshot and self._recovery.replay_max and \
                self._recovery.to_sequence_nr and \
                not self._check_fallback(highest + 1 if highest else 1):
            return  # (a recovery asking for no events replays none: nothing to check)
        if self._replay_filter is not None:
            held, self._replay_filter = self._replay_filter.flush_rows(), None
            self._apply_replayed(held)
            if self._state == _STOPPED:
                return
        self.last_sequence_nr = self._sequence_nr = max(highest, self.last_sequence_nr)
        self._state = _PROCESSING
        self.actor._on_replay_success()  # noqa: SLF001 - a mixin's hook (Akka's onReplaySuccess)
        if not self._recover_with(RecoveryCompleted()):
            return
        self._flush_batch()

    def _fail_recovery(self, cause: BaseException, event: Any | None) -> None:
        try:
            self.actor.on_recovery_failure(cause, event)
        finally:
            self._stop(failed=True)

    # -- message entry point ----------------------------------------------------------------
    def receive(self, message: Any, sender: ActorRef) -> None:
        """Handle one message from the mailbox, then any stashed messages that may now run."""
        if type(message) is p.WriteMessagesResult and self._state == _PROCESSING and \
                message.actor_instance_id == self.instance_id:
            # The usual journal answer, without the match below (its recovery-progress
            # bookkeeping only matters while recovering).
            self._on_write_result(message.outcomes)
            if self._stash is not None:  # drain_stash has nothing to do without one
                self.drain_stash()
            return
        cls = type(message)
        if self._pending_stashing and self._state == _PROCESSING and cls not in _MACHINE_MESSAGES:
            # A command while a stashing persist is in flight (every command of persist_all
            # but its batch's first): stashed as below, without the dispatch and the drain
            # that cannot run one.
            if not self.stash_if_waiting(message, sender):
                self._stash_internally(message, sender)
            return
        if self._state == _STOPPED:
            return
        # By exact type, one set lookup: a command (the usual message) is tested against
        # seven protocol classes per message otherwise. Protocol messages are never subclassed.
        if cls in _PLUGIN_REPLIES:
            if message.actor_instance_id == self.instance_id:
                # A reply that comes too late is a timeout too: on the simple base a slow
                # plugin blocks the thread, so the timer can only fire after its reply.
                if self.is_recovering and time.monotonic() - self._progress >= \
                        self.cell.recovery_event_timeout:
                    self._check_recovery_progress()
                    return
                self._progress = time.monotonic()
                self._on_journal_response(message)
                # Applying a chunk is progress too: the timeout counts only the time nothing
                # arrived (a slow on_recover that keeps getting events never times out, as in
                # Akka, where each replayed event resets it).
                if self.is_recovering:
                    self._progress = time.monotonic()
        elif cls is p.RecoveryTick:
            if message.actor_instance_id == self.instance_id:
                self._check_recovery_progress()
        elif self._state != _PROCESSING or self._pending_stashing > 0:
            self._stash_internally(message, sender)
        else:
            self._process_command((message, sender))
        if self._stash is not None:  # drain_stash has nothing to do without one
            self.drain_stash()

    def stash_if_waiting(self, message: Any, sender: ActorRef) -> bool:
        """Stash a command that must wait for a stashing persist in flight, if there is room.

        True if it did; False: `receive` decides (a message for the machine itself, no write
        to wait for, or a stash to create or full, whose overflow strategy may reply). It
        needs no actor context: the host calls it before setting one up.
        """
        if self._pending_stashing and self._state == _PROCESSING and \
                type(message) not in _MACHINE_MESSAGES:
            # Into a stash that `_stash_internally` created (it read the capacity).
            stash = self._stash
            if stash is not None and len(stash) < self._stash_capacity:
                stash.append((message, sender))
                return True
        return False

    def stash_all_waiting(self, messages: Sequence[Any], sender: ActorRef) -> int:
        """`stash_if_waiting` for the leading `messages` at once; how many it stashed.

        For the rest of a frame that arrived with the command that started a stashing
        persist: one call instead of one per message. It stops at the first message for the
        machine itself and where the stash is full (`receive` then decides, as for one).
        """
        if not self._pending_stashing or self._state != _PROCESSING:
            return 0
        stash = self._stash
        if stash is None:  # a new run of stashing: read the capacity, as `_stash_internally`
            self._stash_capacity = getattr(
                self.actor, "internal_stash_capacity", None) or self.cell.internal_stash_capacity
            stash = self._stash = deque()
        room = self._stash_capacity - len(stash)
        taken = 0
        for message in messages:
            if taken >= room or type(message) in _MACHINE_MESSAGES:
                break
            taken += 1
        if taken:
            stash.extend([(message, sender) for message in messages[:taken]])
        return taken

    def _stash_internally(self, message: Any, sender: ActorRef) -> None:
        # Kept for `receive`'s short path, which stashes into a non-empty stash only: each
        # run of stashing starts here and reads the capacity again.
        capacity = self._stash_capacity = getattr(
            self.actor, "internal_stash_capacity", None) or self.cell.internal_stash_capacity
        stash = self._stash
        if stash is None:
            self._stash = deque(((message, sender),))
            return
        if len(stash) < capacity:
            stash.append((message, sender))
            return
        strategy = self.actor.internal_stash_overflow_strategy
        match strategy:
            case DiscardToDeadLetterStrategy():
                self.cell.dead_letter(message, sender)
            case ReplyToStrategy(response):
                sender.tell(response)
            case ThrowOverflowExceptionStrategy() | _:
                raise StashOverflowError(
                    f"internal stash of {self.persistence_id!r} is full ({capacity} messages); "
                    f"{type(message).__name__} was not stashed")

    def drain_stash(self) -> None:
        """Handle stashed messages while nothing forces them to wait."""
        stash = self._stash  # kept while draining: only this method drops it
        while stash and self._state == _PROCESSING and self._pending_stashing == 0:
            self._process_command(stash.popleft())
        if self._stash is not None and not self._stash:
            self._stash = None  # most entities stash only while recovering: give it back

    def _on_journal_response(self, message: Any) -> None:
        match message:
            case p.LoadSnapshotResult() if self._state == _RECOVERY_STARTED:
                self._on_snapshot_result(message)
            case p.LoadSnapshotFailed() if self._state == _RECOVERY_STARTED:
                self._fail_recovery(message.cause, None)
            case p.ReplayedMessages() if self._state == _REPLAYING:
                self._on_chunk(message)
            case p.RecoverySuccess() if self._state == _REPLAYING:
                order = self._replay_order
                if order is None:
                    self._on_recovery_success(message.highest_sequence_nr)
                else:
                    # It may have overtaken chunks (thespian does not keep order): finish once
                    # they are applied.
                    order.highest, order.expected = message.highest_sequence_nr, message.chunks
                    self._finish_replay_if_complete(order)
            case p.ReplayMessagesFailure() if self._state == _REPLAYING:
                self._fail_recovery(message.cause, None)
            case p.WriteMessagesResult():
                self._on_write_result(message.outcomes)

    def _process_command(self, command: tuple[Any, ActorRef]) -> None:
        """Handle `command` (message, sender); the tuple becomes `current_command` as it is."""
        message, sender = command
        cell = self.cell
        if sender is not self._sender:  # the cell's sender is always the machine's
            self._sender = sender
            cell.set_sender(sender)
        special = isinstance(message, _SPECIAL_COMMANDS)  # one test for the usual command
        if special and isinstance(message, PoisonPill):
            self._stop()
            return
        if special:  # whether it went unhandled is asked for the failure replies only
            cell.begin_handling()
        self.current_command = command
        if special and isinstance(message, SaveSnapshotSuccess) and self._retention is not None:
            self._retention_delete(message.metadata.sequence_nr)
        try:
            if self._hooked:
                result = self.actor._receive_command(message)  # type: ignore[func-returns-value]  # noqa: SLF001
            else:
                actor = self.actor
                behaviors = actor.__dict__.get("_behaviors")  # `Actor._behavior`, inline
                result = (behaviors[-1] if behaviors else actor.on_command)(message)
            if result is not None:  # an async def (behind a decorator) returned a coroutine
                refuse_coroutine(result, "on_command")
        except BaseException:
            self.current_command = None
            self.failed_command = message  # for the restart's log and pre_restart (not the
            # journal reply or timer whose handling drained the stash to this command)
            # The exception propagates to the host, which restarts the actor. What the handler
            # persisted before raising is still written, as in Akka (aroundReceiveComplete(err)
            # flushes the batch; PersistentActorFailureSpec "restart when Persist followed by
            # exception" expects the event to be replayed); its handlers never run.
            self._flush_batch()
            raise
        self.current_command = None
        if special and isinstance(message, _FAILURE_REPLIES) and cell.was_unhandled():
            log.warning("%s for %r was not handled: %s", type(message).__name__,
                        self.persistence_id, message.cause)
        # `_flush_batch` only when it would send something (most persist_all commands only
        # add to the actor's own batch).
        if self._event_batch or (self._journal_batch and not self._write_in_progress):
            self._flush_batch()

    # -- persisting -------------------------------------------------------------------------
    def _check_identified(self, what: str) -> None:
        if not self.persistence_id:
            raise IllegalActorStateError(
                f"{what} cannot be called in __init__: the actor's persistence_id is read once "
                "__init__ returned (call it from on_command or a persist handler)")

    def _check_may_persist(self) -> None:
        self._check_identified("persist")
        if self.is_recovering:
            raise IllegalActorStateError(
                f"cannot persist during replay (persistence id {self.persistence_id!r}): events "
                "may be persisted from on_command, from handlers, or on RecoveryCompleted")
        if self._state == _STOPPED:
            raise IllegalActorStateError(f"{self.persistence_id!r} is stopped; cannot persist")

    def persist(self, events: tuple[Any, ...], handler: Callable[[Any], None], *,
                stashing: bool) -> None:
        """Queue `events` as one atomic write, with one handler invocation per event."""
        if self._state != _PROCESSING:  # recovering or stopped: raises
            self._check_may_persist()
        if not callable(handler):
            raise TypeError(f"persist handler must be callable, got {handler!r}")
        if not events:
            return
        if len(events) == 1 and self.adapters.is_empty:
            self._persist_one(events[0], handler, stashing=stashing)
            return
        # Per event only what differs between events is done: the lookups, the timestamp,
        # the adapter check and the serializer's set-up are made once per call (a persist_all
        # of 50 is one write).
        pid, writer, now = self.persistence_id, self.writer_uuid, time.time()
        sequence_nr = self._sequence_nr
        reprs: list[PersistentRepr] = []
        error: SerializationError | None = None
        try:
            stored: Sequence[Any] = events
            tags: Sequence[tuple[str, ...]] | None = None
            if not self.adapters.is_empty:
                # A write adapter may change what is stored and tag it; the handler still gets
                # the event. Its failure rejects the write, as a serialization error does.
                adapted = [self.adapters.to_journal(event) for event in events]
                stored, tags = [s for s, _ in adapted], [t for _, t in adapted]
            elif (isinstance(events[0], Tagged) if len(events) == 1
                  else any(isinstance(event, Tagged) for event in events)):
                stored = [e.payload if isinstance(e, Tagged) else e for e in events]
                tags = [e.tags if isinstance(e, Tagged) else () for e in events]
            encoded = [self.serializer.to_binary(stored[0])] if len(stored) == 1 else \
                self.serializer.to_binary_all(stored)
            no_tags: tuple[str, ...] = ()
            for index, (manifest, payload) in enumerate(encoded):
                event_tags = no_tags if tags is None else tags[index]
                if event_tags or not manifest.isascii():
                    _check_encodable(manifest, event_tags)
                sequence_nr += 1
                reprs.append(_new_repr(pid, sequence_nr, manifest, payload, writer, now,
                                       event_tags))
        except SerializationError as e:
            error = e
        first = self._sequence_nr + 1
        self._sequence_nr += len(events)
        sender = self._current_sender()
        self._pending_deque().extend([(event, handler, stashing, sender) for event in events])
        if stashing:
            self._pending_stashing += len(events)
        if error is not None:
            self._event_batch.append(
                p.RejectedItem(tuple(range(first, self._sequence_nr + 1)), error))
        else:
            self._event_batch.append(_new_atomic_write(tuple(reprs)))

    def persist_event(self, event: Any, handler: Callable[[Any], None], *,
                      stashing: bool) -> None:
        """`persist` of the one event `event` (persist, persist_async): no tuple to unpack.

        Anything but the usual case (processing, a callable handler, no adapter bound) takes
        `persist`'s path, which checks and raises.
        """
        if self._state == _PROCESSING and callable(handler) and self.adapters.is_empty:
            self._persist_one(event, handler, stashing=stashing)
        else:
            self.persist((event,), handler, stashing=stashing)

    def _persist_one(self, event: Any, handler: Callable[[Any], None], *,
                     stashing: bool) -> None:
        """`persist` of one event with no adapter bound (persist, persist_async).

        The same steps, without the loops and lists a batch needs.
        """
        stored, tags = (event.payload, event.tags) if isinstance(event, Tagged) else (event, ())
        error: SerializationError | None = None
        try:
            manifest, payload = self.serializer.to_binary(stored)
            if tags or not manifest.isascii():
                _check_encodable(manifest, tags)
        except SerializationError as e:
            error = e
        self._sequence_nr = sequence_nr = self._sequence_nr + 1
        # _current_sender, inline (one call less per event).
        self._pend((event, handler, stashing,
                    self._sender if self._sender is not None else DEAD_LETTERS))
        if stashing:
            self._pending_stashing += 1
        if error is not None:
            self._event_batch.append(p.RejectedItem((sequence_nr,), error))
            return
        self._event_batch.append(_new_atomic_write((_new_repr(
            self.persistence_id, sequence_nr, manifest, payload, self.writer_uuid, time.time(),
            tags),)))

    def defer(self, event: Any, handler: Callable[[Any], None], *, stashing: bool) -> None:
        """Run `handler(event)` after all pending invocations (at once if there are none)."""
        self._check_may_persist()
        if not callable(handler):
            raise TypeError(f"defer handler must be callable, got {handler!r}")
        if not self._pending and self._one is None:
            result = handler(event)  # type: ignore[func-returns-value]
            if result is not None:
                refuse_coroutine(result, "a defer handler")
            return
        self._pend((event, handler, stashing, self._current_sender()))
        if stashing:
            self._pending_stashing += 1
        self._event_batch.append(p.LoopMessage())

    def _pend(self, invocation: _Invocation) -> None:
        """Queue `invocation` behind the pending ones (in `_one` while it is alone)."""
        pending = self._pending
        if pending is not None:
            pending.append(invocation)
        elif self._one is None:
            self._one = invocation
        else:
            self._pending_deque().append(invocation)

    def _pending_deque(self) -> deque[_Invocation]:
        """The deque of pending invocations, made (holding `_one`, if set) on first need."""
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
            if self._one is not None:
                pending.append(self._one)
                self._one = None
        return pending

    def _next_invocation(self) -> _Invocation:
        """The first pending invocation, left in place."""
        pending = self._pending
        invocation = pending[0] if pending else self._one
        assert invocation is not None  # noqa: S101 - called for a pending invocation only
        return invocation

    def _current_sender(self) -> ActorRef:
        return self._sender if self._sender is not None else DEAD_LETTERS

    def _flush_batch(self) -> None:
        # The batches are emptied in place, never replaced: a new list per write was two of
        # the objects a request allocated before the last one's were freed, and with 100
        # requests in a pass that decided whether the cyclic collector ran in every pass
        # (service_async_10k: 40 collections in 4,000 requests, 6 % of its time).
        event_batch = self._event_batch
        if event_batch:
            self._journal_batch.extend(event_batch)
            event_batch.clear()
        self._flush_journal_batch()

    def _flush_journal_batch(self) -> None:
        if self._write_in_progress or not self._journal_batch or self._state == _STOPPED:
            return
        batch = self._journal_batch
        self._in_flight = in_flight = tuple(batch)
        batch.clear()
        self._write_in_progress = True
        self.cell.write_messages(p.new_write_messages(in_flight, self.instance_id))

    def _on_write_result(self, outcomes: tuple[p.WriteOutcome, ...]) -> None:
        items, self._in_flight = self._in_flight, ()
        self._write_in_progress = False
        if len(outcomes) != len(items):
            self._persist_failed(RecoveryError(
                f"journal answered {len(outcomes)} outcomes for {len(items)} writes"),
                None, self._sequence_nr)
            return
        # Akka sends the next batch before running this batch's handlers, but not after a
        # failed write: WriteMessagesFailed leaves the write in progress and the actor stops,
        # so events batched behind the failure must not reach the journal.
        all_stored = outcomes.count(p.STORED) == len(outcomes)  # the usual answer, at C speed
        # (`_flush_journal_batch` only when a batch waits: it sends nothing otherwise.)
        if self._journal_batch and (all_stored or not any(
                isinstance(outcome, p.WriteFailed) for outcome in outcomes)):
            self._flush_journal_batch()
        for item, outcome in zip(items, outcomes, strict=True):
            if self._state == _STOPPED:
                return
            # A stored AtomicWrite first, without the match below (persist_async answers one
            # item per event).
            if type(item) is AtomicWrite and (all_stored or type(outcome) is p.WriteStored):
                self._apply_handlers(item.payload)
                if self._retention is not None:
                    self._retention_snapshot(item)
                continue
            match item, outcome:
                case p.LoopMessage(), _:
                    self._apply_next_handler()
                case AtomicWrite(), p.WriteStored():
                    self._apply_handlers(item.payload)
                    self._retention_snapshot(item)
                case AtomicWrite(), p.WriteRejected() | p.WriteFailed():
                    seqs = tuple(r.sequence_nr for r in item.payload)
                    self._write_not_stored(seqs, outcome)
                case p.RejectedItem(), _:
                    self._write_not_stored(item.sequence_nrs, p.WriteRejected(item.cause))

    def _write_not_stored(self, sequence_nrs: tuple[int, ...], outcome: p.WriteOutcome) -> None:
        for seq in sequence_nrs:
            if self._state == _STOPPED:  # on_persist_rejected stopped the actor
                return
            event = self._pop_invocation()[0]
            if isinstance(outcome, p.WriteFailed):
                self._persist_failed(outcome.cause, event, seq)
                return
            assert isinstance(outcome, p.WriteRejected)  # noqa: S101 - narrowed by the caller
            self.last_sequence_nr = seq
            try:
                self.actor.on_persist_rejected(outcome.cause, event, seq)
            finally:
                # What the hook persisted goes out as a handler's would: waiting for the next
                # command's flush, it held every command in the stash for ever.
                if self._event_batch or (self._journal_batch and not self._write_in_progress):
                    self._flush_batch()

    def _persist_failed(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        try:
            self.actor.on_persist_failure(cause, event, sequence_nr)
        finally:
            self._stop(failed=True)

    def _apply_handlers(self, written: tuple[PersistentRepr, ...]) -> None:
        """Run the handlers of one stored AtomicWrite's events, in order, until one stops us.

        `_apply_next_handler` per event, inlined (a persist_all of 50 runs 50 handlers).
        """
        cell = self.cell
        for repr_ in written:
            if self._state == _STOPPED:  # a handler stopped the actor
                return
            self.last_sequence_nr = repr_.sequence_nr
            # `_next_invocation`, inline. A handler may persist: `_pending` is read again after
            # it (its persist may have made the deque, with this invocation first).
            pending = self._pending
            invocation = pending[0] if pending else self._one
            assert invocation is not None  # noqa: S101 - one pending invocation per event
            event, handler, _, sender = invocation
            if sender is not self._sender:  # the cell's sender is always the machine's
                self._sender = sender
                cell.set_sender(sender)
            try:
                result = handler(event)
                if result is not None:
                    refuse_coroutine(result, "a persist handler")
            except BaseException:
                self.failed_command = event  # the restart names it, as Akka's preRestart
                raise
            finally:
                # `_pop_invocation`, inline.
                pending = self._pending
                if pending:
                    stashing = pending.popleft()[2]
                else:
                    stashing = invocation[2]
                    self._one = None
                if stashing:
                    self._pending_stashing -= 1
                if self._event_batch or (self._journal_batch and not self._write_in_progress):
                    self._flush_batch()

    def _apply_next_handler(self) -> None:
        event, handler, _, sender = self._next_invocation()
        if sender is not self._sender:  # the cell's sender is always the machine's
            self._sender = sender
            self.cell.set_sender(sender)
        try:
            result = handler(event)
            if result is not None:
                refuse_coroutine(result, "a persist handler")
        except BaseException:
            self.failed_command = event  # the restart names it, as Akka's preRestart
            raise
        finally:
            # `_flush_batch` inlined, only when it would send something (once per stored event).
            self._pop_invocation()
            if self._event_batch or (self._journal_batch and not self._write_in_progress):
                self._flush_batch()

    def _pop_invocation(self) -> _Invocation:
        pending, one = self._pending, self._one
        if pending:
            invocation = pending.popleft()
        else:
            assert one is not None  # noqa: S101 - called for a pending invocation only
            invocation = one
            self._one = None
        if invocation[2]:
            self._pending_stashing -= 1
        return invocation

    # -- retention (persistent_actors.retention) ---------------------------------------------
    def _retention_snapshot(self, write: AtomicWrite) -> None:
        retention = self._retention
        if retention is not None and self._state != _STOPPED and retention.should_snapshot(
                write.lowest_sequence_nr, write.highest_sequence_nr):
            self.save_snapshot(self.actor.snapshot_state())

    def _retention_delete(self, snapshot_sequence_nr: int) -> None:
        assert self._retention is not None  # noqa: S101 - checked by the caller
        upper = self._retention.delete_upper_sequence_nr(snapshot_sequence_nr)
        if upper <= 0:
            return
        if self._retention.delete_events_on_snapshot:
            self.delete_messages(upper)
        self.delete_snapshots(SnapshotSelectionCriteria(max_sequence_nr=upper))

    # -- snapshots and deletion --------------------------------------------------------------
    def save_snapshot(self, snapshot: Any) -> None:
        """Serialize and send `snapshot`; a serialization error becomes SaveSnapshotFailure."""
        self._check_identified("save_snapshot")
        md = SnapshotMetadata(self.persistence_id, self.last_sequence_nr, time.time())
        try:
            manifest, payload = self.serializer.to_binary(snapshot)
        except SerializationError as e:
            self._report(SaveSnapshotFailure(md, e))
            return
        if self.cell.snapshot_store is None:
            self._report(SaveSnapshotFailure(md, IllegalActorStateError(
                "no snapshot store is configured")))
            return
        self.cell.send_to_address(self.cell.snapshot_store, p.SaveSnapshot(md, manifest, payload))

    def _report(self, failure: Any) -> None:
        """Send the actor `failure` of a request that no plugin saw, from no sender.

        In Akka the store sends such a failure (or, for a delete beyond the last sequence
        number, the actor itself); here it comes from nobody: ``self.sender`` is dead letters,
        so a handler that answers every message's sender does not answer itself, which on the
        simple base went on for ever on the one thread that runs every actor.
        """
        self.cell.send_to_self(p.Envelope(failure, None))

    def delete_snapshot(self, sequence_nr: int) -> None:
        """Ask the snapshot store to delete the snapshot at `sequence_nr`."""
        self._check_identified("delete_snapshot")
        _check_sequence_nr("sequence_nr", sequence_nr)
        md = SnapshotMetadata(self.persistence_id, sequence_nr, 0.0)
        if self.cell.snapshot_store is None:
            self._report(DeleteSnapshotFailure(md, IllegalActorStateError(
                "no snapshot store is configured")))
            return
        self.cell.send_to_address(self.cell.snapshot_store, p.DeleteSnapshot(md))

    def delete_snapshots(self, criteria: SnapshotSelectionCriteria) -> None:
        """Ask the snapshot store to delete every snapshot matching `criteria`."""
        self._check_identified("delete_snapshots")
        if not isinstance(criteria, SnapshotSelectionCriteria):
            raise TypeError("delete_snapshots expects a SnapshotSelectionCriteria, got "
                            f"{type(criteria).__name__}")
        if self.cell.snapshot_store is None:
            self._report(DeleteSnapshotsFailure(criteria, IllegalActorStateError(
                "no snapshot store is configured")))
            return
        self.cell.send_to_address(self.cell.snapshot_store,
                                  p.DeleteSnapshots(self.persistence_id, criteria))

    def delete_messages(self, to_sequence_nr: int) -> None:
        """Delete events up to `to_sequence_nr`, refusing anything beyond `last_sequence_nr`."""
        self._check_identified("delete_messages")
        _check_sequence_nr("to_sequence_nr", to_sequence_nr)
        if to_sequence_nr == MAX_SEQUENCE_NR:
            to_sequence_nr = self.last_sequence_nr
        if to_sequence_nr > self.last_sequence_nr:
            self._report(DeleteMessagesFailure(
                IllegalActorStateError(
                    f"cannot delete messages up to {to_sequence_nr}: last_sequence_nr of "
                    f"{self.persistence_id!r} is {self.last_sequence_nr}"),
                to_sequence_nr))
            return
        self.cell.send_to_address(self.cell.journal,
                                  p.DeleteMessagesTo(self.persistence_id, to_sequence_nr))

    # -- stopping ---------------------------------------------------------------------------
    def stopped(self, *, failed: bool = False) -> None:
        """The host stopped the actor (``context.stop``, PoisonPill, Kill, a failure).

        From now on no handler runs and nothing more is written, also not the rest of a
        `persist_all` whose first handler stopped it, nor the stash. A deliberate stop first
        writes what was persisted before it (`_write_before_stop`); a failure does not.
        """
        if not failed and self._state == _PROCESSING:
            self._write_before_stop()
        self._state = _STOPPED

    def _stop(self, *, failed: bool = False) -> None:
        if self._state != _STOPPED:
            self.stopped(failed=failed)
            self.cell.stop_self(failed=failed)

    def _write_before_stop(self) -> None:
        """Send what was persisted but not yet sent: its events are stored, no handler runs.

        As in Akka, where a command's events go to the journal when its handler returns,
        before the stop it asked for (``context.stop()`` after ``persist``), and as the README
        promises for ``persist_async`` events a PoisonPill overtakes (those waiting behind the
        write in flight too: sent after it, so the journal keeps their order).
        """
        self._journal_batch.extend(self._event_batch)
        self._event_batch.clear()
        if self._journal_batch:
            batch = tuple(self._journal_batch)
            self._journal_batch.clear()
            self.cell.write_messages(p.new_write_messages(batch, self.instance_id))


_REPR_FIELDS = ("persistence_id", "sequence_nr", "manifest", "payload", "writer_uuid",
                "timestamp", "tags")
assert tuple(f.name for f in dataclasses.fields(PersistentRepr)) == _REPR_FIELDS  # noqa: S101
_new_object = object.__new__
_set_write_payload = getattr(AtomicWrite, "payload").__set__  # noqa: B009 - the slot itself


def _new_atomic_write(reprs: tuple[PersistentRepr, ...]) -> AtomicWrite:
    """``AtomicWrite(reprs)`` without its checks, which loop over the events in Python.

    `persist` numbers the events itself: one id, consecutive numbers, at least one event.
    """
    write: AtomicWrite = _new_object(AtomicWrite)
    _set_write_payload(write, reprs)
    return write


class _ReprBuilder:
    """Builds a `PersistentRepr` (`_new_repr`), then becomes one.

    Its slots are PersistentRepr's, in the same order, so CPython lets the new object take
    PersistentRepr as its class (it refuses any other layout, checked at import below): a
    plain slot store is the cheapest way to fill a slotted object, and the frozen class's own
    ``__init__`` sets each field through ``object.__setattr__`` (about 1 us for seven fields;
    the slots' setters called one by one, 0.28 us; this, 0.14 us per persisted event).
    """

    __slots__ = _REPR_FIELDS

    def __init__(self, persistence_id: str, sequence_nr: int, manifest: str,  # noqa: PLR0917
                 payload: bytes, writer_uuid: str, timestamp: float,
                 tags: tuple[str, ...]) -> None:
        self.persistence_id = persistence_id
        self.sequence_nr = sequence_nr
        self.manifest = manifest
        self.payload = payload
        self.writer_uuid = writer_uuid
        self.timestamp = timestamp
        self.tags = tags
        self.__class__ = PersistentRepr  # type: ignore[assignment]


_new_repr = cast(
    "Callable[[str, int, str, bytes, str, float, tuple[str, ...]], PersistentRepr]",
    _ReprBuilder)
"""``PersistentRepr(...)`` with every field given, without its checks; the arguments are the
runtime's own, already of the right types."""
_probe = _new_repr("p", 1, "m", b"", "w", 0.0, ())
assert type(_probe) is PersistentRepr  # noqa: S101
assert _probe == PersistentRepr("p", 1, "m", b"", "w", 0.0, ())  # noqa: S101
del _probe


def _check_encodable(manifest: str, tags: tuple[str, ...]) -> None:
    r"""Raise `SerializationError` unless every stored string is text a journal stores.

    A str may hold lone surrogates (``"x\udc80"``, which a JSON body can carry) that no
    database can store: checked here, the write is rejected alone, the same way on every
    plugin, instead of failing the whole group commit inside the journal's transaction.
    """
    for text in (manifest, *tags):
        reason = unstorable(text)
        if reason is not None:
            raise SerializationError(f"cannot store {text[:80]!r}: {reason}")


def _check_sequence_nr(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQUENCE_NR:
        raise ValueError(f"{name} must be an int in [0, MAX_SEQUENCE_NR = {MAX_SEQUENCE_NR}], "
                         f"got {value!r}")
