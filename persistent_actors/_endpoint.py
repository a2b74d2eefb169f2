"""`Endpoint`: the external side of one actor system, for code that runs outside every actor.

It is the only user of thespian's external API (``tell``, ``listen``) once the system runs:

* `send` checks that a message pickles (multiproc-tcp), then hands it to thespian, or to the
  gateway thread when the caller runs an event loop (see `_gateway.py`);
* replies come back as `Reply(correlation_id, message)`; `listen_and_route` and `pump` receive
  them one at a time, under the endpoint's lock, and hand each to the sink registered for its
  correlation id, whichever thread is waiting for it;
* `request` (send, then pump until the reply) and `ask` are built on those two.

`ActorSystem` creates the endpoint and drives its lifecycle; `ActorRef` sends through it from
outside actors; the gateway, `TestProbe` and the hosted event log use it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from thespian.actors import ActorExitRequest

from persistent_actors import _protocol as p
from persistent_actors._actor import ActorRef, normalize_message, reply_form, use_as_default
from persistent_actors._gateway import Gateway, in_event_loop, resolver
from persistent_actors._thespian.common import check_picklable
from persistent_actors.errors import (
    AskTimeoutError,
    MessageNotSerializableError,
    PersistentActorsError,
)
from persistent_actors.messages import Kill, PoisonPill

__all__ = ["Endpoint"]

log = logging.getLogger("persistent_actors")

# Seconds one blocking listen() lasts at most before the waiter re-checks its deadline.
_PUMP_SLICE = 0.05


class Endpoint:
    """Send, receive and route for one thespian actor system; safe to use from any thread.

    Args:
        name: the actor system's name (for messages).
        asys: the thespian actor system.
        simple: True on thespian's simple base (actors run inside our calls to it).

    """

    def __init__(self, name: str, asys: Any, *, simple: bool) -> None:
        self.name = name
        self.simple = simple
        self.guardian: Any = None  # the guardian's address, once it exists
        self._asys = asys
        self._lock = threading.RLock()
        self._sinks: dict[str, Callable[[Any], None]] = {}
        self._gateway: Gateway | None = None  # started by the first ask_async
        self._stopping = False
        self._closed = False
        use_as_default(self)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once `shutdown` has run."""
        return self._closed

    def ensure_running(self) -> None:
        """Raise if the system was shut down.

        Raises:
            PersistentActorsError: the actor system has been shut down.

        """
        if self._closed:
            raise PersistentActorsError(f"actor system {self.name!r} has been shut down")

    def shutdown(self) -> bool:
        """Stop the gateway, the actor tree and thespian; False if that happened already."""
        with self._lock:
            if self._closed:
                return False
            self._stopping = True
            gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()  # sends what event loops queued, fails the asks still waiting
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            if self.simple and self.guardian is not None:
                # The simple base's shutdown() stops no actor: without this, every plugin
                # actor kept its event-loop thread and its database connections open.
                with contextlib.suppress(Exception):
                    self._asys.tell(self.guardian, ActorExitRequest())
            self._asys.shutdown()
        return True

    # -- sending -----------------------------------------------------------------------------
    def tell(self, ref: ActorRef, message: Any, sender: ActorRef | None) -> None:
        """Send from outside any actor (see `ActorRef.tell`)."""
        wrapped = reply_form(ref, message)
        if wrapped is message:
            wrapped = p.Envelope(message, sender)
        self.send(ref.address, wrapped)
        if isinstance(message, Kill | PoisonPill):
            self._stop_requested(ref)

    def stop(self, ref: ActorRef) -> None:
        """Stop the actor behind `ref` (see `ActorSystem.stop`)."""
        self.ensure_running()
        with self._lock:
            self._asys.tell(ref.address, ActorExitRequest())
        self._stop_requested(ref)

    def _stop_requested(self, ref: ActorRef) -> None:
        # See StopRequested: lets an actor_of under the same name, sent right after, wait for
        # the old actor to exit instead of failing with "not unique".
        if ref.address is not None:
            self.send(self.guardian, p.StopRequested(ref.address))

    def send(self, address: Any, message: Any) -> None:
        """Send `message` to `address` (through the gateway when called from an event loop).

        Raises:
            MessageNotSerializableError: on multiproc-tcp, `message` cannot be pickled.
            PersistentActorsError: the actor system has been shut down.

        """
        self.ensure_running()
        if not self.simple:
            check_picklable(message, address)
        gateway = self._gateway
        if gateway is not None and in_event_loop():
            # An event loop must not wait for thespian (or for our lock, held during listens):
            # the gateway sends for it, in the order this thread queued its operations.
            gateway.tell(address, message)
            return
        self.send_direct(address, message)

    def send_direct(self, address: Any, message: Any) -> None:
        """Send on the calling thread, whatever it runs (the gateway thread's own send)."""
        self.ensure_running()
        with self._lock:
            try:
                self._asys.tell(address, message)
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                raise MessageNotSerializableError(
                    f"message {message!r} cannot be sent: {e}") from e

    # -- receiving ---------------------------------------------------------------------------
    def add_sink(self, correlation_id: str, sink: Callable[[Any], None]) -> None:
        """Hand every reply carrying `correlation_id` to `sink` (on the receiving thread)."""
        with self._lock:
            self._sinks[correlation_id] = sink

    def drop_sink(self, correlation_id: str) -> None:
        """Forget the sink of `correlation_id`; later replies to it are dropped."""
        with self._lock:
            self._sinks.pop(correlation_id, None)

    def register_sink(self, correlation_id: str) -> deque[Any]:
        """A queue that collects the replies carrying `correlation_id`."""
        queue: deque[Any] = deque()
        self.add_sink(correlation_id, queue.append)
        return queue

    def listen_and_route(self, timeout: float) -> bool:
        """Receive at most one message for the outside and route it; True if one came."""
        with self._lock:
            self.ensure_running()
            incoming = self._asys.listen(timeout)
            if incoming is not None:
                self._route(incoming)
        return incoming is not None

    def pump(self, deadline: float, done: Callable[[], bool]) -> bool:
        """Receive and route replies until `done()` or the monotonic `deadline`; return done()."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._lock:
                self.ensure_running()
                # listen(0) first: the simple base's listen(t) sleeps until the next due wakeup
                # within t even when a reply is already waiting (it checks for replies only
                # between deliveries), which with many live timers cost most of a slice.
                incoming = self._asys.listen(0)
                if incoming is None:
                    incoming = self._asys.listen(min(remaining, _PUMP_SLICE))
                if incoming is not None:
                    self._route(incoming)
            if incoming is None and self.simple:
                # The simple base runs actors only inside our calls and listen() returns at
                # once when they are idle; yield so other threads (and time) move on.
                time.sleep(0.001)
        return True

    def _route(self, incoming: Any) -> None:
        if isinstance(incoming, p.Reply):
            sink = self._sinks.get(incoming.correlation_id)
            if sink is not None:
                sink(incoming.message)
                return
        log.debug("dropped unsolicited message to the outside: %r", incoming)

    # -- request / reply ---------------------------------------------------------------------
    def request(self, target: Any, build: Callable[[str], Any], timeout: float, what: str,
                cancel: threading.Event | None = None) -> Any:
        """Send ``build(correlation_id)`` to `target`, wait for the reply and return it.

        `what` describes the request in the timeout error. A set `cancel` ends the wait early
        and returns None (a read-side worker thread whose query was cancelled).

        Raises:
            AskTimeoutError: no reply within `timeout` seconds.

        """
        box: list[Any] = []
        corr = uuid.uuid4().hex
        self.add_sink(corr, box.append)
        try:
            self.send(target, build(corr))
            if not self.pump(time.monotonic() + timeout,
                             lambda: bool(box) or (cancel is not None and cancel.is_set())):
                raise AskTimeoutError(f"timed out after {timeout}s {what}")
        finally:
            self.drop_sink(corr)
        return box[0] if box else None

    def ask(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` and wait for the reply (see `ActorRef.ask`)."""
        _check_timeout(timeout)
        message = normalize_message(message)
        try:
            return self.request(ref.address, lambda corr: p.Envelope(message, None, corr),
                                timeout, f"asking {ref.name}")
        except AskTimeoutError:
            raise AskTimeoutError(_no_reply(ref, message, timeout)) from None

    async def ask_async(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` and await the reply without blocking the loop (see `ActorRef.ask_async`).

        The gateway thread sends it and routes the reply back by correlation id.
        """
        _check_timeout(timeout)
        self.ensure_running()
        corr = uuid.uuid4().hex
        message = normalize_message(message)
        envelope = p.Envelope(message, None, corr)
        if not self.simple:
            check_picklable(envelope, ref.address)  # raise here, in the caller
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        on_reply, on_error = resolver(future)
        gateway = self._ensure_gateway()
        gateway.ask(corr, ref.address, envelope, on_reply, on_error)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise AskTimeoutError(_no_reply(ref, message, timeout)) from None
        finally:
            gateway.forget(corr)

    def _ensure_gateway(self) -> Gateway:
        gateway = self._gateway
        if gateway is not None:
            return gateway  # without the lock: a listen or an actor run may hold it for long
        with self._lock:
            if self._stopping or self._closed:
                raise PersistentActorsError(f"actor system {self.name!r} has been shut down")
            if self._gateway is None:
                self._gateway = Gateway(self)
            return self._gateway


def _check_timeout(timeout: Any) -> None:
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"ask timeout must be a positive number of seconds, got {timeout!r}")


def _no_reply(ref: ActorRef, message: Any, timeout: float) -> str:
    return (f"no reply from {ref.name} to {type(message).__name__} within {timeout}s "
            "(the actor may be dead, busy, or not replying to self.sender)")
