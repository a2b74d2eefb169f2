"""Make thespian's simple base cost the same per message with 10,000 live actors as with 100.

Thespian 4.0.1's ``simpleSystemBase`` keeps every pending ``wakeupAfter`` timer in a list:
before each delivered message it partitions the whole list to find expired ones, and whenever
its send queue runs dry it takes ``min()`` over the whole list (comparing ``ExpirationTimer``
objects, each comparison a few Python calls). Every persistent actor schedules a
recovery-timeout wakeup, so the cost of a message grew with the number of live actors. Its send
queue is a list popped from the front, which is O(n) in the queued messages.

This replaces both with the structures they need: the pending wakeups become a heap ordered by
deadline (add, next and pop-expired in O(log n)), the send queue a deque. What thespian sees is
unchanged: the same methods, the same `WakeupMessage`s, fired in deadline order. Upstream would
need the same two changes in ``WakeupManager`` and ``ActorSystemBase.__init__``;
``tests/test_thespian_patches.py`` pins the behaviour.

It also makes the simple base's per-message debug line cheap while debug logging is off:
thespian's ``actor_base_receive`` called ``logging.getLogger('Thespian')`` (a lock and a
lookup) for every delivered message, about 1 us; the patched one keeps the logger and asks it
whether debug is enabled first, and logs the same line when it is.

And it runs the send queue with less bookkeeping per message when thespian runs it to the end
(``tell``, and the driver's direct batches, `simple_direct`): thespian's ``_runSends`` called
``_realizeWakeups`` before every message (a clock read and a scan even when no timer is due),
and ``_runSingleSend`` then tested each message against four special kinds of thespian message
one by one, compared addresses with a Python ``__eq__`` and went through two more calls to
reach the actor. The patched loop checks the earliest deadline inline and hands an ordinary
first-time message straight to the actor's receive, with thespian's own failure handling
(logged, retried up to the poison limit); every other message, and every ``listen``, takes
thespian's own path. `deliver_in_order` gives the driver's batches the same treatment without
queueing them when the queue is empty, and a message for the outside (the external
requester, whose receive only appends to the list the driver takes replies from) is appended
to that list when it is sent (``actor_send``) instead of being queued and delivered.

Last, a message for an actor that exited while its registry entry stays (until its parent
handles the ``ChildActorExited``: a message sent right behind a stop) went nowhere: thespian's
``_runSingleSend`` dropped it although a dead-letter handler was registered ("a Dead Actor
and there is no DeadLetterHandler"). It now reaches that handler as a ``DeadEnvelope``, as a
message for an address with no entry does (upstream: the same test in ``_runSingleSend``).
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import traceback
from time import monotonic
from typing import Any

from thespian.actors import (
    ActorExitRequest,
    ActorSystemMessage,
    ChildActorExited,
    DeadEnvelope,
    ValidatedSource,
)
from thespian.system import simpleSystemBase as _simple  # noqa: N813 - thespian's module name
from thespian.system.messages.status import Thespian_StatusReq
from thespian.system.timing import ExpirationTimer, currentTime

from persistent_actors._protocol import InOrder

__all__ = ["deliver_in_order", "fast_wakeup_checks", "run_until_idle", "runs_in_order"]

_PATCHED = False
# Ties between equal deadlines fire in the order they were added, as thespian's list did.
_ORDER = itertools.count()


class _SendQueue(collections.deque[Any]):
    """Thespian's pending-send list as a deque: ``pop(0)`` is O(1) instead of O(n)."""

    def pop(self, index: int = -1) -> Any:
        """``pop(0)`` takes the oldest entry (thespian's only use); ``pop()`` the newest."""
        if index == 0:
            return self.popleft()
        if index == -1:
            return super().pop()
        raise IndexError("the send queue pops only from its ends")


def _deadline(timer: Any) -> float:
    due = timer._time_to_quit  # noqa: SLF001 - thespian's own timer field
    return math.inf if due is None else float(due)


def _add_wakeup(self: Any, from_actor: Any, time_period: Any, payload: Any) -> None:
    timer = ExpirationTimer(time_period)
    heapq.heappush(self._wakeUps, (_deadline(timer), next(_ORDER), (from_actor, timer, payload)))


def _pop_expired_wakeups(self: Any, ct: float) -> list[Any]:
    heap = self._wakeUps
    expired = []
    while heap and heap[0][0] <= ct:  # thespian: expired once now >= deadline
        expired.append(heapq.heappop(heap)[2])
    return expired


def _next_wakeup(self: Any) -> Any:
    return self._wakeUps[0][2][1] if self._wakeUps else None


