"""Retention: snapshot every N events, keep the last K snapshots, optionally delete old events.

Akka typed's ``RetentionCriteria.snapshotEvery(n, keepN)`` with ``withDeleteEventsOnSnapshot``,
for the classic-style `PersistentActor`: set the class attribute ``retention`` and implement
``snapshot_state()``, which returns what to store (recovery hands it back as a `SnapshotOffer`).

* After a write whose events cross a multiple of N (one `persist_all` may cross several: one
  snapshot), once their handlers ran, the actor saves ``snapshot_state()``.
* When a snapshot at sequence number s is saved (`SaveSnapshotSuccess`, which the actor also
  receives), snapshots up to ``s - K*N`` are deleted: K snapshots are kept (s, s-N, ...).
* With ``delete_events_on_snapshot``, events up to ``s - K*N`` are deleted too (Akka's
  ``deleteUpperSequenceNr``): recovery can still fall back to any kept snapshot and replay
  from there. Deletion results (`DeleteMessagesSuccess`, `DeleteSnapshotsSuccess` and their
  failures) reach ``on_command`` like those of explicit calls; a failed deletion is retried
  by the next snapshot's, which covers everything below it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from persistent_actors.errors import ConfigError

__all__ = ["RetentionCriteria"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionCriteria:
    """When to snapshot and what to delete (Akka typed's ``SnapshotCountRetentionCriteria``)."""

    snapshot_every_n_events: int
    keep_n_snapshots: int = 2
    delete_events_on_snapshot: bool = False

    def __post_init__(self) -> None:
        for name in ("snapshot_every_n_events", "keep_n_snapshots"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"RetentionCriteria.{name} must be an int >= 1, got {value!r}")
            if value < 1:
                raise ValueError(f"RetentionCriteria.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.delete_events_on_snapshot, bool):
            raise TypeError("RetentionCriteria.delete_events_on_snapshot must be a bool, got "
                             f"{self.delete_events_on_snapshot!r}")

    @classmethod
    def snapshot_every(cls, number_of_events: int, keep_n_snapshots: int = 2, *,
                       delete_events_on_snapshot: bool = False) -> RetentionCriteria:
        """Snapshot every `number_of_events` events and keep `keep_n_snapshots` snapshots."""
        return cls(number_of_events, keep_n_snapshots, delete_events_on_snapshot)

    def with_delete_events_on_snapshot(self) -> RetentionCriteria:
        """These criteria, also deleting the events older than the kept snapshots."""
        return dataclasses.replace(self, delete_events_on_snapshot=True)

    def should_snapshot(self, first_sequence_nr: int, last_sequence_nr: int) -> bool:
        """True if a write of `first..last` reaches a multiple of `snapshot_every_n_events`."""
        n = self.snapshot_every_n_events
        return last_sequence_nr // n > (first_sequence_nr - 1) // n

    def delete_upper_sequence_nr(self, snapshot_sequence_nr: int) -> int:
        """Snapshots (and, if enabled, events) up to this number go after a snapshot here."""
        return max(0, snapshot_sequence_nr - self.keep_n_snapshots * self.snapshot_every_n_events)


# The base class's own hooks that only raise: overriding them is what retention needs.
_DEFAULT_HOOKS: set[Callable[..., Any]] = set()


def default_hook(method: F) -> F:
    """Mark `method` as the base class's placeholder (`retention_of` checks it was overridden)."""
    _DEFAULT_HOOKS.add(method)
    return method


class RetentionHolder(Protocol):
    """What `retention_of` reads of an actor."""

    @property
    def retention(self) -> RetentionCriteria | None:
        """The class attribute."""

    def snapshot_state(self) -> Any:
        """The state to snapshot."""


def retention_of(actor: RetentionHolder) -> RetentionCriteria | None:
    """The actor's validated ``retention``, or None.

    Raises:
        ConfigError: ``retention`` is not a `RetentionCriteria`, or ``snapshot_state`` is
            not implemented.

    """
    retention = actor.retention
    if retention is None:
        return None
    name = type(actor).__qualname__
    if not isinstance(retention, RetentionCriteria):
        raise ConfigError(f"{name}.retention must be a RetentionCriteria or None, got "
                          f"{type(retention).__name__}")
    if type(actor).snapshot_state in _DEFAULT_HOOKS:
        raise ConfigError(f"{name} sets retention but does not implement snapshot_state(), "
                          "which returns the state each retention snapshot stores")
    return retention
