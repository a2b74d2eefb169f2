"""`Recovery`: how a persistent actor is rebuilt when it starts (Akka's Recovery)."""

from __future__ import annotations

import dataclasses

from persistent_actors.journal import MAX_SEQUENCE_NR
from persistent_actors.snapshot import SnapshotSelectionCriteria

__all__ = ["Recovery"]


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    """Which snapshot to start from, and how far and how many events to replay.

    `Recovery()` loads the latest snapshot and replays everything after it.
    `Recovery(from_snapshot=SnapshotSelectionCriteria.none())` ignores snapshots and replays all
    events. `Recovery.none()` replays nothing but still learns the highest sequence number, so
    new events continue after the stored ones.
    """

    from_snapshot: SnapshotSelectionCriteria = dataclasses.field(
        default_factory=SnapshotSelectionCriteria.latest
    )
    to_sequence_nr: int = MAX_SEQUENCE_NR
    replay_max: int = MAX_SEQUENCE_NR

    def __post_init__(self) -> None:
        if not isinstance(self.from_snapshot, SnapshotSelectionCriteria):
            raise TypeError(
                "Recovery.from_snapshot must be a SnapshotSelectionCriteria, "
                f"got {type(self.from_snapshot).__name__}"
            )
        for name in ("to_sequence_nr", "replay_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or \
                    not 0 <= value <= MAX_SEQUENCE_NR:
                raise ValueError(f"Recovery.{name} must be an int in [0, MAX_SEQUENCE_NR = "
                                 f"2**63-1], got {value!r}")

    @classmethod
    def none(cls) -> Recovery:
        """No snapshot and no events; only the highest sequence number is read."""
        return cls(from_snapshot=SnapshotSelectionCriteria.none(), to_sequence_nr=0)
