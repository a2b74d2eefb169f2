"""Frame batching (`persistent_actors._thespian.frames`): what an actor sends during one receive.

The runtime's actors send what they sent while handling one message at its end, per
destination: several messages as one `Batch`, which the receiver unpacks in order. These tests
pin the rules on a recording stand-in for thespian's `Actor.send` (no actor system), then the
behaviour end to end on both bases: order per sender and receiver with stops behind a flood,
and replies of entities that answered in one pass reaching exactly their askers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from thespian.actors import ActorAddress, ActorExitRequest

from bench.actors import BenchActor, Driver, Run
from persistent_actors import ActorSystem
from persistent_actors import _protocol as p
from persistent_actors._thespian.frames import (
    MAX_BATCH,
    FrameBatching,
    batched,
    frame_has_more,
    frame_rest,
    take_from_frame,
)
from persistent_actors.stored import ReplayedRows
from tests.conftest import system_config
from tests.entity_actors import AddItem, Cart
from tests.service_actors import Flooder, Keeper, LastWords, Recorder, RecorderEntity
from tests.system_actors import Echo

A = ActorAddress("a")
B = ActorAddress("b")


class _Wire:
    """Stands in for thespian's Actor: records every frame `send` puts on the wire."""

    def __init__(self) -> None:
        self.frames: list[tuple[Any, Any]] = []

    def send(self, target: Any, message: Any) -> None:
        self.frames.append((target.addressDetails, message))


