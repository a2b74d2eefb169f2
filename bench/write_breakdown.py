"""``python -m bench.write_breakdown [ROUNDS] [--only A,B]``: where a write's time goes, by layer.

Each layer runs alone, all of them in interleaved rounds in one process, and the table gives
wall-clock and process CPU microseconds per event (best and median of the rounds; CPU time
is steadier than wall time on a shared machine). Issue 16's targets compare the batched rows
with ``raw_tx50`` and ``persist`` with ``raw_tx1``; this shows which part of each difference
is SQLite and which the runtime.

* ``raw_tx50``: the bench's raw row (3-column table, ``msgpack.packb``, 50 rows per transaction).
* ``journal_sql``: the SQLite journal's own statements on its own schema with no Python layer:
  the per-batch query of deleted sequence numbers and one ``executemany`` of 50 prepared rows
  per ``BEGIN IMMEDIATE``..``COMMIT``.
* ``journal_api``: ``SqliteJournal.write_messages`` with AtomicWrites of 50, run inline as the
  plugin host runs it (``may_block``); events built and serialized in the loop.
* ``command_hop``: a driver actor tells a plain actor 10,000 commands (no persistence): the
  message every command of the persist rows costs.
* ``inmem_pb``, ``inmem_pa``, ``inmem_pba``: the persist_all, persist_async and
  persist_all_async rows on the in-memory journal: the runtime without SQLite.
* ``pb``, ``pa``, ``pba``: the same rows on SQLite (WAL, ``synchronous=FULL``), as in the table.

The one-event-per-transaction layers, for ``persist`` against ``raw_tx1``:

* ``flush_page``: one ``pwrite`` of a 4 KiB page and one ``fdatasync`` per event, no database.
* ``raw_tx1``: the bench's raw row with one row per transaction.
* ``journal_sql_1``, ``journal_api_1``: ``journal_sql`` and ``journal_api`` with one event per
  transaction.
* ``inmem_p``, ``p``: the ``persist`` row on the in-memory journal and on SQLite.
* ``inmem_p_fsync``: the ``persist`` row on the in-memory journal that also writes one 4 KiB
  page to a file and ``fdatasync``s it per write (`FsyncInmemJournal`): the runtime's cost when
  every event waits for a disk flush, without SQLite. Its excess over ``inmem_p`` plus a bare
  page flush is what the wait itself costs the runtime's code (the thread sleeps, the CPU goes
  to other work, the code and data of the next steps are no longer in the caches).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import raw
from bench.actors import BenchActor, Cmd, Driver, Finished, Run, event
from bench.common import EVENTS, settle_cpu, settle_gc
from bench.workloads import _config as sqlite_config
from journal_plugins._sqlite_db import _JOURNAL_SCHEMA
from journal_plugins.inmem import InmemJournal
from journal_plugins.sqlite import _DELETED_UP_TO, _INSERT_EVENT, SqliteJournal
from persistent_actors import Actor, ActorSystem
from persistent_actors._serialization import default_serializer
from persistent_actors.journal import MAY_BLOCK, AtomicWrite, PersistentRepr

_BATCH = 50
Timing = tuple[float, float]  # wall seconds, process CPU seconds


def _timed(run: Callable[[], object]) -> Timing:
    settle_gc()
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _inmem_config(folder: Path) -> dict[str, Any]:
    del folder
    return {"actor_system": {"base": "simple"},
            "persistence": {"journal": {"plugin": "inmem"}, "snapshot_store": {"plugin": "inmem"}}}


class FsyncInmemJournal(InmemJournal):
    """The in-memory journal that also flushes one 4 KiB page to `path` per `write_messages`.

    A bench stand-in for a durable journal without a database: each write costs the runtime
    one ``pwrite`` and one ``fdatasync``, as an SQLite commit in WAL mode does.
    """

    _PAGE = b"\0" * 4096

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        settings = dict(settings or {})
        self._path = Path(settings.pop("path"))
        super().__init__(settings)
        self._fd: int | None = None

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: flush one page to disk, then store the writes in memory."""
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self._fd, self._PAGE, 0)
        os.fdatasync(self._fd)
        return await super().write_messages(writes)

    async def close(self) -> None:
        """Plugin API: close the file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _flush_page(folder: Path) -> Timing:
    fd = os.open(folder / "flush", os.O_RDWR | os.O_CREAT, 0o600)
    page = FsyncInmemJournal._PAGE  # noqa: SLF001 - the same page

    def flush() -> None:
        for _ in range(EVENTS):
            os.pwrite(fd, page, 0)
            os.fdatasync(fd)

    try:
        return _timed(flush)
    finally:
        os.close(fd)


def _fsync_inmem_config(folder: Path) -> dict[str, Any]:
    journal = {"plugin": "bench.write_breakdown:FsyncInmemJournal", "path": str(folder / "flush")}
    return {"actor_system": {"base": "simple"},
            "persistence": {"journal": journal, "snapshot_store": {"plugin": "inmem"}}}


class _Counter(Actor):
    """Counts commands and answers the one numbered `report_at`, like `BenchActor`, unpersisted."""

    def __init__(self, report_at: int) -> None:
        self.report_at = report_at
        self.count = 0

    def on_receive(self, message: Any) -> None:
        match message:
            case Cmd(_, nr):
                self.count += 1
                if nr == self.report_at:
                    self.sender.tell(Finished(self.count))
            case "ready":
                self.sender.tell(True)
            case _:
                self.unhandled(message)


def _drive(config: dict[str, Any], actor: type[Actor], args: tuple[Any, ...], mode: str) -> Timing:
    with ActorSystem("breakdown", config) as system:
        target = system.actor_of(actor, *args, name="target")
        target.ask("ready" if actor is _Counter else "counter", timeout=60)
        driver = system.actor_of(Driver, name="driver")
        timing = _timed(lambda: driver.ask(Run((target,), mode, EVENTS), timeout=600))
        if actor is BenchActor and target.ask("counter", timeout=60) != EVENTS:
            raise RuntimeError("the bench actor lost events")
    return timing


def _row(mode: str, config: Callable[[Path], dict[str, Any]]) -> Callable[[Path], Timing]:
    return lambda folder: _drive(config(folder), BenchActor, ("breakdown", EVENTS), mode)


def _command_hop(folder: Path) -> Timing:
    return _drive(_inmem_config(folder), _Counter, (EVENTS,), "x")


def _journal_sql(folder: Path, batch: int = _BATCH) -> Timing:
    db = sqlite3.connect(folder / "journal.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        for statement in _JOURNAL_SCHEMA:
            db.execute(statement)
        manifest, payload = default_serializer.to_binary(event(1))
        now, writer = time.time(), "0123456789abcdef0123456789abcdef"
        batches = [[("breakdown", first + i, manifest, payload, writer, now)
                    for i in range(batch)] for first in range(1, EVENTS + 1, batch)]
        deleted = _DELETED_UP_TO.format(marks="?")

        def write() -> None:
            for rows in batches:
                db.execute("BEGIN IMMEDIATE")
                db.execute(deleted, ["breakdown"]).fetchall()
                db.executemany(_INSERT_EVENT, rows)
                db.execute("COMMIT")

        return _timed(write)
    finally:
        db.close()


def _journal_api(folder: Path, batch: int = _BATCH) -> Timing:
    async def run() -> Timing:
        MAY_BLOCK.set(True)  # inline, as the plugin host runs it
        journal = SqliteJournal({"path": str(folder / "journal.db"), "synchronous": "FULL"})
        await journal.start()
        try:
            settle_gc()
            cpu, wall = time.process_time(), time.perf_counter()
            for first in range(1, EVENTS + 1, batch):
                now, reprs = time.time(), []
                for nr in range(first, first + batch):
                    manifest, payload = default_serializer.to_binary(event(nr))
                    reprs.append(PersistentRepr("breakdown", nr, manifest, payload, "w", now))
                if any(await journal.write_messages([AtomicWrite(tuple(reprs))])):
                    raise RuntimeError("a write was rejected")
            return time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await journal.close()

    return asyncio.run(run())


def _raw(key: str) -> Callable[[Path], Timing]:
    row = next(w for w in raw.workloads() if w.key == key)

    def run(folder: Path) -> Timing:
        cpu, settling = time.process_time(), settle_cpu()
        wall = row.run(folder)
        # CPU includes the connect (negligible), not the row's own settle_gc before its clock.
        return wall, time.process_time() - cpu - (settle_cpu() - settling)

    return run


LAYERS: dict[str, Callable[[Path], Timing]] = {
    "raw_tx50": _raw("raw_tx50"),
    "journal_sql": _journal_sql,
    "journal_api": _journal_api,
    "command_hop": _command_hop,
    "inmem_pb": _row("pb", _inmem_config),
    "pb": _row("pb", sqlite_config),
    "inmem_pa": _row("pa", _inmem_config),
    "pa": _row("pa", sqlite_config),
    "inmem_pba": _row("pba", _inmem_config),
    "pba": _row("pba", sqlite_config),
    "flush_page": _flush_page,
    "raw_tx1": _raw("raw_tx1"),
    "journal_sql_1": lambda folder: _journal_sql(folder, 1),
    "journal_api_1": lambda folder: _journal_api(folder, 1),
    "inmem_p": _row("p", _inmem_config),
    "inmem_p_fsync": _row("p", _fsync_inmem_config),
    "p": _row("p", sqlite_config),
}


def main(argv: list[str]) -> int:
    """Run every layer in ROUNDS (default 5) interleaved rounds; print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.write_breakdown",
                                     description=__doc__)
    parser.add_argument("rounds", nargs="?", type=int, default=5,
                        help="interleaved rounds (default 5)")
    parser.add_argument("--only", help=f"comma-separated layers (default all: {', '.join(LAYERS)})")
    args = parser.parse_args(argv)
    rounds: int = args.rounds
    if rounds < 1:
        parser.error(f"ROUNDS must be at least 1, got {rounds}")
    names = list(LAYERS) if args.only is None else args.only.split(",")
    unknown = [name for name in names if name not in LAYERS]
    if unknown:
        parser.error(f"unknown layers {unknown}; one of: {', '.join(LAYERS)}")
    timings: dict[str, list[Timing]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            with tempfile.TemporaryDirectory(prefix="persistent-actors-breakdown-") as tmp:
                timings[name].append(LAYERS[name](Path(tmp)))
    print(f"{rounds} rounds, us per event: wall best / median, CPU best / median")
    for name, samples in timings.items():
        wall = [w / EVENTS * 1e6 for w, _ in samples]
        cpu = [c / EVENTS * 1e6 for _, c in samples]
        print(f"{name:12s} {min(wall):7.2f} {statistics.median(wall):7.2f}   "
              f"{min(cpu):7.2f} {statistics.median(cpu):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
