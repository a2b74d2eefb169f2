"""The SQLite plugins against the TCKs, plus what only a file-backed store can get wrong."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from journal_plugins._sqlite_db import _JOURNAL_SCHEMA
from journal_plugins.sqlite import SqliteJournal, SqliteSnapshotStore
from journal_plugins.sqlite_query import SqliteEventLog
from persistent_actors.errors import ConfigError, JournalError, PluginError
from persistent_actors.journal import MAX_SEQUENCE_NR, AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria, SnapshotStore
from persistent_actors.testing.journal_spec import JournalSpec
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec
from tests.read_only import read_only


class TestSqliteJournal(JournalSpec):
    supports_replay_only_last = True

    async def create_journal(self, tmp_path: Path) -> Journal:
        # A small page size makes the TCK's replays cross page boundaries.
        return SqliteJournal({"path": str(tmp_path / "journal.db"), "replay_page_size": 3})


class TestSqliteSnapshotStore(SnapshotStoreSpec):
    async def create_snapshot_store(self, tmp_path: Path) -> SnapshotStore:
        return SqliteSnapshotStore({"path": str(tmp_path / "snapshots.db")})

    async def create_journal_beside(self, tmp_path: Path) -> Journal | None:
        return SqliteJournal({"path": str(tmp_path / "snapshots.db")})


class TestSqliteJournalSharingFileWithSnapshotStore(JournalSpec):
    """The whole journal TCK while a snapshot store holds the same file open."""

    supports_replay_only_last = True

    @pytest.fixture(autouse=True)
    async def neighbour(self, tmp_path: Path) -> AsyncIterator[SqliteSnapshotStore]:
        store = SqliteSnapshotStore({"path": str(tmp_path / "shared.db")})
        await store.start()
        yield store
        await store.close()

    async def create_journal(self, tmp_path: Path) -> Journal:
        return SqliteJournal({"path": str(tmp_path / "shared.db")})


def _event(pid: str, nr: int, *, tags: tuple[str, ...] = ()) -> AtomicWrite:
    return AtomicWrite((PersistentRepr(pid, nr, "m", b"e-%d" % nr, "w", 1.5, tags),))


async def _replay(journal: Journal, pid: str) -> list[PersistentRepr]:
    return [e async for e in journal.replay_messages(pid, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SqliteJournal, SqliteSnapshotStore])
def test_missing_path_is_a_config_error_naming_it(cls: type[Any]) -> None:
    with pytest.raises(ConfigError, match="'path'"):
        cls({})
    with pytest.raises(ConfigError, match="'path'"):
        cls(None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("synchronous", "SOMETIMES"),
        ("journal_mode", "MEMORY"),
        ("journal_mode", 1),
        ("busy_timeout", -1),
        ("busy_timeout", True),
        ("replay_page_size", 0),
        ("paht", "x.db"),
    ],
)
def test_bad_setting_is_a_config_error_naming_the_key(
    key: str, value: object, db_path: Path
) -> None:
    with pytest.raises(ConfigError, match=repr(key)):
        SqliteJournal({"path": str(db_path), key: value})


def test_snapshot_store_rejects_journal_only_setting(db_path: Path) -> None:
    with pytest.raises(ConfigError, match="'replay_page_size'"):
        SqliteSnapshotStore({"path": str(db_path), "replay_page_size": 10})


# --- start-up checks --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SqliteJournal, SqliteSnapshotStore])
async def test_a_missing_folder_is_created_at_start(cls: type[Any], tmp_path: Path) -> None:
    # Defect 15: `python -m samples.cart samples/sqlite.toml` on a fresh clone failed with
    # "folder 'data' does not exist". Users expect the store to create it, as SQLite does
    # the file.
    path = tmp_path / "data" / "nested" / "store.db"
    plugin = cls({"path": str(path)})
    await plugin.start()
    await plugin.close()
    assert path.is_file()


@pytest.mark.parametrize("cls", [SqliteJournal, SqliteSnapshotStore])
async def test_a_folder_that_cannot_be_created_fails_at_start(
        cls: type[Any], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    plugin = cls({"path": str(blocker / "store.db")})
    with pytest.raises(PluginError, match="a-file") as info:
        await plugin.start()
    assert "cannot create folder" in str(info.value)
    await plugin.close()


async def test_path_in_read_only_folder_fails_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder), pytest.raises(PluginError, match="not writable"):
        await SqliteJournal({"path": str(folder / "store.db")}).start()


@pytest.mark.parametrize("cls", [SqliteJournal, SqliteSnapshotStore])
@pytest.mark.parametrize(
    "content",
    [
        b"this is my thesis, not a database\n" * 100,
        b"SQLite format 3",  # shorter than a header
        b"\x00" * 4096,
    ],
    ids=["text", "short", "zeros"],
)
async def test_non_sqlite_file_is_refused_and_left_intact(
    cls: type[Any], content: bytes, db_path: Path
) -> None:
    db_path.write_bytes(content)
    plugin = cls({"path": str(db_path)})
    with pytest.raises(PluginError, match="not an SQLite database") as info:
        await plugin.start()
    assert str(db_path) in str(info.value)
    assert db_path.read_bytes() == content
    assert not Path(str(db_path) + "-wal").exists()
    await plugin.close()


def _make_database(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE filler (x BLOB)")
        db.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 1000,)] * rows)
    db.close()


async def test_truncated_database_is_refused_and_left_intact(db_path: Path) -> None:
    _make_database(db_path, 200)
    content = db_path.read_bytes()[: 20 * 4096]
    db_path.write_bytes(content)
    with pytest.raises(PluginError, match="corrupted") as info:
        await SqliteJournal({"path": str(db_path)}).start()
    assert str(db_path) in str(info.value)
    assert db_path.read_bytes() == content


async def test_database_with_garbled_schema_is_refused_and_left_intact(db_path: Path) -> None:
    _make_database(db_path, 5)
    content = bytearray(db_path.read_bytes())
    content[100:4096] = b"\xa5" * (4096 - 100)  # the schema table's page, after the header
    db_path.write_bytes(bytes(content))
    with pytest.raises(PluginError, match=r"store\.db"):
        await SqliteSnapshotStore({"path": str(db_path)}).start()
    assert db_path.read_bytes() == bytes(content)


async def test_foreign_table_with_same_name_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE journal (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO journal (body) VALUES ('dear diary')")
    db.close()
    with pytest.raises(PluginError, match="'journal'"):
        await SqliteJournal({"path": str(db_path)}).start()
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT body FROM journal").fetchall() == [("dear diary",)]
    db.close()


async def test_empty_file_becomes_a_database(db_path: Path) -> None:
    db_path.touch()
    journal = SqliteJournal({"path": str(db_path)})
    await journal.start()
    try:
        assert await journal.write_messages([_event("p", 1)]) == [None]
    finally:
        await journal.close()


async def test_operations_before_start_raise_journal_error(db_path: Path) -> None:
    journal = SqliteJournal({"path": str(db_path)})
    with pytest.raises(JournalError, match="not started"):
        await journal.write_messages([_event("p", 1)])
    with pytest.raises(JournalError, match="not started"):
        await journal.read_highest_sequence_nr("p", 0)


# --- durability and layout --------------------------------------------------------------------


async def test_durability_pragmas_read_back(db_path: Path) -> None:
    journal = SqliteJournal({"path": str(db_path)})
    store = SqliteSnapshotStore({"path": str(db_path)})
    await journal.start()
    await store.start()
    try:
        for db in (journal._writer, journal._reader, store._db):
            assert db is not None
            assert list(await db.execute_fetchall("PRAGMA synchronous")) == [(2,)]  # FULL
            assert list(await db.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]
            assert list(await db.execute_fetchall("PRAGMA busy_timeout")) == [(5000,)]
    finally:
        await journal.close()
        await store.close()


async def test_configured_pragmas_are_applied(db_path: Path) -> None:
    journal = SqliteJournal(
        {
            "path": str(db_path),
            "synchronous": "normal",
            "journal_mode": "DELETE",
            "busy_timeout": 250,
        }
    )
    await journal.start()
    try:
        db = journal._writer
        assert db is not None
        assert list(await db.execute_fetchall("PRAGMA synchronous")) == [(1,)]  # NORMAL
        assert list(await db.execute_fetchall("PRAGMA journal_mode")) == [("delete",)]
        assert list(await db.execute_fetchall("PRAGMA busy_timeout")) == [(250,)]
    finally:
        await journal.close()


async def test_reopened_file_replays_events_and_highest(db_path: Path) -> None:
    settings = {"path": str(db_path)}
    journal = SqliteJournal(settings)
    await journal.start()
    writes = [_event("p", 1, tags=("red", "blue")), _event("p", 2), _event("p", 3)]
    assert await journal.write_messages(writes) == [None, None, None]
    await journal.delete_messages_to("p", 1)
    await journal.close()

    reopened = SqliteJournal(settings)
    await reopened.start()
    try:
        assert await _replay(reopened, "p") == [w.payload[0] for w in writes[1:]]
        assert await reopened.read_highest_sequence_nr("p", 0) == 3
    finally:
        await reopened.close()


async def test_tags_are_stored_for_the_read_side(db_path: Path) -> None:
    journal = SqliteJournal({"path": str(db_path)})
    await journal.start()
    try:
        writes = [_event("a", 1, tags=("t1",)), _event("b", 1, tags=("t2", "t1")), _event("a", 2)]
        assert await journal.write_messages(writes) == [None, None, None]
        await journal.delete_messages_to("b", 1)
    finally:
        await journal.close()
    with sqlite3.connect(db_path) as db:
        by_tag = db.execute(
            "SELECT j.persistence_id, j.sequence_nr FROM journal_tags t"
            " JOIN journal j ON j.ordering = t.ordering WHERE t.tag = ? ORDER BY t.ordering",
            ("t1",),
        ).fetchall()
        tombstone = db.execute(
            "SELECT deleted, payload FROM journal WHERE persistence_id = 'b'"
        ).fetchall()
        metadata = db.execute("SELECT * FROM journal_metadata").fetchall()
    db.close()
    # b's event was deleted: its tags went with it, a payload-free tombstone remains.
    assert by_tag == [("a", 1)]
    assert tombstone == [(1, b"")]
    assert metadata == [("b", 1)]


async def test_replay_pages_read_tags_only_of_their_own_events(tmp_path: Path) -> None:
    """Replay reads tags only where a page's range of orderings holds any, and only its own.

    `a`'s events interleave with tagged events of `b`: every page of `a` has tag rows in its
    range, yet `a`'s untagged events must come back untagged and its tagged ones in order.
    """
    journal = SqliteJournal({"path": str(tmp_path / "tags.db"), "replay_page_size": 3})
    await journal.start()
    try:
        writes = []
        for nr in range(1, 9):
            a_tags = ("x", "y") if nr % 3 == 0 else ()
            writes += [_event("a", nr, tags=a_tags), _event("b", nr, tags=("b", f"b{nr}"))]
        writes += [_event("c", nr) for nr in range(1, 5)]  # no tag anywhere in c's range
        assert await journal.write_messages(writes) == [None] * len(writes)
        replayed = await _replay(journal, "a")
        assert [(e.sequence_nr, e.tags) for e in replayed] == [
            (nr, ("x", "y") if nr % 3 == 0 else ()) for nr in range(1, 9)]
        assert replayed == [w.payload[0] for w in writes[0:16:2]]
        assert [e.tags for e in await _replay(journal, "b")] == [
            ("b", f"b{nr}") for nr in range(1, 9)]
        assert [e.tags for e in await _replay(journal, "c")] == [()] * 4
    finally:
        await journal.close()


# The journal table as files created before session 6 have it: `ordering` with AUTOINCREMENT.
_AUTOINCREMENT_JOURNAL = """CREATE TABLE journal (
        ordering INTEGER PRIMARY KEY AUTOINCREMENT,
        persistence_id TEXT NOT NULL,
        sequence_nr INTEGER NOT NULL,
        manifest TEXT NOT NULL,
        payload BLOB NOT NULL,
        writer_uuid TEXT NOT NULL,
        timestamp REAL NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        UNIQUE (persistence_id, sequence_nr)
    )"""


def _orderings(db_path: Path) -> dict[tuple[str, int], int]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT persistence_id, sequence_nr, ordering FROM journal").fetchall()
    db.close()
    return {(pid, nr): ordering for pid, nr, ordering in rows}


@pytest.mark.parametrize("autoincrement", [False, True], ids=["new-file", "autoincrement-file"])
async def test_an_ordering_is_never_given_twice(db_path: Path, autoincrement: bool) -> None:
    """Deleting the newest events, restarting and writing again never reuses their orderings.

    The event log's offsets rely on it: a reader that saw ordering n must never miss an event
    stored later. A file created with AUTOINCREMENT (before) keeps it and works the same.
    """
    if autoincrement:
        with sqlite3.connect(db_path) as db:
            db.execute("PRAGMA journal_mode = WAL")
            for statement in (_AUTOINCREMENT_JOURNAL, *_JOURNAL_SCHEMA[1:]):
                db.execute(statement)
        db.close()
    settings = {"path": str(db_path)}
    journal = SqliteJournal(settings)
    await journal.start()
    writes = [_event("a", 1), _event("b", 1), _event("b", 2), _event("b", 3)]
    assert await journal.write_messages(writes) == [None] * 4
    top = max(_orderings(db_path).values())
    # b holds the newest rows: all of them go but its first (the id's tombstone) and the top.
    await journal.delete_messages_to("b", MAX_SEQUENCE_NR)
    await journal.close()
    assert set(_orderings(db_path)) == {("a", 1), ("b", 1), ("b", 3)}
    log = SqliteEventLog(settings)
    try:
        assert await log.highest_ordering() == top

        restarted = SqliteJournal(settings)
        await restarted.start()
        try:
            assert await restarted.write_messages([_event("c", 1)]) == [None]
            assert _orderings(db_path)[("c", 1)] == top + 1
            page = await log.fetch_events(top - 1, 10)
            assert [(e.ordering, e.event.persistence_id) for e in page.events] == [(top + 1, "c")]
            # The former top is purged once a newer row keeps the largest ordering.
            await restarted.delete_messages_to("b", MAX_SEQUENCE_NR)
            assert set(_orderings(db_path)) == {("a", 1), ("b", 1), ("c", 1)}
            assert await restarted.write_messages([_event("b", 4)]) == [None]
            assert _orderings(db_path)[("b", 4)] == top + 2
        finally:
            await restarted.close()
    finally:
        await log.close()
    with sqlite3.connect(db_path) as db:
        (ddl,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'journal'").fetchone()
    db.close()
    assert ("AUTOINCREMENT" in ddl) == autoincrement


async def test_read_side_counts_orderings_an_older_version_purged(db_path: Path) -> None:
    """On an AUTOINCREMENT file, the highest ordering includes rows purged before (its counter)."""
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in (_AUTOINCREMENT_JOURNAL, *_JOURNAL_SCHEMA[1:]):
            db.execute(statement)
    db.close()
    journal = SqliteJournal({"path": str(db_path)})
    await journal.start()
    try:
        assert await journal.write_messages([_event("a", 1), _event("a", 2)]) == [None, None]
    finally:
        await journal.close()
    with sqlite3.connect(db_path) as db:  # what an older version's purge left: the top gone
        db.execute("DELETE FROM journal WHERE sequence_nr = 2")
    db.close()
    log = SqliteEventLog({"path": str(db_path)})
    try:
        assert await log.highest_ordering() == 2
    finally:
        await log.close()


async def test_highest_survives_removal_of_tombstones(db_path: Path) -> None:
    """journal_metadata keeps the highest even if an operator purges tombstone rows."""
    journal = SqliteJournal({"path": str(db_path)})
    await journal.start()
    try:
        assert await journal.write_messages([_event("p", 1), _event("p", 2)]) == [None, None]
        await journal.delete_messages_to("p", MAX_SEQUENCE_NR)
        with sqlite3.connect(db_path) as db:
            db.execute("DELETE FROM journal WHERE deleted = 1")
        db.close()
        assert await journal.read_highest_sequence_nr("p", 0) == 2
    finally:
        await journal.close()


# --- concurrency and failure ------------------------------------------------------------------


async def test_journal_and_snapshot_store_share_one_file(db_path: Path) -> None:
    """Both started at once and writing concurrently: no "database is locked" errors."""
    settings = {"path": str(db_path)}
    journal, store = SqliteJournal(settings), SqliteSnapshotStore(settings)
    await asyncio.gather(journal.start(), store.start())
    try:

        async def write_events() -> None:
            for nr in range(1, 201):
                assert await journal.write_messages([_event("p", nr)]) == [None]

        async def save_snapshots() -> None:
            for nr in range(1, 201):
                await store.save(SnapshotMetadata("p", nr, float(nr)), "m", b"s-%d" % nr)

        await asyncio.gather(write_events(), save_snapshots())
        assert len(await _replay(journal, "p")) == 200
        latest = await store.load("p", SnapshotSelectionCriteria.latest())
        assert latest is not None
        assert latest.payload == b"s-200"
    finally:
        await journal.close()
        await store.close()


async def test_two_journals_on_one_file_do_not_lock_each_other_out(db_path: Path) -> None:
    first = SqliteJournal({"path": str(db_path)})
    second = SqliteJournal({"path": str(db_path)})
    await asyncio.gather(first.start(), second.start())
    try:

        async def write(journal: SqliteJournal, pid: str) -> None:
            for nr in range(1, 101):
                assert await journal.write_messages([_event(pid, nr)]) == [None]

        await asyncio.gather(write(first, "a"), write(second, "b"))
        assert len(await _replay(second, "a")) == 100
        assert len(await _replay(first, "b")) == 100
    finally:
        await first.close()
        await second.close()


async def test_concurrent_write_calls_are_serialized(db_path: Path) -> None:
    """Overlapping write_messages calls on one journal never nest transactions."""
    journal = SqliteJournal({"path": str(db_path)})
    await journal.start()
    try:
        results = await asyncio.gather(
            *(journal.write_messages([_event(f"p{i}", 1), _event(f"p{i}", 2)]) for i in range(20))
        )
        assert results == [[None, None]] * 20
        for i in range(20):
            assert await journal.read_highest_sequence_nr(f"p{i}", 0) == 2
    finally:
        await journal.close()


async def test_database_failure_raises_journal_error_and_commits_nothing(db_path: Path) -> None:
    journal = SqliteJournal({"path": str(db_path), "busy_timeout": 0})
    await journal.start()
    locker = sqlite3.connect(db_path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(JournalError, match="locked") as info:
            await journal.write_messages([_event("p", 1)])
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        locker.execute("ROLLBACK")
        assert await _replay(journal, "p") == []
        # The journal recovers once the lock is gone.
        assert await journal.write_messages([_event("p", 1)]) == [None]
    finally:
        locker.close()
        await journal.close()


async def test_rejected_write_rolls_back_only_its_savepoint(db_path: Path) -> None:
    journal = SqliteJournal({"path": str(db_path)})
    await journal.start()
    try:
        assert await journal.write_messages([_event("p", 2, tags=("x",))]) == [None]
        conflicting = AtomicWrite(
            (
                PersistentRepr("p", 1, "m", b"one", tags=("x",)),
                PersistentRepr("p", 2, "m", b"two", tags=("x",)),
            )
        )
        results = await journal.write_messages([_event("q", 1, tags=("x",)), conflicting])
        assert results[0] is None
        assert results[1] is not None
        with sqlite3.connect(db_path) as db:
            tag_rows = db.execute("SELECT count(*) FROM journal_tags").fetchone()
        db.close()
        assert tag_rows == (2,)  # p/2 and q/1; nothing left over from the rejected write
        assert [e.sequence_nr for e in await _replay(journal, "p")] == [2]
    finally:
        await journal.close()


@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 7])
async def test_replay_rows_pages_with_gaps_writers_and_manifests(
        tmp_path: Path, page_size: int) -> None:
    """Recovery's pages after the first carry no sequence number column: the numbers follow
    from a page's first and last when it has no gap. Gaps (a rejected write's number, a
    deleted prefix), manifests and writers changing inside and between pages: each page
    gives every event its own sequence number, manifest and writer, as replay_messages."""
    journal = SqliteJournal({"path": str(tmp_path / "rows.db"), "replay_page_size": page_size})
    await journal.start()
    try:
        nrs = [*range(1, 12), 14, 15, 16, 20, *range(21, 30), 40]
        events = [PersistentRepr(
            "p", nr, "m" if nr % 5 else f"other-{nr}", b"e-%d" % nr,
            "w1" if nr < 14 else ("w2" if nr < 23 else "w-3"), 1.5) for nr in nrs]
        writes = [AtomicWrite((e,)) for e in events]
        assert await journal.write_messages(writes) == [None] * len(writes)
        expected = [(e.sequence_nr, e.manifest, e.payload, e.writer_uuid) for e in events]

        async def rows(from_nr: int, to_nr: int, count: int) -> list[tuple[Any, ...]]:
            pages = [page async for page in journal.replay_rows("p", from_nr, to_nr, count)]
            assert all(len(page) for page in pages)
            return [row for page in pages for row in zip(
                page.sequence_nrs, page.manifests, page.payloads, page.writer_uuids,
                strict=True)]

        for from_nr, to_nr, count in [(1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR), (2, 40, 100),
                                      (3, 25, 9), (12, 28, 100), (14, 39, 5), (1, 13, 100)]:
            assert await rows(from_nr, to_nr, count) == [
                row for row in expected if from_nr <= row[0] <= to_nr][:count]
        await journal.delete_messages_to("p", 5)
        assert await rows(1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR) == expected[5:]
    finally:
        await journal.close()
