"""What the journal sees of a persistent actor (Akka's PersistentActorJournalProtocolSpec).

Two layers:

* end to end, on both bases, with `RecordingJournal`: all persist calls of one handler reach
  the journal in one ``write_messages`` call, one AtomicWrite per call, in call order; a batch
  started while another is in flight goes in a later call;
* the `Eventsourced` machine driven directly with a fake cell, playing the journal: no second
  WriteMessages while one is outstanding. This layer needs no thespian base. Through a real
  system the rule cannot be observed reliably, because the plugin host merges every pending
  WriteMessages into one ``write_messages`` call (group commit), which hides batch boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import ActorRef, ActorSystem, PersistentActor
from persistent_actors import _protocol as p
from persistent_actors._actor import DEAD_LETTERS, set_current_context
from persistent_actors._eventsourced import Eventsourced
from persistent_actors._replay_filter import ReplayFilterSettings
from persistent_actors._serialization import default_serializer
from persistent_actors.journal import AtomicWrite
from persistent_actors.stored import PersistentRepr, ReplayedRows
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.persistent_actors_under_test import (
    ManyKinds,
    PersistAsyncThenSelf,
    Persisted,
    Recovered,
    read_journal_record,
    spawn,
)

RECORDING_JOURNAL = "tests.persistent_actors_under_test:RecordingJournal"


@pytest.fixture
def recording(base: str, tmp_path: Path) -> Iterator[ActorSystem]:
    """A system whose journal records its write_messages calls."""
    config = system_config(base, journal={"plugin": RECORDING_JOURNAL, "gate_dir": str(tmp_path)})
    actor_system = ActorSystem("recording", config=config)
    try:
        yield actor_system
    finally:
        actor_system.shutdown()


# -- end to end ----------------------------------------------------------------------------------


def test_all_persist_calls_of_one_handler_reach_the_journal_in_one_call(
        recording: ActorSystem) -> None:
    probe = TestProbe(recording)
    ref = spawn(recording, "proto-one-call", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(ManyKinds("a"))  # persist, persist_all(2), persist_async, defer_async, persist

    for expected in ["a-1", "a-2", "a-3", "a-4", "a-deferred", "a-5"]:
        probe.expect_msg(expected)
    record = read_journal_record(recording)
    assert record.writes_of("proto-one-call") == [[(1,), (2, 3), (4,), (5,)]]


def test_a_batch_started_while_one_is_in_flight_goes_in_a_later_call(
        recording: ActorSystem) -> None:
    """The second command arrives while the first write is in flight (sent by the actor).

    If both batches were sent at once, the plugin host would merge them into one call.
    """
    probe = TestProbe(recording)
    ref = spawn(recording, "proto-in-flight", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistAsyncThenSelf("a", "b"))

    probe.expect_msg(Persisted("a", 1))
    probe.expect_msg(Persisted("b", 2))
    record = read_journal_record(recording)
    assert record.writes_of("proto-in-flight") == [[(1,)], [(2,)]]


# -- the machine with a scripted journal ----------------------------------------------------------


class _Cell:
    """A fake EntityCell: records what the machine sends."""

    journal: Any = "journal"
    snapshot_store: Any = None
    recovery_event_timeout: float = 30.0
    internal_stash_capacity: int = 100_000
    replay_filter: ReplayFilterSettings = ReplayFilterSettings()

    def __init__(self) -> None:
        self.to_journal: list[Any] = []
        self.to_self: list[Any] = []
        self.stopped = False
        self.scheduled: list[Any] = []
        self.dead: list[Any] = []
        self.sender: ActorRef = DEAD_LETTERS
        self._unhandled = False

    def send_to_address(self, address: Any, message: Any) -> None:
        assert address == self.journal
        self.to_journal.append(message)

    def write_messages(self, request: Any) -> None:
        self.send_to_address(self.journal, request)

    def send_to_self(self, message: Any) -> None:
        self.to_self.append(message)

    def stop_self(self, *, failed: bool = False) -> None:
        self.stopped = True

    def schedule(self, delay: float, message: Any) -> None:
        self.scheduled.append(message)

    def dead_letter(self, message: Any, sender: ActorRef) -> None:
        self.dead.append(message)

    def set_sender(self, sender: ActorRef) -> None:
        self.sender = sender

    def begin_handling(self) -> None:
        self._unhandled = False

    def was_unhandled(self) -> bool:
        return self._unhandled


class _Scripted(PersistentActor):
    """Commands are callables run as the command handler; handlers log what they see."""

    persistence_id = "scripted"

    def __init__(self) -> None:
        self.log: list[str] = []

    def on_recover(self, message: Any) -> None:
        pass

    def on_command(self, message: Any) -> None:
        command: Callable[[_Scripted], None] = message
        command(self)

    def logged(self, event: str) -> None:
        self.log.append(event)


class _Harness:
    """Drives one Eventsourced machine; answers its writes only when the test says so."""

    def __init__(self) -> None:
        self.cell = _Cell()
        actor = _Scripted.__new__(_Scripted)
        self.es = Eventsourced(actor, self.cell, "scripted", 1, default_serializer)
        actor._eventsourced = self.es
        actor.__init__()  # type: ignore[misc]
        self.actor = actor
        self.es.start_recovery()
        assert isinstance(self.cell.to_journal.pop(), p.ReplayMessages)
        self.es.receive(p.RecoverySuccess(0, 1), DEAD_LETTERS)
        self.max_outstanding = 0

    @property
    def writes(self) -> list[p.WriteMessages]:
        return [m for m in self.cell.to_journal if isinstance(m, p.WriteMessages)]

    def receive(self, message: Any) -> None:
        """Hand the machine `message` as the host does: with the actor's context current."""
        previous = set_current_context(self.cell)  # type: ignore[arg-type]
        try:
            self.es.receive(message, DEAD_LETTERS)
        finally:
            set_current_context(previous)

    def command(self, command: Callable[[_Scripted], None]) -> None:
        self.receive(command)
        self._check()

    def answer_next(self) -> p.WriteMessages:
        """Answer the oldest unanswered WriteMessages as stored."""
        request: p.WriteMessages = self.cell.to_journal.pop(0)
        outcomes = tuple(p.Looped() if isinstance(item, p.LoopMessage) else p.WriteStored()
                         for item in request.items)
        self.receive(p.WriteMessagesResult(outcomes, 1))
        self._check()
        return request

    def answer_all(self) -> list[p.WriteMessages]:
        answered = []
        while self.cell.to_journal:
            answered.append(self.answer_next())
        return answered

    def _check(self) -> None:
        self.max_outstanding = max(self.max_outstanding, len(self.writes))
        assert len(self.writes) <= 1, "a second WriteMessages was sent while one is outstanding"


