"""In-memory journal and snapshot store: fast, for tests and demos; everything is lost on exit.

Both keep the objects they are given (immutable dataclasses holding payload bytes); payloads are
never decoded or copied through any serializer.

The journal is also an `EventLog` for the read side: it numbers events in one global order as it
stores them. The runtime's plugin actor answers queries from its data (``system.read_journal()``),
so the log lives, and is queried, inside the actor system.
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from persistent_actors.errors import SequenceConflictError
from persistent_actors.event_log import EventLog, EventPage, PersistenceIdPage, StoredEvent
from persistent_actors.journal import AtomicWrite, Journal, PersistentRepr, check_settings
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

__all__ = ["InmemJournal", "InmemSnapshotStore"]


class _Log:
    """The events of one persistence id, sorted by sequence number."""

    __slots__ = ("events", "highest", "live_from", "sequence_nrs")

    def __init__(self) -> None:
        # Deleted events stay as `None` tombstones so their sequence numbers are never reused,
        # matching the SQLite journal, whose unique key keeps deleted rows.
        self.events: dict[int, PersistentRepr | None] = {}
        self.sequence_nrs: list[int] = []
        # Every index below `live_from` holds a tombstone: deletion and replay skip them.
        self.live_from = 0
        self.highest = 0

    def conflicts(self, write: AtomicWrite) -> bool:
        return any(repr_.sequence_nr in self.events for repr_ in write.payload)

    def append(self, write: AtomicWrite) -> None:
        for repr_ in write.payload:
            nr = repr_.sequence_nr
            self.events[nr] = repr_
            if not self.sequence_nrs or nr > self.sequence_nrs[-1]:
                self.sequence_nrs.append(nr)  # the usual case: writes arrive in order
            else:
                index = bisect.bisect_left(self.sequence_nrs, nr)
                self.sequence_nrs.insert(index, nr)
                self.live_from = min(self.live_from, index)
            self.highest = max(self.highest, nr)

    def delete_to(self, to_sequence_nr: int) -> None:
        end = bisect.bisect_right(self.sequence_nrs, to_sequence_nr)
        for index in range(self.live_from, end):
            self.events[self.sequence_nrs[index]] = None
        self.live_from = max(self.live_from, end)


class InmemJournal(Journal, EventLog):
    """Plugin API: a journal kept in a dict; accepts no settings.

    A write reusing a sequence number already stored (or deleted) for its persistence id is
    rejected with `SequenceConflictError`; nothing is overwritten.

    As an `EventLog`, event number n in the global order is the n-th event stored. Every call
    runs to completion on the plugin's single event loop without awaiting, so a write is
    numbered and visible all at once: the visible events are always a prefix of the order.
    """

    inline_first_step = True  # see Journal.inline_first_step: no task needed

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        check_settings(type(self).__name__, self.settings, ())
        self._logs: dict[str, _Log] = {}
        # Read side: event at ordering n is _ordered[n - 1]; per tag and per id, its orderings.
        self._ordered: list[PersistentRepr] = []
        self._ordering_of: dict[str, dict[int, int]] = {}
        self._by_tag: dict[str, list[int]] = {}
        self._first_seen: list[tuple[int, str]] = []

    def event_log(self) -> EventLog:
        """Plugin API: this journal is its own read-side log (served through the actor system)."""
        return self

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: store each write whole, or reject it on a sequence-number conflict."""
        results: list[BaseException | None] = []
        logs = self._logs
        for write in writes:
            pid = write.payload[0].persistence_id
            log = logs.get(pid)
            if log is None:  # not setdefault: a _Log built per write is most of a small write
                log = logs[pid] = _Log()
            if log.conflicts(write):
                results.append(_conflict(write))
            else:
                log.append(write)
                self._number(write)
                results.append(None)
        return results

    def _number(self, write: AtomicWrite) -> None:
        pid = write.payload[0].persistence_id
        orderings = self._ordering_of.get(pid)
        if orderings is None:
            orderings = self._ordering_of[pid] = {}
        if not orderings:
            self._first_seen.append((len(self._ordered) + 1, pid))
        for repr_ in write.payload:
            self._ordered.append(repr_)
            ordering = len(self._ordered)
            orderings[repr_.sequence_nr] = ordering
            for tag in dict.fromkeys(repr_.tags):
                self._by_tag.setdefault(tag, []).append(ordering)

    def _is_live(self, repr_: PersistentRepr) -> bool:
        return self._logs[repr_.persistence_id].events.get(repr_.sequence_nr) is not None

    def _bound(self, max_ordering: int | None) -> int:
        highest = len(self._ordered)
        return highest if max_ordering is None else min(max_ordering, highest)

    async def highest_ordering(self) -> int:
        """Plugin API (EventLog): the number of events ever stored."""
        return len(self._ordered)

    async def fetch_events(self, after_ordering: int, limit: int, *, tag: str | None = None,
                           max_ordering: int | None = None) -> EventPage:
        """Plugin API (EventLog): live events after `after_ordering`, by ordering."""
        bound = self._bound(max_ordering)
        if tag is None:
            candidates: Sequence[int] = range(after_ordering + 1, bound + 1)
        else:
            tagged = self._by_tag.get(tag, [])
            candidates = tagged[bisect.bisect_right(tagged, after_ordering):]
        events: list[StoredEvent] = []
        scanned = max(after_ordering, bound)
        for ordering in candidates:
            if ordering > bound or len(events) >= limit:
                break
            repr_ = self._ordered[ordering - 1]
            if self._is_live(repr_):
                events.append(StoredEvent(ordering, repr_))
                if len(events) >= limit:
                    scanned = ordering
        return EventPage(tuple(events), len(self._ordered), scanned)

    async def fetch_events_by_persistence_id(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, limit: int, *,
        max_ordering: int | None = None,
    ) -> EventPage:
        """Plugin API (EventLog): live events of one id, by sequence number."""
        bound = self._bound(max_ordering)
        orderings = self._ordering_of.get(persistence_id, {})
        events = [
            StoredEvent(orderings[repr_.sequence_nr], repr_)
            async for repr_ in self.replay_messages(persistence_id, from_sequence_nr,
                                                    to_sequence_nr, limit)
            if orderings[repr_.sequence_nr] <= bound
        ]
        return EventPage(tuple(events), len(self._ordered), bound)

    async def fetch_persistence_ids(self, after_ordering: int, limit: int, *,
                                    max_ordering: int | None = None) -> PersistenceIdPage:
        """Plugin API (EventLog): ids by the ordering of their first event."""
        bound = self._bound(max_ordering)
        start = bisect.bisect_right(self._first_seen, after_ordering, key=lambda entry: entry[0])
        ids = tuple(entry for entry in self._first_seen[start:start + limit] if entry[0] <= bound)
        scanned = ids[-1][0] if len(ids) == limit else max(after_ordering, bound)
        return PersistenceIdPage(ids, len(self._ordered), scanned)

    async def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        """Plugin API: yield live events with `from <= sequence_nr <= to`, at most `max_count`.

        `from_sequence_nr = -1` yields only the last live event up to `to` (the JVM's
        replay-only-last).
        """
        log = self._logs.get(persistence_id)
        if log is None or max_count <= 0:
            return
        if from_sequence_nr == -1:
            end = bisect.bisect_right(log.sequence_nrs, to_sequence_nr)
            for index in range(end - 1, log.live_from - 1, -1):
                last = log.events[log.sequence_nrs[index]]
                if last is not None:
                    yield last
                    return
            return
        index = max(log.live_from, bisect.bisect_left(log.sequence_nrs, from_sequence_nr))
        count = 0
        while count < max_count and index < len(log.sequence_nrs):
            nr = log.sequence_nrs[index]
            if nr > to_sequence_nr:
                break
            event = log.events[nr]
            index += 1
            if event is not None:
                count += 1
                yield event

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Plugin API: the highest sequence number ever stored, deleted or not (0 if none)."""
        log = self._logs.get(persistence_id)
        return 0 if log is None else log.highest

    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Plugin API: delete events with `sequence_nr <= to_sequence_nr` (inclusive)."""
        log = self._logs.get(persistence_id)
        if log is not None:
            log.delete_to(to_sequence_nr)


