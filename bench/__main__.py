"""``python -m bench``: run every workload for several interleaved rounds and report medians.

Each round of each row runs in a fresh child process (`bench.isolated`) unless ``--in-process``.

Writes ``results.json``, ``results.md`` (the table) and ``chart.png`` (if matplotlib is
installed) to ``--out``; prints the table. Databases go to a temporary folder on the same disk.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cluster, entities, peer, postgres, raw, report, service, workloads
from bench.common import Workload
from bench.isolated import run_isolated


def _fsync_latency(folder: Path) -> float:
    """Median seconds of a 512-byte write + fsync: what bounds every synchronous=FULL commit."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            os.pwrite(fd, b"x" * 512, 0)
            os.fsync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _machine(folder: Path) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "thespian": _version("thespian"),
        "aiosqlite": _version("aiosqlite"),
        "msgpack": _version("msgpack"),
        "eventsourcing": _version("eventsourcing"),
        "asyncpg": _version("asyncpg"),
        "psycopg": _version("psycopg"),
        "fsync_latency_us": round(_fsync_latency(folder) * 1e6, 1),
    }


def _run_in_process(w: Workload, folder: Path) -> float:
    return w.run(folder)


def _select(rows: list[Workload], only: str | None) -> list[Workload]:
    if not only:
        return rows
    keys = set(only.split(","))
    unknown = keys - {w.key for w in rows}
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return [w for w in rows if w.key in keys]


def main(argv: list[str]) -> int:
    """Run the suite; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    # No warm-up round by default: it would cost a sixth of the 10-minute budget, and the
    # median of five already discards a cold first round.
    parser.add_argument("--warmup", type=int, default=0, help="untimed rounds first (default 0)")
    parser.add_argument("--out", type=Path, default=Path("bench_results"),
                        help="folder for results.json, results.md, chart.png")
    parser.add_argument("--only", help="comma-separated workload keys (default: all)")
    parser.add_argument("--in-process", action="store_true",
                        help="run every round in this process (default: each (row, round) in a "
                             "fresh child process, see bench/isolated.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # The bench opens and closes many actor systems; their start-up warnings are noise here.
    logging.getLogger("persistent_actors").setLevel(logging.ERROR)

    pg_rows = postgres.rows()
    rows = _select(workloads.workloads() + service.workloads() + entities.workloads()
                   + raw.workloads()
                   + peer.workloads() + pg_rows + cluster.workloads(), args.only)
    if not peer.available():
        print("eventsourcing is not installed: its rows are skipped "
              "(pip install -e '.[bench]')", file=sys.stderr)
    if not pg_rows:
        print(f"PostgreSQL is not reachable at {postgres.DSN}: its rows are skipped "
              "(set PERSISTENT_ACTORS_PG_DSN)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="persistent-actors-bench-") as tmp:
        root = Path(tmp)
        machine = _machine(root)
        setup_seconds: dict[str, float] = {}
        folders: dict[str, Path] = {}
        for w in rows:
            if w.folder is not None and w.folder not in folders:
                folder = folders[w.folder] = root / w.folder
                folder.mkdir()
                if w.setup is not None:
                    print(f"setting up {w.folder} ...", file=sys.stderr, flush=True)
                    start = time.perf_counter()
                    w.setup(folder)
                    setup_seconds[w.folder] = time.perf_counter() - start
        total = args.warmup + args.rounds
        run = _run_in_process if args.in_process else run_isolated
        for round_nr in range(total):
            timed = round_nr >= args.warmup
            label = f"round {round_nr - args.warmup + 1}/{args.rounds}" if timed else "warm-up"
            print(f"{label} ...", file=sys.stderr, flush=True)
            for w in rows:
                if w.folder is not None:
                    seconds = run(w, folders[w.folder])
                else:
                    folder = root / f"{w.key}-{round_nr}"
                    folder.mkdir()
                    try:
                        seconds = run(w, folder)
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                if timed:
                    w.samples.append(seconds)
    summary = report.summarize(rows)
    text = report.table(summary)
    elapsed = time.perf_counter() - started
    result = {
        "machine": machine,
        "settings": {"rounds": args.rounds, "warmup": args.warmup, "base": "simple",
                     "isolated": not args.in_process,
                     "sqlite": {"journal_mode": "WAL", "synchronous": "FULL"},
                     "setup_seconds": setup_seconds, "total_seconds": elapsed},
        "rows": summary,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(text + "\n")
    print(text)
    print(f"\n{args.rounds} rounds (+{args.warmup} warm-up), medians; fsync "
          f"{machine['fsync_latency_us']} us; {elapsed:.0f} s in all; "
          f"results in {args.out}/", file=sys.stderr)
    try:
        title = (f"persistent_actors bench, {machine['date'][:10]}, {machine['cpus']} CPUs, "
                 f"Python {machine['python']}, SQLite {machine['sqlite']} (WAL, FULL)")
        report.chart(summary, args.out / "chart.png", title)
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
