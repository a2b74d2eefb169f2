"""`PersistentActor`: the user's event-sourced actor, with Akka.NET's contract in snake_case."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from persistent_actors._actor import Actor, _current, check_class_int
from persistent_actors._serialization import clip
from persistent_actors.errors import ConfigError, IllegalActorStateError
from persistent_actors.recovery import Recovery
from persistent_actors.retention import RetentionCriteria, default_hook
from persistent_actors.snapshot import SnapshotSelectionCriteria
from persistent_actors.supervision import StashOverflowStrategy, ThrowOverflowExceptionStrategy

if TYPE_CHECKING:
    from persistent_actors._eventsourced import Eventsourced

__all__ = ["PersistentActor"]

E = TypeVar("E")

_DEFAULT_RECOVERY = Recovery()


def _in_handling(what: str) -> None:
    """Refuse `what` outside the actor's own message handling (on another thread).

    A persist from a thread the actor started was accepted and never written (writes go out
    when a message's handling ends), and the next command waited behind it for ever.
    """
    if _current.context is None:  # set on the thread handling one of the actor's messages
        raise IllegalActorStateError(
            f"{what} must be called while the actor handles a message (in on_command or a "
            "persist handler), not from another thread: tell the actor (or pipe_to it) what "
            "the thread found, and call it there")


class PersistentActor(Actor):
    """Base class of event-sourced actors (Akka.NET's ``UntypedPersistentActor``).

    Subclasses set `persistence_id` (a class attribute, or a property computed from constructor
    arguments) and implement `on_command` and `on_recover`. Commands call `persist` with the
    events they cause; each handler runs after its event is stored, after `on_command` returned,
    in call order, and with ``self.sender`` set to the command's sender. Commands arriving while
    a `persist` (or `persist_all`, `defer`) handler is pending, or during recovery, are stashed
    and handled afterwards in arrival order.

    On start the actor recovers: `on_recover` receives a `SnapshotOffer` (if `recovery` selects
    one), every later event, then `RecoveryCompleted`. An exception in `on_command` or in a
    persist handler restarts the actor: a fresh instance recovers from the journal.
    """

    @property
    def persistence_id(self) -> str:
        """Identity of the event stream: override with a class attribute or a property.

        It must be a non-empty str, or creating the actor fails with an error naming the class.
        """
        return ""

    @property
    def recovery(self) -> Recovery:
        """How to recover (override with a class attribute or property); default: everything."""
        return _DEFAULT_RECOVERY

    journal_plugin_id: ClassVar[str | None] = None
    """Name of a journal from config to use instead of the default (Akka's JournalPluginId)."""

    snapshot_plugin_id: ClassVar[str | None] = None
    """Name of a snapshot store from config instead of the default (Akka's SnapshotPluginId)."""

    internal_stash_capacity: ClassVar[int | None] = None
    """Messages stashed while persisting or recovering; None: ``[persistence]`` config value."""

    internal_stash_overflow_strategy: ClassVar[StashOverflowStrategy] = (
        ThrowOverflowExceptionStrategy())
    """What happens to a message that does not fit the stash (Akka's three strategies)."""

    @classmethod
    def _check_class_settings(cls) -> None:
        super()._check_class_settings()
        name = cls.__qualname__
        if cls.internal_stash_capacity is not None:
            check_class_int(cls, "internal_stash_capacity", cls.internal_stash_capacity)
        if not isinstance(cls.internal_stash_overflow_strategy, StashOverflowStrategy):
            raise ConfigError(
                f"{name}.internal_stash_overflow_strategy must be a StashOverflowStrategy "
                "(ThrowOverflowExceptionStrategy(), DiscardToDeadLetterStrategy(), "
                f"ReplyToStrategy(...)), got {cls.internal_stash_overflow_strategy!r}")
        for attribute in ("journal_plugin_id", "snapshot_plugin_id"):
            value = getattr(cls, attribute)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name}.{attribute} must be None or the id of a configured "
                                  f"plugin, got {value!r}")

    retention: ClassVar[RetentionCriteria | None] = None
    """Snapshot every N events through `snapshot_state`, keep K, optionally delete old events.

    Akka typed's ``RetentionCriteria.snapshotEvery(n, keepN)``; see `persistent_actors.retention`.
    """

    _eventsourced: Eventsourced
    _behavior_attribute: ClassVar[str] = "on_command"
    # True if the class overrides `_receive_command` (set per subclass): the machine then
    # calls it, else `on_command` directly.
    _command_hook: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._command_hook = cls._receive_command is not PersistentActor._receive_command

    # -- what subclasses implement ------------------------------------------------------------
    @abstractmethod
    def on_command(self, message: Any) -> None:
        """Handle a command: validate it, `persist` the events it causes, reply."""

    @abstractmethod
    def on_recover(self, message: Any) -> None:
        """Apply a replayed event, a `SnapshotOffer` or `RecoveryCompleted` to the state."""

    @default_hook
    def snapshot_state(self) -> Any:
        """The state a `retention` snapshot stores; recovery offers it back in a `SnapshotOffer`.

        Required when ``retention`` is set (the actor fails to start without it). It must be
        storable like an event (plain msgpack values or registered classes).
        """
        raise NotImplementedError(f"{type(self).__qualname__}.snapshot_state")

    def _receive_command(self, message: Any) -> None:
        # Where the runtime hands over a command; a mixin (at-least-once delivery) takes its
        # own messages out here before `on_command` sees them (Akka's aroundReceive).
        self._behavior()(message)

    def _on_replay_success(self) -> None:
        # Called when replay ended, before `RecoveryCompleted` is handled (Akka's
        # onReplaySuccess): at-least-once delivery sends what is still unconfirmed.
        pass

    def on_receive(self, message: Any) -> None:
        """Persistent actors handle commands in `on_command`; this just forwards to it."""
        self.on_command(message)

    # -- persisting -------------------------------------------------------------------------
    def persist(self, event: E, handler: Callable[[E], None]) -> None:
        """Store `event` atomically, then call ``handler(event)``; stash commands until then.

        Raises:
            IllegalActorStateError: while the actor is recovering.

        """
        _in_handling("persist")
        self._eventsourced.persist_event(event, handler, stashing=True)

    def persist_all(self, events: Iterable[E] | None, handler: Callable[[E], None]) -> None:
        """Store `events` as one atomic write, then call `handler` for each, in order.

        An empty iterable, or None (as Akka's ``PersistAll(null)``), does nothing.

        Raises:
            TypeError: `events` is not an iterable, or is a str/bytes (use `persist`).

        """
        _in_handling("persist_all")
        self._eventsourced.persist(_events(events), handler, stashing=True)

    def persist_async(self, event: E, handler: Callable[[E], None]) -> None:
        """Like `persist`, but commands keep being handled while the write is pending."""
        _in_handling("persist_async")
        self._eventsourced.persist_event(event, handler, stashing=False)

    def persist_all_async(self, events: Iterable[E] | None, handler: Callable[[E], None]
                          ) -> None:
        """Like `persist_all` (None does nothing), but without stashing commands."""
        _in_handling("persist_all_async")
        self._eventsourced.persist(_events(events), handler, stashing=False)

    def defer_async(self, event: E, handler: Callable[[E], None]) -> None:
        """Call ``handler(event)`` after every persist handler called before it; store nothing.

        Runs at once when nothing is pending. Commands are not stashed meanwhile.
        """
        _in_handling("defer_async")
        self._eventsourced.defer(event, handler, stashing=False)

    def defer(self, event: E, handler: Callable[[E], None]) -> None:
        """Like `defer_async`, but commands are stashed until the handler has run."""
        _in_handling("defer")
        self._eventsourced.defer(event, handler, stashing=True)

    # -- snapshots and deletion --------------------------------------------------------------
    def save_snapshot(self, snapshot: Any) -> None:
        """Store `snapshot` at `snapshot_sequence_nr`; `SaveSnapshotSuccess`/`Failure` follows."""
        _in_handling("save_snapshot")
        self._eventsourced.save_snapshot(snapshot)

    def delete_snapshot(self, sequence_nr: int) -> None:
        """Delete the snapshot at `sequence_nr`; `DeleteSnapshotSuccess`/`Failure` follows."""
        _in_handling("delete_snapshot")
        self._eventsourced.delete_snapshot(sequence_nr)

    def delete_snapshots(self, criteria: SnapshotSelectionCriteria) -> None:
        """Delete snapshots matching `criteria`; `DeleteSnapshotsSuccess`/`Failure` follows."""
        _in_handling("delete_snapshots")
        self._eventsourced.delete_snapshots(criteria)

    def delete_messages(self, to_sequence_nr: int) -> None:
        """Delete events up to `to_sequence_nr` (inclusive).

        `DeleteMessagesSuccess` or `DeleteMessagesFailure` follows as a command. Asking beyond
        `last_sequence_nr` fails without touching the journal; `MAX_SEQUENCE_NR` means "all".
        The sequence number itself never goes back: new events continue after the old ones.
        """
        _in_handling("delete_messages")
        self._eventsourced.delete_messages(to_sequence_nr)

    # -- state ------------------------------------------------------------------------------
    @property
    def last_sequence_nr(self) -> int:
        """Sequence number of the last event replayed or stored (0 if none)."""
        return self._eventsourced.last_sequence_nr

    @property
    def snapshot_sequence_nr(self) -> int:
        """The sequence number a snapshot taken now would cover (= `last_sequence_nr`)."""
        return self._eventsourced.last_sequence_nr

    @property
    def is_recovering(self) -> bool:
        """True until recovery is done (already False while `RecoveryCompleted` is handled)."""
        return self._eventsourced.is_recovering

    @property
    def is_recovery_finished(self) -> bool:
        """The opposite of `is_recovering`."""
        return not self._eventsourced.is_recovering

    # -- failure hooks ----------------------------------------------------------------------
    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        """The journal failed to store `event`; the actor stops after this returns.

        Whether the event was stored is unknown, so the actor cannot go on. The default logs.
        """
        self._eventsourced.log.error(
            "failed to persist event %s (sequence_nr %d) for persistence id %r: %s",
            type(event).__name__, sequence_nr, self._eventsourced.persistence_id, clip(str(cause)),
        )

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        """The journal rejected `event` (it was not stored); the actor continues.

        The handler does not run and the sequence number is used up. The default logs.
        """
        self._eventsourced.log.error(
            "rejected event %s (sequence_nr %d) for persistence id %r: %s",
            type(event).__name__, sequence_nr, self._eventsourced.persistence_id, clip(str(cause)),
        )

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        """Recovery failed (`event` is the replayed event, if any); the actor then stops."""
        where = "" if event is None else f" at event {clip(repr(event))}"
        self._eventsourced.log.error(
            "recovery of persistence id %r failed%s: %s: %s",
            self._eventsourced.persistence_id, where, type(cause).__name__, clip(str(cause)),
        )


def _events(events: Iterable[Any] | None) -> tuple[Any, ...]:
    """The events of a `persist_all` call: None is none, as in Akka; a str is a mistake."""
    if events is None:
        return ()
    if isinstance(events, str | bytes | bytearray):
        raise TypeError(f"persist_all expects an iterable of events, got the "
                        f"{type(events).__name__} {events[:40]!r}; use persist for one event")
    try:
        iterator = iter(events)
    except TypeError:
        raise TypeError(f"persist_all expects an iterable of events, got "
                        f"{type(events).__name__}") from None
    return tuple(iterator)  # an error raised while iterating is the caller's own: it propagates
