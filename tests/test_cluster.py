"""The cluster: `[cluster]` config, and real node processes on PostgreSQL (failover, join).

The node tests start ``python -m persistent_actors node`` processes (each its own process
group, own admin port; stopped or SIGKILLed and reaped in teardown: `tests/cluster_harness`),
an application process (this one) joins as a client and sends a concurrent load through
``system.entities("cart", Cart)``. After the run the journal is checked as
`tests/crash_torture.py` does (every acknowledged event stored, sequence numbers 1..n with no
gap, the primary key intact by a full scan), plus: no event stored twice, and no persistence
id written by two writers at once (each writer id covers one contiguous run of sequence
numbers: a writer that came back after another one wrote would show up as a second run).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgpack
import pytest

from persistent_actors import ActorSystem, AskTimeoutError, ConfigError
from persistent_actors._config import load_settings
from persistent_actors.cluster._region import ClusterRegion
from persistent_actors.cluster.node import Node
from tests.cluster_harness import Cluster, NodeProcess, cluster_config
from tests.entity_actors import AddItem, Cart
from tests.pg import DSN

PG = {"plugin": "postgres", "dsn": DSN, "schema": "pa_unused"}


# -- config ------------------------------------------------------------------------------------
def config_with(**cluster: Any) -> dict[str, Any]:
    return {"cluster": {"leader": "127.0.0.1:19500", **cluster},
            "persistence": {"journal": dict(PG)}}


def test_cluster_section_makes_a_multiproc_process_with_its_ports() -> None:
    settings = load_settings(config_with(admin_port=19501, entities={"cart": "a.b:C"}))
    assert settings.base == "multiproc-tcp"
    assert settings.admin_port == 19501
    assert settings.bind_address == "127.0.0.1"
    cluster = settings.cluster
    assert cluster is not None
    assert cluster.leader == ("127.0.0.1", 19500)
    assert (cluster.dsn, cluster.schema) == (DSN, "pa_unused")
    assert cluster.entities == {"cart": "a.b:C"}


@pytest.mark.parametrize(("cluster", "persistence", "message"), [
    ({"leader": "nohost"}, None, "cluster.leader must be"),
    ({"leader": "h:99999"}, None, "cluster.leader must be"),
    ({"bind_address": "10.1.2.3"}, None, "not a loopback address"),
    ({"bind_address": "not-an-ip"}, None, "must be an IP address"),
    ({"lease_ttl": 2.0}, None, "at least 3 x cluster.heartbeat_interval"),
    ({"heartbeat_interval": 0}, None, "cluster.heartbeat_interval must be"),
    ({"rebalance_limit": 0}, None, "cluster.rebalance_limit must be"),
    ({"entities": {"cart": "no-colon"}}, None, "cluster.entities.cart must be"),
    ({"colour": 1}, None, "unknown config key cluster.colour"),
    ({}, {"journal": {"plugin": "inmem"}}, "needs the PostgreSQL journal"),
])
def test_bad_cluster_config_names_the_key(cluster: dict[str, Any],
                                          persistence: dict[str, Any] | None,
                                          message: str) -> None:
    config = config_with(**cluster)
    if persistence is not None:
        config["persistence"] = persistence
    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_cluster_ports_are_set_once() -> None:
    config = config_with()
    config["actor_system"] = {"admin_port": 19502}
    with pytest.raises(ConfigError, match=r"sets it once, as cluster\.admin_port"):
        load_settings(config)
    config["actor_system"] = {"base": "simple"}
    with pytest.raises(ConfigError, match="multiproc-tcp base"):
        load_settings(config)


def test_a_secret_file_allows_another_bind_address() -> None:
    settings = load_settings(config_with(bind_address="10.1.2.3", secret_file="/k"))
    assert (settings.bind_address, settings.secret_file) == ("10.1.2.3", "/k")
    config = config_with()
    config["actor_system"] = {"secret_file": "/k"}
    with pytest.raises(ConfigError, match=r"sets it once, as cluster\.secret_file"):
        load_settings(config)


def test_a_node_needs_a_port_entities_and_importable_classes() -> None:
    with pytest.raises(ConfigError, match="admin_port is required"):
        Node(config_with(entities={"cart": "tests.entity_actors:Cart"}))
    with pytest.raises(ConfigError, match="none are configured"):
        Node(config_with(admin_port=19503))
    with pytest.raises(ConfigError, match="cannot import"):
        Node(config_with(admin_port=19503, entities={"cart": "tests.no_such_module:Cart"}))
    with pytest.raises(ConfigError, match=r"not a persistent_actors\.Actor"):
        Node(config_with(admin_port=19503, entities={"cart": "tests.entity_actors:AddItem"}))


# -- real nodes --------------------------------------------------------------------------------
@pytest.fixture
def cluster(pg_schema: str, tmp_path: Path) -> Iterator[Cluster]:
    """Nodes of this test's own (own schema, ports, logs); all stopped and reaped after it."""
    with Cluster(pg_schema, tmp_path) as nodes:
        yield nodes


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