def _conflict(write: AtomicWrite) -> SequenceConflictError:
    return SequenceConflictError(
        f"persistence id {write.persistence_id!r} already has sequence numbers in "
        f"{write.lowest_sequence_nr}..{write.highest_sequence_nr}"
    )


class InmemSnapshotStore(SnapshotStore):
    """Plugin API: a snapshot store kept in a dict; accepts no settings."""

    inline_first_step = True  # see Journal.inline_first_step: no task needed

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        check_settings(type(self).__name__, self.settings, ())
        self._snapshots: dict[str, dict[int, SelectedSnapshot]] = {}

    async def load(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> SelectedSnapshot | None:
        """Plugin API: the matching snapshot with the highest sequence number, or None."""
        if criteria.is_none:
            return None
        matching = [
            snapshot
            for snapshot in self._snapshots.get(persistence_id, {}).values()
            if criteria.matches(snapshot.metadata)
        ]
        return max(
            matching,
            key=lambda s: (s.metadata.sequence_nr, s.metadata.timestamp),
            default=None,
        )

    async def save(self, metadata: SnapshotMetadata, manifest: str, payload: bytes) -> None:
        """Plugin API: store a snapshot, replacing any at the same sequence number."""
        by_nr = self._snapshots.setdefault(metadata.persistence_id, {})
        by_nr[metadata.sequence_nr] = SelectedSnapshot(metadata, manifest, payload)

    async def delete(self, metadata: SnapshotMetadata) -> None:
        """Plugin API: delete the snapshot at `metadata.sequence_nr`.

        A non-zero `metadata.timestamp` only deletes a snapshot taken at or before it.
        """
        by_nr = self._snapshots.get(metadata.persistence_id, {})
        stored = by_nr.get(metadata.sequence_nr)
        if stored is not None and (
            metadata.timestamp == 0.0 or stored.metadata.timestamp <= metadata.timestamp
        ):
            del by_nr[metadata.sequence_nr]

    async def delete_by_criteria(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> None:
        """Plugin API: delete every snapshot of `persistence_id` matching `criteria`."""
        by_nr = self._snapshots.get(persistence_id, {})
        for nr in [nr for nr, s in by_nr.items() if criteria.matches(s.metadata)]:
            del by_nr[nr]
