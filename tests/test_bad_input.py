"""The bad-input table: each row gets a clear error or the documented behaviour, and no stored
event is lost or changed."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import ActorSystem, ConfigError, Kill, PluginError, SerializationError
from persistent_actors._serialization import default_serializer
from persistent_actors._thespian.loopback import free_port
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.testing import TestProbe
from persistent_actors.testing.cleanup import sweep_admin_ports
from tests.bad_input_actors import DefaultHooks, Evil, Recorder
from tests.conftest import system_config
from tests.read_only import read_only

ROOT = Path(__file__).resolve().parent.parent


def sqlite_config(base: str, db: Path, plugin: str = "sqlite") -> dict[str, Any]:
    return system_config(base, journal={"plugin": plugin, "path": str(db)})


async def write_rows(db: Path, pid: str, rows: list[tuple[str, bytes]]) -> None:
    """Store events straight through the plugin API, bypassing actors and the serializer."""
    journal = SqliteJournal({"path": str(db)})
    await journal.start()
    try:
        writes = [AtomicWrite((PersistentRepr(pid, n, manifest, payload),))
                  for n, (manifest, payload) in enumerate(rows, start=1)]
        assert await journal.write_messages(writes) == [None] * len(rows)
    finally:
        await journal.close()


def stored_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT ordering, persistence_id, sequence_nr, manifest, payload, deleted "
            "FROM journal ORDER BY ordering").fetchall()


def plain(value: Any) -> tuple[str, bytes]:
    return default_serializer.to_binary(value)


@pytest.mark.parametrize(("manifest", "payload", "expected"), [
    pytest.param("tests.gone.OldEvent", msgpack.packb({"x": 1}), "tests.gone.OldEvent",
                 id="type-no-longer-registered"),
    pytest.param("", b"\xc1\xc1\xc1", "corrupted payload", id="corrupted-bytes"),
    pytest.param("os:system", msgpack.packb("touch /tmp/never"), "os:system",
                 id="manifest-naming-a-function"),
])
async def test_an_undecodable_replayed_event_fails_recovery_and_changes_nothing(
        base: str, tmp_path: Path, manifest: str, payload: bytes, expected: str) -> None:
    db = tmp_path / "events.db"
    await write_rows(db, "victim", [plain("first"), (manifest, payload), plain("third")])
    before = stored_rows(db)
    with ActorSystem("bad", config=sqlite_config(base, db)) as system:
        probe = TestProbe(system)
        system.actor_of(Recorder, "victim", probe.ref)
        kind, error, text = probe.expect_msg(timeout=10)
        assert (kind, error) == ("recovery-failed", "RecoveryError")
        assert expected in text
        assert "sequence_nr 2" in text or "event 2" in text
        assert probe.expect_msg(timeout=10) == "stopped"
    assert stored_rows(db) == before


async def test_a_pickle_payload_is_never_unpickled(base: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    db = tmp_path / "events.db"
    crafted = pickle.dumps(Evil(str(marker)))
    await write_rows(db, "victim", [("", crafted), ("tests.Evil", crafted)])
    with pytest.raises(SerializationError):
        default_serializer.from_binary("", crafted)
    with ActorSystem("bad", config=sqlite_config(base, db)) as system:
        probe = TestProbe(system)
        system.actor_of(Recorder, "victim", probe.ref)
        assert probe.expect_msg(timeout=10)[0] == "recovery-failed"
    assert not marker.exists(), "a stored payload was unpickled and ran code"


def test_a_ten_megabyte_event_is_stored_and_replayed(base: str, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    big = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    with ActorSystem("bad", config=sqlite_config(base, db)) as system:
        probe = TestProbe(system)
        actor = system.actor_of(Recorder, "big", probe.ref, name="big")
        assert probe.expect_msg(timeout=10) == ("recovered", [], 0)
        actor.tell(("persist", big))
        assert probe.expect_msg(timeout=30) == ("persisted", ("bytes", len(big), big[:8]), 1)
        actor.tell(Kill)
        assert probe.expect_msg(timeout=10) == "stopped"
    with ActorSystem("bad", config=sqlite_config(base, db)) as system:
        probe = TestProbe(system)
        system.actor_of(Recorder, "big", probe.ref, name="big")
        assert probe.expect_msg(timeout=30) == ("recovered", [("bytes", len(big), big[:8])], 1)


def test_a_full_disk_fails_the_write_stops_the_actor_and_keeps_earlier_events(
        base: str, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    plugin = "tests.bad_input_actors:FullDiskJournal"
    with ActorSystem("bad", config=sqlite_config(base, db, plugin)) as system:
        probe = TestProbe(system)
        actor = system.actor_of(Recorder, "full", probe.ref, name="full")
        assert probe.expect_msg(timeout=10) == ("recovered", [], 0)
        actor.tell(("persist", "small"))
        assert probe.expect_msg(timeout=10) == ("persisted", "small", 1)
        actor.tell(("persist", b"x" * 1_000_000))
        kind, _, text, seq = probe.expect_msg(timeout=10)
        assert (kind, seq) == ("persist-failed", 2)
        assert "full" in text
        assert probe.expect_msg(timeout=10) == "stopped"
    with ActorSystem("bad", config=sqlite_config(base, db)) as system:
        probe = TestProbe(system)
        system.actor_of(Recorder, "full", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", ["small"], 1)


async def test_a_read_only_database_fails_at_start_and_keeps_its_events(
        base: str, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    await write_rows(db, "kept", [plain("first"), plain("second")])
    before = stored_rows(db)
    for leftover in tmp_path.glob("events.db-*"):
        leftover.unlink()  # a clean close leaves no -wal/-shm; be sure nothing is writable
    with read_only(db), pytest.raises(PluginError, match=r"events\.db"):
        ActorSystem("bad", config=sqlite_config(base, db))
    assert stored_rows(db) == before


@pytest.mark.parametrize(("manifest", "payload"), [
    pytest.param("m" * 5_000_000, msgpack.packb({"x": 1}), id="huge-manifest"),
    pytest.param("", msgpack.packb(msgpack.ExtType(3, msgpack.packb("9" * 5_000_000))),
                 id="huge-bad-datetime"),
])
async def test_stored_data_puts_a_bounded_text_into_errors_and_logs(
        base: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        manifest: str, payload: bytes) -> None:
    # Defect 10: a 5 MB stored manifest became a 5,000,000-character exception text that the
    # default on_recovery_failure logged whole.
    db = tmp_path / "events.db"
    await write_rows(db, "victim", [(manifest, payload)])
    with ActorSystem("bad", config=sqlite_config(base, db)) as system:
        probe = TestProbe(system)
        system.actor_of(DefaultHooks, "victim", probe.ref)
        kind, error, text = probe.expect_msg(timeout=30)
        assert (kind, error) == ("recovery-failed", "RecoveryError")
        assert "event 1" in text
        assert len(text) < 2_000, len(text)
        assert probe.expect_msg(timeout=10) == "stopped"
    logged = [r.getMessage() for r in caplog.records]
    if base == "simple":  # the actor's log lands in this process
        assert any("recovery of persistence id 'victim' failed: RecoveryError: " in m
                   for m in logged)  # the exception's type too, not only its text
    assert all(len(m) < 2_000 for m in logged), max(map(len, logged))


@pytest.mark.parametrize("base", [
    "simple", pytest.param("multiproc-tcp", marks=pytest.mark.multiproc)])
def test_a_rejected_event_reaches_stderr_in_an_application_without_logging_set_up(
        base: str, tmp_path: Path) -> None:
    # The library adds no handler of its own to its logger (not even a NullHandler): until the
    # application configures logging, Python's last resort prints warnings and errors to
    # stderr. With a NullHandler the simple base said nothing at all here.
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'[actor_system]\nbase = "{base}"\nadmin_port = {port}\n',
                      encoding="utf-8")
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    try:
        # Files, not pipes: thespian's admin daemon would keep an inherited pipe open.
        with out.open("wb") as stdout, err.open("wb") as stderr:
            code = subprocess.run(
                [sys.executable, "-m", "tests.unregistered_app", str(config)],
                cwd=ROOT, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                timeout=120, check=False).returncode
    finally:
        if base != "simple":
            sweep_admin_ports([port])
    errors = err.read_text(errors="replace")
    assert code == 0, errors
    assert out.read_text().strip() == "[]"
    assert "rejected event Unregistered (sequence_nr 1) for persistence id " \
        "'basket-unregistered'" in errors
    assert "is not registered; decorate it with @persistent_actors.register" in errors


@pytest.mark.parametrize(("attribute", "value", "expected"), [
    ("stash_capacity", -1, r"Odd\.stash_capacity must be an int in 1\.\.100,000,000, got -1"),
    ("stash_capacity", "5", r"stash_capacity must be an int .* got '5'"),
    ("stash_capacity", None, r"stash_capacity must be an int .* got None"),
    ("internal_stash_capacity", 0, r"Odd\.internal_stash_capacity must be an int .* got 0"),
    ("internal_stash_overflow_strategy", "drop",
     r"internal_stash_overflow_strategy must be a StashOverflowStrategy"),
    ("journal_plugin_id", 5, r"Odd\.journal_plugin_id must be None or the id"),
    ("snapshot_plugin_id", "", r"Odd\.snapshot_plugin_id must be None or the id"),
    ("backoff", 3.0, r"Odd\.backoff must be None or Backoff\.on_stop"),
])
def test_bad_class_settings_fail_the_creation_naming_them(attribute: str, value: Any,
                                                           expected: str) -> None:
    # Accepted before, they failed later: a stash that always overflowed, a TypeError in the
    # first stash naming neither the class nor the attribute, or no effect at all.
    odd = type("Odd", (Recorder,), {"__module__": Recorder.__module__, attribute: value})
    with ActorSystem("odd", config=system_config("simple")) as system:
        with pytest.raises(ConfigError, match=expected):
            system.actor_of(odd, TestProbe(system).ref)
        with pytest.raises(ConfigError, match=expected):
            system.entities("odd", odd, TestProbe(system).ref)
