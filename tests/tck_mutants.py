"""Deliberately broken plugins, and the TCK specs that run them (see test_tck_mutants.py).

Each mutant is a small subclass of an in-memory plugin with one defect a real plugin could
have. The `Mutant*` spec classes are not collected here (their names do not start with
`Test`); test_tck_mutants.py runs each one in an inner pytest session and checks it fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from journal_plugins.inmem import InmemJournal, InmemSnapshotStore, _Log
from persistent_actors.event_log import EventPage
from persistent_actors.journal import MAX_SEQUENCE_NR, AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)
from persistent_actors.testing.journal_spec import JournalSpec
from persistent_actors.testing.query_spec import ReadJournalSpec
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec

# --- broken journals ------------------------------------------------------------------------


class ForgetsOnReopenJournal(InmemJournal):
    """Keeps nothing across close and start (an in-memory store passed off as durable)."""

    async def start(self) -> None:
        self._logs.clear()


class OverwritingJournal(InmemJournal):
    """Stores a write over events already stored instead of refusing it."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        for write in writes:
            log = self._logs.setdefault(write.persistence_id, _Log())
            for repr_ in write.payload:
                log.events.pop(repr_.sequence_nr, None)
                if repr_.sequence_nr in log.sequence_nrs:
                    log.sequence_nrs.remove(repr_.sequence_nr)
            log.append(write)
        return [None] * len(writes)


class PartialWriteJournal(InmemJournal):
    """Rejects an overlapping write, but keeps the events of it that did not overlap."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        results = await super().write_messages(writes)
        for write, result in zip(writes, results, strict=True):
            if result is not None:
                log = self._logs[write.persistence_id]
                fresh = tuple(r for r in write.payload if r.sequence_nr not in log.events)
                if fresh:
                    log.append(AtomicWrite(fresh))
        return results


class UpperBoundIgnoredWithLimitJournal(InmemJournal):
    """Forgets the upper bound when a count limit is given (a LIMIT replacing the WHERE)."""

    def replay_messages(self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int,
                        max_count: int) -> AsyncIterator[PersistentRepr]:
        if max_count < MAX_SEQUENCE_NR:
            to_sequence_nr = MAX_SEQUENCE_NR
        return super().replay_messages(persistence_id, from_sequence_nr, to_sequence_nr,
                                       max_count)


class TagDroppingJournal(InmemJournal):
    """Stores events without their tags."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        return await super().write_messages([
            AtomicWrite(tuple(dataclasses.replace(r, tags=()) for r in write.payload))
            for write in writes])


class WriterUuidDroppingJournal(InmemJournal):
    """Stores events without the id of the writer (the replay filter then sees nothing)."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        return await super().write_messages([
            AtomicWrite(tuple(dataclasses.replace(r, writer_uuid="") for r in write.payload))
            for write in writes])


class ResultsOutOfOrderJournal(InmemJournal):
    """Returns the per-write results in the wrong order."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        return list(reversed(await super().write_messages(writes)))


class HighestResetByDeleteJournal(InmemJournal):
    """Reports the highest sequence number of the surviving events only."""

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        live = [e async for e in self.replay_messages(persistence_id, 1, MAX_SEQUENCE_NR,
                                                      MAX_SEQUENCE_NR)]
        return live[-1].sequence_nr if live else 0


class SkipsPagesJournal(InmemJournal):
    """Read side: claims a cut-off page scanned everything, so later events are skipped."""

    async def fetch_events(self, after_ordering: int, limit: int, *, tag: str | None = None,
                           max_ordering: int | None = None) -> EventPage:
        page = await super().fetch_events(after_ordering, limit, tag=tag,
                                          max_ordering=max_ordering)
        bound = page.highest_ordering if max_ordering is None else max_ordering
        return EventPage(page.events, page.highest_ordering, max(page.scanned_to, bound))


class PrefixDeletingJournal(InmemJournal):
    """Deletes every id that starts with the one asked for (``LIKE 'cart-1%'``)."""

    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        for other in [pid for pid in self._logs if pid.startswith(persistence_id)]:
            await super().delete_messages_to(other, to_sequence_nr)


class MemoryviewJournal(InmemJournal):
    """Replays payloads as memoryviews (a database driver's bytea): equal, but unpicklable."""

    async def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        async for event in super().replay_messages(persistence_id, from_sequence_nr,
                                                   to_sequence_nr, max_count):
            yield dataclasses.replace(event, payload=memoryview(event.payload))  # type: ignore[arg-type]


