"""The network-namespace harness (`tests.netns`): separate hosts, reachable only from each other."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests import pg
from tests.netns import NetnsFallbackWarning, Network, postgres_dsn, sweep_stale

ROOT = Path(__file__).resolve().parent.parent

# Listens on the given address, accepts one connection, prints what it received.
_SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
conn, peer = s.accept()
print(peer[0], conn.recv(100).decode(), flush=True)
"""
# Connects to host:port and sends a word; exit status 3 if the connection fails.
_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        c.sendall(b"hello")
except OSError as e:
    print(e); sys.exit(3)
"""


def _namespaces_or_skip(net: Network) -> None:
    if not net.available:
        pytest.skip(f"network namespaces unavailable here ({net.reason})")


def _state() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=False).stdout + subprocess.run(
        ["ip", "-br", "link"], capture_output=True, text=True, check=False).stdout


def test_hosts_reach_each_other_by_their_own_addresses_and_nothing_is_left_after() -> None:
    with Network(2, quiet=True) as net:
        _namespaces_or_skip(net)
        a, b = net.hosts
        assert a.address != b.address
        assert a.address.startswith("10.213.")
        server = net.popen(b, [sys.executable, "-c", _SERVER, b.address], stdout=subprocess.PIPE,
                           text=True)
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        client = a.run([sys.executable, "-c", _CLIENT, b.address, port], capture_output=True,
                       text=True)
        assert client.returncode == 0, client.stdout
        assert server.stdout.readline().split() == [a.address, "hello"]
        server.wait(10)
        # Each namespace has a loopback of its own, up: a server on 127.0.0.1 in one host is
        # not reachable from another host, nor from the test.
        lo_server = net.popen(a, [sys.executable, "-c", _SERVER, "127.0.0.1"],
                              stdout=subprocess.PIPE, text=True)
        assert lo_server.stdout is not None
        lo_port = lo_server.stdout.readline().strip()
        assert b.run([sys.executable, "-c", _CLIENT, "127.0.0.1", lo_port],
                     capture_output=True).returncode == 3
        assert a.run([sys.executable, "-c", _CLIENT, "127.0.0.1", lo_port],
                     capture_output=True).returncode == 0
        names = [h.namespace for h in net.hosts]
        bridge = net.bridge
        assert lo_server.poll() is None or lo_server.wait(10) == 0
        # A process left running inside a namespace is killed on exit.
        lingering = net.popen(a, ["sleep", "600"])
    assert lingering.poll() is not None
    left = _state()
    assert bridge not in left
    for name in names:
        assert str(name) not in left


def test_everything_is_removed_after_a_failure_and_after_a_killed_run() -> None:
    made: list[str] = []

    def fail_inside() -> None:
        with Network(1, quiet=True) as net:
            _namespaces_or_skip(net)
            made.extend([str(net.hosts[0].namespace), net.bridge])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    name, bridge = made
    assert str(name) not in _state()
    assert bridge not in _state()
    # A run whose process died without cleaning up: the next one sweeps its leftovers.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = f"pa-abcdef-{dead}-0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    subprocess.run(["ip", "link", "add", "paabcdef-br", "type", "bridge"], check=True)
    sweep_stale()
    assert stale not in _state()
    assert "paabcdef-br" not in _state()


def test_without_namespaces_the_hosts_fall_back_to_loopback_and_say_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(Network, "_unavailable_reason", staticmethod(lambda: "not root"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Network(3) as net:
            assert not net.available
            assert [h.address for h in net.hosts] == ["127.0.0.1"] * 3
            assert net.hosts[0].command(["true"]) == ["true"]
            assert net.hosts[0].run(["true"]).returncode == 0
            assert postgres_dsn(pg.DSN, available=net.available) == pg.DSN
    message = ("netns: network namespaces unavailable (not root); falling back to loopback "
               "addresses (all 3 hosts are 127.0.0.1)")
    assert message in capsys.readouterr().err
    assert [str(w.message) for w in caught if w.category is NetnsFallbackWarning] == [message]


def test_postgres_is_reachable_from_a_namespace_through_its_unix_socket_only() -> None:
    pg.require_postgres()
    dsn = postgres_dsn(pg.DSN)
    assert "host=%2Fvar%2Frun%2Fpostgresql" in dsn
    probe = ("import asyncio, sys, asyncpg\n"
             "async def main():\n"
             "    c = await asyncpg.connect(sys.argv[1], timeout=5)\n"
             "    print(await c.fetchval('select 1')); await c.close()\n"
             "asyncio.run(main())\n")
    with Network(1, quiet=True) as net:
        _namespaces_or_skip(net)
        host = net.hosts[0]
        over_socket = host.run([sys.executable, "-c", probe, dsn], capture_output=True, text=True,
                               cwd=ROOT)
        assert over_socket.stdout.strip() == "1", over_socket.stderr
        over_tcp = host.run([sys.executable, "-c", probe, pg.DSN], capture_output=True,
                            text=True, cwd=ROOT)
        assert over_tcp.returncode != 0  # the namespace's loopback has no server


def test_postgres_dsn_keeps_the_user_and_database() -> None:
    assert postgres_dsn("postgresql://app:s3cret@db.example:6543/events?sslmode=disable") == (
        "postgresql://app:s3cret@/events?sslmode=disable&host=%2Fvar%2Frun%2Fpostgresql")
    assert postgres_dsn("postgresql://127.0.0.1:5432/test") == (
        "postgresql:///test?host=%2Fvar%2Frun%2Fpostgresql")
