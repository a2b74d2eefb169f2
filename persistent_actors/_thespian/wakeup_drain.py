"""A process whose send queue overflows keeps the timer wakeups that come due meanwhile.

On multiproc-tcp thespian 4.0.1 queues what an actor process sends once 20 transmits are in
flight; when that queue reaches ``MAX_QUEUED_TRANSMITS`` (950) the next send runs the transport
"transmit only" until it is down to ``QUEUE_TRANSMIT_UNBLOCK_THRESHOLD`` (780), or the sent
message's timeout (5 minutes) is over (``asyncTransportBase._drain_tx_queue_if_needed``, called
from ``_schedulePreparedIntent`` inside the handler that sends). It takes: a receiver that does
not acknowledge (busy in a long handler) while the process sends it ~1,000 frames, e.g. an
actor that tells it something on each tick of a timer, or forwards each message it gets.

But the transport's ``run`` waits only until the first pending wakeup is due
(``wakeupTransportBase._update_runtime``), and a wakeup that is due is handed back to a
"transmit only" caller as its ``ReceiveEnvelope`` (``_deliver_wakeups``). The drain loop
(``if 0 == self.run(TransmitOnly, ...)``) just went on, and the wakeup was gone: nothing else
holds it. So every wakeup of the process that came due while its queue drained was lost:
a periodic timer (``self.timers``) stopped for ever, a single timer never fired; in a shared
or entity host, whose actors' timers all ride on one thespian wakeup (``cells.CellHost._arm``,
which arms no new one while it believes one is pending), every timer of every actor in the
process stopped; and so could a recovery timeout, the guardian's crash check, an entity host's
idle check. Repros: an actor with a 20 ms periodic timer that tells a receiver stalled for
25 s on each tick never ticked again after ~950 ticks; one that forwards 2,000 tells (one frame
each) to a receiver stalled for 8 s lost its timer, and so did another actor of the same shared
host that sends nothing.

`_drain_tx_queue_if_needed` drains as thespian does, with the process's wakeups set aside
meanwhile (pending and already realized ones), so that the drain's ``run`` waits for transmits
only and hands none back; a wakeup that still comes back (one set during the drain, by a
transmit's callback) is kept too. After the drain every one is put back in its place, and the
loop that called the sending handler delivers the due ones as soon as the handler returns (its
``run_time`` is set to what it was, or to "now" when a realized wakeup waits).

The other "transmit only" callers: ``systemCommon.drainTransmits`` at an actor's exit (see
`exit_notice`: the process exits, its wakeups die with it) and the external system's
``_run_transport(txonly=True)`` (the application's process: it sets no wakeups) lose nothing
that matters. ``tests/test_thespian_patches.py`` pins the patch. Upstream thespian would need
the same.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from thespian.system.timing import ExpirationTimer
from thespian.system.transport import ReceiveEnvelope, TransmitOnly
from thespian.system.transport import asyncTransportBase as _async  # noqa: N813
from thespian.system.transport import wakeupTransportBase as _wakeup  # noqa: N813
from thespian.system.utilis import thesplog

__all__ = ["due_wakeups_kept"]

_PATCHED = False


@contextlib.contextmanager
def _wakeups_set_aside(transport: Any) -> Iterator[list[Any]]:
    """No wakeup of `transport` is due or realized inside; after it, all are back in place.

    Yields the list to keep what a ``run`` hands back anyway (a wakeup set inside).
    """
    lock = getattr(transport, "_wakeup_lock", None)
    if lock is None or not hasattr(transport, "_pendingWakeups") or \
            not hasattr(transport, "_activeWakeups"):
        yield []  # a transport without thespian's wakeups: nothing to set aside
        return
    with lock:
        pending, active = transport._pendingWakeups, transport._activeWakeups  # noqa: SLF001
        transport._pendingWakeups, transport._activeWakeups = [], []  # noqa: SLF001
    run_time = transport.__dict__.get("run_time")  # the deadline of the run that called us
    kept: list[Any] = []
    try:
        yield kept
    finally:
        with lock:
            added, realized = transport._pendingWakeups, transport._activeWakeups  # noqa: SLF001
            # As addWakeup keeps it: sorted by deadline, ties in the order they were set.
            transport._pendingWakeups = sorted(pending + added, key=lambda t: t[0])  # noqa: SLF001
            # _deliver_wakeups pops from the end: those realized before, in their order, first.
            transport._activeWakeups = realized + kept[::-1] + active  # noqa: SLF001
            if run_time is not None:
                if transport._activeWakeups:  # noqa: SLF001
                    run_time = ExpirationTimer(0)  # realized: delivered as soon as it may
                elif transport._pendingWakeups and \
                        transport._pendingWakeups[0][0] < run_time:  # noqa: SLF001
                    run_time = transport._pendingWakeups[0][0]  # noqa: SLF001
                transport.run_time = run_time  # the drain's runs set it to their own


def _drain_tx_queue_if_needed(self: Any, max_delay: Any = None) -> None:
    """Thespian's ``asyncTransportBase._drain_tx_queue_if_needed``, losing no wakeup."""
    v, _ = self._complete_expired_intents()
    if v < _async.MAX_QUEUED_TRANSMITS or not self._aTB_rx_pause_enabled:
        return
    # Try to drain our local work before accepting more because it looks like we're getting
    # really behind (thespian: dangerous, since other actors doing the same can deadlock).
    finish_time = ExpirationTimer(max_delay if max_delay else None)
    thesplog("Entering tx-only mode to drain excessive queue (%s > %s, drain-to %s in %s)",
             v, _async.MAX_QUEUED_TRANSMITS, _async.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD,
             finish_time, level=logging.WARNING)
    with _wakeups_set_aside(self) as kept:
        while v > _async.QUEUE_TRANSMIT_UNBLOCK_THRESHOLD:
            with finish_time as rem_time:
                if rem_time.expired():
                    break
                result = self.run(TransmitOnly, rem_time.remaining())
                if isinstance(result, ReceiveEnvelope):
                    kept.append(result)  # a wakeup set during the drain: delivered after it
                elif result == 0:
                    # The lower-level layer has nothing left to send: return, so that this
                    # layer can queue more transmits.
                    thesplog("Exiting tx-only mode because no transport work available.")
                    break
                v, _ = self._complete_expired_intents()
    thesplog("Exited tx-only mode after draining excessive queue (%s)",
             len(self._aTB_queuedPendingTransmits), level=logging.WARNING)


def due_wakeups_kept() -> None:
    """Install it (idempotent); a no-op on a thespian without what it replaces."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    base = getattr(_async, "asyncTransportBase", None)
    wakeups = getattr(_wakeup, "wakeupTransportBase", None)
    if base is None or wakeups is None or \
            not callable(getattr(base, "_drain_tx_queue_if_needed", None)) or \
            not callable(getattr(base, "_complete_expired_intents", None)) or \
            not callable(getattr(wakeups, "_deliver_wakeups", None)) or \
            not callable(getattr(wakeups, "_update_runtime", None)) or \
            not all(hasattr(_async, name) for name in
                    ("MAX_QUEUED_TRANSMITS", "QUEUE_TRANSMIT_UNBLOCK_THRESHOLD")):
        return  # another thespian: leave it alone
    base._drain_tx_queue_if_needed = _drain_tx_queue_if_needed  # noqa: SLF001
    _PATCHED = True
