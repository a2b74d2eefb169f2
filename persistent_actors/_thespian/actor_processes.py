"""What every actor process does first, in the process thespian forks for it.

Thespian 4.0.1's multiproc bases fork a process per actor (``MultiProcReplicator.
_startChildActor`` -> ``multiprocessing.Process(target=startChild)``). One
`multiprocessing.util.register_after_fork` hook runs in each such child (target: thespian's
``startChild``) before the target starts; thespian's admin and logger (other targets) and the
application's own process are untouched. It does two things, in this order:

* ``gc.freeze()``: every child starts with its parent's whole heap (the application's modules
  and objects, or those of the actor that created it). The cyclic collector does not know
  these objects are shared: each collection of the oldest generation in a child walked all of
  them (tens of milliseconds in a busy actor: the p99 of the ``service_*_mp`` rows), writing
  to every object header, so the child copied every copy-on-write page it inherited. Frozen,
  they sit in the permanent generation, which no collection scans; objects the actor creates
  afterwards are collected as before.
* The target is replaced by one that runs it through `headroom.call_with_headroom`, so the
  actor's loop starts on a frame-stack chunk of its own. Its depth otherwise followed the
  parent's stack at the fork: one frame more under the loop (session 7's first version of
  the freeze wrapped ``startChild``) put ``entities_async_mp``'s entity hosts on a chunk
  boundary, 32,000 more ``mmap``/``munmap`` pairs per run and twice their CPU per request.

``tests/test_thespian_patches.py`` pins that an actor's process has frozen objects, that its
handler runs under the headroom frame, that ``startChild`` stays thespian's own and that a
process forked for another target is not frozen.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
from multiprocessing import util

from thespian.system import multiprocCommon

from persistent_actors._thespian.headroom import call_with_headroom

__all__ = ["prepare_actor_processes"]


class _Hook:
    """The object `util.register_after_fork` keeps (weakly); the module keeps it alive."""

    __slots__ = ("__weakref__",)


_HOOK = _Hook()
_PATCHED = False


def _prepare(_: _Hook) -> None:
    """In a new process: if thespian started it to run an actor, freeze and add headroom."""
    process = multiprocessing.current_process()
    target = getattr(process, "_target", None)
    if target is multiprocCommon.startChild:
        gc.freeze()
        # The after-fork hooks run in the child before `Process.run` calls `_target`.
        wrapped = functools.partial(call_with_headroom, target)
        setattr(process, "_target", wrapped)  # noqa: B010 - a private attribute of its class


def prepare_actor_processes() -> None:
    """Install the hook once per process (idempotent); a no-op on a thespian that differs.

    Takes effect in processes forked by this one and by their descendants (the registry of
    after-fork hooks is inherited).
    """
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    if not callable(getattr(multiprocCommon, "startChild", None)) or \
            not callable(getattr(util, "register_after_fork", None)):
        return  # another thespian or Python version: leave it alone
    util.register_after_fork(_HOOK, _prepare)
    _PATCHED = True
