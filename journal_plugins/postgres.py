"""PostgreSQL journal and snapshot store (asyncpg): one journal shared by many processes and hosts.

Settings (both classes)::

    [persistence.journal]
    plugin = "postgres"
    dsn = "postgresql://127.0.0.1:5432/test"   # default: the PERSISTENT_ACTORS_PG_DSN variable
    schema = "persistent_actors"              # created with its tables on first start
    pool_size = 4                             # connections at most (a bounded asyncpg pool)
    connect_timeout = 10.0                    # seconds to connect before start fails
    replay_page_size = 1000                   # journal only: events per replay query

The snapshot store takes the same keys except ``replay_page_size``; both may share a schema.

Schema (in ``schema``): ``journal`` holds one row per event with a global ``ordering``
(an identity column) for the read side, primary key ``(persistence_id, sequence_nr)``, the
writer id, the timestamp (``float8`` seconds, exact) and the tags (``text[]``, in order);
``journal_tags (tag, ordering)`` indexes the tags for tag queries; ``journal_metadata`` records
the highest sequence number of each id when events are deleted; ``snapshot`` holds snapshots.
Deleted events stay as tombstone rows (``deleted``, payload and tags erased), so a sequence
number is never reused and the highest one never goes back.

**Writes.** `PostgresJournal.write_messages` stores the host's whole batch (many actors'
`AtomicWrite`s) with *one* statement in *one* transaction: a multi-row ``INSERT ... SELECT FROM
unnest($1, $2, ...)`` of arrays, its tag rows inserted by the same statement. It is one round
trip to the server. If it hits a unique-key conflict (a sequence number stored before: a second
live writer for one id) the batch is redone in one transaction with a savepoint per
`AtomicWrite`, and only the conflicting writes are rejected with `SequenceConflictError`; each
`AtomicWrite` is stored entirely or not at all.

**Exact offsets under concurrent writers (the ordering guarantee).** Every statement that adds
events to ``journal`` first takes a transaction-scoped advisory lock of the schema
(``pg_advisory_xact_lock``), and the identity values are drawn after it, so the write
transactions of every process and host are serialised from the moment they draw an ordering
until they commit. PostgreSQL marks a transaction committed (visible to new snapshots) before
it releases its locks, so the next writer's orderings, all larger, commit later: the committed
orderings always form a visible prefix. A rolled-back transaction leaves a gap that is never
filled. A reader that has seen ordering n has therefore seen every event below n that will ever
exist, so resuming a query after n can neither skip nor repeat an event (Akka.NET issue 2257
cannot happen). This is the `eventsourcing` library's design (it takes ``LOCK TABLE ...
EXCLUSIVE``); an advisory lock serialises the same writers without conflicting with
autovacuum or readers. The price is one write transaction at a time per schema, which group
commit amortises. ``tests/journal_plugins/test_query_postgres.py`` proves it: several processes
write at once under live tag and all-events queries and a reader polling the head of the log,
and every event arrives exactly once, in ordering order.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import asyncpg

from journal_plugins._postgres_db import (
    _COMMON_KEYS,
    _JOURNAL_KEYS,
    _ORDERING_LOCK_CLASS,
    _SETUP_LOCK_CLASS,
    DB_ERRORS,
    DEFAULT_SCHEMA,
    DSN_ENV_VAR,
    LOST,
    Options,
    parse_options,
    reason,
    redact,
    reset_connection,
    server_settings,
)
from journal_plugins.postgres_query import PostgresEventLog
from persistent_actors.errors import (
    JournalError,
    PluginError,
    SequenceConflictError,
    SnapshotStoreError,
)
from persistent_actors.event_log import EventLog
from persistent_actors.journal import (
    MAX_SEQUENCE_NR,
    AtomicWrite,
    Journal,
    PersistentRepr,
    ReplayedRows,
)
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

__all__ = ["DEFAULT_SCHEMA", "DSN_ENV_VAR", "Options", "PostgresJournal", "PostgresSnapshotStore",
           "parse_options", "redact"]

# A connection of its own, or one lent by a pool.
_Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# -- schema ----------------------------------------------------------------------------------


def journal_schema(o: Options) -> list[str]:
    """The statements creating the journal's tables (idempotent).

    The identity keeps ``CACHE 1``: with a cache, each session would draw orderings from a
    range of its own, and the ordering lock could no longer make them a visible prefix.
    """
    return [
        f"""CREATE TABLE IF NOT EXISTS {o.table("journal")} (
            ordering BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1) UNIQUE,
            persistence_id TEXT NOT NULL,
            sequence_nr BIGINT NOT NULL,
            manifest TEXT NOT NULL,
            payload BYTEA NOT NULL,
            writer_uuid TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            tags TEXT[] NOT NULL DEFAULT '{{}}',
            deleted BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (persistence_id, sequence_nr))""",
        f"""CREATE TABLE IF NOT EXISTS {o.table("journal_tags")} (
            tag TEXT NOT NULL,
            ordering BIGINT NOT NULL,
            PRIMARY KEY (tag, ordering))""",
        f"""CREATE TABLE IF NOT EXISTS {o.table("journal_metadata")} (
            persistence_id TEXT PRIMARY KEY,
            max_sequence_nr BIGINT NOT NULL)""",
        # A sequence number at or below an id's recorded highest was used before, even when its
        # row is gone (a SQLite journal compacts deleted rows, and migrates so): refused as the
        # primary key refuses a live one.
        f"""CREATE OR REPLACE FUNCTION {o.table("journal_no_reuse")}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM {o.table("journal_metadata")} AS m
                           WHERE m.persistence_id = NEW.persistence_id
                           AND m.max_sequence_nr >= NEW.sequence_nr) THEN
                    RAISE EXCEPTION USING ERRCODE = 'unique_violation',
                        MESSAGE = 'sequence number ' || NEW.sequence_nr || ' of '
                                  || quote_literal(NEW.persistence_id)
                                  || ' was used before (deleted since)';
                END IF;
                RETURN NEW;
            END $$""",
        # Statement-level: one NOTIFY per write transaction, delivered when it commits.
        f"""CREATE OR REPLACE FUNCTION {o.table("journal_notify")}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{o.channel}', ''); RETURN NULL; END $$""",
    ]


