"""The one error hierarchy of persistent_actors.

Every error the library raises for a reason of its own (configuration, plugins, persistence,
the actor system) derives from `PersistentActorsError`. A bad argument to a call is a
`TypeError` or `ValueError` naming the argument, as with Python's own functions.
"""

from __future__ import annotations

__all__ = [
    "ActorDeadError",
    "ActorInitializationError",
    "AskTimeoutError",
    "ClusterError",
    "ConfigError",
    "EntityUnavailableError",
    "IllegalActorStateError",
    "InvalidActorNameError",
    "JournalError",
    "MaxUnconfirmedMessagesExceededError",
    "MessageNotSerializableError",
    "PersistenceError",
    "PersistenceIdInUseError",
    "PersistentActorsError",
    "PluginError",
    "ProjectionError",
    "RecoveryError",
    "RecoveryTimedOutError",
    "ReplayFilterError",
    "SequenceConflictError",
    "SerializationError",
    "SnapshotStoreError",
    "StashOverflowError",
]


class PersistentActorsError(Exception):
    """Base of every error raised by persistent_actors."""


class ConfigError(PersistentActorsError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


class PluginError(ConfigError):
    """A journal or snapshot-store plugin cannot be found, imported or started."""


class ActorInitializationError(PersistentActorsError):
    """An actor could not be created (bad class, constructor raised, no persistence_id)."""


class PersistenceIdInUseError(ActorInitializationError):
    """A live actor of this system already has the persistence id on the same journal."""


class InvalidActorNameError(PersistentActorsError):
    """An actor name is malformed or already taken by a live actor."""


class AskTimeoutError(PersistentActorsError, TimeoutError):
    """No reply arrived within the ask's timeout (the actor may be dead or busy)."""


class ActorDeadError(PersistentActorsError):
    """The target actor is not running.

    Not raised at present: an ask to a stopped actor ends with `AskTimeoutError`, as Akka's
    does (its message becomes a ``DeadLetter``). Kept for code that catches it.
    """


class MessageNotSerializableError(PersistentActorsError):
    """A message cannot be pickled to cross processes on a multi-process base."""


class SerializationError(PersistentActorsError):
    """An event or snapshot cannot be encoded, or stored bytes cannot be decoded."""


class PersistenceError(PersistentActorsError):
    """Base of errors raised by journals and snapshot stores."""


class JournalError(PersistenceError):
    """A journal operation failed; whether the write was stored is unknown."""


class SequenceConflictError(JournalError):
    """A write reused a stored (persistence_id, sequence_nr); nothing was overwritten."""


class SnapshotStoreError(PersistenceError):
    """A snapshot-store operation failed."""


class RecoveryError(PersistenceError):
    """Recovery failed: a plugin failed, or replayed data could not be decoded."""


class RecoveryTimedOutError(RecoveryError):
    """Recovery made no progress within the configured timeout."""


class ReplayFilterError(RecoveryError):
    """The replayed history was written by more than one writer (replay filter mode ``fail``)."""


class ProjectionError(PersistentActorsError):
    """A projection stopped: its handler kept failing, its query failed, or its store failed."""


class IllegalActorStateError(PersistentActorsError, RuntimeError):
    """An operation is not allowed in the actor's current state (e.g. persist during replay)."""


class EntityUnavailableError(PersistentActorsError):
    """An entity's host cannot take a message (it is restarting and its buffer is full).

    Its process is being restarted and ``[sharding] buffer_size`` messages wait for it
    already, or it died too often and is not restarted again.
    """


class StashOverflowError(PersistentActorsError):
    """A persistent actor's internal stash is full (ThrowOverflowExceptionStrategy)."""


class MaxUnconfirmedMessagesExceededError(PersistentActorsError):
    """At-least-once `deliver` was called with `max_unconfirmed_messages` unconfirmed."""


class ClusterError(PersistentActorsError):
    """A cluster node or client cannot do its part: membership store, shard count, node id."""
