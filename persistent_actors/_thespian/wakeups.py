"""Make thespian's simple base check pending wakeups in O(1) per delivered message.

Thespian 4.0.1's ``simpleSystemBase`` calls ``_realizeWakeups`` before every message it
delivers, and that partitions the whole list of pending ``wakeupAfter`` timers through three
lambdas and a fresh ``ExpirationTimerView`` per timer. Every persistent actor schedules a
recovery-timeout wakeup, so with 100 actors each message cost about 90 timer checks: a
cProfile of the 100-actor persist benchmark spent 75 % of its time there. This keeps the
earliest deadline and scans the list only once that deadline has passed; the list itself and
everything else about wakeups is unchanged.
"""

from __future__ import annotations

import math
from typing import Any

from thespian.system.simpleSystemBase import WakeupManager

_PATCHED = False


def _deadline(entry: tuple[Any, Any, Any]) -> float:
    # entry is (target, ExpirationTimer, payload); a timer without an end never fires.
    due = entry[1]._time_to_quit  # noqa: SLF001 - thespian's own timer field
    return math.inf if due is None else float(due)


def fast_wakeup_checks() -> None:
    """Patch `WakeupManager` once; idempotent. Skipped if thespian's internals differ."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    original_add = getattr(WakeupManager, "_add_wakeup", None)
    original_pop = getattr(WakeupManager, "_pop_expired_wakeups", None)
    if original_add is None or original_pop is None:
        return  # another thespian version: leave it alone

    def _add_wakeup(self: Any, from_actor: Any, time_period: Any, payload: Any) -> None:
        original_add(self, from_actor, time_period, payload)
        due = _deadline(self._wakeUps[-1])
        self._pa_earliest = min(getattr(self, "_pa_earliest", math.inf), due)

    def _pop_expired_wakeups(self: Any, ct: float) -> list[Any]:
        if not self._wakeUps or ct < getattr(self, "_pa_earliest", -math.inf):
            return []
        expired: list[Any] = original_pop(self, ct)
        self._pa_earliest = min((_deadline(e) for e in self._wakeUps), default=math.inf)
        return expired

    WakeupManager._add_wakeup = _add_wakeup  # noqa: SLF001
    WakeupManager._pop_expired_wakeups = _pop_expired_wakeups  # noqa: SLF001
    _PATCHED = True
