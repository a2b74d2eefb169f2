"""The PostgreSQL rows: our plugin, asyncpg alone (the limit), and eventsourcing's recorder.

All three use the server named by ``PERSISTENT_ACTORS_PG_DSN`` (default: the machine's own,
``postgresql://127.0.0.1:5432/test``), each round in a schema of its own, dropped after.
Our rows are the JournalPerfSpec workloads of `bench.workloads` on ``plugin = "postgres"``;
the raw rows are asyncpg with the Akka-style table (identity ordering, primary key (id, nr));
the peer rows are the `bench.peer` workloads on the eventsourcing library's PostgreSQL
recorder (``eventsourcing.postgres``, psycopg 3; its application recorder takes a table lock
per insert, as our plugin takes an advisory lock). Rows are skipped when the server is not
reachable.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import hashlib
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import asyncpg
import msgpack

from bench import peer, workloads
from bench.actors import event
from bench.common import EVENTS, Workload
from journal_plugins.postgres import PostgresJournal
from persistent_actors._serialization import default_serializer
from persistent_actors.journal import AtomicWrite, PersistentRepr

DSN: Final = os.environ.get("PERSISTENT_ACTORS_PG_DSN", "postgresql://127.0.0.1:5432/test")

OURS_PG: Final = "persistent_actors (PostgreSQL)"
RAW_PG: Final = "raw asyncpg+msgpack"
PEER_PG: Final = "eventsourcing (PostgreSQL)"

_IDS = 100  # persistence ids the raw writes are spread over
_SETUP_BATCH = 20_000
_created: set[str] = set()


def _schema(folder: Path) -> str:
    digest = hashlib.sha1(str(folder).encode(), usedforsecurity=False).hexdigest()[:16]
    name = f"pa_bench_{digest}"
    _created.add(name)
    return name


async def _drop(schemas: list[str]) -> None:
    connection = await asyncpg.connect(DSN)
    try:
        for schema in schemas:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def _drop_all() -> None:
    if _created:
        asyncio.run(_drop(sorted(_created)))
        _created.clear()


atexit.register(_drop_all)


def _dropping(run: Callable[[Path], float]) -> Callable[[Path], float]:
    """`run`, then drop the round's schema (rows without a set-up folder)."""

    def wrapped(folder: Path) -> float:
        try:
            return run(folder)
        finally:
            schema = _schema(folder)
            asyncio.run(_drop([schema]))
            _created.discard(schema)

    return wrapped


