"""`WakePipe`: a pipe whose read end a transport's loop watches, so another thread can wake it.

The external driver's listen (`listen_wake`) and a host's background commits (`local_journal`)
each watch one with `lean_loop.watch_readable`. Both ends are non-blocking: `signal` never
blocks its thread (a full pipe has bytes waiting already), and `drain` reads what is there.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["WakePipe"]


class WakePipe:
    """A non-blocking pipe: `signal` on any thread makes `fd` readable until `drain`."""

    __slots__ = ("_write", "fd")

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()  # `fd`: the read end, for the loop to watch
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write, False)

    def signal(self) -> None:
        """Write one byte (nothing if the pipe is full or closed)."""
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")

    def drain(self) -> None:
        """Read every byte written so far."""
        with contextlib.suppress(OSError):  # BlockingIOError: nothing (more) to read
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        """Close both ends; idempotent (a closed pipe's numbers are never reused by it)."""
        for fd in (self.fd, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fd = self._write = -1
