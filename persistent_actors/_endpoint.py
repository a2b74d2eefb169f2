"""`Endpoint`: the external side of one actor system, for code that runs outside every actor.

Every message from outside goes through the system's driver thread (`_driver.py`), the only
caller of thespian's external API once the system runs: callers queue a send and go on, or wait
for their reply on an event of their own. Replies come back as `Reply(correlation_id, message)`
and reach the sink registered for that id (`add_sink`, `register_sink`), whichever thread or
event loop waits for it.

`ActorSystem` creates the endpoint and drives its lifecycle; `ActorRef` sends through it from
outside actors; `TestProbe` and the hosted event log use it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from thespian.actors import ActorExitRequest

from persistent_actors import _protocol as p
from persistent_actors._actor import (
    ActorRef,
    guardian_address,
    reply_form,
    use_as_default,
)
from persistent_actors._driver import Driver, settle
from persistent_actors._thespian.common import check_picklable, log
from persistent_actors._thespian.frames import unbatch
from persistent_actors._thespian.lifetime import shutdown_thespian
from persistent_actors._thespian.wakeups import run_until_idle
from persistent_actors.errors import AskTimeoutError, PersistentActorsError
from persistent_actors.messages import Kill, PoisonPill, Status

__all__ = ["Endpoint"]

# Seconds one blocking listen() lasts at most on the inline path (no driver thread to wait on).
_PUMP_SLICE = 0.05
# Seconds a simple base's shutdown runs the actors' exits (post_stop, plugins' close) at most.
SHUTDOWN_DRAIN = 10.0
# Seconds between checks of a `request`'s cancel event while it waits.
_CANCEL_CHECK = 0.05


class Endpoint:
    """Send, receive and route for one thespian actor system; safe to use from any thread.

    Args:
        name: the actor system's name (for messages).
        asys: the thespian actor system.
        simple: True on thespian's simple base (actors run inside calls to it).

    """

    def __init__(self, name: str, asys: Any, *, simple: bool) -> None:
        self.name = name
        self.simple = simple
        self.guardian: Any = None  # the guardian's address, once it exists
        self._asys = asys
        # Orders shutdown's close against `add_sink`/`drop_sink`; never held while waiting. The
        # hot paths (ask, ask_async, route_all) touch the sinks without it: each of their reads
        # and writes is one atomic dict operation, and `send` raises once the endpoint is closed.
        self._lock = threading.Lock()
        # By correlation id. The sink of an ask (`_Waiter`, `_FutureSink`) also fails it when the
        # system shuts down or the ask is refused (`_failer`).
        self._sinks: dict[str, Callable[[Any], None]] = {}
        # Sinks for the endpoint's life (`add_standing_sink`): no caller waits on them.
        self._standing: dict[str, Callable[[Any], None]] = {}
        self._routed = threading.Condition(self._lock)  # notified when a reply was routed
        self._pumping = 0  # threads waiting in `pump`
        self._driver: Driver | None = None
        self._closed = False
        self._reason: str | None = None  # why the system ended on its own (`shutdown`)
        self.admin_lost = False  # thespian's admin died before it confirmed the shutdown
        # The ask_async timeouts of each event loop that asks (see `_Deadlines`).
        self._deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = \
            weakref.WeakKeyDictionary()
        # Those of the loop that asked last: one identity check instead of a weak-dict look-up
        # (it keeps that one loop alive until another loop asks or the endpoint goes).
        self._last_deadlines: _Deadlines | None = None
        # Correlation ids: unique per endpoint, which routes them. A counter, not uuid4: the
        # system's entropy source cost a quarter of an ask_async under load.
        self._ids = itertools.count(1)
        self._id_prefix = f"{uuid.uuid4().hex[:12]}-"
        use_as_default(self)

    def new_correlation_id(self) -> str:
        """An id no other waiting request of this endpoint has."""
        return f"{self._id_prefix}{next(self._ids)}"

    def start(self, guardian: Any, ingress: Any) -> None:
        """Start the driver thread; from now on only it calls thespian's external API."""
        self.guardian = guardian
        self._driver = Driver(self.name, self._asys, simple=self.simple, ingress=ingress,
                              route=self.route_all, awaiting=lambda: bool(self._sinks))

    def watch(self, alive: Callable[[], bool], lost: Callable[[], object]) -> None:
        """Have the driver thread check `alive()` often; `lost()` once it is False.

        See `Driver.watch`: both run on the driver thread, which `lost` must not wait for.
        """
        if self._driver is not None:
            self._driver.watch(alive, lost)

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
            raise self._shut_down_error()

    def _shut_down_error(self) -> PersistentActorsError:
        reason = "" if self._reason is None else f": {self._reason}"
        return PersistentActorsError(f"actor system {self.name!r} has been shut down{reason}")

    @property
    def reason(self) -> str | None:
        """Why the system ended on its own (a runtime process died); None otherwise."""
        return self._reason

    def shutdown(self, reason: str | None = None, *,
                 admin_alive: Callable[[], bool] | None = None) -> bool:
        """Send what is queued, fail the asks still waiting, stop the actor tree and thespian.

        A `reason` says why the system ended on its own (a runtime process died): the asks
        still waiting fail at once, before the driver stops, and every shut-down error names
        it. `admin_alive` (multiproc-tcp): thespian's shutdown ends once it is False (it waited
        10 s for a dead admin's answer); `admin_lost` then says if the admin died before it
        confirmed. Returns False if the endpoint was shut down already.
        """
        with self._lock:
            if self._closed:
                return False
            self._reason = reason  # before `_closed`: whoever sees it closed sees the reason
            self._closed = True
            failers = [fail for fail in map(_failer, list(self._sinks.values()))
                       if fail is not None]
        error = self._shut_down_error()
        if reason is not None:  # the system is lost: no reply is waited for
            for fail in failers:
                fail(error)
            failers = []
        with self._routed:  # waits in `pump` (a TestProbe's) end with the shut-down error
            self._routed.notify_all()
        driver, self._driver = self._driver, None
        ended = driver is None or driver.stop()
        for fail in failers:
            fail(error)
        if self.simple and not ended:
            # The driver thread still runs actors (what was queued before the stop: a backlog
            # of slow handlers). Thespian's simple base is single-threaded: running it from
            # here too would hand an actor its next message while it still handles one. The
            # actors are left to the driver thread (a daemon) and end with the process.
            log.warning("actor system %r: the driver thread is still running actors (what "
                        "was queued before the shutdown) after the shutdown's wait; they are "
                        "left to it (their post_stop does not run)", self.name)
            return True
        if self.simple and self.guardian is not None:
            # The simple base's shutdown() stops no actor: without this, every plugin actor
            # kept its event-loop thread and its database connections open.
            try:
                self._asys.tell(self.guardian, ActorExitRequest())
                run_until_idle(getattr(self._asys, "_systemBase", None), SHUTDOWN_DRAIN)
            except Exception:  # noqa: BLE001 - shutting down anyway
                log.debug("stopping the actor tree failed", exc_info=True)
        if admin_alive is None:
            self._asys.shutdown()
        else:
            self.admin_lost = shutdown_thespian(self._asys, admin_alive)
        return True

    # -- sending -----------------------------------------------------------------------------
    def tell(self, ref: ActorRef, message: Any, sender: ActorRef | None) -> None:
        """Send from outside any actor (see `ActorRef.tell`)."""
        wrapped = reply_form(ref, message)
        if not isinstance(wrapped, p.Reply):
            wrapped = p.Envelope(wrapped, sender)
        self.send(ref.address, wrapped)
        if isinstance(message, Kill | PoisonPill):
            self._stop_requested(ref)

    def stop(self, ref: ActorRef) -> None:
        """Stop the actor behind `ref` (see `ActorSystem.stop`)."""
        self.send(ref.address, reply_form(ref, ActorExitRequest()))
        self._stop_requested(ref)

    def _stop_requested(self, ref: ActorRef) -> None:
        # See StopRequested: lets an actor_of under the same name, sent right after, wait for
        # the old actor to exit instead of failing with "not unique".
        if ref.address is not None:
            self.send(self.guardian, p.StopRequested(guardian_address(ref)))

    def send(self, address: Any, message: Any) -> None:
        """Queue `message` for `address`; delivered in order with every other external send.

        Raises:
            MessageNotSerializableError: on multiproc-tcp, `message` cannot be pickled.
            PersistentActorsError: the actor system has been shut down.

        """
        if self._closed:
            self.ensure_running()
        if not self.simple:
            check_picklable(message, address)  # raise here, in the caller
        driver = self._driver
        if driver is None or driver.on_thread():
            if driver is None:
                # No driver also after a shutdown that began since the check above (it marks
                # the endpoint closed before it drops the driver): raise, never call thespian
                # from this thread while the driver may still be using it.
                self.ensure_running()
            # Before the driver starts, or inside an actor on the simple base (its handlers run
            # on the driver thread): send at once, on this thread.
            self._asys.tell(address, message)
            return
        driver.submit(address, message)

    # -- receiving ---------------------------------------------------------------------------
    def add_sink(self, correlation_id: str, sink: Callable[[Any], None]) -> None:
        """Hand every reply carrying `correlation_id` to `sink` (called on the driver thread)."""
        with self._lock:
            self._sinks[correlation_id] = sink

    def add_standing_sink(self, correlation_id: str, sink: Callable[[Any], None]) -> None:
        """Hand the replies carrying `correlation_id` to `sink` for the endpoint's life.

        Unlike `add_sink`'s, no caller waits on it: it does not keep the driver listening on
        multiproc-tcp (a 2 ms slice, round after round, and no lingering for the callers'
        next sends); what arrives for it is collected at the driver's idle polls.
        """
        with self._lock:
            self._standing[correlation_id] = sink

    def drop_sink(self, correlation_id: str) -> None:
        """Forget the sink of `correlation_id`; later replies to it are dropped."""
        with self._lock:
            self._sinks.pop(correlation_id, None)

    def register_sink(self, correlation_id: str) -> deque[Any]:
        """A queue that collects the replies carrying `correlation_id`."""
        queue: deque[Any] = deque()
        self.add_sink(correlation_id, queue.append)
        return queue

    def route(self, incoming: Any) -> None:
        """Hand a message (or a `Batch` of them) that reached the outside to its sinks."""
        self.route_all(list(unbatch(incoming)))

    def route_all(self, messages: list[Any]) -> bool:
        """Route messages that reached the outside together (the driver thread calls this).

        Replies to `ask_async` callers are grouped per event loop: one thread-safe wake-up of
        each loop per call, not one per reply. Returns True if an event loop was answered
        (the driver waits for the next sends accordingly: `Driver._linger`).
        """
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        routed = False
        sinks = self._sinks  # no lock: each look-up is one atomic dict operation
        last_loop: Any = None
        results: list[tuple[asyncio.Future[Any], Any]] = []
        # Blocking askers answered here, woken one after another (see `_Waiter`).
        chain_head: _Waiter | None = None
        chain_tail: _Waiter | None = None
        for incoming in messages:
            if not isinstance(incoming, p.Reply):
                log.debug("dropped unsolicited message to the outside: %r", incoming)
                continue
            sink = sinks.get(incoming.correlation_id)
            message = incoming.message
            if isinstance(message, p.AskRefused):
                failer = _failer(sink)
                if failer is not None:
                    failer(message.error)  # the ask raises it
                    continue
            if sink is None:
                sink = self._standing.get(incoming.correlation_id)
                if sink is not None:
                    sink(message)
                else:
                    log.debug("dropped unsolicited message to the outside: %r", incoming)
                continue
            routed = True
            if type(sink) is _FutureSink:
                loop = sink.loop
                if loop is not last_loop:  # replies of one pass mostly go to one loop
                    last_loop = loop
                    results = settled.setdefault(loop, [])
                results.append((sink.future, message))
            elif type(sink) is _Waiter:
                if sink.answer(message):
                    if chain_tail is None:
                        chain_head = sink
                    else:
                        chain_tail.next = sink
                    chain_tail = sink
            else:
                sink(message)
        if chain_head is not None:
            chain_head.hand_over()
        for loop, batch in settled.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(_settle_all, batch)
        if routed and self._pumping:
            with self._routed:
                self._routed.notify_all()
        return bool(settled)

    def pump(self, deadline: float, done: Callable[[], bool]) -> bool:
        """Wait until `done()` (checked after each routed reply) or the monotonic `deadline`.

        Returns done(). On the driver thread itself (inside an actor on the simple base) it
        receives and routes replies itself.

        Raises:
            PersistentActorsError: the system was shut down, before or during the wait (which
                `shutdown` cuts short).

        """
        driver = self._driver
        if driver is None or driver.on_thread():
            return self._pump_inline(deadline, done)
        with self._routed:
            self._pumping += 1
            try:
                while not done():
                    self.ensure_running()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._routed.wait(remaining)
            finally:
                self._pumping -= 1
        return True

    def _pump_inline(self, deadline: float, done: Callable[[], bool]) -> bool:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.ensure_running()
            incoming = self._asys.listen(0)  # a reply may be waiting already
            if incoming is None:
                incoming = self._asys.listen(min(remaining, _PUMP_SLICE))
            if incoming is not None:
                self.route(incoming)
            elif self.simple:
                time.sleep(0.001)  # the simple base returns at once when idle
        return True

    # -- request / reply ---------------------------------------------------------------------
    def undelivered(self, address: Any) -> str:
        """For a timeout's message: "" or why the request may not have arrived at all.

        On multiproc-tcp a frame to `address` that is still unacknowledged says the receiving
        process has not taken it (hung, or its connection stalled), not that its actor was
        slow to reply.
        """
        driver = self._driver
        waited = None if driver is None else driver.unacknowledged_for(address)
        if waited is None:
            return ""
        return (f"; the frame carrying it to {address} has waited {waited:.1f}s for the "
                "receiving process to acknowledge it")

    def request(self, target: Any, build: Callable[[str], Any], timeout: float, what: str,
                cancel: threading.Event | None = None) -> Any:
        """Send ``build(correlation_id)`` to `target`, wait for the reply and return it.

        `what` describes the request in the timeout error. A set `cancel` ends the wait early
        and returns None (a read-side worker thread whose query was cancelled). The timeout
        is honoured on both bases: the caller waits on an event, not inside thespian.

        Raises:
            AskTimeoutError: no reply within `timeout` seconds.
            PersistentActorsError: the system shut down while waiting.

        """
        driver = self._driver
        if driver is None or driver._ident == threading.get_ident():  # noqa: SLF001 - on_thread
            return self._request_inline(target, build, timeout, what, cancel)
        waiter = _Waiter()
        corr = f"{self._id_prefix}{next(self._ids)}"  # as new_correlation_id
        self._sinks[corr] = waiter  # no lock: as in `ask_async`
        woken = False
        try:
            self.send(target, build(corr))
            deadline = time.monotonic() + timeout
            remaining = timeout
            while True:
                if cancel is not None:
                    if cancel.is_set():
                        return None
                    if waiter.wait(min(remaining, _CANCEL_CHECK)):
                        woken = True
                        break
                elif waiter.wait(remaining):
                    woken = True
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if waiter.answered():  # in time; its wake-up was still on its way down
                        break
                    raise AskTimeoutError(
                        f"timed out after {timeout}s {what}{self.undelivered(target)}")
        finally:
            self._sinks.pop(corr, None)
            if not woken:
                waiter.leave()  # a wake-up chained to this waiter must reach the next one
        return waiter.outcome()

    def _request_inline(self, target: Any, build: Callable[[str], Any], timeout: float,
                        what: str, cancel: threading.Event | None) -> Any:
        box: list[Any] = []
        corr = self.new_correlation_id()
        self.add_sink(corr, box.append)
        try:
            self.send(target, build(corr))
            if not self._pump_inline(time.monotonic() + timeout,
                                     lambda: bool(box) or (cancel is not None and cancel.is_set())):
                raise AskTimeoutError(f"timed out after {timeout}s {what}")
        finally:
            self.drop_sink(corr)
        return box[0] if box else None

    def ask(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` and wait for the reply (see `ActorRef.ask`)."""
        if type(timeout) is not float or not 0.0 < timeout <= _TIMEOUT_MAX:  # usual case inline
            _check_timeout(timeout)
        if message is Kill or message is PoisonPill:  # normalize_message, inline
            message = message()
        try:
            # outbound_form, inline: a plain ref (the usual target) does not wrap.
            outbound = message if type(ref) is ActorRef else ref._outbound(message)  # noqa: SLF001
            # The timeout's text is `_no_reply`'s, below: none is formatted per ask.
            reply = self.request(ref._address, lambda corr: p.new_envelope(outbound, None, corr),  # noqa: SLF001
                                 timeout, "")
        except AskTimeoutError:
            raise AskTimeoutError(_no_reply(ref, message, timeout)
                                  + self.undelivered(ref._address)) from None  # noqa: SLF001
        if type(reply) is _StatusFailure:  # Akka: the ask fails with the cause
            raise reply.cause
        return reply

    async def ask_async(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` and await the reply without blocking the loop (see `ActorRef.ask_async`).

        The driver thread sends it and routes the reply back by correlation id.
        """
        if type(timeout) is not float or not 0.0 < timeout <= _TIMEOUT_MAX:  # usual case inline
            _check_timeout(timeout)
        if self._closed:
            self.ensure_running()
        corr = f"{self._id_prefix}{next(self._ids)}"  # as new_correlation_id
        if message is Kill or message is PoisonPill:  # normalize_message, inline
            message = message()
        # outbound_form, inline: a plain ref (the usual target) does not wrap.
        envelope = p.new_envelope(message if type(ref) is ActorRef else ref._outbound(message),  # noqa: SLF001
                                  None, corr)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # The sink is its own failer (`shutdown` and an AskRefused find it in the sinks). No
        # lock: the insert is one atomic dict operation, and a shutdown that took the sinks
        # before it has marked the endpoint closed already, so `send` raises.
        sinks = self._sinks
        sinks[corr] = _FutureSink(loop, future)
        try:
            driver = self._driver
            if self.simple and driver is not None and not self._closed and \
                    driver._ident != threading.get_ident():  # noqa: SLF001
                # `send`'s usual case, inline: queued for the driver thread.
                driver.submit(ref._address, envelope)  # noqa: SLF001
            else:
                self.send(ref._address, envelope)  # noqa: SLF001
            # The loop's one timer for all its asks, not a call_later per ask (a timer handle,
            # a heap entry, a cancel and the loop's clean-up of cancelled timers).
            deadlines = self._last_deadlines
            if deadlines is None or deadlines.loop_ref() is not loop:
                deadlines = self._deadlines.get(loop)
                if deadlines is None:
                    deadlines = self._deadlines[loop] = _Deadlines(loop)
                self._last_deadlines = deadlines
            waiting = deadlines.add(loop, future, timeout)
            try:
                reply = await future
            finally:
                waiting.pop(future, None)
        except _Expired:
            raise AskTimeoutError(_no_reply(ref, message, timeout)
                                  + self.undelivered(ref._address)) from None  # noqa: SLF001
        finally:
            sinks.pop(corr, None)
        if type(reply) is _StatusFailure:  # Akka: the ask fails with the cause
            raise reply.cause
        return reply


class _FutureSink:
    """The sink of an `ask_async`: its reply completes `future` on `loop` (see `route_all`)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.loop = loop
        self.future = future

    def __call__(self, message: Any) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(settle, self.future, message, None)

    def fail(self, error: BaseException) -> None:
        """Complete the future with `error` (the system shut down); safe on any thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self.loop.call_soon_threadsafe(settle, self.future, None, error)


class _Deadlines:
    """The `ask_async` timeouts of one event loop, fired by one loop timer (loop thread only).

    The asks are kept per timeout value, each in a dict in the order they were added: with the
    loop's monotonic clock that is also deadline order, so the first entry of each is the next
    due, and a completed ask leaves with one dict pop. The timer is set for the earliest
    deadline it knows; an ask that completed before its deadline does not move it. When it
    fires it expires what is due (its future raises `_Expired`) and is set for the next.
    """

    # Nothing here holds the loop strongly (the loop and its pending timer by weak reference):
    # the endpoint keeps these in a WeakKeyDictionary keyed by the loop, and a value holding
    # its key would keep every loop that ever asked alive (``asyncio.run`` per request).
    __slots__ = ("_due", "_groups", "_timer", "loop_ref")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop_ref = weakref.ref(loop)
        self._groups: dict[float, dict[asyncio.Future[Any], float]] = {}
        self._timer: weakref.ReferenceType[asyncio.TimerHandle] | None = None
        self._due = math.inf

    def add(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
            timeout: float) -> dict[asyncio.Future[Any], float]:
        """Expire `future` after `timeout` seconds; returns the dict to pop it from when done."""
        deadline = loop.time() + timeout
        group = self._groups.get(timeout)
        if group is None:
            group = self._groups[timeout] = {}
        group[future] = deadline
        if deadline < self._due:
            self._set_timer(loop, deadline)
        return group

    def _set_timer(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        timer = self._timer() if self._timer is not None else None
        if timer is not None:
            timer.cancel()
        self._due = deadline
        self._timer = weakref.ref(loop.call_at(deadline, self._fire))

    def _fire(self) -> None:
        self._timer = None
        self._due = math.inf
        loop = self.loop_ref()
        if loop is None:
            return
        # As the loop runs a timer: due once its time is within the clock's resolution.
        limit = loop.time() + _CLOCK_RESOLUTION
        following = math.inf
        expired: list[asyncio.Future[Any]] = []
        for timeout, group in list(self._groups.items()):
            for future, deadline in group.items():
                if deadline > limit:
                    following = min(following, deadline)
                    break
                expired.append(future)
            for future in expired:
                del group[future]
                if not future.done():
                    future.set_exception(_Expired())
            expired.clear()
            if not group:
                del self._groups[timeout]
        if following < math.inf:
            self._set_timer(loop, following)


_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class _Expired(Exception):  # noqa: N818 - internal, turned into AskTimeoutError at once
    """An `ask_async` timed out (raised from its future, never seen by callers)."""


class _Waiter:
    """Where a thread blocked in `Endpoint.request` gets its reply: a plain lock, released once.

    Cheaper than a `threading.Event` (a condition, a lock per wait, a notify) on the path of
    every blocking ask; the first outcome wins, a second reply is dropped as before.

    The waiters answered in one pass are chained (`answer`, then `next`): the driver wakes only
    the first, and each woken thread wakes the next as its first step, while it runs its own
    code on. Releasing all of them from the driver woke every thread at once only for each to
    sleep again on the GIL and be handed it one by one: two wake-ups each, and each hand-over
    waited for the previous thread's whole turn plus a wake-up. The chain never stalls on a
    thread that stopped waiting (timed out, cancelled, interrupted): `leave` marks it gone and
    wakes the next if it was answered, and `hand_over` passes on past a waiter that is gone.
    """

    __slots__ = ("_done", "_gone", "_outcome", "next")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()  # released when the outcome is set
        self._outcome: Any = _PENDING
        self._gone = False  # the asking thread no longer waits
        self.next: _Waiter | None = None  # woken by this one's thread (see `answer`)

    def __call__(self, message: Any) -> None:
        """The reply arrived (called on the driver thread): set it and wake the thread."""
        if self.answer(message):
            self.hand_over()

    def answer(self, message: Any) -> bool:
        """Set the reply without waking the thread; False if an outcome was set already.

        The caller then wakes it with `hand_over`, or chains it to a waiter that will (`next`).
        """
        if self._outcome is not _PENDING:
            return False
        self._outcome = message
        return True

    def fail(self, error: BaseException) -> None:
        """The system shut down under the wait (called by `Endpoint.shutdown`)."""
        if self._outcome is _PENDING:
            self._outcome = _Failed(error)
            self.hand_over()

    def hand_over(self) -> None:
        """Wake this waiter's thread, which wakes the rest of the chain; past gone waiters.

        Whoever takes a released lock (the thread in `wait`, or this loop for a thread that
        left) wakes the next waiter; `leave` may wake it too, which is harmless.
        """
        waiter: _Waiter | None = self
        while waiter is not None:
            waiter = waiter.wake()

    def wake(self) -> _Waiter | None:
        """Release the lock; the waiter to wake next if the wake-up came back (see `hand_over`)."""
        try:
            self._done.release()
        except RuntimeError:  # released already (a racing `fail`): that one carries on
            return None
        if not self._gone or not self._done.acquire(blocking=False):
            return None  # its thread takes the wake-up, or took it in `leave`, and passes it on
        return self.next

    def wait(self, timeout: float) -> bool:
        """True once woken with the outcome (then it wakes the next); waits up to `timeout`."""
        if self._done.acquire(timeout=max(timeout, 0)):
            if self.next is not None:
                self.next.hand_over()
            return True
        return False

    def leave(self) -> None:
        """The asking thread stops waiting without having passed a wake-up on.

        A timeout, a cancel or an exception (also one raised right after its wake-up). Once
        answered it wakes the next at once; if its own wake-up is still to come, the
        `hand_over` that brings it sees the mark and passes it on. A second wake-up of a
        waiter is harmless: every waiter of a chain is answered before the first is woken.
        """
        self._gone = True
        if self._outcome is not _PENDING and self.next is not None:
            self.next.hand_over()

    def answered(self) -> bool:
        """True once a reply or failure is set (its wake-up may still be on its way)."""
        return self._outcome is not _PENDING

    def outcome(self) -> Any:
        """The reply, or raise the error it failed with."""
        outcome = self._outcome
        if isinstance(outcome, _Failed):
            raise outcome.error
        return outcome


_PENDING: Any = object()
_TIMEOUT_MAX = threading.TIMEOUT_MAX
_StatusFailure = Status.Failure


def _failer(sink: Any) -> Callable[[BaseException], None] | None:
    """How to fail the ask waiting on `sink` (shutdown, refusal); None if it is no ask's."""
    if isinstance(sink, _FutureSink | _Waiter):
        return sink.fail
    return None


def _settle_all(results: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, message in results:
        if not future.done():  # timed out or cancelled meanwhile
            future.set_result(message)


class _Failed:
    """A waiting request's outcome when the system shut down under it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _check_timeout(timeout: Any) -> None:
    # Finite and not beyond what a lock can wait (threading.TIMEOUT_MAX, about 292 years):
    # checked before anything is sent, so a refused ask never delivers its message.
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or \
            not 0 < timeout <= threading.TIMEOUT_MAX:
        raise ValueError(f"ask timeout must be a positive, finite number of seconds (at most "
                         f"threading.TIMEOUT_MAX), got {timeout!r}")


def _no_reply(ref: ActorRef, message: Any, timeout: float) -> str:
    return (f"no reply from {ref.name} to {type(message).__name__} within {timeout:.4g}s "
            "(the actor may be dead, busy, or not replying to self.sender)")