def _add_wakeups_to_status(self: Any, statusmsg: Any) -> Any:
    statusmsg.addWakeups([(entry[0], entry[1]) for _, _, entry in sorted(self._wakeUps)])
    return statusmsg


_THESPIAN_LOG = logging.getLogger("Thespian")


def _actor_base_receive(actor: Any, msg: Any, sender: Any) -> None:
    if _THESPIAN_LOG.isEnabledFor(logging.DEBUG):
        _THESPIAN_LOG.debug('Actor "%s" got message "%s" from "%s"', actor, msg, sender)
    actor.receiveMessage(msg, sender)


# Messages thespian treats specially in ``_runSingleSend``: they always take its own path.
_SPECIAL = (ValidatedSource, Thespian_StatusReq, ActorExitRequest, ChildActorExited)
_original_run_sends: Any = None
# While `deliver_in_order` hands a batch straight to its actors, how many of its messages are
# still to come. They are not in the send queue, yet they are queued work: a persistent actor
# must not take the direct journal path (`direct_journal`), which would write each request of
# the batch as its own transaction, but join the batch the host gathers. Process-wide: another
# simple-base system on another thread would at worst join a batch where it could write.
BATCH_FOLLOWS = [0]
# Seconds one run of the send queue goes on before it returns with the rest still queued
# (`_run_sends`; checked after each message). Thespian runs the queue until it is empty, so an
# actor that keeps sending itself messages (a loop of ticks, two actors answering each other,
# a persist from every persist handler) kept the one thread in that run: no external message
# was delivered, no reply collected, no shutdown went through. The driver runs what is left at
# once, after taking the replies and queueing what arrived from outside (behind it: the queue
# stays in order). A pass of service traffic takes a few milliseconds and runs in one go.
PASS_SECONDS = 0.02


def run_until_idle(base: Any, seconds: float) -> None:
    """Run `base`'s send queue until nothing is queued, for at most `seconds`.

    A shutdown's last run: one run stops after `PASS_SECONDS` (fairness), and thespian's
    shutdown drops what is still queued, so the exit requests of the actors after a slow step
    (a plugin's ``close``) were dropped: their ``post_stop`` never ran, their plugin threads
    and files stayed open.
    """
    deadline = monotonic() + seconds
    while getattr(base, "_pendingSends", None) and monotonic() < deadline:
        base._runSends()  # noqa: SLF001 - thespian's own loop (patched, or its own)


def _run_sends(self: Any, timeout: Any = None, stop_on_available: Any = False) -> None:
    """Thespian's ``_runSends`` with less overhead (no timeout, nothing awaited).

    Runs the queue to its end or for about `PASS_SECONDS`, whichever comes first.
    """
    pending = self._pendingSends
    if timeout is not None or stop_on_available or type(pending) is not _SendQueue:
        _original_run_sends(self, timeout, stop_on_available)
        return
    heap = self._wakeUps
    lock = self._private_lock
    registry = self.actorRegistry
    limit = self.procLimit
    # Thespian's debug line per delivered message, checked once per run instead of per message.
    quiet = not _THESPIAN_LOG.isEnabledFor(logging.DEBUG)
    numsends = 0
    stop_at = monotonic() + PASS_SECONDS
    while pending:
        numsends += 1
        if limit and numsends > limit:
            raise RuntimeError("Too many sends")
        if monotonic() > stop_at:  # the rest stays queued: the caller runs it next
            return
        if heap and heap[0][0] <= currentTime():  # thespian's _realizeWakeups, only when due
            self._realizeWakeups()
        with lock:  # held while the message is handled, as in thespian's loop
            try:
                ps = pending.popleft()
            except IndexError:
                continue
            msg = ps.msg
            if type(msg) is InOrder and not ps.attempts:
                _hand_over(pending, registry, ps.sender, msg.sends, quiet)
                continue
            tgt: Any = None if ps.attempts or isinstance(msg, _SPECIAL) else \
                registry.get(ps.toActor.actorAddressString, None)
            instance = tgt.instance if tgt else None
            if not instance:  # special, retried, dead letter or dead actor: thespian's path
                self._runSingleSend(ps)
                continue
            try:
                if quiet:  # what _actor_base_receive does with debug logging off
                    instance.receiveMessage(msg, ps.sender)
                else:
                    instance._receive(msg, ps.sender)  # noqa: SLF001 - as _callActorWithMessage
            except Exception:  # thespian's handling: log, retry, then poison
                logging.getLogger("Thespian").warning(
                    "Failure of Actor %s during message processing (attempt %s)",
                    tgt.address, ps.attempts, exc_info=True)
                ps.attempts += 1
                ps.fail_details = traceback.format_exc()
                pending.append(ps)


