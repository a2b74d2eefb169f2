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

The loop still asked for a new selector on every turn and registered every socket again: a
cart process of ``service_async_mp`` turned it about 4.6 times per message it received, with
about 5 sockets each, and the selector objects, their per-socket keys and the registrations
were a seventh of the carts' CPU under cProfile. `_TurnSelector` is one poll set per thread,
handed out again on every turn: ``register`` only notes what this turn wants, and ``select``
changes the poll set by the difference from the last turn (usually nothing) before it waits.
``close`` keeps it for the next turn. Poll, unlike epoll, holds no kernel state per descriptor
(the set is passed in each call), so a descriptor closed and reused between turns is polled as
the file it is now. Thespian never keeps two selectors of one thread open at once (it
abandons the turn's selector when its wait raises, then checks single descriptors), so
handing the same one out again is safe. Upstream thespian would need the same: keep one
selector in the transport and change its registrations as sockets come and go.

``poll`` takes whole milliseconds, and a wait rounded down would turn the loop into a spin, so
it is rounded up; a wait shorter than a millisecond (the external driver's brief collection of
the replies that came together, `_driver._DRAIN`) goes to ``select`` instead, whose timeout has
microseconds, when every descriptor is below ``FD_SETSIZE``.
"""

from __future__ import annotations

import errno
import math
import os
import select
import selectors
import threading
import types
from typing import Any

from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module

__all__ = ["poll_selector", "turn_selector"]

_PATCHED = False


# ``select`` takes descriptors below FD_SETSIZE only (glibc: 1024).
_SELECT_LIMIT = 1024
_POLL_MAX_MS = 2**31 - 1  # poll()'s largest timeout in milliseconds
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_POLL_MASK = {_READ: select.POLLIN, _WRITE: select.POLLOUT, _READ | _WRITE: select.POLLIN |
              select.POLLOUT}


class _TurnSelector:
    """The selector of one thread's transport loop, reused turn after turn.

    Between `begin` and ``select``: ``register`` notes (descriptor, events); a descriptor
    registered twice raises ``KeyError`` and one that is not a valid number ``ValueError``, as
    in ``selectors``. ``select`` returns ``(key, events)`` pairs as ``selectors.PollSelector``
    does and raises ``OSError(EBADF)`` for a descriptor that is not open.
    """

    __slots__ = ("_keys", "_poll", "_polled", "_wanted")

    def __init__(self) -> None:
        self._poll = select.poll()
        self._polled: dict[int, int] = {}  # what the poll set holds: fd -> selector events
        self._wanted: dict[int, int] = {}  # what this turn registered
        self._keys: dict[int, selectors.SelectorKey] = {}

    def begin(self) -> _TurnSelector:
        self._wanted = {}
        return self

    def register(self, fileobj: Any, events: int, data: Any = None) -> None:
        fd = fileobj if type(fileobj) is int else int(fileobj.fileno())
        if fd < 0:
            raise ValueError(f"Invalid file descriptor: {fd}")
        if events not in _POLL_MASK:
            raise ValueError(f"Invalid events: {events!r}")
        if fd in self._wanted:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        self._wanted[fd] = events

    def want(self, reads: list[Any], writes: list[Any]) -> bool:
        """Register `reads` for reading and `writes` for writing, all at once.

        Only plain non-negative ints, each once, and nothing registered yet this turn; for
        anything else it registers nothing and returns False (the caller then calls
        ``register`` for each, which raises as ``selectors`` would).
        """
        if self._wanted:
            return False
        wanted: dict[int, int] = {}
        for fd in reads:
            if type(fd) is not int or fd < 0 or fd in wanted:
                return False
            wanted[fd] = _READ
        for fd in writes:
            if type(fd) is not int or fd < 0 or fd in wanted:
                return False
            wanted[fd] = _WRITE
        self._wanted = wanted
        return True

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        wanted, polled, poll, keys = self._wanted, self._polled, self._poll, self._keys
        if wanted != polled:
            for fd in [fd for fd in polled if fd not in wanted]:
                poll.unregister(fd)
                del polled[fd]
                del keys[fd]
            for fd, events in wanted.items():
                if polled.get(fd) != events:
                    poll.register(fd, _POLL_MASK[events])  # register modifies a known fd
                    polled[fd] = events
                    keys[fd] = selectors.SelectorKey(fd, fd, events, None)
        if timeout is None:
            wait = None
        elif timeout <= 0:
            wait = 0
        elif timeout < 1e-3 and (not wanted or max(wanted) < _SELECT_LIMIT):
            return self._select_briefly(wanted, timeout)
        else:
            # As selectors.PollSelector: never wait too short; and at most what poll takes
            # (2**31 - 1 ms, 24.8 days): a longer timer's wait raised OverflowError, which
            # killed the actor's process (the loop turns again when the wait ends).
            wait = min(math.ceil(timeout * 1e3), _POLL_MAX_MS)
        ready = []
        for fd, event in poll.poll(wait):
            if event & select.POLLNVAL:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            events = 0
            if event & ~select.POLLIN:
                events |= _WRITE
            if event & ~select.POLLOUT:
                events |= _READ
            key = keys[fd]
            ready.append((key, events & key.events))
        return ready

    def _select_briefly(self, wanted: dict[int, int], timeout: float
                        ) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait less than a millisecond: ``select``, whose timeout has microseconds.

        ``poll`` takes whole milliseconds, so a wait of 0.2 ms (the driver's collection of
        replies that came together) lasted a whole millisecond whenever nothing more came:
        on service_async_mp about half the external process's run. A bad descriptor raises
        ``OSError(EBADF)`` here too.
        """
        reads = [fd for fd, events in wanted.items() if events & _READ]
        writes = [fd for fd, events in wanted.items() if events & _WRITE]
        readable, writable, _ = select.select(reads, writes, [], timeout)
        keys = self._keys
        found: dict[int, int] = {}
        for fd in readable:
            found[fd] = _READ
        for fd in writable:
            found[fd] = found.get(fd, 0) | _WRITE
        return [(keys[fd], events) for fd, events in found.items()]

    def close(self) -> None:
        """Keep the poll set for the thread's next turn."""


_turns = threading.local()


def turn_selector() -> _TurnSelector:
    """Return the calling thread's `_TurnSelector`, its registrations for a new turn cleared."""
    try:
        selector: _TurnSelector = _turns.selector
    except AttributeError:
        selector = _turns.selector = _TurnSelector()
    return selector.begin()


def poll_selector() -> None:
    """Patch thespian's TCP transport once per process (idempotent)."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED or getattr(_tcp, "selectors", None) is not selectors or \
            not hasattr(select, "poll"):
        return  # done, another thespian version, or no poll on this platform
    _tcp.selectors = types.SimpleNamespace(  # the transport module's global
        DefaultSelector=turn_selector, EVENT_READ=selectors.EVENT_READ,
        EVENT_WRITE=selectors.EVENT_WRITE)
    _PATCHED = True
