"""Real cluster node processes for the cluster tests: start, kill (SIGKILL), stop, reap.

Each node is ``python -m persistent_actors node --config FILE``. Thespian's admin daemonizes
(``setsid`` and a double fork), so a node's processes span two sessions; they are found by a
marker in their environment, which every forked process inherits (`node_pids`).
`NodeProcess.kill` SIGKILLs all of them at once (a machine losing power), `stop` sends SIGTERM
(a clean handoff) and SIGKILLs whatever is left after a grace period. `Cluster` stops every
node it started, also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from persistent_actors._thespian.loopback import free_port
from tests.pg import DSN

ROOT = Path(__file__).resolve().parent.parent
MARKER = "PERSISTENT_ACTORS_TEST_NODE"
ENTITIES = {"cart": "tests.entity_actors:Cart"}


def toml_value(value: Any) -> str:
    """`value` as a TOML literal (str, int, float, bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def cluster_config(schema: str, leader: str, *, admin_port: int | None = None,
                   bind_address: str = "127.0.0.1", entities: dict[str, str] | None = None,
                   shards: int = 32, host_processes: int = 1, lease_ttl: float = 4.0,
                   heartbeat_interval: float = 0.5, dsn: str = DSN,
                   secret_file: str | None = None) -> dict[str, Any]:
    """The config mapping of a node (with `entities`) or a client (without)."""
    cluster: dict[str, Any] = {"leader": leader, "bind_address": bind_address,
                               "lease_ttl": lease_ttl, "heartbeat_interval": heartbeat_interval}
    if secret_file is not None:
        cluster["secret_file"] = secret_file
    if admin_port is not None:
        cluster["admin_port"] = admin_port
    if entities:
        cluster["entities"] = dict(entities)
    return {
        "cluster": cluster,
        "sharding": {"shards": shards, "host_processes": host_processes},
        "persistence": {"journal": {"plugin": "postgres", "dsn": dsn, "schema": schema},
                        "snapshot_store": {"plugin": "postgres", "dsn": dsn,
                                           "schema": schema}},
    }


def write_toml(config: dict[str, Any], path: Path) -> Path:
    """Write the two-level `config` mapping as a TOML file."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in plain.items())
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}", value)

    for name, values in config.items():
        table(name, values)
    path.write_text("\n".join(lines) + "\n")
    return path


def node_pids(marker: str) -> list[int]:
    """The processes whose environment carries ``MARKER=marker`` (one node's, all sessions)."""
    needle = f"{MARKER}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


class NodeProcess:
    """One node process tree (see the module doc)."""

    def __init__(self, name: str, config: dict[str, Any], workdir: Path,
                 prefix: list[str] | None = None) -> None:
        self.name = name
        self.port: int = config["cluster"]["admin_port"]
        self.config_path = write_toml(config, workdir / f"{name}.toml")
        self.log_path = workdir / f"{name}.log"
        self.marker = f"{workdir}/{name}"
        env = {**os.environ, MARKER: self.marker}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # our own module, run by our own interpreter
                [*(prefix or []), sys.executable, "-m", "persistent_actors", "node", "--config",
                 str(self.config_path)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env)

    def wait_up(self, timeout: float = 60.0) -> None:
        """Wait for the node's "up" line; raise with its log if it exits or times out."""
        deadline = time.monotonic() + timeout
        while b" up: " not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        """The node's output so far."""
        return self.log_path.read_text(errors="replace")

    def owns(self, pid: int) -> bool:
        """True if `pid` is one of this node's processes."""
        return pid in node_pids(self.marker)

    def kill(self) -> None:
        """SIGKILL every process of the node at once and reap the one we started."""
        self._kill_all()
        self.proc.wait(timeout=30)

    def _kill_all(self) -> None:
        for _ in range(3):  # a process forked meanwhile is found by the next pass
            pids = node_pids(self.marker)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (a clean stop), then SIGKILL the group after `grace` seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        self._kill_all()  # processes left behind, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)


class Cluster:
    """The nodes of one test; `close` stops them all (a context manager)."""

    def __init__(self, schema: str, workdir: Path, leader_host: str = "127.0.0.1",
                 **options: Any) -> None:
        self.schema = schema
        self.workdir = workdir
        self.options = options
        self.leader_host = leader_host
        self.leader_port = free_port()
        self.nodes: list[NodeProcess] = []

    @property
    def leader(self) -> str:
        """The convention leader's "host:port" (the first node)."""
        return f"{self.leader_host}:{self.leader_port}"

    def start_node(self, entities: dict[str, str] | None = None,
                   prefix: list[str] | None = None, **overrides: Any) -> NodeProcess:
        """Start one more node (the first one is the convention leader).

        `prefix` runs it inside something (``ip netns exec NS``); `overrides` are
        `cluster_config` keywords (bind_address, dsn, secret_file...).
        """
        port = self.leader_port if not self.nodes else free_port()
        config = cluster_config(self.schema, self.leader, admin_port=port,
                                entities=entities or ENTITIES, **{**self.options, **overrides})
        node = NodeProcess(f"node{len(self.nodes)}", config, self.workdir, prefix)
        self.nodes.append(node)
        return node

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """The config of an application process (a client: no shards)."""
        return cluster_config(self.schema, self.leader, **{**self.options, **overrides})

    def close(self) -> None:
        """Stop every node (clean stop, SIGKILL after a grace period)."""
        for node in self.nodes:
            node.stop(grace=15.0)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