class _Sender(FrameBatching, _Wire):
    """Sends what each received message lists: (address, message) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: list[Any] = []
        self.more: list[bool] = []
        self.snapshots: list[list[tuple[Any, Any]]] = []

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's
        self.handled.append(message)
        self.more.append(frame_has_more(self))
        if message == "boom":
            raise RuntimeError("boom")
        if message == "nested":
            self.receiveMessage([(B, "from-nested")], sender)
            return
        if isinstance(message, list):
            for step in message:
                if step == "snap":  # what is on the wire so far, during the receive
                    self.snapshots.append(list(self.frames))
                    continue
                address, item = step
                self.send(address, item)


def test_sends_of_one_receive_go_per_destination_in_send_order() -> None:
    actor = _Sender()
    actor.receiveMessage([(A, 1), (B, "x"), (A, 2), (A, 3), (B, "y")], None)
    assert actor.frames == [("a", p.Batch((1, 2, 3))), ("b", p.Batch(("x", "y")))]


def test_a_lone_message_travels_bare() -> None:
    actor = _Sender()
    actor.receiveMessage([(A, 1)], None)
    assert actor.frames == [("a", 1)]


def test_thespian_messages_are_never_batched_and_keep_their_place() -> None:
    actor = _Sender()
    stop = ActorExitRequest()
    actor.receiveMessage([(A, 1), (A, 2), (A, stop), (A, 3)], None)
    assert actor.frames == [("a", p.Batch((1, 2))), ("a", stop), ("a", 3)]


def test_a_replay_chunk_leaves_at_once_behind_what_waits_for_its_destination() -> None:
    actor = _Sender()
    chunk = p.ReplayedMessages(ReplayedRows((), (), (), ()), 1)
    actor.receiveMessage([(B, "b"), (A, 1), (A, 2), (A, chunk), "snap", (A, 3)], None)
    assert actor.snapshots == [[("a", p.Batch((1, 2))), ("a", chunk)]]
    assert actor.frames == [("a", p.Batch((1, 2))), ("a", chunk), ("b", "b"), ("a", 3)]


def test_a_batch_is_cut_at_max_batch() -> None:
    actor = _Sender()
    actor.receiveMessage([(A, n) for n in range(MAX_BATCH + 1)], None)
    assert actor.frames == [("a", p.Batch(tuple(range(MAX_BATCH)))), ("a", MAX_BATCH)]


def test_a_received_batch_is_handled_in_order_and_answered_in_one_frame() -> None:
    actor = _Sender()
    actor.receiveMessage(p.Batch(([(A, 1)], [(A, 2)], [(B, 3)])), None)
    assert actor.handled == [[(A, 1)], [(A, 2)], [(B, 3)]]
    assert actor.frames == [("a", p.Batch((1, 2))), ("b", 3)]


def test_a_receiver_knows_whether_more_of_its_frame_follows() -> None:
    actor = _Sender()
    actor.receiveMessage(p.Batch(([(A, 1)], [(A, 2)], [(A, 3)])), None)
    actor.receiveMessage([(A, 4)], None)
    assert actor.more == [True, True, False, False]
    assert not frame_has_more(actor)


class _Taker(_Sender):
    """On "take": records the rest of its frame and takes its next two messages (if any)."""

    def __init__(self) -> None:
        super().__init__()
        self.rests: list[tuple[Any, ...]] = []

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's
        self.handled.append(message)
        if message == "take":
            rest = frame_rest(self)
            self.rests.append(rest)
            take_from_frame(self, min(2, len(rest)))


def test_a_receiver_may_take_what_follows_in_its_frame() -> None:
    actor = _Taker()
    actor.receiveMessage(p.Batch((1, "take", 2, 3, 4, "take", 5, 6)), None)
    assert actor.rests == [(2, 3, 4, "take", 5, 6), (5, 6)]
    assert actor.handled == [1, "take", 4, "take"]
    actor.receiveMessage("take", None)  # a lone message: nothing follows it
    assert actor.rests[-1] == ()
    assert not frame_has_more(actor)


def test_persist_all_commands_stashed_with_their_frame_keep_their_order(
        system: ActorSystem) -> None:
    """Commands behind a stashing persist are stashed a frame at a time (`_stash_frame_rest`)."""
    count = MAX_BATCH * 2 + 120
    target = system.actor_of(BenchActor, "frame-stash", count)
    assert target.ask("counter", timeout=60) == 0
    driver = system.actor_of(Driver)
    assert driver.ask(Run((target,), "pb", count), timeout=120) == "done"
    # BenchActor fails (and so restarts, losing its batch) on an event out of order.
    assert target.ask("counter", timeout=60) == count


class _Intercepting(_Sender):
    """A subclass that handles "mine" itself, as a specialised host would."""

    def __init__(self) -> None:
        super().__init__()
        self.intercepted: list[Any] = []

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's
        if message == "mine":
            self.intercepted.append(message)
            return
        super().receiveMessage(message, sender)


def test_a_subclass_override_sees_each_message_of_a_batch() -> None:
    actor = _Intercepting()
    actor.receiveMessage(p.Batch(([(A, 1)], "mine", [(A, 2)])), None)
    assert actor.intercepted == ["mine"]
    assert actor.handled == [[(A, 1)], [(A, 2)]]
    assert actor.frames == [("a", p.Batch((1, 2)))]


def test_a_failing_message_of_a_batch_does_not_stop_or_repeat_the_others() -> None:
    actor = _Sender()
    actor.receiveMessage(p.Batch(([(A, 1)], "boom", [(A, 2)])), None)  # nothing raised
    assert actor.handled == [[(A, 1)], "boom", [(A, 2)]]
    assert actor.frames == [("a", p.Batch((1, 2)))]


def test_a_failing_lone_message_still_raises_and_sends_what_it_sent() -> None:
    actor = _Sender()
    with pytest.raises(RuntimeError):
        actor.receiveMessage("boom", None)
    actor.receiveMessage([(A, 1)], None)
    assert actor.frames == [("a", 1)]


def test_a_nested_receive_sends_at_the_end_of_the_outer_one() -> None:
    actor = _Sender()
    actor.receiveMessage(p.Batch(([(B, "before")], "nested", [(B, "after")])), None)
    assert actor.frames == [("b", p.Batch(("before", "from-nested", "after")))]


def test_outside_a_receive_a_send_goes_at_once() -> None:
    actor = _Sender()
    actor.send(A, 1)
    assert actor.frames == [("a", 1)]


# -- end to end, both bases --------------------------------------------------------------------
def test_a_flood_sent_in_one_handler_arrives_in_order_before_the_stop(system: ActorSystem) -> None:
    """One handler tells more than two batches' worth, in order; a stop behind a flood waits."""
    recorder = system.actor_of(Recorder)
    flooder = system.actor_of(Flooder)
    count = MAX_BATCH * 2 + 200
    assert flooder.ask(("flood", recorder, "f", count, False), timeout=60) == "sent"
    # Another sender's ask may overtake the flood (Akka orders per pair only): wait for it.
    deadline = time.monotonic() + 30
    while len(seen := recorder.ask("log", timeout=60)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [("seq", "f", n) for n in range(count)]
    keeper = system.actor_of(Keeper)
    last = system.actor_of(LastWords, keeper)
    assert flooder.ask(("flood", last, "g", 50, True), timeout=60) == "sent"
    deadline = time.monotonic() + 30
    while not (kept := keeper.ask("get", timeout=30)) and time.monotonic() < deadline:
        time.sleep(0.01)
    # The stop came behind the 50 tells: the recorder handled them all, then stopped.
    assert kept == [("final", [("seq", "g", n) for n in range(50)])]


def test_replies_of_one_pass_reach_exactly_their_askers(system: ActorSystem) -> None:
    """100 concurrent asks over 10 echoes: replies come back batched, never crossed."""
    echoes = [system.actor_of(Echo) for _ in range(10)]

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(echoes[n % 10].ask_async(("n", n), timeout=30) for n in range(300))
        )

    assert asyncio.run(main()) == [("n", n) for n in range(300)]


