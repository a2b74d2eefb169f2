"""Choosing journal plugins in config: defaults, per-class overrides, and bad settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import MAX_SEQUENCE_NR, ActorSystem, ConfigError, PluginError
from persistent_actors._serialization import default_serializer
from persistent_actors._thespian import plugin_host
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.plugin_actors import AuditCounter, Broadcaster, Counter, GroupRecordingJournal


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