# --- broken snapshot stores -----------------------------------------------------------------


class PrefixLoadingStore(InmemSnapshotStore):
    """Loads from every id that starts with the one asked for (a glob over file names)."""

    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        found = [snapshot for pid in list(self._snapshots) if pid.startswith(persistence_id)
                 if (snapshot := await super().load(pid, criteria)) is not None]
        return max(found, key=lambda s: s.metadata.sequence_nr, default=None)


class MinimumBoundsIgnoredOnDeleteStore(InmemSnapshotStore):
    """Deletes by the criteria's maximum bounds only."""

    async def delete_by_criteria(self, persistence_id: str,
                                 criteria: SnapshotSelectionCriteria) -> None:
        await super().delete_by_criteria(persistence_id, SnapshotSelectionCriteria(
            max_sequence_nr=criteria.max_sequence_nr, max_timestamp=criteria.max_timestamp))


class NewestTimestampStore(InmemSnapshotStore):
    """Loads the newest matching snapshot instead of the one with the highest number."""

    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        if criteria.is_none:
            return None
        matching = [s for s in self._snapshots.get(persistence_id, {}).values()
                    if criteria.matches(s.metadata)]
        return max(matching, key=lambda s: s.metadata.timestamp, default=None)


class ForgetsOnReopenSnapshotStore(InmemSnapshotStore):
    """Keeps nothing across close and start."""

    async def start(self) -> None:
        self._snapshots.clear()


class TimestampIgnoredUnderSequenceBoundStore(InmemSnapshotStore):
    """Ignores `max_timestamp` whenever `max_sequence_nr` is bounded (one SQL branch too few)."""

    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        if criteria.max_sequence_nr < MAX_SEQUENCE_NR and not criteria.is_none:
            criteria = dataclasses.replace(criteria, max_timestamp=float("inf"))
        return await super().load(persistence_id, criteria)


class MillisecondTimestampStore(InmemSnapshotStore):
    """Keeps snapshot timestamps to the millisecond only."""

    async def save(self, metadata: SnapshotMetadata, manifest: str, payload: bytes) -> None:
        rounded = dataclasses.replace(metadata, timestamp=round(metadata.timestamp, 3))
        await super().save(rounded, manifest, payload)


# --- the specs that run them ----------------------------------------------------------------


class _InmemJournalSpec(JournalSpec):
    mutant: type[InmemJournal] = InmemJournal
    long_replay_event_count = 100

    async def create_journal(self, tmp_path: Path) -> Journal:
        return self.mutant()

    async def reopen_journal(self, tmp_path: Path, closed: Journal) -> Journal:
        return closed


class _InmemSnapshotStoreSpec(SnapshotStoreSpec):
    mutant: type[InmemSnapshotStore] = InmemSnapshotStore
    big_snapshot_size = 10_000

    async def create_snapshot_store(self, tmp_path: Path) -> SnapshotStore:
        return self.mutant()

    async def reopen_snapshot_store(self, tmp_path: Path, closed: SnapshotStore) -> SnapshotStore:
        return closed


class _InmemQuerySpec(ReadJournalSpec):
    mutant: type[InmemJournal] = InmemJournal

    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": f"{__name__}:{self.mutant.__name__}"}


def journal_spec(mutant: type[InmemJournal], *, rejects_conflicts: bool = True) -> type:
    """A JournalSpec running `mutant` (with conflict rejection claimed or not)."""
    return type(f"Mutant{mutant.__name__}", (_InmemJournalSpec,), {
        "mutant": mutant, "supports_rejecting_sequence_conflicts": rejects_conflicts})


def snapshot_store_spec(mutant: type[InmemSnapshotStore]) -> type:
    """A SnapshotStoreSpec running `mutant`."""
    return type(f"Mutant{mutant.__name__}", (_InmemSnapshotStoreSpec,), {"mutant": mutant})


def query_spec(mutant: type[InmemJournal]) -> type:
    """A ReadJournalSpec running `mutant` as the system's journal."""
    return type(f"Mutant{mutant.__name__}", (_InmemQuerySpec,), {"mutant": mutant})


# The control: the unbroken plugins under the same specs (they must pass every case).
MutantInmemJournal = journal_spec(InmemJournal)
MutantInmemSnapshotStore = snapshot_store_spec(InmemSnapshotStore)
