"""An exiting actor process sends what it has queued, and its parent always learns of its exit.

On multiproc-tcp a parent (the guardian, or thespian's admin) waits for a
``ChildActorExited`` from each child before it exits itself, and the admin answers the
application's ``shutdown()`` only then. Thespian 4.0.1 has two ways of delivering it, and an
actor with a timer running (``self.timers``, a shared host's cell timer, any ``wakeupAfter``)
could defeat both, about one shutdown in five with a 20 ms periodic timer: the admin never
answered, thespian's ``shutdown()`` gave up after its 10 s, and the reaper killed what was left
3 s later (13 s instead of a tenth of a second).

* The child's own notice. On ``ActorExitRequest`` thespian queues ``ChildActorExited`` to the
  parent (behind whatever the actor sent while handling the request, to the same target) and
  then ``drainTransmits`` runs the transport "transmit only" until nothing is left to send
  (``systemCommon.py``, ``drainTransmits``). But the transport's ``run`` waits only until the
  first pending wakeup is due (``wakeupTransportBase._update_runtime``); a wakeup that is due
  is handed back to the caller as its ``ReceiveEnvelope`` (``_deliver_wakeups``: "transmit
  only" callers get it returned), and a ``ReceiveEnvelope`` is false (``__bool__``), which
  ``drainTransmits`` took for "no transmits left": it stopped at once, and the process exited
  with the notice unsent. `_drain_transmits` goes on draining past such a wakeup (the process
  exits: no wakeup of it is handled any more), until the transport reports nothing left to
  send or thespian's drain period (7 s) is over, as before.
* The parent's own check. A ``SIGCHLD`` makes the parent look for dead children
  (``MultiProcReplicator.childDied``) and report each one it finds as a ``ChildActorExited``
  to itself. But whenever the parent handles some child's exit, ``_childExited`` drops every
  dead child from the list that check walks, silently: a child that died without its notice
  and was dropped so (another child's notice came between its death and the ``SIGCHLD``
  check, as several children exit together at a shutdown) was never reported, and its parent
  waited for it for ever. `_child_exited` reports each dead child it drops other than the one
  whose exit is being handled, as ``childDied`` would have (a child reported twice is
  ordinary: a child's notice and the ``SIGCHLD`` check usually both report it).

``tests/test_thespian_patches.py`` pins both. Upstream thespian would need the same.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ChildActorExited
from thespian.system import multiprocCommon, systemCommon
from thespian.system.addressManager import CannotPickleAddress
from thespian.system.timing import ExpirationTimer, unexpired
from thespian.system.transport import ReceiveEnvelope, TransmitIntent, TransmitOnly
from thespian.system.utilis import thesplog

__all__ = ["exit_notices"]

_PATCHED = False


def _drain_transmits(self: Any) -> None:
    """Thespian's ``systemCommonBase.drainTransmits``, not cut short by a due wakeup."""
    drain_limit = ExpirationTimer(systemCommon.MAX_SHUTDOWN_DRAIN_PERIOD)
    for remaining in unexpired(drain_limit):
        result = self.transport.run(TransmitOnly, remaining.remaining())
        if isinstance(result, ReceiveEnvelope):
            continue  # a wakeup that came due (false, but not "nothing left"): dropped
        if not result:
            break  # no transmits left


def _address(info: Any) -> Any:
    return getattr(info, "childRealAddr", info.childAddr)


def _child_exited(self: Any, child_address: Any) -> None:
    """Thespian's ``MultiProcReplicator._childExited``, reporting the other dead it drops."""
    live: list[Any] = []
    dead: list[Any] = []
    for info in getattr(self, "_child_procs", []):
        (live if self._checkChildLiveness(info) else dead).append(info)
    self._child_procs = live
    for info in dead:
        if child_address in (info.childAddr, getattr(info, "childRealAddr", None)):
            continue  # the exit being handled
        address = _address(info)
        try:  # as childDied reports it
            self.transport.scheduleTransmit(
                None, TransmitIntent(self.transport.myAddress, ChildActorExited(address)))
        except CannotPickleAddress:
            thesplog("child %s is dead but cannot translate address to properly handle it",
                     address)


def exit_notices() -> None:
    """Install both (idempotent); a no-op on a thespian without the methods replaced."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    common = systemCommon.systemCommonBase
    replicator = multiprocCommon.MultiProcReplicator
    if not callable(getattr(common, "drainTransmits", None)) or \
            not callable(getattr(replicator, "_childExited", None)) or \
            not callable(getattr(replicator, "_checkChildLiveness", None)) or \
            not hasattr(systemCommon, "MAX_SHUTDOWN_DRAIN_PERIOD"):
        return  # another thespian: leave it alone
    common.drainTransmits = _drain_transmits
    replicator._childExited = _child_exited  # noqa: SLF001 - thespian's method, replaced
    _PATCHED = True
