"""Separate "hosts" for tests: Linux network namespaces on a private bridge, made and removed here.

    with Network(3) as net:
        host = net.hosts[0]
        host.address                 # "10.213.X.1" (or "127.0.0.1" in the fallback)
        node = net.popen(host, [sys.executable, "-m", "tests.secure_node", ...])
        host.run(["ip", "addr"])     # a command to completion inside the namespace

`Network(n)` creates n namespaces, each with loopback up and one end of a veth pair whose other
end is on a bridge in the root namespace, addressed 10.213.X.(i+1)/24 (X picked per run among
subnets no interface of this machine uses). The bridge has 10.213.X.254, so the test process
itself reaches every host; the namespaces have no default route, so they reach nothing but each
other and the test. Names carry a random token and the creating process's id, so parallel runs
do not clash and `sweep_stale` removes what a killed run left behind.

On exit (also after a failure) every process still inside a namespace is killed and the
namespaces and bridge are deleted. Where namespaces are not available (not root, no ``ip``, no
kernel support) the hosts fall back to loopback: every host is 127.0.0.1 in the root namespace,
`available` is False, and the reason is printed to stderr and issued as a `NetnsFallbackWarning`
(pytest's warnings summary shows it).

Inside a namespace the machine's PostgreSQL is reachable only through its Unix socket
(`postgres_dsn` rewrites a DSN to ``host=/var/run/postgresql``): the namespace has its own
loopback, and the filesystem, socket files included, is shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Final

__all__ = [
    "PG_SOCKET_DIR",
    "Host",
    "NetnsFallbackWarning",
    "Network",
    "postgres_dsn",
    "sweep_stale",
]

PG_SOCKET_DIR: Final = "/var/run/postgresql"
_SUBNET_PREFIX: Final = "10.213"
_NAME = re.compile(r"^pa-([0-9a-f]{6})-(\d+)-\d+$")  # namespace: pa-<token>-<creator pid>-<i>


class NetnsFallbackWarning(UserWarning):
    """Network namespaces were not available: the hosts share the loopback address."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@dataclasses.dataclass(frozen=True)
