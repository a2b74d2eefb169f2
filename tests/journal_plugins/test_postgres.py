"""The PostgreSQL plugins against the TCKs, plus what only a shared server can get wrong."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import secrets
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from journal_plugins.postgres import (
    _IDLE_CHECK,
    DSN_ENV_VAR,
    PostgresJournal,
    PostgresSnapshotStore,
    redact,
    tags_literal,
)
from journal_plugins.postgres_query import PostgresEventLog
from persistent_actors import ActorSystem
from persistent_actors.errors import ConfigError, JournalError, PluginError, SnapshotStoreError
from persistent_actors.journal import MAX_SEQUENCE_NR, AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria, SnapshotStore
from persistent_actors.testing import TestProbe
from persistent_actors.testing.journal_spec import JournalSpec
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec
from tests.conftest import system_config
from tests.pg import DSN, drop_schema, require_postgres, schema_for, settings
from tests.plugin_actors import Counter


@pytest.fixture
def own_schema(tmp_path: Path) -> Iterator[None]:
    """The server, and a schema of the test's own, dropped after (the settings tests need
    neither)."""
    require_postgres()
    yield
    drop_schema(schema_for(tmp_path))


@pytest.mark.usefixtures("own_schema")
class TestPostgresJournal(JournalSpec):
    supports_replay_only_last = True

    async def create_journal(self, tmp_path: Path) -> Journal:
        # A small page size makes the TCK's replays cross page boundaries.
        return PostgresJournal(settings(schema_for(tmp_path), replay_page_size=3))


@pytest.mark.usefixtures("own_schema")
class TestPostgresSnapshotStore(SnapshotStoreSpec):
    async def create_snapshot_store(self, tmp_path: Path) -> SnapshotStore:
        return PostgresSnapshotStore(settings(schema_for(tmp_path)))


def _event(pid: str, nr: int, *tags: str) -> AtomicWrite:
    return AtomicWrite((PersistentRepr(pid, nr, "m", b"e-%d" % nr, "w", 1.5, tags),))


async def _replay(journal: Journal, pid: str) -> list[PersistentRepr]:
    return [e async for e in journal.replay_messages(pid, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)]


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dsn", ""),
        ("dsn", 5),
        ("schema", "bad-name"),
        ("schema", 'x"; DROP SCHEMA public; --'),
        ("schema", "1abc"),
        ("schema", "s" * 56),  # its NOTIFY channel "<schema>.journal" would not fit 63 bytes
        ("pool_size", 0),
        ("pool_size", True),
        ("connect_timeout", 0),
        ("connect_timeout", math.nan),  # the connect failed with no reason given
        ("connect_timeout", math.inf),  # the start waited for ever, deaf to SIGTERM
        ("dsn", "postgresql://postgres@127.0.0.1:notaport/test"),  # a bare ValueError
        ("replay_page_size", 0),
        ("dns", "postgresql://x"),
    ],
)
def test_bad_setting_is_a_config_error_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=repr(key)):
        PostgresJournal({"dsn": DSN, key: value})


def test_dsn_defaults_to_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DSN_ENV_VAR, "postgresql://from-env/db")
    assert PostgresJournal({}).options.dsn == "postgresql://from-env/db"
    monkeypatch.delenv(DSN_ENV_VAR)
    with pytest.raises(ConfigError, match=f"'dsn'.*{DSN_ENV_VAR}"):
        PostgresSnapshotStore({})


def test_snapshot_store_rejects_journal_only_setting() -> None:
    with pytest.raises(ConfigError, match="'replay_page_size'"):
        PostgresSnapshotStore({"dsn": DSN, "replay_page_size": 10})


def test_passwords_never_appear_in_messages() -> None:
    assert redact("postgresql://bob:s3cret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert "s3cret" not in redact("postgresql://db/x?password=s3cret&sslmode=off")
    assert "s3cret" not in redact("host=db password=s3cret user=bob")


def test_tags_become_array_literals_for_any_text() -> None:
    assert tags_literal(()) == "{}"
    assert tags_literal(("a", 'q"uote', "back\\slash", "NULL", "{,}")) == (
        '{"a","q\\"uote","back\\\\slash","NULL","{,}"}')


@pytest.mark.usefixtures("own_schema")
async def test_awkward_tags_round_trip(tmp_path: Path) -> None:
    tags = ("NULL", 'q"uote', "back\\slash", "{,}", " spaced ", "", "日本")
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    await journal.start()
    try:
        assert await journal.write_messages([_event("p", 1, *tags)]) == [None]
        assert [e.tags for e in await _replay(journal, "p")] == [tags]
    finally:
        await journal.close()


# --- start-up and failure ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", [PostgresJournal, PostgresSnapshotStore])
async def test_unreachable_server_fails_start_naming_it_without_password(
        cls: type[Any], tmp_path: Path) -> None:
    plugin = cls({"dsn": "postgresql://bob:s3cret@127.0.0.1:1/test", "connect_timeout": 2,
                  "schema": schema_for(tmp_path)})
    with pytest.raises(PluginError, match=r"127\.0\.0\.1:1") as info:
        await plugin.start()
    assert "s3cret" not in str(info.value)
    await plugin.close()


@pytest.mark.usefixtures("own_schema")
async def test_foreign_table_of_the_same_name_is_refused(tmp_path: Path) -> None:
    schema = schema_for(tmp_path)
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        await connection.execute(f'CREATE TABLE "{schema}".journal (id int, body text)')
    finally:
        await connection.close()
    journal = PostgresJournal(settings(schema))
    with pytest.raises(PluginError, match="did not create"):
        await journal.start()
    await journal.close()


async def test_operations_before_start_fail_clearly(tmp_path: Path) -> None:
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    with pytest.raises(JournalError, match="not started"):
        await journal.write_messages([_event("p", 1)])


@pytest.mark.usefixtures("own_schema")
async def test_plugins_started_together_share_one_new_schema(tmp_path: Path) -> None:
    schema = schema_for(tmp_path)
    plugins: list[Any] = [PostgresJournal(settings(schema)) for _ in range(3)]
    plugins += [PostgresSnapshotStore(settings(schema)) for _ in range(2)]
    try:
        await asyncio.gather(*(plugin.start() for plugin in plugins))
        assert await plugins[0].write_messages([_event("p", 1)]) == [None]
        assert [e.sequence_nr for e in await _replay(plugins[2], "p")] == [1]
    finally:
        for plugin in plugins:
            await plugin.close()


def _with_query(dsn: str, parameter: str) -> str:
    return dsn + ("&" if "?" in dsn else "?") + parameter


_READ_ONLY: Final = "options=-c%20default_transaction_read_only%3Don"


@contextlib.asynccontextmanager
async def _role(tmp_path: Path, *grants: str) -> AsyncIterator[str]:
    """A login role of the test's own with `grants` on its schema's objects; the role's DSN."""
    role = schema_for(tmp_path) + "_role"
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f'CREATE ROLE "{role}" LOGIN')
        for grant in grants:
            await connection.execute(grant.format(role=f'"{role}"',
                                                  schema=f'"{schema_for(tmp_path)}"'))
        parts = urlsplit(DSN)
        yield urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    finally:
        await connection.execute(f'DROP OWNED BY "{role}"')
        await connection.execute(f'DROP ROLE "{role}"')
        await connection.close()


