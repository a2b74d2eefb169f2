"""Requests from outside the actor system, as a service sends them (issue: service traffic).

External sends from any thread or event loop go through one driver thread that delivers
whatever queued up together. These tests pin what that must never change: the order of one
sender's messages to one receiver, replies reaching exactly their own askers from many threads
and loops at once, and an ask's timeout being honoured on both bases.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from thespian.actors import ActorAddress

from persistent_actors import ActorRef, ActorSystem, AskTimeoutError, PersistentActorsError
from persistent_actors._endpoint import Endpoint
from tests.service_actors import Napper, Recorder, Slow
from tests.system_actors import Echo

SENDERS = 8


def _per_sender(system: ActorSystem) -> int:
    # multiproc-tcp carries one actor-to-actor message per round trip: keep its flood short.
    return 200 if system.settings.base == "simple" else 40


def _check_per_sender_order(seen: list[Any], senders: list[str], count: int) -> None:
    for tag in senders:
        mine = [n for kind, who, n in seen if kind == "seq" and who == tag]
        assert mine == list(range(count)), f"{tag}'s messages arrived out of order or lost"


def test_one_threads_tells_arrive_in_order_under_batching(system: ActorSystem) -> None:
    recorder = system.actor_of(Recorder)
    count = _per_sender(system) * 5
    for n in range(count):
        recorder.tell(("seq", "main", n))
    # The ask travels the same path: it must not overtake the tells still being forwarded.
    _check_per_sender_order(recorder.ask("log", timeout=60), ["main"], count)


def test_tells_to_a_receiver_that_reads_nothing_meanwhile_keep_their_order(
        system: ActorSystem) -> None:
    """Tells to a receiver that is busy (on multiproc-tcp its last frame is not acknowledged
    yet, so the next ones wait and leave together) keep their order, and do not hold back
    what goes to other actors meanwhile."""
    napper = system.actor_of(Napper)
    other = system.actor_of(Echo)
    count = _per_sender(system)
    for burst in range(3):
        napper.tell(("nap", 0.2))
        for n in range(burst * count, (burst + 1) * count):
            napper.tell(("seq", "main", n))
        assert other.ask(("ping", burst), timeout=60) == ("ping", burst)
    _check_per_sender_order(napper.ask("log", timeout=60), ["main"], 3 * count)


def test_each_threads_and_loops_tells_keep_their_order(system: ActorSystem) -> None:
    """Many threads and event loops tell one receiver at once: each one's order holds."""
    recorder = system.actor_of(Recorder)
    errors: list[BaseException] = []
    per_sender = _per_sender(system)

    def thread_sender(tag: str) -> None:
        try:
            for n in range(per_sender):
                recorder.tell(("seq", tag, n))
        except BaseException as e:
            errors.append(e)

    def loop_sender(tag: str) -> None:
        async def main() -> None:
            for n in range(per_sender):
                recorder.tell(("seq", tag, n))
                if n % 10 == 0:
                    await asyncio.sleep(0)

        try:
            asyncio.run(main())
        except BaseException as e:
            errors.append(e)

    tags = [f"thread-{i}" for i in range(SENDERS)] + [f"loop-{i}" for i in range(2)]
    threads = [threading.Thread(target=thread_sender, args=(t,)) for t in tags[:SENDERS]]
    threads += [threading.Thread(target=loop_sender, args=(t,)) for t in tags[SENDERS:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    seen = recorder.ask("log", timeout=60)
    assert len(seen) == len(tags) * per_sender
    _check_per_sender_order(seen, tags, per_sender)


def test_asks_from_many_threads_and_loops_get_their_own_replies(system: ActorSystem) -> None:
    echoes = [system.actor_of(Echo) for _ in range(4)]
    errors: list[BaseException] = []
    answered: list[int] = []
    lock = threading.Lock()
    per_client = 40

    def check(tag: str, n: int, reply: Any) -> None:
        if reply != (tag, n):
            raise AssertionError(f"{tag} asked {n} and got {reply!r}: replies crossed")
        with lock:
            answered.append(1)

    def thread_client(tag: str) -> None:
        try:
            for n in range(per_client):
                check(tag, n, echoes[n % len(echoes)].ask((tag, n), timeout=30))
        except BaseException as e:
            errors.append(e)

    def loop_client(tag: str) -> None:
        async def one(ref: ActorRef, task: int, n: int) -> None:
            check(f"{tag}-{task}", n, await ref.ask_async((f"{tag}-{task}", n), timeout=30))

        async def main() -> None:
            await asyncio.gather(*(one(echoes[(t + n) % len(echoes)], t, n)
                                   for t in range(10) for n in range(per_client // 4)))

        try:
            asyncio.run(main())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=thread_client, args=(f"t{i}",)) for i in range(8)]
    threads += [threading.Thread(target=loop_client, args=(f"l{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(answered) == 8 * per_client + 2 * 10 * (per_client // 4)


def test_ask_timeout_is_honoured_while_the_actor_is_still_busy(system: ActorSystem) -> None:
    """The caller waits on its own event: a late reply is never returned (both bases)."""
    slow = system.actor_of(Slow)
    with pytest.raises(AskTimeoutError):
        slow.ask(("sleep", 1.0), timeout=0.2)
    # The late reply was dropped, and the next ask gets its own answer.
    assert slow.ask("next", timeout=30) == "next"


def test_ask_async_timeout_is_honoured_and_a_late_reply_dropped(system: ActorSystem) -> None:
    """The ask's own future times out; the late reply finds no sink (both bases)."""
    slow = system.actor_of(Slow)

    async def main() -> Any:
        with pytest.raises(AskTimeoutError, match="no reply from"):
            await slow.ask_async(("sleep", 1.0), timeout=0.2)
        return await slow.ask_async("next", timeout=30)

    assert asyncio.run(main()) == "next"


def test_a_tell_racing_a_shutdown_raises_and_never_calls_thespian_itself(
        base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shutdown that begins between a send's check that the system runs and its look at the
    driver: the send raises the shutdown error instead of calling thespian from the caller's
    thread while the driver may still use it. The race is forced: reading the driver puts the
    endpoint in the state a beginning shutdown leaves it in (closed, no driver)."""
    system = ActorSystem(f"tell-racing-shutdown-{base}", config={"actor_system": {"base": base}})
    echo = system.actor_of(Echo)
    endpoint = system._endpoint
    told: list[Any] = []

    class Racing(Endpoint):
        @property  # the attribute, read through a hook
        def _driver(self) -> Any:  # type: ignore[override]
            self.__dict__["_closed"] = True  # what Endpoint.shutdown does first
            monkeypatch.setattr(self._asys, "tell", lambda address, message: told.append(message))
            return None  # and then it drops the driver

    try:
        endpoint.__class__ = Racing
        with pytest.raises(PersistentActorsError, match="shut down"):
            echo.tell("late")
    finally:
        endpoint.__class__ = Endpoint
        monkeypatch.undo()
        endpoint._closed = False
        system.shutdown()
    assert told == []


def test_asks_waiting_when_the_system_shuts_down_fail_at_once(base: str) -> None:
    """A blocked thread and an awaiting coroutine both get the shutdown error, not a timeout."""
    system = ActorSystem(f"shutdown-under-asks-{base}", config={"actor_system": {"base": base}})
    silent = system.actor_of(Recorder)  # records ("seq", ...) and never answers it
    outcomes: dict[str, BaseException | Any] = {}
    waiting = threading.Barrier(3)

    def blocking() -> None:
        waiting.wait()
        try:
            outcomes["ask"] = silent.ask(("seq", "ask", 0), timeout=60)
        except BaseException as e:  # recorded for the assertion
            outcomes["ask"] = e

    def awaiting() -> None:
        async def main() -> None:
            waiting.wait()
            try:
                outcomes["ask_async"] = await silent.ask_async(("seq", "ask_async", 0),
                                                               timeout=60)
            except BaseException as e:  # recorded for the assertion
                outcomes["ask_async"] = e

        asyncio.run(main())

    threads = [threading.Thread(target=blocking), threading.Thread(target=awaiting)]
    for t in threads:
        t.start()
    waiting.wait()
    # Both asks are registered and waiting once the recorder has both (a fixed 0.3 s may not
    # be enough on a loaded machine: an ask made after the shutdown fails differently).
    deadline = time.monotonic() + 30
    while len(silent.ask("log", timeout=10)) < 2:
        assert time.monotonic() < deadline, "the asks never reached the recorder"
        time.sleep(0.01)
    system.shutdown()
    for t in threads:
        t.join(timeout=30)
    assert all(not t.is_alive() for t in threads)
    for kind in ("ask", "ask_async"):
        assert isinstance(outcomes[kind], PersistentActorsError), (kind, outcomes[kind])
        assert "shut down" in str(outcomes[kind])


def test_a_stop_queued_behind_tells_to_a_busy_receiver_still_stops_it(
        system: ActorSystem) -> None:
    """A stop sent right behind tells to a receiver that reads nothing meanwhile (on
    multiproc-tcp they wait for its last frame's acknowledgement and then leave together) is
    still thespian's own exit request: the actor exits, and its name is free again."""
    napper = system.actor_of(Napper, name="stopped-behind-tells")
    napper.tell(("nap", 0.3))
    napper.tell(("seq", "main", 0))
    napper.tell(("seq", "main", 1))
    system.stop(napper)
    # actor_of under a stopping actor's name waits for it to exit: it exits, so this returns.
    again = system.actor_of(Napper, name="stopped-behind-tells")
    assert again.ask("log", timeout=30) == []


def test_a_tell_to_an_address_that_is_no_actors_loses_or_repeats_nothing_else(
        system: ActorSystem) -> None:
    """A ref whose (opaque) address is not an actor's, told in the middle of a busy stretch:
    its message is dropped, and the messages delivered together with it (queued behind the
    same busy receiver) all arrive once, in order."""
    napper = system.actor_of(Napper)
    napper.tell(("nap", 0.3))  # busy: what follows queues up and is delivered together
    for n in range(20):
        napper.tell(("seq", "main", n))
    ActorRef("not-an-actor-address").tell("nobody")
    for n in range(20, 40):
        napper.tell(("seq", "main", n))
    _check_per_sender_order(napper.ask("log", timeout=60), ["main"], 40)


# -- the driver's linger (a fake thespian, so which messages share a pass is visible) -----------
# The driver delivers only to thespian addresses (it drops anything else with a warning).
_ACTOR = ActorAddress("fake-actor")


class _FakeSystem:
    """Records each pass the driver delivers (one `IngressBatch`) and answers every message.

    `hold` blocks the next delivery until `release` (so sends can queue while a pass runs).
    """

    def __init__(self) -> None:
        self.passes: list[list[Any]] = []
        self.replies: list[Any] = []
        self.delivering = threading.Event()
        self._gate = threading.Event()
        self._gate.set()

    def hold(self) -> None:
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def tell(self, address: Any, batch: Any) -> None:
        self.delivering.set()
        assert self._gate.wait(30)
        messages = [message for _, message in batch.sends]
        self.passes.append(messages)
        self.replies.extend(messages)

    def listen(self, timeout: float) -> Any:
        return self.replies.pop(0) if self.replies else None


class _Answers:
    """The driver's route: remembers each reply and wakes whoever waits for it."""

    def __init__(self) -> None:
        self._events: dict[Any, threading.Event] = {}
        self._lock = threading.Lock()

    def _event(self, message: Any) -> threading.Event:
        with self._lock:
            return self._events.setdefault(message, threading.Event())

    def route(self, messages: list[Any]) -> None:
        for message in messages:
            self._event(message).set()

    def wait(self, message: Any) -> bool:
        return self._event(message).wait(30)


@pytest.fixture
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, _FakeSystem, _Answers]]:
    """A driver on a fake simple base whose linger would last a minute (longer than any wait
    here): a test that passes did not wait for the linger to run out."""
    from persistent_actors import _driver  # noqa: PLC0415 - internal, only these tests use it

    monkeypatch.setattr(_driver, "_LINGER", 60.0)
    fake, answers = _FakeSystem(), _Answers()
    driver = _driver.Driver("fake", fake, simple=True, ingress="ingress",
                            route=answers.route, awaiting=lambda: False)
    try:
        yield driver, fake, answers
    finally:
        driver.stop()


def test_a_lone_caller_never_lingers(fake_driver: tuple[Any, _FakeSystem, _Answers]) -> None:
    driver, fake, answers = fake_driver
    for n in range(5):
        driver.submit(_ACTOR, n)
        assert answers.wait(n), f"request {n} waited for a linger"
    assert fake.passes == [[n] for n in range(5)]


def test_a_pass_gathers_the_callers_answered_and_those_queued_during_the_last_one(
        fake_driver: tuple[Any, _FakeSystem, _Answers]) -> None:
    """Caller b sent while a's pass ran; the next pass waits for a to send again, so both go
    together (counting only the replies, b alone already made up the one expected)."""
    driver, fake, answers = fake_driver
    fake.hold()
    driver.submit(_ACTOR, "a1")
    assert fake.delivering.wait(30)
    driver.submit(_ACTOR, "b1")
    fake.release()
    assert answers.wait("a1")
    driver.submit(_ACTOR, "a2")
    assert answers.wait("b1")
    assert answers.wait("a2")
    assert fake.passes == [["a1"], ["b1", "a2"]]


def test_a_lingering_pass_sends_what_it_has_when_the_driver_stops(
        fake_driver: tuple[Any, _FakeSystem, _Answers]) -> None:
    driver, fake, answers = fake_driver
    fake.hold()
    driver.submit(_ACTOR, "a1")
    assert fake.delivering.wait(30)
    driver.submit(_ACTOR, "b1")  # the next pass will wait for a's next send, which never comes
    fake.release()
    assert answers.wait("a1")
    driver.stop()
    assert not driver._thread.is_alive()  # it ended, not at the join's timeout
    assert answers.wait("b1")
    assert fake.passes == [["a1"], ["b1"]]


# -- the chained wake-up of blocking askers answered in one pass (`_endpoint._Waiter`) ---------
def _chain(count: int) -> list[Any]:
    from persistent_actors._endpoint import _Waiter  # noqa: PLC0415 - internal, tested here

    waiters = [_Waiter() for _ in range(count)]
    for n, waiter in enumerate(waiters):
        assert waiter.answer(n)
    for waiter, following in itertools.pairwise(waiters):
        waiter.next = following
    return waiters


def test_each_woken_asker_wakes_the_next_one_answered_in_its_pass() -> None:
    first, second, third = _chain(3)
    first.hand_over()
    assert not second.wait(0)  # not woken by the driver: by the first asker's thread
    assert first.wait(0)
    assert not third.wait(0)
    assert second.wait(0)
    assert third.wait(0)
    assert [w.outcome() for w in (first, second, third)] == [0, 1, 2]


def test_an_asker_that_left_before_its_wake_up_does_not_stall_the_chain() -> None:
    first, gone, third = _chain(3)
    gone.leave()  # timed out before its reply was routed
    first.hand_over()
    assert first.wait(0)
    assert third.wait(0)


def test_an_asker_that_leaves_after_its_wake_up_came_passes_it_on() -> None:
    first, gone, third = _chain(3)
    first.hand_over()
    assert first.wait(0)  # releases `gone`, whose thread is about to give up
    gone.leave()
    assert third.wait(0)


def test_an_asker_interrupted_right_after_its_wake_up_passes_it_on() -> None:
    """An exception between the wake-up and passing it on (a signal's, say) stalls no one."""
    first, interrupted, third = _chain(3)
    first.hand_over()
    assert first.wait(0)
    assert interrupted._done.acquire(blocking=False)  # woken, then raised before passing on
    interrupted.leave()  # what `request` does on its way out
    assert third.wait(0)


def test_an_ask_whose_reply_came_before_its_deadline_returns_it(
        system: ActorSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answered, but the wake-up is still on its way down the chain when the timeout runs out
    (here it never comes: the asker before it never wakes): the reply, not a timeout."""
    from persistent_actors import _protocol as p  # noqa: PLC0415 - internal, tested here
    from persistent_actors._endpoint import _Waiter  # noqa: PLC0415

    endpoint = system._endpoint
    ahead = _Waiter()  # an asker whose thread is slow to wake
    endpoint.add_sink("ahead", ahead)
    driver = endpoint._driver
    assert driver is not None

    def answer_at_once(address: Any, message: Any) -> None:
        endpoint.route_all([p.Reply("ahead", "first"), p.Reply(message, "mine")])

    monkeypatch.setattr(driver, "submit", answer_at_once)
    assert endpoint.request(_ACTOR, lambda corr: corr, 0.2, "asking") == "mine"
    endpoint.drop_sink("ahead")


def test_replies_routed_to_many_blocking_askers_wake_each_once(system: ActorSystem) -> None:
    """The driver chains the askers answered together; one that left is passed over."""
    from persistent_actors import _protocol as p  # noqa: PLC0415 - internal, tested here
    from persistent_actors._endpoint import _Waiter  # noqa: PLC0415

    endpoint = system._endpoint
    waiters = [_Waiter() for _ in range(4)]
    for n, waiter in enumerate(waiters):
        endpoint.add_sink(f"chain-{n}", waiter)
    waiters[2].leave()
    endpoint.route_all([p.Reply(f"chain-{n}", n) for n in range(4)])
    for n in (0, 1, 3):
        assert waiters[n].wait(5)
        assert waiters[n].outcome() == n
        assert not waiters[n].wait(0)  # woken once
    for n in range(4):
        endpoint.drop_sink(f"chain-{n}")


@pytest.mark.multiproc
def test_an_idle_multiproc_driver_listens_only_while_a_reply_is_awaited() -> None:
    # The facade's standing sink (moves of the runtime's processes: `PluginMoved`) counted as
    # a caller awaiting a reply: the driver listened in 2 ms slices for ever, and never
    # lingered for its callers' next sends (the batching of service traffic).
    with ActorSystem("idle", config={"actor_system": {"base": "multiproc-tcp"}}) as system:
        assert system.actor_of(Echo).ask("hi", timeout=10) == "hi"
        driver = system._endpoint._driver
        assert driver is not None
        deadline = time.monotonic() + 10  # once the ask's frame is acknowledged too
        while driver._listening() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not driver._listening()
