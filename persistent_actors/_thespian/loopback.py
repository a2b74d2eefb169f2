"""Make thespian's TCP actors listen where they advertise themselves (loopback by default).

Thespian 4.0.1 advertises the address from ``THESPIAN_BASE_IPADDR`` but binds every actor's
listening socket to all interfaces (``IPActorAddress.bindname = ('', port)`` for "external"
addresses). Its transport unpickles whatever arrives, so a port open on every interface lets
anyone who can reach the machine run code in it. This narrows the bind to the advertised
address. Actor processes are forked from the process that starts the system, so they inherit
the patched class.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Collection
from typing import Any

from thespian.system.transport import IPBase

_PATCHED = False


def bind_where_advertised() -> None:
    """Patch thespian's IP addresses once; idempotent."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    original = IPBase.IPActorAddress.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - replaces __init__
        original(self, *args, **kwargs)
        host, port = self.bindname[0], self.bindname[1]
        if host == "" and self.sockname[0] not in ("", "0.0.0.0"):  # noqa: S104 - comparison
            self.bindname = (self.sockname[0], port)

    IPBase.IPActorAddress.__init__ = __init__
    _PATCHED = True


# Where `free_port` looks: below the kernel's ephemeral range (read at call time), from here.
_LOWEST_PORT = 20_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()  # noqa: SIM115
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A TCP port free on `host` now, outside the kernel's ephemeral range where it can.

    Ports in `avoid` are skipped while others are free: the actor system passes the admin
    ports this process used before, whose old actor processes may still be exiting and
    would address a new admin on the same port as their own.

    A port the kernel picked for ``bind(0)`` lies in the range it also hands out as the local
    port of every outgoing connection, and an actor system's processes open many: between
    this check and the admin's own bind one of them could take the port, and thespian then
    gives up with "not a valid or useable ActorSystem Admin". A port below that range is taken
    only by an explicit bind. Falls back to ``bind(0)`` if none below the range is free.
    """
    low, _ = _ephemeral_range()
    if low - 1 > _LOWEST_PORT:
        for port in random.sample(range(_LOWEST_PORT, low), min(64, low - _LOWEST_PORT)):
            if port in avoid:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        found: int = s.getsockname()[1]
        return found


def listened_on(host: str, port: int, patience: float = 3.0) -> bool:
    """True if a socket listens on `port` at `host` for `patience` seconds.

    A bind there with SO_REUSEADDR, as thespian binds its admin, fails as it would for one:
    connections of an admin that shut down (TIME_WAIT) do not count, a listening admin does.
    An admin whose system just shut down may listen a few milliseconds more: hence the wait.
    """
    deadline = time.monotonic() + patience
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                if time.monotonic() >= deadline:
                    return True
            else:
                return False
        time.sleep(0.02)