def _sequence_nrs(request: p.WriteMessages) -> list[tuple[int, ...]]:
    return [tuple(r.sequence_nr for r in item.payload) for item in request.items
            if isinstance(item, AtomicWrite)]


def test_no_second_write_while_one_is_outstanding_simple_persist() -> None:
    h = _Harness()
    h.command(lambda a: a.persist("a", a.logged))
    h.command(lambda a: a.persist("b", a.logged))  # stashed until "a" is handled

    assert len(h.writes) == 1
    first = h.answer_next()
    assert _sequence_nrs(first) == [(1,)]
    assert h.actor.log == ["a"]
    assert _sequence_nrs(h.answer_next()) == [(2,)]
    assert h.actor.log == ["a", "b"]


def test_no_second_write_while_one_is_outstanding_nested_persist() -> None:
    def nested(a: _Scripted) -> None:
        def outer(event: str) -> None:
            a.logged(event)
            a.persist(f"{event}-inner-1", a.logged)
            a.persist(f"{event}-inner-2", a.logged)

        a.persist("a", outer)
        a.persist("b", outer)

    h = _Harness()
    h.command(nested)

    answered = h.answer_all()

    assert [_sequence_nrs(r) for r in answered] == [[(1,), (2,)], [(3,), (4,)], [(5,), (6,)]]
    assert h.actor.log == ["a", "b", "a-inner-1", "a-inner-2", "b-inner-1", "b-inner-2"]
    assert h.max_outstanding == 1


