"""Akka.NET-style event-sourced actors (PersistentActor) for Python, on thespian."""

from __future__ import annotations

from persistent_actors._actor import Actor, ActorContext, ActorRef, EntityRef
from persistent_actors._config import CONFIG_ENV_VAR
from persistent_actors._event_stream import EventStream
from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._region import EntityRegion
from persistent_actors._serialization import register
from persistent_actors._system import ActorSystem
from persistent_actors.adapters import EventAdapter, ReadEventAdapter, Tagged, WriteEventAdapter
from persistent_actors.at_least_once import (
    AtLeastOnceDeliveryActor,
    AtLeastOnceDeliverySnapshot,
    UnconfirmedDelivery,
    UnconfirmedWarning,
)
from persistent_actors.errors import (
    ActorDeadError,
    ActorInitializationError,
    AskTimeoutError,
    ClusterError,
    ConfigError,
    EntityUnavailableError,
    IllegalActorStateError,
    InvalidActorNameError,
    JournalError,
    MaxUnconfirmedMessagesExceededError,
    MessageNotSerializableError,
    PersistenceError,
    PersistenceIdInUseError,
    PersistentActorsError,
    PluginError,
    ProjectionError,
    RecoveryError,
    RecoveryTimedOutError,
    ReplayFilterError,
    SequenceConflictError,
    SerializationError,
    SnapshotStoreError,
    StashOverflowError,
)
from persistent_actors.journal import MAX_SEQUENCE_NR
from persistent_actors.messages import (
    DeadLetter,
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    DeleteSnapshotFailure,
    DeleteSnapshotsFailure,
    DeleteSnapshotsSuccess,
    DeleteSnapshotSuccess,
    Kill,
    PoisonPill,
    RecoveryCompleted,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
    SnapshotOffer,
    Status,
    Terminated,
)
from persistent_actors.pipe_to import pipe_to
from persistent_actors.projection import (
    ErrorStrategy,
    ExactlyOnceProjection,
    InmemOffsetStore,
    OffsetStore,
    Projection,
    SqliteOffsetStore,
)
from persistent_actors.query import (
    NO_OFFSET,
    EventEnvelope,
    NoOffset,
    Offset,
    ReadJournal,
    Sequence,
    SyncReadJournal,
    open_read_journal,
)
from persistent_actors.recovery import Recovery
from persistent_actors.retention import RetentionCriteria
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria
from persistent_actors.supervision import (
    Backoff,
    BackoffOptions,
    DiscardToDeadLetterStrategy,
    ReplyToStrategy,
    ThrowOverflowExceptionStrategy,
)
from persistent_actors.timers import TimerScheduler

__all__ = [
    "CONFIG_ENV_VAR",
    "MAX_SEQUENCE_NR",
    "NO_OFFSET",
    "Actor",
    "ActorContext",
    "ActorDeadError",
    "ActorInitializationError",
    "ActorRef",
    "ActorSystem",
    "AskTimeoutError",
    "AtLeastOnceDeliveryActor",
    "AtLeastOnceDeliverySnapshot",
    "Backoff",
    "BackoffOptions",
    "ClusterError",
    "ConfigError",
    "DeadLetter",
    "DeleteMessagesFailure",
    "DeleteMessagesSuccess",
    "DeleteSnapshotFailure",
    "DeleteSnapshotSuccess",
    "DeleteSnapshotsFailure",
    "DeleteSnapshotsSuccess",
    "DiscardToDeadLetterStrategy",
    "EntityRef",
    "EntityRegion",
    "EntityUnavailableError",
    "ErrorStrategy",
    "EventAdapter",
    "EventEnvelope",
    "EventStream",
    "ExactlyOnceProjection",
    "IllegalActorStateError",
    "InmemOffsetStore",
    "InvalidActorNameError",
    "JournalError",
    "Kill",
    "MaxUnconfirmedMessagesExceededError",
    "MessageNotSerializableError",
    "NoOffset",
    "Offset",
    "OffsetStore",
    "PersistenceError",
    "PersistenceIdInUseError",
    "PersistentActor",
    "PersistentActorsError",
    "PluginError",
    "PoisonPill",
    "Projection",
    "ProjectionError",
    "ReadEventAdapter",
    "ReadJournal",
    "Recovery",
    "RecoveryCompleted",
    "RecoveryError",
    "RecoveryTimedOutError",
    "ReplayFilterError",
    "ReplyToStrategy",
    "RetentionCriteria",
    "SaveSnapshotFailure",
    "SaveSnapshotSuccess",
    "Sequence",
    "SequenceConflictError",
    "SerializationError",
    "SnapshotMetadata",
    "SnapshotOffer",
    "SnapshotSelectionCriteria",
    "SnapshotStoreError",
    "SqliteOffsetStore",
    "StashOverflowError",
    "Status",
    "SyncReadJournal",
    "Tagged",
    "Terminated",
    "ThrowOverflowExceptionStrategy",
    "TimerScheduler",
    "UnconfirmedDelivery",
    "UnconfirmedWarning",
    "WriteEventAdapter",
    "open_read_journal",
    "pipe_to",
    "register",
]


# No handler of the library's own on the "persistent_actors" logger, not even a NullHandler:
# until the application configures logging, Python's last-resort handler prints warnings and
# errors to stderr, so a rejected event (an event class without @register, say) is seen, not
# swallowed. An application quiets it with a level or a handler of its own (README: Logging).
