"""`pipe_to` (Akka's PipeTo) and tells from an actor's own threads, on every base.

On multiproc-tcp the work runs in the actor's process, whose thespian loop only its own thread
may call: the results travel through the process's thread inbox (`_thespian/thread_inbox.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from persistent_actors import ActorRef, ActorSystem, Status, pipe_to
from persistent_actors.testing import TestProbe
from tests.pipe_actors import (
    AsyncCommand,
    AsyncPersistHandler,
    AsyncReceive,
    BecomesAsync,
    DecoratedAsync,
    OutOfStockError,
    Pong,
    Price,
    Quoter,
    QuoterEntity,
    Reservations,
    Threaded,
    fetch_price,
    interrupted,
)


def _outcomes(probe: TestProbe, count: int) -> set[Any]:
    return {probe.receive_one(timeout=10) for _ in range(count)}


def test_a_piped_coroutine_tells_its_result_or_its_failure(system: ActorSystem) -> None:
    probe = TestProbe(system)
    quoter = system.actor_of(Quoter, probe.ref, name="quoter")
    quoter.tell(("quote", "apple"))
    quoter.tell(("quote", "none-left"))
    quoter.tell(("quote-blocking", "pear"))  # an executor's future
    # Each outcome comes from the actor that piped it (Akka's PipeTo sender: self here).
    assert _outcomes(probe, 3) == {
        ("price", Price("apple", 500), "quoter"),
        ("failed", "OutOfStockError", "no none-left in stock", "quoter"),
        ("price", Price("pear", 7), "quoter"),
    }
    probe.expect_no_msg()


def test_a_result_piped_to_an_asker_answers_the_ask(system: ActorSystem) -> None:
    quoter = system.actor_of(Quoter, TestProbe(system).ref)
    assert quoter.ask(("quote-for", "kiwi"), timeout=10) == Price("kiwi", 400)
    with pytest.raises(OutOfStockError, match="no none-kiwi in stock"):  # a Status.Failure
        quoter.ask(("quote-for", "none-kiwi"), timeout=10)


def test_an_entity_pipes_to_itself(system: ActorSystem) -> None:
    probe = TestProbe(system)
    quoters = system.entities("quoter", QuoterEntity, probe.ref)
    quoters.tell("a", ("quote", "fig"))
    quoters.tell("b", ("quote", "none-fig"))
    assert _outcomes(probe, 2) == {
        ("price", Price("fig", 300), "quoter/a"),
        ("failed", "OutOfStockError", "no none-fig in stock", "quoter/b"),
    }


def test_a_persistent_actor_persists_what_a_piped_call_returned(system: ActorSystem) -> None:
    reservations = system.actor_of(Reservations, "reservations-1", name="reservations")
    assert reservations.ask(("reserve", "plum"), timeout=10) == 1
    assert reservations.ask(("reserve", "melon"), timeout=10) == 2
    with pytest.raises(OutOfStockError):
        reservations.ask(("reserve", "none-lime"), timeout=10)
    system.stop(reservations)
    reservations = system.actor_of(Reservations, "reservations-1", name="reservations")
    assert reservations.ask("reserved", timeout=10) == [("plum", 400), ("melon", 500)]


def test_threads_of_an_actor_tell_it_and_reply_to_its_askers(system: ActorSystem) -> None:
    probe = TestProbe(system)
    worker = system.actor_of(Threaded, probe.ref)
    for n in range(5):
        worker.tell(("double", n))
    assert _outcomes(probe, 5) == {("doubled", 2 * n) for n in range(5)}
    assert worker.ask(("reply-later", 41), timeout=10) == 42


def test_ask_from_an_actors_thread_works_only_where_the_endpoint_serves_it(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    worker = system.actor_of(Threaded, probe.ref)
    worker.tell(("ask-from-thread", system.actor_of(Pong)))
    _, outcome = probe.expect_msg_type(tuple, timeout=10)
    if system.settings.base == "simple":  # the thread is just another thread of the process
        assert outcome == "pong"
    else:  # an actor process: a clear refusal, not a hang
        assert outcome.startswith("PersistentActorsError: ask from a thread of an actor process")


def test_pipe_to_from_outside_actors_tells_without_a_sender(system: ActorSystem) -> None:
    probe = TestProbe(system)
    done = pipe_to(fetch_price("lemon"), probe.ref)
    assert probe.expect_msg(timeout=10) == Price("lemon", 500)
    assert probe.last_sender is not None
    assert probe.last_sender.address is None  # no sender: dead letters
    assert done.result(timeout=5) == Price("lemon", 500)

    async def on_a_loop() -> None:  # an asyncio task of the caller's own loop
        task = asyncio.ensure_future(fetch_price("none-at-all"))
        pipe_to(task, probe.ref)
        await asyncio.sleep(0.2)

    asyncio.run(on_a_loop())
    failure = probe.expect_msg(timeout=10)
    assert isinstance(failure.cause, OutOfStockError)


def test_pipe_to_refuses_what_it_cannot_run_or_address() -> None:
    nobody = ActorRef(None, "nobody")
    with pytest.raises(TypeError, match="needs a coroutine, an awaitable or a concurrent"):
        pipe_to(42, nobody)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an ActorRef recipient, got 'me'"):
        pipe_to(fetch_price("x"), "me")  # type: ignore[arg-type]


def test_async_def_handlers_are_refused_with_the_way_to_await(system: ActorSystem) -> None:
    # They would return a coroutine nobody awaits: the message silently unhandled.
    with pytest.raises(TypeError, match=r"AsyncReceive.on_receive is async def.*pipe_to"):
        system.actor_of(AsyncReceive)
    with pytest.raises(TypeError, match=r"AsyncCommand\.on_command is async def"):
        system.actor_of(AsyncCommand)
    with pytest.raises(TypeError, match=r"AsyncCommand\.on_command is async def"):
        system.entities("async", AsyncCommand)
    reply = system.actor_of(BecomesAsync).ask("go", timeout=10)
    assert reply.startswith("become() needs a plain function, got the async def")


def test_async_handlers_the_class_check_cannot_see_fail_loudly(system: ActorSystem) -> None:
    # Behind a decorator, or given to persist: the coroutine they return is refused at once
    # (the actor restarts, naming it) instead of the message silently never being handled.
    probe = TestProbe(system)
    system.actor_of(DecoratedAsync, probe.ref).tell("hello")
    _, kind, reason = probe.expect_msg_type(tuple, timeout=10)
    assert kind == "TypeError"
    assert reason.startswith("on_receive returned coroutine (an async def?)")
    system.actor_of(AsyncPersistHandler, "async-persist", probe.ref).tell("event")
    _, kind, reason = probe.expect_msg_type(tuple, timeout=10)
    assert (kind, reason.split(" (")[0]) == ("TypeError", "a persist handler returned coroutine")


def test_work_that_raises_keyboard_interrupt_is_told_and_pipe_to_goes_on(
        system: ActorSystem) -> None:
    # asyncio lets KeyboardInterrupt and SystemExit out of its loop: the loop's thread ended,
    # the outcome was never told, and every later pipe_to of the process hung.
    probe = TestProbe(system)
    pipe_to(interrupted(), probe.ref)
    failure = probe.expect_msg_type(Status.Failure, timeout=10)
    assert isinstance(failure.cause, KeyboardInterrupt)
    pipe_to(fetch_price("apple"), probe.ref)
    assert probe.expect_msg(timeout=10) == Price("apple", 500)


def test_a_sender_that_is_not_a_ref_is_refused_at_the_call(system: ActorSystem) -> None:
    ref = system.actor_of(Pong)
    with pytest.raises(TypeError, match=r"tell\(sender=\.\.\.\) needs an ActorRef or None"):
        ref.tell("ping", sender="me")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs an ActorRef or None as sender, got 'me'"):
        pipe_to(fetch_price("x"), ref, sender="me")  # type: ignore[arg-type]


def test_an_asyncio_future_of_a_loop_that_is_not_running(system: ActorSystem) -> None:
    # Done already: its outcome is told at once. Pending on a stopped loop: it would never
    # complete (it was silently never told, with a "never awaited" warning).
    probe = TestProbe(system)
    loop = asyncio.new_event_loop()
    try:
        done = loop.create_future()
        done.set_result("ready")
        pipe_to(done, probe.ref)
        assert probe.expect_msg(timeout=10) == "ready"
        with pytest.raises(TypeError, match="an event loop that is not running"):
            pipe_to(loop.create_future(), probe.ref)
    finally:
        loop.close()