@pytest.mark.parametrize("asynchronous", [False, True])
def test_no_second_write_while_one_is_outstanding_for_1000_commands(asynchronous: bool) -> None:
    """1000 commands of one persist each, all arriving while the first write is outstanding."""
    def persist_one(event: str) -> Callable[[_Scripted], None]:
        def command(a: _Scripted) -> None:
            if asynchronous:
                a.persist_async(event, a.logged)
            else:
                a.persist(event, a.logged)

        return command

    h = _Harness()
    for i in range(1000):
        h.command(persist_one(f"e{i}"))

    answered = h.answer_all()

    assert h.max_outstanding == 1
    assert [e for r in answered for e in _sequence_nrs(r)] == [(i,) for i in range(1, 1001)]
    assert h.actor.log == [f"e{i}" for i in range(1000)]
    if asynchronous:
        # Without stashing, everything after the first write piles up into the second batch.
        assert [len(r.items) for r in answered] == [1, 999]


def test_failed_command_with_queued_events_sends_nothing_extra_while_in_flight() -> None:
    """JournalProtocolSpec "when the actor fails with queued events": still one at a time."""
    h = _Harness()
    h.command(lambda a: a.persist_async("a", a.logged))

    def fail(a: _Scripted) -> None:
        a.persist_async("b", a.logged)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        h.receive(fail)
    h._check()

    assert len(h.writes) == 1  # "b" waits for the outstanding write


class _Recording(_Scripted):
    """Logs what recovery hands it."""

    def on_recover(self, message: Any) -> None:
        self.log.append(message if isinstance(message, str) else type(message).__name__)


@pytest.mark.parametrize("arrival", [
    ("chunk0", "chunk1", "end"), ("end", "chunk1", "chunk0"), ("chunk1", "end", "chunk0"),
])
def test_replayed_chunks_are_applied_in_order_whatever_order_they_arrive_in(
        arrival: tuple[str, ...]) -> None:
    # Thespian does not promise delivery order: on multiproc-tcp under load a RecoverySuccess
    # overtook the chunks before it, and recovery finished without the events (then the actor
    # wrote on top of a state it never saw).
    cell = _Cell()
    actor = _Recording.__new__(_Recording)
    es = Eventsourced(actor, cell, "scripted", 1, default_serializer)
    actor._eventsourced = es
    actor.__init__()  # type: ignore[misc]
    es.start_recovery()
    assert isinstance(cell.to_journal.pop(), p.ReplayMessages)

    def event(nr: int) -> PersistentRepr:
        manifest, payload = default_serializer.to_binary(f"e{nr}")
        return PersistentRepr("scripted", nr, manifest, payload)

    messages = {"chunk0": p.ReplayedMessages(ReplayedRows.of((event(1), event(2))), 1, 0),
                "chunk1": p.ReplayedMessages(ReplayedRows.of((event(3),)), 1, 1),
                "end": p.RecoverySuccess(3, 1, 2)}
    for name in arrival:
        es.receive(messages[name], DEAD_LETTERS)
    assert actor.log == ["e1", "e2", "e3", "RecoveryCompleted"]
    assert es.last_sequence_nr == 3
    assert not es.is_recovering


def test_a_lone_pending_persist_keeps_its_place_when_its_handler_persists_and_defers() -> None:
    # A lone pending invocation is held without a deque; a persist, persist_all or defer from
    # its own handler (or a second command's persist) must queue behind it, in call order.
    def command(a: _Scripted) -> None:
        def outer(event: str) -> None:
            a.logged(event)
            a.persist(f"{event}-inner", a.logged)
            a.persist_all([f"{event}-all-1", f"{event}-all-2"], a.logged)
            a.defer_async(f"{event}-deferred", a.logged)

        a.persist("a", outer)

    h = _Harness()
    h.command(command)
    h.command(lambda a: a.persist("b", a.logged))  # stashed until "a"'s handlers ran
    answered = h.answer_all()

    assert h.actor.log == ["a", "a-inner", "a-all-1", "a-all-2", "a-deferred", "b"]
    assert [e for r in answered for e in _sequence_nrs(r)] == [(1,), (2,), (3, 4), (5,)]
    assert h.max_outstanding == 1
    # Nothing pending afterwards: a defer runs at once.
    h.command(lambda a: a.defer_async("c", a.logged))
    assert h.actor.log[-1] == "c"
