"""Tags and event adapters: write adapters on persist, read adapters on replay and in queries.

Old events are written straight into a SQLite file, as an older version of the app would have
left them; then an actor system on the same file recovers them (on both bases).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import ActorRef, ActorSystem, ConfigError, SerializationError
from persistent_actors._serialization import default_serializer
from persistent_actors.adapters import EventAdapters, Tagged, split_adapter_settings
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.query import EventEnvelope, ReadJournal
from persistent_actors.testing import TestProbe
from tests.adapter_actors import (
    ADAPTERS,
    BINDINGS,
    OLD_CANCELLED_MANIFEST,
    OLD_EMPTIED_MANIFEST,
    V1_MANIFEST,
    Basket,
    BasketCleared,
    ItemAdded,
    ItemRemoved,
    Noise,
    OrderCancelled,
)
from tests.conftest import system_config

# --- helpers ------------------------------------------------------------------------------------


def _config(base: str, db: Path, **extra: Any) -> dict[str, Any]:
    journal = {"plugin": "sqlite", "path": str(db), "event_adapters": ADAPTERS,
               "event_adapter_bindings": BINDINGS, **extra}
    return system_config(base, journal=journal)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def shop(base: str, db: Path) -> Iterator[ActorSystem]:
    system = ActorSystem("shop", config=_config(base, db))
    try:
        yield system
    finally:
        system.shutdown()


def _write_old_events(db: Path, pid: str, *events: tuple[str, Any]) -> None:
    """Store (manifest, state) pairs as an older version of the app did: plain msgpack state."""

    async def write() -> None:
        journal = SqliteJournal({"path": str(db)})
        await journal.start()
        try:
            reprs = []
            for nr, (manifest, state) in enumerate(events, start=1):
                _, payload = default_serializer.to_binary(state)
                reprs.append(PersistentRepr(pid, nr, manifest, payload, "v1-writer", 1000.0 + nr))
            assert await journal.write_messages([AtomicWrite(tuple(reprs))]) == [None]
        finally:
            await journal.close()

    asyncio.run(write())


def _report(basket: ActorRef) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[str, ...], int]:
    report: tuple[tuple[Any, ...], tuple[Any, ...], tuple[str, ...], int] = basket.ask(
        "report", timeout=10)
    return report


def _query(system: ActorSystem, run: Any) -> Any:
    async def go() -> Any:
        async with system.read_journal() as journal:
            return await run(journal)

    return asyncio.run(go())


async def _tagged(journal: ReadJournal, tag: str) -> list[EventEnvelope]:
    return [e async for e in journal.current_events_by_tag(tag)]


# --- write side ----------------------------------------------------------------------------------


def test_write_adapter_tags_what_is_stored_and_the_handler_gets_the_original(
    shop: ActorSystem,
) -> None:
    basket = shop.actor_of(Basket, "alice", name="basket-alice")
    for event in (ItemAdded("banana", 2), ItemAdded("bread", 1), ItemRemoved("banana")):
        assert basket.ask(("persist", event), timeout=10)[0] == "stored"
    _, handled, _, _ = _report(basket)
    assert handled == (ItemAdded("banana", 2), ItemAdded("bread", 1), ItemRemoved("banana"))

    fruit = _query(shop, lambda j: _tagged(j, "fruit"))
    assert [(e.sequence_nr, e.event, e.tags) for e in fruit] == [
        (1, ItemAdded("banana", 2), ("fruit",)),
        (3, ItemRemoved("banana"), ("fruit", "removed"))]

    # Replay delivers the payloads, never the Tagged wrapper.
    shop.stop(basket)
    basket = shop.actor_of(Basket, "alice", name="basket-alice")
    recovered, _, _, last = _report(basket)
    assert recovered == handled
    assert last == 3


def test_persisting_a_tagged_event_stores_its_tags(shop: ActorSystem) -> None:
    basket = shop.actor_of(Basket, "bob", name="basket-bob")
    tagged = Tagged(OrderCancelled("changed my mind"), ["orders", "cancel", "orders"])
    assert tagged.tags == ("orders", "cancel")
    basket.ask(("persist", tagged), timeout=10)
    _, handled, _, _ = _report(basket)
    assert handled == (tagged,)  # the handler gets exactly what was persisted
    envelopes = _query(shop, lambda j: _tagged(j, "cancel"))
    assert [(e.event, e.tags) for e in envelopes] == [
        (OrderCancelled("changed my mind"), ("orders", "cancel"))]
    shop.stop(basket)
    basket = shop.actor_of(Basket, "bob", name="basket-bob")
    assert _report(basket)[0] == (OrderCancelled("changed my mind"),)


@pytest.mark.parametrize("adapters", [True, False], ids=["adapters", "no-adapters"])
def test_persist_all_stores_each_events_own_tags(base: str, db: Path, adapters: bool) -> None:
    """One persist_all mixing tagged and untagged events: every event keeps its own tags,
    whether a write adapter or a `Tagged` gave them, and each handler gets its own event."""
    config = _config(base, db) if adapters else \
        system_config(base, journal={"plugin": "sqlite", "path": str(db)})
    events = (ItemAdded("apple", 1), Tagged(OrderCancelled("late"), ["orders"]),
              ItemRemoved("apple"), Noise("n"))
    with ActorSystem("shop", config=config) as system:
        basket = system.actor_of(Basket, "carol", name="basket-carol")
        basket.tell(("persist_all", events))
        _, handled, _, last = _report(basket)
        assert (handled, last) == (events, 4)
        fruit = [(e.sequence_nr, e.event, e.tags) for e in _query(system, lambda j: _tagged(
            j, "fruit"))]
        orders = [(e.sequence_nr, e.event, e.tags) for e in _query(system, lambda j: _tagged(
            j, "orders"))]
    assert orders == [(2, OrderCancelled("late"), ("orders",))]
    assert fruit == ([(1, ItemAdded("apple", 1), ("fruit",)),
                      (3, ItemRemoved("apple"), ("fruit", "removed"))] if adapters else [])


def test_failing_write_adapter_rejects_the_write_and_the_actor_continues(
    shop: ActorSystem,
) -> None:
    basket = shop.actor_of(Basket, "carol", name="basket-carol")
    basket.tell(("persist", ItemAdded("boom", 0)))
    assert basket.ask(("persist", ItemAdded("kiwi", 1)), timeout=10) == ("stored", 2)
    _, handled, rejected, last = _report(basket)
    assert handled == (ItemAdded("kiwi", 1),)
    assert len(rejected) == 1
    assert rejected[0].startswith("1: ")
    assert "FruitTagger" in rejected[0]
    assert "cannot tag a boom" in rejected[0]
    assert last == 2


# --- read side: upcasting and renamed classes ----------------------------------------------------


def test_v1_events_are_upcast_on_replay_and_in_queries(base: str, db: Path) -> None:
    _write_old_events(db, "basket-dave", (V1_MANIFEST, {"item": "apple"}),
                      (V1_MANIFEST, {"item": "bread"}))
    with ActorSystem("shop", config=_config(base, db)) as system:
        basket = system.actor_of(Basket, "dave", name="basket-dave")
        recovered, _, _, last = _report(basket)
        assert recovered == (ItemAdded("apple", 1), ItemAdded("bread", 1))
        assert last == 2
        # New events are stored in today's version and continue the sequence.
        assert basket.ask(("persist", ItemAdded("kiwi", 3)), timeout=10) == ("stored", 3)

        async def read(journal: ReadJournal) -> list[EventEnvelope]:
            return [e async for e in journal.current_events_by_persistence_id("basket-dave")]

        envelopes = _query(system, read)
        assert [e.event for e in envelopes] == [
            ItemAdded("apple", 1), ItemAdded("bread", 1), ItemAdded("kiwi", 3)]
        assert [e.timestamp for e in envelopes[:2]] == [1001.0, 1002.0]


def test_a_renamed_class_replays_through_an_alias(base: str, db: Path) -> None:
    _write_old_events(db, "basket-erin", (OLD_CANCELLED_MANIFEST, {"reason": "too late"}))
    with ActorSystem("shop", config=_config(base, db)) as system:
        basket = system.actor_of(Basket, "erin", name="basket-erin")
        assert _report(basket)[0] == (OrderCancelled("too late"),)


def test_a_renamed_class_replays_through_a_read_adapter(base: str, db: Path) -> None:
    # No class carries the old manifest any more: the adapter receives the stored state.
    assert default_serializer.class_of(OLD_EMPTIED_MANIFEST) is None
    _write_old_events(db, "basket-fay", (OLD_EMPTIED_MANIFEST, {"at": "noon"}))
    with ActorSystem("shop", config=_config(base, db)) as system:
        basket = system.actor_of(Basket, "fay", name="basket-fay")
        assert _report(basket)[0] == (BasketCleared("emptied at noon"),)


def test_a_read_adapter_may_drop_an_event_and_the_sequence_goes_on(shop: ActorSystem) -> None:
    basket = shop.actor_of(Basket, "gus", name="basket-gus")
    for event in (ItemAdded("bread", 1), Noise("oops"), ItemAdded("milk", 1)):
        basket.ask(("persist", event), timeout=10)
    shop.stop(basket)
    basket = shop.actor_of(Basket, "gus", name="basket-gus")
    recovered, _, _, last = _report(basket)
    assert recovered == (ItemAdded("bread", 1), ItemAdded("milk", 1))
    assert last == 3
    assert basket.ask(("persist", ItemAdded("jam", 1)), timeout=10) == ("stored", 4)


def test_an_unknown_manifest_without_alias_or_adapter_fails_recovery_naming_it(
    base: str, db: Path,
) -> None:
    _write_old_events(db, "basket-hal", ("tests.adapters.Vanished", {"x": 1}))
    with ActorSystem("shop", config=_config(base, db)) as system:
        adapters = EventAdapters()
        stored = PersistentRepr("basket-hal", 1, "tests.adapters.Vanished",
                                default_serializer.to_binary({"x": 1})[1])
        with pytest.raises(SerializationError, match=r"tests\.adapters\.Vanished"):
            adapters.from_journal(stored)
        probe = TestProbe(system)
        system.actor_of(Basket, "hal", probe.ref, name="basket-hal")
        what, cause = probe.expect_msg(timeout=10)
        assert what == "recovery failed"
        assert "tests.adapters.Vanished" in cause
        assert "basket-hal" in cause


# --- units: Tagged, config ---------------------------------------------------------------------


def test_tagged_rejects_a_bare_string_and_empty_tags() -> None:
    with pytest.raises(TypeError, match="'green'"):
        Tagged("x", "green")
    with pytest.raises(ValueError, match="''"):
        Tagged("x", ["ok", ""])
    assert Tagged("x", ("a", "b", "a")).tags == ("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        Tagged("x", ["a"]).payload = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"event_adapters": {"a": "no_colon"}}, r"event_adapters\.a must be"),
        ({"event_adapters": {"a": "tests.nowhere:X"}}, r"event_adapters\.a: cannot load"),
        ({"event_adapters": {"a": "tests.adapter_actors:ItemAdded"}}, "not a WriteEventAdapter"),
        ({"event_adapters": ["x"]}, "must be a table"),
        ({"event_adapter_bindings": {"m:X": "missing"}}, "unknown event adapter 'missing'"),
        ({"event_adapter_bindings": {"m:X": []}}, "non-empty list"),
        ({"event_adapter_bindings": ["x"]}, "must be a table"),
        # A mistyped class key bound a write adapter to nothing: events stored untagged.
        ({"event_adapters": {"a": "tests.adapter_actors:FruitTagger"},
          "event_adapter_bindings": {"tests.adapter_actors:ItemAddedd": "a"}}, "mistyped"),

        ({"event_adapters": {"a": "tests.adapter_actors:FruitTagger",
                             "b": "tests.adapter_actors:FruitTagger"},
          "event_adapter_bindings": {"m:X": ["a", "b"]}}, "at most one"),
    ],
)
def test_bad_adapter_config_is_an_error_naming_the_key(section: dict[str, Any],
                                                       match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        ActorSystem("bad", config={"persistence": {"journal": section}})
    assert "persistence.journal." in str(info.value)


def test_adapter_keys_are_the_runtimes_and_never_reach_the_plugin(tmp_path: Path) -> None:
    rest, spec = split_adapter_settings(
        {"path": "x.db", "event_adapters": ADAPTERS, "event_adapter_bindings": BINDINGS},
        "persistence.journal")
    assert rest == {"path": "x.db"}
    assert dict(spec.adapters) == ADAPTERS
    assert spec.bindings[0] == ("tests.adapter_actors:ItemAdded", ("fruit",))
    assert spec.bindings[-1] == ("tests.adapters.Noise", ("noise",))
    # The SQLite journal rejects unknown keys, so a running system proves they were stripped.
    journal = {"plugin": "sqlite", "path": str(tmp_path / "x.db"), "event_adapters": ADAPTERS}
    with ActorSystem("ok", config={"persistence": {"journal": journal}}) as system:
        assert system.settings.journals["default"].settings == {"path": journal["path"]}


def test_the_most_specific_binding_wins() -> None:
    @dataclasses.dataclass(frozen=True)
    class Fruit:
        item: str

    class Banana(Fruit):
        pass

    _, spec = split_adapter_settings({
        "event_adapters": {"fruit": "tests.adapter_actors:FruitTagger"},
        "event_adapter_bindings": {f"{__name__}:{Fruit.__qualname__}": "fruit"},
    }, "j")
    adapters = EventAdapters(spec)
    assert adapters.to_journal(Banana("banana")) == (Banana("banana"), ("fruit",))
    assert adapters.to_journal(Banana("bread")) == (Banana("bread"), ())
    assert adapters.to_journal("plain") == ("plain", ())


def test_a_key_whose_module_cannot_be_imported_is_trusted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It may be a manifest with a colon that a module not imported yet registers (a cluster
    # node reads its config before it imports its entity classes); and a module that fails
    # at import must not fail the config with its own error.
    (tmp_path / "fails_at_import.py").write_text("import os\nos.environ['NO_SUCH_VARIABLE_X']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for key in ("shop:ItemAdded", "fails_at_import:Thing"):
        _, spec = split_adapter_settings({
            "event_adapters": {"a": "tests.adapter_actors:FruitTagger"},
            "event_adapter_bindings": {key: "a"},
        }, "j")
        assert spec.bindings == ((key, ("a",)),)


def test_a_write_adapter_bound_by_a_removed_classes_manifest_hands_out_no_dicts() -> None:
    # Only read adapters get the state of a manifest no class carries: with a write adapter
    # bound there, replay and queries handed the stored state on as dicts, with no error.
    _, spec = split_adapter_settings({
        "event_adapters": {"fruit": "tests.adapter_actors:FruitTagger"},
        "event_adapter_bindings": {"gone.Item": "fruit"},
    }, "j")
    stored = PersistentRepr("p-1", 1, "gone.Item", default_serializer.to_binary({"i": 1})[1])
    with pytest.raises(SerializationError, match=r"no type is registered for manifest .gone"):
        EventAdapters(spec).from_journal(stored)


def test_a_class_bound_by_its_class_and_by_its_manifest_gets_both_adapters() -> None:
    # The class key was looked up first and hid the manifest's: neither adapter ran (events
    # stored untagged, replay not adapted).
    _, spec = split_adapter_settings({
        "event_adapters": {"fruit": "tests.adapter_actors:FruitTagger",
                           "drop": "tests.adapter_actors:NoiseDropper"},
        "event_adapter_bindings": {"tests.adapter_actors:ItemRemoved": "drop",
                                   "tests.adapters.ItemRemoved": "fruit"},
    }, "j")
    adapters = EventAdapters(spec)
    stored, tags = adapters.to_journal(ItemRemoved("pear"))
    assert (stored, tags) == (ItemRemoved("pear"), ("removed",))
    manifest, payload = default_serializer.to_binary(stored)
    assert adapters.from_journal(PersistentRepr("p-1", 1, manifest, payload)) == []


@pytest.mark.parametrize(("adapter", "got"), [("MapReturner", "dict"), ("TextReturner", "str")])
def test_a_read_adapter_returning_no_list_fails_the_read_naming_it(adapter: str, got: str) -> None:
    _, spec = split_adapter_settings({
        "event_adapters": {"reader": f"tests.adapter_actors:{adapter}"},
        "event_adapter_bindings": {"old.Event": "reader"},
    }, "j")
    stored = PersistentRepr("p-1", 3, "old.Event", default_serializer.to_binary("milk")[1])
    with pytest.raises(SerializationError,
                       match=rf"{adapter} failed on event 3 of 'p-1': TypeError: from_journal "
                             rf"must return a list of events .*got {got}"):
        EventAdapters(spec).from_journal(stored)
