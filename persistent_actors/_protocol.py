"""The runtime's messages: between the front end and its thespian actors, and among those.

Journal and snapshot messages are named as in Akka's JournalProtocol/SnapshotProtocol. Only the
read side's service keeps its messages (`EventLogQuery`, `WaitForEvents`, `DescribeEventLog`)
beside it, in `_thespian/event_log.py`. Every message is a frozen dataclass that pickles,
because on the multi-process base it crosses processes. Responses carry the
``actor_instance_id`` of the request so a restarted actor ignores its predecessor's replies.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, cast

from persistent_actors._compact_pickle import compact_all
from persistent_actors._replay_filter import ReplayFilterSettings
from persistent_actors.journal import AtomicWrite, ReplayedRows
from persistent_actors.snapshot import SelectedSnapshot, SnapshotMetadata, SnapshotSelectionCriteria

if TYPE_CHECKING:
    from collections.abc import Callable

    from persistent_actors._actor import ActorRef

Address = Any  # a thespian ActorAddress; opaque to us


# -- journal ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class RejectedItem:
    """A batch item in place of an atomic write that could not be prepared (not serializable).

    The journal never sees it; the plugin host answers it with `WriteRejected`, in order.
    """

    sequence_nrs: tuple[int, ...]
    cause: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class LoopMessage:
    """A deferred handler's place in the write batch; the journal answers it in order."""


WriteItem = AtomicWrite | RejectedItem | LoopMessage


@dataclasses.dataclass(frozen=True, slots=True)
class WriteMessages:
    """Store the atomic writes of one actor's batch; answered by one `WriteMessagesResult`."""

    items: tuple[WriteItem, ...]
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class WriteStored:
    """The atomic write is stored."""


# The one instance the plugin host answers with: equal to any other (a dataclass without
# fields), so what crosses a process boundary still compares equal, and found by identity.
STORED: Final = WriteStored()


@dataclasses.dataclass(frozen=True, slots=True)
class WriteRejected:
    """The atomic write was not stored; the actor continues."""

    cause: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class WriteFailed:
    """The journal failed; the write may or may not be stored."""

    cause: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class Looped:
    """Answer to a `LoopMessage`."""


WriteOutcome = WriteStored | WriteRejected | WriteFailed | Looped


@dataclasses.dataclass(frozen=True, slots=True)
class WriteMessagesResult:
    """One outcome per item of the `WriteMessages`, in order."""

    outcomes: tuple[WriteOutcome, ...]
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayMessages:
    """Replay events in [from, to] (at most max_count), then report the highest sequence nr."""

    persistence_id: str
    from_sequence_nr: int
    to_sequence_nr: int
    max_count: int
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayedMessages:
    """A chunk of replayed events (chunked: thespian's TCP transport is slow per message).

    `chunk` numbers the chunks of one replay from 0: thespian does not promise delivery order
    (multiproc-tcp reorders under load), so the machine puts them back in order.
    """

    rows: ReplayedRows
    actor_instance_id: int
    chunk: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class RecoverySuccess:
    """Replay finished; `highest_sequence_nr` is the id's highest ever stored.

    `chunks`: how many `ReplayedMessages` were sent before it; recovery completes only once
    all of them have arrived (it may overtake them).
    """

    highest_sequence_nr: int
    actor_instance_id: int
    chunks: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayMessagesFailure:
    """Replay failed."""

    cause: BaseException
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteMessagesTo:
    """Delete events up to `to_sequence_nr`; answered with DeleteMessagesSuccess/Failure."""

    persistence_id: str
    to_sequence_nr: int


# -- snapshot store --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """Load the youngest snapshot matching `criteria` (already limited to `to_sequence_nr`)."""

    persistence_id: str
    criteria: SnapshotSelectionCriteria
    to_sequence_nr: int
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSnapshotResult:
    """The selected snapshot, or None."""

    snapshot: SelectedSnapshot | None
    to_sequence_nr: int
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSnapshotFailed:
    """The snapshot store failed to load."""

    cause: BaseException
    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """Store a serialized snapshot; answered with SaveSnapshotSuccess/Failure."""

    metadata: SnapshotMetadata
    manifest: str
    payload: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteSnapshot:
    """Delete one snapshot; answered with DeleteSnapshotSuccess/Failure."""

    metadata: SnapshotMetadata


@dataclasses.dataclass(frozen=True, slots=True)
class DeleteSnapshots:
    """Delete snapshots matching criteria; answered with DeleteSnapshotsSuccess/Failure."""

    persistence_id: str
    criteria: SnapshotSelectionCriteria




