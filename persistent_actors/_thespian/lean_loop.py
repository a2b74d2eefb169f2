"""Thespian's TCP loop without the per-turn work whose outcome is known beforehand.

Every turn of thespian 4.0.1's ``TCPTransport._runWithExpiry`` (a cart process of
``service_async_mp`` turns it about 4 times per request, the external process once per
message or ACK it gets) does, besides waiting and handling what is ready:

- it sorts its transmits into the sockets to watch with ``partition``/``fmap``/``filter`` over
  lambdas, asks each one ``backoffPause()`` (a timer view and a ``timedelta`` when it is
  pausing, nothing otherwise), and registers every socket with the selector one call at a time;
- it walks every idle socket (the external process keeps one per cart, about 20): a lookup of
  the socket's own entry (``opsKey`` and a Python ``__hash__`` of the address), a ``dict()``
  built per socket, ``fileno``, an expiry check;
- ``_processIntentTimeouts`` copies its transmits into new dicts and lists and puts each one
  back, after a retry check, an expiry check and a ``delay`` for each, even when none is due.

`_runWithExpiry` here is thespian's method with the same steps in the same order; what
changes is how it finds out that a step has nothing to do:

- the watch lists and the deadlines are built in one pass per kind of socket; a transmit or
  incoming socket without a pause is known not to be pausing (thespian's ``backoffPause()``
  returns a zero ``timedelta`` and changes nothing then); one that has a pause still goes
  through thespian's ``backoffPause()``. With this package's poll selector the sockets are
  handed over in one call (`_TurnSelector.want`, the same checks as ``register``).
- an idle socket is still the one its address maps to when it is still among the idle
  sockets: thespian only ever stores a new ``IdleSocket`` under the key of its own address
  (``_finishIntent``, ``_finishIncoming``), so an identity test over the current values
  answers thespian's lookup without hashing. A socket that is ready, has no file number, has
  expired or is no longer the current one is handled by thespian's own statements, and from
  then on the walk makes thespian's lookups itself (that handling may change the map). The
  expiry check reads the deadline against one clock reading per walk instead of one per
  socket (the deadline is 20 minutes away).
- `_processIntentTimeouts` first checks, without side effects, whether any transmit would
  be stepped, retried or finished, or be stored under another key; when none would (the usual
  turn), the rebuilt dict and list would equal the current ones, so they are left as they
  are; otherwise thespian's own method runs.

`after_reads` adds one thing thespian has no way to say: "hand me this message once you have
read what is waiting" (a group commit gathers what its sockets hold before it writes; see
`PluginHost`). The turn that delivers it polls without waiting, so it comes at once when
nothing is ready.

`when_readable` / `watch_readable` add another: "hand me this message in any turn in which
this descriptor is readable", so that a thread of the process can wake the loop (a shared
host's background commit finished; the external driver has work queued while it listens).
Thespian's own watch (an actor returns ``ThespianWatch``) is reset by every message the actor
handles without returning it again.

One bug of thespian's is fixed here: a turn whose clock read less than half a microsecond
before the first pending wakeup took the time left (``timedelta(0)``, false) for no deadline
and, with no other, waited without a timeout: the process slept past its wakeups until a
message came, for good if none did. Upstream thespian would need the same (keep a zero
remaining run time among the waits).

Apart from that, what is sent and received, when, and on which socket is unchanged: the
same statements run for every socket that has something to do.
``tests/test_thespian_patches.py`` pins the loop on real sockets. Upstream thespian would
need the same: keep the watch set and the idle map between turns and look at what changed.
"""

# ruff: noqa: SLF001, N806, E741 - thespian's internals, and its method under its own names

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module

__all__ = ["after_reads", "lean_loop", "watch_readable", "when_readable"]

_PATCHED = False


def _quiet_transmit(transport: Any, fd: int, intent: Any, open_sockets: dict[Any, Any],
                    opskey: Any) -> bool:
    """Whether thespian's timeout pass would put `intent` back under `fd` without a step."""
    socket = getattr(intent, "socket", None)
    if socket is None or socket.fileno() != fd:
        return False
    if hasattr(intent, "_pauseUntil") and not intent.expired():
        return True  # thespian keeps a pausing transmit as it is
    return _waits_untouched(intent, fd, open_sockets, opskey)


