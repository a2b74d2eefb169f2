"""Snapshot plugin API: snapshot metadata, selection criteria and the snapshot-store coroutines."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from persistent_actors.errors import PluginError
from persistent_actors.journal import MAX_SEQUENCE_NR

__all__ = [
    "SelectedSnapshot",
    "SnapshotMetadata",
    "SnapshotSelectionCriteria",
    "SnapshotStore",
]


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """Which actor a snapshot belongs to, the sequence number it covers, and when it was taken.

    `timestamp` is seconds since the epoch (UTC); 0.0 means "unknown": deleting by such
    metadata (``delete_snapshot``) removes the snapshot of that sequence number whatever its
    time. Selection criteria compare it like any other time.
    """

    persistence_id: str
    sequence_nr: int
    timestamp: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SnapshotSelectionCriteria:
    """Bounds (inclusive) on the snapshots recovery or deletion may select."""

    max_sequence_nr: int = MAX_SEQUENCE_NR
    max_timestamp: float = math.inf
    min_sequence_nr: int = 0
    min_timestamp: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_sequence_nr", "min_sequence_nr"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or \
                    not 0 <= value <= MAX_SEQUENCE_NR:
                raise ValueError(
                    f"SnapshotSelectionCriteria.{name} must be an int in [0, MAX_SEQUENCE_NR "
                    f"= 2**63-1], got {value!r}"
                )
        for name in ("max_timestamp", "min_timestamp"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or \
                    math.isnan(value) or value < 0:
                raise ValueError(
                    f"SnapshotSelectionCriteria.{name} must be a number of seconds >= 0 "
                    f"(math.inf: no bound), got {value!r}"
                )

    @classmethod
    def latest(cls) -> SnapshotSelectionCriteria:
        """Select the most recent snapshot."""
        return cls()

    @classmethod
    def none(cls) -> SnapshotSelectionCriteria:
        """Select no snapshot: recovery replays every event."""
        return cls(max_sequence_nr=0, max_timestamp=0.0)

    @property
    def is_none(self) -> bool:
        """True when no snapshot can match (the store need not be asked)."""
        return self.max_sequence_nr == 0 and self.max_timestamp == 0.0

    def limit(self, to_sequence_nr: int) -> SnapshotSelectionCriteria:
        """Return these criteria with `max_sequence_nr` capped at `to_sequence_nr`."""
        if to_sequence_nr < self.max_sequence_nr:
            return dataclasses.replace(self, max_sequence_nr=to_sequence_nr)
        return self

    def matches(self, metadata: SnapshotMetadata) -> bool:
        """True if `metadata` lies within every bound."""
        return (
            self.min_sequence_nr <= metadata.sequence_nr <= self.max_sequence_nr
            and self.min_timestamp <= metadata.timestamp <= self.max_timestamp
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SelectedSnapshot:
    """A stored snapshot as the store returns it: metadata, manifest and serialized payload."""

    metadata: SnapshotMetadata
    manifest: str
    payload: bytes


class SnapshotStore(ABC):
    """Plugin API: an asynchronous snapshot store.

    Contract (checked by `persistent_actors.testing.SnapshotStoreSpec`): `load` returns the
    snapshot with the highest sequence number (then newest timestamp) matching the criteria;
    saving twice at one sequence number overwrites; deletes of what does not exist succeed.
    """

    # The runtime may run the first step of this class's coroutines outside an asyncio task
    # when `may_block()` is set (about 1.5 us less per operation): True only where that step
    # never calls ``asyncio.current_task()`` or ``asyncio.timeout()``. What the step awaits
    # then runs in a task, as usual. Read from the concrete class's own body only: a subclass
    # adds code of its own, so it does not inherit a True.
    inline_first_step: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        """Plugin API: validate `settings` (raise `ConfigError` naming a bad one); no I/O.

        The runtime also constructs every configured plugin once when the actor system
        starts, only to check its settings, so a constructor must not open anything.
        """
        self.settings: Mapping[str, Any] = dict(settings or {})

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Plugin API: open connections; raise a clear error if the store is unusable."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Plugin API: release every resource; must be idempotent."""

    async def receive_plugin_internal(self, message: Any) -> Any:
        """Plugin API: handle a plugin-specific command (Akka's ``ReceivePluginInternal``).

        Reached through ``ActorSystem.plugin_command``; the persistence test kit uses it to
        change a test plugin's behaviour. The default accepts nothing.
        """
        raise PluginError(f"{type(self).__name__} accepts no plugin commands (got {message!r})")

    @abstractmethod
    async def load(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> SelectedSnapshot | None:
        """Plugin API: the youngest snapshot of `persistence_id` matching `criteria`, or None."""

    @abstractmethod
    async def save(self, metadata: SnapshotMetadata, manifest: str, payload: bytes) -> None:
        """Plugin API: store a snapshot, replacing one at the same sequence number."""

    @abstractmethod
    async def delete(self, metadata: SnapshotMetadata) -> None:
        """Plugin API: delete the snapshot at `metadata.sequence_nr`.

        A non-zero `metadata.timestamp` restricts deletion to a snapshot taken at or before it.
        """

    @abstractmethod
    async def delete_by_criteria(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> None:
        """Plugin API: delete every snapshot of `persistence_id` matching `criteria`."""
