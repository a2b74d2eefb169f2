"""Security of the multi-process transport: actor ports listen on loopback unless configured."""

from __future__ import annotations

import socket

import pytest

from persistent_actors import ActorSystem
from persistent_actors._system import ADMIN_PORTS
from persistent_actors.testing import TestProbe


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp", encoding="ascii") as f:
        next(f)
        for line in f:
            local, state = line.split()[1], line.split()[3]
            host_hex, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(socket.inet_ntoa(bytes.fromhex(host_hex)[::-1]))
    return found


@pytest.mark.multiproc
def test_multiproc_actor_ports_listen_on_loopback_only() -> None:
    with ActorSystem("sec", config={"actor_system": {"base": "multiproc-tcp"}}) as system:
        probe = TestProbe(system)
        admin_port = ADMIN_PORTS[-1]
        actor_port = probe.ref.address.addressDetails.sockname[1]
        assert listening_addresses(admin_port) == {"127.0.0.1"}
        assert listening_addresses(actor_port) == {"127.0.0.1"}
