"""Akka's failure semantics, driven by the persistence test kit, on both bases."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.sqlite import SqliteSnapshotStore
from persistent_actors import (
    ActorSystem,
    ConfigError,
    DeadLetter,
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    DeleteSnapshotFailure,
    PoisonPill,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
    SnapshotMetadata,
)
from persistent_actors._serialization import default_serializer
from persistent_actors.testing import (
    Delay,
    Fail,
    Pass,
    PersistenceTestKit,
    Reject,
    TestProbe,
)
from tests.conftest import system_config
from tests.failure_actors import (
    BackoffReporter,
    DeleteMessagesCmd,
    DeleteSnapshotCmd,
    Fill,
    Poison,
    Reporter,
    TinyStashDrop,
    TinyStashReply,
    TinyStashThrow,
    is_big,
)

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
    config = kit_config(base)
    config["persistence"]["recovery_event_timeout"] = 0.3
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
    kit.system.event_stream.subscribe(dead.ref, DeadLetter)
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


def test_the_kit_refuses_a_reject_outside_writes(kit: Kit) -> None:
    with pytest.raises(ConfigError, match="Reject applies to journal writes only"):
        kit.kit.journal.on_recovery(Reject())
