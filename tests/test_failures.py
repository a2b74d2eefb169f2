"""Akka's failure semantics, driven by the persistence test kit, on both bases."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.sqlite import SqliteSnapshotStore
from persistent_actors import (
    ActorInitializationError,
    ActorRef,
    ActorSystem,
    Backoff,
    ConfigError,
    DeadLetter,
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    DeleteSnapshotFailure,
    JournalError,
    PersistenceError,
    PoisonPill,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
    SnapshotMetadata,
)
from persistent_actors._persistent_actor import _events as persist_all_events
from persistent_actors._serialization import default_serializer
from persistent_actors._thespian.common import portable_error
from persistent_actors.testing import (
    Delay,
    Fail,
    Pass,
    PersistenceTestKit,
    Reject,
    TestProbe,
)
from persistent_actors.testing.persistence_testkit import (
    JOURNAL_OPERATIONS,
    SetBehaviour,
    _Behaviours,
    _decode,
)
from tests.conftest import subscribe_synced, system_config
from tests.failure_actors import (
    Answerer,
    AsyncRaces,
    BackoffReporter,
    DeleteMessagesCmd,
    DeleteSnapshotCmd,
    FailingPostRestart,
    FailingPreStart,
    FailingRecoveryProperty,
    FailingSecondConstructor,
    Fill,
    PatientBackoffReporter,
    PersistAllNone,
    PersistsOnRejection,
    Poison,
    ProcessReporter,
    RaisingRecoveryFailureHook,
    Reporter,
    SecondBackoffReporter,
    SlowRecovery,
    StopInHandler,
    StopsInRecovery,
    TaggedPair,
    TaggingReporter,
    TellsItsRecoverySender,
    TinyStashDrop,
    TinyStashReply,
    TinyStashThrow,
    WrongRecoveryType,
    WrongRetentionType,
    is_big,
    is_one,
)
from tests.system_actors import CodedError

TEST_JOURNAL = "persistent_actors.testing:TestJournal"
TEST_SNAPSHOTS = "persistent_actors.testing:TestSnapshotStore"


def kit_config(base: str, **persistence: Any) -> dict[str, Any]:
    sections: dict[str, Any] = {"journal": {"plugin": TEST_JOURNAL},
                                "snapshot_store": {"plugin": TEST_SNAPSHOTS}}
    sections.update(persistence)
    return system_config(base, **sections)


@dataclasses.dataclass
class Kit:
    system: ActorSystem
    kit: PersistenceTestKit
    probe: TestProbe

    def start(self, cls: type[Reporter] = Reporter, pid: str = "p", name: str | None = None
              ) -> Any:
        return self.system.actor_of(cls, pid, self.probe.ref, name=name)


@pytest.fixture
def kit(base: str) -> Iterator[Kit]:
    with ActorSystem("failures", config=kit_config(base)) as system:
        yield Kit(system, PersistenceTestKit(system), TestProbe(system))


def test_a_failed_write_calls_on_persist_failure_and_stops(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(1)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 1, 1)
    kit.kit.journal.on_write(Fail())
    actor.tell(2)
    assert kit.probe.expect_msg(timeout=10) == ("persist-failed", "JournalError", 2)
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.kit.journal.on_write(Pass())
    kit.start(name="again")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 1, 1)


def test_a_typed_rejection_skips_the_handler_uses_the_number_and_continues(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    with kit.kit.journal.on_write(Reject(on_type=Poison)):
        actor.tell("poison")
        assert kit.probe.expect_msg(timeout=10) == ("rejected", "JournalError", "Poison", 1)
        actor.tell(5)
        assert kit.probe.expect_msg(timeout=10) == ("persisted", 5, 2)
    actor.tell("poison")
    assert kit.probe.expect_msg(timeout=10) == "poison handler ran"


def test_persist_async_bursts_get_one_outcome_per_write_in_order(kit: Kit) -> None:
    # All stored (the plugin host answers such a batch in one go) and mixed with a rejection
    # (answered item by item): each handler, or on_persist_rejected, in sequence order.
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(("burst", (1, 2, 3)))
    assert [kit.probe.expect_msg(timeout=10) for _ in range(3)] == [
        ("persisted", 1, 1), ("persisted", 2, 2), ("persisted", 3, 3)]
    with kit.kit.journal.on_write(Reject(on_type=Poison)):
        actor.tell(("burst", (4, "poison", 5)))
        actor.tell(("burst", ("poison",)))  # batched behind the first while it is in flight
        actor.tell(("burst", (6,)))
        assert [kit.probe.expect_msg(timeout=10) for _ in range(5)] == [
            ("persisted", 4, 4), ("rejected", "JournalError", "Poison", 5),
            ("persisted", 5, 6), ("rejected", "JournalError", "Poison", 7),
            ("persisted", 6, 8)]
    actor.tell("total")
    assert kit.probe.expect_msg(timeout=10) == ("total", 21, 8)


def test_a_predicate_failure_hits_only_matching_events(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    kit.kit.journal.on_write(Fail(predicate=is_big))
    actor.tell(7)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 7, 1)
    actor.tell(700)
    assert kit.probe.expect_msg(timeout=10) == ("persist-failed", "JournalError", 2)
    assert kit.probe.expect_msg(timeout=10) == "stopped"


def test_a_failing_replay_calls_on_recovery_failure_and_stops(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(1)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 1, 1)
    kit.kit.journal.on_recovery(Fail())
    kit.system.stop(actor)  # one live actor per persistence id
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.start(name="second")
    assert kit.probe.expect_msg(timeout=10) == ("recovery-failed", "JournalError")
    assert kit.probe.expect_msg(timeout=10) == "stopped"


def test_a_failing_snapshot_load_fails_recovery(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    kit.kit.snapshots.on_load(Fail())
    kit.start(pid="other", name="second")
    assert kit.probe.expect_msg(timeout=10) == ("recovery-failed", "SnapshotStoreError")
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    actor.tell("total")
    assert kit.probe.expect_msg(timeout=10) == ("total", 0, 0)


def test_recovery_without_progress_times_out(base: str) -> None:
    config = kit_config(base, recovery_event_timeout=0.3)
    with ActorSystem("failures", config=config) as system:
        kit, probe = PersistenceTestKit(system), TestProbe(system)
        kit.journal.on_recovery(Delay(1.0))
        system.actor_of(Reporter, "slow", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovery-failed", "RecoveryTimedOutError")
        assert probe.expect_msg(timeout=10) == "stopped"


def test_backoff_restarts_an_actor_stopped_by_a_journal_failure(kit: Kit) -> None:
    actor = kit.start(BackoffReporter, name="resilient")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(1)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 1, 1)
    kit.kit.journal.on_write(Fail())
    actor.tell(2)
    assert kit.probe.expect_msg(timeout=10) == ("persist-failed", "JournalError", 2)
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.kit.journal.on_write(Pass())
    actor.tell(3)  # kept while the actor waits to be started again
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 1, 1)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 3, 2)


def test_a_failing_recovery_is_retried_with_backoff_until_it_succeeds(kit: Kit) -> None:
    kit.kit.journal.on_recovery(Fail())
    kit.start(BackoffReporter, name="resilient")
    assert kit.probe.expect_msg(timeout=10) == ("recovery-failed", "JournalError")
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    assert kit.probe.expect_msg(timeout=10) == ("recovery-failed", "JournalError")
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.kit.journal.on_recovery(Pass())
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)


def test_a_persist_in_on_persist_rejected_is_written_and_commands_go_on(kit: Kit) -> None:
    # The hook's persist waited for a flush that never came: every later command stayed in
    # the internal stash for ever (Akka goes back to commands before the hook runs).
    actor = kit.start(PersistsOnRejection)
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    with kit.kit.journal.on_write(Reject(on_type=Poison)):
        actor.tell("poison")
        assert kit.probe.expect_msg(timeout=10) == ("rejected", "JournalError", "Poison", 1)
        assert kit.probe.expect_msg(timeout=10) == ("persisted", 100, 2)
        actor.tell(5)
        assert kit.probe.expect_msg(timeout=10) == ("persisted", 5, 3)


def test_a_stop_while_waiting_for_a_backoff_restart(kit: Kit) -> None:
    # post_stop ran a second time on the stopped instance, and the messages kept for the
    # restart (stashed behind the failed write, sent while waiting) vanished unseen.
    dead = TestProbe(kit.system)
    subscribe_synced(kit.system, dead, DeadLetter, DeadLetter("synced", None, dead.ref))
    actor = kit.start(PatientBackoffReporter, name="patient")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    kit.kit.journal.on_write(Fail())
    actor.tell(1)
    actor.tell(2)  # stashed behind the write that fails
    assert kit.probe.expect_msg(timeout=10) == ("persist-failed", "JournalError", 1)
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    actor.tell(3)  # kept for the restart
    kit.system.stop(actor)
    assert [dead.expect_msg(timeout=10).message for _ in range(2)] == [2, 3]
    kit.probe.expect_no_msg(0.5)  # no second post_stop
    dead.expect_no_msg(0.2)


def test_applying_replayed_events_is_progress_for_the_recovery_timeout(
        base: str, tmp_path: Path) -> None:
    # The timeout counted from each chunk's arrival: an on_recover that took longer than it
    # for a chunk (8 events x 100 ms here) failed a recovery whose journal never stalled.
    # (0.6 s, not less: the journal's own answers must come within it on a loaded machine.)
    config = system_config(base, journal={"plugin": "sqlite", "path": str(tmp_path / "j.db"),
                                          "replay_page_size": 8},
                           recovery_event_timeout=0.6,
                           replay_filter={"mode": "off"})  # (it holds the chunks to the end)
    with ActorSystem("failures", config=config) as system:
        probe = TestProbe(system)
        actor = system.actor_of(Reporter, "slow", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        for value in range(1, 17):
            actor.tell(value)
            assert probe.expect_msg(timeout=10) == ("persisted", value, value)
        system.stop(actor)
        assert probe.expect_msg(timeout=10) == "stopped"
        system.actor_of(SlowRecovery, "slow", probe.ref)  # 2 chunks x 8 x 100 ms in on_recover
        assert probe.expect_msg(timeout=10) == ("recovered", 136, 16)


def test_an_actor_that_stops_itself_in_on_recover_replays_no_further(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    for value in (1, 99, 2):
        actor.tell(value)
        assert kit.probe.expect_msg(timeout=10)[:2] == ("persisted", value)
    kit.system.stop(actor)
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.start(StopsInRecovery, name="again")
    assert kit.probe.expect_msg(timeout=10) == ("replayed", 1)
    assert kit.probe.expect_msg(timeout=10) == ("replayed", 99)
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.probe.expect_no_msg(0.5)  # the rest of the chunk ran on_recover after post_stop


def test_a_failing_recovery_failure_hook_is_logged_as_a_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    # It was logged as a restart, naming an internal message; the actor stops (log records
    # are this process's on the simple base).
    with ActorSystem("failures", config=kit_config("simple")) as system:
        kit, probe = PersistenceTestKit(system), TestProbe(system)
        kit.journal.on_recovery(Fail())
        system.actor_of(RaisingRecoveryFailureHook, "p", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovery-failed", "JournalError")
        assert probe.expect_msg(timeout=10) == "stopped"
        probe.expect_no_msg(0.3)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("persistent")]
    assert any("raised as it stopped (it stays stopped)" in m for m in messages), messages
    assert not any("restarts" in m for m in messages), messages


def test_a_stopped_actors_timers_are_no_dead_letters(base: str) -> None:
    # On the simple base the recovery timeout's wakeup of a stopped actor came due later and
    # was published as a DeadLetter(<thespian WakeupMessage>), as was a user timer's.
    # The timeout is 1 s (the recovery must finish within it on a loaded machine), and the
    # wait for a dead letter outlasts it.
    config = kit_config(base, recovery_event_timeout=1.0)
    with ActorSystem("failures", config=config) as system:
        probe, dead = TestProbe(system), TestProbe(system)
        system.event_stream.subscribe(dead.ref, DeadLetter)
        actor = system.actor_of(Reporter, "p", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        system.stop(actor)
        assert probe.expect_msg(timeout=10) == "stopped"
        dead.expect_no_msg(1.5)


def test_late_plugin_answers_to_a_backed_off_instance_are_no_commands(base: str) -> None:
    # The replay of a recovery that timed out arrived while the actor waited for its back-off
    # restart, was kept with the messages for the next instance, and reached its on_command.
    # A 1 s timeout, for the second recovery must finish within it on a loaded machine; the
    # late replay comes at 1.5 s, during the 1 s back-off.
    config = kit_config(base, recovery_event_timeout=1.0)
    with ActorSystem("failures", config=config) as system:
        kit, probe = PersistenceTestKit(system), TestProbe(system)
        kit.journal.on_recovery(Delay(1.5))
        system.actor_of(SecondBackoffReporter, "late", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovery-failed", "RecoveryTimedOutError")
        assert probe.expect_msg(timeout=10) == "stopped"
        kit.journal.on_recovery(Pass())
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        probe.expect_no_msg(1.0)


def test_poison_pill_waits_for_the_pending_persist_handler(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    kit.kit.journal.on_write(Delay(0.3))
    actor.tell(4)
    actor.tell(PoisonPill)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 4, 1)
    assert kit.probe.expect_msg(timeout=10) == "stopped"


def test_stash_overflow_discards_to_dead_letters(kit: Kit) -> None:
    dead = TestProbe(kit.system)
    subscribe_synced(kit.system, dead, DeadLetter, DeadLetter("synced", None, dead.ref))
    actor = kit.start(TinyStashDrop)
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(Fill(3, dead.ref))
    assert kit.probe.expect_msg(timeout=10) == "filled"
    assert kit.probe.expect_msg(timeout=10) == ("handled", 0)
    assert kit.probe.expect_msg(timeout=10) == ("handled", 1)
    kit.probe.expect_no_msg(0.3)
    letter = dead.expect_msg_type(DeadLetter, timeout=10)
    assert letter.message == ("queued", 2)


def test_stash_overflow_replies_to_the_sender(kit: Kit) -> None:
    asker = TestProbe(kit.system)
    actor = kit.start(TinyStashReply)
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(Fill(3, asker.ref))
    assert asker.expect_msg(timeout=10) == "stash full, try later"
    assert kit.probe.expect_msg(timeout=10) == "filled"
    assert kit.probe.expect_msg(timeout=10) == ("handled", 0)
    assert kit.probe.expect_msg(timeout=10) == ("handled", 1)


def test_stash_overflow_throws_and_restarts_the_actor(kit: Kit) -> None:
    actor = kit.start(TinyStashThrow)
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(Fill(3, kit.probe.ref))
    assert kit.probe.expect_msg(timeout=10) == "stopped"  # pre_restart calls post_stop
    assert kit.probe.expect_msg(timeout=10) == ("restarted", "StashOverflowError")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 1)  # Added(0) was written
    assert kit.probe.expect_msg(timeout=10) == ("handled", 0)
    assert kit.probe.expect_msg(timeout=10) == ("handled", 1)


async def test_an_undecodable_snapshot_falls_back_to_an_older_one(
        base: str, tmp_path: Path) -> None:
    db = tmp_path / "snapshots.db"
    store = SqliteSnapshotStore({"path": str(db)})
    await store.start()
    good = default_serializer.to_binary(10)
    await store.save(SnapshotMetadata("p", 0, 1.0), *good)
    await store.save(SnapshotMetadata("p", 5, 2.0), "tests.gone.State", b"\x80")
    await store.close()
    config = system_config(base, snapshot_store={"plugin": "sqlite", "path": str(db)})
    with ActorSystem("failures", config=config) as system:
        probe = TestProbe(system)
        system.actor_of(Reporter, "p", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 10, 0)


def test_test_kit_fails_snapshot_saves_and_deletes(kit: Kit) -> None:
    actor = kit.start()
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(3)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 3, 1)
    with kit.kit.snapshots.on_save(Fail()):
        actor.tell("snap")
        failure = kit.probe.expect_msg_type(SaveSnapshotFailure, timeout=10)
        assert failure.metadata.sequence_nr == 1
    actor.tell("snap")
    assert kit.probe.expect_msg_type(SaveSnapshotSuccess, timeout=10).metadata.sequence_nr == 1
    with kit.kit.snapshots.on_delete(Fail()):
        actor.tell(DeleteSnapshotCmd(1))
        kit.probe.expect_msg_type(DeleteSnapshotFailure, timeout=10)
    with kit.kit.journal.on_delete(Fail()):
        actor.tell(DeleteMessagesCmd(1))
        assert kit.probe.expect_msg_type(DeleteMessagesFailure, timeout=10).to_sequence_nr == 1
    actor.tell(DeleteMessagesCmd(1))
    assert kit.probe.expect_msg(timeout=10) == DeleteMessagesSuccess(1)


def test_recovery_after_a_restart_comes_from_no_sender(system: ActorSystem) -> None:
    # The context outlives the restart: replayed events and RecoveryCompleted came "from" the
    # sender of the message that made the old instance fail, whose replies went to it.
    probe = TestProbe(system)
    actor = system.actor_of(TellsItsRecoverySender)
    actor.tell("p", sender=probe.ref)
    assert probe.expect_msg(timeout=10) == "persisted"
    actor.tell("crash", sender=probe.ref)
    assert actor.ask("ping", timeout=10) == "pong"  # restarted and recovered
    probe.expect_no_msg(0.3)


def test_the_kit_refuses_a_reject_outside_writes(kit: Kit) -> None:
    with pytest.raises(ConfigError, match="Reject applies to journal writes only"):
        kit.kit.journal.on_recovery(Reject())


def test_the_kit_on_a_system_without_the_test_plugins_says_what_to_configure(
        system: ActorSystem) -> None:
    kit = PersistenceTestKit(system)
    with pytest.raises(ConfigError, match=r"needs the journal 'default' to be persistent_actors"
                                          r"\.testing:TestJournal"):
        kit.journal.on_write(Fail())
    with pytest.raises(ConfigError, match=r"snapshot store 'default' to be .*TestSnapshotStore"):
        kit.snapshots.on_load(Fail())


async def test_an_undecodable_snapshot_at_sequence_nr_0_falls_back_to_a_full_replay(
        base: str, tmp_path: Path) -> None:
    # Defect 1: a snapshot saved before any event (sequence number 0) whose payload no longer
    # decodes made recovery compute a limit of -1 and restart the actor for ever.
    db = tmp_path / "snapshots.db"
    store = SqliteSnapshotStore({"path": str(db)})
    await store.start()
    await store.save(SnapshotMetadata("p", 0, 1.0), "tests.gone.State", b"\x80")
    await store.close()
    config = system_config(base, snapshot_store={"plugin": "sqlite", "path": str(db)})
    with ActorSystem("failures", config=config) as system:
        probe = TestProbe(system)
        actor = system.actor_of(Reporter, "p", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        actor.tell(4)
        assert probe.expect_msg(timeout=10) == ("persisted", 4, 1)
        probe.expect_no_msg(0.3)  # no restart


@pytest.mark.parametrize(("cls", "cause"), [
    (FailingPreStart, "pre_start is broken"),
    (FailingRecoveryProperty, "no recovery for you"),
    # These two failed recovery later (on_recovery_failure), where actor_of had returned.
    (WrongRecoveryType, "recovery must be a Recovery, got str"),
    (WrongRetentionType, "retention"),
])
def test_an_actor_whose_initialization_raises_is_stopped_and_actor_of_raises(
        kit: Kit, cls: type[Reporter], cause: str) -> None:
    # Defect 3: pre_start (or the recovery property) raising restarted the actor ~1,500
    # times until RecursionError. Akka: ActorInitializationException stops the actor.
    with pytest.raises(ActorInitializationError, match=f"{cls.__qualname__}.*{cause}"):
        kit.start(cls, name="init")
    if cls is FailingPreStart:
        assert kit.probe.expect_msg(timeout=10) == "pre_start"
    assert kit.probe.expect_msg(timeout=10) == "stopped"  # post_stop of the failed instance
    kit.probe.expect_no_msg(0.5)  # no restart, no second pre_start
    # The name is free again and the system works.
    kit.start(name="init")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)


def test_a_restart_whose_post_restart_raises_stops_the_actor(kit: Kit) -> None:
    actor = kit.start(FailingPostRestart, name="restarting")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("boom")
    assert kit.probe.expect_msg(timeout=10) == "stopped"  # pre_restart of the old instance
    assert kit.probe.expect_msg(timeout=10) == ("post_restart", "RuntimeError")
    assert kit.probe.expect_msg(timeout=10) == "stopped"  # the new instance is stopped
    kit.probe.expect_no_msg(0.5)  # no second restart
    kit.start(name="restarting")  # the name was released: the actor is gone
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)


@pytest.mark.parametrize("tag", ["x\udc80", "x\x00y"], ids=["surrogate", "nul"])
@pytest.mark.parametrize("plugin", ["inmem", "sqlite"])
def test_a_write_that_cannot_be_encoded_is_rejected_alone(
        base: str, tmp_path: Path, plugin: str, tag: str) -> None:
    # Defect 2: a lone surrogate in a tag made SQLite raise UnicodeEncodeError inside the
    # batch transaction, failing (and stopping) every writer of the batch; in memory it was
    # stored. Now it is rejected before the journal, on every plugin, and the rest commits.
    # A NUL was stored by SQLite and in memory, and refused by PostgreSQL: refused everywhere.
    journal: dict[str, Any] = {"plugin": plugin}
    if plugin == "sqlite":
        journal["path"] = str(tmp_path / "events.db")
    with ActorSystem("encode", config=system_config(base, journal=journal)) as system:
        probe = TestProbe(system)
        actor = system.actor_of(TaggingReporter, "p", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        actor.tell(TaggedPair(tag))
        assert probe.expect_msg(timeout=10) == ("persisted", 1, 1)
        assert probe.expect_msg(timeout=10) == ("rejected", "SerializationError", "Tagged", 2)
        actor.tell(5)  # the actor goes on
        assert probe.expect_msg(timeout=10) == ("persisted", 5, 3)
        system.stop(actor)
        assert probe.expect_msg(timeout=10) == "stopped"
        system.actor_of(TaggingReporter, "p", probe.ref)
        assert probe.expect_msg(timeout=10) == ("recovered", 6, 3)


@pytest.mark.parametrize(("pid", "reason"), [("p\udc80", "not valid UTF-8"),
                                             ("p\x00", "NUL character")])
def test_a_persistence_id_that_cannot_be_encoded_fails_creation(kit: Kit, pid: str,
                                                                reason: str) -> None:
    with pytest.raises(ActorInitializationError, match=rf"persistence_id.*cannot be stored: "
                                                       rf".*{reason}"):
        kit.start(pid=pid)
    kit.probe.expect_no_msg(0.3)  # never recovered, never wrote


def test_nothing_runs_or_is_written_after_a_stop_inside_a_persist_all_handler(kit: Kit) -> None:
    # Defect 5: the handler of e2 ran after post_stop, and what it persisted was stored.
    actor = kit.start(StopInHandler, name="stopper")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("stop-in-handler")
    actor.tell(10)  # stashed behind the persist_all: never handled
    assert kit.probe.expect_msg(timeout=10) == ("handler", 1)
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.probe.expect_no_msg(0.5)
    kit.start(name="stopper")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 3, 2)  # 1 and 2 only


def test_persist_all_of_none_does_nothing_as_in_akka(kit: Kit) -> None:
    # Defect 9: persist_all(None) raised TypeError and restarted the actor.
    actor = kit.start(PersistAllNone)
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("none")
    assert kit.probe.expect_msg(timeout=10) == ("after none", 0)
    actor.tell(3)
    assert kit.probe.expect_msg(timeout=10) == ("persisted", 3, 1)  # no restart in between
    actor.tell("str")  # a str is a programming error: the actor restarts, naming it
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    assert kit.probe.expect_msg(timeout=10) == ("restarted", "TypeError")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 3, 1)


def test_a_poison_pill_overtakes_a_pending_persist_async_handler(kit: Kit) -> None:
    # Defect 7 (README corrected): persist_async does not stash, so a PoisonPill that
    # arrives before the write's result stops the actor first, as in Akka classic. The
    # event is stored all the same.
    actor = kit.start(AsyncRaces, name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("async-then-pill")
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.probe.expect_no_msg(0.3)  # the handler of Added(1) never ran
    kit.start(name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 1, 1)


def test_persist_async_events_waiting_behind_a_write_are_stored_when_a_pill_stops_it(
        kit: Kit) -> None:
    # One write in flight per actor: the later persist_async events waited in the batch, and
    # the PoisonPill's stop dropped them unwritten (the README says they are stored).
    kit.kit.journal.on_write(Delay(0.3))  # the first write stays in flight meanwhile
    actor = kit.start(AsyncRaces, name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell(("async-burst-then-pill", 5))
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.kit.journal.on_write(Pass())
    kit.start(name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 15, 5)  # 1 + 2 + ... + 5


def test_system_stop_writes_the_persist_async_events_waiting_behind_a_write(kit: Kit) -> None:
    kit.kit.journal.on_write(Delay(0.3))  # the first write stays in flight meanwhile
    actor = kit.start(AsyncRaces, name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    for value in range(1, 4):
        actor.tell(("async-reported", value))
    assert {kit.probe.receive_one(timeout=10) for _ in range(3)} == {
        ("queued", 1), ("queued", 2), ("queued", 3)}
    kit.system.stop(actor)
    # Handlers of writes answered before the stop arrived may run first; then it stops.
    while (message := kit.probe.receive_one(timeout=10)) != "stopped":
        assert message[0] == "persisted"
    kit.kit.journal.on_write(Pass())
    kit.start(name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 6, 3)


def test_persist_then_context_stop_stores_the_event(kit: Kit) -> None:
    # As in Akka, where the command's events go to the journal when its handler returns and
    # the stop it asked for comes after: the event is stored, its handler never runs.
    actor = kit.start(AsyncRaces, name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("persist-then-stop")
    assert kit.probe.expect_msg(timeout=10) == "stopped"
    kit.probe.expect_no_msg(0.3)  # no handler ran
    kit.start(name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 1, 1)


def test_events_of_a_failing_command_are_lost_while_a_persist_async_write_is_in_flight(
        kit: Kit) -> None:
    # Defect 8 (README corrected): the events a failing command persisted are written only
    # if no write is in flight; behind a pending persist_async they go with the failed
    # instance, as in Akka (its journal batch dies with the actor).
    actor = kit.start(AsyncRaces, name="races")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("async-then-boom")
    assert kit.probe.expect_msg(timeout=10) == "stopped"  # pre_restart
    assert kit.probe.expect_msg(timeout=10) == ("restarted", "RuntimeError")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 1, 1)  # Added(2) was lost


@pytest.mark.multiproc
def test_an_actor_whose_process_is_killed_restarts_under_the_same_ref(tmp_path: Path) -> None:
    # Defect 14: the ref of an actor whose process died stayed dead for ever; asks waited
    # their whole timeout. Now the guardian restarts it (Akka's default supervision after a
    # crash) and the old ref reaches the new incarnation, which recovers from the journal.
    config = system_config("multiproc-tcp",
                           journal={"plugin": "sqlite", "path": str(tmp_path / "events.db")})
    # One process per actor: the victim's own process dies (a shared host's death, which
    # takes several actors with it, is tests/test_shared_hosts.py's).
    config["actor_system"]["host_processes"] = 0
    with ActorSystem("crash", config=config) as system:
        probe = TestProbe(system)
        actor = system.actor_of(ProcessReporter, "p", probe.ref, name="victim")
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        actor.tell(5)
        assert probe.expect_msg(timeout=10) == ("persisted", 5, 1)
        first = actor.ask("pid", timeout=10)
        os.kill(first, signal.SIGKILL)
        # Sent at once, while the guardian may not yet know: held, then delivered.
        assert actor.ask("total?", timeout=20) == ("total", 5, 1)
        assert probe.expect_msg(timeout=10) == ("recovered", 5, 1)
        second = actor.ask("pid", timeout=10)
        assert second != first
        actor.tell(2)  # tells reach it too, and it persists after its recovered state
        assert probe.expect_msg(timeout=10) == ("persisted", 2, 2)
        # A deliberate stop through the old ref is final: no restart, the name is free.
        system.stop(actor)
        assert probe.expect_msg(timeout=10) == "stopped"
        again = system.actor_of(ProcessReporter, "p", probe.ref, name="victim")
        assert probe.expect_msg(timeout=10) == ("recovered", 7, 2)
        assert again.ask("pid", timeout=10) not in (first, second)


def test_a_restart_whose_constructor_raises_stops_the_actor(kit: Kit) -> None:
    # Defect 3, second half: a restart that fails in its constructor is not retried.
    # A fresh id: multiproc processes fork from this one and inherit its construction count.
    actor = kit.start(FailingSecondConstructor, pid=f"ctor-{uuid.uuid4().hex}", name="ctor")
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)
    actor.tell("boom")
    assert kit.probe.expect_msg(timeout=10) == "stopped"  # pre_restart of the old instance
    kit.probe.expect_no_msg(0.5)  # no instance came up, nothing retried
    kit.start(pid="other", name="ctor")  # the name was released: the actor is gone
    assert kit.probe.expect_msg(timeout=10) == ("recovered", 0, 0)


@pytest.mark.parametrize("entity", [False, True], ids=["actor_of", "entity"])
def test_a_failure_no_plugin_saw_comes_from_no_sender(system: ActorSystem, entity: bool) -> None:
    # A snapshot that cannot be serialized, a delete beyond the last sequence number: the
    # runtime reports them without a plugin. They came from the actor itself, so an actor that
    # answers every message's sender answered itself, and on the simple base the answers went
    # round for ever on the thread that runs every actor. Now self.sender is dead letters.
    ref: ActorRef
    if entity:
        ref = system.entities("answerers", Answerer).ref("a1")
    else:
        ref = system.actor_of(Answerer, f"answerer-{uuid.uuid4().hex}", name="answerer")
    ref.tell("snap")
    ref.tell(("delete", 5))
    expected = [("SaveSnapshotFailure", False), ("DeleteMessagesFailure", False)]
    deadline = time.monotonic() + 30
    while (seen := ref.ask("seen", timeout=10.0)) != expected:
        assert time.monotonic() < deadline, seen
        assert len(seen) < len(expected), seen  # an answer came back, or a sender was itself
        time.sleep(0.01)
    assert ref.ask("seen", timeout=10.0) == expected  # and no answer arrives later either


def test_a_plugin_error_that_would_not_unpickle_travels_as_its_text() -> None:
    # A plugin's exception goes back to the actor in a message; one whose __init__ differs
    # from its args pickles but would not load in the actor's process, so its text goes.
    sent = portable_error(CodedError(503, "database is read-only"))
    assert type(sent) is PersistenceError
    assert str(sent) == "CodedError: database is read-only"
    plain = JournalError("disk full")
    assert portable_error(plain) is plain


def test_an_error_raised_inside_the_events_iterable_of_persist_all_is_not_renamed() -> None:
    # A generator whose own code raises TypeError (a bad constructor call) must show that
    # error, not "persist_all expects an iterable".
    def lines() -> Iterator[int]:
        yield 1
        raise TypeError("Line.__init__() takes 3 positional arguments but 4 were given")

    with pytest.raises(TypeError, match="takes 3 positional arguments"):
        persist_all_events(lines())
    with pytest.raises(TypeError, match="persist_all expects an iterable of events, got int"):
        persist_all_events(7)  # type: ignore[arg-type]
    assert persist_all_events(x for x in (1, 2)) == (1, 2)


@pytest.mark.parametrize(("build", "named"), [
    (lambda: Backoff.on_stop(min_backoff=0.2, max_backoff=math.inf), "max_backoff"),
    (lambda: Backoff.on_stop(min_backoff=True, max_backoff=1.0), "min_backoff"),
    (lambda: Backoff.on_stop(min_backoff=0.2, max_backoff=1.0, random_factor=math.nan),
     "random_factor"),
    (lambda: Delay(-1), "Delay.seconds"),
    (lambda: Delay(math.inf), "Delay.seconds"),
    (lambda: Fail(delay=-0.5), "Fail.delay"),
    (lambda: Reject(delay=math.nan), "Reject.delay"),
])
def test_backoff_and_test_kit_durations_must_be_finite(build: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        build()


_LATE_MODULE = '''
import dataclasses
from typing import Any
from persistent_actors import PersistentActor, register


@register(manifest="tests.late_kit.{name}.Late")
@dataclasses.dataclass(frozen=True)
class Late:
    n: int


class LateWriter(PersistentActor):
    persistence_id = "late-writer"

    def __init__(self, probe: Any) -> None:
        self.probe = probe

    def on_recover(self, message: Any) -> None:
        pass

    def on_command(self, message: Any) -> None:
        self.persist(Late(message), lambda e: self.probe.tell(("persisted", e.n)))

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("persist-failed", str(cause)))
'''


def test_a_filtered_fail_knows_event_classes_imported_after_the_system_started(
        base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # On multiproc-tcp the kit decodes events in the plugin's process, which started before
    # the test imported the event's module: the events matched nothing and the test passed.
    name = f"late_kit_{base.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(_LATE_MODULE.replace("{name}", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with ActorSystem("late", config=kit_config(base)) as system:
            module = importlib.import_module(name)  # after the plugin's process started
            kit = PersistenceTestKit(system)
            probe = TestProbe(system)
            writer = system.actor_of(module.LateWriter, probe.ref)
            # A predicate from a module that does not import the event's (pickling the
            # behaviour brings the predicate's module to the plugin, not the event's).
            kit.journal.on_write(Fail(predicate=is_one))
            writer.tell(2)
            assert probe.expect_msg(timeout=10) == ("persisted", 2)
            writer.tell(1)
            assert probe.expect_msg(timeout=10) == (
                "persist-failed", "write failed by the persistence test kit")
    finally:
        sys.modules.pop(name, None)


def test_a_filtered_behaviour_fails_loudly_on_an_event_it_cannot_decode() -> None:
    behaviours = _Behaviours(JOURNAL_OPERATIONS, JournalError)
    gone = _decode("nowhere.Gone", default_serializer.to_binary({"x": 1})[1])
    for behaviour in (Fail(predicate=is_big), Reject(on_type=Poison)):
        behaviours.set(SetBehaviour("write", behaviour))
        with pytest.raises(JournalError, match=r"cannot decode an event of manifest "
                                               r"'nowhere\.Gone' in the plugin's process"):
            asyncio.run(behaviours.apply("write", [gone]))
    # Unfiltered behaviours do not look at the events.
    behaviours.set(SetBehaviour("write", Reject()))
    assert asyncio.run(behaviours.apply("write", [gone])) == Reject()
