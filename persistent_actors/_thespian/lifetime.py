"""The actor system lives no longer than the process that owns it (multiproc-tcp).

Thespian's admin daemonizes (setsid, double fork) and handles no termination signal, so when
the application process dies its admin and actor processes would live on for ever, holding
the journal open (thespian.md section 8). Two measures:

* SIGTERM (the stop signal of systemd, Docker, Kubernetes) shuts the application down as
  SIGINT does: `install_sigterm_exit` turns it into ``SystemExit(143)``, so ``with`` blocks
  and the atexit hook shut every actor system down cleanly.
* SIGKILL or the OOM killer leave no chance to clean up: the guardian polls the owner
  (`OwnerProcess.is_alive`) every `OWNER_POLL_INTERVAL` seconds and shuts the whole thespian
  system down when it is gone.

Thespian's shutdown asks each process to exit; one whose actor is stuck in a handler (or a
plugin call that never returns) never reads the request, and it kept the admin, the logger
and every other process alive with it, the admin port taken. Every process of a system lives
in the session the admin's ``setsid`` made: `reap_session` kills what is left of it once a
shutdown had `REAP_GRACE` seconds (from the application's shutdown, or from a process the
guardian forks when the application died).

The other way round, the application's driver thread watches the system's own processes
(`runtime_processes`: the guardian, thespian's admin and logger; `OwnerProcess`es the guardian
reports as it starts): when one dies the system terminates and its processes are reaped at
once (`ActorSystem._runtime_died`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "ADMIN",
    "GUARDIAN",
    "LOGGER",
    "OWNER_POLL_INTERVAL",
    "REAP_GRACE",
    "OwnerProcess",
    "admins_started",
    "install_sigterm_exit",
    "join_admin_starters",
    "reap_session",
    "reap_session_later",
    "record_admin_starters",
    "runtime_processes",
    "shutdown_thespian",
]

OWNER_POLL_INTERVAL = 1.0  # seconds between the guardian's checks of its owner process
REAP_GRACE = 3.0  # seconds a shut-down system's processes have to exit before SIGKILL

# What `runtime_processes` names each process (in the error once it died).
GUARDIAN = "the actor system's guardian process"
ADMIN = "thespian's admin process"
LOGGER = "thespian's logger process"


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None without it."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    return text[text.rfind(")") + 2:].split()


@dataclasses.dataclass(frozen=True, slots=True)
class OwnerProcess:
    """A process identified by its pid and, where /proc exists, its start time.

    The start time tells a reused pid from the original process.
    """

    pid: int
    start_time: str | None

    @classmethod
    def current(cls) -> OwnerProcess:
        """The calling process."""
        pid = os.getpid()
        return cls.of(pid) or cls(pid, None)  # no /proc: identified by its pid alone

    @classmethod
    def of(cls, pid: int) -> OwnerProcess | None:
        """The live process `pid` (None where /proc does not show it)."""
        fields = _proc_stat(pid)
        return None if fields is None else cls(pid, fields[19])  # field 22: starttime

    def is_alive(self) -> bool:
        """False once the process has exited (a zombie counts as exited)."""
        fields = _proc_stat(self.pid)
        if fields is not None:
            return fields[0] not in ("Z", "X") and fields[19] == self.start_time
        if self.start_time is not None:
            return False  # it had a /proc entry, now it has none
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def runtime_processes() -> tuple[tuple[str, OwnerProcess], ...]:
    """From the guardian: the processes the system cannot run without, each with its name.

    The guardian itself, thespian's admin (its parent: the application created the guardian
    through it) and thespian's logger (the admin's first child: it starts the logger before it
    answers anything). Without the admin, dead letters (thespian routes them through it) are
    lost; a dead logger takes the admin with it (thespian 4.0.1 fails to start another) and
    every actor process keeps logging to its address. Where /proc does not exist: the guardian
    alone.
    """
    own = OwnerProcess.current()
    found = [(GUARDIAN, own)]
    admin = OwnerProcess.of(os.getppid())
    if admin is None:
        return tuple(found)
    children = []
    for pid in _session_members(os.getsid(0)):
        fields = _proc_stat(pid)
        if fields is not None and fields[1] == str(admin.pid):  # field 4: the parent's pid
            children.append((int(fields[19]), pid))  # by start time (field 22)
    if children:
        logger = OwnerProcess.of(min(children)[1])
        if logger is not None:  # before the admin: the logger's death is the cause of both
            found.append((LOGGER, logger))
    found.append((ADMIN, admin))
    return tuple(found)


# Seconds between looks at the admin while thespian's shutdown waits for its answer.
_ADMIN_LOOK = 0.1


def shutdown_thespian(asys: Any, admin_alive: Callable[[], bool]) -> bool:
    """Thespian's ``ActorSystem.shutdown``, which also ends once `admin_alive()` is False.

    Thespian's waits up to 10 s for the admin's answer, also for an admin that died (SIGKILL:
    its request was not refused); this one looks at the admin between slices of that wait
    and then only closes this side's transport. Thespian's own where its internals differ.
    Returns True if the admin died before it confirmed the shutdown.
    """
    base = getattr(asys, "_systemBase", None)
    tx_to_admin = getattr(base, "_tx_to_admin", None)
    run_transport = getattr(base, "_run_transport", None)
    if base is None or not callable(tx_to_admin) or not callable(run_transport):
        asys.shutdown()
        return False
    from thespian.system.messages.admin import (  # noqa: PLC0415 - multiproc-tcp only
        SystemShutdown,
        SystemShutdownCompleted,
    )
    from thespian.system.transport import (  # noqa: PLC0415
        ReceiveEnvelope,
        Thespian__Run_Terminated,
    )

    def ended(response: Any) -> bool:
        return isinstance(response, Thespian__Run_Terminated) or (
            isinstance(response, ReceiveEnvelope) and
            isinstance(response.message, SystemShutdownCompleted))

    lost = not admin_alive()
    if not lost:
        sent = tx_to_admin(SystemShutdown())
        deadline = time.monotonic() + 10.0  # thespian's MAX_SYSTEM_SHUTDOWN_DELAY
        while (left := deadline - time.monotonic()) > 0:
            if ended(run_transport(min(left, _ADMIN_LOOK))) or sent.failed:
                break
            if not admin_alive():
                # An admin exits right after it confirmed: the confirmation may be here.
                lost = not ended(run_transport(_ADMIN_LOOK))
                break
    with contextlib.suppress(Exception):  # closed already
        base.transport.close()
    asys._systemBase = None  # noqa: SLF001 - as thespian's shutdown leaves it
    return lost


_installed = False


def install_sigterm_exit(any_live: Callable[[], bool]) -> None:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread while `any_live()`.

    Only when SIGTERM still has its default action (an application's own handler is left
    alone) and when called from the main thread (the only one that may set handlers). With
    no actor system alive, SIGTERM does what it did before.
    """
    global _installed  # noqa: PLW0603 - one handler per process
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        del frame
        if any_live():
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    _installed = True


