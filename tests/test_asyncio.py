"""Asyncio callers: ``ask_async`` never blocks the event loop, ``tell`` works from any thread.

Behaviour tests on both bases. The heartbeat assertions are deliberately loose: they show the
loop kept running during a burst of asks, they do not time anything.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from persistent_actors import (
    ActorSystem,
    AskTimeoutError,
    MessageNotSerializableError,
    PersistentActorsError,
)
from tests.async_actors import Counter

CONCURRENT_ASKS = 1_000


@asynccontextmanager
async def heartbeat(period: float = 0.005) -> AsyncIterator[list[float]]:
    """Tick every `period` seconds; yields the list of gaps between ticks."""
    gaps: list[float] = []

    async def beat() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(beat())
    try:
        yield gaps
    finally:
        task.cancel()


async def test_a_thousand_concurrent_asks_leave_the_loop_responsive(
        system: ActorSystem) -> None:
    counter = system.actor_of(Counter, "async-1", name="counter")
    assert await counter.ask_async("total", timeout=30) == 0
    async with heartbeat() as gaps:
        started = time.monotonic()
        replies = await asyncio.gather(*(counter.ask_async(("echo", i), timeout=60)
                                         for i in range(CONCURRENT_ASKS)))
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.02)  # one more tick after the burst
    assert replies == list(range(CONCURRENT_ASKS))  # each reply reached its own asker
    # A loop blocked for the burst would show one gap as long as the burst and no ticks.
    assert len(gaps) >= 3
    assert max(gaps) < max(1.0, elapsed / 2), (max(gaps), elapsed)


async def test_concurrent_asks_that_persist_get_their_own_totals(system: ActorSystem) -> None:
    counter = system.actor_of(Counter, "async-2", name="counter")
    totals = await asyncio.gather(*(counter.ask_async(("add", 1), timeout=60)
                                    for _ in range(200)))
    assert sorted(totals) == list(range(1, 201))
    assert await counter.ask_async("total", timeout=30) == 200


async def test_an_unanswered_ask_async_times_out_while_the_loop_runs(
        system: ActorSystem) -> None:
    counter = system.actor_of(Counter, "async-3", name="counter")
    async with heartbeat() as gaps:
        with pytest.raises(AskTimeoutError, match="counter"):
            await counter.ask_async("silent", timeout=0.3)
    assert len(gaps) >= 3
    # A late reply to a timed-out ask is dropped; the next ask gets its own answer.
    assert await counter.ask_async(("echo", "next"), timeout=30) == "next"


async def test_asks_of_one_loop_time_out_each_at_its_own_timeout(system: ActorSystem) -> None:
    # One loop timer serves all the loop's asks: a shorter timeout added after a longer one
    # fires first, answered asks never time out, and a cancelled ask leaves nothing behind.
    counter = system.actor_of(Counter, "async-3b", name="counter")
    failed: list[str] = []

    async def silent(label: str, timeout: float) -> None:
        started = time.monotonic()
        with pytest.raises(AskTimeoutError, match="counter"):
            await counter.ask_async("silent", timeout=timeout)
        assert time.monotonic() - started >= timeout * 0.9
        failed.append(label)

    long = asyncio.create_task(silent("long", 0.6))
    await asyncio.sleep(0.05)
    short = asyncio.create_task(silent("short", 0.2))
    cancelled = asyncio.create_task(counter.ask_async("silent", timeout=0.1))
    answers = await asyncio.gather(*(counter.ask_async(("echo", n), timeout=30)
                                     for n in range(50)))
    assert answers == list(range(50))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(long, short)
    assert failed == ["short", "long"]
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    # An answered ask's deadline passing later finds nothing to expire.
    assert await counter.ask_async(("echo", "quick"), timeout=1.0) == "quick"
    await asyncio.sleep(1.1)
    assert await counter.ask_async(("echo", "after"), timeout=30) == "after"


async def test_tell_from_the_loop_and_from_threads_all_arrive(system: ActorSystem) -> None:
    counter = system.actor_of(Counter, "async-4", name="counter")
    assert await counter.ask_async("total", timeout=30) == 0  # the gateway runs from here on

    def tell_from_thread() -> None:
        for _ in range(25):
            counter.tell(("add", 1))

    threads = [threading.Thread(target=tell_from_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(25):
        counter.tell(("add", 1))  # from the loop: queued on the gateway, never blocking
    for thread in threads:
        await asyncio.to_thread(thread.join)
    deadline = time.monotonic() + 30
    while await counter.ask_async("total", timeout=30) != 125:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_the_synchronous_api_keeps_working_beside_the_gateway(
        system: ActorSystem) -> None:
    counter = system.actor_of(Counter, "async-5", name="counter")
    assert await counter.ask_async(("add", 2), timeout=30) == 2
    # From a worker thread (no event loop there): the plain blocking ask.
    assert await asyncio.to_thread(counter.ask, ("add", 3), 30) == 5
    assert await counter.ask_async("total", timeout=30) == 5


async def test_ask_async_outside_a_running_system_fails_clearly(base: str) -> None:
    from tests.conftest import system_config  # noqa: PLC0415 - the shared config helper

    system = ActorSystem("async-closed", config=system_config(base))
    counter = system.actor_of(Counter, "async-6", name="counter")
    assert await counter.ask_async("total", timeout=30) == 0
    system.shutdown()
    with pytest.raises(PersistentActorsError, match="shut down"):
        await counter.ask_async("total", timeout=5)


@pytest.mark.multiproc
async def test_ask_async_rejects_an_unpicklable_message_on_multiproc() -> None:
    from tests.conftest import system_config  # noqa: PLC0415

    with ActorSystem("async-pickle", config=system_config("multiproc-tcp")) as system:
        counter = system.actor_of(Counter, "async-7", name="counter")
        with pytest.raises(MessageNotSerializableError):
            await counter.ask_async(("echo", lambda: None), timeout=5)


def test_event_loops_that_asked_are_not_kept_alive(system: ActorSystem) -> None:
    # A service that runs a loop per request (asyncio.run, asgiref's async_to_sync) must not
    # leak one loop per request through the ask timeouts kept per loop.
    counter = system.actor_of(Counter, "async-loops", name="counter")
    loops: list[weakref.ReferenceType[asyncio.AbstractEventLoop]] = []

    async def one_ask(n: int) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        assert await counter.ask_async(("echo", n), timeout=30) == n

    for n in range(20):
        asyncio.run(one_ask(n))
    gc.collect()
    assert [ref for ref in loops if ref() is not None] == []
    asyncio.run(one_ask(99))  # a new loop after the others were collected still works
