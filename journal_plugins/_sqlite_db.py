"""What the SQLite plugins share: settings, file checks, schema, connections, row folding.

`sqlite.py` (journal, snapshot store) and `sqlite_query.py` (the event log) both build on it:
every connection is a `_Connection` opened by `_connect` (one place for the pragmas), and every
page of events the read side queries is read with the same columns and folded by
`_fold_events` (the journal's replay reads its pages without the tag join: `sqlite._replay_page`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

from persistent_actors.errors import ConfigError, PluginError
from persistent_actors.event_log import StoredEvent, change_signal
from persistent_actors.journal import PersistentRepr, check_settings, may_block

T = TypeVar("T")

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100

_SYNCHRONOUS_MODES: Final = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})
# MEMORY and OFF journal modes are left out: a crash mid-transaction can corrupt the file.
_JOURNAL_MODES: Final = frozenset({"WAL", "DELETE", "TRUNCATE", "PERSIST"})
_COMMON_KEYS: Final = frozenset({"path", "synchronous", "journal_mode", "busy_timeout"})
_JOURNAL_KEYS: Final = _COMMON_KEYS | {"replay_page_size"}

# `ordering` is a plain INTEGER PRIMARY KEY: SQLite gives a new row max(ordering) + 1, and the
# journal never purges the row holding the largest ordering (`sqlite._PURGE` leaves it as a
# tombstone), so the largest never goes down and no ordering is ever given twice, which the event
# log's offsets rely on. AUTOINCREMENT guaranteed the same with its `sqlite_sequence` row, which
# each commit rewrote: one more page and WAL frame per one-event write. Files created with
# AUTOINCREMENT (before) keep it and work unchanged.
_JOURNAL_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS journal (
        ordering INTEGER PRIMARY KEY,
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        payload BLOB NOT NULL,
        writer_uuid TEXT NOT NULL,
        timestamp REAL NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        UNIQUE (persistence_id, sequence_nr)
    )""",
    """CREATE TABLE IF NOT EXISTS journal_tags (
        ordering INTEGER NOT NULL,
        position INTEGER NOT NULL,
        tag TEXT NOT NULL,
        PRIMARY KEY (ordering, position)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS journal_tags_by_tag ON journal_tags (tag, ordering)",
    """CREATE TABLE IF NOT EXISTS journal_metadata (
        persistence_id TEXT PRIMARY KEY,
        max_sequence_nr INTEGER NOT NULL
    )""",
)
_JOURNAL_COLUMNS: Final = {
    "journal": {
        "ordering",
        "persistence_id",
        "sequence_nr",
        "manifest",
        "payload",
        "writer_uuid",
        "timestamp",
        "deleted",
    },
    "journal_tags": {"ordering", "position", "tag"},
    "journal_metadata": {"persistence_id", "max_sequence_nr"},
}

_SNAPSHOT_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS snapshot (
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL,
        timestamp REAL NOT NULL,
        manifest TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (persistence_id, sequence_nr)
    )""",
)
_SNAPSHOT_COLUMNS: Final = {
    "snapshot": {"persistence_id", "sequence_nr", "timestamp", "manifest", "payload"},
}

# Every page query selects these columns of an event, then one of its tags (NULL if it has
# none): one row per tag, in stored order, folded back into events by `_fold_events`.
# One page of live events of one id by sequence number, up to an ordering (replay passes the
# largest one).
_EVENTS_OF_ID: Final = """SELECT j.*, t.tag FROM (
        SELECT ordering, persistence_id, sequence_nr, manifest, payload, writer_uuid, timestamp
        FROM journal
        WHERE persistence_id = ? AND sequence_nr >= ? AND sequence_nr <= ? AND ordering <= ?
        AND deleted = 0
        ORDER BY sequence_nr LIMIT ?) AS j
    LEFT JOIN journal_tags AS t ON t.ordering = j.ordering
    ORDER BY j.sequence_nr, t.position"""


@dataclasses.dataclass(frozen=True, slots=True)
class _Options:
    path: Path
    synchronous: str
    journal_mode: str
    busy_timeout: int
    replay_page_size: int