# -- runtime ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A message with an explicit sender (external tells, forwards) or an ask's correlation id."""

    message: Any
    sender: ActorRef | None
    correlation_id: str | None = None
    # Where the reply to an ask goes, when that is not the thespian sender (the ingress actor
    # forwarded it): the external endpoint's address.
    reply_to: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class IngressBatch:
    """Messages from outside the system that arrived together: (address, message) pairs.

    One thespian message instead of one per send; the ingress actor forwards each in order.
    """

    sends: tuple[tuple[Any, Any], ...]

    def __repr__(self) -> str:
        return f"IngressBatch({len(self.sends)} messages)"  # see Batch.__repr__


@dataclasses.dataclass(frozen=True, slots=True)
class InOrder:
    """Messages from one actor to several, handled as if sent one by one: (address, message).

    Sent by an actor to itself on the simple base (a group commit's write results). The patched
    send loop (`_thespian/wakeups.py`) hands each straight to its actor where the message
    stands in the send queue, as consecutive queued messages would be handled; wherever it
    arrives as an ordinary message instead, the receiver sends each in order.
    """

    sends: tuple[tuple[Any, Any], ...]

    def __repr__(self) -> str:
        return f"InOrder({len(self.sends)} messages)"  # see Batch.__repr__


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Messages from one actor to another that were sent during one receive, in one frame.

    The receiver handles each in order as if it had arrived alone, from the same sender
    (`persistent_actors._thespian.frames`): on multiproc-tcp one frame, one acknowledgement.
    """

    messages: tuple[Any, ...]

    def __repr__(self) -> str:
        # Thespian formats every message it sends or receives for a debug log line, even with
        # debug logging off: the repr of 50 commands cost more than their pickling.
        return f"Batch({len(self.messages)} messages)"


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """A message for an external asker, routed by correlation id."""

    correlation_id: str
    message: Any


@dataclasses.dataclass(frozen=True, slots=True)
class AskRefused:
    """In a `Reply` to an external asker: the ask raises `error` instead of timing out.

    Sent when the runtime refuses a request (an entity host's restart buffer is full, say).
    """

    error: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class StopRequested:
    """Tells the guardian that a stop (Kill, PoisonPill, stop) was just sent to `address`.

    Why: the host only reports `ActorStopping` when it processes the stop. An ``actor_of``
    under the same name sent right after ``ref.tell(Kill)`` reaches the guardian first (another
    mailbox), found the name taken and failed on multiproc-tcp. Sent by the stopper *after*
    the stop itself, it makes the guardian defer that creation until the old actor exited.
    """

    address: Any


@dataclasses.dataclass(frozen=True, slots=True)
class GetPlugin:
    """Facade -> guardian: start (if needed) and return the plugin actor of a journal."""

    kind: str
    plugin_id: str | None
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class PluginRef:
    """Guardian -> facade: the plugin actor's address."""

    address: Any


@dataclasses.dataclass(frozen=True, slots=True)
class SystemInfo:
    """What an actor needs to know about its system (``context.system``)."""

    name: str
    base: str
    guardian: Address
    event_stream: Address
    recovery_event_timeout: float = 30.0
    internal_stash_capacity: int = 100_000
    replay_filter: ReplayFilterSettings = dataclasses.field(default_factory=ReplayFilterSettings)
    # multiproc-tcp: the session of the system's processes (lifetime.reap_session), or None.
    session_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StartActor:
    """Guardian -> host: construct the user's actor; answered with ActorStarted/ActorFailed."""

    cls: type[Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str
    system: SystemInfo
    journal: Address | None
    snapshot_store: Address | None
    host_id: int
    event_adapters: Any = None  # the journal's persistent_actors.adapters.AdapterSpec
    # For an actor in a shared host: how to start the journal there too (`local_journal`).
    journal_plugin: StartPlugin | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ActorStarted:
    """The host constructed the user's actor.

    Its sender is the host's final address: on the TCP base, createActor first returns a
    placeholder address that must not be handed to other actors.
    """

    host_id: int
    persistence_id: str | None = None  # a persistent actor's id: the guardian claims it


@dataclasses.dataclass(frozen=True, slots=True)
class StartRecovery:
    """Host -> guardian: this persistent actor wants to recover (start, restart, back-off).

    The guardian answers `RecoveryPermitted` once the actor holds its persistence id (no other
    live actor of the system has it on the same journal) and a recovery permit is free.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryPermitted:
    """Guardian -> host: recover now; answer `RecoveryDone` when recovery ended."""


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryDone:
    """Host -> guardian: recovery ended (completed, failed, or the actor stopped)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ActorFailed:
    """The host could not construct the user's actor; it stops itself."""

    host_id: int
    error: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class StartEventStream:
    """Guardian -> event stream actor; answered with EventStreamStarted (from its address).

    It starts with `subscriptions` ((subscriber, class) pairs: its dead predecessor's); with
    `report`, it tells the guardian each change of its subscriptions (as the `Subscribe` or
    `Unsubscribe` that made it), so that a successor can start with them.
    """

    subscriptions: tuple[tuple[ActorRef, type[Any]], ...] = ()
    report: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class EventStreamStarted:
    """The event stream actor is running."""


@dataclasses.dataclass(frozen=True, slots=True)
class ActorStopping:
    """Host -> guardian: this actor is stopping, so its name is about to be free."""


@dataclasses.dataclass(frozen=True, slots=True)
class InitSystem:
    """Facade -> guardian: start the event stream and the default plugins."""

    name: str
    base: str
    settings: Any  # persistent_actors._config.Settings
    correlation_id: str
    # multiproc-tcp: the application process; the guardian shuts the system down once it died.
    owner: Any = None  # persistent_actors._thespian.lifetime.OwnerProcess
    # multiproc-tcp: the guardian answers `RuntimeStarted` under this id at once.
    started_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeStarted:
    """Guardian -> facade, first thing on `InitSystem`: the processes the system lives with.

    Before the plugins report started, so that the facade watches them during the start.
    """

    # (what it is, its OwnerProcess): the guardian's, thespian's admin's and logger's.
    processes: tuple[tuple[str, Any], ...]
    session_id: int  # the session of every process of the system (lifetime.reap_session)


@dataclasses.dataclass(frozen=True, slots=True)
class SystemReady:
    """Guardian -> facade: the system is ready."""

    info: SystemInfo


@dataclasses.dataclass(frozen=True, slots=True)
class CreateActor:
    """Facade -> guardian: create a user actor; answered with ActorCreated or a failure."""

    cls: type[Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    name: str | None
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ActorCreated:
    """Guardian -> facade: the actor runs at `ref`."""

    ref: ActorRef


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """Any request failed with `error`."""

    error: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class StartPlugin:
    """Guardian -> plugin actor: construct and start a journal or snapshot-store plugin."""

    kind: str  # "journal" | "snapshot_store"
    plugin_id: str
    spec: str
    settings: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class PluginStarted:
    """Plugin actor -> guardian: ready."""

    plugin_id: str
    kind: str


@dataclasses.dataclass(frozen=True, slots=True)
class PluginFailed:
    """Plugin actor -> guardian: could not start; it stops itself."""

    plugin_id: str
    kind: str
    error: BaseException


@dataclasses.dataclass(frozen=True, slots=True)
class PluginMoved:
    """Guardian -> hosts (and the facade): a runtime process died and runs again elsewhere.

    `old` is the dead process's address (a journal or snapshot-store plugin's, or the event
    stream's), `new` its successor's, which has started. Whoever holds `old` (compared by
    ``addressDetails``: thespian addresses are unhashable) holds `new` instead from now on;
    what was in flight to `old` is lost with it (see `ActorHost.plugin_moved`).
    """

    old: Address
    new: Address


@dataclasses.dataclass(frozen=True, slots=True)
class Flush:
    """Plugin actor -> itself: write every write request gathered so far (group commit)."""


# -- shared host processes ([actor_system] host_processes, multiproc-tcp) --------------------
@dataclasses.dataclass(frozen=True, slots=True)
class CellEnvelope:
    """A message for the actor in cell `cell` of a shared host (a `HostedRef`'s wrapping).

    Travels bare or inside an `Envelope` (sender, ask correlation id), as `ShardEnvelope`.
    """

    cell: int
    message: Any


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class CellAddress:
    """Where the guardian reaches the actor in cell `cell` of the shared host `host`.

    It stands where the one-process model has the host's own address (its ``addressDetails``
    is what the guardian keys by); the guardian's `send` unwraps it into a `CellEnvelope`.
    """

    host: Address
    cell: int

    @property
    def addressDetails(self) -> Any:  # noqa: N802 - thespian's name, read by moved.address_key
        return (getattr(self.host, "addressDetails", self.host), self.cell)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CellAddress) and other.cell == self.cell and \
            other.addressDetails == self.addressDetails

    def __hash__(self) -> int:
        return hash(self.cell)


@dataclasses.dataclass(frozen=True, slots=True)
class FromCell:
    """Shared host -> guardian: what the actor in cell `cell` sent the guardian.

    (ActorStarted, ActorFailed, StartRecovery, RecoveryDone, ActorStopping, CellExited.)
    """

    cell: int
    message: Any


@dataclasses.dataclass(frozen=True, slots=True)
class CellExited:
    """Shared host -> guardian (in a `FromCell`): the cell's actor is gone, as a child exit."""


@dataclasses.dataclass(frozen=True, slots=True)
class StartSharedHost:
    """Guardian -> shared host: it hosts cells of this system; answered `SharedHostStarted`."""

    system: SystemInfo
    index: int


@dataclasses.dataclass(frozen=True, slots=True)
class SharedHostStarted:
    """Shared host -> guardian: ready (its sender is its final address)."""

    index: int


@dataclasses.dataclass(frozen=True, slots=True)
class DrainLocal:
    """Shared host -> itself: deliver more of the messages its actors sent each other."""


@dataclasses.dataclass(frozen=True, slots=True)
class LocalFlush:
    """Shared host -> itself: write what its actors asked its own journal instances to write."""


@dataclasses.dataclass(frozen=True, slots=True)
class LocalWritten:
    """Shared host's loop -> the host: a commit of its own journal instances finished."""


@dataclasses.dataclass(frozen=True, slots=True)
class InboxWake:
    """Host's loop -> the host: another thread of its process queued tells (`thread_inbox`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class CellTimer:
    """The wakeup payload of a shared host: its cells' timers are due.

    With `check`: see whether their wakeup came (`CellHost._check_timers`).
    """

    check: bool = False


# -- entities (sharding) ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ShardEnvelope:
    """A message for the entity `entity_id` of the type `type_name` (Akka's ShardEnvelope).

    Sent to the entity host owning the entity's shard, bare or inside an `Envelope` (sender,
    ask correlation id), as any message to an actor.
    """

    type_name: str
    entity_id: str
    message: Any


@dataclasses.dataclass(frozen=True, slots=True)
class StartEntityHosts:
    """Facade -> guardian: start `count` entity hosts of one type; answered `EntityHostsStarted`."""

    type_name: str
    cls: type[Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    count: int
    correlation_id: str
    host_class: type[Any] | None = None  # None: EntityHost (a cluster node: lease-gated hosts)


@dataclasses.dataclass(frozen=True, slots=True)
class StartEntityHost:
    """Guardian -> entity host: host entities of `type_name`; answered `EntityHostStarted`."""

    type_name: str
    cls: type[Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    system: SystemInfo
    journal: Address | None
    snapshot_store: Address | None
    event_adapters: Any
    sharding: Any  # persistent_actors._config.ShardingSettings
    max_concurrent_recoveries: int
    correlation_id: str
    host_class: type[Any] | None = None  # see StartEntityHosts
    host_index: int = 0  # which of the type's `host_count` hosts (the shards it owns)
    host_count: int = 1
    # How to start the journal in the host too (`local_journal`; None: its plugin process).
    journal_plugin: StartPlugin | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CurrentAddress:
    """Outside -> guardian: where `address` leads now (a crashed host's successor, or itself).

    Answered ``Reply(correlation_id, address)``. A cluster node asks it for an entity host
    that stopped answering, to publish the restarted host's address.
    """

    address: Address
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class EntityHostStarted:
    """Entity host -> guardian: ready (its sender is its final address)."""

    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class EntityHostsStarted:
    """Guardian -> facade: the hosts of an entity type, in shard order (shard % count)."""

    hosts: tuple[Address, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class EntityTimer:
    """Timer of an entity host: `payload` for the entity `entity_id` (None: the idle check)."""

    entity_id: str | None
    payload: Any


# -- event stream ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Subscribe:
    """Deliver every published instance of `cls` (and subclasses) to `subscriber`."""

    subscriber: ActorRef
    cls: type[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop delivering `cls` (or everything, if None) to `subscriber`."""

    subscriber: ActorRef
    cls: type[Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Publish:
    """Publish `event` to its subscribers."""

    event: Any


# -- test probe ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class ProbeGet:
    """External probe handle -> probe actor: send me the next message received."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeMessage:
    """A message the probe received, with its sender."""

    message: Any
    sender: ActorRef | None


# -- plugin commands (Akka's ReceivePluginInternal) ------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class PluginCommand:
    """Facade -> plugin actor: pass `message` to the plugin's `receive_plugin_internal`.

    Answered with ``Reply(correlation_id, result)`` or ``Reply(correlation_id, Failure(...))``.
    """

    message: Any
    correlation_id: str


# -- timers ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Scheduled:
    """Timer: put `message` in the actor's own mailbox (from itself) when it fires."""

    message: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Watch:
    """To the guardian: tell `watcher` ``Terminated(watched)`` once `watched` is gone.

    `address` is the watched actor's guardian address; gone already: at once.
    """

    address: Any
    watched: Any  # ActorRef
    watcher: Any  # ActorRef


@dataclasses.dataclass(frozen=True, slots=True)
class Unwatch:
    """To the guardian: forget `watcher`'s watch of the actor at `address`."""

    address: Any
    watcher: Any  # ActorRef


@dataclasses.dataclass(frozen=True, slots=True)
class TimerFired:
    """A user timer fired (`persistent_actors.timers`): its generation, checked on arrival."""

    generation: int


@dataclasses.dataclass(frozen=True, slots=True)
class RecoveryTick:
    """Timer: check that recovery of `actor_instance_id` is still making progress."""

    actor_instance_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class BackoffRestart:
    """Timer: start the actor again after a back-off delay."""

    restarts: int


# -- builders for the messages every request makes ----------------------------------------------
# A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (a global
# look-up and a call per field: about 1 us for an Envelope). Each builder below has its class's
# slots (CPython lays slots out by name, so the order they are listed in does not matter), so
# CPython lets the new object take that class (it refuses any other layout: each is probed at
# import); plain slot stores then fill it, as `_eventsourced`'s `_new_repr` does for a
# PersistentRepr. The result is an ordinary instance of the class (same
# equality, hash, repr, pickle). Only for the runtime's own hot paths, whose arguments are
# already of the right types.


class _EnvelopeBuilder:
    __slots__ = ("correlation_id", "message", "reply_to", "sender")

    def __init__(self, message: Any, sender: ActorRef | None, correlation_id: str | None,
                 reply_to: Any = None) -> None:
        self.message = message
        self.sender = sender
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.__class__ = Envelope  # type: ignore[assignment]  # noqa: PLE0237


class _ReplyBuilder:
    __slots__ = ("correlation_id", "message")

    def __init__(self, correlation_id: str, message: Any) -> None:
        self.correlation_id = correlation_id
        self.message = message
        self.__class__ = Reply  # type: ignore[assignment]  # noqa: PLE0237


class _WriteMessagesBuilder:
    __slots__ = ("actor_instance_id", "items")

    def __init__(self, items: tuple[WriteItem, ...], actor_instance_id: int) -> None:
        self.items = items
        self.actor_instance_id = actor_instance_id
        self.__class__ = WriteMessages  # type: ignore[assignment]  # noqa: PLE0237


class _WriteMessagesResultBuilder:
    __slots__ = ("actor_instance_id", "outcomes")

    def __init__(self, outcomes: tuple[WriteOutcome, ...], actor_instance_id: int) -> None:
        self.outcomes = outcomes
        self.actor_instance_id = actor_instance_id
        self.__class__ = WriteMessagesResult  # type: ignore[assignment]  # noqa: PLE0237


new_envelope = cast("Callable[[Any, ActorRef | None, str | None], Envelope]", _EnvelopeBuilder)
"""``Envelope(message, sender, correlation_id)`` without the frozen ``__init__``."""
new_reply = cast("Callable[[str, Any], Reply]", _ReplyBuilder)
"""``Reply(correlation_id, message)`` without the frozen ``__init__``."""
new_write_messages = cast("Callable[[tuple[WriteItem, ...], int], WriteMessages]",
                          _WriteMessagesBuilder)
"""``WriteMessages(items, actor_instance_id)`` without the frozen ``__init__``."""
new_write_result = cast("Callable[[tuple[WriteOutcome, ...], int], WriteMessagesResult]",
                        _WriteMessagesResultBuilder)
"""``WriteMessagesResult(outcomes, actor_instance_id)`` without the frozen ``__init__``."""

for _built, _made in (  # the layouts match (else TypeError here) and the objects are equal
        (new_envelope("m", None, "c"), Envelope("m", None, "c")),
        (new_reply("c", "m"), Reply("c", "m")),
        (new_write_messages((), 1), WriteMessages((), 1)),
        (new_write_result((), 1), WriteMessagesResult((), 1))):
    assert type(_built) is type(_made)  # noqa: S101
    assert _built == _made  # noqa: S101
del _built, _made


# Every message above crosses processes on multiproc-tcp: pickle it as (class, field values).
compact_all(globals())
