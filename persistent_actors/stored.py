"""Stored-data types of the plugin API: what a journal stores and hands back.

Plugins and the runtime both build on these; nothing here knows about actors or thespian.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

from persistent_actors._compact_pickle import compact_all

__all__ = ["MAX_SEQUENCE_NR", "AtomicWrite", "PersistentRepr", "ReplayedRows", "unstorable"]


def unstorable(text: str) -> str | None:
    r"""Why no journal can store `text` (an id, a tag, a manifest), or None if every one can.

    A lone surrogate (``"x\udc80"``, which a JSON body can carry) is not UTF-8; a NUL
    character is refused by PostgreSQL's text columns. Refused the same way on every plugin,
    so an application does not work on SQLite and fail on PostgreSQL.
    """
    if "\x00" in text:
        return "it holds a NUL character (\\x00), which PostgreSQL cannot store"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as e:
            return f"not valid UTF-8 text ({e.reason})"
    return None

# Largest sequence number; also what "no upper bound" means (fits SQLite's signed 64-bit INTEGER).
MAX_SEQUENCE_NR: Final = 2**63 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class PersistentRepr:
    """One stored event: its identity, its serialized payload and the tags a write adapter gave it.

    `timestamp` is seconds since the epoch (UTC) when the event was persisted.
    """

    persistence_id: str
    sequence_nr: int
    manifest: str
    payload: bytes
    writer_uuid: str = ""
    timestamp: float = 0.0
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class AtomicWrite:
    """Events that are stored all together or not at all (one `persist` or `persist_all` call).

    All events share one persistence id and have consecutive sequence numbers.
    """

    payload: tuple[PersistentRepr, ...]

    def __post_init__(self) -> None:
        if not self.payload:
            raise ValueError("AtomicWrite needs at least one event")
        pid = self.payload[0].persistence_id
        first = self.payload[0].sequence_nr
        for i, repr_ in enumerate(self.payload):
            if repr_.persistence_id != pid:
                raise ValueError(
                    f"AtomicWrite mixes persistence ids {pid!r} and {repr_.persistence_id!r}"
                )
            if repr_.sequence_nr != first + i:
                raise ValueError("AtomicWrite sequence numbers must be consecutive")

    @property
    def persistence_id(self) -> str:
        """The persistence id shared by every event of the write."""
        return self.payload[0].persistence_id

    @property
    def lowest_sequence_nr(self) -> int:
        """Sequence number of the first event."""
        return self.payload[0].sequence_nr

    @property
    def highest_sequence_nr(self) -> int:
        """Sequence number of the last event."""
        return self.payload[-1].sequence_nr


@dataclasses.dataclass(frozen=True, slots=True)
class ReplayedRows:
    """Consecutive replayed events of one persistence id, as columns (`Journal.replay_rows`).

    Entry ``i`` of each column belongs to the same event; the events are in sequence order.
    It carries what recovery needs and no more (no persistence id, timestamps or tags), so a
    plugin builds no object per event: the columns may be the lists a database driver returns.
    """

    sequence_nrs: Sequence[int]
    manifests: Sequence[str]
    payloads: Sequence[bytes]
    writer_uuids: Sequence[str]

    def __post_init__(self) -> None:
        n = len(self.sequence_nrs)
        if not len(self.manifests) == len(self.payloads) == len(self.writer_uuids) == n:
            raise ValueError("ReplayedRows columns must have the same length")

    def __len__(self) -> int:
        """The number of events."""
        return len(self.sequence_nrs)

    @classmethod
    def of(cls, reprs: Sequence[PersistentRepr]) -> ReplayedRows:
        """The columns of `reprs` (their persistence ids, timestamps and tags are dropped)."""
        return cls([r.sequence_nr for r in reprs], [r.manifest for r in reprs],
                   [r.payload for r in reprs], [r.writer_uuid for r in reprs])

    @classmethod
    def from_tuples(cls, rows: Sequence[tuple[int, str, bytes, str]]) -> ReplayedRows:
        """Columns from ``(sequence_nr, manifest, payload, writer_uuid)`` rows (a DB result)."""
        if not rows:
            return cls((), (), (), ())
        nrs, manifests, payloads, writers = zip(*rows, strict=True)
        return cls(nrs, manifests, payloads, writers)

    def slice(self, start: int, stop: int | None = None) -> ReplayedRows:
        """The events ``start:stop``, as new columns."""
        return ReplayedRows(self.sequence_nrs[start:stop], self.manifests[start:stop],
                            self.payloads[start:stop], self.writer_uuids[start:stop])

    def concat(self, after: ReplayedRows) -> ReplayedRows:
        """These events, then those of `after`, as new columns."""
        return ReplayedRows([*self.sequence_nrs, *after.sequence_nrs],
                            [*self.manifests, *after.manifests],
                            [*self.payloads, *after.payloads],
                            [*self.writer_uuids, *after.writer_uuids])

    def reprs(self, persistence_id: str) -> list[PersistentRepr]:
        """One `PersistentRepr` per event (timestamp 0, no tags): for the slow paths."""
        return [PersistentRepr(persistence_id, nr, manifest, payload, writer)
                for nr, manifest, payload, writer in zip(
                    self.sequence_nrs, self.manifests, self.payloads, self.writer_uuids,
                    strict=True)]


# Writes and events cross processes on multiproc-tcp: pickle them as (class, field values).
compact_all(globals())
