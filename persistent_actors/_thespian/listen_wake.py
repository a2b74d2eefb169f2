"""`ListenWake`: another thread cuts the driver's multiproc-tcp listen short when it queues work.

On multiproc-tcp the driver thread listens in slices while replies are awaited, and thespian's
listen cannot be interrupted: a request queued meanwhile waited for the slice to end or for
some message to arrive (up to `_driver._LISTEN_SLICE`), on every round trip of a client that
sends its next request as soon as it has the last reply. The driver's transport also watches
the read end of a pipe (`lean_loop.watch_readable`); a thread that queues work while the driver
listens writes one byte down it, the listen returns `WOKEN`, and the driver sends the work.
Only the first queue of a listen writes: the driver arms the wake before it listens and
disarms it after, so a busy driver costs its callers no system call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from persistent_actors._thespian.lean_loop import watch_readable
from persistent_actors._thespian.wake_pipe import WakePipe

__all__ = ["WOKEN", "ListenWake"]


class _Woken:
    """What a listen returns when `ListenWake.wake` cut it short (never leaves the process)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "WOKEN"


WOKEN: Any = _Woken()


class ListenWake:
    """The pipe a multiproc-tcp driver's listen watches; `wake` is safe on any thread."""

    __slots__ = ("_pipe", "_sent", "_stop", "armed")

    def __init__(self, pipe: WakePipe) -> None:
        self._pipe = pipe
        self.armed = False  # the driver listens and no byte is on its way yet
        self._sent = False
        self._stop: Callable[[], None] | None = None

    @classmethod
    def of(cls, asys: Any) -> ListenWake | None:
        """A wake for the external transport of `asys`; None where its loop is not ours."""
        transport = getattr(getattr(asys, "_systemBase", None), "transport", None)
        wake = cls(WakePipe())
        wake._stop = watch_readable(transport, wake._pipe.fd, WOKEN)
        if wake._stop is None:
            wake.close()
            return None
        return wake

    def arm(self) -> None:
        """The driver is about to listen: a `wake` from now on cuts that listen short."""
        self.armed = True

    def wake(self) -> None:
        """Work was queued: end the driver's listen, if it is in one (once per listen)."""
        if self.armed:
            self.armed = False
            self._sent = True
            self._pipe.signal()

    def disarm(self) -> None:
        """The driver's listen is over: take back any byte written for it."""
        self.armed = False
        if self._sent:
            self._sent = False
            self.drain()

    def drain(self) -> None:
        """Read what `wake` wrote (the listen saw it)."""
        self._pipe.drain()

    def close(self) -> None:
        """Stop watching and close the pipe; idempotent."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()
        self._pipe.close()