async def _stored_schema(tmp_path: Path) -> None:
    """The test's schema with one event of "p" and one snapshot, made by the plugins."""
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    snapshots = PostgresSnapshotStore(settings(schema_for(tmp_path)))
    await journal.start()
    await snapshots.start()
    try:
        assert await journal.write_messages([_event("p", 1)]) == [None]
        await snapshots.save(SnapshotMetadata("p", 1, 2.0), "m", b"s")
    finally:
        await journal.close()
        await snapshots.close()


@pytest.mark.usefixtures("own_schema")
@pytest.mark.parametrize("how", ["default_transaction_read_only", "role granted SELECT"])
async def test_a_read_only_connection_reads_an_existing_schema(tmp_path: Path, how: str) -> None:
    # A hot standby, a read-only setting or a role granted only SELECT: start failed, since it
    # ran the schema's CREATE ... IF NOT EXISTS (refused there although nothing was missing).
    await _stored_schema(tmp_path)
    async with contextlib.AsyncExitStack() as stack:
        if how == "default_transaction_read_only":
            dsn = _with_query(DSN, _READ_ONLY)
            hint = "is read-only: a hot standby, or default_transaction_read_only is on"
        else:
            dsn = await stack.enter_async_context(_role(
                tmp_path, "GRANT USAGE ON SCHEMA {schema} TO {role}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}"))
            hint = "lacks a privilege on schema"
        journal = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path)})
        snapshots = PostgresSnapshotStore({"dsn": dsn, "schema": schema_for(tmp_path)})
        await journal.start()
        stack.push_async_callback(journal.close)
        await snapshots.start()
        stack.push_async_callback(snapshots.close)
        assert [e.sequence_nr for e in await _replay(journal, "p")] == [1]
        assert await journal.read_highest_sequence_nr("p", 0) == 1
        loaded = await snapshots.load("p", SnapshotSelectionCriteria.latest())
        assert loaded is not None
        assert loaded.metadata.sequence_nr == 1
        # Writes are refused, saying why.
        with pytest.raises(JournalError, match=hint):
            await journal.write_messages([_event("p", 2)])
        with pytest.raises(JournalError, match=hint):
            await journal.delete_messages_to("p", 1)
        with pytest.raises(SnapshotStoreError, match=hint):
            await snapshots.save(SnapshotMetadata("p", 2, 3.0), "m", b"s")
        # A schema that is not there cannot be made: the error names it and says why.
        absent = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path) + "_none"})
        with pytest.raises(PluginError, match=f"cannot set up schema "
                           f"'{schema_for(tmp_path)}_none'.*missing schema") as info:
            await absent.start()
        assert ("read-only" if how == "default_transaction_read_only" else
                "permission denied") in str(info.value)
        await absent.close()