JOURNAL_COLUMNS: Final = {
    "journal": {"ordering", "persistence_id", "sequence_nr", "manifest", "payload",
                "writer_uuid", "created_at", "tags", "deleted"},
    "journal_tags": {"tag", "ordering"},
    "journal_metadata": {"persistence_id", "max_sequence_nr"},
}


def snapshot_schema(o: Options) -> list[str]:
    """The statements creating the snapshot table (idempotent)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {o.table("snapshot")} (
            persistence_id TEXT NOT NULL,
            sequence_nr BIGINT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            manifest TEXT NOT NULL,
            payload BYTEA NOT NULL,
            PRIMARY KEY (persistence_id, sequence_nr))""",
    ]


SNAPSHOT_COLUMNS: Final = {
    "snapshot": {"persistence_id", "sequence_nr", "created_at", "manifest", "payload"},
}


async def open_pool(owner: str, o: Options, statements: Sequence[str],
                    columns: Mapping[str, set[str]], *, min_size: int = 0) -> asyncpg.Pool:
    """Connect a bounded pool and create the schema's missing tables, or raise `PluginError`.

    No minimum size by default: asyncpg refills a pool's minimum in the background, which
    runs only while the plugin's loop does (during an operation): a refill cut off there
    left a connection in a broken state ("another operation is in progress").
    """
    pool: asyncpg.Pool | None = None
    try:
        pool = await asyncpg.create_pool(
            o.dsn, min_size=min(min_size, o.pool_size), max_size=o.pool_size,
            timeout=o.connect_timeout, reset=reset_connection,
            server_settings=server_settings(o.dsn, "persistent_actors"))
        # With no minimum the pool connects on the first acquire: a refused or silent server
        # is "cannot connect" (it read "cannot set up schema", a timeout with no reason).
        connection = await pool.acquire()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
            ValueError) as e:  # ValueError: asyncpg's reading of a malformed dsn
        if pool is not None:
            pool.terminate()
        msg = f"{owner}: cannot connect to PostgreSQL at {redact(o.dsn)!r}: {reason(e, o)}"
        raise PluginError(msg) from e
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    try:
        try:
            await ensure_schema(owner, connection, o, statements, columns)
        finally:
            await pool.release(connection)
    except BaseException as e:
        pool.terminate()
        if isinstance(e, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
            msg = (f"{owner}: cannot set up schema {o.schema!r} at {redact(o.dsn)!r}: "
                   f"{reason(e, o)}")
            raise PluginError(msg) from e
        raise
    return pool


# The journal's triggers: (name, also its function's name; when it fires; for what).
_TRIGGERS: Final = (("journal_notify", "AFTER", "STATEMENT"),
                    ("journal_no_reuse", "BEFORE", "ROW"))
_FUNCTION: Final = re.compile(r"CREATE OR REPLACE FUNCTION \S+\.(\w+)\(\).*?\$\$(.*)\$\$",
                              re.DOTALL)


async def missing_parts(owner: str, connection: _Connection, o: Options,
                        statements: Sequence[str], columns: Mapping[str, set[str]]) -> list[str]:
    """What of the schema `statements` make is missing or differs (empty: all in place).

    Reads the catalogue only, so it runs on a read-only connection (a hot standby, a role
    granted only SELECT, ``default_transaction_read_only``). Raises `PluginError` for a table
    of one of the plugin's names that the plugin did not create.
    """
    if not await connection.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                                     o.schema):
        return [f"schema {o.schema!r}"]
    missing: list[str] = []
    for table, expected in columns.items():
        # The catalogue, not information_schema: that shows only what the role may use, so a
        # table it was granted nothing on read as missing (and its creation was attempted).
        rows = await connection.fetch(
            "SELECT a.attname FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = $1 "
            "AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped", o.schema, table)
        found = {str(row[0]) for row in rows}
        if found and not expected <= found:
            msg = (f"{owner}: schema {o.schema!r} has a table {table!r} that this plugin did "
                   f"not create (missing columns {sorted(expected - found)}); refusing to "
                   "use it")
            raise PluginError(msg)
        if not found:
            missing.append(f"table {table}")
    for statement in statements:
        if (function := _FUNCTION.search(statement)) is None:
            continue
        body = await connection.fetchval(
            "SELECT p.prosrc FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace "
            "WHERE n.nspname = $1 AND p.proname = $2", o.schema, function[1])
        if body != function[2]:
            missing.append(f"function {function[1]}" if body is None else
                           f"function {function[1]} of this version")
    if "journal" in columns and "table journal" not in missing:
        for name, _, _ in _TRIGGERS:
            if not await connection.fetchval(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = $1 AND tgrelid = $2::regclass",
                    name, o.table("journal")):
                missing.append(f"trigger {name}")
    return missing


