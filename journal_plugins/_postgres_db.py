"""Settings and a pool helper shared by the PostgreSQL journal, snapshot store and read side."""

from __future__ import annotations

import dataclasses
import os
import re
import zlib
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import asyncpg.connect_utils

from persistent_actors.errors import ConfigError
from persistent_actors.journal import check_settings
from persistent_actors.journal import int_setting as _int

__all__ = [
    "DEFAULT_SCHEMA",
    "DSN_ENV_VAR",
    "Options",
    "parse_options",
    "reason",
    "redact",
    "reset_connection",
    "server_settings",
]

DSN_ENV_VAR: Final = "PERSISTENT_ACTORS_PG_DSN"
DEFAULT_SCHEMA: Final = "persistent_actors"


def _quiet_cancelled_connects() -> None:
    """Keep asyncpg from logging an error nobody could have handled when a connect is cancelled.

    asyncpg opens every connection by asking the server for TLS (``sslmode=prefer`` by
    default) and awaits the answer on a future of `asyncpg.connect_utils.TLSUpgradeProto`. A
    connect cancelled there (a live query or projection stopped while its listening connection
    opened, a timeout, a shutdown) closes the socket, and the protocol's ``connection_lost``
    then sets ``ConnectionError('unexpected connection_lost() call')`` on a future no one awaits
    any more: asyncio printed "Future exception was never retrieved" with a traceback on
    stderr. The exception is marked retrieved; a connect that still waits has it raised as
    before, so no error is hidden.
    """
    proto = getattr(getattr(asyncpg, "connect_utils", None), "TLSUpgradeProto", None)
    lost = getattr(proto, "connection_lost", None)
    if proto is None or lost is None or getattr(lost, "quiet_when_cancelled", False):
        return

    def connection_lost(self: Any, exc: Exception | None) -> None:
        future = getattr(self, "on_data", None)
        if future is None or future.done():
            lost(self, exc)
            return
        lost(self, exc)
        if future.done() and not future.cancelled():
            future.exception()  # marks it retrieved; a waiting connect still has it raised

    connection_lost.quiet_when_cancelled = True  # type: ignore[attr-defined]
    proto.connection_lost = connection_lost


_quiet_cancelled_connects()

# What a database call may raise (the server, the connection, the driver itself).
DB_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                    OSError, TimeoutError)
# A connection the server closed (a restart, an idle timeout) before or during a query, or
# left unusable by an operation cut off with it: an idempotent read may run again.
LOST: Final = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
               asyncpg.InternalClientError, ConnectionError)
_COMMON_KEYS: Final = frozenset({"dsn", "schema", "pool_size", "connect_timeout"})
_JOURNAL_KEYS: Final = _COMMON_KEYS | {"replay_page_size"}
# A plain identifier: quoted anyway, but also used in the NOTIFY channel and lock key.
# At most 55 characters: PostgreSQL's identifiers take 63, but the NOTIFY channel of a commit,
# "<schema>.journal", must fit them too (a longer name passed and every write was rejected).
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,54}")
# Advisory-lock class ids ("PAJ1", "PAS1"): the ordering lock and the schema-setup lock.
_ORDERING_LOCK_CLASS: Final = 0x50414A31
_SETUP_LOCK_CLASS: Final = 0x50415331


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Validated settings of a PostgreSQL plugin (see the module docstring)."""

    dsn: str
    schema: str
    pool_size: int
    connect_timeout: float
    replay_page_size: int

    @property
    def lock_key(self) -> int:
        """The advisory-lock object id of this schema (a signed 32-bit int)."""
        value = zlib.crc32(self.schema.encode())
        return value - 2**32 if value >= 2**31 else value

    @property
    def channel(self) -> str:
        """The NOTIFY channel a commit to this schema's journal signals on."""
        return f"{self.schema}.journal"

    def table(self, name: str) -> str:
        """`name` qualified by the (quoted) schema."""
        return f'"{self.schema}".{name}'


