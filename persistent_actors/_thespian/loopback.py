"""Make thespian's TCP actors listen where they advertise themselves (loopback by default).

Thespian 4.0.1 advertises the address from ``THESPIAN_BASE_IPADDR`` but binds every actor's
listening socket to all interfaces (``IPActorAddress.bindname = ('', port)`` for "external"
addresses). Its transport unpickles whatever arrives, so a port open on every interface lets
anyone who can reach the machine run code in it. This narrows the bind to the advertised
address. Actor processes are forked from the process that starts the system, so they inherit
the patched class.
"""

from __future__ import annotations

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
