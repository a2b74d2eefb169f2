"""Entities (system.entities): start on first message, passivation, limits, the region API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import (
    ActorInitializationError,
    ActorSystem,
    AskTimeoutError,
    ConfigError,
    DeadLetter,
    EntityRef,
    EntityRegion,
    EntityUnavailableError,
    InvalidActorNameError,
    PersistentActorsError,
    PoisonPill,
)
from persistent_actors._region import shard_of
from persistent_actors._thespian import guardian, shard_memory
from persistent_actors._thespian.shard_memory import memory_id
from persistent_actors.testing import TestProbe
from tests.conftest import subscribe_synced, system_config
from tests.crash_torture import Totals, check
from tests.entity_actors import (
    AddItem,
    Cart,
    Counter,
    EntityUp,
    Fragile,
    Front,
    LoadEntity,
    Notifier,
    Relay,
    RememberedCart,
    RememberedCounter,
    SlowEntity,
)
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


def test_an_entity_can_fail_an_ask_with_status_failure(sharded: ActorSystem) -> None:
    carts = sharded.entities("cart", Cart)
    with pytest.raises(LookupError, match="no such coupon"):
        carts.ask("alice", ("refuse", "no such coupon"), timeout=10)

    async def ask_async() -> None:
        with pytest.raises(LookupError, match="sold out"):
            await carts.ask_async("alice", ("refuse", "sold out"), timeout=10)

    asyncio.run(ask_async())
    assert carts.ask("alice", AddItem("apple"), timeout=10) == 1


def test_an_actor_given_a_region_sends_to_its_entities(sharded: ActorSystem) -> None:
    # The region travels to the actor's process on multiproc-tcp (pickled without the
    # system's endpoint) and addresses the same hosts as the original.
    carts = sharded.entities("cart", Cart)
    front = sharded.actor_of(Front, carts, name="front")
    assert front.ask(("add", "alice", "banana"), timeout=10) == 1
    assert front.ask(("add", "bob", "apple"), timeout=10) == 1
    assert front.ask(("add", "alice", "pear"), timeout=10) == 2
    assert front.ask(("items", "alice"), timeout=10) == ["banana", "pear"]
    assert carts.ask("bob", "items", timeout=10) == ["apple"]


def test_messages_stashed_behind_a_poison_pill_reach_the_next_incarnation(
        sharded: ActorSystem) -> None:
    # The pill arrives while the new entity recovers (its first message started it): it and
    # what follows are stashed. The entity stops at the pill; what came after it starts the
    # next incarnation (the ask was lost, its asker timing out, with no dead letter).
    carts = sharded.entities("cart", Cart)
    for item in ("a", "b", "c"):
        carts.tell("poisoned", AddItem(item))
    carts.tell("poisoned", PoisonPill())
    assert carts.ask("poisoned", "items", timeout=10) == ["a", "b", "c"]
    carts.tell("poisoned", AddItem("d"))
    assert carts.ask("poisoned", "items", timeout=10) == ["a", "b", "c", "d"]


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
        dead = [probe.expect_msg(timeout=10) for _ in range(2)]
        assert [letter.message for letter in dead] == ["tick-3", "tick-4"]
        assert dead[0].recipient == ref  # the entity, not its host
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


@pytest.mark.multiproc
def test_asks_to_a_host_that_stays_dead_fail_at_once(tmp_path: Path) -> None:
    # Once a host is not restarted again (its process died 11 times within a minute), later
    # asks waited out their whole timeout and failed with a bare AskTimeoutError (only the
    # messages held at that moment were refused).
    config = system_config("multiproc-tcp",
                           journal={"plugin": "sqlite", "path": str(tmp_path / "events.db")})
    config["sharding"] = {"host_processes": 1}
    with ActorSystem("stays-dead", config=config) as system:
        carts = system.entities("cart", Cart)

        def host_pid() -> int:
            # A message that reaches a process as it dies is lost (README): ask again.
            for _ in range(10):
                with contextlib.suppress(AskTimeoutError):
                    pid: int = carts.ask("c0", "pid", timeout=5)
                    return pid
            raise AssertionError("the entity host never answered")

        for _ in range(guardian.MAX_CRASH_RESTARTS + 1):
            os.kill(host_pid(), signal.SIGKILL)
            time.sleep(0.5)
        # Until the last death is noticed (a fixed 2 s may be too short on a loaded machine):
        # an ask sent before that goes to the dead process and is lost.
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the last death was never noticed"
            try:
                carts.ask("c0", "items", timeout=2)
            except EntityUnavailableError:
                break
            except AskTimeoutError:
                pass
        for entity in ("c0", "c1"):
            started = time.monotonic()
            with pytest.raises(EntityUnavailableError,
                               match=r"died 11 times within 60s; it is not restarted again"):
                carts.ask(entity, "items", timeout=10)
            assert time.monotonic() - started < 5  # at once, not after the timeout


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
    # Asked, not told: the relay's message reaches alice from its own process, in no order
    # with a tell from here (on multiproc-tcp it could come first and find no banana).
    assert carts.ask("alice", AddItem("banana"), timeout=10) == 1
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


def test_an_ask_to_an_entity_that_cannot_start_fails_at_once_with_the_cause(
        sharded: ActorSystem) -> None:
    # As actor_of raises ActorInitializationError, not a timeout after `timeout` seconds.
    fragile = sharded.entities("fragile", Fragile)
    for attempt in range(2):  # each message tries a new incarnation, and fails the same way
        with pytest.raises(ActorInitializationError, match="ValueError: no entity bad-2"):
            fragile.ask("bad-2", attempt, timeout=30)  # was AskTimeoutError after 30 s

    async def ask_async() -> None:
        with pytest.raises(ActorInitializationError, match="no entity bad-3"):
            await fragile.ask_async("bad-3", 0, timeout=30)

    asyncio.run(ask_async())
    assert fragile.ask("good", 4, timeout=10) == ("ok", 4)


def test_entity_timers_run_on_the_host(sharded: ActorSystem) -> None:
    # At-least-once redelivery is a timer: unconfirmed, the message comes again and again.
    probe = TestProbe(sharded)
    notifiers = sharded.entities("notifier", Notifier, probe.ref)
    notifiers.tell("n1", AddItem("hello"))
    assert probe.expect_msg(timeout=10) == ("hello", 1)
    assert probe.expect_msg(timeout=10) == ("hello", 1)  # redelivered after 0.2 s
    assert probe.expect_msg(timeout=10) == ("hello", 1)


def test_entities_on_a_shut_down_system_raises_also_for_a_known_type(
        sharded: ActorSystem) -> None:
    # A known type handed back its cached, dead region as if the system still ran (only a new
    # type raised); the README's rule for a shut-down system covers every call.
    carts = sharded.entities("cart", Cart)
    sharded.shutdown()
    with pytest.raises(PersistentActorsError, match="shut down"):
        sharded.entities("cart", Cart)
    with pytest.raises(PersistentActorsError, match="shut down"):
        sharded.entities("new-type", Cart)
    with pytest.raises(PersistentActorsError, match="shut down"):
        carts.tell("alice", "items")


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


# -- remember-entities -------------------------------------------------------------------------
def _sqlite_config(base: str, folder: Path, **sharding: Any) -> dict[str, Any]:
    store = {"plugin": "sqlite", "path": str(folder / "events.db")}
    config = system_config(base, journal=store,
                           snapshot_store={"plugin": "sqlite", "path": str(folder / "snaps.db")})
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0, "shards": 16,
                          **sharding}
    return config


def _wait_journal_count(db: Path, where: str, done: Callable[[int], bool]) -> int:
    """Poll the journal's count of live events ``WHERE where`` until `done` says so (20 s).

    For what the system writes asynchronously (remembered ids, compaction): a fixed sleep
    may be too short on a loaded machine.
    """
    deadline = time.monotonic() + 20
    while True:
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            count: int = conn.execute(
                f"SELECT count(*) FROM journal WHERE deleted = 0 AND {where}").fetchone()[0]
        if done(count) or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def _ups(system: ActorSystem, start: Any, count: int) -> dict[str, EntityUp]:
    """Subscribe to `EntityUp`, run `start()`, collect `count` of them, then expect no more."""
    probe = TestProbe(system)
    subscribe_synced(system, probe, EntityUp, EntityUp("synced", (), 0))
    start()
    ups = [probe.expect_msg_type(EntityUp, timeout=20) for _ in range(count)]
    probe.expect_no_msg(0.5)
    return {up.entity_id: up for up in ups}


def test_remembered_entities_start_again_with_their_host(base: str, tmp_path: Path) -> None:
    config = _sqlite_config(base, tmp_path, remember_entities=["cart"])
    with ActorSystem("entities", config=config) as system:
        carts = system.entities("cart", RememberedCart)
        for user in ("a", "b", "c", "d"):
            assert carts.ask(user, AddItem(f"{user}1"), timeout=20) == 1
        assert carts.ask("d", "passivate", timeout=20) == "passivating"  # forgotten
        counters = system.entities("counter", Counter)  # not in the list: not remembered
        assert counters.ask("x", "count", timeout=20) == ("x", 0)
        assert carts.ask("d", "items", timeout=20) == ["d1"]  # started again: remembered
        assert carts.ask("d", "passivate", timeout=20) == "passivating"
        assert carts.ask("c", "items", timeout=20) == ["c1"]  # after d's passivation
    with ActorSystem("entities", config=config) as system:
        # No message is sent: a, b and c start (and recover) because they were running.
        ups = _ups(system, lambda: system.entities("cart", RememberedCart), 3)
        assert {e: up.items for e, up in ups.items()} == {"a": ("a1",), "b": ("b1",),
                                                         "c": ("c1",)}
        carts = system.entities("cart", RememberedCart)
        assert carts.ask("a", "recovered", timeout=20) == 1  # the same incarnation


def test_remembered_entities_are_passivated_only_on_request(tmp_path: Path) -> None:
    # As in Akka: neither the idle timeout nor the active limit applies to them.
    config = _sqlite_config("simple", tmp_path, remember_entities=True,
                            passivate_idle_after=0.1, max_active_entities=2)
    with ActorSystem("entities", config=config) as system:
        counters = system.entities("counter", Counter)
        for entity in ("a", "b", "c"):
            counters.tell(entity, "tick")
        time.sleep(0.5)
        assert [counters.ask(e, "count", timeout=10) for e in ("a", "b", "c")] == [
            ("a", 1), ("b", 1), ("c", 1)]
        counters.tell("b", "passivate")
        assert counters.ask("b", "count", timeout=10) == ("b", 0)  # a new incarnation
    # A remembered plain actor comes back too (its ids go to the default journal).
    with ActorSystem("entities", config=config) as system:
        ups = _ups(system, lambda: system.entities("counter", RememberedCounter), 3)
        assert set(ups) == {"a", "b", "c"}  # b came back through its last message


def test_the_remembered_ids_are_compacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_memory, "COMPACT_EVERY", 4)
    config = _sqlite_config("simple", tmp_path, remember_entities=True, shards=1,
                            host_processes=1)
    with ActorSystem("entities", config=config) as system:
        carts = system.entities("cart", RememberedCart)
        for n in range(10):
            assert carts.ask(f"u{n}", AddItem("x"), timeout=10) == 1
        for n in range(0, 10, 2):
            assert carts.ask(f"u{n}", "passivate", timeout=10) == "passivating"
        assert carts.ask("u1", "items", timeout=10) == ["x"]
        # The last snapshot and deletion are asynchronous: waited for (a fixed 0.5 s may be
        # too short on a loaded machine).
        events = _wait_journal_count(tmp_path / "events.db",
                                     f"persistence_id = '{memory_id('cart', 0)}'",
                                     lambda n: n < 4)
    assert events < 4  # 15 were written (10 starts, 5 passivations); snapshots replaced them
    with ActorSystem("entities", config=config) as system:
        ups = _ups(system, lambda: system.entities("cart", RememberedCart), 5)
        assert set(ups) == {f"u{n}" for n in range(1, 10, 2)}


@pytest.mark.parametrize(("key", "value"), [
    ("remember_entities", "yes"), ("remember_entities", [1]), ("remember_entities", [""]),
    ("buffer_size", 0), ("buffer_size", 1.5),
])
def test_bad_remember_and_buffer_config_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"sharding.{key}"):
        ActorSystem("bad", config={"sharding": {key: value}})


# -- a host process killed under load -----------------------------------------------------------
@dataclasses.dataclass
class _Load:
    """What the clients of `_kill_under_load` saw."""

    answered: int = 0
    timed_out: int = 0
    refused: int = 0
    back_after: dict[str, float] = dataclasses.field(default_factory=dict)  # kill -> answer


def _kill_under_load(region: EntityRegion, ids: list[str], victim: int, burst: int) -> _Load:
    """Clients ask every entity "go" in a loop; SIGKILL `victim` after a second of load.

    `burst` more asks go to the entities at once right after the kill. Runs until every
    entity has answered an ask sent after the kill, for 15 s at most.
    """
    load = _Load()
    killed: list[float] = []

    async def ask(entity_id: str) -> None:
        sent = time.monotonic()
        try:
            await region.ask_async(entity_id, "go", timeout=3)
        except AskTimeoutError:
            load.timed_out += 1  # it was inside the dead process: lost, as in any crash
            return
        except EntityUnavailableError:
            load.refused += 1
            return
        load.answered += 1
        if killed and sent > killed[0]:
            load.back_after.setdefault(entity_id, time.monotonic() - killed[0])

    async def client(entity_id: str) -> None:
        while not killed or (len(load.back_after) < len(ids)
                             and time.monotonic() - killed[0] < 15):
            await ask(entity_id)

    async def main() -> None:
        clients = [asyncio.create_task(client(e)) for e in ids]
        await asyncio.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        killed.append(time.monotonic())
        await asyncio.gather(*(ask(ids[n % len(ids)]) for n in range(burst)), *clients)

    asyncio.run(main())
    return load


def _load_system(folder: Path, **sharding: Any) -> tuple[ActorSystem, dict[str, Any]]:
    config = system_config("multiproc-tcp", journal={
        "plugin": "sqlite", "path": str(folder / "events.db")})
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0, **sharding}
    return ActorSystem("entities", config=config), config


@pytest.mark.multiproc
def test_a_host_killed_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    report = tmp_path / "acknowledged.txt"
    system, _ = _load_system(tmp_path)
    with system:
        region = system.entities("load", LoadEntity, str(report))
        ids = [f"e{n}" for n in range(12)]
        pids = {e: region.ask(e, "pid", timeout=20) for e in ids}
        assert len(set(pids.values())) == 2
        load = _kill_under_load(region, ids, pids["e0"], burst=0)
        # Every entity answered an ask sent after the kill, within 10 s of it.
        assert set(load.back_after) == set(ids), load
        assert max(load.back_after.values()) <= 10, load
        assert load.answered > 0
    totals = Totals()
    check(tmp_path / "events.db", report, totals)
    assert totals.acknowledged > 0, totals
    assert (totals.lost, totals.torn, totals.gaps, totals.integrity_errors) == (0, 0, 0, 0), \
        totals


@pytest.mark.multiproc
def test_messages_for_a_restarting_host_are_bounded(tmp_path: Path) -> None:
    # Two messages may wait for the restarting host; the other asks fail at once with
    # EntityUnavailableError instead of waiting for their timeout, and none is lost unseen.
    system, _ = _load_system(tmp_path, buffer_size=2)
    with system:
        region = system.entities("load", LoadEntity, str(tmp_path / "acknowledged.txt"))
        pids = {e: region.ask(e, "pid", timeout=20) for e in (f"e{n}" for n in range(12))}
        victim = pids["e0"]
        moved = [e for e, pid in pids.items() if pid == victim]
        load = _kill_under_load(region, moved, victim, burst=40)
        assert load.refused > 0, load
        assert set(load.back_after) == set(moved), load
        assert all(region.ask(e, "pid", timeout=20) != victim for e in moved)


@pytest.mark.multiproc
def test_remembered_entities_come_back_when_their_host_process_is_killed(
        tmp_path: Path) -> None:
    config = _sqlite_config("multiproc-tcp", tmp_path, remember_entities=True)
    with ActorSystem("entities", config=config) as system:
        carts = system.entities("cart", RememberedCart)
        users = [f"user-{n}" for n in range(8)]
        pids = {user: carts.ask(user, "pid", timeout=20) for user in users}
        victim = pids["user-0"]
        moved = {user for user, pid in pids.items() if pid == victim}
        # The EntityStarted writes are asynchronous: waited for until all are stored (after a
        # fixed 0.5 s, on a loaded machine, the host could die with some still unwritten).
        assert _wait_journal_count(tmp_path / "events.db",
                                   "persistence_id LIKE '/sharding/cartShard/%'",
                                   lambda n: n >= len(users)) == len(users)
        # Nothing is sent to them: the restarted host starts them because they were running.
        ups = _ups(system, lambda: os.kill(victim, signal.SIGKILL), len(moved))
        assert set(ups) == moved
        assert all(up.pid != victim for up in ups.values())


@pytest.mark.multiproc
def test_poison_pills_under_the_active_limit_leave_the_region_working(tmp_path: Path) -> None:
    # (On multiproc-tcp only, where it fails without the fix: on the simple base the loop
    # drained by itself. Entity hosts are the same with or without shared actor_of hosts.)
    # A host's passivation PoisonPill stashed behind a user's was carried to the entity's next
    # incarnation, which stopped on it right after recovery; its start at the limit passivated
    # another entity, and so on for ever: no entity answered again, even after the traffic.
    # Sized to fail without the fix and to pass on a loaded machine (each ask with its fix
    # waits on the churn of 3 active entities among 40, slower the busier the cores are).
    ids = [f"u{n}" for n in range(40)]
    clients = 40
    config = system_config("multiproc-tcp",
                           journal={"plugin": "sqlite", "path": str(tmp_path / "j.db")})
    config["sharding"] = {"host_processes": 1, "passivate_idle_after": 0,
                          "max_active_entities": 3}
    with ActorSystem("entities", config=config) as system:
        region = system.entities("cart", Cart)
        done = threading.Event()

        def pills() -> None:
            rnd = random.Random(7)
            while not done.is_set():
                region.tell(rnd.choice(ids), PoisonPill)
                time.sleep(0.01)

        async def traffic() -> list[Any]:
            async def client(c: int) -> list[Any]:
                rnd = random.Random(c)
                return [await region.ask_async(rnd.choice(ids), AddItem(f"{c}-{i}"), timeout=30)
                        for i in range(20)]
            answers: list[Any] = await asyncio.gather(*(client(c) for c in range(clients)),
                                                      return_exceptions=True)
            return answers

        thread = threading.Thread(target=pills)
        thread.start()
        try:
            answers = asyncio.run(traffic())
        finally:
            done.set()
            thread.join()
        assert all(isinstance(a, list) for a in answers), [a for a in answers
                                                            if not isinstance(a, list)][:3]
        stored = sum(len(region.ask(i, "items", timeout=30)) for i in ids)
        assert stored == clients * 20