def _waits_untouched(intent: Any, fd: int | None, open_sockets: dict[Any, Any],
                     opskey: Any) -> bool:
    """Whether ``_nextTransmitStepCheck(intent, -1)`` would return True and change nothing."""
    if fd == -1:
        return False  # thespian steps a transmit whose socket reads as -1
    socket_avail = opskey(intent.targetAddr) in open_sockets
    if socket_avail and hasattr(intent, "_awaitingTXSlot"):
        return False  # timeToRetry would clear the wait and step it
    retry = getattr(intent, "_retryTime", None)
    if retry is not None:
        if retry.view().expired():
            return False  # timeToRetry would clear the timer and step it
    elif socket_avail:
        return False  # timeToRetry says yes: stepped
    if intent.expired():
        return False  # finished as timed out
    return bool(intent.delay())  # a zero delay steps it


def _process_intent_timeouts(original: Any) -> Any:
    def _processIntentTimeouts(self: Any) -> Any:  # noqa: N802 - thespian's name
        transmits = self._transmitIntents
        waiting = self._waitingTransmits
        if transmits or waiting:
            open_sockets = getattr(self, "_openSockets", {})
            opskey = _tcp.opsKey
            for fd, intent in transmits.items():
                if not _quiet_transmit(self, fd, intent, open_sockets, opskey):
                    return original(self)
            for intent in waiting:
                if hasattr(intent, "socket") or \
                        not _waits_untouched(intent, None, open_sockets, opskey):
                    return original(self)
        # Nothing due: thespian's rebuild would give back equal dict and list (same items,
        # same order); new containers, as it makes, so a caller's reference is not aliased.
        self._transmitIntents = dict(transmits)
        self._waitingTransmits = list(waiting)
        return None

    return _processIntentTimeouts


def _pausing(item: Any) -> Any:
    """``item.backoffPause()`` as thespian calls it: only an item with a pause can be pausing."""
    if not hasattr(item, "_pauseUntil"):
        return False  # thespian: timedelta(0), nothing changed
    return item.backoffPause()


