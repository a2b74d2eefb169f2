"""Copy a journal and snapshot store between SQLite and PostgreSQL, losing nothing.

`copy_sqlite_to_postgres` and `copy_postgres_to_sqlite` copy every journal row (tombstones of
deleted events included, so no sequence number is ever reused), with its sequence number,
tags (in order), timestamp and writer id, *and its ordering*, so offsets that projections
stored stay valid; the recorded highest sequence numbers (``journal_metadata``); and every
snapshot. The target must be empty; the copy is one transaction on it, so it is stored
entirely or not at all. Stop the writers first: the source is read as it is at the start.

From the command line::

    python -m journal_plugins.migration to-postgres events.db postgresql://host/db [SCHEMA]
    python -m journal_plugins.migration to-sqlite postgresql://host/db events.db [SCHEMA]

It prints what it copied and exits 0, or prints one line ``... error: ...`` and exits 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import asyncpg

from journal_plugins.postgres import (
    PostgresJournal,
    PostgresSnapshotStore,
    parse_options,
    redact,
    tags_literal,
)
from journal_plugins.sqlite import SqliteJournal, SqliteSnapshotStore
from persistent_actors.errors import PersistentActorsError, PluginError

__all__ = ["Copied", "copy_postgres_to_sqlite", "copy_sqlite_to_postgres"]

_CHUNK: Final = 1000


@dataclasses.dataclass
class Copied:
    """How many rows of each kind a copy stored."""

    events: int = 0
    tombstones: int = 0
    tags: int = 0
    highest_records: int = 0
    snapshots: int = 0


def _chunks(rows: Iterator[Any], size: int = _CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _sqlite_events(db: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    """Journal rows in ordering order, each with its tags folded into a tuple."""
    rows = db.execute("""SELECT j.ordering, j.persistence_id, j.sequence_nr, j.manifest,
            j.payload, j.writer_uuid, j.timestamp, j.deleted, t.tag
        FROM journal AS j LEFT JOIN journal_tags AS t ON t.ordering = j.ordering
        ORDER BY j.ordering, t.position""")
    current: list[Any] | None = None
    for *event, tag in rows:
        if current is None or current[0] != event[0]:
            if current is not None:
                yield tuple(current)
            current = [*event, []]
        if tag is not None:
            current[-1].append(tag)
    if current is not None:
        yield tuple(current)


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return bool(db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (name,)).fetchone()[0])


async def copy_sqlite_to_postgres(journal_db: str | Path, settings: Mapping[str, Any], *,
                                  snapshot_db: str | Path | None = None) -> Copied:
    """Copy an SQLite journal and snapshot store into the PostgreSQL schema of `settings`.

    `journal_db` is the journal's file; `snapshot_db` the snapshot store's (default: the same
    file). `settings` are the PostgreSQL plugin's settings.

    Raises:
        PluginError: a file is missing or not a journal, the server cannot be used, or the
            target schema already holds events or snapshots.

    """
    o = parse_options("copy_sqlite_to_postgres", settings)
    source = _open_sqlite(journal_db)
    snapshot_source = source if snapshot_db is None else _open_sqlite(snapshot_db)
    copied = Copied()
    try:
        for plugin in (PostgresJournal(settings), PostgresSnapshotStore(
                {k: v for k, v in settings.items() if k != "replay_page_size"})):
            await plugin.start()  # creates the schema and tables, or refuses foreign ones
            await plugin.close()
        connection = await asyncpg.connect(o.dsn, timeout=o.connect_timeout)
    except BaseException:
        source.close()
        snapshot_source.close()
        raise
    try:
        async with connection.transaction():
            await _require_empty_postgres(connection, o.table)
            await connection.execute(f"LOCK TABLE {o.table('journal')} IN EXCLUSIVE MODE")
            insert = f"""WITH ins AS (
                    INSERT INTO {o.table("journal")} (ordering, persistence_id, sequence_nr,
                        manifest, payload, writer_uuid, created_at, deleted, tags)
                    OVERRIDING SYSTEM VALUE
                    SELECT e.o, e.pid, e.nr, e.manifest, e.payload, e.writer, e.ts, e.deleted,
                        e.tags::text[]
                    FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::bytea[],
                                $6::text[], $7::float8[], $8::bool[], $9::text[])
                        AS e(o, pid, nr, manifest, payload, writer, ts, deleted, tags)
                    ORDER BY e.o
                    RETURNING ordering, tags)
                INSERT INTO {o.table("journal_tags")} (tag, ordering)
                SELECT DISTINCT t.tag, ins.ordering FROM ins, unnest(ins.tags) AS t(tag)"""
            for chunk in _chunks(_sqlite_events(source)):
                columns = [list(column) for column in zip(*chunk, strict=True)]
                columns[7] = [bool(flag) for flag in columns[7]]
                copied.tags += sum(len(tags) for tags in columns[8])
                columns[8] = [tags_literal(tags) for tags in columns[8]]
                await connection.execute(insert, *columns)
                copied.tombstones += sum(columns[7])
                copied.events += len(chunk) - sum(columns[7])
            # New events continue above the copied orderings.
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence($1, 'ordering'), "
                f"(SELECT coalesce(max(ordering), 0) + 1 FROM {o.table('journal')}), false)",
                o.table("journal"))
            metadata = source.execute(
                "SELECT persistence_id, max_sequence_nr FROM journal_metadata").fetchall()
            await connection.executemany(
                f"INSERT INTO {o.table('journal_metadata')} VALUES ($1, $2)", metadata)
            copied.highest_records = len(metadata)
            if _has_table(snapshot_source, "snapshot"):
                rows = snapshot_source.execute("""SELECT persistence_id, sequence_nr,
                    timestamp, manifest, payload FROM snapshot""")
                for chunk in _chunks(iter(rows)):
                    await connection.executemany(
                        f"INSERT INTO {o.table('snapshot')} (persistence_id, sequence_nr, "
                        "created_at, manifest, payload) VALUES ($1, $2, $3, $4, $5)", chunk)
                    copied.snapshots += len(chunk)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        msg = f"copying into schema {o.schema!r} at {redact(o.dsn)!r} failed: {e}"
        raise PluginError(msg) from e
    finally:
        source.close()
        snapshot_source.close()
        await connection.close()
    return copied


async def copy_postgres_to_sqlite(settings: Mapping[str, Any], journal_db: str | Path, *,
                                  snapshot_db: str | Path | None = None) -> Copied:
    """Copy the PostgreSQL schema of `settings` into SQLite, creating the files if needed.

    Events go to `journal_db`, snapshots to `snapshot_db` (default: the same file).

    Raises:
        PluginError: the server cannot be used, the schema holds no journal, or the target
            file already holds events or snapshots.

    """
    for cls, path in ((SqliteJournal, journal_db), (SqliteSnapshotStore,
                                                    snapshot_db or journal_db)):
        plugin = cls({"path": str(path)})  # creates the file and its tables, or refuses it
        await plugin.start()
        await plugin.close()
    o = parse_options("copy_postgres_to_sqlite", settings)
    try:
        connection = await asyncpg.connect(o.dsn, timeout=o.connect_timeout)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
        msg = f"copy_postgres_to_sqlite: cannot connect to {redact(o.dsn)!r}: {e}"
        raise PluginError(msg) from e
    target = _open_sqlite(journal_db, write=True)
    snapshot_target = target if snapshot_db is None else _open_sqlite(snapshot_db, write=True)
    targets = [target] if snapshot_db is None else [target, snapshot_target]
    copied = Copied()
    try:
        _require_empty_sqlite(target, "journal", journal_db)
        _require_empty_sqlite(snapshot_target, "snapshot", snapshot_db or journal_db)
        for db in targets:
            db.execute("BEGIN IMMEDIATE")
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            # One snapshot of the source for the whole copy.
            events = connection.cursor(f"""SELECT ordering, persistence_id, sequence_nr,
                manifest, payload, writer_uuid, created_at, deleted, tags
                FROM {o.table("journal")} ORDER BY ordering""", prefetch=_CHUNK)
            async for row in events:
                ordering, pid, nr, manifest, payload, writer, ts, deleted, tags = row
                target.execute("""INSERT INTO journal (ordering, persistence_id, sequence_nr,
                    manifest, payload, writer_uuid, timestamp, deleted)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                               (ordering, pid, nr, manifest, payload, writer, ts, int(deleted)))
                target.executemany(
                    "INSERT INTO journal_tags (ordering, position, tag) VALUES (?, ?, ?)",
                    [(ordering, position, tag) for position, tag in enumerate(tags)])
                copied.tags += len(tags)
                copied.tombstones += deleted
                copied.events += not deleted
            async for pid, highest in connection.cursor(
                    f"SELECT persistence_id, max_sequence_nr FROM {o.table('journal_metadata')}"):
                target.execute("INSERT INTO journal_metadata VALUES (?, ?)", (pid, highest))
                copied.highest_records += 1
            try:
                snapshots = [row async for row in connection.cursor(
                    f"""SELECT persistence_id, sequence_nr, created_at, manifest, payload
                    FROM {o.table("snapshot")}""", prefetch=_CHUNK)]
            except asyncpg.UndefinedTableError:
                snapshots = []
            snapshot_target.executemany("""INSERT INTO snapshot (persistence_id, sequence_nr,
                timestamp, manifest, payload) VALUES (?, ?, ?, ?, ?)""",
                                        [tuple(row) for row in snapshots])
            copied.snapshots = len(snapshots)
        for db in targets:
            db.execute("COMMIT")
    except BaseException as e:
        for db in (target, snapshot_target):
            if db.in_transaction:
                db.execute("ROLLBACK")
        if isinstance(e, asyncpg.PostgresError | asyncpg.InterfaceError | OSError
                      | sqlite3.Error):
            msg = f"copying schema {o.schema!r} into {journal_db!s} failed: {e}"
            raise PluginError(msg) from e
        raise
    finally:
        target.close()
        snapshot_target.close()
        await connection.close()
    return copied


