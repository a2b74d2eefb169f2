"""Shut down multi-process actor systems left behind (by a crashed or killed process)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from thespian.actors import ActorSystem as ThespianActorSystem

from persistent_actors._system import OPEN_ADMIN_PORTS

__all__ = ["shutdown_admin", "sweep_admin_ports"]


def shutdown_admin(port: int, bind_address: str = "127.0.0.1") -> None:
    """Re-attach to the multiproc-tcp admin on `port` and shut it and its actors down.

    Does nothing harmful when no admin runs there. `bind_address` must be the address the
    system was configured with: its ports listen there only (see the README's trust boundary).
    """
    # The re-attaching client finds the admin at the address thespian advertises.
    os.environ["THESPIAN_BASE_IPADDR"] = bind_address
    with contextlib.suppress(Exception):  # nothing left to clean on that port
        ThespianActorSystem("multiprocTCPBase", {"Admin Port": port},
                            transientUnique=True).shutdown()


def sweep_admin_ports(ports: Iterable[int] | None = None) -> None:
    """`shutdown_admin` for every port given.

    By default, the ports of the multi-process systems this process started and did not shut
    down (a test that failed before its teardown): not every port it used, since another
    process (a parallel test worker) may have taken a port since its system here shut down.
    """
    chosen = [port for port in OPEN_ADMIN_PORTS if port is not None] if ports is None \
        else ports
    for port in sorted(set(chosen)):
        shutdown_admin(port)