def _runWithExpiry(self: Any, incomingHandler: Any) -> Any:  # noqa: N802,N803 - thespian's
    t = _tcp
    if not hasattr(self, "_openSockets"):
        return _ORIGINAL_RUN(self, incomingHandler)
    current_time = t.currentTime
    wait_for_ack = t.TCPTransport._XMITStepWaitForAck
    xmitOnly = incomingHandler == t.TransmitOnly or \
        isinstance(incomingHandler, t.TransmitOnly)

    if hasattr(self, "_aborting_run"):
        delattr(self, "_aborting_run")

    while (not hasattr(self, "_aborting_run") or
           (self._aborting_run and
            (len(self._transmitIntents) > 0 or
             len(self._waitingTransmits) > 0))):

        ct = current_time()
        if self.run_time.view(ct).expired():
            break

        if xmitOnly:
            if not self._transmitIntents and not self._waitingTransmits:
                return 0
        else:
            while self._incomingEnvelopes:
                rEnv = self._incomingEnvelopes.pop(0)
                if incomingHandler is None:
                    return rEnv
                r = t.Thespian__Run_HandlerResult(incomingHandler(rEnv))
                if not r:
                    return r

        with t.exclusive_processing(self):
            # thespian: the fds of the unpaused transmits (sending ones to write, the one
            # waiting for its ACK to read), the unpaused incoming sockets (fd 0 left out, as
            # its filter(None) does), the idle sockets, the listen socket, the watches; the
            # wait is the least non-zero delay of the run, the transmits, the waiting
            # transmits and the incoming sockets.
            wsend: list[Any] = []
            wrecv: list[Any] = []
            delays: list[Any] = []
            run_left = self.run_time.view(ct).remaining()
            if run_left is not None:
                # Thespian drops every false delay (``filter(None, ...)``), and a run time less
                # than half a microsecond away reads as ``timedelta(0)``, which is false: with
                # nothing else to bound it, the turn waited for ever, past the wakeup due then,
                # until a message came. An idle process slept through its timers for good (a
                # host's cells' timers ride on one wakeup). Not expired (checked above): the
                # wait is at most what is left, polling if that rounds to nothing.
                delays.append(run_left)
            for T in self._transmitIntents.values():
                if not _pausing(T):
                    sock = getattr(T, "socket", None)
                    fd = sock.fileno() if sock else None
                    if fd:
                        (wrecv if T.stage == wait_for_ack else wsend).append(fd)
            incoming = self._incomingSockets
            for I, inc in incoming.items():
                if I and not _pausing(inc):
                    wrecv.append(I)
            wrecv.extend([s.socket.fileno() for s in self._openSockets.values()])
            for T in self._transmitIntents.values():
                d = T.delay(ct)
                if d:
                    delays.append(d)
            for W in self._waitingTransmits:
                d = W.delay()
                if d:
                    delays.append(d)
            for inc in incoming.values():
                d = inc.delay(ct)
                if d:
                    delays.append(d)
            # n.b. if a long period of time has elapsed (e.g. laptop
            # sleeping) then delays could be negative.
            delay = max(0, t.timePeriodSeconds(min(delays))) if delays else None
            if self._pa_after_reads:
                delay = 0  # a message waits for this turn's reads: poll, do not wait

            if not xmitOnly:
                wrecv.append(self.socket.fileno())

            if self._watches:
                wrecv.extend(self._watches)
            readable = self._pa_readable
            if readable:  # `when_readable`
                wrecv.extend(readable)

        rrecv: list[Any] = []
        rsend: list[Any] = []
        rerr: list[Any] = []
        try:
            sel = t.selectors.DefaultSelector()
            want = getattr(sel, "want", None)
            if want is None or not want(wrecv, wsend):
                for each in wrecv:
                    sel.register(each, t.selectors.EVENT_READ)
                for each in wsend:
                    sel.register(each, t.selectors.EVENT_WRITE)
            events = sel.select(delay)
            for key, event in events:
                if event & t.selectors.EVENT_READ:
                    rrecv.append(key.fd)
                if event & t.selectors.EVENT_WRITE:
                    rsend.append(key.fd)
            sel.close()
        except (OSError, ValueError) as ex:
            t.thesplog("selector exception: %s", ex, level=logging.DEBUG)
            errnum = errno.EBADF if isinstance(ex, ValueError) \
                else getattr(ex, "errno", ex.args[0])
            if t.err_select_retry(errnum):
                # probably a change in descriptors
                t.thesplog("select retry on %s", ex, level=logging.DEBUG)
                self._check_indicators()
                continue
            if t.err_bad_fileno(errnum):
                # As thespian: find the bad descriptor (a watched one, or one of its own).
                if errnum == errno.EBADF:
                    bad = []
                    for each in self._watches:
                        try:
                            t.TCPTransport._check_fd(each)
                        except Exception as ex2:  # noqa: BLE001 - as thespian
                            t.thesplog("watcher %s is bad: %", each, ex2)
                            bad.append(each)
                    if not bad:
                        t.thesplog("bad internal file descriptor!")
                        try:
                            t.TCPTransport._check_fd(self.socket.fileno())
                        except Exception as ex2:  # noqa: BLE001 - as thespian
                            t.thesplog("listen %s is bad: %s", self.socket.fileno, ex2)
                            rerr.append(self.socket.fileno)
                        for each in wrecv:
                            try:
                                t.TCPTransport._check_fd(each)
                            except Exception as ex2:  # noqa: BLE001 - as thespian
                                t.thesplog("wrecv %s is bad: %s", each, ex2)
                                rerr.append(each)
                        for each in wsend:
                            try:
                                t.TCPTransport._check_fd(each)
                            except Exception:  # noqa: BLE001 - as thespian
                                t.thesplog("wsend %s is bad", each)
                                rerr.append(each)
                    else:
                        self._watches = [W for W in self._watches if W not in bad]
                        continue
                # If it was a regular file descriptor, fall through to clean it up.
            else:
                raise

        with t.exclusive_processing(self):  # modifying internal structures...

            if rerr:
                for errfileno in rerr:
                    self._cancel_fd_ops(errfileno)

            origPendingSends = len(self._transmitIntents) + \
                len(self._waitingTransmits)

            # As thespian: the idle sockets before checking incoming and transmit (those may
            # modify _openSockets), so only the sockets indicated by select are processed,
            # and only once each.
            idleSockets = list(self._openSockets.values())

            # Handle newly receivable data
            for each in rrecv:
                # n.b. ignore this if trying to quiesce
                if each == self.socket.fileno() and not xmitOnly:
                    self._acceptNewIncoming()
                    continue

                if each in self._incomingSockets:
                    inc = self._incomingSockets[each]
                    del self._incomingSockets[each]
                    inc = self._handlePossibleIncoming(inc, each, has_exclusive_flag=True)
                    if inc:
                        self._incomingSockets[inc.socket.fileno()] = inc
                    continue

                if self._processIntents(each):
                    continue

            _walk_idle_sockets(self, idleSockets, rrecv)

            # Handle newly sendable data.  Handle this after
            # receives since receives might create outbound
            # traffic that we can immediately start processing.
            for eachs in rsend:
                self._processIntents(eachs)

            # Handle timeouts.  Do this after transmits in case
            # the transmit can be completed just at the timeout
            # boundary: we prefer success to timeout.
            self._processIntentTimeouts()
            rmvIncoming = []
            for I in self._incomingSockets:
                newI = self._handlePossibleIncoming(self._incomingSockets[I],
                                                    -1,
                                                    has_exclusive_flag=True)
                if newI:
                    # newI will possibly be new incoming data, but
                    # it's going to use the same socket
                    self._incomingSockets[I] = newI
                else:
                    rmvIncoming.append(I)
            for I in rmvIncoming:
                del self._incomingSockets[I]

            watchready = [W for W in self._watches if W in rrecv]
            if watchready:
                self._incomingEnvelopes.append(
                    t.ReceiveEnvelope(self.myAddress, t.WatchMessage(watchready)))
            if readable:  # `when_readable`: its message for each descriptor that is ready
                for fd, ready_envelope in readable.items():
                    if fd in rrecv:
                        self._incomingEnvelopes.append(ready_envelope)

        after = self._pa_after_reads
        if after:  # `deliver_after_reads`: behind what this turn read
            self._incomingEnvelopes.extend(after)
            after.clear()

        # Initiate completion operations for transmits (which may
        # result in other transmit calls).
        senddone = self._finished_intents
        self._finished_intents = []
        for intent, sts in senddone:
            intent.tx_done(sts)

        # Check if it's time to quit
        if not rrecv and not rsend:
            if not rerr and self.run_time.view().expired():
                # Timeout, give up
                return t.Thespian__Run_Expired()
            continue

        if xmitOnly:
            remXmits = len(self._transmitIntents) + \
                len(self._waitingTransmits)
            if origPendingSends > remXmits or remXmits == 0:
                return remXmits

        # Handle queued internal "received" data
        if not xmitOnly:
            while self._incomingEnvelopes:
                rEnv = self._incomingEnvelopes.pop(0)
                if incomingHandler is None:
                    return rEnv
                r = t.Thespian__Run_HandlerResult(incomingHandler(rEnv))
                if not r:
                    return r

    return t.Thespian__Run_Terminated() \
        if hasattr(self, "_aborting_run") else \
        t.Thespian__Run_Expired()


