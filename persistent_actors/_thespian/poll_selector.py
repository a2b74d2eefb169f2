"""Let thespian's TCP transport wait with ``poll`` instead of building an epoll set per wait.

Thespian 4.0.1's ``TCPTransport._runWithExpiry`` creates a new ``selectors.DefaultSelector()``
(epoll on Linux) on every turn of its loop, registers every socket it watches, waits once and
closes it: an ``epoll_create``, one ``epoll_ctl`` per socket and a ``close`` per turn. The
external process of ``service_async_mp`` watches about 20 sockets (one per cart) and turned
its loop about 3,100 times in a run: 62,000 ``epoll_ctl`` calls, a third of that process's
time outside the wait. ``poll`` takes the whole set in the one call that waits.

What thespian relies on is kept: a file descriptor that is not open makes the wait raise
``OSError(EBADF)``, as epoll's ``register`` does, so thespian's own recovery (finding and
dropping a bad watched descriptor) still runs. Only the transport module's name ``selectors``
is redirected; nothing else in the process changes. ``tests/test_thespian_patches.py`` pins
the behaviour.
"""

from __future__ import annotations

import errno
import os
import select
import selectors
import types
from typing import Any

from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module

__all__ = ["poll_selector"]

_PATCHED = False


class _CheckedPoll:
    """A ``select.poll`` whose ``poll`` raises EBADF for a descriptor that is not open."""

    __slots__ = ("_poll",)

    def __init__(self) -> None:
        self._poll = select.poll()

    def register(self, fd: int, events: int) -> None:
        self._poll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._poll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._poll.unregister(fd)

    def poll(self, timeout: Any = None) -> list[tuple[int, int]]:
        ready = self._poll.poll(timeout)
        for _fd, event in ready:
            if event & select.POLLNVAL:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return ready


class PollSelector(selectors.PollSelector):
    """``selectors.PollSelector`` that reports a closed descriptor as epoll does (EBADF)."""

    def __init__(self) -> None:
        super().__init__()
        self._selector = _CheckedPoll()  # the interface selectors.PollSelector uses


def poll_selector() -> None:
    """Patch thespian's TCP transport once per process (idempotent)."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED or getattr(_tcp, "selectors", None) is not selectors or \
            not hasattr(select, "poll"):
        return  # done, another thespian version, or no poll on this platform
    _tcp.selectors = types.SimpleNamespace(  # the transport module's global
        DefaultSelector=PollSelector, EVENT_READ=selectors.EVENT_READ,
        EVENT_WRITE=selectors.EVENT_WRITE)
    _PATCHED = True