def _failed_first_try(pending: Any, tgt: Any, sender: Any, msg: Any, address: Any) -> None:
    """Thespian's handling of a first delivery that raised: log it, queue it for the retries.

    Call it from the ``except`` block (it logs and records the exception being handled); a
    message that keeps failing is then returned to its sender as poison by thespian's path.
    """
    logging.getLogger("Thespian").warning(
        "Failure of Actor %s during message processing (attempt %s)",
        tgt.address, 0, exc_info=True)
    ps = _simple.PendingSend(sender, msg, address)
    ps.attempts = 1
    ps.fail_details = traceback.format_exc()
    pending.append(ps)


def _handle_run(pending: Any, registry: Any, sender: Any, sends: Any, quiet: bool, *,
                lock: Any | None) -> int:
    """Hand each (address, message) of `sends` from `sender` straight to its actor, in order.

    Stops at the first message the send loop would not hand straight to an actor (thespian's
    own kinds, dead letters, an actor not started) and returns how many it handed over; the
    caller queues the rest. `lock` is held around each message, as thespian's loop holds its
    lock (None where the caller holds it already: no ``nullcontext``, whose ``__enter__`` and
    ``__exit__`` cost two Python calls per message). A failure is handled as thespian does
    (`_failed_first_try`). While messages follow, `BATCH_FOLLOWS` counts them: they are
    queued work, so a persist they cause joins the group commit.
    """
    follows = BATCH_FOLLOWS
    count = len(sends)
    done = 0
    try:
        for address, msg in sends:
            if isinstance(msg, _SPECIAL):
                break
            # ``actorAddressString`` and ``instance`` without their property calls: a simple-base
            # address holds its string (see `_key`), a registry entry its instance in ``_inst``.
            key = address._aaddr  # noqa: SLF001
            tgt: Any = registry.get(key if type(key) is str else address.actorAddressString, None)
            instance = tgt._inst if tgt else None  # noqa: SLF001
            if not instance:
                break
            done += 1
            follows[0] = count - done
            if lock is not None:
                lock.acquire()
            try:
                if quiet:  # what _actor_base_receive does with debug logging off
                    instance.receiveMessage(msg, sender)
                else:
                    instance._receive(msg, sender)  # noqa: SLF001 - as _callActorWithMessage
            except Exception:  # noqa: BLE001 - logged there: thespian's handling, retry, then poison
                _failed_first_try(pending, tgt, sender, msg, address)
            finally:
                if lock is not None:
                    lock.release()
    finally:
        follows[0] = 0  # also on a BaseException: a stale count would only cost speed
    return done


def _hand_over(pending: Any, registry: Any, sender: Any, sends: Any, quiet: bool) -> None:
    """Handle an `InOrder`'s messages as consecutive messages at the head of the send queue.

    Called with thespian's lock held, where the `InOrder` was popped: each ordinary message
    goes straight to its actor, in order, and what they send queues behind the rest, as if
    each had been queued on its own. From the first one the loop would not hand straight to
    an actor (thespian's own kinds, dead letters) on, the rest go back to the front of the
    queue, in order, for thespian's own path. While messages follow, `BATCH_FOLLOWS` counts
    them: they are queued work, so a persist they cause joins the group commit.
    """
    done = _handle_run(pending, registry, sender, sends, quiet, lock=None)
    if done < len(sends):
        pending.extendleft(reversed([_simple.PendingSend(sender, msg, address)
                                     for address, msg in sends[done:]]))


def runs_in_order(actor: Any) -> bool:
    """True if `actor` runs on a simple base whose send loop hands over an `InOrder` itself.

    Elsewhere an `InOrder` reaches its receiver as an ordinary message.
    """
    base = getattr(getattr(getattr(actor, "_myRef", None), "_system", None), "_systemBase", None)
    return type(getattr(base, "_pendingSends", None)) is _SendQueue and \
        getattr(type(base), "_runSends", None) is _run_sends


_original_actor_send: Any = None


def _outside_of(base: Any) -> tuple[Any, list[Any]] | None:
    """The external requester's address and the list its messages wait in, or None."""
    requester = base.actorRegistry.get("System:ExternalRequester")
    instance: Any = getattr(requester, "instance", None)
    if type(instance) is not _simple.External:
        return None
    if not hasattr(instance, "responses"):  # thespian creates it on the first message
        instance.responses = []
    return requester.address, instance.responses