def parse_options(owner: str, settings: Mapping[str, Any],
                  allowed: frozenset[str] = _JOURNAL_KEYS) -> Options:
    """Validate `settings`; raise `ConfigError` naming the bad key and what was expected."""
    check_settings(owner, settings, allowed)
    dsn = settings.get("dsn", os.environ.get(DSN_ENV_VAR))
    if dsn is None:
        msg = (f"{owner}: setting 'dsn' is required (a PostgreSQL connection string such as "
               f"'postgresql://127.0.0.1:5432/test'), or set the {DSN_ENV_VAR} variable")
        raise ConfigError(msg)
    if not isinstance(dsn, str) or not dsn.strip():
        msg = f"{owner}: setting 'dsn' must be a non-empty str, got {dsn!r}"
        raise ConfigError(msg)
    schema = settings.get("schema", DEFAULT_SCHEMA)
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        msg = (f"{owner}: setting 'schema' must be an identifier (letters, digits, '_'; at "
               f"most 55 characters, not starting with a digit), got {schema!r}")
        raise ConfigError(msg)
    timeout = settings.get("connect_timeout", 10.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or \
            not 0 < timeout <= _MAX_CONNECT_TIMEOUT:  # NaN fails (the connect failed unsaid)
        msg = (f"{owner}: setting 'connect_timeout' must be a number of seconds in (0, "
               f"{_MAX_CONNECT_TIMEOUT:g}], got {timeout!r}")
        raise ConfigError(msg)
    _check_dsn(owner, dsn)
    return Options(dsn=dsn, schema=schema,
                   # (10**20 connections: the pool's set-up spun for ever, never yielding)
                   pool_size=_int(owner, settings, "pool_size", 4, minimum=1, maximum=1000),
                   connect_timeout=float(timeout),
                   replay_page_size=_int(owner, settings, "replay_page_size", 1000, minimum=1,
                                         maximum=1_000_000))


_MAX_CONNECT_TIMEOUT: Final = 3600.0


def _check_dsn(owner: str, dsn: str) -> None:
    """Refuse a URL-style `dsn` whose port is not a number (asyncpg raised a bare ValueError)."""
    if "://" not in dsn:
        return
    try:
        for host in urlsplit(dsn).netloc.rpartition("@")[2].split(","):
            port = host.rpartition("]")[2].partition(":")[2]
            if port:
                int(port)
    except ValueError:
        msg = (f"{owner}: setting 'dsn' {redact(dsn)!r} has a port that is not a number "
               "(expected e.g. 'postgresql://127.0.0.1:5432/test')")
        raise ConfigError(msg) from None


def redact(dsn: str) -> str:
    """`dsn` with any password replaced by ``***``, fit for error messages."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            user = parts.username or ""
            parts = parts._replace(netloc=f"{user}:***@{host}")
        return re.sub(r"(password=)[^&]*", r"\1***", urlunsplit(parts))
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)


async def reset_connection(connection: asyncpg.Connection) -> None:
    """Pool reset: undo only a transaction left open (a cancelled operation).

    The plugins leave no other session state behind; asyncpg's default reset would cost a
    round trip on every release of a pooled connection.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def reason(error: BaseException, o: Options, refused: str | None = None) -> str:
    """`error` as the text of a message; with `refused` ("writes"), why the server refused it.

    A timeout has no text of its own (a start or a read failed with "...: " and nothing
    after); a read-only connection (a hot standby, ``default_transaction_read_only``) or a
    role without the privilege reads the schema but cannot change it, and the server's
    message alone ("cannot execute INSERT in a read-only transaction") did not say what to do.
    """
    text = str(error)
    if not text:
        text = (f"timed out (no answer within connect_timeout = {o.connect_timeout:g} s)"
                if isinstance(error, TimeoutError) else type(error).__name__)
    if refused is None:
        return text
    if isinstance(error, asyncpg.ReadOnlySQLTransactionError):
        return (f"{text} (the connection to {redact(o.dsn)!r} is read-only: a hot standby, or "
                f"default_transaction_read_only is on; {refused} need a writable primary)")
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        return (f"{text} (the role of {redact(o.dsn)!r} lacks a privilege on schema "
                f"{o.schema!r} that {refused} need)")
    return text


def server_settings(dsn: str, application_name: str) -> dict[str, str]:
    """The session settings a plugin connects with: `application_name` unless `dsn` names one.

    asyncpg lets the ``server_settings`` argument win over the DSN's parameters, and the server
    applies a startup parameter after the DSN's ``options=-c ...``, so ours replaced the name
    an operator gave (``?application_name=billing``) to find the service's sessions in
    ``pg_stat_activity``.
    """
    if "://" in dsn:
        try:
            query = parse_qs(urlsplit(dsn).query)
        except ValueError:
            query = {}
        if "application_name" in query or any("application_name" in option
                                              for option in query.get("options", ())):
            return {}
    return {"application_name": application_name}