@pytest.mark.usefixtures("own_schema")
async def test_a_role_that_may_only_read_and_write_the_tables_starts_and_writes(
        tmp_path: Path) -> None:
    # The usual least-privilege role (the schema made once by its owner): start failed with
    # "permission denied for schema", as the setup ran CREATE ... IF NOT EXISTS regardless.
    await _stored_schema(tmp_path)
    async with _role(tmp_path, "GRANT USAGE ON SCHEMA {schema} TO {role}",
                     "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} "
                     "TO {role}") as dsn:
        journal = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path)})
        snapshots = PostgresSnapshotStore({"dsn": dsn, "schema": schema_for(tmp_path)})
        await journal.start()
        await snapshots.start()
        try:
            assert await journal.write_messages([_event("p", 2, "t")]) == [None]
            await journal.delete_messages_to("p", 1)
            assert [e.sequence_nr for e in await _replay(journal, "p")] == [2]
            await snapshots.save(SnapshotMetadata("p", 2, 3.0), "m", b"s")
        finally:
            await journal.close()
            await snapshots.close()


@pytest.mark.usefixtures("own_schema")
async def test_an_application_name_in_the_dsn_is_kept(tmp_path: Path) -> None:
    # Ours replaced it (asyncpg's server_settings win over the DSN's parameters), so an
    # operator could not find the service's sessions in pg_stat_activity by its own name.
    for parameter, expected in (("application_name=billing", "billing"),
                                ("options=-c%20application_name%3Dbilling-2", "billing-2"),
                                ("", "persistent_actors")):
        dsn = _with_query(DSN, parameter) if parameter else DSN
        journal = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path)})
        log = PostgresEventLog({"dsn": dsn, "schema": schema_for(tmp_path)})
        await journal.start()
        try:
            pool = journal._connections()
            assert await pool.fetchval("SELECT current_setting('application_name')") == expected
            query_pool = await log._connections()
            assert await query_pool.fetchval("SELECT current_setting('application_name')") == (
                expected if parameter else "persistent_actors-query")
            await log.wait_for_change(await log.highest_ordering(), 0.01)  # opens the listener
            assert log._listener is not None
            assert await log._listener.fetchval("SELECT current_setting('application_name')") \
                == (expected if parameter else "persistent_actors-listen")
        finally:
            await log.close()
            await journal.close()


@pytest.mark.usefixtures("own_schema")
async def test_a_value_postgres_cannot_store_rejects_only_its_write(tmp_path: Path) -> None:
    """Text may not hold NUL in PostgreSQL: that write is rejected, its batch neighbours stored."""
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    await journal.start()
    try:
        results = await journal.write_messages(
            [_event("p", 1), _event("bad\x00id", 1), _event("p", 2)])
        assert results[0] is None
        assert isinstance(results[1], JournalError)
        assert results[2] is None
        assert [e.sequence_nr for e in await _replay(journal, "p")] == [1, 2]
    finally:
        await journal.close()