def available() -> bool:
    """True if the server answers."""

    async def probe() -> None:
        connection = await asyncpg.connect(DSN, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True


# -- ours ------------------------------------------------------------------------------------


def _config(folder: Path) -> dict[str, Any]:
    plugin = {"plugin": "postgres", "dsn": DSN, "schema": _schema(folder)}
    return {"actor_system": {"base": "simple"},
            "persistence": {"journal": plugin, "snapshot_store": plugin}}


async def _write_history(folder: Path, pid: str, count: int) -> None:
    journal = PostgresJournal({"dsn": DSN, "schema": _schema(folder)})
    await journal.start()
    try:
        now = time.time()
        for first in range(1, count + 1, _SETUP_BATCH):
            reprs = []
            for nr in range(first, min(first + _SETUP_BATCH, count + 1)):
                manifest, payload = default_serializer.to_binary(event(nr))
                reprs.append(PersistentRepr(pid, nr, manifest, payload, "bench-setup", now))
            if any(await journal.write_messages([AtomicWrite(tuple(reprs))])):
                raise RuntimeError("set-up write failed")
    finally:
        await journal.close()


def _setup_recovering(folder: Path) -> None:
    asyncio.run(_write_history(folder, "recover-10k", EVENTS))


# -- raw asyncpg -------------------------------------------------------------------------------

_RAW_SCHEMA = """CREATE TABLE "{schema}".journal (
    ordering BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE, persistence_id TEXT NOT NULL,
    sequence_nr BIGINT NOT NULL, payload BYTEA NOT NULL,
    PRIMARY KEY (persistence_id, sequence_nr))"""


def _payload(nr: int) -> bytes:
    packed: bytes = msgpack.packb({"t": "ItemAdded", "name": f"item-{nr:05d}", "ts": time.time()})
    return packed


async def _raw_connect(schema: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(DSN)
    await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await connection.execute(_RAW_SCHEMA.format(schema=schema))
    return connection


def _raw_write(rows_per_tx: int) -> Callable[[Path], float]:
    async def write(schema: str) -> float:
        connection = await _raw_connect(schema)
        table = f'"{schema}".journal'
        one = f"INSERT INTO {table} (persistence_id, sequence_nr, payload) VALUES ($1, $2, $3)"
        many = (f"INSERT INTO {table} (persistence_id, sequence_nr, payload) "
                "SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])")
        ids = ["cart-" + uuid.uuid4().hex for _ in range(_IDS)]
        per_id = EVENTS // _IDS
        try:
            start = time.perf_counter()
            for pid in ids:
                for first in range(1, per_id + 1, rows_per_tx):
                    nrs = range(first, min(first + rows_per_tx, per_id + 1))
                    if rows_per_tx == 1:  # autocommit: one round trip per event
                        await connection.execute(one, pid, first, _payload(first))
                    else:
                        await connection.execute(many, [pid] * len(nrs), list(nrs),
                                                 [_payload(nr) for nr in nrs])
            return time.perf_counter() - start
        finally:
            await connection.close()

    def run(folder: Path) -> float:
        return asyncio.run(write(_schema(folder)))

    return run


def _setup_raw_read(folder: Path) -> None:
    async def setup() -> None:
        connection = await _raw_connect(_schema(folder))
        try:
            await connection.copy_records_to_table(
                "journal", schema_name=_schema(folder),
                columns=["persistence_id", "sequence_nr", "payload"],
                records=[("replayed", nr, _payload(nr)) for nr in range(1, EVENTS + 1)]
                + [(f"other-{nr % 3}", nr, _payload(nr)) for nr in range(3000)])
        finally:
            await connection.close()

    asyncio.run(setup())


def _raw_read(folder: Path) -> float:
    async def read() -> float:
        connection = await asyncpg.connect(DSN)
        try:
            start = time.perf_counter()
            rows = await connection.fetch(
                f'SELECT payload FROM "{_schema(folder)}".journal WHERE persistence_id = $1 '
                "ORDER BY sequence_nr", "replayed")
            decoded = [msgpack.unpackb(payload) for (payload,) in rows]
            elapsed = time.perf_counter() - start
        finally:
            await connection.close()
        if len(decoded) != EVENTS:
            raise RuntimeError(f"read {len(decoded)} rows back, expected {EVENTS}")
        return elapsed

    return asyncio.run(read())


# -- eventsourcing on PostgreSQL ---------------------------------------------------------------


def _es_app(folder: Path) -> tuple[Any, Any]:
    from eventsourcing.application import Application  # noqa: PLC0415 - optional extra

    from bench import peer_model  # noqa: PLC0415

    parts = urlsplit(DSN)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or getpass.getuser(),
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": _schema(folder),
    }
    asyncio.run(_create_schema(_schema(folder)))
    return Application(env=env), peer_model.Cart


async def _create_schema(schema: str) -> None:
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    finally:
        await connection.close()


def _es_write(events_per_save: int) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        app, cart_cls = _es_app(folder)
        per_cart = EVENTS // _IDS
        try:
            start = time.perf_counter()
            for _ in range(_IDS):
                cart = cart_cls()
                pending = 1
                for nr in range(1, per_cart + 1):
                    if pending == events_per_save:
                        app.save(cart)
                        pending = 0
                    if nr < per_cart:
                        peer.command(cart, nr)
                        pending += 1
                if pending:
                    app.save(cart)
            return time.perf_counter() - start
        finally:
            app.close()

    return run


# The aggregate's id is kept in the set-up folder, not in memory: each round runs in a
# fresh process (bench/isolated.py) that never saw the set-up.
_ID_FILE = "aggregate_id"


def _setup_es_replay(folder: Path) -> None:
    app, cart_cls = _es_app(folder)
    try:
        cart = cart_cls()
        for nr in range(1, EVENTS):
            peer.command(cart, nr)
            if nr % 1000 == 0:
                app.save(cart)
        app.save(cart)
        (folder / _ID_FILE).write_text(str(cart.id))
    finally:
        app.close()


def _es_replay(folder: Path) -> float:
    app, _ = _es_app(folder)
    try:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            cart = app.repository.get(uuid.UUID((folder / _ID_FILE).read_text()))
            times.append(time.perf_counter() - start)
    finally:
        app.close()
    if cart.version != EVENTS:
        raise RuntimeError(f"replayed to version {cart.version}, expected {EVENTS}")
    return statistics.median(times)


def rows() -> list[Workload]:
    """The PostgreSQL rows, in table order (empty without a reachable server)."""
    if not available():
        return []
    persist = workloads.persist_workload
    result = [
        Workload("pg_persist", OURS_PG, "PostgreSQL persist: 1 actor, 1 event per command",
                 EVENTS, _dropping(persist("p", 1, EVENTS, _config))),
        Workload("pg_persist_all", OURS_PG, "PostgreSQL persist_all: 1 actor, batches of 50",
                 EVENTS, _dropping(persist("pb", 1, EVENTS, _config))),
        Workload("pg_persist_async", OURS_PG, "PostgreSQL persist_async: 1 actor", EVENTS,
                 _dropping(persist("pa", 1, EVENTS, _config))),
        Workload("pg_persist_group10", OURS_PG,
                 "PostgreSQL persist_group: 10 actors x 1,000 persists", EVENTS,
                 _dropping(persist("p", 10, EVENTS // 10, _config))),
        Workload("pg_persist_group100", OURS_PG,
                 "PostgreSQL persist_group: 100 actors x 100 persists", EVENTS,
                 _dropping(persist("p", 100, EVENTS // 100, _config))),
        Workload("pg_recovering", OURS_PG,
                 "PostgreSQL recovering: fresh actor replays 10,000 events", EVENTS,
                 workloads.recover_workload("recover-10k", EVENTS, _config),
                 setup=_setup_recovering, folder="pg_recovering"),
        Workload("raw_pg_tx1", RAW_PG, "raw asyncpg: 1 row per transaction", EVENTS,
                 _dropping(_raw_write(1))),
        Workload("raw_pg_unnest100", RAW_PG, "raw asyncpg: 100 rows per transaction (unnest)",
                 EVENTS, _dropping(_raw_write(100))),
        Workload("raw_pg_read", RAW_PG, "raw asyncpg: read 10,000 rows back (fetch + unpackb)",
                 EVENTS, _raw_read, setup=_setup_raw_read, folder="raw_pg_read"),
    ]
    if peer.available():
        result += [
            Workload("es_pg_save_1", PEER_PG, "eventsourcing PostgreSQL: 1 event per save",
                     EVENTS, _dropping(_es_write(1))),
            Workload("es_pg_save_100", PEER_PG, "eventsourcing PostgreSQL: 100 events per save",
                     EVENTS, _dropping(_es_write(100))),
            Workload("es_pg_replay", PEER_PG,
                     "eventsourcing PostgreSQL: replay 10,000 events (repository.get)", EVENTS,
                     _es_replay, setup=_setup_es_replay, folder="es_pg_replay"),
        ]
    return result