def _actor_send(self: Any, from_actor: Any, to_actor: Any, msg: Any) -> None:
    """Thespian's ``actor_send``; a message for the outside goes straight into its list.

    The external requester is thespian's sink for the outside: its receive only appends the
    message to the list that ``listen`` and the driver (`simple_direct`) take replies from. An
    ordinary message to it (a reply to an ask) is appended at once instead of queued, delivered
    and appended: the order among the messages to the outside is the order they were sent
    either way, and nobody reads the list before the send loop returns. Thespian's own kinds
    of message keep its path. (Thespian's ``listen``, which stops running the queue once a reply
    waits, may stop a little earlier; what is left stays queued for its next call.)
    """
    outside = self._pa_outside
    if outside is not None and to_actor is outside[0] and not isinstance(msg, _SPECIAL):
        outside[1].append(msg)
        return
    _original_actor_send(self, from_actor, to_actor, msg)


def deliver_in_order(base: Any, sender: Any, sends: Any) -> None:
    """Send each (address, message) of `sends` from `sender`, in order, and run until idle.

    The same as appending them all to the send queue and running it (thespian's ``tell`` for
    many messages): when the queue is empty, as it is between the driver's passes, they would
    be the first messages it pops, one after another, and everything they send queues behind
    them. So each ordinary message is handed straight to its actor, without a queue entry, in
    that order; a failure is handled as the patched loop does (logged, queued again for the
    retries). From the first message that the loop would not hand straight to its actor
    (thespian's own kinds, dead letters, an actor not started) on, and whenever the queue is
    not empty, the rest are queued instead, in order, so none can overtake it.
    """
    base._realizeWakeups()  # noqa: SLF001 - first, so that they fire between the last call and this one
    pending = base._pendingSends  # noqa: SLF001
    lock = base._private_lock  # noqa: SLF001
    registry = base.actorRegistry
    pending_send = _simple.PendingSend
    quiet = not _THESPIAN_LOG.isEnabledFor(logging.DEBUG)  # as in `_run_sends`
    start = 0
    if not pending and type(pending) is _SendQueue and not base.procLimit:
        start = _handle_run(pending, registry, sender, sends, quiet, lock=lock)
    if start < len(sends):
        with lock:
            for address, msg in sends[start:]:
                pending.append(pending_send(sender, msg, address))
    base._runSends()  # noqa: SLF001


_original_run_single_send: Any = None


def _run_single_send(self: Any, ps: Any) -> None:
    """Thespian's ``_runSingleSend``; a message for an exited actor goes to the dead letters."""
    if ps.attempts <= 2 and not isinstance(ps.msg, ActorSystemMessage):
        address = ps.toActor.actorAddressString
        tgt = self.actorRegistry.get(address, None)
        if tgt and not tgt.instance:
            box = self.actorRegistry.get("DeadLetterBox", None)
            if box and box.instance:
                self._callActorWithMessage(box, ps, DeadEnvelope(address, ps.msg), ps.sender)
                return
    _original_run_single_send(self, ps)


def fast_wakeup_checks() -> None:
    """Patch the simple base once per process; idempotent; a no-op on other thespian internals."""
    global _PATCHED, _original_run_sends  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    manager = getattr(_simple, "WakeupManager", None)
    base = getattr(_simple, "ActorSystemBase", None)
    patches = {"_add_wakeup": _add_wakeup, "_pop_expired_wakeups": _pop_expired_wakeups,
               "_next_wakeup": _next_wakeup, "add_wakeups_to_status": _add_wakeups_to_status}
    if manager is None or base is None or not all(hasattr(manager, n) for n in patches):
        return  # another thespian version: leave it alone
    original_init = base.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - thespian's name
        original_init(self, *args, **kwargs)
        self._pendingSends = _SendQueue(self._pendingSends)
        if patch_send:
            self._pa_outside = _outside_of(self)

    patch_send = callable(getattr(base, "actor_send", None)) and \
        callable(getattr(_simple, "External", None))
    for name, method in patches.items():  # thespian's own (private) methods, replaced
        setattr(manager, name, method)
    base.__init__ = __init__
    if callable(getattr(base, "_runSends", None)) and hasattr(base, "_runSingleSend"):
        _original_run_sends = base._runSends  # noqa: SLF001 - thespian's own method, wrapped
        base._runSends = _run_sends  # noqa: SLF001
        global _original_run_single_send  # noqa: PLW0603
        _original_run_single_send = base._runSingleSend  # noqa: SLF001
        base._runSingleSend = _run_single_send  # noqa: SLF001
    if patch_send:
        global _original_actor_send  # noqa: PLW0603
        _original_actor_send = base.actor_send
        base._pa_outside = None  # noqa: SLF001 - bases created before the patch keep thespian's path
        base.actor_send = _actor_send
    if callable(getattr(_simple, "actor_base_receive", None)):
        _simple.actor_base_receive = _actor_base_receive  # bound to each actor at creation
    _PATCHED = True
