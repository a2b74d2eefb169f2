"""Entities (system.entities): start on first message, passivation, limits, the region API."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import (
    ActorSystem,
    ConfigError,
    DeadLetter,
    EntityRef,
    EntityRegion,
    InvalidActorNameError,
)
from persistent_actors._region import shard_of
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.entity_actors import AddItem, Cart, Counter, Fragile, Notifier, Relay, SlowEntity
from tests.test_recovery_permits import _max_overlap
from tests.writer_actors import Script


def _system(base: str, **sharding: Any) -> ActorSystem:
    config = system_config(base)
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0, **sharding}
    return ActorSystem("entities", config=config)


@pytest.fixture
def sharded(base: str) -> Iterator[ActorSystem]:
    """A system with 2 entity hosts per type on multiproc-tcp, no idle passivation."""
    system = _system(base)
    try:
        yield system
    finally:
        system.shutdown()


def test_an_entity_starts_on_its_first_message(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    assert isinstance(carts, EntityRegion)
    carts.tell("alice", AddItem("banana"))
    assert carts.ask("alice", AddItem("apple"), timeout=10) == 2
    assert carts.ask("alice", "items", timeout=10) == ["banana", "apple"]
    # Constructed as Cart("bob"): self.entity_id and its ref name it.
    assert carts.ask("bob", "whoami", timeout=10) == ("bob", "cart/bob")
    assert carts.ask("bob", "items", timeout=10) == []


def test_state_survives_self_passivation(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    for item in ("a", "b", "c"):
        carts.tell("alice", AddItem(item))
    assert carts.ask("alice", "recovered", timeout=10) == 0
    assert carts.ask("alice", "passivate", timeout=10) == "passivating"
    # The next incarnation recovered the three events from the journal.
    assert carts.ask("alice", "items", timeout=10) == ["a", "b", "c"]
    assert carts.ask("alice", "recovered", timeout=10) == 3


def test_messages_sent_while_passivating_reach_the_next_incarnation(
        sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    assert carts.ask("alice", AddItem("x"), timeout=10) == 1  # running, nothing pending
    carts.tell("alice", "passivate")
    for item in ("y", "z"):  # buffered by the host until the entity stopped
        carts.tell("alice", AddItem(item))
    assert carts.ask("alice", "items", timeout=10) == ["x", "y", "z"]
    assert carts.ask("alice", "recovered", timeout=10) == 1  # x; y and z were new


def test_the_passivation_buffer_is_bounded() -> None:
    # Simple base: one thespian message queues all six before the host handles "passivate",
    # so the five ticks arrive while it passivates. Three fit (internal_stash_capacity).
    config = system_config("simple", internal_stash_capacity=3)
    config["sharding"] = {"passivate_idle_after": 0}
    with ActorSystem("entities", config=config) as system:
        probe = TestProbe(system)
        system.event_stream.subscribe(probe.ref, DeadLetter)
        counters = system.entities("counter", Counter)
        ref = counters.ref("a")
        assert ref.ask("count", timeout=10) == ("a", 0)
        system.actor_of(Script).tell([(ref, "passivate")] + [(ref, f"tick-{n}") for n in range(5)])
        dead = [probe.expect_msg(timeout=10).message for _ in range(2)]
        assert dead == ["tick-3", "tick-4"]
        assert ref.ask("count", timeout=10) == ("a", 3)  # a new incarnation got three


def test_the_least_recently_used_entity_is_passivated_at_the_limit(base: str) -> None:
    with _system(base, host_processes=1, max_active_entities=2) as system:
        counters = system.entities("counter", Counter)
        counters.tell("a", "tick")
        counters.tell("a", "tick")
        assert counters.ask("a", "count", timeout=10) == ("a", 2)
        assert counters.ask("b", "count", timeout=10) == ("b", 0)
        counters.tell("b", "tick")
        assert counters.ask("c", "count", timeout=10) == ("c", 0)  # a is the oldest: out
        assert counters.ask("b", "count", timeout=10) == ("b", 1)  # still active
        assert counters.ask("a", "count", timeout=10) == ("a", 0)  # a new incarnation

        carts = system.entities("cart", Cart)
        for user in ("u1", "u2", "u3", "u4"):
            carts.tell(user, AddItem(f"{user}-item"))
        # u1 and u2 were passivated to make room; they recover their items.
        assert carts.ask("u1", "items", timeout=10) == ["u1-item"]
        assert carts.ask("u1", "recovered", timeout=10) == 1


def test_idle_entities_are_passivated(base: str) -> None:
    with _system(base, passivate_idle_after=0.2) as system:
        carts = system.entities("cart", Cart)
        assert carts.ask("alice", AddItem("banana"), timeout=10) == 1
        deadline = time.monotonic() + 15
        recovered = 0
        while recovered == 0 and time.monotonic() < deadline:
            time.sleep(0.6)  # idle for longer than passivate_idle_after (+ a check period)
            recovered = carts.ask("alice", "recovered", timeout=10)
        assert recovered == 1
        assert carts.ask("alice", "items", timeout=10) == ["banana"]


def _wake_all(base: str, limit: int | None) -> int:
    """Passivate 6 snapshotted entities of one host, wake them at once; the highest overlap."""
    config = system_config(base)
    if limit is not None:
        config["persistence"] = {"max_concurrent_recoveries": limit}
    config["sharding"] = {"host_processes": 1, "passivate_idle_after": 0}
    ids = [f"e{n}" for n in range(6)]
    with ActorSystem("entities", config=config) as system:
        probe = TestProbe(system)
        slow = system.entities("slow", SlowEntity, probe.ref)
        for entity_id in ids:
            slow.tell(entity_id, "snap")
            assert probe.expect_msg(timeout=20)[:2] == ("window", f"slow-{entity_id}")
            assert probe.expect_msg(timeout=20) == ("snapped", f"slow-{entity_id}")
            slow.tell(entity_id, "passivate")
            assert probe.expect_msg(timeout=20) == ("stopped", f"slow-{entity_id}")
        # One thespian message wakes them all: their recoveries start together.
        system.actor_of(Script).tell([(slow.ref(entity_id), "wake") for entity_id in ids])
        reports = [probe.expect_msg(timeout=20) for _ in ids]
    assert sorted(report[1] for report in reports) == [f"slow-{e}" for e in ids]
    return _max_overlap([(report[2], report[3]) for report in reports])


@pytest.mark.parametrize("limit", [1, 2])
def test_recovery_permits_bound_the_entities_recovering_at_once(base: str, limit: int) -> None:
    assert _wake_all(base, limit) <= limit


def test_without_a_tight_limit_entity_recoveries_overlap() -> None:
    """The control: with the default (50) the same entities do recover concurrently.

    On the simple base only: there every LoadSnapshot is answered before any replay. On
    multiproc-tcp the host's requests and their answers cross one TCP exchange at a time, so
    how far unlimited recoveries overlap depends on timing.
    """
    assert _wake_all("simple", None) > 2


@pytest.mark.multiproc
def test_a_killed_host_process_is_restarted_and_its_entities_recover(tmp_path: Path) -> None:
    config = system_config("multiproc-tcp",
                           journal={"plugin": "sqlite", "path": str(tmp_path / "events.db")})
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0}
    with ActorSystem("entities", config=config) as system:
        carts = system.entities("cart", Cart)
        users = [f"user-{i}" for i in range(12)]
        for user in users:
            assert carts.ask(user, AddItem(f"{user}-1"), timeout=20) == 1
        pids = {user: carts.ask(user, "pid", timeout=20) for user in users}
        assert len(set(pids.values())) == 2  # both hosts have entities
        victim = pids["user-0"]
        os.kill(victim, signal.SIGKILL)
        # Sent at once, while the guardian may not know yet: held, then delivered to the
        # new host, where each entity recovers from the journal.
        for user in users:
            assert carts.ask(user, "items", timeout=30) == [f"{user}-1"]
            assert carts.ask(user, AddItem(f"{user}-2"), timeout=30) == 2
        moved = [u for u in users if pids[u] == victim]
        assert all(carts.ask(u, "pid", timeout=20) != victim for u in moved)
        assert all(carts.ask(u, "recovered", timeout=20) == 1 for u in moved)


def test_ask_from_threads_and_event_loops(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            user = f"thread-{n}"
            for i in range(5):
                carts.tell(user, AddItem(str(i)))
            results[user] = carts.ask(user, "items", timeout=20)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {f"thread-{n}": ["0", "1", "2", "3", "4"] for n in range(8)}

    async def clients() -> list[Any]:
        replies = await asyncio.gather(*(carts.ask_async(f"loop-{n}", AddItem("one"), timeout=20)
                                         for n in range(50)))
        items = await carts.ref("loop-7").ask_async("items", timeout=20)
        return [replies, items]

    replies, items = asyncio.run(clients())
    assert replies == [1] * 50
    assert items == ["one"]


def test_a_regions_ref(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    ref = carts.ref("alice")
    assert isinstance(ref, EntityRef)
    assert (ref.type_name, ref.entity_id, ref.name) == ("cart", "alice", "cart/alice")
    assert ref == carts.ref("alice")
    assert ref != carts.ref("bob")
    assert len({ref, carts.ref("alice"), carts.ref("bob")}) == 2
    ref.tell(AddItem("banana"))
    assert ref.ask(AddItem("apple"), timeout=10) == 2
    assert carts.ask("alice", "items", timeout=10) == ["banana", "apple"]


def test_entities_reply_to_entities_and_actors(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    relays = sharded.entities("relay", Relay)
    carts.tell("alice", AddItem("banana"))
    relays.tell("r1", ("relay", carts.ref("alice"), "items"))
    relays.tell("r2", ("relay", carts.ref("alice"), "whoami"))
    deadline = time.monotonic() + 20
    while relays.ask("r1", "last", timeout=10) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relays.ask("r1", "last", timeout=10) == ["banana"]
    while relays.ask("r2", "last", timeout=10) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relays.ask("r2", "last", timeout=10) == ("alice", "cart/alice")
    # A plain actor (not an entity) cannot passivate.
    plain = sharded.actor_of(Relay, "plain")
    assert plain.ask("passivate-plain", timeout=10) == "IllegalActorStateError"


def test_an_entity_whose_constructor_raises_leaves_its_host_running(
        sharded: ActorSystem) -> None:
    fragile = sharded.entities("fragile", Fragile)
    assert fragile.ask("good", 1, timeout=10) == ("ok", 1)
    fragile.tell("bad-1", 2)  # fails to start: a dead letter, logged
    assert fragile.ask("good", 3, timeout=10) == ("ok", 3)  # the host goes on


def test_entity_timers_run_on_the_host(sharded: ActorSystem) -> None:
    # At-least-once redelivery is a timer: unconfirmed, the message comes again and again.
    probe = TestProbe(sharded)
    notifiers = sharded.entities("notifier", Notifier, probe.ref)
    notifiers.tell("n1", AddItem("hello"))
    assert probe.expect_msg(timeout=10) == ("hello", 1)
    assert probe.expect_msg(timeout=10) == ("hello", 1)  # redelivered after 0.2 s
    assert probe.expect_msg(timeout=10) == ("hello", 1)


def test_the_same_type_name_returns_the_same_region(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    assert sharded.entities("cart", Cart) is carts
    with pytest.raises(InvalidActorNameError, match="'cart'"):
        sharded.entities("cart", Counter)
    with pytest.raises(InvalidActorNameError, match="'cart'"):
        sharded.entities("cart", Cart, "other-prefix")
    with pytest.raises(InvalidActorNameError, match="type name"):
        sharded.entities("a/b", Cart)
    with pytest.raises(TypeError, match="subclass"):
        sharded.entities("thing", dict)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="entity id"):
        carts.ref("")
    with pytest.raises(ValueError, match="entity id"):
        carts.tell(42, "items")  # type: ignore[arg-type]
    # Two types keep their entities apart, even with the same ids.
    other = sharded.entities("other-cart", Cart, "other")
    other.tell("alice", AddItem("pear"))
    carts.tell("alice", AddItem("fig"))
    assert other.ask("alice", "items", timeout=10) == ["pear"]
    assert carts.ask("alice", "items", timeout=10) == ["fig"]


def test_shards_come_from_a_stable_hash() -> None:
    # zlib.crc32, not hash(): the same in every process and every run.
    assert shard_of("alice", 256) == zlib.crc32(b"alice") % 256
    assert {shard_of(f"user-{i}", 8) for i in range(200)} == set(range(8))


@pytest.mark.parametrize(("key", "value"), [
    ("shards", 0), ("shards", "256"), ("shards", True),
    ("host_processes", 0), ("host_processes", 2.5),
    ("passivate_idle_after", -1), ("passivate_idle_after", float("nan")),
    ("passivate_idle_after", "2m"),
    ("max_active_entities", 0), ("max_active_entities", None),
])
def test_bad_sharding_config_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"sharding.{key}"):
        ActorSystem("bad", config={"sharding": {key: value}})


def test_unknown_sharding_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="shard_count"):
        ActorSystem("bad", config={"sharding": {"shard_count": 4}})
    with pytest.raises(ConfigError, match="sharding"):
        ActorSystem("bad", config={"sharding": 4})
