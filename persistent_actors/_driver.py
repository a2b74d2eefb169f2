"""The driver thread: the one thread that talks to thespian's external API for a system.

Every message from outside the actor system (a `tell`, `ask` or `ask_async` from any thread or
event loop) is put on the driver's queue and the caller goes on (or waits for its reply on an
event of its own, never on a lock held through a listen). The driver thread takes everything
queued at once and delivers it in one go:

* on the simple base it appends them all, in order, to thespian's queue of pending sends and
  runs it once (`persistent_actors._thespian.simple_direct`): the whole batch runs in one pass,
  so the persists of concurrent requests reach the journal together and share one transaction
  (on a simple base whose internals differ it sends them as one `IngressBatch` to the
  ingress actor, which forwards them in order: `persistent_actors._thespian.ingress`);
* on multiproc-tcp it sends them straight to their destinations, one frame per destination,
  without waiting for thespian's acknowledgements (`_thespian/outbound.py`): at most one frame
  per destination is in flight, and what queues behind it leaves as one frame once it is
  acknowledged. (Through an ingress actor every message cost one more process hop, and the
  external ``tell`` blocked this thread until the ingress had read the batch.)
* then it receives: replies carry their ask's correlation id and go to the sink registered for
  it (`Endpoint.route`), which wakes the waiting thread or resolves the awaiting future. A
  host's replies of one pass arrive as one `Batch` frame (`_thespian/frames.py`); on the
  simple base all replies of a pass are taken at once.

Order per sender and receiver is kept: one queue, one thread, and a batch is forwarded in
order. A message to an address that is not an actor's is dropped with a warning before any
path sees it, so it cannot cost the messages delivered with it. A lone request adds no
delay: the driver sends whatever is queued as soon as it is free.
On the simple base thespian runs actors inside the calls made to it, so the actors run on this
thread; while idle it calls in every `_IDLE_TICK` seconds so scheduled wakeups (timeouts,
back-off restarts) fire. On multiproc-tcp it listens in slices of `_LISTEN_SLICE` seconds while
replies are awaited or frames are unacknowledged (a listen also completes the sends); a caller
that queues work meanwhile cuts the listen short (`_thespian/listen_wake.py`: thespian's listen
takes no interruption, so the transport also watches a pipe). Where that cannot be set up (a
thespian whose loop is not ours) a new message waits for the slice to end at most.

Between passes (every `_IDLE_TICK` seconds at most) the driver also runs what it was asked to
`watch`: a liveness check due every `WATCH_INTERVAL` seconds (the system's guardian and
thespian's admin and logger processes on multiproc-tcp), one clock read per pass until it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from thespian.actors import ActorAddress

from persistent_actors import _protocol as p
from persistent_actors._thespian.frames import unbatch
from persistent_actors._thespian.headroom import call_with_headroom
from persistent_actors._thespian.listen_wake import WOKEN, ListenWake
from persistent_actors._thespian.outbound import Outbound
from persistent_actors._thespian.simple_direct import BadAddressError, SimpleDirect

__all__ = ["Driver", "in_event_loop", "settle"]

log = logging.getLogger("persistent_actors")

# Seconds between calls into an idle simple base (how late a due wakeup may fire).
_IDLE_TICK = 0.01
# Seconds of one multiproc-tcp listen while replies are awaited.
_LISTEN_SLICE = 0.002
# Seconds of each further multiproc-tcp listen that collects what arrived with a reply. Not 0:
# thespian's TCP transport returns from listen(0) before it looks at the messages it has read
# already, so listen(0) would leave every reply but the first for a later pass. Every pass
# ends with one such listen that finds nothing, so it is kept short (it waits that long since
# `poll_selector` waits below a millisecond with `select`; before, poll made it 1 ms).
_DRAIN = 0.0001
# Seconds `Driver.stop` waits for the driver thread to end.
STOP_WAIT = 30.0
# Longest wait for callers answered in the last pass to send again (see `Driver._linger`).
_LINGER = 0.001
# Most messages in one IngressBatch (one thespian frame).
MAX_BATCH = 500
# Seconds between the calls of a `Driver.watch` check.
WATCH_INTERVAL = 0.5

_NOTHING: Any = object()  # the queue was empty
_STOP: Any = object()


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


class Driver:
    """The thread that delivers queued external messages and routes the replies.

    Args:
        name: the actor system's name (for the thread's name).
        asys: the thespian actor system; only this thread calls it once started.
        simple: True on thespian's simple base.
        ingress: the ingress actor's address (simple base; None on multiproc-tcp).
        route: called on this thread with the messages that reached the outside together;
            returns True if it answered an event loop (see `_linger`).
        awaiting: True while some caller waits for a reply (multiproc-tcp listens then).

    """

    def __init__(self, name: str, asys: Any, *, simple: bool, ingress: Any,
                 route: Callable[[list[Any]], object], awaiting: Callable[[], bool]) -> None:
        self._asys = asys
        self._simple = simple
        self._ingress = ingress
        self._route = route
        self._awaiting = awaiting
        # On the simple base a batch goes straight into thespian's send queue (no ingress hop)
        # and the replies come out in one go; None on other thespian internals.
        self._direct = SimpleDirect.of(asys) if simple else None
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # How many sends the next pass may expect at once (see `_linger`): the messages routed out
        # in the last pass plus what was queued already while that pass ran.
        self._expected = 0
        # The last pass answered an event loop (`_linger`: then the driver waits on its queue).
        self._loops_answered = False
        # While a pass lingers: `submit` releases `_gathered` once `_want` sends are queued, so
        # the driver sleeps through the linger instead of waking for every send (each wake-up
        # took the GIL from a caller that was about to send). A plain lock used as a one-shot
        # signal: held while unsignalled; released by `submit`, taken back by the driver.
        self._want = 0
        self._gathered = threading.Lock()
        self._gathered.acquire()
        # Multiproc-tcp: frames sent straight to each destination, never waited for.
        self._outbound = None if simple else Outbound(asys)
        # Multiproc-tcp: `submit` cuts a listen short (None where the transport's loop differs).
        self._wake = None if simple else ListenWake.of(asys)
        # What `watch` checks, and when next (never while nothing is watched).
        self._alive: Callable[[], bool] | None = None
        self._lost: Callable[[], object] | None = None
        self._next_watch = math.inf
        # Its loop at the start of a frame-stack chunk of its own (see `headroom`).
        self._thread = threading.Thread(target=call_with_headroom, args=(self._serve,),
                                        daemon=True,
                                        name=f"persistent_actors-driver-{name}")
        self._thread.start()
        self._ident = self._thread.ident

    def on_thread(self) -> bool:
        """True if called on the driver thread (inside an actor, on the simple base)."""
        return threading.get_ident() == self._ident

    def unacknowledged_for(self, address: Any) -> float | None:
        """Multiproc-tcp: seconds a frame to `address` has waited for its ack (None: none)."""
        return None if self._outbound is None else self._outbound.unacknowledged_for(address)

    def watch(self, alive: Callable[[], bool], lost: Callable[[], object]) -> None:
        """From now on call `alive()` every `WATCH_INTERVAL` seconds; once False, `lost()`.

        Both run on the driver thread, between passes; `lost` runs once, and then nothing is
        watched any more. Neither may wait for the driver (`stop` from another thread, say).
        """
        self._alive, self._lost = alive, lost
        self._next_watch = time.monotonic() + WATCH_INTERVAL

    def submit(self, address: Any, message: Any) -> None:
        """Queue `message` for `address`; it is sent in order with everything else queued."""
        ops = self._ops
        ops.put((address, message))
        wake = self._wake
        if wake is not None and wake.armed:  # the driver listens: the work goes now
            wake.wake()
        want = self._want
        if want and ops.qsize() >= want:  # the lingering pass has what it waits for
            self._want = 0
            self._signal()

    def _signal(self) -> None:
        with contextlib.suppress(RuntimeError):  # signalled already
            self._gathered.release()

    def stop(self) -> bool:
        """Send what is queued, then end the thread (waits for it unless called on it).

        Waits up to `STOP_WAIT` seconds; returns False if the thread is still running then
        (on the simple base: actors still handling what was queued before the stop).
        """
        if self._thread.is_alive():
            self._ops.put(_STOP)
            self._signal()  # a lingering pass takes the stop at once
            if self.on_thread():
                return True
            self._thread.join(timeout=STOP_WAIT)
        return not self._thread.is_alive()

    # -- the driver thread ---------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            listening = self._listening()
            # Simple base: the last run stopped at its budget with work still queued (an actor
            # that keeps messaging itself): go on at once, after what arrived from outside.
            unfinished = self._direct is not None and self._direct.pending()
            sends: list[tuple[Any, Any]] = []
            stopping = False
            if self._expected > 1 and not listening and not unfinished and \
                    not self._loops_answered:
                # Callers answered by the last pass are sending again: sleep until all of them
                # have (one wake-up), not until the first (which only started the linger).
                stopping = self._linger(sends)
                if not sends and not stopping:
                    self._expected = 0  # none came back within the linger: idle as usual
            if not sends and not stopping:
                try:
                    op = self._ops.get_nowait() if listening or unfinished else \
                        self._ops.get(timeout=_IDLE_TICK)
                except queue.Empty:
                    op = _NOTHING
                stopping = self._take(op, sends)
                if sends and not stopping and not unfinished and len(sends) < self._expected:
                    stopping = self._linger(sends)
            try:
                if sends:
                    self._deliver(sends)
                self._receive(idle=not sends)
            except Exception:  # keep serving: the waiting callers time out with a clear error
                log.warning("driver: talking to thespian failed", exc_info=True)
            if time.monotonic() >= self._next_watch:
                self._check_watched()
            if stopping:
                self._drain()
                if self._wake is not None:
                    self._wake.close()
                return

    def _check_watched(self) -> None:
        """Run the `watch` check that is due; on a False, stop watching and call `lost`."""
        alive, lost = self._alive, self._lost
        try:
            if alive is None or lost is None or alive():
                self._next_watch = time.monotonic() + WATCH_INTERVAL
                return
            self._alive = self._lost = None
            self._next_watch = math.inf
            lost()
        except Exception:  # keep serving; a check that failed is tried again when due
            log.warning("driver: a watched check failed", exc_info=True)
            self._next_watch = time.monotonic() + WATCH_INTERVAL

    def _listening(self) -> bool:
        """True on multiproc-tcp while a reply is awaited or a frame is not acknowledged yet."""
        outbound = self._outbound
        return outbound is not None and (outbound.in_flight or self._awaiting())

    def _drain(self, timeout: float = 10.0) -> None:
        """Before the thread ends: run the transport until every frame sent is acknowledged."""
        deadline = time.monotonic() + timeout
        while self._outbound is not None and self._outbound.in_flight and \
                time.monotonic() < deadline:
            try:
                self._receive(idle=False)
            except Exception:
                log.warning("driver: talking to thespian failed", exc_info=True)
                return

    def _take(self, op: Any, sends: list[tuple[Any, Any]]) -> bool:
        """Move `op` and everything queued behind it into `sends`; True if told to stop."""
        while op is not _NOTHING:
            if op is _STOP:
                return True
            sends.append(op)
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                op = _NOTHING
        return False

    def _linger(self, sends: list[tuple[Any, Any]]) -> bool:
        """Wait up to `_LINGER` for the callers answered last pass to send again.

        Callers that just got their replies (threads woken, coroutines resumed) send their next
        requests a moment later; without this the first of them would go alone and the rest in
        the next pass, halving the batches. A lone caller (one answered) never waits.

        The pass waits for as many sends as were queued while the last pass ran plus the replies
        it routed out, not for the replies alone: with 16 threads, callers answered in different
        passes otherwise stayed in two groups that took turns (10 and 6 a pass, the second
        never lingered for), since the sends queued early already covered the count.

        After a pass that expects more than one send the driver lingers at once, before the
        first send arrives (`_serve`): it then wakes once, when the last of them is queued. It
        used to wake for the first send and linger from there: one more wake-up a pass, which
        also took the GIL from the callers in the middle of their turn. Not after a pass that
        answered an event loop: a loop resumes all its callers in one turn and holds the GIL
        to its end, so a driver woken by the first send is ready to take the GIL the moment
        the loop sleeps, where one woken by the last send would still be waking up, then
        wait for the GIL and be woken again (100 `ask_async` clients: their turn 448-473 ->
        500-604 us).
        """
        deadline = time.monotonic() + _LINGER
        gathered = self._gathered
        while True:
            missing = self._expected - len(sends)
            remaining = deadline - time.monotonic()
            if missing <= 0 or remaining <= 0:
                return False
            gathered.acquire(blocking=False)  # a signal left over from an earlier wait
            self._want = missing  # before the look at the queue: `submit` then sees it
            if self._ops.qsize() < missing:
                gathered.acquire(timeout=remaining)
            self._want = 0
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                continue
            if self._take(op, sends):
                return True

    def _deliver(self, sends: list[tuple[Any, Any]]) -> None:
        if self._direct is not None:
            # Not retried another way on an error: what it delivered or queued is in thespian
            # already, and sending it again would deliver it twice. A bad address is refused
            # before anything is sent: then without the messages that have one.
            try:
                self._direct.tell_all(sends)
            except BadAddressError:
                self._direct.tell_all(_addressable(sends))
            return
        if not all(isinstance(address, ActorAddress) for address, _ in sends):
            sends = _addressable(sends)
        if self._outbound is not None:
            self._outbound.send(sends)
            return
        # Simple base without the direct path: even a lone message goes through the ingress
        # actor, so the whole batch runs in one pass (one path for all keeps their order).
        for start in range(0, len(sends), MAX_BATCH):
            chunk = tuple(sends[start:start + MAX_BATCH])
            try:
                self._asys.tell(self._ingress, p.IngressBatch(chunk))
            except Exception:  # one bad message must not lose the others: send one by one
                log.debug("driver: batch send failed, sending one by one", exc_info=True)
                for address, message in chunk:
                    self._tell(address, message)

    def _tell(self, address: Any, message: Any) -> None:
        try:
            self._asys.tell(address, message)
        except Exception:
            log.warning("driver: sending %s to %s failed", type(message).__name__, address,
                        exc_info=True)

    def _receive(self, *, idle: bool) -> None:
        asys = self._asys
        # Sent while this pass ran, by callers it does not answer (counted before any reply is
        # routed: a caller woken by one could send at once and be counted twice).
        early = self._ops.qsize()
        if self._direct is not None:
            if idle:  # nothing sent: run what a run left at its budget, and the due wakeups
                self._direct.run()  # (not thespian's listen: its run has no budget)
            # Actors ran inside the sends: their replies wait, all of them, to be taken.
            replies = self._direct.take_replies()
            if p.Batch in map(type, replies):  # a host's frame among them: unpack
                replies = [m for incoming in replies for m in unbatch(incoming)]
            self._loops_answered = bool(replies) and bool(self._route(replies))
            self._expected = early + len(replies)
            return
        wake = self._wake
        if self._simple:
            # Actors ran inside the sends; listen(0) only collects their replies. An idle
            # pass calls in briefly so that due wakeups run.
            incoming = asys.listen(0.001 if idle else 0)
        else:
            wait = _LISTEN_SLICE if self._listening() else 0
            if wait and wake is not None:
                wake.arm()  # before the look at the queue: a `submit` after it wakes the listen
                if self._ops.qsize():
                    wait = 0  # work is queued already: collect what is there and send it
            incoming = asys.listen(wait)
        arrived: list[Any] = []
        drain = 0 if self._simple else _DRAIN
        while incoming is not None:
            if incoming is WOKEN:  # work was queued: send it, collect the rest next pass
                assert wake is not None  # noqa: S101 - only its pipe says so
                wake.drain()
                break
            arrived.extend(unbatch(incoming))  # a host's replies of one pass come in one frame
            incoming = asys.listen(drain)
        if wake is not None:
            wake.disarm()
        self._loops_answered = bool(arrived) and bool(self._route(arrived))
        self._expected = early + len(arrived)


def _addressable(sends: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """`sends` without those whose address is not a thespian ActorAddress, each logged.

    A ref built on an address that is no actor's (`ActorRef` takes any object) must not cost
    the messages delivered with it: thespian refuses such an address only once it runs the
    send (multiproc-tcp: the whole frame group; the ingress actor: its whole batch, retried,
    so the messages before it arrived up to three times and those after it never).
    """
    kept: list[tuple[Any, Any]] = []
    for address, message in sends:
        if isinstance(address, ActorAddress):
            kept.append((address, message))
        else:
            log.warning("driver: dropped %s to %r: not an actor's address",
                        type(message).__name__, address)
    return kept
