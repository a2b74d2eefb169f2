"""Process-local change notifications between threads and event loops, keyed by name.

A writer calls `notify(key)` after it committed; a live query waits with `wait(key, generation,
timeout)`. The generation counter closes the race between "I read everything" and "I start
waiting": a reader takes `generation(key)` *before* it reads, and `wait` returns at once if a
commit happened since. Used where the writer runs in this process (the SQLite journal on the
simple base, a plugin actor hosting the in-memory journal); across processes, readers fall back
to a cheap check (see `journal_plugins.sqlite_query` and `persistent_actors._thespian.event_log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["ChangeSignal", "change_signal"]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChangeSignal:
    """Generation counters plus waiting futures, safe to use from any thread or event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    def generation(self, key: str) -> int:
        """How many times `key` was notified so far."""
        with self._lock:
            return self._generations.get(key, 0)

    def notify(self, key: str) -> None:
        """Record a change of `key` and wake everyone waiting on it."""
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            waiters = self._waiters.pop(key, [])
        for loop, future in waiters:
            # The waiter's loop may have closed meanwhile: nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    async def wait(self, key: str, generation: int, timeout: float) -> bool:
        """Wait until `key` is notified after `generation`; False if `timeout` passed first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._generations.get(key, 0) != generation:
                return True
            self._waiters.setdefault(key, []).append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(key)
                if waiting is not None and entry in waiting:
                    waiting.remove(entry)
        return True


change_signal = ChangeSignal()