def start_nodes(cluster: Cluster, count: int) -> list[NodeProcess]:
    nodes = [cluster.start_node() for _ in range(count)]
    for node in nodes:
        node.wait_up()
    return nodes


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def where(carts: ClusterRegion, entities: list[str], nodes: list[NodeProcess],
          ) -> dict[str, NodeProcess]:
    return {e: node_of(carts.ask(e, "pid", timeout=10), nodes) for e in entities}


# The journal findings that must be 0 (see check_journal).
CLEAN = ("lost", "gaps", "duplicated", "interleaved_writers", "unexpected", "out_of_order",
         "integrity_errors")


@contextlib.contextmanager
def three_nodes_and_a_client(cluster: Cluster, entities: list[str],
                             ) -> Iterator[tuple[list[NodeProcess], ClusterRegion]]:
    """Three nodes, and this process as a client once the entities are on all three."""
    nodes = start_nodes(cluster, 3)
    with ActorSystem("client", config=cluster.client_config()) as system:
        carts = system.entities("cart", Cart)
        assert isinstance(carts, ClusterRegion)
        wait_for(lambda: len(set(where(carts, entities, nodes).values())) == 3, 60,
                 "the shards to spread over the three nodes")
        yield nodes, carts


@pytest.mark.timeout(240)
def test_failover_after_sigkill_of_the_convention_leader_loses_nothing(
        cluster: Cluster) -> None:
    """3 nodes + a client under load; SIGKILL the node that also leads the convention."""
    entities = [f"u{i}" for i in range(48)]
    with three_nodes_and_a_client(cluster, entities) as (nodes, carts):
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
        moved = where(carts, on_victim, survivors)
        # The victim's entities recovered everything on a survivor.
        for entity in on_victim:
            items = carts.ask(entity, "items", timeout=10)
            assert set(load.acked[entity]) <= set(items), entity
        findings = check_journal(cluster.schema, load)
    print(f"\ncluster failover: {len(on_victim)} entities on the killed node, all answering "
          f"{recovered_in:.1f}s after the kill; acknowledged before the kill {acked_before}, "
          f"unknown (timed out, not re-sent) {sum(len(v) for v in load.unknown.values())}; "
          f"{findings}")
    assert on_victim
    assert set(moved.values()) <= set(survivors)
    assert not load.errors, load.errors[:5]
    assert recovered_in <= 30.0
    assert findings["acknowledged"] > acked_before > 0
    for key in CLEAN:
        assert findings[key] == 0, (key, findings)


@pytest.mark.timeout(240)
def test_a_fourth_node_takes_its_share_without_losing_or_repeating_a_message(
        cluster: Cluster) -> None:
    entities = [f"j{i}" for i in range(48)]
    with three_nodes_and_a_client(cluster, entities) as (nodes, carts):
        load = Load(carts, entities, threads=8)
        load.start()
        time.sleep(1.0)
        fourth = cluster.start_node()
        fourth.wait_up()
        nodes.append(fourth)
        wait_for(lambda: fourth in set(where(carts, entities, nodes).values()), 60,
                 "the fourth node to serve entities")
        time.sleep(2.0)  # the rebalance settles under load
        load.stop()
        counts: dict[str, int] = defaultdict(int)
        for node in where(carts, entities, nodes).values():
            counts[node.name] += 1
        findings = check_journal(cluster.schema, load)
    print(f"\ncluster join: entities per node after the join {dict(counts)}; {findings}")
    assert not load.errors, load.errors[:5]
    assert not any(load.unknown.values()), dict(load.unknown)  # a handoff loses no ask
    for key in CLEAN:
        assert findings[key] == 0, (key, findings)
    assert findings["stored"] == findings["acknowledged"]


def test_a_client_without_nodes_fails_clearly(pg_schema: str) -> None:
    config = cluster_config(pg_schema, "127.0.0.1:1")
    with ActorSystem("client", config=config) as system:
        carts = system.entities("cart", Cart)
        with pytest.raises(AskTimeoutError, match="no live cluster node owns shard"):
            carts.ask("alice", "items", timeout=0.5)
