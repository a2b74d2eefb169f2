"""Cluster rows (issue 14): the same load through one node and through three, on this machine.

A client process (this one) with 16 threads asks ``("add", n)`` of 96 entities (each persists
one event to PostgreSQL and answers) through ``system.entities``; the nodes are real
``persistent_actors node`` processes (`tests/cluster_harness`), one entity host process each.
The clock runs once every entity has started on its final node. The row's notes give each
node's CPU seconds per 1,000 requests (all its processes, from /proc) and this client's: on a
2-core machine three nodes share the same cores, so the ratio shows the cost of the extra
processes, not the scaling across machines (README "Running a cluster" estimates that).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import resource
import secrets
import threading
import time
from pathlib import Path

import asyncpg

from bench.common import Workload
from bench.postgres import DSN, OURS_PG, available
from persistent_actors import ActorSystem
from tests.cluster_harness import Cluster, NodeProcess, node_pids

REQUESTS = 2_000
ENTITIES = 96
THREADS = 16
_TYPES = {"bench": "bench.entities:BenchEntity"}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the live processes `pids`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


async def _lease_counts(schema: str) -> dict[str, int]:
    connection = await asyncpg.connect(DSN)
    try:
        rows = await connection.fetch(
            f'SELECT node_id, count(*) FROM "{schema}".shard_leases '
            "WHERE expires_at > now() GROUP BY node_id")
        return {r[0]: r[1] for r in rows}
    finally:
        await connection.close()


async def _drop(schema: str) -> None:
    connection = await asyncpg.connect(DSN)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@dataclasses.dataclass
class _ClusterLoad:
    """`nodes` nodes, `REQUESTS` asks from `THREADS` client threads (timed)."""

    nodes: int
    workload: Workload | None = None

    def __call__(self, folder: Path) -> float:
        schema = f"pa_bench_cluster_{secrets.token_hex(4)}"
        try:
            with Cluster(schema, folder, shards=64, host_processes=1,
                         lease_ttl=10.0, heartbeat_interval=1.0) as cluster:
                nodes = [cluster.start_node(entities=_TYPES) for _ in range(self.nodes)]
                for node in nodes:
                    node.wait_up()
                return self._measure(cluster, nodes)
        finally:
            asyncio.run(_drop(schema))

    def _measure(self, cluster: Cluster, nodes: list[NodeProcess]) -> float:
        # Every node holds its fair share of the 64 shards before the clock starts.
        deadline = time.monotonic() + 120
        while True:
            counts = asyncio.run(_lease_counts(cluster.schema))
            if len(counts) == self.nodes and sum(counts.values()) == 64 and \
                    max(counts.values()) <= math.ceil(64 / self.nodes):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"shards did not spread over {self.nodes} nodes: {counts}")
            time.sleep(0.2)
        from bench.entities import BenchEntity  # noqa: PLC0415 - the nodes import it too

        with ActorSystem("bench-cluster", config=cluster.client_config()) as system:
            carts = system.entities("bench", BenchEntity)
            ids = [f"c{i}" for i in range(ENTITIES)]
            for entity in ids:  # started (recovered) on its node before the clock
                carts.ask(entity, "count", timeout=60)
            errors: list[BaseException] = []

            def client(k: int) -> None:
                try:
                    for n in range(k, REQUESTS, THREADS):
                        answer = carts.ask(ids[n % ENTITIES], ("add", n), timeout=60)
                        if answer != n:
                            errors.append(RuntimeError(f"request {n}: answered {answer!r}"))
                except BaseException as e:  # noqa: BLE001 - re-raised below
                    errors.append(e)

            pids = {node.name: node_pids(node.marker) for node in nodes}
            before = {name: cpu_seconds(p) for name, p in pids.items()}
            client_before = _own_cpu()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
            if errors:
                raise errors[0]
            per_k = {name: (cpu_seconds(p) - before[name]) * 1000 / REQUESTS
                     for name, p in pids.items()}
            client_per_k = (_own_cpu() - client_before) * 1000 / REQUESTS
        if self.workload is not None:
            self.workload.notes = (
                "CPU s per 1,000 requests: " + ", ".join(f"{n} {v:.2f}" for n, v in
                                                         per_k.items())
                + f", client {client_per_k:.2f}; 4 thespian messages per request (client -> "
                "host -> journal -> host -> client; host-journal ones are batched)")
        return elapsed


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def workloads() -> list[Workload]:
    """The cluster rows (empty without a reachable PostgreSQL)."""
    if not available():
        return []
    rows: list[Workload] = []
    for nodes in (1, 3):
        load = _ClusterLoad(nodes)
        row = Workload(f"cluster_{nodes}_node{'s' if nodes > 1 else ''}", OURS_PG,
                       f"cluster: {THREADS} client threads -> {ENTITIES} entities on {nodes} "
                       f"node{'s' if nodes > 1 else ''} (1 host process each), 1 persist each",
                       REQUESTS, load)
        load.workload = row
        rows.append(row)
    return rows
