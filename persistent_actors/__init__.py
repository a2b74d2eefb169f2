"""Akka.NET-style event-sourced actors (PersistentActor) for Python, on thespian."""

from __future__ import annotations

import logging

from persistent_actors._actor import Actor, ActorContext, ActorRef
from persistent_actors._config import CONFIG_ENV_VAR
from persistent_actors._errors import (
    ActorDeadError,
    ActorInitializationError,
    AskTimeoutError,
    ConfigError,
    IllegalActorStateError,
    InvalidActorNameError,
    JournalError,
    MessageNotSerializableError,
    PersistenceError,
    PersistentActorsError,
    PluginError,
    RecoveryError,
    RecoveryTimedOutError,
    SequenceConflictError,
    SerializationError,
    SnapshotStoreError,
    StashOverflowError,
)
from persistent_actors._event_stream import EventStream
from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._serialization import register
from persistent_actors._system import ActorSystem
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
)
from persistent_actors.recovery import Recovery
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria
from persistent_actors.supervision import (
    Backoff,
    BackoffOptions,
    DiscardToDeadLetterStrategy,
    ReplyToStrategy,
    ThrowOverflowExceptionStrategy,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "MAX_SEQUENCE_NR",
    "Actor",
    "ActorContext",
    "ActorDeadError",
    "ActorInitializationError",
    "ActorRef",
    "ActorSystem",
    "AskTimeoutError",
    "Backoff",
    "BackoffOptions",
    "ConfigError",
    "DeadLetter",
    "DeleteMessagesFailure",
    "DeleteMessagesSuccess",
    "DeleteSnapshotFailure",
    "DeleteSnapshotSuccess",
    "DeleteSnapshotsFailure",
    "DeleteSnapshotsSuccess",
    "DiscardToDeadLetterStrategy",
    "EventStream",
    "IllegalActorStateError",
    "InvalidActorNameError",
    "JournalError",
    "Kill",
    "MessageNotSerializableError",
    "PersistenceError",
    "PersistentActor",
    "PersistentActorsError",
    "PluginError",
    "PoisonPill",
    "Recovery",
    "RecoveryCompleted",
    "RecoveryError",
    "RecoveryTimedOutError",
    "ReplyToStrategy",
    "SaveSnapshotFailure",
    "SaveSnapshotSuccess",
    "SequenceConflictError",
    "SerializationError",
    "SnapshotMetadata",
    "SnapshotOffer",
    "SnapshotSelectionCriteria",
    "SnapshotStoreError",
    "StashOverflowError",
    "ThrowOverflowExceptionStrategy",
    "register",
]

logging.getLogger("persistent_actors").addHandler(logging.NullHandler())
