"""What every benchmark module shares: the workload size and the result record."""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from pathlib import Path

EVENTS = 10_000  # JournalPerfSpec's EventsCount


def settle_gc() -> None:
    """A full collection of the cyclic GC: call it after a row's set-up, just before its clock.

    Set-up (a system's start, its actors, connections) leaves a full collection due, and
    without this it lands in whichever timed window allocates next: a ``persist_async`` round
    paid about 2 us per event for it (one 20-25 ms collection) in some rounds and not in
    others. Collections the timed work itself causes still count. Every SQLite row calls it,
    the raw and peer rows too (bench/service.py does the same for the service rows).
    """
    global _settle_cpu  # noqa: PLW0603 - a process-wide tally, read by bench.write_breakdown
    cpu = time.process_time()
    gc.collect()
    _settle_cpu += time.process_time() - cpu


_settle_cpu = 0.0


def settle_cpu() -> float:
    """Process CPU seconds `settle_gc` has spent so far (to leave out of a CPU measurement)."""
    return _settle_cpu


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