@pytest.mark.usefixtures("own_schema")
async def test_writer_id_and_timestamp_are_stored_per_event(tmp_path: Path) -> None:
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    await journal.start()
    try:
        events = [PersistentRepr("p", nr, "m", b"x", f"writer-{nr}", 1_700_000_000.123456 + nr)
                  for nr in (1, 2)]
        assert await journal.write_messages([AtomicWrite((e,)) for e in events]) == [None] * 2
        assert await _replay(journal, "p") == events
    finally:
        await journal.close()


# --- a server that closed its connections (a restart) -----------------------------------------


class _Proxy:
    """A TCP forwarder to the test server that can drop every connection, as a restart does."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        host, port = _server_address()
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((host, port))
            with self._lock:
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def drop_connections(self) -> None:
        """Close every forwarded connection (the listener stays: the server is back)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.drop_connections()
        self._listener.close()


def _server_address() -> tuple[str, int]:
    parts = urlsplit(DSN)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _idle() -> None:
    """Longer than the plugin's idle check, with the loop not running (as in a plugin host)."""
    time.sleep(_IDLE_CHECK + 0.2)


@pytest.mark.usefixtures("own_schema")
async def test_connections_the_server_closed_while_idle_are_replaced(tmp_path: Path) -> None:
    # The plugin's loop runs only during its operations: connections a restarted server had
    # closed stayed in the pool looking alive, and the next write, replay, highest-number
    # read and snapshot load failed ("connection was closed in the middle of operation").
    proxy = _Proxy()
    parts = urlsplit(DSN)
    dsn = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:"
                                           f"{proxy.port}"))
    journal = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path), "pool_size": 2})
    snapshots = PostgresSnapshotStore({"dsn": dsn, "schema": schema_for(tmp_path)})
    await journal.start()
    await snapshots.start()
    try:
        assert await journal.write_messages([_event("p", 1)]) == [None]
        await snapshots.save(SnapshotMetadata("p", 1, 2.0), "m", b"s")
        proxy.drop_connections()
        _idle()
        assert await journal.write_messages([_event("p", 2)]) == [None]
        proxy.drop_connections()
        _idle()
        assert await journal.read_highest_sequence_nr("p", 0) == 2
        proxy.drop_connections()
        _idle()
        assert [e.sequence_nr for e in await _replay(journal, "p")] == [1, 2]
        proxy.drop_connections()
        _idle()
        loaded = await snapshots.load("p", SnapshotSelectionCriteria.latest())
        assert loaded is not None
        assert loaded.metadata.sequence_nr == 1
    finally:
        await journal.close()
        await snapshots.close()
        proxy.close()


@pytest.mark.usefixtures("own_schema")
async def test_the_event_log_reads_again_on_a_connection_the_server_closed(
        tmp_path: Path) -> None:
    # A live query's read on a connection the server had closed ended the query with a
    # JournalError; its reads are idempotent, as the journal's own are retried once.
    proxy = _Proxy()
    parts = urlsplit(DSN)
    dsn = urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:"
                                           f"{proxy.port}"))
    journal = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path)})
    log = PostgresEventLog({"dsn": dsn, "schema": schema_for(tmp_path)})
    await journal.start()
    try:
        assert await journal.write_messages([_event("p", 1)]) == [None]
        first = await log.highest_ordering()
        proxy.drop_connections()
        time.sleep(0.2)  # the loop does not run: the close goes unnoticed, as in a plugin host
        assert await log.highest_ordering() == first
    finally:
        await log.close()
        await journal.close()
        proxy.close()


@pytest.mark.usefixtures("own_schema")
async def test_an_index_row_too_large_rejects_only_its_write(tmp_path: Path) -> None:
    # A 3,000-character tag or id fits SQLite, not a PostgreSQL index row: it failed the whole
    # group commit (ProgramLimitExceededError), stopping every writer of the batch.
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    await journal.start()
    try:
        long = secrets.token_hex(1500)  # 3,000 characters that do not compress
        results = await journal.write_messages(
            [_event("p", 1), _event("q", 1, long), _event(long, 1), _event("p", 2)])
        assert results[0] is None
        assert results[3] is None
        for rejected in results[1:3]:
            assert isinstance(rejected, JournalError)
            assert "index row size" in str(rejected)
            assert len(str(rejected)) < 1000  # the id is cut in the message
        assert [e.sequence_nr for e in await _replay(journal, "p")] == [1, 2]
    finally:
        await journal.close()


