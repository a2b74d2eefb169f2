"""The cluster failover scenario, shared by the loopback test and the namespace run.

Three nodes (`tests/cluster_harness`), this process as a client sending a concurrent load
through ``system.entities("cart", Cart)`` (`Load`), SIGKILL of the node that leads the
convention, then the journal checks of `tests/crash_torture.py` (every acknowledged event
stored, sequence numbers 1..n with no gap, the primary key intact by a full scan) plus: no
event stored twice, none that was never sent, each entity's acknowledged events in order, and
no persistence id written by two writers at once (each writer id covers one contiguous run of
sequence numbers: a writer that came back after another one wrote would show as a second run).

``python -m tests.cluster_failover SCHEMA`` runs it with each node in a network namespace of
its own (`tests/netns.py`; loopback when namespaces are not available, said in the output) and
prints the report as one JSON line; the exit status is 0 when every check passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgpack

from persistent_actors import ActorSystem, AskTimeoutError
from persistent_actors.cluster._region import ClusterRegion
from tests.cluster_harness import Cluster, NodeProcess
from tests.entity_actors import AddItem, Cart
from tests.pg import DSN, drop_schema


class Load:
    """Client threads asking ``AddItem`` of their own entities until stopped.

    Each entity gets items "<id>-<n>" in order, one ask at a time, each sent once: an ask that
    times out is counted as unknown (it may or may not be stored) and never re-sent.
    """

    def __init__(self, carts: ClusterRegion, entities: list[str], threads: int) -> None:
        self.carts = carts
        self.acked: dict[str, list[str]] = defaultdict(list)
        self.unknown: dict[str, list[str]] = defaultdict(list)
        self.answered_at: dict[str, float] = {}  # entity -> last acknowledged (monotonic)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        groups = [entities[i::threads] for i in range(threads)]
        self._threads = [threading.Thread(target=self._run, args=(g,), daemon=True)
                         for g in groups]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self, entities: list[str]) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            for entity in entities:
                item = f"{entity}-{n}"
                try:
                    self.carts.ask(entity, AddItem(item), timeout=3.0)
                except AskTimeoutError:
                    with self._lock:
                        self.unknown[entity].append(item)
                    continue
                except Exception as e:  # reported by the test
                    with self._lock:
                        self.errors.append(f"{entity}: {type(e).__name__}: {e}")
                    continue
                with self._lock:
                    self.acked[entity].append(item)
                    self.answered_at[entity] = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def journal_rows(schema: str) -> tuple[list[Any], bool]:
    """The journal's live rows (pid, seq, payload, writer) and whether its key is intact."""

    async def read() -> tuple[list[Any], bool]:
        connection = await asyncpg.connect(DSN)
        try:
            table = f'"{schema}".journal'
            rows = await connection.fetch(
                f"SELECT persistence_id, sequence_nr, payload, writer_uuid FROM {table} "
                "WHERE NOT deleted ORDER BY persistence_id, sequence_nr")
            await connection.execute("SET enable_indexscan = off; SET enable_bitmapscan = off;"
                                     " SET enable_indexonlyscan = off")
            intact = await connection.fetchval(
                f"SELECT count(*) = count(DISTINCT (persistence_id, sequence_nr)) FROM {table}")
            return list(rows), bool(intact)
        finally:
            await connection.close()

    return asyncio.run(read())


def check_journal(schema: str, load: Load) -> dict[str, int]:
    """The crash-torture checks plus duplicates and writer runs; the findings by name."""
    rows, intact = journal_rows(schema)
    stored: dict[str, list[str]] = defaultdict(list)
    seqs: dict[str, list[int]] = defaultdict(list)
    writers: dict[str, list[str]] = defaultdict(list)
    for pid, seq, payload, writer in rows:
        entity = pid.removeprefix("cart-")
        stored[entity].append(msgpack.unpackb(payload)["item"])
        seqs[entity].append(seq)
        if not writers[entity] or writers[entity][-1] != writer:
            writers[entity].append(writer)
    lost = sum(len(set(items) - set(stored[e])) for e, items in load.acked.items())
    gaps = sum(1 for s in seqs.values() if s != list(range(1, len(s) + 1)))
    duplicated = sum(len(items) - len(set(items)) for items in stored.values())
    interleaved = sum(1 for runs in writers.values() if len(runs) != len(set(runs)))
    unexpected = sum(len(set(items) - set(load.acked[e]) - set(load.unknown[e]))
                     for e, items in stored.items())
    # What each entity stored is its acknowledged items in order, with some unknown ones.
    out_of_order = sum(1 for e, items in stored.items()
                       if [i for i in items if i in set(load.acked[e])] != load.acked[e])
    return {"acknowledged": sum(len(v) for v in load.acked.values()),
            "stored": sum(len(v) for v in stored.values()),
            "lost": lost, "gaps": gaps, "duplicated": duplicated,
            "interleaved_writers": interleaved, "unexpected": unexpected,
            "out_of_order": out_of_order, "integrity_errors": int(not intact)}


def node_of(pid: int, nodes: list[NodeProcess]) -> NodeProcess:
    """The node the entity host process `pid` belongs to."""
    return next(node for node in nodes if node.owns(pid))


