"""Actors for the `pipe_to` and background-thread tests (importable: multiproc-tcp needs it)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import threading
import time
from typing import Any

from persistent_actors import (
    Actor,
    ActorRef,
    PersistentActor,
    RecoveryCompleted,
    Status,
    pipe_to,
    register,
)


@dataclasses.dataclass(frozen=True)
class Price:
    """What `fetch_price` answers."""

    item: str
    cents: int


class OutOfStockError(Exception):
    """Raised by `fetch_price` for an item whose name starts with "none"."""


async def fetch_price(item: str) -> Price:
    """An awaiting call, as an HTTP client's would be."""
    await asyncio.sleep(0.01)
    if item.startswith("none"):
        raise OutOfStockError(f"no {item} in stock")
    return Price(item, 100 * len(item))


def blocking_price(item: str) -> Price:
    """A blocking call, for an executor."""
    time.sleep(0.01)
    return Price(item, 7)


_executors: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """One executor per process: an executor copied by a fork has no threads (multiproc-tcp)."""
    pid = os.getpid()
    if pid not in _executors:
        _executors[pid] = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    return _executors[pid]


class Quoter(Actor):
    """Pipes prices to itself and reports each outcome, with its sender's name, to `probe`."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case ("quote", str(item)):
                pipe_to(fetch_price(item), self.self_ref)
            case ("quote-blocking", str(item)):
                pipe_to(_executor().submit(blocking_price, item), self.self_ref)
            case ("quote-for", str(item)):  # straight to the asker, as the sender of the pipe
                pipe_to(fetch_price(item), self.sender)
            case Price() as price:
                self.probe.tell(("price", price, self.sender.name))
            case Status.Failure(cause):
                self.probe.tell(("failed", type(cause).__name__, str(cause), self.sender.name))
            case _:
                self.unhandled(message)


class QuoterEntity(Quoter):
    """The same as an entity: ``QuoterEntity(entity_id, probe)``."""

    def __init__(self, entity_id: str, probe: ActorRef) -> None:
        super().__init__(probe)


class Threaded(Actor):
    """Does work on threads of its own, which tell the results back (or reply to the asker)."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case ("double", int(n)):
                me = self.self_ref
                threading.Thread(target=lambda: me.tell(("doubled", 2 * n))).start()
            case ("reply-later", int(n)):
                asker = self.sender  # the thread replies to the ask itself
                threading.Thread(target=lambda: asker.tell(n + 1)).start()
            case ("ask-from-thread", ActorRef() as other):
                me = self.self_ref

                def ask() -> None:
                    try:
                        me.tell(("asked", other.ask("ping", timeout=5)))
                    except Exception as e:  # reported to the test
                        me.tell(("asked", f"{type(e).__name__}: {e}"))

                threading.Thread(target=ask).start()
            case ("doubled" | "asked", _):
                self.probe.tell(message)
            case _:
                self.unhandled(message)


class Pong(Actor):
    """Answers "ping" with "pong"."""

    def on_receive(self, message: Any) -> None:
        if message == "ping":
            self.sender.tell("pong")


@register(manifest="tests.pipe.Reserved")
@dataclasses.dataclass(frozen=True)
class Reserved:
    """Event: `item` was reserved at `cents`."""

    item: str
    cents: int


class Reservations(PersistentActor):
    """Checks a price with `pipe_to`, then persists the reservation and answers its asker."""

    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.reserved: list[tuple[str, int]] = []
        self.waiting: dict[str, ActorRef] = {}

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        if isinstance(message, Reserved):
            self.reserved.append((message.item, message.cents))
        elif not isinstance(message, RecoveryCompleted):
            self.unhandled(message)

    def on_command(self, message: Any) -> None:
        match message:
            case ("reserve", str(item)):
                self.waiting[item] = self.sender
                pipe_to(fetch_price(item), self.self_ref)
            case Price(item, cents):
                asker = self.waiting.pop(item)

                def stored(event: Reserved) -> None:
                    self.reserved.append((event.item, event.cents))
                    asker.tell(len(self.reserved))

                self.persist(Reserved(item, cents), stored)
            case Status.Failure(cause):
                for asker in self.waiting.values():
                    asker.tell(Status.Failure(cause))  # the ask raises it
                self.waiting.clear()
            case "reserved":
                self.sender.tell(list(self.reserved))
            case _:
                self.unhandled(message)


class AsyncReceive(Actor):
    """A first draft: ``async def on_receive`` (refused by actor_of)."""

    async def on_receive(self, message: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)


class AsyncCommand(PersistentActor):
    """A first draft: ``async def on_command`` (refused by actor_of and entities)."""

    persistence_id = "async-command"

    async def on_command(self, message: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)

    def on_recover(self, message: Any) -> None:
        pass


class BecomesAsync(Actor):
    """Tries ``become`` with an async def handler; reports the error."""

    def on_receive(self, message: Any) -> None:
        async def later(message: Any) -> None:
            await asyncio.sleep(0)

        try:
            self.become(later)  # type: ignore[arg-type]
        except TypeError as e:
            self.sender.tell(str(e))


async def interrupted() -> None:
    """Work that raises KeyboardInterrupt (asyncio lets it escape its loop)."""
    await asyncio.sleep(0)
    raise KeyboardInterrupt("stop the work")


def _passes_through(handler: Any) -> Any:
    """A decorator that hides ``async def`` from inspect (as a plain functools.wraps would)."""

    def wrapper(*args: Any) -> Any:
        return handler(*args)

    return wrapper


class DecoratedAsync(Actor):
    """``async def on_receive`` behind a decorator; reports its restarts' reasons to `probe`."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    @_passes_through
    async def on_receive(self, message: Any) -> None:
        await asyncio.sleep(0)

    def pre_restart(self, reason: BaseException, message: Any) -> None:
        self.probe.tell(("restarted", type(reason).__name__, str(reason)))


class AsyncPersistHandler(PersistentActor):
    """Persists with an ``async def`` handler; reports its restarts' reasons to `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        pass

    def on_command(self, message: Any) -> None:
        async def stored(event: Any) -> None:
            await asyncio.sleep(0)

        self.persist(message, stored)  # type: ignore[arg-type]

    def pre_restart(self, reason: BaseException, message: Any) -> None:
        self.probe.tell(("restarted", type(reason).__name__, str(reason)))
