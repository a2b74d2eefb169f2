"""The simple base's direct hand-off to the journal (`_thespian/direct_journal.py`).

Each behaviour runs on both bases: on multiproc-tcp every write is a message, on the simple
base a write made while nothing else is queued goes straight to the plugin host, and its
result is handled as the actor's next message. On the simple base the tests also check that
the direct path was taken (`direct_writes`), so they test it rather than the message path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import ActorSystem
from persistent_actors import _protocol as p
from persistent_actors._thespian import wakeups
from persistent_actors._thespian.direct_journal import DirectJournal
from persistent_actors._thespian.plugin_host import PluginHost
from persistent_actors._thespian.simple_direct import SimpleDirect
from persistent_actors.testing import Fail, Pass, PersistenceTestKit, Reject
from tests.conftest import system_config
from tests.direct_actors import Ledger, Sender
from tests.persistent_actors_under_test import read_journal_record

TIMEOUT = 10
RECORDING_JOURNAL = "tests.persistent_actors_under_test:RecordingJournal"


@pytest.fixture
def direct_writes(monkeypatch: pytest.MonkeyPatch) -> list[p.WriteMessagesResult]:
    """The results of the writes that took the direct path in this process (simple base)."""
    taken: list[p.WriteMessagesResult] = []
    write = DirectJournal.write

    def counting(self: DirectJournal, request: p.WriteMessages, outbox: dict[Any, Any] | None,
                 requester: Any) -> p.WriteMessagesResult | bool:
        result = write(self, request, outbox, requester)
        if not isinstance(result, bool):
            taken.append(result)
        return result

    monkeypatch.setattr(DirectJournal, "write", counting)
    return taken


@pytest.fixture
def joined(monkeypatch: pytest.MonkeyPatch) -> list[p.WriteMessages]:
    """The requests that joined a plugin host's batch without a message (simple base)."""
    taken: list[p.WriteMessages] = []
    join = PluginHost.join_batch

    def counting(self: PluginHost, request: p.WriteMessages, requester: Any) -> bool:
        done = join(self, request, requester)
        if done:
            taken.append(request)
        return done

    monkeypatch.setattr(PluginHost, "join_batch", counting)
    return taken


def _check_path(base: str, direct_writes: list[Any], *, at_least: int) -> None:
    if base == "simple":
        assert len(direct_writes) >= at_least
    else:  # the actors run in other processes: every write is a message there
        assert direct_writes == []


def _log(ref: Any) -> list[Any]:
    log: list[Any] = ref.ask("log", timeout=TIMEOUT)
    return log