def _parse_options(owner: str, settings: Mapping[str, Any], allowed: frozenset[str]) -> _Options:
    check_settings(owner, settings, allowed)
    path = settings.get("path")
    if path is None:
        msg = f"{owner}: setting 'path' (the database file) is required"
        raise ConfigError(msg)
    if not isinstance(path, str | os.PathLike) or not str(path):
        msg = f"{owner}: setting 'path' must be a non-empty str, got {path!r}"
        raise ConfigError(msg)
    if "\0" in str(path):  # (it failed the plugin's start as "embedded null byte")
        msg = f"{owner}: setting 'path' must be a file name without NUL characters, got {path!r}"
        raise ConfigError(msg)
    return _Options(
        path=Path(path),
        synchronous=_choice(owner, settings, "synchronous", "FULL", _SYNCHRONOUS_MODES),
        journal_mode=_choice(owner, settings, "journal_mode", "WAL", _JOURNAL_MODES),
        # SQLite keeps busy_timeout in a C int (milliseconds).
        busy_timeout=_int(owner, settings, "busy_timeout", 5000, minimum=0, maximum=2**31 - 1),
        replay_page_size=_int(owner, settings, "replay_page_size", 500, minimum=1,
                              maximum=1_000_000),
    )


def _choice(
    owner: str, settings: Mapping[str, Any], key: str, default: str, allowed: frozenset[str]
) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or value.upper() not in allowed:
        msg = f"{owner}: setting {key!r} must be one of {sorted(allowed)}, got {value!r}"
        raise ConfigError(msg)
    return value.upper()


def _int(owner: str, settings: Mapping[str, Any], key: str, default: int, *, minimum: int,
         maximum: int) -> int:
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        msg = f"{owner}: setting {key!r} must be an int in {minimum}..{maximum}, got {value!r}"
        raise ConfigError(msg)
    return value


def _check_file(owner: str, path: Path) -> None:
    """Raise `PluginError` unless `path` can become or already is a healthy SQLite database.

    Runs before SQLite touches the file, because SQLite would happily write into a file it
    only later finds to be damaged.
    """
    folder = path.parent
    if not folder.is_dir():
        # A missing folder is created, as SQLite creates a missing file: a fresh clone has
        # no data/ folder, and users expect the configured path simply to work.
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            msg = (f"{owner}: cannot use database {str(path)!r}: cannot create folder "
                   f"{str(folder)!r}: {e.strerror or e}")
            raise PluginError(msg) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        # SQLite creates the file and its -wal/-shm companions next to it.
        msg = f"{owner}: cannot use database {str(path)!r}: folder {str(folder)!r} is not writable"
        raise PluginError(msg)
    if not path.exists():
        return
    if not path.is_file():
        msg = f"{owner}: cannot use database {str(path)!r}: it is not a regular file"
        raise PluginError(msg)
    if not os.access(path, os.R_OK | os.W_OK):
        msg = f"{owner}: cannot use database {str(path)!r}: the file is not readable and writable"
        raise PluginError(msg)
    size = path.stat().st_size
    if size == 0:
        return  # SQLite treats an empty file as a new database.
    with path.open("rb") as file:
        header = file.read(_HEADER_SIZE)
    if len(header) < _HEADER_SIZE or not header.startswith(_SQLITE_MAGIC):
        msg = f"{owner}: {str(path)!r} is not an SQLite database; refusing to open it"
        raise PluginError(msg)
    if _looks_truncated(path, header, size):
        msg = (
            f"{owner}: SQLite database {str(path)!r} is corrupted (truncated); refusing to open it"
        )
        raise PluginError(msg)