@pytest.mark.parametrize("base", ["simple", pytest.param("multiproc-tcp",
                                                         marks=pytest.mark.multiproc)])
@pytest.mark.usefixtures("own_schema")
def test_persists_after_the_server_closed_idle_sessions_are_stored(
        tmp_path: Path, base: str) -> None:
    # idle_session_timeout (as a proxy's idle timeout or a server restart): the persist after
    # an idle spell failed on the closed connection ("another operation is in progress"), and
    # so did the next recovery.
    pg = {"plugin": "postgres", "dsn": DSN + "?idle_session_timeout=1000",
          "schema": schema_for(tmp_path)}
    with ActorSystem("idle", config=system_config(base, journal=pg,
                                                  snapshot_store=dict(pg))) as system:
        probe = TestProbe(system)
        counter = system.actor_of(Counter, "acct", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        for n in range(1, 4):
            time.sleep(1.5)  # the server closes the pool's connections meanwhile
            counter.tell(n)
            assert probe.expect_msg(timeout=10) == ("persisted", n, n)
        system.stop(counter)
        time.sleep(1.5)
        system.actor_of(Counter, "acct", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 6, 3)


@pytest.mark.usefixtures("own_schema")
async def test_a_live_wait_cancelled_while_it_connects_prints_nothing(tmp_path: Path) -> None:
    # Stopping a live query (or a projection) while its LISTEN connection was being opened:
    # asyncpg's TLS negotiation future got ConnectionError('unexpected connection_lost() call')
    # with no one awaiting it, and asyncio printed "Future exception was never retrieved".
    journal = PostgresJournal(settings(schema_for(tmp_path)))
    await journal.start()
    await journal.close()
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        for attempt in range(60):
            log = PostgresEventLog(settings(schema_for(tmp_path)))
            await log.highest_ordering()
            wait = asyncio.ensure_future(log.wait_for_change(2**62, 30))
            await asyncio.sleep(0.0004 * attempt)
            wait.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await wait
            await log.close()
            await asyncio.sleep(0.005)
            gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert [context["message"] for context in reported] == []


def test_a_connect_that_stopped_waiting_leaves_no_unretrieved_error() -> None:
    # The same, without timing: the negotiation's socket closes after its connect gave up.
    # A connect still waiting gets the error as before.
    loop = asyncio.new_event_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    context = ssl.create_default_context()
    try:
        abandoned = asyncpg.connect_utils.TLSUpgradeProto(loop, "127.0.0.1", 5432, context, False)
        abandoned.connection_lost(None)
        assert abandoned.on_data.done()
        del abandoned
        gc.collect()
        waited = asyncpg.connect_utils.TLSUpgradeProto(loop, "127.0.0.1", 5432, context, False)
        waiter = loop.create_task(_await(waited.on_data))
        loop.call_soon(waited.connection_lost, None)
        with pytest.raises(ConnectionError, match="unexpected connection_lost"):
            loop.run_until_complete(waiter)
    finally:
        loop.close()
    assert reported == []


async def _await(future: asyncio.Future[Any]) -> Any:
    return await future


async def test_a_server_that_never_answers_is_a_timeout_naming_it(tmp_path: Path) -> None:
    # A hung or overloaded server: start said "cannot set up schema ...: " and the read side
    # "... failed: ", with no reason (a TimeoutError has no text).
    silent = socket.create_server(("127.0.0.1", 0))
    dsn = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/test"
    plugin_settings = {"dsn": dsn, "schema": schema_for(tmp_path), "connect_timeout": 0.3}
    try:
        for plugin in (PostgresJournal(plugin_settings), PostgresSnapshotStore(plugin_settings)):
            with pytest.raises(PluginError, match=r"cannot connect to PostgreSQL at .*: timed "
                               r"out \(no answer within connect_timeout = 0\.3 s\)"):
                await plugin.start()
            await plugin.close()
        log = PostgresEventLog(plugin_settings)
        with pytest.raises(JournalError, match=r"failed: timed out \(no answer within "
                           r"connect_timeout = 0\.3 s\)"):
            await log.highest_ordering()
        await log.close()
    finally:
        silent.close()


def _terminate_sessions(application_name: str) -> int:
    """pg_terminate_backend of the sessions named so, from a thread of its own: the caller's
    loop does not run meanwhile (as a plugin's between its operations); returns how many."""
    ended: list[int] = []

    async def terminate() -> None:
        admin = await asyncpg.connect(DSN)
        try:
            ended.append(int(await admin.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM "
                "pg_stat_activity WHERE application_name = $1) AS t", application_name)))
        finally:
            await admin.close()

    thread = threading.Thread(target=asyncio.run, args=(terminate(),))
    thread.start()
    thread.join()
    return ended[0]