def _walk_idle_sockets(self: Any, idle_sockets: list[Any], rrecv: list[Any]) -> None:
    """Thespian's walk over the idle sockets taken before this turn's receives."""
    t = _tcp
    open_sockets = self._openSockets
    current = list(open_sockets.values())
    # Identity of the current idle sockets: thespian stores each new IdleSocket once, under
    # opsKey(its rmtaddr), so one still among them is what thespian's lookup would find.
    present = None if current == idle_sockets else set(map(id, current))
    now = t.currentTime()
    exact = False  # once a socket was handled, thespian's own lookups for the rest
    for idle in idle_sockets:
        if not exact:
            if present is None or id(idle) in present:
                try:
                    fnum = idle.socket.fileno()
                except OSError:
                    fnum = None  # thespian's own statements below decide
                if fnum is not None and fnum not in rrecv:
                    deadline = idle.validity._time_to_quit
                    if deadline is None or now < deadline:
                        continue  # current, not ready, not expired: thespian does nothing
            exact = True
        rmtaddr = idle.rmtaddr
        curOpen = getattr(self, "_openSockets", {}).get(t.opsKey(rmtaddr), None)
        if curOpen and curOpen != idle:
            # duplicate sockets to remote, and this one is
            # no longer tracked, so close it and keep
            # existing openSocket.
            t._safeSocketShutdown(idle)
        else:
            fnum = None
            try:
                fnum = idle.socket.fileno()
            except OSError as ex:
                if not t.err_bad_fileno(ex.errno):
                    raise
            if fnum is None or fnum in rrecv:
                if hasattr(self, "_openSockets") and t.opsKey(rmtaddr) in self._openSockets:
                    del self._openSockets[t.opsKey(rmtaddr)]
                if fnum:
                    incoming = self._handlePossibleIncoming(
                        t.TCPIncomingPersistent(rmtaddr, idle.socket),
                        fnum,
                        has_exclusive_flag=True)
                    if incoming:
                        self._incomingSockets[incoming.socket.fileno()] = incoming
            elif idle.expired():
                t._safeSocketShutdown(idle)
                if hasattr(self, "_openSockets") and t.opsKey(rmtaddr) in self._openSockets:
                    del self._openSockets[t.opsKey(rmtaddr)]


_ORIGINAL_RUN: Any = None