async def ensure_schema(owner: str, connection: _Connection, o: Options,
                        statements: Sequence[str], columns: Mapping[str, set[str]]) -> None:
    """Create the schema and what is missing of it in one transaction; refuse foreign tables.

    When everything is in place (`missing_parts` reads the catalogue), nothing is run: a
    read-only connection or a role allowed only to read and write the tables (no CREATE on
    the schema, not their owner) starts too. Otherwise the setup is serialised by an advisory
    lock, so processes starting together do not race on the catalogue; a failure names what
    was missing.
    """
    missing = await missing_parts(owner, connection, o, statements, columns)
    if not missing:
        return
    try:
        await _create_schema(owner, connection, o, statements, columns)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
        hint = (" (the connection is read-only: a hot standby, or default_transaction_read_only"
                " is on; create the schema once through a writable connection)"
                if isinstance(e, asyncpg.ReadOnlySQLTransactionError) else
                " (the role may not create them: create the schema once with a role that may,"
                " e.g. its owner)" if isinstance(e, asyncpg.InsufficientPrivilegeError) else "")
        msg = (f"{owner}: cannot set up schema {o.schema!r} at {redact(o.dsn)!r}: missing "
               f"{', '.join(missing)}; creating them failed: {reason(e, o)}{hint}")
        raise PluginError(msg) from e


async def _create_schema(owner: str, connection: _Connection, o: Options,
                         statements: Sequence[str], columns: Mapping[str, set[str]]) -> None:
    async with connection.transaction():
        await connection.execute(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK_CLASS}, "
                                 f"{o.lock_key})")
        # Created only when missing: a role that may use an existing schema need not be
        # allowed to create one.
        if not await connection.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1",
                                         o.schema):
            await connection.execute(f'CREATE SCHEMA "{o.schema}"')
        await missing_parts(owner, connection, o, statements, columns)  # foreign tables
        for statement in statements:
            await connection.execute(statement)
        if "journal" in columns:
            for name, timing, each in _TRIGGERS:
                exists = await connection.fetchval(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = $1 AND tgrelid = $2::regclass",
                    name, o.table("journal"))
                if not exists:
                    await connection.execute(
                        f"CREATE TRIGGER {name} {timing} INSERT ON {o.table('journal')} "
                        f"FOR EACH {each} EXECUTE FUNCTION {o.table(name)}()")


