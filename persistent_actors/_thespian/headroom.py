"""Room on CPython's frame stack for the runtime's long-running loops.

CPython (3.11 on) keeps the frames of Python calls in chunks of memory per thread, 16 KiB at
first. When the frame that begins a chunk returns, the chunk is unmapped at once, and the next
call that needs the room maps a new one. A loop whose per-message calls happen to cross a
chunk boundary therefore pays an ``mmap``, a ``munmap`` and fresh page faults for every call
that crosses it: measured here, a call path of four frames ran 94x slower at the one stack
depth in a hundred where it straddled a boundary. Where the boundary falls depends on how deep
the loop starts: a thread's first frames, or for an actor process the stack of the process
that forked it (the application's, or the creating actor's), so an unrelated change (one more
frame in a parent's call path) could move an actor process's loop onto a boundary and double
its CPU per message (seen in session 8: ``entities_async_mp``'s entity hosts).

`call_with_headroom` calls a function from a frame too large for any chunk but a fresh one of
`CHUNK` bytes, so the function's frames start near the beginning of that chunk with most of it
free: per-message call paths shallower than about 120 KiB of frames (hundreds of calls) never
reach a boundary, whatever the depth the loop started at. The large frame costs one mapping
per call of `call_with_headroom` (once per thread or process: the runtime uses it for the
driver thread and, through `actor_processes`, for every actor process on multiproc-tcp),
and it is never executed beyond its first line. Elsewhere than CPython the frame is an ordinary one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CHUNK", "call_with_headroom"]

T = TypeVar("T")

# The chunk the large frame gets: CPython rounds a chunk up to a power of two that holds the
# frame, so a frame of a little over half of it leaves the rest free for the callee's frames.
CHUNK = 256 * 1024
_SLOTS = CHUNK // 2 // 8 + 64  # pointer-sized local slots: just over half the chunk

# A function whose frame holds `_SLOTS` locals. The assignments after the return are never
# run; the compiler still reserves a slot for each name, which is what makes the frame large.
_SOURCE = "def _roomy(fn, args, kwargs):\n    return fn(*args, **kwargs)\n    " + "; ".join(
    f"_{i} = 0" for i in range(_SLOTS)) + "\n"
_namespace: dict[str, Any] = {}
exec(compile(_SOURCE, "<persistent_actors._thespian.headroom>", "exec"), _namespace)  # noqa: S102 - our own constant source
_roomy: Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any] = _namespace["_roomy"]
del _namespace, _SOURCE


def call_with_headroom(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, its frames at the start of a fresh frame-stack chunk."""
    result: T = _roomy(fn, args, kwargs)
    return result

