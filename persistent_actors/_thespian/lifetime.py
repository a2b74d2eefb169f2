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
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

__all__ = ["OWNER_POLL_INTERVAL", "OwnerProcess", "install_sigterm_exit"]

OWNER_POLL_INTERVAL = 1.0  # seconds between the guardian's checks of its owner process


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
        fields = _proc_stat(pid)
        return cls(pid, fields[19] if fields else None)  # field 22: starttime

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
