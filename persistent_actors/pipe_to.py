"""`pipe_to`: the outcome of asynchronous work, told to an actor (Akka's ``PipeTo``).

An actor must not block, and its handlers are plain functions: it cannot ``await``. Work that
waits (an HTTP call with aiohttp, a query with asyncpg) runs elsewhere and its result comes
back as a message::

    async def fetch_price(item: str) -> Price: ...

    def on_receive(self, message):
        match message:
            case Quote(item):
                pipe_to(fetch_price(item), self.self_ref)   # a Price, or Status.Failure, later
            case Price() as price:
                ...

A coroutine (or any awaitable) runs on an asyncio event loop that this process keeps on a
thread of its own for it (started on first use); a `concurrent.futures.Future` (from an
executor) is simply waited for. When the work ends, its result is told to `recipient`; an
exception (a cancellation too) as ``Status.Failure(exception)``. The sender is the actor that
called `pipe_to` (no sender outside actors), or `sender`. The work runs while the actor goes
on with its next messages: state it reads when the result arrives may have changed since.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from persistent_actors._actor import ActorRef, current_context
from persistent_actors.errors import MessageNotSerializableError, PersistentActorsError
from persistent_actors.messages import Status

__all__ = ["pipe_to"]

log = logging.getLogger("persistent_actors")

T = TypeVar("T")

_SELF: Any = object()  # `sender` not given: the calling actor, if any

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None  # replaced if it ended (or in a forked child)


def pipe_to(work: Awaitable[T] | concurrent.futures.Future[T], recipient: ActorRef, *,
            sender: ActorRef | None = _SELF) -> concurrent.futures.Future[T]:
    """Run `work` and tell `recipient` its result, or ``Status.Failure(error)`` if it raised.

    `work`: a coroutine or other awaitable (run on this process's background event loop), or
    a `concurrent.futures.Future`. Returns a `concurrent.futures.Future` of the outcome (to
    cancel the work, say: the recipient then gets ``Status.Failure(CancelledError())``).

    Raises:
        TypeError: `work` is none of those, or `recipient` is not an ActorRef.

    """
    if not isinstance(recipient, ActorRef) or not (
            sender is _SELF or sender is None or isinstance(sender, ActorRef)):
        if inspect.iscoroutine(work):
            work.close()  # never awaited: no "coroutine was never awaited" warning as well
        if not isinstance(recipient, ActorRef):
            raise TypeError(f"pipe_to() needs an ActorRef recipient, got {recipient!r}")
        raise TypeError(f"pipe_to() needs an ActorRef or None as sender, got {sender!r}")
    if sender is _SELF:
        context = current_context()
        sender = context.self if context is not None else None
    future: concurrent.futures.Future[T]
    if isinstance(work, concurrent.futures.Future):
        future = work
    elif isinstance(work, asyncio.Future):  # a task or future of a running loop: awaited there
        if work.done():
            future = _settled(work)
        elif work.get_loop().is_running():
            future = asyncio.run_coroutine_threadsafe(_awaited(work), work.get_loop())
        else:
            raise TypeError("pipe_to() got an asyncio future of an event loop that is not "
                            "running: it would never complete; pass the coroutine instead")
    elif inspect.isawaitable(work):
        future = asyncio.run_coroutine_threadsafe(_awaited(work), _background_loop())
    else:
        raise TypeError(f"pipe_to() needs a coroutine, an awaitable or a "
                        f"concurrent.futures.Future, got {type(work).__name__}")
    future.add_done_callback(lambda done: _tell_outcome(done, recipient, sender))
    return future


def _settled(done: asyncio.Future[T]) -> concurrent.futures.Future[T]:
    """A concurrent future with the outcome of the finished asyncio future `done`."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())
    else:
        future.set_result(done.result())
    return future


async def _awaited(work: Awaitable[T]) -> T:
    try:
        return await work
    except (KeyboardInterrupt, SystemExit) as e:
        # asyncio re-raises these out of the loop, which would end its thread (and every
        # later pipe_to of the process) before the outcome is told: carried out instead.
        raise _Escaped(e) from e


class _Escaped(Exception):  # noqa: N818 - internal: unwrapped before anyone sees it
    """A KeyboardInterrupt or SystemExit of piped work, carried past the event loop."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def _background_loop() -> asyncio.AbstractEventLoop:
    """The event loop `pipe_to` runs work on, on a daemon thread (started once per process).

    Started again if its thread is gone: a process forked from this one has the loop object
    but not the thread (`is_alive` is false there).
    """
    global _loop, _loop_thread  # noqa: PLW0603 - one loop per process
    with _lock:
        if _loop is None or _loop_thread is None or not _loop_thread.is_alive():
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever,
                                            name="persistent_actors-pipe_to", daemon=True)
            _loop_thread.start()
        return _loop


def _tell_outcome(done: concurrent.futures.Future[Any], recipient: ActorRef,
                  sender: ActorRef | None) -> None:
    """Tell `recipient` how `done` ended (on whichever thread completed it)."""
    try:
        outcome: Any = done.result()
    except _Escaped as e:
        outcome = Status.Failure(e.error)
    except BaseException as e:  # noqa: BLE001 - every outcome is told, cancellation included
        outcome = Status.Failure(e)
    try:
        try:
            recipient.tell(outcome, sender)
        except MessageNotSerializableError as e:
            # The result cannot travel to the recipient's process: it learns why instead.
            log.error("pipe_to: the result for %s cannot be sent: %s",  # noqa: TRY400
                      recipient.name, e)  # its text says why; no traceback of ours helps
            recipient.tell(Status.Failure(e), sender)
    except PersistentActorsError as e:  # the system (or this actor process) stopped meanwhile
        log.debug("pipe_to: the result for %s is dropped: %s", recipient.name, e)
