"""Actors for the plugin-selection tests (module level, so the multiproc base can import them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from journal_plugins.inmem import InmemJournal, InmemSnapshotStore
from persistent_actors import (
    Actor,
    ActorRef,
    PersistentActor,
    RecoveryCompleted,
    SaveSnapshotSuccess,
    SnapshotOffer,
)
from persistent_actors.journal import AtomicWrite, PersistentRepr, ReplayedRows
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
)


class Counter(PersistentActor):
    """Persists every int it is told; reports rejections and its recovered total to `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.total = 0

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case int():
                self.total += message
            case SnapshotOffer(snapshot=int(total)):
                self.total = total
            case RecoveryCompleted():
                self.probe.tell(("recovered", self.total, self.last_sequence_nr))

    def on_command(self, message: Any) -> None:
        match message:
            case int():
                self.persist(message, self._apply)
            case "total":
                self.probe.tell(("total", self.total))
            case "snap":
                self.save_snapshot(self.total)
            case SaveSnapshotSuccess(metadata):
                self.probe.tell(("saved", metadata.sequence_nr))

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("persist-failed", type(cause).__name__, str(cause)))

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", type(cause).__name__, str(cause)))

    def _apply(self, value: int) -> None:
        self.total += value
        self.probe.tell(("persisted", value, self.last_sequence_nr))

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("rejected", type(cause).__name__, event, sequence_nr))


class AuditCounter(Counter):
    """The same actor, stored in the journal configured under the id "audit"."""

    journal_plugin_id = "audit"


class GroupRecordingJournal(InmemJournal):
    """Records how many persistence ids each `write_messages` call carried.

    Class-level, so only meaningful on the simple base, where the plugin runs in-process.
    """

    ids_per_call: ClassVar[list[int]] = []

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Record the call's distinct persistence ids, then store as usual."""
        GroupRecordingJournal.ids_per_call.append(len({w.persistence_id for w in writes}))
        return await super().write_messages(writes)


class Broadcaster(Actor):
    """Tells every ref it is given the value: the tells are queued together."""

    def on_receive(self, message: Any) -> None:
        refs, value = message
        for ref in refs:
            ref.tell(value)


class NeverStarts(InmemJournal):
    """A journal whose start() never returns (a server that accepts and never answers)."""

    async def start(self) -> None:
        await asyncio.sleep(3600)


# -- plugins that break their contract: the runtime must say so, naming them -----------------
class TruthyResults(InmemJournal):
    """Stores, then answers True per write (neither None nor an exception)."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        await super().write_messages(writes)
        return [True] * len(writes)  # type: ignore[list-item]


class NoResults(InmemJournal):
    """Stores, then answers None instead of a list."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        await super().write_messages(writes)
        return None  # type: ignore[return-value]


class HighestNone(InmemJournal):
    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        return None  # type: ignore[return-value]


class CoroutineReplay(InmemJournal):
    """replay_messages written as a coroutine returning a list, not an async generator."""

    async def replay_messages(  # type: ignore[override]
            self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int,
            max_count: int) -> list[PersistentRepr]:
        return []


class MemoryviewPayloads(InmemJournal):
    """Replays payloads as memoryviews, as psycopg returns bytea columns."""

    async def replay_rows(self, persistence_id: str, from_sequence_nr: int,
                          to_sequence_nr: int, max_count: int) -> AsyncIterator[ReplayedRows]:
        async for rows in super().replay_rows(persistence_id, from_sequence_nr, to_sequence_nr,
                                              max_count):
            yield ReplayedRows(rows.sequence_nrs, rows.manifests,
                               [memoryview(p) for p in rows.payloads], rows.writer_uuids)  # type: ignore[misc]


class StartRefused(InmemJournal):
    async def start(self) -> None:
        raise ConnectionRefusedError(111, "Connection refused")


class DictSnapshots(InmemSnapshotStore):
    """load returns a dict instead of a SelectedSnapshot."""

    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        return {"snapshot": 1}  # type: ignore[return-value]


class OtherIdSnapshots(InmemSnapshotStore):
    """load returns the snapshot of another id (a prefix match: 'cart-1' finds 'cart-10')."""

    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        found = await super().load(persistence_id, criteria)
        if found is None:
            return None
        md = found.metadata
        return SelectedSnapshot(SnapshotMetadata(md.persistence_id + "0", md.sequence_nr,
                                                 md.timestamp), found.manifest, found.payload)


class MemoryviewSnapshots(InmemSnapshotStore):
    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        found = await super().load(persistence_id, criteria)
        if found is None:
            return None
        return SelectedSnapshot(found.metadata, found.manifest,
                                memoryview(found.payload))  # type: ignore[arg-type]


class SlowClose(InmemJournal):
    """A journal whose close() takes a while (it flushes a buffer, says goodbye to a server)."""

    async def close(self) -> None:
        await asyncio.sleep(0.05)
        await super().close()


class MarksItsStop(Actor):
    """Writes its name to `path` in post_stop (cleanup a shutdown must run)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_receive(self, message: Any) -> None:
        self.sender.tell(message)

    def post_stop(self) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("stopped\n")
