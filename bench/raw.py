"""The physical limit: plain ``sqlite3`` + msgpack, no runtime at all.

One ``WITHOUT ROWID`` table keyed by (id, sequence_nr), WAL, synchronous=FULL, explicit
BEGIN/COMMIT, payloads packed inside the timed loop: the least any SQLite event store must do.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgpack

from bench.common import EVENTS, RAW, Workload, settle_gc

_SCHEMA = """CREATE TABLE journal (persistence_id TEXT, sequence_nr INTEGER, payload BLOB,
    PRIMARY KEY (persistence_id, sequence_nr)) WITHOUT ROWID"""
_INSERT = "INSERT INTO journal VALUES (?, ?, ?)"
_IDS = 100  # persistence ids the writes are spread over


def _connect(folder: Path) -> sqlite3.Connection:
    db = sqlite3.connect(folder / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(_SCHEMA)
    return db


def _payload(nr: int) -> bytes:
    packed: bytes = msgpack.packb({"t": "ItemAdded", "name": f"item-{nr:05d}", "ts": time.time()})
    return packed


def _write(rows_per_tx: int) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        db = _connect(folder)
        ids = ["cart-" + uuid.uuid4().hex for _ in range(_IDS)]
        per_id = EVENTS // _IDS
        try:
            settle_gc()
            start = time.perf_counter()
            for pid in ids:
                for first in range(1, per_id + 1, rows_per_tx):
                    rows = [(pid, nr, _payload(nr))
                            for nr in range(first, min(first + rows_per_tx, per_id + 1))]
                    db.execute("BEGIN")
                    db.executemany(_INSERT, rows)
                    db.execute("COMMIT")
            return time.perf_counter() - start
        finally:
            db.close()

    return run


def _setup_read(folder: Path) -> None:
    db = _connect(folder)
    try:
        db.execute("BEGIN")
        db.executemany(_INSERT, [("replayed", nr, _payload(nr)) for nr in range(1, EVENTS + 1)])
        db.executemany(_INSERT, [(f"other-{nr % 3}", nr, _payload(nr)) for nr in range(3000)])
        db.execute("COMMIT")
    finally:
        db.close()


def _read(folder: Path) -> float:
    db = sqlite3.connect(folder / "raw.db", isolation_level=None)
    try:
        settle_gc()
        start = time.perf_counter()
        rows = db.execute("SELECT payload FROM journal WHERE persistence_id = ? "
                          "ORDER BY sequence_nr", ("replayed",)).fetchall()
        decoded = [msgpack.unpackb(payload) for (payload,) in rows]
        elapsed = time.perf_counter() - start
    finally:
        db.close()
    if len(decoded) != EVENTS:
        raise RuntimeError(f"read {len(decoded)} rows back, expected {EVENTS}")
    return elapsed


def workloads() -> list[Workload]:
    """The raw rows, in table order."""
    return [
        Workload("raw_tx1", RAW, "raw: 1 row per transaction", EVENTS, _write(1)),
        Workload("raw_tx50", RAW, "raw: 50 rows per transaction", EVENTS, _write(50)),
        Workload("raw_read", RAW, "raw: read 10,000 rows back (select + unpackb)", EVENTS, _read,
                 setup=_setup_read, folder="raw_read"),
    ]
