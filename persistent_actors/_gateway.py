"""The gateway thread: how asyncio code talks to an actor system without blocking its loop.

Started by the first ``ask_async``. From then on it performs the `Endpoint` operations of
event-loop threads:

* an event loop only puts operations on a queue (`tell`, `ask`, `forget`) and awaits a
  future; it never calls thespian and never takes the endpoint's lock;
* the gateway thread sends them in order, then receives: every reply carries its ask's
  correlation id and is routed to the waiting future with ``call_soon_threadsafe``;
* on the simple base, thespian runs actors inside the calls made to it, so they now run on the
  gateway thread: the actor system runs on a thread of its own. Between operations the gateway
  keeps calling in every `_IDLE_TICK` seconds, so scheduled wakeups (timeouts, back-off
  restarts) still fire while the application is idle;
* on multiproc-tcp, replies arrive on the endpoint; the gateway listens in short slices while
  asks are outstanding, because an operation queued meanwhile cannot interrupt a listen.

Threads that run no event loop keep using the synchronous API directly (serialised by the
endpoint's lock); replies are routed by correlation id whichever thread receives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from persistent_actors.errors import PersistentActorsError

if TYPE_CHECKING:
    from persistent_actors._endpoint import Endpoint

log = logging.getLogger("persistent_actors")

# Seconds the gateway waits for new operations while nothing is outstanding.
_IDLE_TICK = 0.05
# Seconds of one listen while asks wait for replies on multiproc-tcp: the latency an operation
# queued during a listen may suffer.
_ASK_LISTEN = 0.002

Operation = Callable[[], None]
_NOTHING: Any = object()  # "no operation": the queue was empty


def in_event_loop() -> bool:
    """True if the calling thread is running an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Complete `future` unless it is done already (timed out or cancelled); on its loop."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def resolver(future: asyncio.Future[Any]) -> tuple[Callable[[Any], None],
                                                   Callable[[BaseException], None]]:
    """Callbacks, safe on any thread, that complete `future` with a reply or an error."""
    loop = future.get_loop()

    def reply(message: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(settle, future, message, None)

    def fail(error: BaseException) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, future, None, error)

    return reply, fail


class Gateway:
    """The thread that performs external operations queued by event-loop threads."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._ops: queue.SimpleQueue[Operation | None] = queue.SimpleQueue()
        # Asks awaiting a reply, by correlation id: how to fail them. Gateway thread only.
        self._waiting: dict[str, Callable[[BaseException], None]] = {}
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"persistent_actors-gateway-{endpoint.name}")
        self._thread.start()

    # -- called from any thread ---------------------------------------------------------------
    def tell(self, address: Any, message: Any) -> None:
        """Queue a send; errors (the system shut down meanwhile) are logged."""
        self._ops.put(lambda: self._endpoint.send_direct(address, message))

    def ask(self, correlation_id: str, address: Any, message: Any,
            on_reply: Callable[[Any], None], on_error: Callable[[BaseException], None]) -> None:
        """Queue an ask: `on_reply` gets the reply routed by `correlation_id`."""

        def op() -> None:
            endpoint = self._endpoint
            endpoint.add_sink(correlation_id, on_reply)
            self._waiting[correlation_id] = on_error
            try:
                endpoint.send_direct(address, message)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                self._forget(correlation_id)
                on_error(e)

        self._ops.put(op)

    def forget(self, correlation_id: str) -> None:
        """Queue the removal of an ask's routing (answered, timed out or cancelled)."""
        self._ops.put(lambda: self._forget(correlation_id))

    def stop(self) -> None:
        """Run what is queued, fail the asks still waiting, end the thread; idempotent."""
        if self._thread.is_alive():
            self._ops.put(None)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=30)

    # -- the gateway thread --------------------------------------------------------------------
    def _forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)
        self._endpoint.drop_sink(correlation_id)

    def _serve(self) -> None:
        while True:
            try:
                op = self._ops.get(timeout=_ASK_LISTEN if self._waiting else _IDLE_TICK)
            except queue.Empty:
                op = _NOTHING
            while op is not _NOTHING:
                if op is None:
                    self._shut()
                    return
                try:
                    op()
                except Exception:  # one failed tell must not end the gateway
                    log.warning("gateway: an external send failed", exc_info=True)
                try:
                    op = self._ops.get_nowait()
                except queue.Empty:
                    op = _NOTHING
            try:
                self._receive()
            except PersistentActorsError:
                pass  # shut down by another thread; the stop operation follows
            except Exception:  # keep serving; the asks time out
                log.warning("gateway: receiving failed", exc_info=True)

    def _receive(self) -> None:
        """Route every reply that is ready (and, on the simple base, run due wakeups)."""
        endpoint = self._endpoint
        if endpoint.simple:
            # Actors ran inside the sends; listen() collects their replies one at a time.
            while endpoint.listen_and_route(0.001):
                pass
            return
        if self._waiting:
            endpoint.listen_and_route(_ASK_LISTEN)
        while endpoint.listen_and_route(0):
            pass

    def _shut(self) -> None:
        error = PersistentActorsError(f"actor system {self._endpoint.name!r} has been shut down")
        for correlation_id, fail in list(self._waiting.items()):
            self._forget(correlation_id)
            fail(error)
