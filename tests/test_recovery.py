"""Recovery customisation, persisting around replay, and deleting events.

Akka.NET: PersistentActorSpec (recovery, deletion, persist during replay or on
RecoveryCompleted) and OptimizedRecoverySpec (Recovery.None). Every test runs on both bases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from persistent_actors import (
    MAX_SEQUENCE_NR,
    ActorSystem,
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    IllegalActorStateError,
    Recovery,
    SaveSnapshotSuccess,
)
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.persistent_actors_under_test import (
    DeleteEvents,
    FailsOnReplay,
    GetState,
    Persist,
    Persisted,
    PersistsDuringReplay,
    PersistsOnRecovery,
    Recovered,
    RecoveryFailed,
    Refused,
    Replayed,
    Snap,
    State,
    Stopped,
    clear_switch,
    kill,
    persist_events,
    respawn,
    set_switch,
    spawn,
)

RECORDING_JOURNAL = "tests.persistent_actors_under_test:RecordingJournal"

EVENTS = ["a", "b", "c", "d", "e"]


def _stored(system: ActorSystem, pid: str, probe: TestProbe,
            events: Sequence[str] = tuple(EVENTS)) -> None:
    """Persist `events` under `pid`, then kill the actor."""
    ref = spawn(system, pid, probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, events)
    kill(ref, probe, pid)


def test_recovery_to_sequence_nr_replays_a_prefix_but_continues_after_the_highest(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    _stored(system, "rec-to", probe)

    ref = spawn(system, "rec-to", probe, recovery=Recovery(to_sequence_nr=3))

    for i, event in enumerate(EVENTS[:3], start=1):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(5, ("a", "b", "c")))
    ref.tell(Persist("f"))
    probe.expect_msg(Persisted("f", 6))


def test_recovery_replay_max_limits_the_number_of_events(system: ActorSystem) -> None:
    probe = TestProbe(system)
    _stored(system, "rec-max", probe)

    ref = spawn(system, "rec-max", probe, recovery=Recovery(replay_max=2))

    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Replayed("b", 2))
    probe.expect_msg(Recovered(5, ("a", "b")))
    ref.tell(Persist("f"))
    probe.expect_msg(Persisted("f", 6))


def test_recovery_none_replays_nothing_but_knows_the_highest_sequence_nr(
        system: ActorSystem) -> None:
    """OptimizedRecoverySpec: RecoveryCompleted, no SnapshotOffer, no events."""
    probe = TestProbe(system)
    ref = spawn(system, "rec-none", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, EVENTS[:2])
    ref.tell(Snap())
    probe.expect_msg_type(SaveSnapshotSuccess)
    persist_events(ref, probe, EVENTS[2:], first_sequence_nr=3)
    kill(ref, probe, "rec-none")

    ref = spawn(system, "rec-none", probe, recovery=Recovery.none())

    probe.expect_msg(Recovered(5, ()))  # neither Offered nor Replayed came first
    ref.tell(Persist("f"))
    probe.expect_msg(Persisted("f", 6))
    assert ref.ask(GetState()) == State(("f",), 6)


def test_persist_during_replay_is_refused_with_a_clear_error(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "rec-persist-replay", probe, cls=PersistsDuringReplay)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a"])

    ref = respawn(system, ref, "rec-persist-replay", probe, cls=PersistsDuringReplay)

    for operation in ["persist", "persist_all", "persist_async", "defer_async"]:
        refused = probe.expect_msg_type(Refused)
        assert refused.operation == operation
        assert "cannot persist during replay" in refused.message
        assert "rec-persist-replay" in refused.message
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Recovered(1, ("a",)))  # nothing was persisted by the refused calls
    assert ref.ask(GetState()) == State(("a",), 1)
    assert issubclass(IllegalActorStateError, RuntimeError)


def test_persist_from_the_recovery_completed_handler(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "rec-on-completed", probe, cls=PersistsOnRecovery)
    probe.expect_msg(Recovered(0, ()))
    probe.expect_msg(Persisted("started-1", 1))

    ref = respawn(system, ref, "rec-on-completed", probe, cls=PersistsOnRecovery)
    # Asked at once: the command waits for recovery and for the handler persisted from it.
    state = ref.ask(GetState())

    probe.expect_msg(Replayed("started-1", 1))
    probe.expect_msg(Recovered(1, ("started-1",)))
    probe.expect_msg(Persisted("started-2", 2))
    assert state == State(("started-1", "started-2"), 2)


def test_exception_in_on_recover_calls_on_recovery_failure_and_stops(
        system: ActorSystem) -> None:
    """Akka: "stop if ReceiveRecover fails"; on_recovery_failure gets the replayed event."""
    probe = TestProbe(system)
    _stored(system, "rec-recover-raises", probe, ["a", "bad", "c"])

    spawn(system, "rec-recover-raises", probe, cls=FailsOnReplay)

    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(RecoveryFailed("cannot apply 'bad'", "bad"))
    probe.expect_msg(Stopped("rec-recover-raises"))
    probe.expect_no_msg(0.1)  # in particular no Recovered


def test_failed_replay_calls_on_recovery_failure_and_stops(base: str, tmp_path: Path) -> None:
    """Akka: "call OnRecoveryFailure when recovery from persisted events fails", then stop."""
    config = system_config(base, journal={"plugin": RECORDING_JOURNAL,
                                          "gate_dir": str(tmp_path)})
    with ActorSystem("replay-fails", config=config) as system:
        probe = TestProbe(system)
        _stored(system, "rec-replay-fails", probe, ["a", "b"])
        set_switch(tmp_path, "rec-replay-fails", "fail-replay")

        spawn(system, "rec-replay-fails", probe)

        failed = probe.expect_msg_type(RecoveryFailed)
        assert "simulated replay failure" in failed.cause
        assert failed.event is None
        probe.expect_msg(Stopped("rec-replay-fails"))
        clear_switch(tmp_path, "rec-replay-fails", "fail-replay")
        spawn(system, "rec-replay-fails", probe)
        probe.expect_msg(Replayed("a", 1))
        probe.expect_msg(Replayed("b", 2))
        probe.expect_msg(Recovered(2, ("a", "b")))


# -- deleting events -----------------------------------------------------------------------------


def test_delete_messages_then_recovery_replays_only_later_events(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "rec-delete", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, EVENTS)

    ref.tell(DeleteEvents(3))
    probe.expect_msg(DeleteMessagesSuccess(3))
    ref = respawn(system, ref, "rec-delete", probe)

    probe.expect_msg(Replayed("d", 4))
    probe.expect_msg(Replayed("e", 5))
    probe.expect_msg(Recovered(5, ("d", "e")))
    ref.tell(Persist("f"))
    probe.expect_msg(Persisted("f", 6))


def test_delete_all_messages_keeps_the_sequence_nr(system: ActorSystem) -> None:
    """MAX_SEQUENCE_NR means "everything"; Akka.NET replaces it by last_sequence_nr."""
    probe = TestProbe(system)
    ref = spawn(system, "rec-delete-all", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, EVENTS[:3])

    ref.tell(DeleteEvents(MAX_SEQUENCE_NR))
    probe.expect_msg(DeleteMessagesSuccess(3))
    ref = respawn(system, ref, "rec-delete-all", probe)

    probe.expect_msg(Recovered(3, ()))  # nothing replayed, the sequence nr did not go back
    ref.tell(Persist("d"))
    probe.expect_msg(Persisted("d", 4))
    ref = respawn(system, ref, "rec-delete-all", probe)
    probe.expect_msg(Replayed("d", 4))
    probe.expect_msg(Recovered(4, ("d",)))


def test_delete_messages_beyond_last_sequence_nr_fails_and_deletes_nothing(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "rec-delete-beyond", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, EVENTS[:3])

    ref.tell(DeleteEvents(4))

    failure = probe.expect_msg_type(DeleteMessagesFailure)
    assert failure.to_sequence_nr == 4
    assert isinstance(failure.cause, IllegalActorStateError)
    assert "last_sequence_nr" in str(failure.cause)
    respawn(system, ref, "rec-delete-beyond", probe)
    for i, event in enumerate(EVENTS[:3], start=1):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(3, ("a", "b", "c")))

