"""Crash torture: kill a writer with SIGKILL at random moments, check the journal.

After every cycle: every event the writer reported (its handler ran) is stored; no atomic
write is half present; sequence numbers per id run 1..n with no gap and no duplicate; the
store is intact (SQLite: ``PRAGMA integrity_check``; PostgreSQL: a full scan finds no
duplicate key). ``python -m tests.crash_torture CYCLES [WORKDIR] [postgres:SCHEMA]``
(``make torture``) prints the totals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import msgpack

from tests.pg import DSN as PG_DSN

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Totals:
    """What the torture found, summed over cycles."""

    cycles: int = 0
    acknowledged: int = 0
    stored: int = 0
    lost: int = 0
    torn: int = 0
    gaps: int = 0
    integrity_errors: int = 0

    def __str__(self) -> str:
        return (f"cycles={self.cycles} events_acknowledged={self.acknowledged} "
                f"events_stored={self.stored} events_lost={self.lost} torn_writes={self.torn} "
                f"sequence_gaps={self.gaps} integrity_errors={self.integrity_errors}")


def run_cycle(db: Path, report: Path, actors: int, rng: random.Random,
              store: str | None = None) -> None:
    """Start the writer, let it persist, SIGKILL it at a random moment after it started.

    The writer stores into `store` (``postgres:<schema>``) if given, else into the file `db`;
    its log goes next to `db` either way.
    """
    log = db.with_suffix(".log")
    starts_before = log.read_bytes().count(b"started") if log.exists() else 0
    with log.open("ab") as out:
        proc = subprocess.Popen(  # the writer is our own module, run by our own interpreter
            [sys.executable, "-m", "tests.torture_writer", store or str(db), str(report),
             str(actors)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while log.read_bytes().count(b"started") <= starts_before:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"writer failed to start:\n{log.read_text(errors='replace')}")
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.6))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _postgres_rows(schema: str) -> tuple[list[Any], bool]:
    """The live events of `schema`'s journal, and whether a full scan found no duplicate key."""

    async def read() -> tuple[list[Any], bool]:
        connection = await asyncpg.connect(PG_DSN)
        try:
            journal = f'"{schema}".journal'
            rows = await connection.fetch(
                f"SELECT persistence_id, sequence_nr, payload FROM {journal} WHERE NOT deleted")
            # Counted by a scan of the table, not through the primary-key index it checks.
            await connection.execute("SET enable_indexscan = off; SET enable_bitmapscan = off;"
                                     " SET enable_indexonlyscan = off")
            intact = await connection.fetchval(
                f"SELECT count(*) = count(DISTINCT (persistence_id, sequence_nr)) FROM {journal}")
            return list(rows), bool(intact)
        finally:
            await connection.close()

    return asyncio.run(read())


def check(db: Path, report: Path, totals: Totals, store: str | None = None) -> None:
    """Compare what was acknowledged with what is stored; add the findings to `totals`."""
    acknowledged: set[tuple[str, int]] = set()
    if report.exists():
        for line in report.read_text().splitlines():
            pid, seq = line.rsplit(" ", 1)
            acknowledged.add((pid, int(seq)))
    if store is not None:
        rows, intact = _postgres_rows(store.removeprefix("postgres:"))
        totals.integrity_errors += not intact
    else:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                totals.integrity_errors += 1
            rows = conn.execute(
                "SELECT persistence_id, sequence_nr, payload FROM journal WHERE deleted = 0"
            ).fetchall()
    stored: dict[str, list[int]] = defaultdict(list)
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for pid, seq, payload in rows:
        stored[pid].append(seq)
        event = msgpack.unpackb(payload)
        groups[(pid, event["g"])].append(event["n"])
    for seqs in stored.values():
        seqs.sort()
        if seqs != list(range(1, len(seqs) + 1)):
            totals.gaps += 1
    totals.torn += sum(1 for sizes in groups.values() if len(sizes) != sizes[0])
    stored_set = {(pid, seq) for pid, seqs in stored.items() for seq in seqs}
    totals.acknowledged = len(acknowledged)
    totals.stored = len(stored_set)
    totals.lost = len(acknowledged - stored_set)
    totals.cycles += 1


def torture(workdir: Path, cycles: int, actors: int = 4, seed: int | None = None,
            verbose: bool = False, store: str | None = None) -> Totals:
    """Run `cycles` kill/restart cycles in `workdir`; return the totals.

    `store` (``postgres:<schema>``) puts the journal on PostgreSQL, else it is a file there.
    """
    rng = random.Random(seed)
    db, report = workdir / "torture.db", workdir / "acknowledged.txt"
    totals = Totals()
    for n in range(cycles):
        run_cycle(db, report, actors, rng, store)
        check(db, report, totals, store)
        if verbose and (n + 1) % 10 == 0:
            print(totals, flush=True)
    return totals


def main(argv: list[str]) -> int:
    """CLI: ``python -m tests.crash_torture [CYCLES] [WORKDIR] [postgres:SCHEMA]``."""
    import tempfile  # noqa: PLC0415 - only the CLI needs it

    cycles = int(argv[1]) if len(argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(argv[2]) if len(argv) > 2 else Path(tmp)
        # The README's long run names a fresh folder (/tmp/torture): make it, as the journal does.
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        store = argv[3] if len(argv) > 3 else None
        totals = torture(workdir, cycles, verbose=True, store=store)
        print(f"TOTAL {totals} elapsed_s={time.monotonic() - started:.0f}")
    failed = totals.lost or totals.torn or totals.gaps or totals.integrity_errors
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
