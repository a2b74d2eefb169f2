"""Supervision options: restart after a failure stop with back-off, and stash overflow handling."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

__all__ = [
    "Backoff",
    "BackoffOptions",
    "DiscardToDeadLetterStrategy",
    "ReplyToStrategy",
    "StashOverflowStrategy",
    "ThrowOverflowExceptionStrategy",
]

MAX_BACKOFF = 1e9  # seconds: a back-off's longest wait


@dataclasses.dataclass(frozen=True, slots=True)
class BackoffOptions:
    """Akka's ``Backoff.OnStop``: restart an actor that stopped because of a failure.

    Set as the class attribute ``backoff`` of an actor. When the actor stops because its journal
    or snapshot store failed (``on_persist_failure``, ``on_recovery_failure``), it is started
    again, from the same constructor arguments, after ``min_backoff * 2**n`` seconds (n = the
    restarts so far, capped at `max_backoff`, plus up to `random_factor` of it at random), and
    recovers. Messages that arrive meanwhile are kept and handled by the new instance. The count
    resets once an instance has run `min_backoff` seconds. A deliberate stop (``context.stop``,
    `PoisonPill`, `Kill`, ``system.stop``) is final.
    """

    min_backoff: float
    max_backoff: float
    random_factor: float = 0.2

    def __post_init__(self) -> None:
        # Finite seconds: an infinite back-off would be a stop that keeps the actor's
        # messages waiting for ever (a deliberate stop is the way to say that).
        # At most 1e9 s (31 years), as timers: beyond ~8.6e13 s thespian's wakeup overflows.
        if not (_seconds(self.min_backoff) and 0 < self.min_backoff <= MAX_BACKOFF):
            raise ValueError(f"min_backoff must be a finite number of seconds in (0, "
                             f"{MAX_BACKOFF:g}], got {self.min_backoff!r}")
        if not (_seconds(self.max_backoff) and self.min_backoff <= self.max_backoff <= MAX_BACKOFF):
            raise ValueError(f"max_backoff must be a finite number of seconds >= min_backoff "
                             f"and <= {MAX_BACKOFF:g}, got {self.max_backoff!r}")
        if not (_seconds(self.random_factor) and 0 <= self.random_factor <= 1):
            raise ValueError(f"random_factor must be in [0, 1], got {self.random_factor!r}")

    def delay(self, restarts: int) -> float:
        """Seconds to wait before restart number `restarts` (0-based)."""
        base = float(min(self.max_backoff, self.min_backoff * 2 ** min(restarts, 62)))
        return base * (1 + random.uniform(0, self.random_factor))  # noqa: S311 - jitter only


def _seconds(value: Any) -> bool:
    """True for a finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)


class Backoff:
    """Factory named as in Akka: ``backoff = Backoff.on_stop(min_backoff=..., ...)``."""

    @staticmethod
    def on_stop(min_backoff: float, max_backoff: float, random_factor: float = 0.2
                ) -> BackoffOptions:
        """Restart after a failure stop, waiting longer after each (see `BackoffOptions`)."""
        return BackoffOptions(min_backoff, max_backoff, random_factor)


@dataclasses.dataclass(frozen=True, slots=True)
class ThrowOverflowExceptionStrategy:
    """A full internal stash raises `StashOverflowError`: the actor restarts (the default)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DiscardToDeadLetterStrategy:
    """A message that does not fit the internal stash goes to dead letters."""


@dataclasses.dataclass(frozen=True, slots=True)
class ReplyToStrategy:
    """A message that does not fit the internal stash is answered with `response`."""

    response: Any


StashOverflowStrategy = (
    ThrowOverflowExceptionStrategy | DiscardToDeadLetterStrategy | ReplyToStrategy
)
