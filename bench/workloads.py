"""The JournalPerfSpec workloads on persistent_actors: simple base, SQLite, synchronous=FULL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.actors import BenchActor, Driver, Run, event
from bench.common import EVENTS, OURS, Workload, settle_gc
from journal_plugins.sqlite import SqliteJournal, SqliteSnapshotStore
from persistent_actors import ActorSystem
from persistent_actors._serialization import default_serializer
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.snapshot import SnapshotMetadata

SNAPSHOT_HISTORY = 1_000_000  # events of the long-lived actor
SNAPSHOT_TAIL = 10  # events after its snapshot, and all the events of the short-lived one
_SETUP_BATCH = 20_000  # events per transaction when writing history through the plugin API
_ASK_TIMEOUT = 600.0


def _config(folder: Path) -> dict[str, Any]:
    sqlite = {"synchronous": "FULL", "journal_mode": "WAL"}
    return {
        "actor_system": {"base": "simple"},
        "persistence": {
            "journal": {"plugin": "sqlite", "path": str(folder / "journal.db"), **sqlite},
            "snapshot_store": {"plugin": "sqlite", "path": str(folder / "snapshots.db"),
                               **sqlite},
        },
    }


Config = Callable[[Path], dict[str, Any]]


def _persist(mode: str, actors: int, commands: int,
             config: Config = _config) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        with ActorSystem("bench", config(folder)) as system:
            refs = tuple(system.actor_of(BenchActor, f"bench-{i}", commands, name=f"bench-{i}")
                         for i in range(actors))
            for ref in refs:  # recovered (of nothing) before the clock starts
                if ref.ask("counter", timeout=_ASK_TIMEOUT) != 0:
                    raise RuntimeError("bench actor did not start empty")
            driver = system.actor_of(Driver, name="driver")
            settle_gc()
            start = time.perf_counter()
            reply = driver.ask(Run(refs, mode, commands), timeout=_ASK_TIMEOUT)
            elapsed = time.perf_counter() - start
            if reply != "done":
                raise RuntimeError(f"driver answered {reply!r}")
            for ref in refs:
                if ref.ask("counter", timeout=_ASK_TIMEOUT) != commands:
                    raise RuntimeError("an actor lost events")
        return elapsed

    return run


async def _write_history(folder: Path, pid: str, count: int, snapshot_at: int | None) -> None:
    """Write `count` events of `pid` straight through the plugin API, in big transactions."""
    journal = SqliteJournal({"path": str(folder / "journal.db"), "synchronous": "FULL"})
    await journal.start()
    try:
        now = time.time()
        for first in range(1, count + 1, _SETUP_BATCH):
            reprs = []
            for nr in range(first, min(first + _SETUP_BATCH, count + 1)):
                manifest, payload = default_serializer.to_binary(event(nr))
                reprs.append(PersistentRepr(pid, nr, manifest, payload, "bench-setup", now))
            results = await journal.write_messages([AtomicWrite(tuple(reprs))])
            if any(results):
                raise RuntimeError(f"set-up write failed: {results}")
    finally:
        await journal.close()
    if snapshot_at is not None:
        store = SqliteSnapshotStore({"path": str(folder / "snapshots.db"), "synchronous": "FULL"})
        await store.start()
        try:
            manifest, payload = default_serializer.to_binary(snapshot_at)
            await store.save(SnapshotMetadata(pid, snapshot_at, now), manifest, payload)
        finally:
            await store.close()


def _recover(pid: str, expected: int, config: Config = _config) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        with ActorSystem("bench", config(folder)) as system:
            settle_gc()
            start = time.perf_counter()
            ref = system.actor_of(BenchActor, pid, 0, name="recovering")
            counter = ref.ask("counter", timeout=_ASK_TIMEOUT)  # stashed until recovered
            elapsed = time.perf_counter() - start
        if counter != expected:
            raise RuntimeError(f"{pid} recovered to {counter}, expected {expected}")
        return elapsed

    return run


# For the same workloads on other plugins (bench/postgres.py), with their own config.
persist_workload = _persist
recover_workload = _recover


def _setup_recovering(folder: Path) -> None:
    asyncio.run(_write_history(folder, "recover-10k", EVENTS, None))


def _setup_snapshots(folder: Path) -> None:
    snapshot_at = SNAPSHOT_HISTORY - SNAPSHOT_TAIL
    asyncio.run(_write_history(folder, "history-1m", SNAPSHOT_HISTORY, snapshot_at))
    asyncio.run(_write_history(folder, "history-10", SNAPSHOT_TAIL, None))


def workloads() -> list[Workload]:
    """Our rows, in table order."""
    rows = [
        Workload("persist", OURS, "persist: 1 actor, 1 event per command", EVENTS,
                 _persist("p", 1, EVENTS)),
        Workload("persist_all", OURS, "persist_all: 1 actor, batches of 50", EVENTS,
                 _persist("pb", 1, EVENTS)),
        Workload("persist_async", OURS, "persist_async: 1 actor", EVENTS,
                 _persist("pa", 1, EVENTS)),
        Workload("persist_all_async", OURS, "persist_all_async: 1 actor, batches of 50",
                 EVENTS, _persist("pba", 1, EVENTS)),
        Workload("persist_group10", OURS, "persist_group: 10 actors x 1,000 persists", EVENTS,
                 _persist("p", 10, EVENTS // 10)),
        Workload("persist_group100", OURS, "persist_group: 100 actors x 100 persists", EVENTS,
                 _persist("p", 100, EVENTS // 100)),
        Workload("recovering", OURS, "recovering: fresh actor replays 10,000 events", EVENTS,
                 _recover("recover-10k", EVENTS), setup=_setup_recovering, folder="recovering"),
    ]
    # Both snapshot rows read one database, so the 10-event actor sees the same file and index
    # depth as the 1M-event one.
    rows += [
        Workload("snapshot_1m", OURS,
                 f"snapshot recovery: {SNAPSHOT_HISTORY:,} events, snapshot at "
                 f"{SNAPSHOT_HISTORY - SNAPSHOT_TAIL:,}", SNAPSHOT_HISTORY,
                 _recover("history-1m", SNAPSHOT_HISTORY), setup=_setup_snapshots,
                 folder="snapshots",
                 unit="ms"),
        Workload("snapshot_10", OURS, f"recovery of an actor with {SNAPSHOT_TAIL} events",
                 SNAPSHOT_TAIL, _recover("history-10", SNAPSHOT_TAIL), setup=_setup_snapshots,
                 folder="snapshots", unit="ms"),
    ]
    return rows