def after_reads(actor: Any) -> Callable[[Any], None] | None:
    """A function that hands `actor` a message of its own once its loop has read what is ready.

    For an actor that would send itself a message to act on later (a group commit's
    ``Flush``): a send to itself is queued at once, before the transport reads anything more,
    so every frame already waiting in a socket comes after it; and thespian wakes its own loop
    for it with a connection to its own listening socket (``interrupt_wait``: a socket, a
    connect, an accept, a read of the end and two closes per message), which a message from the
    loop's own thread does not need. The message handed to the returned function is delivered
    (sender: the actor itself) after the loop's next turn, which polls every socket without
    waiting, has read what was ready then: behind those messages, and at once when nothing
    was. Call it only from the actor's own receive (the loop's thread).

    None where the actor does not run on thespian's TCP transport with this module's loop
    (the simple base, another transport, another thespian): then send the message as usual.
    """
    transport: Any = getattr(getattr(actor, "_myRef", None), "transport", None)
    if not _is_patched(transport):
        return None
    waiting = transport.__dict__.get("_pa_after_reads")
    if type(waiting) is not list:
        waiting = transport._pa_after_reads = []
    envelope = _tcp.ReceiveEnvelope
    address = transport.myAddress

    def deliver(message: Any) -> None:
        waiting.append(envelope(address, message))

    return deliver


def when_readable(actor: Any, fd: int, message: Any) -> Callable[[], None] | None:
    """Hand `actor` `message` after each turn of its loop in which descriptor `fd` is readable.

    For a thread of the actor's own that must wake the actor's loop (a background commit that
    finished, see `local_journal`): it makes `fd` readable (a byte down a pipe) and the loop,
    which watches `fd` with its sockets, delivers `message` (sender: the actor itself) in that
    turn; the actor drains `fd`. Thespian's own way (an actor returns ``ThespianWatch``) is
    reset by every other message the actor handles. Returns the function that stops the
    watch; None where the actor does not run on this module's loop (as `after_reads`). Call
    both only from the actor's own receive (the loop's thread).
    """
    return watch_readable(getattr(getattr(actor, "_myRef", None), "transport", None), fd, message)


def watch_readable(transport: Any, fd: int, message: Any) -> Callable[[], None] | None:
    """`when_readable` for a transport: an actor's, or an external system's (its driver).

    A listen of the external system returns `message` when `fd` becomes readable, so another
    thread can cut a listen short.
    """
    if not _is_patched(transport):
        return None
    readable = transport.__dict__.get("_pa_readable")
    if type(readable) is not dict:
        readable = transport._pa_readable = {}
    readable[fd] = _tcp.ReceiveEnvelope(transport.myAddress, message)

    def forget() -> None:
        readable.pop(fd, None)

    return forget


def _is_patched(transport: Any) -> bool:
    """True if `transport` is a TCP transport that runs this module's loop."""
    return _PATCHED and isinstance(transport, _tcp.TCPTransport) and \
        type(transport)._runWithExpiry is _runWithExpiry and hasattr(transport, "_openSockets")


def lean_loop() -> None:
    """Patch once per process (idempotent); a no-op on a thespian that differs."""
    global _PATCHED, _ORIGINAL_RUN  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    cls = getattr(_tcp, "TCPTransport", None)
    names = ("currentTime", "TransmitOnly", "Thespian__Run_HandlerResult", "timePeriodSeconds",
             "thesplog", "err_select_retry", "err_bad_fileno", "ReceiveEnvelope", "WatchMessage",
             "Thespian__Run_Expired", "Thespian__Run_Terminated", "opsKey",
             "_safeSocketShutdown", "TCPIncomingPersistent", "selectors", "exclusive_processing")
    if cls is None or not all(hasattr(_tcp, name) for name in names) or \
            getattr(cls, "_XMITStepWaitForAck", None) != 4 or \
            not all(hasattr(cls, name) for name in (
                "_runWithExpiry", "_processIntentTimeouts", "_check_fd", "_processIntents",
                "_handlePossibleIncoming", "_acceptNewIncoming", "_cancel_fd_ops")):
        return  # another thespian version: leave it alone
    _ORIGINAL_RUN = cls._runWithExpiry
    cls._pa_after_reads = ()  # `after_reads`: a transport's own list once an actor asks
    cls._pa_readable = ()  # `when_readable`: a transport's own dict once an actor asks
    cls._processIntentTimeouts = _process_intent_timeouts(cls._processIntentTimeouts)
    cls._runWithExpiry = _runWithExpiry
    _PATCHED = True