@pytest.mark.usefixtures("own_schema")
async def test_writes_soon_after_the_server_ended_pooled_sessions_go_out(tmp_path: Path) -> None:
    # Under traffic (no idle second, so no SELECT 1 first), a write on a pooled connection the
    # server had ended 50 ms before (pg_terminate_backend, a restart) failed, though nothing of
    # it was sent: every actor of its group commit stopped.
    name = f"pa_test_{secrets.token_hex(4)}"
    dsn = _with_query(DSN, f"application_name={name}")
    journal = PostgresJournal({"dsn": dsn, "schema": schema_for(tmp_path)})
    snapshots = PostgresSnapshotStore({"dsn": dsn, "schema": schema_for(tmp_path)})
    await journal.start()
    await snapshots.start()
    try:
        for nr in range(1, 6):
            assert await journal.write_messages([_event("p", nr)]) == [None]
            await snapshots.save(SnapshotMetadata("p", nr, 2.0), "m", b"s")
            assert _terminate_sessions(name) >= 1
            time.sleep(0.05)
        assert [e.sequence_nr for e in await _replay(journal, "p")] == [1, 2, 3, 4, 5]
        loaded = await snapshots.load("p", SnapshotSelectionCriteria.latest())
        assert loaded is not None
        assert loaded.metadata.sequence_nr == 5
    finally:
        await journal.close()
        await snapshots.close()


@pytest.mark.usefixtures("own_schema")
async def test_a_table_the_role_was_granted_nothing_on_is_not_called_missing(
        tmp_path: Path) -> None:
    # information_schema shows only what the role may use: the snapshot table read as missing
    # ("has no snapshot table", and start tried to create it), where the role lacked SELECT.
    await _stored_schema(tmp_path)
    async with _role(tmp_path, "GRANT USAGE ON SCHEMA {schema} TO {role}",
                     "GRANT SELECT ON {schema}.journal TO {role}") as dsn:
        snapshots = PostgresSnapshotStore({"dsn": dsn, "schema": schema_for(tmp_path)})
        assert await snapshots.missing_store() is None
        await snapshots.start()
        try:
            with pytest.raises(SnapshotStoreError, match="permission denied for table snapshot"):
                await snapshots.load("p", SnapshotSelectionCriteria.latest())
        finally:
            await snapshots.close()


@pytest.mark.usefixtures("own_schema")
def test_the_event_log_serves_one_event_loop_after_another(tmp_path: Path) -> None:
    # A second asyncio.run (a script's second step, a test with a loop of its own) failed on
    # every read with "Event loop is closed": the pool belonged to the first loop.
    async def write() -> None:
        journal = PostgresJournal(settings(schema_for(tmp_path)))
        await journal.start()
        try:
            assert await journal.write_messages([_event("p", 1), _event("p", 2)]) == [None] * 2
        finally:
            await journal.close()

    asyncio.run(write())
    log = PostgresEventLog(settings(schema_for(tmp_path)))
    assert asyncio.run(log.highest_ordering()) >= 2

    async def read_and_wait() -> list[int]:
        await log.wait_for_change(2**62, 0.05)  # the listener, opened on this loop
        page = await log.fetch_events(0, 10)
        return [stored.event.sequence_nr for stored in page.events]

    assert asyncio.run(read_and_wait()) == [1, 2]
    assert asyncio.run(read_and_wait()) == [1, 2]
    asyncio.run(log.close())
