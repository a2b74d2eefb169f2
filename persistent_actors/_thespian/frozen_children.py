"""Freeze the heap an actor process inherits, first thing in the process thespian forks.

Thespian 4.0.1's multiproc bases fork a process per actor (``MultiProcReplicator.
_startChildActor`` -> ``multiprocessing.Process(target=startChild)``), and every child starts
with its parent's whole heap: the application's modules and objects, or those of the actor
that created it. Python's cyclic collector does not know these objects are shared: each time
a collection of the oldest generation runs in a child it walks all of them (tens of
milliseconds in a busy actor: the p99 of the ``service_*_mp`` rows), writing to every object
header, so the child copies every copy-on-write page it inherited.

The patch registers a `multiprocessing.util.register_after_fork` hook: in a child whose
target is thespian's ``startChild`` it calls `gc.freeze` before the target runs, so the
inherited objects go to the permanent generation, which no collection scans. Objects the actor
creates afterwards are collected as before. The application's own process and thespian's
admin and logger (other targets) are untouched.

Why a hook and not a wrapper around ``startChild``: the actor's loop runs inside its target,
and CPython 3.11 keeps Python frames in 16 KiB chunks; a frame that starts a chunk frees it
(``munmap``) when it returns, and the next call maps a new one. One more frame under the
loop (a wrapper) moved ``entities_async_mp``'s entity hosts onto such a boundary: 32,000
``mmap``/``munmap`` pairs more in a ``python -m bench.cpu entities_async_mp --requests 3000``
run (``perf stat -e syscalls:sys_enter_munmap``) and twice their CPU per request, with the
wrapper calling nothing but ``startChild``. The hook has returned before the target starts,
so the actor's frames sit where thespian put them. (Since then `headroom` starts every actor's
loop at the beginning of a chunk of its own, which makes its depth irrelevant; it registers
its hook after this one, which still finds thespian's ``startChild`` as the target.)

``tests/test_thespian_patches.py`` pins that an actor's process has frozen objects and that
``startChild`` is thespian's own.
"""

from __future__ import annotations

import gc
import multiprocessing
from multiprocessing import util

from thespian.system import multiprocCommon

__all__ = ["frozen_children"]


class _Hook:
    """The object `util.register_after_fork` keeps (weakly); the module keeps it alive."""

    __slots__ = ("__weakref__",)


_HOOK = _Hook()
_PATCHED = False


def _freeze_actor_process(_: _Hook) -> None:
    """In a new process: `gc.freeze` if thespian started it to run an actor."""
    target = getattr(multiprocessing.current_process(), "_target", None)
    if target is multiprocCommon.startChild:
        gc.freeze()


def frozen_children() -> None:
    """Patch once per process (idempotent); a no-op on a thespian that differs.

    Takes effect in processes forked by this one and by their descendants (the registry of
    after-fork hooks is inherited).
    """
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    if not callable(getattr(multiprocCommon, "startChild", None)) or \
            not callable(getattr(util, "register_after_fork", None)):
        return  # another thespian or Python version: leave it alone
    util.register_after_fork(_HOOK, _freeze_actor_process)
    _PATCHED = True
