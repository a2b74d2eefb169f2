"""Stored-data types of the plugin API: what a journal stores and hands back.

Plugins and the runtime both build on these; nothing here knows about actors or thespian.
"""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = ["MAX_SEQUENCE_NR", "AtomicWrite", "PersistentRepr"]

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
