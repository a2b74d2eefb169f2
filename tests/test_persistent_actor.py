"""PersistentActor behaviour (Akka.NET's PersistentActorSpec and PersistentActorFailureSpec).

Every test runs on the simple base and on multiproc-tcp. The actors under test live in
`tests.persistent_actors_under_test` and report to a TestProbe; the tests expect those reports
in order. On the simple base a ``tell`` from the test runs the system until it is idle, so a
message can only arrive "while a persist is pending" if the actor sends it to itself from the
command handler; the tests that need that situation do exactly this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import (
    ActorInitializationError,
    ActorSystem,
    PoisonPill,
)
from persistent_actors._serialization import default_serializer
from persistent_actors._thespian.plugin_host import REPLAY_CHUNK
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.persistent_actors_under_test import (
    Boom,
    BoomInHandler,
    DeferMixed,
    DeferNow,
    DeferWithPersist,
    EmptyPersistenceId,
    FailingConstructor,
    GetState,
    ItemAdded,
    Marker,
    MixedSyncAsyncSync,
    NamesWhatFailed,
    Nested,
    NoPersistenceId,
    PendingThenPoke,
    Persist,
    PersistAll,
    PersistAllWithBad,
    PersistAsync,
    PersistAsyncEach,
    PersistAsyncThenRelay,
    PersistAsyncThenSelf,
    PersistEach,
    Persisted,
    PersistFailed,
    PersistReply,
    PersistThenBoom,
    PersistThenKill,
    PersistThenPing,
    PersistThenPoison,
    PersistUnserializable,
    Ping,
    Published,
    PublishedSub,
    PublishEvent,
    Recovered,
    Rejected,
    Replayed,
    Restarting,
    State,
    Stopped,
    close_gate,
    gate_path,
    kill,
    persist_events,
    read_journal_record,
    respawn,
    set_switch,
    spawn,
)

RECORDING_JOURNAL = "tests.persistent_actors_under_test:RecordingJournal"


@pytest.fixture
def gated(base: str, tmp_path: Path) -> Iterator[ActorSystem]:
    """A system whose journal can hold writes of one persistence id (see RecordingJournal)."""
    config = system_config(base, journal={"plugin": RECORDING_JOURNAL, "gate_dir": str(tmp_path)})
    actor_system = ActorSystem("gated", config=config)
    try:
        yield actor_system
    finally:
        actor_system.shutdown()


# -- recovery ------------------------------------------------------------------------------------


def test_recovers_from_persisted_events_after_kill_and_respawn(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-recover", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a", "b", "c"])

    ref = respawn(system, ref, "pa-recover", probe)

    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Replayed("b", 2))
    probe.expect_msg(Replayed("c", 3))
    probe.expect_msg(Recovered(3, ("a", "b", "c")))
    assert ref.ask(GetState()) == State(("a", "b", "c"), 3)


def _persist_all_then_recover(system: ActorSystem, pid: str, count: int) -> None:
    """Persist `count` events in one persist_all, respawn: recovery replays all, in order."""
    probe = TestProbe(system)
    events = [f"e{i}" for i in range(count)]
    ref = spawn(system, pid, probe, quiet=True)
    probe.expect_msg(Recovered(0, ()))
    ref.tell(PersistAll(tuple(events)))
    probe.expect_msg("after-persist-all")
    for i, event in enumerate(events, start=1):
        assert probe.expect_msg() == Persisted(event, i)

    respawn(system, ref, pid, probe, quiet=True)

    assert probe.expect_msg(timeout=10) == Recovered(len(events), tuple(events))


def test_recovery_completed_comes_after_every_replayed_event(system: ActorSystem) -> None:
    """More events than one replay chunk; RecoveryCompleted sees all of them."""
    _persist_all_then_recover(system, "pa-many", REPLAY_CHUNK + 1)


def test_a_replay_page_larger_than_a_chunk_is_split_and_replayed_in_order(
        base: str, tmp_path: Path) -> None:
    """SQLite pages of 1,200 events (its `replay_page_size`) reach the actor in chunks of at
    most `REPLAY_CHUNK`, every event once and in order."""
    journal = {"plugin": "sqlite", "path": str(tmp_path / "journal.db"),
               "replay_page_size": 2 * REPLAY_CHUNK + 200}
    with ActorSystem("split", config=system_config(base, journal=journal)) as system:
        # One page and one event more.
        _persist_all_then_recover(system, "pa-split", 2 * REPLAY_CHUNK + 201)


def test_sqlite_pages_with_gaps_and_writers_replay_each_event_with_its_number(
        base: str, tmp_path: Path) -> None:
    """Pages of 3 whose numbers have gaps (rejected writes, a deleted prefix) and whose
    writer changes: each event reaches on_recover with its own sequence number, and the
    next persist continues after the highest."""
    path = str(tmp_path / "journal.db")
    nrs = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 20, 21, 22, 23]

    async def write() -> None:
        journal = SqliteJournal({"path": path})
        await journal.start()
        try:
            writes = [AtomicWrite((PersistentRepr(
                "pa-gaps", nr, *default_serializer.to_binary(f"e{nr}"),
                "w1" if nr < 10 else "w2", 1.0),)) for nr in nrs]
            assert await journal.write_messages(writes) == [None] * len(writes)
            await journal.delete_messages_to("pa-gaps", 2)
        finally:
            await journal.close()

    asyncio.run(write())
    journal = {"plugin": "sqlite", "path": path, "replay_page_size": 3}
    with ActorSystem("gaps", config=system_config(base, journal=journal)) as system:
        probe = TestProbe(system)
        ref = spawn(system, "pa-gaps", probe)
        for nr in nrs[2:]:
            assert probe.expect_msg() == Replayed(f"e{nr}", nr)
        probe.expect_msg(Recovered(23, tuple(f"e{nr}" for nr in nrs[2:])))
        ref.tell(Persist("next"))
        assert probe.expect_msg() == Persisted("next", 24)


def test_recovery_completed_also_for_a_new_persistence_id(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-new", probe)
    probe.expect_msg(Recovered(0, ()))
    assert ref.ask(GetState()) == State((), 0)


def test_registered_dataclass_events_are_replayed_as_instances(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-dataclass", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, [ItemAdded("apple", 2), ItemAdded("pear", 1)])

    respawn(system, ref, "pa-dataclass", probe)

    probe.expect_msg(Replayed(ItemAdded("apple", 2), 1))
    probe.expect_msg(Replayed(ItemAdded("pear", 1), 2))
    probe.expect_msg(Recovered(2, (ItemAdded("apple", 2), ItemAdded("pear", 1))))


def test_persistence_id_computed_from_constructor_arguments_separates_state(
        system: ActorSystem) -> None:
    probe1, probe2 = TestProbe(system), TestProbe(system)
    cart1 = spawn(system, "cart-1", probe1)
    cart2 = spawn(system, "cart-2", probe2)
    probe1.expect_msg(Recovered(0, ()))
    probe2.expect_msg(Recovered(0, ()))
    persist_events(cart1, probe1, [ItemAdded("apple", 1), ItemAdded("pear", 3)])
    persist_events(cart2, probe2, [ItemAdded("plum", 7)])

    cart1 = respawn(system, cart1, "cart-1", probe1)
    cart2 = respawn(system, cart2, "cart-2", probe2)

    probe1.expect_msg(Replayed(ItemAdded("apple", 1), 1))
    probe1.expect_msg(Replayed(ItemAdded("pear", 3), 2))
    probe1.expect_msg(Recovered(2, (ItemAdded("apple", 1), ItemAdded("pear", 3))))
    probe2.expect_msg(Replayed(ItemAdded("plum", 7), 1))
    probe2.expect_msg(Recovered(1, (ItemAdded("plum", 7),)))
    assert cart2.ask(GetState()) == State((ItemAdded("plum", 7),), 1)


# -- creation errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [NoPersistenceId, EmptyPersistenceId])
def test_missing_or_empty_persistence_id_fails_creation_naming_the_class(
        system: ActorSystem, cls: type[NoPersistenceId]) -> None:
    with pytest.raises(ActorInitializationError, match=cls.__qualname__) as info:
        system.actor_of(cls, name="no-id")
    assert "persistence_id" in str(info.value)
    # The name was not taken by the failed actor.
    with pytest.raises(ActorInitializationError):
        system.actor_of(cls, name="no-id")


def test_constructor_that_raises_fails_creation(system: ActorSystem) -> None:
    with pytest.raises(ActorInitializationError, match="FailingConstructor") as info:
        system.actor_of(FailingConstructor, "because")
    assert "constructor refuses: because" in str(info.value)


# -- handler order -------------------------------------------------------------------------------


def test_code_after_persist_runs_before_any_handler(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-after", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistEach(("a", "b", "c")))

    probe.expect_msg("after-persist")
    probe.expect_msg(Persisted("a", 1))
    probe.expect_msg(Persisted("b", 2))
    probe.expect_msg(Persisted("c", 3))


def test_persist_all_runs_the_handler_once_per_event_in_order(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-all", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistAll(("a", "b", "c")))

    probe.expect_msg("after-persist-all")
    probe.expect_msg(Persisted("a", 1))
    probe.expect_msg(Persisted("b", 2))
    probe.expect_msg(Persisted("c", 3))


def test_persist_all_with_no_events_does_nothing(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-all-empty", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistAll(()))
    ref.tell(Ping(1))
    ref.tell(Persist("x"))

    probe.expect_msg("after-persist-all")
    probe.expect_msg("ping-1")  # nothing pending: the next command is not held back
    probe.expect_msg(Persisted("x", 1))  # no sequence number was used
    assert ref.ask(GetState()) == State(("x",), 1)


def test_nested_persist_handlers_run_after_their_outer_layer(system: ActorSystem) -> None:
    """Akka's documented order: a, a-outer-1, a-outer-2, a-inner-1, a-inner-2, b, ..."""
    probe = TestProbe(system)
    ref = spawn(system, "pa-nested", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(Nested("a"), sender=probe.ref)
    ref.tell(Nested("b"), sender=probe.ref)

    for expected in ["a", "a-outer-1", "a-outer-2", "a-inner-1", "a-inner-2",
                     "b", "b-outer-1", "b-outer-2", "b-inner-1", "b-inner-2"]:
        probe.expect_msg(expected)
    state = ref.ask(GetState())
    assert state.last_sequence_nr == 8


def test_mix_of_persist_and_persist_async_keeps_call_order(system: ActorSystem) -> None:
    """persist, persist_async, persist: the trailing persist keeps the next command waiting."""
    probe = TestProbe(system)
    ref = spawn(system, "pa-mixed", probe)
    probe.expect_msg(Recovered(0, ()))

    for c in "abc":
        ref.tell(MixedSyncAsyncSync(c), sender=probe.ref)

    for i, c in enumerate("abc"):
        probe.expect_msg(c)
        probe.expect_msg(f"{c}-e1-{3 * i + 1}")
        probe.expect_msg(f"{c}-ea2-{3 * i + 2}")
        probe.expect_msg(f"{c}-e3-{3 * i + 3}")
    probe.expect_no_msg(0.1)


# -- sender --------------------------------------------------------------------------------------


def test_handler_replies_to_the_asker(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-ask", probe)
    probe.expect_msg(Recovered(0, ()))

    assert ref.ask(PersistReply("a")) == Persisted("a", 1)
    assert ref.ask(PersistReply("b")) == Persisted("b", 2)


def test_each_handler_sees_its_own_commands_sender(system: ActorSystem) -> None:
    probe = TestProbe(system)
    senders = [TestProbe(system) for _ in range(3)]
    ref = spawn(system, "pa-senders", probe)
    probe.expect_msg(Recovered(0, ()))

    for i, sender in enumerate(senders):
        ref.tell(PersistReply(f"e{i}"), sender=sender.ref)

    for i, sender in enumerate(senders):
        sender.expect_msg(Persisted(f"e{i}", i + 1))


def test_async_handler_replies_to_its_own_commands_sender_after_a_later_command(
        system: ActorSystem) -> None:
    """A later command (from another sender) is handled before the persist_async handler."""
    probe = TestProbe(system)
    first, second = TestProbe(system), TestProbe(system)
    ref = spawn(system, "pa-async-sender", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistAsyncThenRelay("x", "y", second.ref), sender=first.ref)

    first.expect_msg(Persisted("x", 1))
    second.expect_msg(Persisted("y", 2))
    first.expect_no_msg(0.1)


# -- stashing ------------------------------------------------------------------------------------


def test_commands_arriving_while_persisting_wait_in_arrival_order(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-stash", probe)
    probe.expect_msg(Recovered(0, ()))

    # The pings are sent by the actor to itself while the persist is pending.
    ref.tell(PersistThenPing("a", (1, 2, 3)))
    for expected in [Persisted("a", 1), "ping-1", "ping-2", "ping-3"]:
        probe.expect_msg(expected)
    # From outside, sent together: everything after "b" arrives while "b" is being written
    # (external sends that queue up are delivered in one batch, in order).
    ref.tell(Persist("b"))
    ref.tell(Ping(4))
    ref.tell(Persist("c"))
    ref.tell(Ping(5))
    for expected in [Persisted("b", 2), "ping-4", Persisted("c", 3), "ping-5"]:
        probe.expect_msg(expected)


@pytest.mark.parametrize("mode", ["persist", "defer"])
def test_stashing_calls_hold_back_commands_until_their_handlers_ran(
        system: ActorSystem, mode: str) -> None:
    """persist and defer stash: a message sent while they are pending waits for the handler."""
    probe = TestProbe(system)
    ref = spawn(system, f"pa-stashing-{mode}", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PendingThenPoke("x", mode))

    expected = ["p-x"] if mode == "persist" else ["pa-x", "d-x"]
    for message in [*expected, "poke-x"]:
        probe.expect_msg(message)


@pytest.mark.parametrize("mode", ["persist_async", "defer_async"])
def test_async_calls_do_not_hold_back_commands(gated: ActorSystem, tmp_path: Path,
                                               mode: str) -> None:
    """persist_async and defer_async do not stash (Akka: "opt out of stashing").

    The journal holds the write until the actor has handled the Poke it sent itself, and
    the Poke opens the gate: with a stash the Poke would wait for the write, and the write
    for the Poke, until the gate's timeout, and the order below would be reversed.
    """
    probe = TestProbe(gated)
    pid = f"pa-no-stash-{mode}"
    ref = spawn(gated, pid, probe)
    probe.expect_msg(Recovered(0, ()))
    gate = close_gate(tmp_path, pid)

    ref.tell(PendingThenPoke("x", mode, gate))

    expected = ["pa-x"] if mode == "persist_async" else ["pa-x", "d-x"]
    for message in ["poke-x", *expected]:
        probe.expect_msg(message)
    assert not gate_path(tmp_path, pid).exists()
    assert ref.ask(GetState()) == State(tuple(expected), 1)


def test_persist_async_handlers_run_in_order_and_reply_to_the_sender(
        system: ActorSystem) -> None:
    """Akka's AsyncPersistThreeTimes: the reply to each command precedes its own handlers."""
    probe = TestProbe(system)
    senders = [TestProbe(system) for _ in range(4)]
    ref = spawn(system, "pa-async", probe)
    probe.expect_msg(Recovered(0, ()))

    for i, sender in enumerate(senders):
        events = tuple(f"a-{i}-{k}" for k in range(3))
        ref.tell(PersistAsyncEach(f"c-{i}", events), sender=sender.ref)

    for i, sender in enumerate(senders):
        sender.expect_msg(f"c-{i}")
        for k in range(3):
            sender.expect_msg(f"a-{i}-{k}-{3 * i + k + 1}")
    state = ref.ask(GetState())
    assert state.events == tuple(f"a-{i}-{k}" for i in range(4) for k in range(3))
    assert state.last_sequence_nr == 12


# -- defer ---------------------------------------------------------------------------------------


def test_defer_async_runs_at_once_when_nothing_is_pending(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-defer-now", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(DeferNow("a"), sender=probe.ref)

    probe.expect_msg("d-a")
    probe.expect_msg("after-a")
    assert ref.ask(GetState()) == State((), 0)  # nothing was stored


def test_defer_async_runs_after_pending_persist_handlers(system: ActorSystem) -> None:
    """Akka's DeferringWithPersistActor: d-1 at once, then in call order."""
    probe = TestProbe(system)
    ref = spawn(system, "pa-defer-persist", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(DeferWithPersist("a"), sender=probe.ref)

    for expected in ["d-a-1", "p-a-2", "d-a-3", "d-a-4"]:
        probe.expect_msg(expected)
    probe.expect_no_msg(0.1)


def test_deferred_handlers_keep_order_and_sender_in_a_mixed_series(system: ActorSystem) -> None:
    """Akka's DeferringMixedCallsPPADDPADPersistActor, with one sender per command."""
    probe = TestProbe(system)
    p1, p2 = TestProbe(system), TestProbe(system)
    ref = spawn(system, "pa-defer-mixed", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(DeferMixed("a"), sender=p1.ref)
    ref.tell(DeferMixed("b"), sender=p2.ref)

    for p, c in ((p1, "a"), (p2, "b")):
        for expected in [f"p-{c}-1", f"pa-{c}-2", f"d-{c}-3", f"d-{c}-4", f"pa-{c}-5",
                         f"d-{c}-6"]:
            p.expect_msg(expected)
    p1.expect_no_msg(0.1)
    p2.expect_no_msg(0.1)


# -- failures and restarts -----------------------------------------------------------------------


def test_exception_in_command_handler_restarts_and_recovers(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-boom", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a"])

    ref.tell(Boom())
    ref.tell(Persist("b"))  # waits for the new instance's recovery

    probe.expect_msg(Restarting("boom in on_command"))
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Recovered(1, ("a",)))
    probe.expect_msg(Persisted("b", 2))
    assert ref.ask(GetState()) == State(("a", "b"), 2)


def test_a_stashed_command_that_raises_is_the_message_named_on_restart(
        system: ActorSystem, caplog: pytest.LogCaptureFixture) -> None:
    # Boom waits in the internal stash while "a" is written; it runs (and raises) when the
    # journal's reply is handled. pre_restart and the log name Boom, not the journal's reply.
    probe = TestProbe(system)
    ref = spawn(system, "pa-stashed-boom", probe, NamesWhatFailed)
    probe.expect_msg(Recovered(0, ()))
    ref.tell(Persist("a"))
    ref.tell(Boom())
    probe.expect_msg(Persisted("a", 1))
    probe.expect_msg(("pre_restart", "Boom"))
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Recovered(1, ("a",)))
    if system.settings.base == "simple":  # actor processes log elsewhere
        assert any("failed on Boom()" in record.getMessage() for record in caplog.records)


def test_a_persist_handler_that_raises_names_its_event_on_restart(
        system: ActorSystem, caplog: pytest.LogCaptureFixture) -> None:
    # As Akka's preRestart gets the persisted event: the log and pre_restart named the
    # journal's internal reply (WriteMessagesResult).
    probe = TestProbe(system)
    ref = spawn(system, "pa-handler-boom", probe, NamesWhatFailed)
    probe.expect_msg(Recovered(0, ()))
    ref.tell(BoomInHandler("x"))
    probe.expect_msg("handler-x")
    probe.expect_msg(("pre_restart", "str"))
    probe.expect_msg(Replayed("x", 1))
    if system.settings.base == "simple":  # actor processes log elsewhere
        assert any("failed on 'x'" in record.getMessage() for record in caplog.records)


def test_events_persisted_before_an_exception_are_stored(system: ActorSystem) -> None:
    """Akka: "support restart when Persist followed by exception" (a, err, b, c).

    The handler of the event does not run, but the event is written and replayed by the
    restarted instance.
    """
    probe = TestProbe(system)
    ref = spawn(system, "pa-persist-boom", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a"])

    ref.tell(PersistThenBoom("err"))
    ref.tell(Persist("b"))

    probe.expect_msg(Restarting("boom after persisting 'err'"))
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Replayed("err", 2))
    probe.expect_msg(Recovered(2, ("a", "err")))
    probe.expect_msg(Persisted("b", 3))
    persist_events(ref, probe, ["c"], first_sequence_nr=4)
    assert ref.ask(GetState()) == State(("a", "err", "b", "c"), 4)


def test_exception_in_persist_handler_restarts_and_replays_the_event(
        system: ActorSystem) -> None:
    """Akka: "support restart when Persist handler throws" (a, b, err, c, d)."""
    probe = TestProbe(system)
    ref = spawn(system, "pa-handler-boom", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a", "b"])

    ref.tell(BoomInHandler("err"))
    ref.tell(Persist("c"))

    probe.expect_msg("handler-err")
    probe.expect_msg(Restarting("boom in the handler of 'err'"))
    for i, event in enumerate(["a", "b", "err"], start=1):
        probe.expect_msg(Replayed(event, i))
    probe.expect_msg(Recovered(3, ("a", "b", "err")))
    probe.expect_msg(Persisted("c", 4))
    persist_events(ref, probe, ["d"], first_sequence_nr=5)
    assert ref.ask(GetState()) == State(("a", "b", "err", "c", "d"), 5)


@pytest.mark.parametrize("kind", ["lambda", "unregistered"])
def test_unserializable_event_is_rejected_and_the_actor_continues(
        system: ActorSystem, kind: str) -> None:
    probe = TestProbe(system)
    ref = spawn(system, f"pa-reject-{kind}", probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a"])

    ref.tell(PersistUnserializable(kind))
    ref.tell(Persist("b"))

    event_type = "function" if kind == "lambda" else "Unregistered"
    probe.expect_msg(Rejected(event_type, 2, "SerializationError"))
    probe.expect_msg(Persisted("b", 3))  # the rejected event used up sequence number 2
    assert ref.ask(GetState()) == State(("a", "b"), 3)

    respawn(system, ref, f"pa-reject-{kind}", probe)
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Replayed("b", 3))
    probe.expect_msg(Recovered(3, ("a", "b")))


def test_rejection_covers_the_whole_atomic_write(system: ActorSystem) -> None:
    """persist_all is one AtomicWrite: one bad event rejects all of them, none is stored."""
    probe = TestProbe(system)
    ref = spawn(system, "pa-reject-all", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistAllWithBad("good"))
    ref.tell(Persist("next"))

    probe.expect_msg(Rejected("str", 1, "SerializationError"))
    probe.expect_msg(Rejected("Unregistered", 2, "SerializationError"))
    probe.expect_msg(Persisted("next", 3))

    respawn(system, ref, "pa-reject-all", probe)
    probe.expect_msg(Replayed("next", 3))
    probe.expect_msg(Recovered(3, ("next",)))


@pytest.mark.parametrize("command", [Persist, PersistAsync])
def test_failed_write_calls_on_persist_failure_and_stops(
        gated: ActorSystem, tmp_path: Path, command: type[Persist | PersistAsync]) -> None:
    """Akka: "call OnPersistFailure and stop when Persist (PersistAsync) fails"."""
    probe = TestProbe(gated)
    pid = f"pa-write-fails-{command.__name__}"
    ref = spawn(gated, pid, probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a"])
    set_switch(tmp_path, pid, "fail-write")

    ref.tell(command("b"))
    ref.tell(Persist("never"))  # the actor stops before it gets to this

    probe.expect_msg(PersistFailed("b", 2, "JournalError"))
    probe.expect_msg(Stopped(pid))
    spawn(gated, pid, probe)
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Recovered(1, ("a",)))
    probe.expect_no_msg(0.1)


def test_nothing_queued_behind_a_failed_write_is_written(gated: ActorSystem,
                                                         tmp_path: Path) -> None:
    """After a failed write the actor stops; what was batched behind it is not sent.

    "later" is persisted while the failing write of "b" is in flight (persist_async does not
    stash; the actor sends the command to itself). Akka keeps the write in progress after
    WriteMessagesFailed, so that batch never reaches the journal.
    """
    probe = TestProbe(gated)
    pid = "pa-failed-then-queued"
    ref = spawn(gated, pid, probe)
    probe.expect_msg(Recovered(0, ()))
    persist_events(ref, probe, ["a"])
    set_switch(tmp_path, pid, "fail-write")  # the next write fails, later ones would succeed

    ref.tell(PersistAsyncThenSelf("b", "later"))

    probe.expect_msg(PersistFailed("b", 2, "JournalError"))
    probe.expect_msg(Stopped(pid))
    spawn(gated, pid, probe)
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Recovered(1, ("a",)))
    assert read_journal_record(gated).writes_of(pid) == [[(1,)]]


# -- stopping ------------------------------------------------------------------------------------


def test_poison_pill_waits_for_the_pending_persist_handler(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-poison", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PersistThenPoison("a"))  # the pill is sent while "a" is pending

    probe.expect_msg(Persisted("a", 1))
    probe.expect_msg(Stopped("pa-poison"))

    ref = spawn(system, "pa-poison", probe)
    probe.expect_msg(Replayed("a", 1))
    probe.expect_msg(Recovered(1, ("a",)))

    ref.tell(Persist("b"))
    ref.tell(PoisonPill)  # from outside, after a command
    probe.expect_msg(Persisted("b", 2))
    probe.expect_msg(Stopped("pa-poison"))


def test_kill_stops_at_once_without_running_the_pending_handler(
        gated: ActorSystem, tmp_path: Path) -> None:
    """The write is held until post_stop ran, so its handler could only run after a stop."""
    probe = TestProbe(gated)
    pid = "pa-kill"
    ref = spawn(gated, pid, probe)
    probe.expect_msg(Recovered(0, ()))
    gate = close_gate(tmp_path, pid)

    ref.tell(PersistThenKill("a", gate))

    probe.expect_msg(Stopped(pid))  # not Persisted("a", 1) first
    spawn(gated, pid, probe)
    probe.expect_msg(Replayed("a", 1))  # the write itself was not cancelled
    probe.expect_msg(Recovered(1, ("a",)))
    probe.expect_no_msg(0.2)


def test_kill_and_respawn_under_the_same_name(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = spawn(system, "pa-kill-name", probe)
    probe.expect_msg(Recovered(0, ()))
    for round_ in range(3):
        persist_events(ref, probe, [f"r{round_}"], first_sequence_nr=round_ + 1)
        kill(ref, probe, "pa-kill-name")
        ref = spawn(system, "pa-kill-name", probe, quiet=True)
        probe.expect_msg(Recovered(round_ + 1, tuple(f"r{i}" for i in range(round_ + 1))))


# -- event stream --------------------------------------------------------------------------------


def test_handler_publishes_to_event_stream_subscribers(system: ActorSystem) -> None:
    probe = TestProbe(system)
    listener = TestProbe(system)
    system.event_stream.subscribe(listener.ref, Published)
    system.event_stream.subscribe(listener.ref, Marker)
    # Published from outside after the subscriptions: when it arrives, they are in place.
    system.event_stream.publish(Marker("subscribed"))
    listener.expect_msg(Marker("subscribed"))
    ref = spawn(system, "pa-publish", probe)
    probe.expect_msg(Recovered(0, ()))

    ref.tell(PublishEvent("a"))
    listener.expect_msg(Published("a"))
    listener.expect_msg(Marker("a"))

    ref.tell(PublishEvent("b", sub=True))  # subclasses are delivered too
    listener.expect_msg(PublishedSub("b"))
    listener.expect_msg(Marker("b"))

    system.event_stream.unsubscribe(listener.ref, Published)
    system.event_stream.publish(Marker("unsubscribed"))
    listener.expect_msg(Marker("unsubscribed"))
    ref.tell(PublishEvent("c"))
    listener.expect_msg(Marker("c"))  # Published("c") would have come first
    listener.expect_no_msg(0.1)