def _session_members(sid: int) -> list[int]:
    """The pids of the live processes of session `sid` (Linux: /proc), this one excluded."""
    own = os.getpid()
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        fields = _proc_stat(int(entry))
        # fields[0] is the state (field 3), fields[3] the session id (field 6).
        if fields is not None and len(fields) > 3 and fields[0] not in ("Z", "X") and \
                fields[3] == str(sid):
            members.append(int(entry))
    return members


def reap_session(sid: int | None, grace: float = REAP_GRACE) -> list[int]:
    """SIGKILL what is left of session `sid` after `grace` seconds; the pids killed.

    A no-op for None, for the caller's own session (never its own processes), or where
    /proc does not exist.
    """
    if sid is None or sid <= 1 or sid == os.getsid(0):
        return []
    deadline = time.monotonic() + grace
    while (left := _session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(OSError):  # exited meanwhile
            os.kill(pid, signal.SIGKILL)
    return left


def reap_session_later(grace: float = REAP_GRACE + 2.0) -> None:
    """From inside the session: fork a process that reaps it once `grace` seconds passed.

    The guardian calls it when the application died: the shutdown it starts then ends the
    guardian's own process too, so the reaping runs in a child that outlives it.
    """
    sid = os.getsid(0)
    if os.fork() != 0:
        return
    try:  # the child: no Python-level cleanup, no flushing of the parent's buffers
        os.closerange(3, 65536)  # the guardian's sockets: its port is released with it
        os.setsid()  # out of the session it reaps
        reap_session(sid, grace)
    finally:
        os._exit(0)


# The processes that started an admin, in this application process (`record_admin_starters`),
# and how many admins each thread of it started (systems may start on several threads at once).
_admin_starters: list[Any] = []
_recording_pid: int | None = None
_admins_started = threading.local()


def record_admin_starters() -> None:
    """Keep the process thespian starts each admin with, so that it can be joined.

    Thespian starts the admin in a `multiprocessing.Process` that daemonizes (a double fork)
    and exits, and detaches it from multiprocessing's children (``detach_child``): nobody
    waited for it, and every system left a zombie in the application until it exited. Only
    the calling process records (the admin, forked from it, detaches its actors the same way).
    """
    global _recording_pid  # noqa: PLW0603 - a process-wide, once-only patch
    if _recording_pid is not None:
        return
    from thespian.system import multiprocCommon  # noqa: PLC0415 - multiproc-tcp only

    original = getattr(multiprocCommon, "detach_child", None)
    if not callable(original):
        return  # another thespian version: leave it alone
    _recording_pid = os.getpid()

    def detach_child(child: Any) -> None:
        original(child)
        if os.getpid() == _recording_pid:
            _admin_starters.append(child)
            _admins_started.count = getattr(_admins_started, "count", 0) + 1

    multiprocCommon.detach_child = detach_child
    _quiet_admin_bind_failure(multiprocCommon)


def _quiet_admin_bind_failure(multiproc_common: Any) -> None:
    """An admin that finds its port taken exits without a traceback on stderr.

    Two systems starting on one admin port at once: the loser's admin process fails to bind,
    and multiprocessing printed its `OSError` traceback; the starter then raises a
    `ConfigError` that says what happened.
    """
    original = getattr(multiproc_common, "startAdmin", None)
    if not callable(original):
        return

    def start_admin(*args: Any, **kwargs: Any) -> None:
        try:
            original(*args, **kwargs)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            sys.exit(1)  # multiprocessing prints no traceback for an int exit code

    multiproc_common.startAdmin = start_admin


def admins_started() -> int | None:
    """How many admins the calling thread started, or None where that is not recorded."""
    if _recording_pid != os.getpid():
        return None
    count: int = getattr(_admins_started, "count", 0)
    return count


def join_admin_starters() -> None:
    """Join (reap) the recorded admin starters that have exited; never waits."""
    for process in list(_admin_starters):
        with contextlib.suppress(Exception):  # not ours (a fork), or gone already
            process.join(timeout=0)
        if process.exitcode is not None or getattr(process, "_parent_pid", None) != os.getpid():
            _admin_starters.remove(process)
