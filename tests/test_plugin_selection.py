"""Choosing journal plugins in config: defaults, per-class overrides, and bad settings."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import MAX_SEQUENCE_NR, ActorSystem, ConfigError, PluginError
from persistent_actors._serialization import default_serializer
from persistent_actors._thespian import plugin_host
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.plugin_actors import (
    AuditCounter,
    Broadcaster,
    Counter,
    GroupRecordingJournal,
    MarksItsStop,
)


def sqlite(path: Path) -> dict[str, str]:
    return {"plugin": "sqlite", "path": str(path)}


async def stored_events(path: Path, pid: str) -> list[tuple[int, object]]:
    """(sequence_nr, event) of every event stored for `pid`, read straight from the file."""
    journal = SqliteJournal({"path": str(path)})
    await journal.start()
    try:
        return [(r.sequence_nr, default_serializer.from_binary(r.manifest, r.payload))
                async for r in journal.replay_messages(pid, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)]
    finally:
        await journal.close()


async def test_a_class_with_journal_plugin_id_writes_to_that_journal(
        base: str, tmp_path: Path) -> None:
    default_db, audit_db = tmp_path / "default.db", tmp_path / "audit.db"
    config = system_config(base, journal=sqlite(default_db),
                           journals={"audit": sqlite(audit_db)})
    with ActorSystem("plugins", config=config) as system:
        probe = TestProbe(system)
        plain = system.actor_of(Counter, "plain", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        audited = system.actor_of(AuditCounter, "audited", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        plain.tell(5)
        assert probe.expect_msg(timeout=10) == ("persisted", 5, 1)
        audited.tell(7)
        assert probe.expect_msg(timeout=10) == ("persisted", 7, 1)
    assert await stored_events(default_db, "plain") == [(1, 5)]
    assert await stored_events(default_db, "audited") == []
    assert await stored_events(audit_db, "audited") == [(1, 7)]


def test_a_database_folder_that_cannot_be_created_fails_at_start_naming_the_path(
        base: str, tmp_path: Path) -> None:
    # A missing folder is created (defect 15); one under a regular file cannot be.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    path = blocker / "events.db"
    with pytest.raises(PluginError, match="not-a-folder"):
        ActorSystem("plugins", config=system_config(base, journal=sqlite(path)))
    created = tmp_path / "new-folder" / "events.db"
    ActorSystem("plugins", config=system_config(base, journal=sqlite(created))).shutdown()
    assert created.is_file()


def test_a_non_sqlite_file_fails_at_start_and_is_not_overwritten(
        base: str, tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"these are not the bytes of an SQLite database\n" * 10)
    before = path.read_bytes()
    with pytest.raises(PluginError, match=r"events\.db"):
        ActorSystem("plugins", config=system_config(base, journal=sqlite(path)))
    assert path.read_bytes() == before


def test_an_unknown_plugin_setting_names_the_key(tmp_path: Path) -> None:
    journal = {**sqlite(tmp_path / "e.db"), "synchronus": "FULL"}
    with pytest.raises(ConfigError, match="synchronus"):
        ActorSystem("plugins", config={"persistence": {"journal": journal}})


def test_an_unknown_journal_plugin_id_fails_actor_creation(system: ActorSystem) -> None:
    probe = TestProbe(system)
    with pytest.raises(ConfigError, match="audit"):
        system.actor_of(AuditCounter, "x", probe.ref)


def test_the_in_memory_default_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="persistent_actors"), ActorSystem("warn"):
        pass
    warnings = [r for r in caplog.records if "in-memory journal" in r.getMessage()]
    assert len(warnings) == 1


async def test_two_live_actors_with_one_persistence_id_conflict_instead_of_overwriting(
        base: str, tmp_path: Path) -> None:
    """Two systems on one file (one system refuses a second live actor for an id)."""
    db = tmp_path / "events.db"
    config = system_config(base, journal=sqlite(db))
    with ActorSystem("plugins", config=config) as system, \
            ActorSystem("plugins-2", config=config) as other:
        probe, other_probe = TestProbe(system), TestProbe(other)
        first = system.actor_of(Counter, "shared", probe.ref, name="first")
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        second = other.actor_of(Counter, "shared", other_probe.ref, name="second")
        assert other_probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        first.tell(1)
        assert probe.expect_msg(timeout=10) == ("persisted", 1, 1)
        second.tell(100)
        assert other_probe.expect_msg(timeout=10) == (
            "rejected", "SequenceConflictError", 100, 1)
        second.tell("total")
        assert other_probe.expect_msg(timeout=10) == ("total", 0)
    assert await stored_events(db, "shared") == [(1, 1)]


def test_writes_of_many_actors_share_one_journal_call() -> None:
    """Group commit. Simple base only: the recording journal's class-level list is visible to
    the test only when the plugin runs in the test's process."""
    GroupRecordingJournal.ids_per_call.clear()
    config = {"persistence": {"journal": {
        "plugin": "tests.plugin_actors:GroupRecordingJournal"}}}
    with ActorSystem("group", config=config) as system:
        probe = TestProbe(system)
        counters = [system.actor_of(Counter, f"g{n}", probe.ref) for n in range(10)]
        for _ in counters:
            assert probe.expect_msg(timeout=10)[0] == "recovered"
        system.actor_of(Broadcaster).tell((counters, 1))
        persisted = [probe.expect_msg(timeout=10) for _ in counters]
    assert sorted(persisted) == [("persisted", 1, 1)] * 10
    assert max(GroupRecordingJournal.ids_per_call) == 10