def _open_sqlite(path: str | Path, *, write: bool = False) -> sqlite3.Connection:
    file = Path(path)
    if not file.is_file():
        msg = f"SQLite database {str(file)!r} does not exist"
        raise PluginError(msg)
    mode = "rw" if write else "ro"
    db = sqlite3.connect(f"file:{file.resolve()}?mode={mode}", uri=True, isolation_level=None)
    if not write and not _has_table(db, "journal") and not _has_table(db, "snapshot"):
        db.close()
        msg = f"{str(file)!r} holds no journal or snapshot table"
        raise PluginError(msg)
    return db


def _require_empty_sqlite(db: sqlite3.Connection, table: str, path: str | Path) -> None:
    if db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:
        msg = f"copying into {str(path)!r}: its {table} table is not empty"
        raise PluginError(msg)


async def _require_empty_postgres(connection: Any, table: Any) -> None:
    for name in ("journal", "snapshot"):
        if await connection.fetchval(f"SELECT count(*) FROM {table(name)}"):
            msg = f"the target's {name} table is not empty"
            raise PluginError(msg)


def main(argv: list[str]) -> int:
    """CLI: see the module docstring."""
    usage = ("usage: python -m journal_plugins.migration to-postgres FILE DSN [SCHEMA] | "
             "to-sqlite DSN FILE [SCHEMA]")
    if len(argv) not in (4, 5) or argv[1] not in ("to-postgres", "to-sqlite"):
        print(usage, file=sys.stderr)
        return 2
    schema = {"schema": argv[4]} if len(argv) == 5 else {}
    try:
        if argv[1] == "to-postgres":
            copied = asyncio.run(copy_sqlite_to_postgres(argv[2], {"dsn": argv[3], **schema}))
        else:
            copied = asyncio.run(copy_postgres_to_sqlite({"dsn": argv[2], **schema}, argv[3]))
    except (PersistentActorsError, OSError, sqlite3.Error, asyncpg.PostgresError) as e:
        # A mistake (a missing file, a target holding events, a bad schema name, a server
        # that refuses) is one line, as the persistent-actors command prints it: the traceback
        # of the copy's internals said nothing more and buried the message.
        print(f"python -m journal_plugins.migration: error: {e}", file=sys.stderr)
        return 2
    print(copied)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
