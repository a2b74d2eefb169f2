"""`ShardMemory`: the remembered entities of one shard (Akka's remember-entities store).

One internal persistent actor per shard, hosted by the entity host that owns the shard, with
the persistence id ``/sharding/{type}Shard/{shard}`` (Akka's). It journals `EntityStarted` when
an entity of the shard starts and `EntityStopped` when it is passivated, through the entity
type's journal (so it works with every journal plugin); after a restart its recovery yields the
ids to start again. Writes are `persist_async`: starting an entity never waits for them, and
the entities started while a write is in flight go in the next one (one write per batch).

The events grow with every start and passivation: every `COMPACT_EVERY` events the set is
saved as a snapshot and the events up to it are deleted, as Akka's store snapshots its state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._serialization import register
from persistent_actors._thespian.common import log
from persistent_actors.messages import (
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    DeleteSnapshotsFailure,
    DeleteSnapshotsSuccess,
    RecoveryCompleted,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
    SnapshotOffer,
)
from persistent_actors.snapshot import SnapshotSelectionCriteria

__all__ = ["COMPACT_EVERY", "EntityStarted", "EntityStopped", "ShardMemory", "memory_id"]

COMPACT_EVERY = 1000


@register(manifest="persistent_actors.sharding.EntityStarted")
@dataclasses.dataclass(frozen=True, slots=True)
class EntityStarted:
    """Event (and the host's command): the entity `entity_id` of the shard started."""

    entity_id: str


@register(manifest="persistent_actors.sharding.EntityStopped")
@dataclasses.dataclass(frozen=True, slots=True)
class EntityStopped:
    """Event (and the host's command): the entity `entity_id` was passivated."""

    entity_id: str


def memory_id(type_name: str, shard: int) -> str:
    """The persistence id of the remembered entities of `shard` of `type_name` (Akka's)."""
    return f"/sharding/{type_name}Shard/{shard}"


class ShardMemory(PersistentActor):
    """The set of remembered entity ids of one shard; tells its host once it has recovered.

    Constructed by the entity host with the shard's persistence id, and `on_recovered`, called
    with the recovered ids when recovery completes (the host starts those entities).
    """

    def __init__(self, persistence_id: str, on_recovered: Callable[[set[str]], None]) -> None:
        self._persistence_id = persistence_id
        self._on_recovered = on_recovered
        self._compact_every = COMPACT_EVERY  # read here: the tests lower it
        self.ids: set[str] = set()
        self._since_snapshot = 0

    @property
    def persistence_id(self) -> str:
        return self._persistence_id

    def on_recover(self, message: Any) -> None:
        match message:
            case SnapshotOffer(snapshot=list(ids)):
                self.ids = set(ids)
            case EntityStarted(entity_id):
                self.ids.add(entity_id)
                self._since_snapshot += 1
            case EntityStopped(entity_id):
                self.ids.discard(entity_id)
                self._since_snapshot += 1
            case RecoveryCompleted():
                self._on_recovered(set(self.ids))

    def on_command(self, message: Any) -> None:
        match message:
            case EntityStarted(entity_id) if entity_id not in self.ids:
                self.ids.add(entity_id)
                self.persist_async(message, self._written)
            case EntityStopped(entity_id) if entity_id in self.ids:
                self.ids.discard(entity_id)
                self.persist_async(message, self._written)
            case EntityStarted() | EntityStopped():
                pass  # already so
            case SaveSnapshotSuccess(metadata):
                # The snapshot holds the whole set: the events and snapshots before it go.
                self.delete_messages(metadata.sequence_nr)
                if metadata.sequence_nr > 1:
                    self.delete_snapshots(
                        SnapshotSelectionCriteria(max_sequence_nr=metadata.sequence_nr - 1))
            case SaveSnapshotFailure() | DeleteMessagesFailure() | DeleteSnapshotsFailure():
                # Compaction is an optimisation: the events still describe the set.
                log.warning("remembered entities %r: compaction failed: %s",
                            self._persistence_id, message.cause)
            case DeleteMessagesSuccess() | DeleteSnapshotsSuccess():
                pass
            case _:
                self.unhandled(message)

    def snapshot_state(self) -> Any:
        return sorted(self.ids)

    def _written(self, _event: Any) -> None:
        self._since_snapshot += 1
        if self._since_snapshot >= self._compact_every:
            self._since_snapshot = 0
            self.save_snapshot(sorted(self.ids))