def test_tells_to_entities_from_many_threads_keep_each_senders_order(system: ActorSystem) -> None:
    """Entity messages go from the driver straight to their host, one frame per host and pass."""
    region = system.entities("recorders", RecorderEntity)
    per_sender = 100 if system.settings.base == "simple" else 40
    errors: list[BaseException] = []

    def sender(tag: str) -> None:
        try:
            for n in range(per_sender):
                region.tell("one", ("seq", tag, n))
                region.tell(f"other-{n % 7}", ("seq", tag, n))  # spread over both hosts
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=sender, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    seen = region.ask("one", "log", timeout=60)  # behind every tell of this thread
    assert len(seen) == 6 * per_sender
    for i in range(6):
        assert [n for _, who, n in seen if who == f"t{i}"] == list(range(per_sender))


@pytest.mark.multiproc
def test_a_frame_sent_to_a_killed_host_reaches_its_successor(tmp_path: Path) -> None:
    """Asks sent together to a host that was just SIGKILLed: each is held and answered."""
    config = system_config(
        "multiproc-tcp", journal={"plugin": "sqlite", "path": str(tmp_path / "events.db")}
    )
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0}
    with ActorSystem("frames", config=config) as system:
        carts = system.entities("cart", Cart)
        users = [f"user-{i}" for i in range(40)]
        for user in users:
            assert carts.ask(user, AddItem(f"{user}-1"), timeout=20) == 1
        victim = carts.ask("user-0", "pid", timeout=20)
        os.kill(victim, signal.SIGKILL)

        async def all_at_once() -> list[Any]:
            return await asyncio.gather(
                *(carts.ask_async(user, "items", timeout=30) for user in users)
            )

        assert asyncio.run(all_at_once()) == [[f"{user}-1"] for user in users]


def test_on_the_simple_base_a_reply_to_the_outside_skips_the_outbox() -> None:
    # The list the driver takes replies from is read only once the system is idle: a reply
    # to an ask goes there at once, in order; everything else is collected as before.
    outside: list[Any] = []
    actor = _Sender()
    actor._frames_outside = (A, outside.append)  # what `_outside_of` finds on the simple base
    first, second = p.Reply("1", "x"), p.Reply("2", "y")
    actor.receiveMessage([(A, first), (B, "b"), (A, "plain"), "snap", (A, second)], None)
    assert outside == [first, second]
    assert actor.snapshots == [[]]  # the rest waited for the end of the receive
    assert actor.frames == [("b", "b"), ("a", "plain")]
