"""An actor's timers (Akka's ``IWithTimers``): messages it sends itself later, named by a key.

``self.timers`` of any actor (plain or persistent) is its `TimerScheduler`. Its contract, as
Akka's:

* A timer is named by a key; starting one under a key that is in use cancels the old one.
* A cancelled timer's message is never handled, also when it is in the mailbox already (each
  firing carries the timer's generation, checked when the actor takes it).
* Timers belong to the actor instance: a restart, a stop or a passivation cancels them all.
* The message arrives as an ordinary message from no sender (``self.sender`` is dead
  letters): a persistent actor gets it in `on_command`, stashed like any command while a
  `persist` is in flight or recovery runs.
* A periodic timer fires `interval` seconds after the actor took the previous firing from
  its mailbox (fixed delay): an actor busy in a handler gets fewer ticks, not a backlog of
  them (ticks a persistent actor stashes behind a long `persist` do wait in its stash).

Keys are any hashable value. Delays are seconds, finite and >= 0 (a periodic interval > 0).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable
from typing import Any, Final, Protocol

from persistent_actors import _protocol as p

__all__ = ["TimerScheduler"]


class _Mailbox(Protocol):
    """What a scheduler needs of the actor's context (`ActorContext._schedule_self`)."""

    def _schedule_self(self, delay: float, message: Any) -> None: ...

# Generations are unique in the process: a firing of a timer of an earlier instance (before a
# restart) can never match a timer of the new one started under the same key.
_generations = itertools.count(1)
NOT_ACTIVE: Final[Any] = object()  # `TimerScheduler.fired`: the timer was cancelled or replaced


class TimerScheduler:
    """The timers of one actor instance: ``self.timers`` (Akka's ``ITimerScheduler``)."""

    __slots__ = ("_by_generation", "_context", "_timers")

    def __init__(self, context: _Mailbox) -> None:
        self._context = context
        # key -> (generation, message, interval or None); generation -> key.
        self._timers: dict[Hashable, tuple[int, Any, float | None]] = {}
        self._by_generation: dict[int, Hashable] = {}

    def start_single_timer(self, key: Hashable, message: Any, delay: float) -> None:
        """Send `message` to this actor once, in `delay` seconds (Akka's ``StartSingleTimer``).

        Replaces a timer under the same key.

        Raises:
            TypeError: `key` is not hashable.
            ValueError: `delay` is not a finite number of seconds >= 0.

        """
        self._start(key, message, _seconds("delay", delay, zero_ok=True), None)

    def start_periodic_timer(self, key: Hashable, message: Any, interval: float,
                             initial_delay: float | None = None) -> None:
        """Send `message` to this actor every `interval` seconds (fixed delay).

        The first time after `initial_delay` (default: `interval`). Replaces a timer under the
        same key.

        Raises:
            TypeError: `key` is not hashable.
            ValueError: `interval` is not a finite number of seconds > 0, or `initial_delay`
                not one >= 0.

        """
        every = _seconds("interval", interval, zero_ok=False)
        first = every if initial_delay is None else _seconds("initial_delay", initial_delay,
                                                              zero_ok=True)
        self._start(key, message, first, every)

    def is_timer_active(self, key: Hashable) -> bool:
        """True while the timer under `key` has not fired (single) or been cancelled."""
        _check_key(key)
        return key in self._timers

    def cancel(self, key: Hashable) -> None:
        """Cancel the timer under `key` (nothing if there is none); its message never arrives."""
        _check_key(key)
        entry = self._timers.pop(key, None)
        if entry is not None:
            del self._by_generation[entry[0]]

    def cancel_all(self) -> None:
        """Cancel every timer of this actor."""
        self._timers.clear()
        self._by_generation.clear()

    def fired(self, firing: p.TimerFired) -> Any:
        """Runtime: the message of `firing` if its timer is still the active one, else NOT_ACTIVE.

        A single timer is done once it fires; a periodic one is scheduled again.
        """
        key = self._by_generation.get(firing.generation, NOT_ACTIVE)
        if key is NOT_ACTIVE:
            return NOT_ACTIVE
        generation, message, interval = self._timers[key]
        if interval is None:
            del self._timers[key]
            del self._by_generation[generation]
        else:
            self._context._schedule_self(interval, firing)  # noqa: SLF001 - the runtime's hook
        return message

    def _start(self, key: Hashable, message: Any, delay: float, interval: float | None) -> None:
        self.cancel(key)
        generation = next(_generations)
        # Scheduled first: a schedule that raises leaves no timer marked active.
        self._context._schedule_self(delay, p.TimerFired(generation))  # noqa: SLF001
        self._timers[key] = (generation, message, interval)
        self._by_generation[generation] = key


# The longest delay a timer takes (about 31 years): thespian keeps deadlines as datetimes,
# which end in the year 9999, and a larger delay overflowed deep inside it.
MAX_TIMER_DELAY: Final = 1e9


def _check_key(key: Any) -> None:
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"a timer key must be hashable, got {type(key).__name__}") from None


def _seconds(name: str, value: Any, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok) or \
            value > MAX_TIMER_DELAY:
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"timer {name} must be a finite number of seconds {bound} and "
                         f"<= {MAX_TIMER_DELAY:.0e}, got {value!r}")
    return float(value)
