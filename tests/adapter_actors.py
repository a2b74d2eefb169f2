"""Events, event adapters and an actor for the adapter tests (module level: multiproc imports it).

The story: a shop's basket. Version 1 of the app stored ``ItemAdded`` without a quantity under
the manifest ``tests.adapters.ItemAdded``; that class is gone, version 2 is registered under
``tests.adapters.ItemAdded.v2``, and `ItemAddedV1Upcaster` reads the old events. The class
``OrderCanceled`` was renamed `OrderCancelled` (an alias keeps old events readable), and
``BasketEmptied`` was replaced by `BasketCleared` (an adapter reads the old events).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from persistent_actors import ActorRef, PersistentActor, RecoveryCompleted, register
from persistent_actors.adapters import ReadEventAdapter, Tagged, WriteEventAdapter

V1_MANIFEST = "tests.adapters.ItemAdded"
OLD_CANCELLED_MANIFEST = "tests.adapter_actors:OrderCanceled"
OLD_EMPTIED_MANIFEST = "tests.adapter_actors:BasketEmptied"
FRUITS = frozenset({"banana", "apple", "kiwi"})


@register(manifest="tests.adapters.ItemAdded.v2")
@dataclasses.dataclass(frozen=True)
class ItemAdded:
    item: str
    quantity: int


@register(manifest="tests.adapters.ItemRemoved")
@dataclasses.dataclass(frozen=True)
class ItemRemoved:
    item: str


@register(aliases=[OLD_CANCELLED_MANIFEST])
@dataclasses.dataclass(frozen=True)
class OrderCancelled:
    reason: str


@register(manifest="tests.adapters.BasketCleared")
@dataclasses.dataclass(frozen=True)
class BasketCleared:
    why: str


@register(manifest="tests.adapters.Noise")
@dataclasses.dataclass(frozen=True)
class Noise:
    text: str


class FruitTagger(WriteEventAdapter):
    """Tags added and removed fruit with "fruit"; the removals also with "removed"."""

    def to_journal(self, event: Any) -> Any:
        tags = []
        if getattr(event, "item", None) in FRUITS:
            tags.append("fruit")
        if isinstance(event, ItemRemoved):
            tags.append("removed")
        if event == ItemAdded("boom", 0):
            raise RuntimeError("the tagger cannot tag a boom")
        return Tagged(event, tags) if tags else event


class ItemAddedV1Upcaster(ReadEventAdapter):
    """Version 1 stored ``{"item": ...}``: a quantity of one was implied."""

    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        assert manifest == V1_MANIFEST
        return [ItemAdded(event["item"], 1)]


class BasketEmptiedReader(ReadEventAdapter):
    """``BasketEmptied(at)`` is read as today's `BasketCleared`."""

    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        return [BasketCleared(f"emptied at {event['at']}")]


class NoiseDropper(ReadEventAdapter):
    """Noise was a mistake: reading it yields no event at all."""

    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        return []


ADAPTERS = {
    "fruit": "tests.adapter_actors:FruitTagger",
    "v1": "tests.adapter_actors:ItemAddedV1Upcaster",
    "emptied": "tests.adapter_actors:BasketEmptiedReader",
    "noise": "tests.adapter_actors:NoiseDropper",
}
BINDINGS = {
    "tests.adapter_actors:ItemAdded": "fruit",
    "tests.adapters.ItemRemoved": "fruit",  # by manifest
    V1_MANIFEST: "v1",
    OLD_EMPTIED_MANIFEST: "emptied",
    "tests.adapters.Noise": ["noise"],
}


class Basket(PersistentActor):
    """Persists what it is told; reports what its handlers and its recovery saw."""

    def __init__(self, name: str, probe: ActorRef | None = None) -> None:
        self.name = name
        self.probe = probe
        self.recovered: list[Any] = []
        self.handled: list[Any] = []
        self.rejected: list[str] = []

    @property
    def persistence_id(self) -> str:
        return f"basket-{self.name}"

    def on_recover(self, message: Any) -> None:
        if not isinstance(message, RecoveryCompleted):
            self.recovered.append(message)

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        if self.probe is not None:
            self.probe.tell(("recovery failed", str(cause)))

    def on_command(self, message: Any) -> None:
        match message:
            case ("persist", event):
                self.persist(event, self._handled)
            case ("persist_all", events):
                self.persist_all(events, self._handled)
            case "report":
                self.sender.tell((tuple(self.recovered), tuple(self.handled),
                                  tuple(self.rejected), self.last_sequence_nr))
            case _:
                self.unhandled(message)

    def _handled(self, event: Any) -> None:
        self.handled.append(event)
        self.sender.tell(("stored", self.last_sequence_nr))

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.rejected.append(f"{sequence_nr}: {cause}")


class Splitter(ReadEventAdapter):
    """Reads one stored string as two events, ``("a", s)`` and ``("b", s)``."""

    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        return [("a", event), ("b", event)]


class MapReturner(ReadEventAdapter):
    """Returns the event's fields as a dict (forgetting the list): must be refused."""

    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        return {"item": event, "qty": 1}  # type: ignore[return-value]


class TextReturner(ReadEventAdapter):
    """Returns a str instead of a list of one: must be refused, not read char by char."""

    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        return str(event)
