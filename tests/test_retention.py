"""Retention (Akka typed's RetentionCriteria.snapshotEvery(n, keepN).withDeleteEventsOnSnapshot).

Every step is followed by a restart that must recover the same state, on both bases, on SQLite
(so the test can look at what is really stored). SQLite's space reclaiming is tested on the
plugin directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.sqlite import SqliteJournal
from journal_plugins.sqlite_query import SqliteEventLog
from persistent_actors import (
    ActorInitializationError,
    ActorRef,
    ActorSystem,
    RetentionCriteria,
    SequenceConflictError,
)
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.ops_actors import (
    Recovered,
    RetentionCounter,
    RetentionKeepEvents,
    RetentionWithoutState,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def sqlite_system(base: str, db: Path) -> Iterator[ActorSystem]:
    store = {"plugin": "sqlite", "path": str(db)}
    system = ActorSystem("retention", config=system_config(
        base, journal=store, snapshot_store=dict(store)))
    try:
        yield system
    finally:
        system.shutdown()


def _stored(db: Path, pid: str) -> tuple[list[int], list[int]]:
    """(live event sequence numbers, snapshot sequence numbers) as stored in the file."""
    with sqlite3.connect(db) as conn:
        events = [row[0] for row in conn.execute(
            "SELECT sequence_nr FROM journal WHERE persistence_id = ? AND deleted = 0 "
            "ORDER BY sequence_nr", (pid,))]
        snapshots = [row[0] for row in conn.execute(
            "SELECT sequence_nr FROM snapshot WHERE persistence_id = ? ORDER BY sequence_nr",
            (pid,))]
    return events, snapshots


class _Run:
    def __init__(self, system: ActorSystem, cls: type[RetentionCounter], pid: str) -> None:
        self.system, self.cls, self.pid = system, cls, pid
        self.probe = TestProbe(system)
        self.ref: ActorRef | None = None

    def start(self) -> Recovered:
        self.ref = self.system.actor_of(self.cls, self.pid, self.probe.ref, name=self.pid)
        recovered: Recovered = self.probe.expect_msg_type(Recovered, timeout=10)
        return recovered

    def restart(self) -> Recovered:
        assert self.ref is not None
        self.system.stop(self.ref)
        return self.start()

    def add(self, *numbers: int) -> None:
        assert self.ref is not None
        self.ref.ask(("add", *numbers), timeout=10)

    def expect(self, *messages: Any) -> None:
        got = {self.probe.receive_one(timeout=10) for _ in messages}
        assert got == set(messages)
        self.probe.expect_no_msg(0.2)


def test_snapshot_every_keep_n_and_delete_events_with_recovery_after_each_step(
        sqlite_system: ActorSystem, db: Path) -> None:
    run = _Run(sqlite_system, RetentionCounter, "ret-1")
    assert run.start() == Recovered(None, (), 0)

    run.add(1, 2)  # below the first multiple of 3: nothing happens
    run.probe.expect_no_msg(0.2)
    assert run.restart() == Recovered(None, (1, 2), 2)

    run.add(3)  # a snapshot at 3; nothing is old enough to delete (3 - 2*3 < 1)
    run.expect(("saved", 3))
    assert _stored(db, "ret-1") == ([1, 2, 3], [3])
    assert run.restart() == Recovered(3, (1, 2, 3), 3)

    run.add(4, 5, 6)
    run.expect(("saved", 6))
    assert run.restart() == Recovered(6, (1, 2, 3, 4, 5, 6), 6)

    run.add(7, 8, 9)  # snapshot at 9: events and snapshots up to 9 - 2*3 = 3 go
    run.expect(("saved", 9), ("events-deleted", 3), ("snapshots-deleted", 3))
    assert _stored(db, "ret-1") == ([4, 5, 6, 7, 8, 9], [6, 9])
    assert run.restart() == Recovered(9, tuple(range(1, 10)), 9)

    # One persist_all crossing 12 snapshots once, after its last event (14); 14 - 6 = 8.
    run.add(10, 11, 12, 13, 14)
    run.expect(("saved", 14), ("events-deleted", 8), ("snapshots-deleted", 8))
    assert _stored(db, "ret-1") == ([9, 10, 11, 12, 13, 14], [9, 14])
    assert run.restart() == Recovered(14, tuple(range(1, 15)), 14)

    run.add(15)  # the sequence numbers go on after the deleted events
    run.expect(("saved", 15), ("events-deleted", 9), ("snapshots-deleted", 9))
    assert run.restart() == Recovered(15, tuple(range(1, 16)), 15)


def test_undecodable_snapshots_over_deleted_events_fail_recovery_instead_of_a_wrong_state(
        sqlite_system: ActorSystem, db: Path) -> None:
    run = _Run(sqlite_system, RetentionCounter, "ret-3")
    run.start()
    run.add(1, 2, 3)
    run.expect(("saved", 3))
    run.add(4, 5, 6)
    run.expect(("saved", 6))
    run.add(7, 8, 9)
    run.expect(("saved", 9), ("events-deleted", 3), ("snapshots-deleted", 3))
    assert run.restart() == Recovered(9, tuple(range(1, 10)), 9)
    assert run.ref is not None
    sqlite_system.stop(run.ref)
    # Only the older snapshot undecodable: recovery goes on from it (events 7..9).
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE snapshot SET manifest = 'renamed.State' WHERE sequence_nr = 9")
    assert run.start() == Recovered(6, tuple(range(1, 10)), 9)
    assert run.ref is not None
    sqlite_system.stop(run.ref)
    # Every kept snapshot undecodable, events 1..3 deleted: replaying 4..9 would give a state
    # without 1, 2, 3.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE snapshot SET manifest = 'renamed.State'")
    run.ref = sqlite_system.actor_of(RetentionCounter, "ret-3", run.probe.ref, name="ret-3")
    what, cause = run.probe.expect_msg_type(tuple, timeout=10)
    assert what == "recovery-failed"
    assert cause.startswith("RecoveryError: no snapshot of 'ret-3' could be decoded (the newest "
                            "is at 9) and the events before 4 are deleted")
    run.probe.expect_no_msg(0.2)


def test_undecodable_snapshots_with_every_event_kept_replay_them_all(
        sqlite_system: ActorSystem, db: Path) -> None:
    run = _Run(sqlite_system, RetentionKeepEvents, "ret-4")
    run.start()
    run.add(1, 2, 3, 4)
    run.expect(("saved", 4), ("snapshots-deleted", 1))
    assert run.ref is not None
    sqlite_system.stop(run.ref)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE snapshot SET manifest = 'renamed.State'")
    assert run.start() == Recovered(None, (1, 2, 3, 4), 4)


def test_keep_one_snapshot_without_deleting_events(sqlite_system: ActorSystem, db: Path) -> None:
    run = _Run(sqlite_system, RetentionKeepEvents, "ret-2")
    run.start()
    run.add(1, 2, 3)
    run.expect(("saved", 3))
    run.add(4, 5, 6)
    run.expect(("saved", 6), ("snapshots-deleted", 3))
    assert _stored(db, "ret-2") == ([1, 2, 3, 4, 5, 6], [6])
    assert run.restart() == Recovered(6, (1, 2, 3, 4, 5, 6), 6)


def test_retention_without_snapshot_state_fails_actor_of_clearly(system: ActorSystem) -> None:
    # (It failed the recovery, after actor_of had returned.)
    probe = TestProbe(system)
    with pytest.raises(ActorInitializationError,
                       match=r"RetentionWithoutState sets retention but does not implement "
                             r"snapshot_state\(\)"):
        system.actor_of(RetentionWithoutState, probe.ref)


def test_retention_criteria_validate_and_compute() -> None:
    criteria = RetentionCriteria.snapshot_every(100, 2)
    assert not criteria.delete_events_on_snapshot
    assert criteria.with_delete_events_on_snapshot().delete_events_on_snapshot
    assert criteria.should_snapshot(100, 100)
    assert criteria.should_snapshot(99, 101)
    assert not criteria.should_snapshot(101, 199)
    assert criteria.delete_upper_sequence_nr(300) == 100
    assert criteria.delete_upper_sequence_nr(150) == 0
    with pytest.raises(ValueError, match="snapshot_every_n_events must be an int >= 1"):
        RetentionCriteria.snapshot_every(0)
    with pytest.raises(ValueError, match="keep_n_snapshots must be an int >= 1, got 0"):
        RetentionCriteria.snapshot_every(10, 0)
    # A value of the wrong type is a TypeError, as the README's error convention says.
    for bad in (1.5, "2", True):
        with pytest.raises(TypeError, match="snapshot_every_n_events must be an int >= 1"):
            RetentionCriteria.snapshot_every(bad)  # type: ignore[arg-type]


# -- SQLite really gives the space back ------------------------------------------------------------
def _pragma(db: Path, name: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


async def test_sqlite_delete_frees_pages_and_keeps_the_highest_sequence_nr(db: Path) -> None:
    journal = SqliteJournal({"path": str(db)})
    await journal.start()
    try:
        payload = b"x" * 2000
        for start in range(1, 2001, 100):
            await journal.write_messages([AtomicWrite(tuple(
                PersistentRepr("big", nr, "", payload, "w", 1.0, ("t",))
                for nr in range(start, start + 100)))])
        await journal.write_messages([AtomicWrite((PersistentRepr("other", 1, "", b"\x01"),))])
        log = SqliteEventLog({"path": str(db)})
        highest_ordering = await log.highest_ordering()
        pages_before = _pragma(db, "page_count")

        await journal.delete_messages_to("big", 2000)

        assert _pragma(db, "freelist_count") == 0
        assert _pragma(db, "page_count") < pages_before / 5
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM journal WHERE persistence_id = 'big'"
                                ).fetchone()[0] == 1  # the one tombstone that keeps its place
            assert conn.execute("SELECT count(*) FROM journal_tags").fetchone()[0] == 0
        assert await journal.read_highest_sequence_nr("big", 0) == 2000
        # The rows are gone, their numbers stay used.
        rejected = await journal.write_messages([AtomicWrite((PersistentRepr("big", 7, "", b""),))])
        assert isinstance(rejected[0], SequenceConflictError)
        assert await journal.write_messages(
            [AtomicWrite((PersistentRepr("big", 2001, "", b""),))]) == [None]
        # The read side: ids keep their place, the global order never goes back.
        assert await log.highest_ordering() >= highest_ordering
        page = await log.fetch_persistence_ids(0, 10)
        assert [pid for _, pid in page.ids] == ["big", "other"]
        await log.close()
        assert await journal.integrity_check() == []
    finally:
        await journal.close()


def test_deleting_durable_events_for_in_memory_snapshots_is_refused(base: str, db: Path) -> None:
    # The journal keeps events on disk, the snapshot store (the default) in memory: deleting
    # what a snapshot covers would lose the state at the next start, so the actor is refused.
    config = system_config(base, journal={"plugin": "sqlite", "path": str(db)})
    with ActorSystem("retention", config=config) as system:
        probe = TestProbe(system)
        with pytest.raises(ActorInitializationError,
                           match="RetentionCounter: its retention deletes events on snapshot"):
            system.actor_of(RetentionCounter, "ledger", probe.ref)
        with pytest.raises(ActorInitializationError, match="snapshot store is the in-memory"):
            system.entities("ledger", RetentionCounter, probe.ref)
        # Keeping the events is fine: a lost snapshot only means a longer replay.
        system.actor_of(RetentionKeepEvents, "kept", probe.ref)
        probe.expect_msg_type(Recovered, timeout=10)
    # Both in memory, or both durable (the tests above), is consistent and allowed.
    with ActorSystem("retention", config=system_config(base)) as system:
        probe = TestProbe(system)
        system.actor_of(RetentionCounter, "ledger", probe.ref)
        probe.expect_msg_type(Recovered, timeout=10)


def test_the_retention_check_looks_through_the_test_kits_plugins(base: str, db: Path) -> None:
    # It compared plugin names: a test kit snapshot store over the in-memory one, with a
    # durable journal, passed (and the next start lost the state); a test kit journal over
    # the in-memory one, with the in-memory snapshots, was refused.
    kit_snapshots = {"plugin": "persistent_actors.testing:TestSnapshotStore"}
    config = system_config(base, journal={"plugin": "sqlite", "path": str(db)},
                           snapshot_store=kit_snapshots)
    with ActorSystem("retention", config=config) as system:
        probe = TestProbe(system)
        with pytest.raises(ActorInitializationError, match="snapshot store is the in-memory"):
            system.actor_of(RetentionCounter, "ledger", probe.ref)
    config = system_config(base, journal={"plugin": "persistent_actors.testing:TestJournal"})
    with ActorSystem("retention", config=config) as system:
        probe = TestProbe(system)
        system.actor_of(RetentionCounter, "ledger", probe.ref)
        probe.expect_msg_type(Recovered, timeout=10)
