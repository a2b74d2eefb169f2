"""What every benchmark module shares: the workload size and the result record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

EVENTS = 10_000  # JournalPerfSpec's EventsCount

# Groups of rows, in table order.
OURS = "persistent_actors"
RAW = "raw sqlite3+msgpack"
PEER = "eventsourcing"


@dataclasses.dataclass
class Workload:
    """One row of the table: `run(folder)` performs it once and returns the seconds it took.

    Each round gets a fresh empty folder, unless `folder` names a set-up folder: then
    `setup(folder)` runs once (not timed) and every round, and every workload naming the same
    folder, reuses it.
    """

    key: str
    group: str
    label: str
    events: int
    run: Callable[[Path], float]
    setup: Callable[[Path], None] | None = None
    folder: str | None = None
    unit: str = "events/s"  # or "ms" for rows reported as a time
    notes: str = ""
    samples: list[float] = dataclasses.field(default_factory=list)
    # Per-request seconds over every round (service rows), reported as p50/p99.
    latencies: list[float] = dataclasses.field(default_factory=list)
