"""The cluster: `[cluster]` config, and real node processes on PostgreSQL (failover, join).

The node tests start ``python -m persistent_actors node`` processes (each with its own admin
port, all its processes SIGKILLed or stopped and reaped in teardown: `tests/cluster_harness`);
this process joins as a client and sends a concurrent load. The failover scenario and the
journal checks live in `tests/cluster_failover.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import (
    ActorSystem,
    AskTimeoutError,
    ClusterError,
    ConfigError,
    MessageNotSerializableError,
    PersistentActorsError,
)
from persistent_actors._config import load_settings
from persistent_actors.cluster._directory import Directory
from persistent_actors.cluster._region import ClusterRegion
from persistent_actors.cluster.node import Node
from persistent_actors.testing import TestProbe
from tests.cluster_failover import (
    CLEAN,
    Load,
    check_journal,
    failover,
    failover_passed,
    three_nodes_and_a_client,
    wait_for,
    where,
)
from tests.cluster_harness import ROOT, Cluster, cluster_config
from tests.entity_actors import AddItem, Cart
from tests.failure_actors import ProcessReporter
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
    ({"bind_address": "not-an-ip"}, None, "must be an IPv4 address"),
    ({"bind_address": "::1"}, None, "IPv4 only"),
    ({"lease_ttl": 2.0}, None, "at least 3 x cluster.heartbeat_interval"),
    ({"heartbeat_interval": 0}, None, "cluster.heartbeat_interval must be"),
    ({"rebalance_limit": 0}, None, "cluster.rebalance_limit must be"),
    ({"entities": {"cart": "no-colon"}}, None, "cluster.entities.cart must be"),
    # A bad type name was reported as a bad class path (naming the good value).
    ({"entities": {"a/b": "a.b:C"}}, None,
     r"cluster\.entities\.'a/b': an entity type name must be a non-empty str without '/'"),
    ({"entities": {"": "a.b:C"}}, None, r"cluster\.entities\.'': an entity type name"),
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


@pytest.mark.timeout(240)
def test_failover_after_sigkill_of_the_convention_leader_loses_nothing(
        cluster: Cluster) -> None:
    """3 nodes + this process as a client, under load; SIGKILL the convention leader node."""
    report = failover(cluster)
    print(f"\ncluster failover (loopback): {report}")
    assert failover_passed(report), report


@pytest.mark.timeout(300)
def test_failover_with_each_node_in_its_own_network_namespace(pg_schema: str) -> None:
    """The same scenario across namespaces (the client in a process of its own, since the
    frame-authentication key is installed process-wide); loopback where unavailable."""
    run = subprocess.run([sys.executable, "-m", "tests.cluster_failover", pg_schema],
                         cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report:\n{run.stdout}\n{run.stderr[-3000:]}"
    report = json.loads(lines[-1])
    print(f"\ncluster failover ({report['network']}): {report}")
    assert run.returncode == 0, (report, run.stderr[-3000:])


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


def test_a_client_without_nodes_fails_clearly(pg_schema: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    config = cluster_config(pg_schema, "127.0.0.1:1")
    with ActorSystem("client", config=config) as system:
        carts = system.entities("cart", Cart)
        with pytest.raises(AskTimeoutError, match="no live cluster node owns shard"):
            carts.ask("alice", "items", timeout=0.5)
        # A tell never raises for the cluster's state (it raised AskTimeoutError): dropped,
        # with a warning, as a tell to a shard in handoff.
        carts.tell("alice", "items")
        assert any("dropped a tell to 'alice'" in r.getMessage() for r in caplog.records)
        # Not handed to actors: a copy came out broken (its arguments shuffled, no routes).
        with pytest.raises(TypeError, match="cannot be handed to an actor or pickled"):
            pickle.dumps(carts)
        with pytest.raises(MessageNotSerializableError, match="cannot be handed to an actor"):
            TestProbe(system).ref.tell(carts)


def test_a_cluster_regions_ask_checks_its_timeout_as_a_local_regions_does(pg_schema: str) -> None:
    # README "Errors": a timeout that is no number is a TypeError or ValueError naming the
    # argument, at the call. The cluster region's ask said "unsupported operand type(s) for +"
    # for a str and took a negative one for an expired deadline.
    with ActorSystem("client", config=cluster_config(pg_schema, "127.0.0.1:1")) as system:
        carts = system.entities("cart", Cart)
        bad: list[Any] = ["1", -1, 0, True]
        for timeout in bad:
            with pytest.raises(ValueError, match="ask timeout must be a positive, finite number"):
                carts.ask("alice", "items", timeout=timeout)
            with pytest.raises(ValueError, match="ask timeout must be a positive, finite number"):
                asyncio.run(carts.ask_async("alice", "items", timeout=timeout))


def test_a_cluster_region_of_a_shut_down_system_raises_as_a_local_one(pg_schema: str) -> None:
    # README "Errors": once shutdown() has run, tell and ask raise "actor system ... has been
    # shut down". The cluster region re-opened its routes instead and waited for an owner: 5 s
    # and a dropped-tell warning for a tell, an AskTimeoutError for an ask.
    with ActorSystem("client", config=cluster_config(pg_schema, "127.0.0.1:1")) as system:
        carts = system.entities("cart", Cart)
    shut_down = "actor system 'client' has been shut down"
    with pytest.raises(PersistentActorsError, match=shut_down):
        carts.tell("alice", "items")
    with pytest.raises(PersistentActorsError, match=shut_down):
        carts.ref("alice")
    with pytest.raises(PersistentActorsError, match=shut_down):
        carts.ask("alice", "items", timeout=30)
    with pytest.raises(PersistentActorsError, match=shut_down):
        asyncio.run(carts.ask_async("alice", "items", timeout=30))


def test_a_client_with_another_shard_count_than_the_nodes_fails_clearly(pg_schema: str) -> None:
    # The nodes checked their counts against each other, a client not: with another count it
    # sent each entity's messages to the owner of another shard, refused until the timeout.
    settings = load_settings(cluster_config(pg_schema, "127.0.0.1:1", shards=8)).cluster
    assert settings is not None
    directory = Directory(settings, 8)

    async def register() -> None:
        await directory.start()
        try:
            await directory.register("node-x", "127.0.0.1:1", {"cart": []})
        finally:
            await directory.close()

    asyncio.run(register())
    with ActorSystem("client", config=cluster_config(pg_schema, "127.0.0.1:1",
                                                     shards=32)) as system:
        carts = system.entities("cart", Cart)
        expected = r"'cart' has 8 shards in the cluster, this client is configured with " \
                   r"\[sharding\] shards = 32"
        with pytest.raises(ClusterError, match=expected):
            carts.ask("alice", "items", timeout=5)
        with pytest.raises(ClusterError, match=expected):
            carts.tell("alice", "items")
        # The type not stored yet (no node ran it): no error, as no owner either.
        with pytest.raises(AskTimeoutError, match="no live cluster node owns shard"):
            system.entities("wallet", Cart).ask("alice", "items", timeout=0.5)


@pytest.mark.timeout(120)
def test_a_crashed_entity_host_process_is_restarted_and_published(cluster: Cluster) -> None:
    """SIGKILL one entity host process of a live node: the guardian restarts it, the node
    publishes its new address, and the client reaches the entity there, state recovered."""
    node = cluster.start_node()
    node.wait_up()
    with ActorSystem("client", config=cluster.client_config()) as system:
        carts = system.entities("cart", Cart)
        assert carts.ask("alice", AddItem("apple"), timeout=30) == 1
        assert asyncio.run(carts.ask_async("bob", AddItem("pear"), timeout=30)) == 1
        old_pid = carts.ask("alice", "pid", timeout=10)
        assert node.owns(old_pid)
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        answer: Any = None
        while answer is None:
            assert time.monotonic() - killed_at < 60, node.log()[-3000:]
            with contextlib.suppress(AskTimeoutError):
                answer = carts.ask("alice", "pid", timeout=2)
        assert answer != old_pid
        assert carts.ask("alice", "items", timeout=10) == ["apple"]
    assert "restarted at" in node.log()


@pytest.mark.timeout(120)
def test_actor_of_on_a_cluster_process_runs_in_its_own_shared_hosts(cluster: Cluster) -> None:
    """multiproc-tcp's default, shared host processes, in a cluster: a client's actor_of
    actors live in host processes of the client's own (not a node's), persist to the
    cluster's journal, and the client's entity traffic is unaffected."""
    node = cluster.start_node()
    node.wait_up()
    with ActorSystem("client", config=cluster.client_config()) as system:
        probe = TestProbe(system)
        actors = [system.actor_of(ProcessReporter, f"local-{i}", probe.ref) for i in range(3)]
        assert [probe.expect_msg(timeout=30) for _ in actors] == [("recovered", 0, 0)] * 3
        pids = {actor.ask("pid", timeout=30) for actor in actors}
        assert len(pids) == min(len(os.sched_getaffinity(0)), 3)
        assert os.getpid() not in pids
        assert not any(node.owns(pid) for pid in pids)
        actors[0].tell(5)
        assert probe.expect_msg(timeout=30) == ("persisted", 5, 1)
        carts = system.entities("cart", Cart)
        assert carts.ask("alice", AddItem("apple"), timeout=30) == 1
        assert actors[0].ask("total?", timeout=30) == ("total", 5, 1)


def test_a_node_process_refuses_another_class_for_its_entity_type(pg_schema: str) -> None:
    # Its [cluster.entities] entry decides what runs; another class was accepted silently.
    config = cluster_config(pg_schema, "127.0.0.1:1", entities={"cart": "tests.entity_actors:Cart"})
    with ActorSystem("node-process", config=config) as system:
        with pytest.raises(ConfigError, match=r"'cart' is \[cluster\.entities\] "
                                              r"'tests\.entity_actors:Cart' on this node"):
            system.entities("cart", ProcessReporter)
        assert isinstance(system.entities("cart", Cart), ClusterRegion)


@pytest.mark.timeout(180)
def test_a_client_that_only_tells_follows_a_rebalance(cluster: Cluster) -> None:
    # Its cached owners were re-read only when an ask was refused or timed out: after a node
    # joined, tells to the shards that moved went to the old owner, which dropped them, for
    # the rest of the client's life.
    entities = [f"t{i}" for i in range(24)]
    first = cluster.start_node()
    first.wait_up()
    with ActorSystem("teller", config=cluster.client_config()) as teller, \
            ActorSystem("observer", config=cluster.client_config()) as observer:
        tells, looks = teller.entities("cart", Cart), observer.entities("cart", Cart)
        assert isinstance(looks, ClusterRegion)
        for entity in entities:  # the teller's owners are read here, before the join
            assert tells.ask(entity, AddItem("before"), timeout=10) == 1
        second = cluster.start_node()
        second.wait_up()
        wait_for(lambda: second in set(where(looks, entities, [first, second]).values()), 60,
                 "the second node to serve entities")
        for entity in entities:
            tells.tell(entity, AddItem("after"))
        wait_for(lambda: all(looks.ask(e, "items", timeout=10) == ["before", "after"]
                             for e in entities), 20, "every told item to arrive")