async def close_pool(pool: asyncpg.Pool | None, timeout: float = 10.0) -> None:
    """Close `pool`, terminating connections still busy after `timeout` seconds."""
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except (TimeoutError, asyncpg.InterfaceError, OSError):
        pool.terminate()


async def missing_table(owner: str, o: Options, table: str) -> str | None:
    """Why `table` of the configured schema cannot be read yet (None: it exists).

    For tools that look at a store (the CLI): `start` would create it, and an empty store made
    by a typo in the schema name would look like a valid one.
    """
    try:
        connection = await asyncpg.connect(o.dsn, timeout=o.connect_timeout)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError,
            ValueError) as e:
        msg = f"{owner}: cannot connect to PostgreSQL at {redact(o.dsn)!r}: {reason(e, o)}"
        raise PluginError(msg) from e
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = $2", o.schema, table)
    finally:
        await connection.close()
    if found:
        return None
    return f"schema {o.schema!r} at {redact(o.dsn)!r} has no {table} table"


# -- journal ---------------------------------------------------------------------------------

_DB_ERRORS: Final = DB_ERRORS
_LOST: Final = LOST
# What one write of a batch may cause (a constraint, bad data, an index row too large for a
# 3,000-character tag or id): the batch is written again write by write, and only the
# writes that cause it are rejected, not every writer of the group commit.
_ONE_WRITE_ERRORS: Final = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError,
                            asyncpg.ProgramLimitExceededError)
# Seconds without a query after which the pool's connections are first let to notice a close
# (a few loop turns: microseconds), and after which a write's connection answers SELECT 1 first
# (a round trip).
_TURNS_AFTER: Final = 0.001
_IDLE_CHECK: Final = 1.0

T = TypeVar("T")


