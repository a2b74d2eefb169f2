"""Copying journals and snapshots SQLite -> PostgreSQL -> SQLite loses and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.migration import (
    Copied,
    copy_postgres_to_sqlite,
    copy_sqlite_to_postgres,
    main,
)
from journal_plugins.postgres import PostgresJournal, PostgresSnapshotStore
from journal_plugins.postgres_query import PostgresEventLog
from journal_plugins.sqlite import SqliteJournal, SqliteSnapshotStore
from journal_plugins.sqlite_query import SqliteEventLog
from persistent_actors.errors import PluginError
from persistent_actors.event_log import EventLog, StoredEvent
from persistent_actors.journal import MAX_SEQUENCE_NR, AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import SnapshotMetadata, SnapshotSelectionCriteria, SnapshotStore
from tests.pg import drop_schema, require_postgres, schema_for, settings

PIDS = ("cart-1", "cart-2", "gone", "it's \"odd\" 日本")


@pytest.fixture
def schema(tmp_path: Path) -> Iterator[str]:
    require_postgres()
    name = schema_for(tmp_path)
    yield name
    drop_schema(name)


def _event(pid: str, nr: int) -> PersistentRepr:
    tags = {0: (), 1: ("even",), 2: ("odd", "NULL", 'q"uote')}[nr % 3]
    return PersistentRepr(pid, nr, "shop.Added" if nr % 2 else "", bytes([nr % 256, 0, 255]),
                          f"writer-{pid}-{nr // 4}", 1_700_000_000.123456 + nr / 7, tags)


async def _fill(journal: Journal, snapshots: SnapshotStore) -> None:
    for round_ in range(6):  # interleaved ids, atomic writes of 1..3 events
        writes = [AtomicWrite(tuple(_event(pid, 3 * round_ + k) for k in range(1, 4)[:1 + i % 3]))
                  for i, pid in enumerate(PIDS)]
        assert await journal.write_messages(writes) == [None] * len(writes)
    await journal.delete_messages_to("cart-2", 4)  # a deleted prefix: tombstones
    await journal.delete_messages_to("gone", MAX_SEQUENCE_NR)  # only the highest remains
    for pid in PIDS[:2]:
        for nr in (3, 9):
            await snapshots.save(SnapshotMetadata(pid, nr, 1_700_000_100.5 + nr), "shop.State",
                                 b"state-%d\x00" % nr)


async def _everything(journal: Journal, log: EventLog,
                      snapshots: SnapshotStore) -> dict[str, Any]:
    """What a user can observe: replays, highest numbers, the global order, snapshots."""
    seen: dict[str, Any] = {}
    for pid in PIDS:
        seen[f"replay {pid}"] = [e async for e in journal.replay_messages(
            pid, 0, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)]
        seen[f"highest {pid}"] = await journal.read_highest_sequence_nr(pid, 0)
        seen[f"snapshot {pid}"] = await snapshots.load(pid, SnapshotSelectionCriteria(9))
        seen[f"older snapshot {pid}"] = await snapshots.load(pid, SnapshotSelectionCriteria(8))
    ordered: list[StoredEvent] = []
    while page := (await log.fetch_events(ordered[-1].ordering if ordered else 0, 7)).events:
        ordered.extend(page)
    seen["all events"] = ordered
    seen["tagged odd"] = (await log.fetch_events(0, 1000, tag="odd")).events
    seen["ids"] = (await log.fetch_persistence_ids(0, 100)).ids
    seen["highest ordering"] = await log.highest_ordering()
    return seen


async def _observe_sqlite(path: Path) -> dict[str, Any]:
    journal, snapshots = SqliteJournal({"path": str(path)}), SqliteSnapshotStore(
        {"path": str(path)})
    log = SqliteEventLog({"path": str(path)})
    await journal.start()
    await snapshots.start()
    try:
        return await _everything(journal, log, snapshots)
    finally:
        await log.close()
        await journal.close()
        await snapshots.close()


async def _observe_postgres(schema: str) -> dict[str, Any]:
    journal, snapshots = PostgresJournal(settings(schema)), PostgresSnapshotStore(
        settings(schema))
    log = PostgresEventLog(settings(schema))
    await journal.start()
    await snapshots.start()
    try:
        return await _everything(journal, log, snapshots)
    finally:
        await log.close()
        await journal.close()
        await snapshots.close()


async def test_sqlite_to_postgres_and_back_keeps_everything(tmp_path: Path, schema: str) -> None:
    original = tmp_path / "original.db"
    journal, snapshots = SqliteJournal({"path": str(original)}), SqliteSnapshotStore(
        {"path": str(original)})
    await journal.start()
    await snapshots.start()
    await _fill(journal, snapshots)
    await journal.close()
    await snapshots.close()
    before = await _observe_sqlite(original)
    assert before["replay gone"] == []
    assert before["highest gone"] == 18
    assert before["replay cart-2"][0].sequence_nr == 5

    copied = await copy_sqlite_to_postgres(original, settings(schema))
    # SQLite keeps one tombstone row per id with deleted events ("gone", "cart-2"): its place.
    assert copied == Copied(events=len(before["all events"]), tombstones=2, tags=copied.tags,
                            highest_records=2, snapshots=4)
    assert copied.tags > 0
    assert await _observe_postgres(schema) == before

    back = tmp_path / "back.db"
    assert await copy_postgres_to_sqlite(settings(schema), back) == copied
    assert await _observe_sqlite(back) == before

    # New events continue above the copied orderings, on both sides.
    for store in (PostgresJournal(settings(schema)), SqliteJournal({"path": str(back)})):
        await store.start()
        try:
            assert await store.write_messages([AtomicWrite((_event("cart-1", 100),))]) == [None]
            assert await store.write_messages([AtomicWrite((_event("gone", 18),))]) != [None]
        finally:
            await store.close()
    after_pg = await _observe_postgres(schema)
    assert after_pg["all events"][-1].ordering > before["highest ordering"]


async def test_copies_refuse_a_target_that_holds_events(tmp_path: Path, schema: str) -> None:
    source = tmp_path / "source.db"
    journal = SqliteJournal({"path": str(source)})
    await journal.start()
    await journal.write_messages([AtomicWrite((_event("a", 1),))])
    await journal.close()
    await copy_sqlite_to_postgres(source, settings(schema))
    with pytest.raises(PluginError, match="not empty"):
        await copy_sqlite_to_postgres(source, settings(schema))
    with pytest.raises(PluginError, match="not empty"):
        await copy_postgres_to_sqlite(settings(schema), source)
    with pytest.raises(PluginError, match="does not exist"):
        await copy_sqlite_to_postgres(tmp_path / "missing.db", settings(schema))


@pytest.mark.parametrize(("args", "text"), [
    (["to-postgres", "{tmp}/missing.db", "postgresql://127.0.0.1:1/test"],
     "SQLite database '{tmp}/missing.db' does not exist"),
    (["to-postgres", "{tmp}/missing.db", "postgresql://127.0.0.1:1/test", "bad-schema!"],
     "setting 'schema' must be an identifier"),
])
def test_the_command_line_prints_a_mistake_as_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], text: str) -> None:
    # It printed the copy's traceback, the message on its last line.
    argv = ["migration", *(a.format(tmp=tmp_path) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("python -m journal_plugins.migration: error: "), err
    assert text.format(tmp=tmp_path) in err, err