def _looks_truncated(path: Path, header: bytes, size: int) -> bool:
    """Return True if the header promises more pages than the file holds (SQLite file format)."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return True
    # The in-header page count is trustworthy only when its version number matches the change
    # counter; and an unfinished WAL checkpoint may legitimately leave the file short.
    change_counter = header[24:28]
    valid_for = header[92:96]
    wal = path.with_name(path.name + "-wal")
    if change_counter != valid_for or (wal.exists() and wal.stat().st_size > 0):
        return False
    page_count = int.from_bytes(header[28:32], "big")
    return size < page_count * page_size


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WriterLock:
    """An exclusive lock, across processes, around a journal's write transactions.

    Several processes may write one file (`SqliteJournal.concurrent_writers`: each shared
    host writes its actors' events). On SQLite's own lock a writer that finds the file locked
    sleeps in the busy handler (1, 2, 5, 10, ... ms) and tries again, so two busy writers
    mostly wait on each other's sleeps; ``flock`` on a file beside the database
    (``<path>-writers``) wakes a waiter as soon as the holder is done. A lock of its own file:
    closing a descriptor of the database file would drop the process's SQLite locks on it.
    The kernel releases it if the holder dies; SQLite's lock and ``busy_timeout`` still guard
    the transaction against any writer that does not take it (the command-line tool, say).
    """

    def __init__(self, path: Path) -> None:
        self._fd: int | None = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT, 0o644)

    def __call__(self, db: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` with the lock held; not called once closed."""
        fd = self._fd
        assert fd is not None  # noqa: S101 - the journal closes its connections first
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return fn(db, *args)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Release the descriptor; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _Connection:
    """One ``sqlite3`` connection owned by a thread of its own (aiosqlite's design).

    `run(fn, *args)` calls ``fn(connection, *args)`` on that thread. Every operation of the
    plugins is one such function, a whole transaction included, so it costs one thread round
    trip, where statement by statement a one-event write takes five (BEGIN, SAVEPOINT, INSERT,
    RELEASE, COMMIT), each a hand-over between threads.
    Where the runtime says the loop may block (`may_block`), `run` calls ``fn`` inline and
    saves even that round trip.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._db: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Held while a function uses the connection, on whichever thread it runs.
        self._busy = threading.Lock()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, future, fn, args = item
            try:
                with self._busy:
                    result, error = fn(*args), None
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, e
            # A closed loop has nobody left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future, result, error)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return await future

    async def open(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """Run `connect` on the connection's thread and keep what it returns."""
        self._db = await self._call(connect)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(connection, *args)`` on the connection's thread and return its result."""
        db = self._db
        if db is None:
            raise ValueError("connection is closed")  # what sqlite3 raises on a closed one
        if may_block():
            with self._busy:
                return fn(db, *args)
        return await self._call(fn, db, *args)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and return all its rows."""
        return await self.run(_fetchall, sql, params)

    async def close(self) -> None:
        """Close the connection; its thread ends right after. Idempotent."""
        db, self._db = self._db, None
        if self._thread is None:
            return
        try:
            if db is not None:
                await self._call(db.close)
        finally:
            # Not joined: waiting for a thread would take a thread of the loop's executor,
            # which outlives this call; the thread has nothing left to do but return.
            self._queue.put(None)
            self._thread = None


def _fetchall(db: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return db.execute(sql, params).fetchall()


def _connect(owner: str, options: _Options, *, set_journal_mode: bool,
             reader: bool = False) -> sqlite3.Connection:
    """Connect with the configured pragmas; the caller wraps sqlite3 errors.

    A `reader` never creates the file (a reader must not leave an empty database behind) and
    cannot write even by mistake (``query_only``).
    """
    # Autocommit mode: transactions are begun explicitly (BEGIN IMMEDIATE takes the write lock
    # up front, so two writers wait on busy_timeout instead of failing with "locked"). The
    # connection is used only by its own thread; it is created there too.
    # check_same_thread=False: `_Connection.run` may use it inline on the caller's thread,
    # one function at a time under its lock.
    if reader:
        target, uri = f"file:{quote(str(options.path.resolve()))}?mode=rw", True
    else:
        target, uri = str(options.path), False
    db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=uri)
    try:
        # Pragma values cannot be bound as parameters; all three were validated against fixed
        # sets or as ints in _parse_options.
        db.execute(f"PRAGMA busy_timeout = {options.busy_timeout}")
        if set_journal_mode:
            # Takes effect only on a new, empty file; an existing one keeps its mode.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            rows = db.execute(f"PRAGMA journal_mode = {options.journal_mode}").fetchall()
            _check_journal_mode(owner, options, str(rows[0][0]) if rows else "")
        db.execute(f"PRAGMA synchronous = {options.synchronous}")
        if reader:
            db.execute("PRAGMA query_only = 1")
    except BaseException:
        db.close()
        raise
    return db


def _check_journal_mode(owner: str, options: _Options, mode: str) -> None:
    # SQLite answers a failed switch (e.g. WAL on a file system without shared memory) with
    # the mode it stayed in, instead of an error.
    if mode.upper() != options.journal_mode:
        msg = (
            f"{owner}: database {str(options.path)!r} refused journal_mode="
            f"{options.journal_mode} (it is in {mode or 'an unknown'} mode)"
        )
        raise PluginError(msg)


def _check_columns(owner: str, path: Path, table: str, expected: set[str], found: set[str]) -> None:
    if found and not expected <= found:
        msg = (
            f"{owner}: database {str(path)!r} has a table {table!r} that this plugin "
            f"did not create (missing columns {sorted(expected - found)}); refusing to use it"
        )
        raise PluginError(msg)


def _ensure_schema(
    owner: str,
    db: sqlite3.Connection,
    path: Path,
    statements: Iterable[str],
    columns: Mapping[str, set[str]],
) -> None:
    """Create missing tables in one transaction; reject same-named tables of another layout."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, expected in columns.items():
            rows = db.execute(f"PRAGMA table_info({table})").fetchall()  # fixed names
            _check_columns(owner, path, table, expected, {str(row[1]) for row in rows})
        for statement in statements:
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    # Errors mean no transaction was active (the failure was BEGIN or COMMIT itself) or the
    # connection is gone; either way there is nothing left to undo.
    with contextlib.suppress(sqlite3.Error, ValueError):
        db.execute("ROLLBACK")


def _open_main(
    owner: str,
    options: _Options,
    statements: Iterable[str],
    columns: Mapping[str, set[str]],
) -> sqlite3.Connection:
    """Check the file, open the main connection and set up the schema, or raise PluginError.

    Two plugins opening one new file at once race to switch it to WAL and create their
    tables; SQLite answers the loser "database is locked" without calling the busy handler, so
    that answer is retried until ``busy_timeout`` runs out.
    """
    deadline = time.monotonic() + options.busy_timeout / 1000
    while True:
        try:
            return _open_main_once(owner, options, statements, columns)
        except PluginError as e:
            locked = "database is locked" in str(e.__cause__ or "")
            if not locked or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _open_main_once(
    owner: str,
    options: _Options,
    statements: Iterable[str],
    columns: Mapping[str, set[str]],
) -> sqlite3.Connection:
    path = options.path
    try:
        _check_file(owner, path)
        db = _connect(owner, options, set_journal_mode=True)
    except (sqlite3.Error, OSError) as e:
        msg = f"{owner}: cannot open SQLite database {str(path)!r}: {e}"
        raise PluginError(msg) from e
    try:
        _ensure_schema(owner, db, path, statements, columns)
    except BaseException as e:
        db.close()
        if isinstance(e, sqlite3.Error | OSError):
            msg = f"{owner}: cannot use SQLite database {str(path)!r}: {e}"
            raise PluginError(msg) from e
        raise
    return db


async def _start(
    owner: str,
    options: _Options,
    statements: Iterable[str],
    columns: Mapping[str, set[str]],
) -> _Connection:
    """Open the main connection on a thread of its own (see `_open_main`)."""
    db = _Connection(f"sqlite-{owner}")
    try:
        await db.open(functools.partial(_open_main, owner, options, statements, columns))
    except BaseException:
        await db.close()
        raise
    return db


# -- rows to events ----------------------------------------------------------------------------
def _fold_events(rows: Sequence[Sequence[Any]]) -> list[PersistentRepr]:
    """Fold page rows (an event's columns, then one tag or NULL) into events, tags in order."""
    if all(row[7] is None for row in rows):
        # No event of the page has a tag (the usual case): one row per event, built in one pass.
        return [PersistentRepr(pid, nr, manifest, payload, writer_uuid, timestamp)
                for _, pid, nr, manifest, payload, writer_uuid, timestamp, _ in rows]
    events = []
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        first, *more = group
        _, pid, nr, manifest, payload, writer_uuid, timestamp, tag = first
        tags = tuple(t for t in (tag, *(row[7] for row in more)) if t is not None)
        events.append(PersistentRepr(pid, nr, manifest, payload, writer_uuid, timestamp, tags))
    return events


def _fold_stored(rows: Sequence[Sequence[Any]]) -> list[StoredEvent]:
    """Like `_fold_events`, each event with its ordering."""
    orderings = [ordering for ordering, _ in itertools.groupby(row[0] for row in rows)]
    return [StoredEvent(int(ordering), event)
            for ordering, event in zip(orderings, _fold_events(rows), strict=True)]


# -- commit notifications within one process (the writer tells the readers) ----------------------
_signal_keys: dict[str, str] = {}


def commit_signal_key(path: str | os.PathLike[str]) -> str:
    """The change-signal key of a database file (its real path, so aliases agree)."""
    text = os.fspath(path)
    key = _signal_keys.get(text)
    if key is None:
        key = _signal_keys[text] = "sqlite:" + os.path.realpath(text)
    return key


def notify_commit(path: str | os.PathLike[str]) -> None:
    """Wake this process's live queries on `path`: the writer calls it after each commit."""
    change_signal.notify(commit_signal_key(path))
