"""`ThreadInbox`: tells from threads of an actor process that are not its actors' own.

In the process that started the `ActorSystem`, a thread outside every actor sends through the
system's endpoint. An actor process on multiproc-tcp has no endpoint: thespian may only be
called from the thread that runs its loop. So that a thread the actor started (a blocking
call moved off the actor, `pipe_to`'s asyncio loop) can tell a result back, that process gets
an inbox: the thread queues the message and writes a byte down a pipe; the host actor's loop
watches the pipe (`lean_loop.when_readable`), and on the `InboxWake` it is handed, sends what
is queued, in the order it was queued, as if the host sent it. The inbox is the process's
default sender (`use_as_default`), so ``ref.tell`` on such a thread just works.

`ask` from such a thread is refused: the reply would have to come back to a thread thespian
does not serve. The simple base needs none of this (its endpoint serves every thread).
"""

from __future__ import annotations

import contextlib
import os
import queue
from collections.abc import Callable
from typing import Any

from persistent_actors import _protocol as p
from persistent_actors._actor import ActorRef, guardian_address, reply_form, use_as_default
from persistent_actors._thespian.common import check_picklable
from persistent_actors._thespian.wake_pipe import WakePipe
from persistent_actors.errors import PersistentActorsError
from persistent_actors.messages import Kill, PoisonPill

__all__ = ["INBOX_WAKE", "ThreadInbox", "deliver_inbox", "install_inbox"]

INBOX_WAKE = p.InboxWake()

# The inbox of this process (None until a host installs one), and the pid it belongs to: a
# process forked from this one has neither the host nor the pipe's reader.
_inbox: ThreadInbox | None = None
_inbox_pid = 0


class ThreadInbox:
    """The default sender of an actor process's other threads (see the module docstring)."""

    def __init__(self, guardian: Any) -> None:
        self._guardian = guardian
        self._pipe = WakePipe()
        self.fd = self._pipe.fd
        self._queue: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._closed = False
        self._unwatch: Callable[[], None] | None = None  # stops the host loop's watch of `fd`

    @property
    def closed(self) -> bool:
        """True once the host that delivers the inbox has stopped."""
        return self._closed

    def ensure_running(self) -> None:
        """Raise if the host that delivers the inbox has stopped."""
        if self._closed:
            raise PersistentActorsError("this actor process is stopping: nothing is sent any more")

    def tell(self, ref: ActorRef, message: Any, sender: ActorRef | None) -> None:
        """Queue `message` for `ref` (sent by the host's loop, in queue order).

        Raises:
            MessageNotSerializableError: `message` cannot travel between processes.

        """
        self.ensure_running()
        wrapped = reply_form(ref, message)
        if not isinstance(wrapped, p.Reply):
            wrapped = p.Envelope(wrapped, sender)
        address = ref.address
        if address is None:  # dead letters: nothing to send
            return
        check_picklable(wrapped, address)  # raise here, in the calling thread
        self._queue.put((address, wrapped))
        if isinstance(message, Kill | PoisonPill):  # as the endpoint does (see StopRequested)
            self._queue.put((self._guardian, p.StopRequested(guardian_address(ref))))
        self._pipe.signal()

    def ask(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Refused: see the module docstring."""
        raise PersistentActorsError(_NO_ASK)

    async def ask_async(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Refused: see the module docstring."""
        raise PersistentActorsError(_NO_ASK)

    def take(self) -> list[tuple[Any, Any]]:
        """What is queued, in order (address, message); drains the pipe first."""
        self._pipe.drain()
        taken: list[tuple[Any, Any]] = []
        with contextlib.suppress(queue.Empty):
            while True:
                taken.append(self._queue.get_nowait())
        return taken

    def close(self) -> None:
        """The host stops: later tells raise; the loop stops watching the pipe, then it closes.

        In that order: a closed descriptor left in the loop's watch set would fail its every
        wait until the process exits.
        """
        self._closed = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._pipe.close()


_NO_ASK = ("ask from a thread of an actor process is not supported (the reply could not come "
           "back to it): tell the request with an actor as sender, or tell the result to the "
           "actor and let it ask")


def install_inbox(host: Any, guardian: Any) -> bool:
    """Make `host` (a thespian actor running on multiproc-tcp) deliver this process's inbox.

    Once per process; returns True if `host` delivers it now. False where the host's loop
    cannot watch a descriptor (the simple base, where the endpoint serves every thread; a
    cell, which is no thespian actor) or another host of the process delivers it.
    """
    global _inbox, _inbox_pid
    if _inbox is not None and _inbox_pid == os.getpid():
        return False
    if getattr(getattr(host, "_myRef", None), "transport", None) is None:
        return False
    # Imported only where a transport runs (as the shared host's local journals are).
    from persistent_actors._thespian.lean_loop import when_readable  # noqa: PLC0415
    inbox = ThreadInbox(guardian)
    inbox._unwatch = when_readable(host, inbox.fd, INBOX_WAKE)  # noqa: SLF001 - set once, here
    if inbox._unwatch is None:  # noqa: SLF001
        inbox.close()
        return False
    _inbox, _inbox_pid = inbox, os.getpid()
    use_as_default(inbox)
    return True


def deliver_inbox(host: Any) -> None:
    """`InboxWake`: send what the process's other threads queued (on the host's loop)."""
    inbox = _inbox
    if inbox is None or _inbox_pid != os.getpid():
        return
    for address, message in inbox.take():
        host.send(address, message)


def close_inbox() -> None:
    """The delivering host stops: the inbox refuses further tells."""
    global _inbox  # noqa: PLW0603 - one inbox per process
    inbox = _inbox
    if inbox is not None and _inbox_pid == os.getpid():
        inbox.close()
        _inbox = None