def test_handlers_run_after_their_command_in_order_and_commands_wait(
        system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    ledger = system.actor_of(Ledger, "direct-order")
    sender = system.actor_of(Sender)
    # Queued together: every command after the first waits in the stash while its
    # predecessor's write is in flight.
    assert sender.ask([(ledger, ("p", n)) for n in range(1, 21)], timeout=TIMEOUT) == "sent"
    expected: list[Any] = [("recovery-completed", 0)]
    for n in range(1, 21):
        expected += [("cmd", n), ("evt", n, n)]
    # Waited for: on multiproc-tcp the sender's tells may reach the ledger after an ask from
    # here (they come from another process).
    assert _wait_log(ledger, ("evt", 20, 20)) == expected
    _check_path(base, direct_writes, at_least=10)


def test_persist_async_handlers_run_in_order_between_later_commands(
        system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    ledger = system.actor_of(Ledger, "direct-async")
    ledger.tell(("pa", 1))
    ledger.tell(("p", 2))
    ledger.tell(("pa", 3))
    ledger.tell(("pa", 4))
    ledger.tell(("p", 5))  # "log" waits for its handler, so for every handler before it
    log = _log(ledger)
    assert log[0] == ("recovery-completed", 0)
    events = [entry for entry in log if entry[0] == "evt"]
    assert events == [("evt", n, n) for n in range(1, 6)]
    # A stashing persist's handler runs before any later command.
    assert log.index(("evt", 2, 2)) < log.index(("cmd", 3))
    _check_path(base, direct_writes, at_least=1)


def _wait_log(ref: Any, last: Any) -> list[Any]:
    """The log once its last entry is `last` (on multiproc-tcp a told actor may lag)."""
    deadline = time.monotonic() + TIMEOUT
    while (log := _log(ref))[-1:] != [last] and time.monotonic() < deadline:
        time.sleep(0.01)
    return log


def test_a_write_then_a_recovery_sees_it(
        system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    ledger = system.actor_of(Ledger, "direct-replay", name="first")
    assert ledger.ask(("ask", 7), timeout=TIMEOUT) == ("stored", 7, 1)
    system.stop(ledger)
    again = system.actor_of(Ledger, "direct-replay", name="second")
    assert _log(again) == [("recovered", 7, 1), ("recovery-completed", 1)]
    _check_path(base, direct_writes, at_least=1)


def test_a_delete_from_the_handler_applies_after_the_write(
        system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    ledger = system.actor_of(Ledger, "direct-delete", name="first")
    assert ledger.ask(("ask", 1), timeout=TIMEOUT) == ("stored", 1, 1)
    ledger.tell(("del", 2))
    assert _wait_log(ledger, ("deleted", 2))[-3:] == [("cmd", 2), ("evt", 2, 2), ("deleted", 2)]
    system.stop(ledger)
    again = system.actor_of(Ledger, "direct-delete", name="second")
    assert _log(again) == [("recovery-completed", 2)]
    _check_path(base, direct_writes, at_least=1)


def test_a_command_that_raises_after_persist_restarts_and_the_event_is_replayed(
        system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    ledger = system.actor_of(Ledger, "direct-raise")
    sender = system.actor_of(Sender)
    # The second command waits for the first's handler, then persists and raises.
    assert sender.ask([(ledger, ("p", 4)), (ledger, ("raise", 5))], timeout=TIMEOUT) == "sent"
    # The old instance's handler never runs (its result is not the new instance's); the new
    # instance replays the event, then carries on from its sequence number. Waited for: on
    # multiproc-tcp the sender's tells may reach the ledger after an ask from here (they come
    # from another process), and then ("ask", 6) was stored first, as event 1.
    _wait_log(ledger, ("recovery-completed", 2))
    assert ledger.ask(("ask", 6), timeout=TIMEOUT) == ("stored", 6, 3)
    assert _log(ledger) == [("recovered", 4, 1), ("recovered", 5, 2), ("recovery-completed", 2),
                            ("cmd", 6), ("evt", 6, 3)]
    _check_path(base, direct_writes, at_least=2)


def test_a_handler_tells_another_actor_which_persists(
        system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    first = system.actor_of(Ledger, "direct-chain-1")
    second = system.actor_of(Ledger, "direct-chain-2")
    assert first.ask(("to", second, ("p", 3)), timeout=TIMEOUT) == "told"
    assert _wait_log(second, ("evt", 3, 1)) == [("recovery-completed", 0), ("cmd", 3),
                                                ("evt", 3, 1)]
    assert _log(first) == [("recovery-completed", 0)]
    _check_path(base, direct_writes, at_least=2)


@pytest.fixture
def recording(base: str, tmp_path: Path) -> Iterator[ActorSystem]:
    config = system_config(base, journal={"plugin": RECORDING_JOURNAL, "gate_dir": str(tmp_path)})
    with ActorSystem("direct-recording", config=config) as actor_system:
        yield actor_system


def test_writes_queued_together_are_still_group_committed(
        recording: ActorSystem, base: str, direct_writes: list[Any], joined: list[Any]) -> None:
    ledgers = [recording.actor_of(Ledger, f"direct-group-{n}") for n in range(3)]
    for ledger in ledgers:
        assert _log(ledger) == [("recovery-completed", 0)]
    sender = recording.actor_of(Sender)
    assert sender.ask([(ledger, ("p", 1)) for ledger in ledgers], timeout=TIMEOUT) == "sent"
    for ledger in ledgers:  # on multiproc-tcp the sender's tells may reach a ledger after
        # the test's ask: the ledger and the sender can be in different (shared) processes
        assert _wait_log(ledger, ("evt", 1, 1))[-1] == ("evt", 1, 1)
    calls = read_journal_record(recording).calls
    if base == "simple":
        # Each command found the others queued: no direct write; the requests joined the
        # host's batch without messages, and one transaction wrote all of them.
        assert direct_writes == []
        assert len(joined) == 3
        assert sorted(pid for pid, _ in calls[-1]) == [f"direct-group-{n}" for n in range(3)]
    else:
        assert joined == []
        assert sorted(pid for call in calls for pid, _ in call) == \
            [f"direct-group-{n}" for n in range(3)]


TEST_JOURNAL = "persistent_actors.testing:TestJournal"
TEST_SNAPSHOTS = "persistent_actors.testing:TestSnapshotStore"


@pytest.fixture
def kit_system(base: str) -> Iterator[ActorSystem]:
    config = system_config(base, journal={"plugin": TEST_JOURNAL},
                           snapshot_store={"plugin": TEST_SNAPSHOTS})
    with ActorSystem("direct-kit", config=config) as actor_system:
        yield actor_system


def test_a_rejection_and_a_failure_map_as_on_the_message_path(
        kit_system: ActorSystem, base: str, direct_writes: list[Any]) -> None:
    kit = PersistenceTestKit(kit_system)
    ledger = kit_system.actor_of(Ledger, "direct-fail")
    assert ledger.ask(("ask", 1), timeout=TIMEOUT) == ("stored", 1, 1)
    with kit.journal.on_write(Reject()):
        assert ledger.ask(("ask", 2), timeout=TIMEOUT) == ("rejected", "JournalError", 2, 2)
    # The rejected write used number 2, and the actor goes on.
    assert ledger.ask(("ask", 3), timeout=TIMEOUT) == ("stored", 3, 3)
    kit.journal.on_write(Fail())
    assert ledger.ask(("ask", 4), timeout=TIMEOUT) == ("failed", "JournalError", 4, 4)
    kit.journal.on_write(Pass())
    again = kit_system.actor_of(Ledger, "direct-fail", name="again")  # the failure stopped it
    assert _log(again) == [("recovered", 1, 1), ("recovered", 3, 3), ("recovery-completed", 3)]
    if base == "simple":
        outcomes = [type(outcome) for result in direct_writes for outcome in result.outcomes]
        assert outcomes == [p.WriteStored, p.WriteRejected, p.WriteStored, p.WriteFailed]
    else:
        assert direct_writes == []


@pytest.fixture
def simple_recording(tmp_path: Path) -> Iterator[ActorSystem]:
    config = system_config("simple",
                           journal={"plugin": RECORDING_JOURNAL, "gate_dir": str(tmp_path)})
    with ActorSystem("direct-external", config=config) as actor_system:
        yield actor_system


def test_an_external_batch_of_asks_is_group_committed_not_written_one_by_one(
        simple_recording: ActorSystem, direct_writes: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver hands a pass's messages straight to their actors, one after another, without
    # queueing the rest (`wakeups.deliver_in_order`): the send queue is empty while each is
    # handled, yet the rest of the batch follows. Each command must join the host's batch, not
    # take the direct write (one transaction per request would undo the group commit).
    passes: list[int] = []
    tell_all = SimpleDirect.tell_all

    def recording_tell_all(self: SimpleDirect, sends: Any) -> None:
        passes.append(len(sends))
        tell_all(self, sends)

    monkeypatch.setattr(SimpleDirect, "tell_all", recording_tell_all)
    ledgers = [simple_recording.actor_of(Ledger, f"external-{n}") for n in range(20)]
    for ledger in ledgers:
        assert _log(ledger) == [("recovery-completed", 0)]

    async def asks(round_nr: int) -> list[Any]:
        return list(await asyncio.gather(
            *(ledger.ask_async(("ask", round_nr), timeout=TIMEOUT) for ledger in ledgers)))

    for round_nr in range(1, 6):
        passes.clear()
        del direct_writes[:]
        answers = asyncio.run(asks(round_nr))
        assert answers == [("stored", round_nr, round_nr)] * len(ledgers)
        if max(passes) > 1:
            break
    assert max(passes) > 1, f"no pass carried more than one ask: {passes}"
    # At most the last message of each pass may be written directly (nothing follows it).
    assert len(direct_writes) <= len(passes)
    for ledger in ledgers:
        assert _log(ledger)[-1] == ("evt", round_nr, round_nr)


@pytest.mark.parametrize("handed_over", [True, False], ids=["handed-over", "as-a-message"])
def test_a_group_commits_results_run_in_order_and_what_they_unstash_commits_together(
        recording: ActorSystem, base: str, direct_writes: list[Any],
        monkeypatch: pytest.MonkeyPatch, handed_over: bool) -> None:
    # On the simple base a batch's results leave the plugin host as one `InOrder`, which the
    # send loop hands to each actor as if each result had been queued on its own; the command
    # each actor stashed meanwhile runs after its result, and since more results follow, its
    # persist joins the next batch instead of taking the direct write. Where the send loop does
    # not know the `InOrder` (here: hidden from it), the plugin host sends each result itself.
    if not handed_over and base == "simple":
        # (On multiproc-tcp the results are plain messages either way: both variants check it.)
        monkeypatch.setattr(wakeups, "InOrder", type("Unknown", (), {}))
    ledgers = [recording.actor_of(Ledger, f"direct-in-order-{n}") for n in range(3)]
    for ledger in ledgers:
        assert _log(ledger) == [("recovery-completed", 0)]
    sender = recording.actor_of(Sender)
    sends = [(ledger, ("p", n)) for n in (1, 2) for ledger in ledgers]
    assert sender.ask(sends, timeout=TIMEOUT) == "sent"
    for ledger in ledgers:
        assert _wait_log(ledger, ("evt", 2, 2))[1:] == [
            ("cmd", 1), ("evt", 1, 1), ("cmd", 2), ("evt", 2, 2)]
    if base == "simple":
        pids = sorted(f"direct-in-order-{n}" for n in range(3))
        calls = read_journal_record(recording).calls
        assert [sorted(pid for pid, _ in call) for call in calls[-2:]] == [pids, pids]
        assert direct_writes == []