def start_nodes(cluster: Cluster, count: int,
                node_options: list[dict[str, Any]] | None = None) -> list[NodeProcess]:
    """Start `count` nodes at once (each with its `node_options`), then wait for all."""
    nodes = [cluster.start_node(**(node_options[i] if node_options else {}))
             for i in range(count)]
    for node in nodes:
        node.wait_up()
    return nodes


def wait_for(condition: Any, timeout: float, what: str) -> None:
    """Poll `condition` until true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def where(carts: ClusterRegion, entities: list[str], nodes: list[NodeProcess],
          ) -> dict[str, NodeProcess]:
    """The node each entity runs on now."""
    return {e: node_of(carts.ask(e, "pid", timeout=10), nodes) for e in entities}


# The journal findings that must be 0 (see check_journal).
CLEAN = ("lost", "gaps", "duplicated", "interleaved_writers", "unexpected", "out_of_order",
         "integrity_errors")


@contextlib.contextmanager
def three_nodes_and_a_client(cluster: Cluster, entities: list[str],
                             node_options: list[dict[str, Any]] | None = None,
                             client_options: dict[str, Any] | None = None,
                             ) -> Iterator[tuple[list[NodeProcess], ClusterRegion]]:
    """Three nodes, and this process as a client once the entities are on all three."""
    nodes = start_nodes(cluster, 3, node_options)
    with ActorSystem("client", config=cluster.client_config(**(client_options or {}))) as system:
        carts = system.entities("cart", Cart)
        assert isinstance(carts, ClusterRegion)
        wait_for(lambda: len(set(where(carts, entities, nodes).values())) == 3, 60,
                 "the shards to spread over the three nodes")
        yield nodes, carts


def failover(cluster: Cluster, node_options: list[dict[str, Any]] | None = None,
             client_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """3 nodes + a client under load; SIGKILL node 0 (the convention leader); the report."""
    entities = [f"u{i}" for i in range(48)]
    with three_nodes_and_a_client(cluster, entities, node_options, client_options) as (
            nodes, carts):
        victim = nodes[0]  # the convention leader: nothing may depend on it
        on_victim = [e for e, n in where(carts, entities, nodes).items() if n is victim]
        load = Load(carts, entities, threads=8)
        load.start()
        time.sleep(2.0)
        acked_before = sum(len(v) for v in load.acked.values())
        victim.kill()
        killed_at = time.monotonic()
        # Every entity answers again: its last acknowledgement comes after the kill.
        wait_for(lambda: all(load.answered_at.get(e, 0) > killed_at for e in entities), 60,
                 "every entity to answer after the kill")
        recovered_in = max(load.answered_at[e] for e in entities) - killed_at
        time.sleep(1.0)
        load.stop()
        survivors = [n for n in nodes if n is not victim]
        moved_to = set(where(carts, on_victim, survivors).values())
        # The victim's entities recovered everything on a survivor.
        missing = [e for e in on_victim
                   if not set(load.acked[e]) <= set(carts.ask(e, "items", timeout=10))]
        findings = check_journal(cluster.schema, load)
    warnings = [f"{node.name}: {line[:300]}" for node in nodes for line in node.log().splitlines()
                if ("WARNING" in line or "ERROR" in line) and "did not confirm" not in line]
    return {"warnings": warnings[:40] if missing else len(warnings),
            "on_killed_node": len(on_victim), "moved_to_survivors": moved_to <= set(survivors),
            "recovered_in_s": round(recovered_in, 1), "acknowledged_before_kill": acked_before,
            "unknown": sum(len(v) for v in load.unknown.values()), "errors": load.errors[:5],
            "recovered_missing": missing, **findings}


def failover_passed(report: dict[str, Any]) -> bool:
    """True if the report shows nothing lost, torn or doubled, a failover within 30 s, and
    every moved entity answering with every event acknowledged before (``recovered_missing``).
    """
    return (report["on_killed_node"] > 0 and report["moved_to_survivors"]
            and not report["errors"] and not report["recovered_missing"]
            and report["recovered_in_s"] <= 30.0
            and report["acknowledged"] > report["acknowledged_before_kill"] > 0
            and all(report[key] == 0 for key in CLEAN))


def main(argv: list[str]) -> int:
    """``python -m tests.cluster_failover SCHEMA``: the scenario with nodes in namespaces."""
    from tests.netns import Network, postgres_dsn  # noqa: PLC0415 - this entry point only

    schema = argv[1]
    drop_schema(schema)
    with tempfile.TemporaryDirectory() as tmp, Network(3) as net:
        workdir = Path(tmp)
        key = workdir / "cluster.key"
        key.write_bytes(secrets.token_hex(32).encode())
        os.chmod(key, 0o600)
        secret = {"secret_file": str(key)} if net.available else {}
        nodes = [{"prefix": host.command([]), "bind_address": host.address,
                  "dsn": postgres_dsn(DSN, available=net.available), **secret}
                 for host in net.hosts]
        cluster = Cluster(schema, workdir, leader_host=net.hosts[0].address)
        try:
            report = failover(cluster, nodes, {"bind_address": net.host_address, **secret})
        finally:
            cluster.close()
            drop_schema(schema)
    report["network"] = "namespaces" if net.available else f"loopback ({net.reason})"
    print(json.dumps(report), flush=True)
    return 0 if failover_passed(report) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