class Host:
    """One test host: a namespace (None in the loopback fallback) and its address."""

    index: int
    namespace: str | None
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as run inside this host's namespace."""
        if self.namespace is None:
            return list(argv)
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run `argv` inside the namespace to completion (``subprocess.run`` keywords)."""
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.command(argv), check=False, **kwargs)


class Network:
    """N hosts in network namespaces on one bridge (or on loopback); a context manager."""

    def __init__(self, count: int, *, quiet: bool = False) -> None:
        if not isinstance(count, int) or not 1 <= count <= 250:
            raise ValueError(f"a test network has 1..250 hosts, got {count!r}")
        self.count = count
        self.quiet = quiet
        self.token = secrets.token_hex(3)
        self.bridge = f"pa{self.token}-br"  # interface names: at most 15 characters
        self.hosts: list[Host] = []
        self.available = False
        self.reason = ""
        self.host_address = "127.0.0.1"  # the test process's own address on the network
        self._namespaces: list[str] = []
        self._bridge_made = False
        self._processes: list[subprocess.Popen[Any]] = []

    # -- setup ---------------------------------------------------------------------------------
    def __enter__(self) -> Network:
        reason = self._unavailable_reason()
        if reason is None:
            try:
                self._build()
                self.available = True
            except (OSError, subprocess.SubprocessError) as e:
                detail = getattr(e, "stderr", "") or str(e)
                self._teardown()
                reason = f"creating them failed: {detail.strip()}"
        if not self.available:
            self.reason = reason or "unknown"
            self.hosts = [Host(i, None, "127.0.0.1") for i in range(self.count)]
            message = (f"netns: network namespaces unavailable ({self.reason}); falling back to "
                       f"loopback addresses (all {self.count} hosts are 127.0.0.1)")
            print(message, file=sys.stderr)
            warnings.warn(message, NetnsFallbackWarning, stacklevel=2)
        elif not self.quiet:
            print(f"netns: {self.count} namespaces on bridge {self.bridge}: "
                  + ", ".join(f"{h.namespace}={h.address}" for h in self.hosts), file=sys.stderr)
        return self

    @staticmethod
    def _unavailable_reason() -> str | None:
        if sys.platform != "linux":
            return f"not Linux ({sys.platform})"
        if os.geteuid() != 0:
            return "not root"
        if shutil.which("ip") is None:
            return "no `ip` command (iproute2)"
        return None

    def _free_subnet(self) -> int:
        used = _ip("-4", "-o", "addr", "show").stdout
        candidates = [x for x in range(1, 251) if f" {_SUBNET_PREFIX}.{x}." not in used]
        if not candidates:
            raise OSError(f"every {_SUBNET_PREFIX}.x.0/24 subnet is in use")
        return secrets.choice(candidates)

    def _build(self) -> None:
        sweep_stale()
        subnet = self._free_subnet()
        net = ipaddress.ip_network(f"{_SUBNET_PREFIX}.{subnet}.0/24")
        _ip("link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        self.host_address = str(net.network_address + 254)
        _ip("addr", "add", f"{self.host_address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.count):
            namespace = f"pa-{self.token}-{os.getpid()}-{i}"
            outside, inside = f"pa{self.token}-h{i}", f"pa{self.token}-n{i}"
            _ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", namespace)
            _ip("link", "set", outside, "master", self.bridge)
            _ip("link", "set", outside, "up")
            address = str(net.network_address + i + 1)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            self.hosts.append(Host(i, namespace, address))

    # -- processes -----------------------------------------------------------------------------
    def popen(self, host: Host, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `host` (``subprocess.Popen`` keywords); stopped on exit."""
        process = subprocess.Popen(host.command(argv), **kwargs)
        self._processes.append(process)
        return process

    # -- teardown ------------------------------------------------------------------------------
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._teardown()

    def _teardown(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait(5)
        for namespace in self._namespaces:
            _remove_namespace(namespace)
        self._namespaces.clear()
        if self._bridge_made:
            _ip("link", "del", self.bridge, check=False)
            self._bridge_made = False


def _remove_namespace(namespace: str) -> None:
    """Kill whatever still runs inside `namespace` (thespian daemonizes), then delete it."""
    for _ in range(3):
        pids = [int(p) for p in _ip("netns", "pids", namespace, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    # Deleting the namespace destroys its veth end, and with it the peer on the bridge.
    _ip("netns", "del", namespace, check=False)


def sweep_stale() -> None:
    """Remove the namespaces and bridges of test runs whose process is gone."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        return
    listing = _ip("netns", "list", check=False).stdout
    dead_tokens = set()
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.match(name)
        if match and not _alive(int(match.group(2))):
            _remove_namespace(name)
            dead_tokens.add(match.group(1))
    for token in dead_tokens:
        _ip("link", "del", f"pa{token}-br", check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def postgres_dsn(dsn: str, *, available: bool = True) -> str:
    """`dsn` as reachable inside a namespace: through the Unix socket in `PG_SOCKET_DIR`.

    User, password and database stay; host and port are replaced. With `available` False (the
    loopback fallback) `dsn` is returned unchanged.
    """
    if not available:
        return dsn
    parts = urllib.parse.urlsplit(dsn)
    user = parts.username or ""
    if parts.password:
        user += ":" + parts.password
    netloc = (urllib.parse.quote(user, safe=":") + "@") if user else ""
    query = urllib.parse.parse_qsl(parts.query)
    query = [(k, v) for k, v in query if k not in ("host", "port")] + [("host", PG_SOCKET_DIR)]
    # Built by hand: urlunsplit drops the "//" of an empty host.
    return f"{parts.scheme}://{netloc}{parts.path}?{urllib.parse.urlencode(query)}"