class _Liveness:
    """When a pool was last used; after a pause the loop gets a few turns first.

    The loop of a plugin runs only while one of its operations does (its host drives it then).
    Connections the server closed meanwhile (a restart, ``pg_terminate_backend``, a proxy) have
    unread end-of-file on their sockets; a few loop turns read it, asyncpg marks them closed,
    and the pool opens new ones instead of failing the next query on a dead one. The turns are
    given after any pause of a millisecond, not only after an idle second: under steady
    traffic, a write on a pooled connection the server had closed 10 ms before failed though
    nothing of it was sent, and every actor of its group commit stopped. Back-to-back
    operations keep the loop running, which notices a close by itself.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = time.monotonic()

    async def before_query(self) -> bool:
        """Give the loop its turns after a pause; True after an idle spell (see `probed`)."""
        now = time.monotonic()
        pause = now - self._last
        if pause > _TURNS_AFTER:
            for _ in range(3):  # EOF read, then connection_lost called, then marked closed
                await asyncio.sleep(0)
        self._last = now
        return pause > _IDLE_CHECK


async def probed(pool: asyncpg.Pool, idle: bool) -> Any:
    """A connection of `pool`; after an idle spell, one that answered ``SELECT 1``.

    The loop's turns (`_Liveness`) do not always show a connection the server closed while
    the plugin was idle (an idle timeout, a restart): a write on it failed, though nothing of
    it had been sent. The probe fails first instead; the connection is dropped and another
    taken, so the write goes out once, on a live connection. (A write that fails midway is
    never sent again: it may have been committed.) Release it with ``pool.release``.
    """
    for _ in range(3):
        connection = await pool.acquire()
        if not idle:
            return connection
        try:
            await connection.execute("SELECT 1")
        except _LOST:
            connection.terminate()
            await pool.release(connection)
            continue
        return connection
    return await pool.acquire()


def _not_sent(error: BaseException) -> bool:
    """True if `error` was raised before any of its operation went to the server.

    asyncpg refuses to start an operation on a connection whose protocol is not idle ("cannot
    switch to state ...": the server's goodbye, a FATAL from a terminate or a restart, was
    read but not yet the end of the connection) or that it knows closed ("connection is
    closed"); both are raised before it writes anything.
    """
    text = str(error)
    return (isinstance(error, asyncpg.InternalClientError) and
            text.startswith("cannot switch to state")) or \
        (isinstance(error, asyncpg.InterfaceError) and text.startswith("connection is closed"))


async def on_live_connection(pool: asyncpg.Pool, idle: bool,
                             operation: Callable[[Any], Awaitable[T]]) -> T:
    """Run the write `operation` on a connection of `pool` (see `probed`), at most once.

    If the connection turns out to be one the server had closed before anything was sent
    (`_not_sent`), the operation runs on another connection instead: it was never sent.
    """
    connection = await probed(pool, idle)
    try:
        try:
            return await operation(connection)
        except (asyncpg.InternalClientError, asyncpg.InterfaceError) as e:
            if not _not_sent(e):
                raise
        connection.terminate()
    finally:
        await pool.release(connection)
    connection = await pool.acquire()
    try:
        return await operation(connection)
    finally:
        await pool.release(connection)


async def _read_again_if_lost(read: Callable[[], Awaitable[T]]) -> T:
    """Run the query `read` (idempotent); once more if its connection had been closed."""
    try:
        return await read()
    except _LOST:
        return await read()  # the pool gives a fresh connection for the dead one


def tags_literal(tags: Sequence[str]) -> str:
    """`tags` as a PostgreSQL array literal (every element quoted, so any text is safe)."""
    if not tags:
        return "{}"
    quoted = ('"' + tag.replace("\\", "\\\\").replace('"', '\\"') + '"' for tag in tags)
    return "{" + ",".join(quoted) + "}"


def insert_events_sql(o: Options) -> str:
    """The one statement that stores a batch of events: ordering lock, events, tag rows.

    The ``lock`` CTE is joined with the rows, so the lock is held before the first identity
    value is drawn (identity defaults are evaluated on the joined, sorted rows); taking it
    again inside a transaction that holds it is a no-op. Rows are inserted in input order, so
    one id's events get increasing orderings.
    """
    return f"""WITH lock AS MATERIALIZED (
            SELECT pg_advisory_xact_lock({_ORDERING_LOCK_CLASS}, {o.lock_key})),
        ins AS (
            INSERT INTO {o.table("journal")}
                (persistence_id, sequence_nr, manifest, payload, writer_uuid, created_at, tags)
            SELECT e.pid, e.nr, e.manifest, e.payload, e.writer, e.ts, e.tags::text[]
            FROM lock, unnest($1::text[], $2::int8[], $3::text[], $4::bytea[], $5::text[],
                              $6::float8[], $7::text[])
                 WITH ORDINALITY AS e(pid, nr, manifest, payload, writer, ts, tags, idx)
            ORDER BY e.idx
            RETURNING ordering, tags)
        INSERT INTO {o.table("journal_tags")} (tag, ordering)
        SELECT DISTINCT t.tag, ins.ordering FROM ins, unnest(ins.tags) AS t(tag)"""


def event_columns(events: Sequence[PersistentRepr]) -> tuple[list[Any], ...]:
    """The insert statement's seven array parameters for `events`."""
    return (
        [e.persistence_id for e in events],
        [e.sequence_nr for e in events],
        [e.manifest for e in events],
        [e.payload for e in events],
        [e.writer_uuid for e in events],
        [e.timestamp for e in events],
        [tags_literal(e.tags) for e in events],
    )


class PostgresJournal(Journal):
    """Plugin API: a journal in PostgreSQL; see the module docstring for settings and design.

    `write_messages` stores its whole list in one transaction (group commit) with one
    statement; a write reusing a stored sequence number is rejected with
    `SequenceConflictError` while the others commit. A database failure raises `JournalError`.
    Replay reads pages of `replay_page_size` events by sequence number on pool connections.
    """

    def concurrent_writers(self) -> bool:
        """Plugin API: True: a server's journal takes writers from many processes and hosts."""
        return True

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._owner = type(self).__name__
        self._options = parse_options(self._owner, self.settings, _JOURNAL_KEYS)
        self._pool: asyncpg.Pool | None = None
        self._liveness = _Liveness()
        o = self._options
        self._insert = insert_events_sql(o)
        self._replay = f"""SELECT sequence_nr, manifest, payload, writer_uuid, created_at, tags
            FROM {o.table("journal")}
            WHERE persistence_id = $1 AND sequence_nr >= $2 AND sequence_nr <= $3
            AND NOT deleted ORDER BY sequence_nr LIMIT $4"""
        # Recovery's page (`replay_rows`): only the columns it needs.
        self._replay_rows = f"""SELECT sequence_nr, manifest, payload, writer_uuid
            FROM {o.table("journal")}
            WHERE persistence_id = $1 AND sequence_nr >= $2 AND sequence_nr <= $3
            AND NOT deleted ORDER BY sequence_nr LIMIT $4"""
        self._last_live = f"""SELECT max(sequence_nr) FROM {o.table("journal")}
            WHERE persistence_id = $1 AND sequence_nr <= $2 AND NOT deleted"""
        self._highest = f"""SELECT greatest(
            (SELECT max(sequence_nr) FROM {o.table("journal")} WHERE persistence_id = $1),
            (SELECT max_sequence_nr FROM {o.table("journal_metadata")}
             WHERE persistence_id = $1), 0)"""
        self._delete = f"""WITH meta AS (
                INSERT INTO {o.table("journal_metadata")} (persistence_id, max_sequence_nr)
                SELECT persistence_id, max(sequence_nr) FROM {o.table("journal")}
                WHERE persistence_id = $1 GROUP BY persistence_id
                ON CONFLICT (persistence_id) DO UPDATE SET max_sequence_nr =
                    greatest({o.table("journal_metadata")}.max_sequence_nr,
                             excluded.max_sequence_nr)),
            gone AS (
                SELECT ordering, tags FROM {o.table("journal")}
                WHERE persistence_id = $1 AND sequence_nr <= $2 AND NOT deleted FOR UPDATE),
            erased AS (
                UPDATE {o.table("journal")} AS j
                SET deleted = TRUE, manifest = '', payload = '\\x'::bytea, tags = '{{}}'
                FROM gone WHERE j.ordering = gone.ordering)
            DELETE FROM {o.table("journal_tags")} AS t
            USING gone, unnest(gone.tags) AS g(tag)
            WHERE t.tag = g.tag AND t.ordering = gone.ordering"""

    @property
    def options(self) -> Options:
        """The validated settings."""
        return self._options

    async def missing_store(self) -> str | None:
        """Why there is no journal to read here yet (None: there is); see `missing_table`."""
        return await missing_table(self._owner, self._options, "journal")

    async def start(self) -> None:
        """Plugin API: connect the pool and create the schema and tables when missing.

        Raises:
            PluginError: the server is unreachable, refuses the login, the schema cannot be
                created, or it holds foreign tables of the same names.

        """
        self._pool = await open_pool(self._owner, self._options, journal_schema(self._options),
                                     JOURNAL_COLUMNS)

    async def close(self) -> None:
        """Plugin API: close the pool; idempotent."""
        pool, self._pool = self._pool, None
        await close_pool(pool)

    def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            msg = f"{self._owner} is not started (or already closed)"
            raise JournalError(msg)
        return self._pool

    @classmethod
    def open_event_log(cls, settings: Mapping[str, Any] | None = None) -> EventLog:
        """The read side of a journal with these settings: it connects by the same DSN.

        See `journal_plugins.postgres_query.PostgresEventLog`.
        """
        return PostgresEventLog(settings)

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: store `writes` in one transaction; reject only conflicting AtomicWrites.

        Raises:
            JournalError: the database failed; whether the batch was committed is unknown
                (the connection may have dropped after the commit).

        """
        if not writes:
            return []
        pool = self._connections()
        events = [event for write in writes for event in write.payload]
        idle = await self._liveness.before_query()

        async def write(connection: _Connection) -> list[BaseException | None]:
            try:
                await connection.execute(self._insert, *event_columns(events))
            except _ONE_WRITE_ERRORS:
                return await self._write_one_by_one(connection, writes)
            return [None] * len(writes)

        try:
            return await on_live_connection(pool, idle, write)
        except _DB_ERRORS as e:
            msg = (f"{self._owner}: writing {len(writes)} atomic writes failed: "
                   f"{reason(e, self._options, 'writes')}")
            raise JournalError(msg) from e

    async def _write_one_by_one(self, connection: _Connection,
                                writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Redo a batch that hit a constraint: one savepoint per write, in one transaction."""
        results: list[BaseException | None] = []
        async with connection.transaction():
            for write in writes:
                try:
                    async with connection.transaction():  # a savepoint
                        await connection.execute(self._insert, *event_columns(write.payload))
                except asyncpg.UniqueViolationError as e:
                    conflict = SequenceConflictError(
                        f"persistence id {write.persistence_id!r} already has sequence numbers "
                        f"in {write.lowest_sequence_nr}..{write.highest_sequence_nr}")
                    conflict.__cause__ = e
                    results.append(conflict)
                except _ONE_WRITE_ERRORS as e:
                    rejected = JournalError(
                        f"write of {write.persistence_id[:80]!r} rejected: {e}")
                    rejected.__cause__ = e
                    results.append(rejected)
                else:
                    results.append(None)
        return results

    async def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        """Plugin API: yield live events with `from <= sequence_nr <= to`, at most `max_count`.

        Pages are read by sequence number, each on a pool connection released before the
        page is yielded, so a slow consumer holds no connection. `from_sequence_nr = -1`
        replays only the last live event at or below `to` (the JVM's replay-only-last).

        Raises:
            JournalError: the database failed.

        """
        async for rows in self._pages(self._replay, persistence_id, from_sequence_nr,
                                      to_sequence_nr, max_count):
            for nr, manifest, payload, writer_uuid, timestamp, tags in rows:
                yield PersistentRepr(persistence_id, nr, manifest, payload, writer_uuid,
                                     timestamp, tuple(tags))

    async def replay_rows(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[ReplayedRows]:
        """Plugin API: recovery's replay, the columns of each page of `replay_page_size` rows.

        The same pages as `replay_messages`, but only the four columns recovery needs, turned
        into columns by one ``zip`` in C instead of a `PersistentRepr` per row.

        Raises:
            JournalError: the database failed.

        """
        async for rows in self._pages(self._replay_rows, persistence_id, from_sequence_nr,
                                      to_sequence_nr, max_count):
            yield ReplayedRows.from_tuples(rows)

    async def _pages(self, query: str, persistence_id: str, from_sequence_nr: int,
                     to_sequence_nr: int, max_count: int) -> AsyncIterator[list[Any]]:
        """The non-empty pages of `query` (sequence number first), read by sequence number."""
        pool = self._connections()
        to_nr = min(to_sequence_nr, MAX_SEQUENCE_NR)
        next_nr = max(from_sequence_nr, -MAX_SEQUENCE_NR)
        remaining = max_count
        await self._liveness.before_query()
        if from_sequence_nr == -1 and max_count > 0:  # only the last live event (JVM)
            try:
                last = await _read_again_if_lost(
                    lambda: pool.fetchval(self._last_live, persistence_id, to_nr))
            except _DB_ERRORS as e:
                msg = (f"{self._owner}: replay of {persistence_id!r} failed: "
                       f"{reason(e, self._options)}")
                raise JournalError(msg) from e
            if last is None:
                return
            next_nr, remaining = int(last), 1
        while remaining > 0 and next_nr <= to_nr:
            limit = min(self._options.replay_page_size, remaining)
            try:
                rows = await _read_again_if_lost(
                    functools.partial(pool.fetch, query, persistence_id, next_nr, to_nr, limit))
            except _DB_ERRORS as e:
                msg = (f"{self._owner}: replay of {persistence_id!r} failed: "
                       f"{reason(e, self._options)}")
                raise JournalError(msg) from e
            if rows:
                yield rows
            if len(rows) < limit:
                return
            remaining -= len(rows)
            next_nr = rows[-1][0] + 1

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Plugin API: the highest sequence number ever stored, deleted or not (0 if none)."""
        pool = self._connections()
        await self._liveness.before_query()
        try:
            value = await _read_again_if_lost(lambda: pool.fetchval(self._highest, persistence_id))
        except _DB_ERRORS as e:
            msg = (f"{self._owner}: reading highest of {persistence_id!r} failed: "
                   f"{reason(e, self._options)}")
            raise JournalError(msg) from e
        return int(value)

    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Plugin API: erase events with `sequence_nr <= to_sequence_nr` (inclusive).

        One statement: payloads and tags are erased, a tombstone row keeps each sequence
        number taken, and ``journal_metadata`` records the highest.

        Raises:
            JournalError: the database failed; nothing was deleted.

        """
        pool = self._connections()
        await self._liveness.before_query()
        try:
            await pool.execute(self._delete, persistence_id, min(to_sequence_nr, MAX_SEQUENCE_NR))
        except _DB_ERRORS as e:
            msg = (f"{self._owner}: deleting events of {persistence_id!r} failed: "
                   f"{reason(e, self._options, 'deletes')}")
            raise JournalError(msg) from e


# -- snapshot store --------------------------------------------------------------------------


class PostgresSnapshotStore(SnapshotStore):
    """Plugin API: a snapshot store in PostgreSQL (table ``snapshot`` of the schema).

    Takes the same settings as `PostgresJournal` except ``replay_page_size``; it may share the
    journal's schema. Each operation is a single statement, hence atomic on its own.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._owner = type(self).__name__
        self._options = parse_options(self._owner, self.settings, _COMMON_KEYS)
        self._pool: asyncpg.Pool | None = None
        self._liveness = _Liveness()
        table = self._options.table("snapshot")
        where = ("persistence_id = $1 AND sequence_nr >= $2 AND sequence_nr <= $3 "
                 "AND created_at >= $4 AND created_at <= $5")
        self._save = f"""INSERT INTO {table}
            (persistence_id, sequence_nr, created_at, manifest, payload)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (persistence_id, sequence_nr) DO UPDATE SET
            created_at = excluded.created_at, manifest = excluded.manifest,
            payload = excluded.payload"""
        self._load = f"""SELECT sequence_nr, created_at, manifest, payload FROM {table}
            WHERE {where} ORDER BY sequence_nr DESC, created_at DESC LIMIT 1"""
        self._delete_matching = f"DELETE FROM {table} WHERE {where}"
        self._delete_one = f"""DELETE FROM {table} WHERE persistence_id = $1
            AND sequence_nr = $2 AND ($3::float8 = 0.0 OR created_at <= $3::float8)"""

    async def missing_store(self) -> str | None:
        """Why there is no snapshot store to read here yet (None: there is)."""
        return await missing_table(self._owner, self._options, "snapshot")

    async def start(self) -> None:
        """Plugin API: connect the pool and create the schema and table when missing.

        Raises:
            PluginError: as `PostgresJournal.start`.

        """
        self._pool = await open_pool(self._owner, self._options, snapshot_schema(self._options),
                                     SNAPSHOT_COLUMNS)

    async def close(self) -> None:
        """Plugin API: close the pool; idempotent."""
        pool, self._pool = self._pool, None
        await close_pool(pool)

    async def _run(self, what: str, sql: str, *args: Any, read: bool = False) -> list[Any]:
        """Run `sql`; a `read` (idempotent) is run once more if its connection was closed."""
        pool = self._pool
        if pool is None:
            msg = f"{self._owner} is not started (or already closed)"
            raise SnapshotStoreError(msg)
        idle = await self._liveness.before_query()
        try:
            if read:
                return list(await _read_again_if_lost(functools.partial(pool.fetch, sql, *args)))
            # A write: sent once, on a live connection.
            return list(await on_live_connection(
                pool, idle, lambda connection: connection.fetch(sql, *args)))
        except _DB_ERRORS as e:
            why = reason(e, self._options, None if read else "changes")
            msg = f"{self._owner}: {what} failed: {why}"
            raise SnapshotStoreError(msg) from e

    async def load(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> SelectedSnapshot | None:
        """Plugin API: the matching snapshot with the highest sequence number, or None."""
        if criteria.is_none:
            return None
        rows = await self._run(f"loading a snapshot of {persistence_id!r}", self._load,
                               persistence_id, *_criteria_params(criteria), read=True)
        if not rows:
            return None
        nr, timestamp, manifest, payload = rows[0]
        return SelectedSnapshot(SnapshotMetadata(persistence_id, nr, timestamp), manifest,
                                bytes(payload))

    async def save(self, metadata: SnapshotMetadata, manifest: str, payload: bytes) -> None:
        """Plugin API: store a snapshot, replacing any at the same sequence number."""
        await self._run(f"saving a snapshot of {metadata.persistence_id!r}", self._save,
                        metadata.persistence_id, metadata.sequence_nr, metadata.timestamp,
                        manifest, payload)

    async def delete(self, metadata: SnapshotMetadata) -> None:
        """Plugin API: delete the snapshot at `metadata.sequence_nr`.

        A non-zero `metadata.timestamp` only deletes a snapshot taken at or before it.
        """
        await self._run(f"deleting a snapshot of {metadata.persistence_id!r}", self._delete_one,
                        metadata.persistence_id, metadata.sequence_nr, metadata.timestamp)

    async def delete_by_criteria(
        self, persistence_id: str, criteria: SnapshotSelectionCriteria
    ) -> None:
        """Plugin API: delete every snapshot of `persistence_id` matching `criteria`."""
        await self._run(f"deleting snapshots of {persistence_id!r}", self._delete_matching,
                        persistence_id, *_criteria_params(criteria))


def _criteria_params(criteria: SnapshotSelectionCriteria) -> tuple[Any, ...]:
    # float8 holds IEEE infinities, so the default open bound binds as is.
    return (criteria.min_sequence_nr, min(criteria.max_sequence_nr, MAX_SEQUENCE_NR),
            float(criteria.min_timestamp), float(criteria.max_timestamp))