def test_a_plugin_whose_start_never_returns_fails_its_actors_not_the_system(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # It held the simple base's one thread for ever: every other actor stopped answering and
    # the system's shutdown never returned. Now its start fails after PLUGIN_START_TIMEOUT.
    monkeypatch.setattr(plugin_host, "PLUGIN_START_TIMEOUT", 0.5)
    config = system_config("simple", journals={"audit": {
        "plugin": "tests.plugin_actors:NeverStarts"}})
    with ActorSystem("hanging-plugin", config=config) as system:
        probe = TestProbe(system)
        with pytest.raises(PluginError, match=r"journal 'audit' .* did not start within 0.5 s"):
            system.actor_of(AuditCounter, "audited", probe.ref)
        system.actor_of(Counter, "plain", probe.ref).tell(3)  # the default journal works
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        assert probe.expect_msg(timeout=10) == ("persisted", 3, 1)


def _plugins(base: str, journal: str, snapshots: str = "inmem") -> dict[str, object]:
    return system_config(base, journal={"plugin": f"tests.plugin_actors:{journal}"},
                         snapshot_store={"plugin": snapshots if snapshots == "inmem" else
                                         f"tests.plugin_actors:{snapshots}"})


@pytest.mark.parametrize(("journal", "expected"), [
    # A True taken for a rejection: the live state lacked an event that was stored.
    ("TruthyResults", "TruthyResults.write_messages returned True for write 0: expected None "
                      "(stored) or an exception (rejected)"),
    ("NoResults", "NoResults.write_messages returned NoneType: expected a list of one result "
                  "per write"),
])
def test_a_journal_answering_writes_out_of_contract_fails_the_persist_naming_it(
        base: str, journal: str, expected: str) -> None:
    with ActorSystem("contract", config=_plugins(base, journal)) as system:
        probe = TestProbe(system)
        counter = system.actor_of(Counter, "c", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        counter.tell(5)
        assert probe.expect_msg(timeout=10) == ("persist-failed", "JournalError", expected)


@pytest.mark.parametrize(("journal", "expected"), [
    ("HighestNone", ("JournalError", "HighestNone.read_highest_sequence_nr returned None: "
                                     "expected an int >= 0")),
    ("CoroutineReplay", ("TypeError", "CoroutineReplay.replay_messages must be an async "
                                      "generator (an async def that yields), not a coroutine")),
])
def test_a_journal_replaying_out_of_contract_fails_the_recovery_naming_it(
        base: str, journal: str, expected: tuple[str, str]) -> None:
    with ActorSystem("contract", config=_plugins(base, journal)) as system:
        probe = TestProbe(system)
        counter = system.actor_of(Counter, "c", probe.ref)
        if journal == "CoroutineReplay":  # replayed once there is an event
            assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
            counter.tell(2)
            assert probe.expect_msg(timeout=10) == ("persisted", 2, 1)
            system.stop(counter)
            system.actor_of(Counter, "c", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovery-failed", *expected)
        probe.expect_no_msg(0.3)


@pytest.mark.parametrize(("journal", "snapshots"), [("MemoryviewPayloads", "inmem"),
                                                    ("InmemJournal", "MemoryviewSnapshots")])
def test_payloads_a_driver_returns_as_memoryviews_recover(base: str, journal: str,
                                                           snapshots: str) -> None:
    # On multiproc-tcp a memoryview does not pickle: the replay or the snapshot never reached
    # the actor, whose recovery timed out naming no cause.
    journal_spec = "tests.plugin_actors:MemoryviewPayloads" if journal != "InmemJournal" \
        else "inmem"
    config = system_config(base, journal={"plugin": journal_spec},
                           snapshot_store={"plugin": snapshots if snapshots == "inmem" else
                                           f"tests.plugin_actors:{snapshots}"})
    with ActorSystem("views", config=config) as system:
        probe = TestProbe(system)
        counter = system.actor_of(Counter, "c", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        counter.tell(3)
        assert probe.expect_msg(timeout=10) == ("persisted", 3, 1)
        counter.tell("snap")
        assert probe.expect_msg(timeout=10) == ("saved", 1)
        counter.tell(4)
        assert probe.expect_msg(timeout=10) == ("persisted", 4, 2)
        system.stop(counter)
        system.actor_of(Counter, "c", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 7, 2)


@pytest.mark.parametrize(("snapshots", "expected"), [
    ("DictSnapshots", "DictSnapshots.load returned dict: expected a SelectedSnapshot or None"),
    ("OtherIdSnapshots", "OtherIdSnapshots.load returned a snapshot of 'c0' for 'c'"),
])
def test_a_snapshot_store_loading_out_of_contract_fails_the_recovery_once(
        base: str, snapshots: str, expected: str) -> None:
    # A dict made the actor raise on it and restart in a tight loop, for ever.
    config = _plugins(base, "InmemJournal", snapshots)
    config["persistence"]["journal"] = {"plugin": "inmem"}  # type: ignore[index]
    with ActorSystem("contract", config=config) as system:
        probe = TestProbe(system)
        counter = system.actor_of(Counter, "c", probe.ref)
        if snapshots == "OtherIdSnapshots":  # loads a snapshot once one is saved
            assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
            counter.tell("snap")
            assert probe.expect_msg(timeout=10) == ("saved", 0)
            system.stop(counter)
            system.actor_of(Counter, "c", probe.ref)
        what, kind, cause = probe.expect_msg(timeout=10)
        assert (what, kind) == ("recovery-failed", "PluginError")
        assert expected in cause
        probe.expect_no_msg(0.5)


def test_a_plugin_whose_start_raises_fails_with_a_plugin_error_naming_it(base: str) -> None:
    with pytest.raises(PluginError, match=r"journal 'default' \(plugin 'tests\.plugin_actors:"
                                          r"StartRefused'\) failed to start: "
                                          r"ConnectionRefusedError: .*Connection refused"):
        ActorSystem("refused", config=_plugins(base, "StartRefused"))


def test_a_simple_base_shutdown_stops_every_actor_behind_a_slow_plugin_close(
        tmp_path: Path) -> None:
    # The shutdown's exit requests queued behind a close() that took longer than one run of
    # the queue (20 ms) were dropped: post_stop never ran, the snapshot store stayed open.
    marker = tmp_path / "stopped.txt"
    config = system_config("simple", journal={"plugin": "tests.plugin_actors:SlowClose"},
                           snapshot_store={"plugin": "sqlite", "path": str(tmp_path / "s.db")})
    before = {t.name for t in threading.enumerate()}
    with ActorSystem("slow-close", config=config) as system:
        for n in range(3):
            assert system.actor_of(MarksItsStop, str(marker)).ask(n, timeout=10) == n
    assert marker.read_text(encoding="utf-8") == "stopped\n" * 3
    left = {t.name for t in threading.enumerate()} - before
    assert not [name for name in left if name.startswith("persistent_actors-")], left
