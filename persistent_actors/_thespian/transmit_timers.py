"""Let thespian's TCP transport read its transmit and socket deadlines without timer objects.

On every turn of its loop, thespian 4.0.1's ``TCPTransport._runWithExpiry`` asks each pending
``TransmitIntent`` and each incoming socket how long it may wait (``delay``) and checks each
intent for expiry (``expired``). Each answer builds an ``ExpirationTimerView`` per timer
involved (three for an intent's ``delay``) and a ``timedelta`` per view, to take the minimum
of them. A cart process of ``service_async_mp`` turns that loop about 4.6 times per message
it receives; ``delay`` and ``expired`` were about a tenth of the carts' CPU under cProfile.

The patched methods read the deadlines (``ExpirationTimer._time_to_quit``, seconds of
``time.perf_counter``) and build one ``timedelta``: the same values as before (the minimum of
the remaining times, never below zero) and the same results for ``expired``. A case the fast
path does not cover (a timer without a deadline, an intent waiting for a transmit slot) goes
to thespian's own method. Upstream thespian would need the same: compare deadlines as floats
and build a ``timedelta`` once, if at all. ``tests/test_thespian_patches.py`` pins the values.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from thespian.system import timing
from thespian.system import transport as _transport
from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module

__all__ = ["transmit_timers"]

_PATCHED = False
_now = timing.currentTime  # what ExpirationTimer measures deadlines in


def _patch_intent(cls: Any) -> None:
    original_delay = cls.delay

    def delay(self: Any, current_time: float | None = None) -> Any:
        ct = current_time or _now()
        quit_timer = self._quitTime
        if getattr(self, "_awaitingTXSlot", False):
            return original_delay(self, ct)
        deadline = quit_timer._time_to_quit  # noqa: SLF001 - thespian's timer
        retry = getattr(self, "_retryTime", quit_timer)._time_to_quit  # noqa: SLF001
        pause = getattr(self, "_pauseUntil", quit_timer)._time_to_quit  # noqa: SLF001
        if deadline is None or retry is None or pause is None:
            return original_delay(self, ct)
        return timedelta(seconds=max(min(deadline, retry, pause) - ct, 0))

    def expired(self: Any) -> bool:
        deadline = self._quitTime._time_to_quit  # noqa: SLF001 - thespian's timer
        return deadline is not None and _now() >= deadline

    cls.delay = delay
    cls.expired = expired


def _patch_incoming(cls: Any) -> None:
    original_delay = cls.delay

    def delay(self: Any, current_time: float | None = None) -> Any:
        ct = current_time or _now()
        expires = self._expires
        deadline = expires._time_to_quit  # noqa: SLF001 - thespian's timer
        pause = getattr(self, "_pauseUntil", expires)._time_to_quit  # noqa: SLF001
        if deadline is None or pause is None:
            return original_delay(self, ct)
        return timedelta(seconds=max(min(deadline, pause) - ct, 0))

    cls.delay = delay


def _patch_idle(cls: Any) -> None:
    def expired(self: Any) -> bool:
        deadline = self.validity._time_to_quit  # noqa: SLF001 - thespian's timer
        return deadline is not None and _now() >= deadline

    cls.expired = expired


def transmit_timers() -> None:
    """Patch once per process (idempotent); a no-op on a thespian without these classes."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    intent = getattr(_transport, "TransmitIntent", None)
    incoming = getattr(_tcp, "TCPIncoming_Common", None)
    idle = getattr(_tcp, "IdleSocket", None)
    if intent is None or incoming is None or idle is None or \
            not isinstance(getattr(timing.ExpirationTimer(1), "_time_to_quit", None), float):
        return  # another thespian version: leave it alone
    _patch_intent(intent)
    _patch_incoming(incoming)
    _patch_idle(idle)
    _PATCHED = True
