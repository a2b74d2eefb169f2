"""Entities used by the sharding tests (importable: multiproc-tcp pickles classes by name)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from persistent_actors import (
    Actor,
    ActorRef,
    AtLeastOnceDeliveryActor,
    EntityRegion,
    PersistentActor,
    RecoveryCompleted,
    Status,
    register,
)
from tests.writer_actors import SlowRecovery


@dataclasses.dataclass(frozen=True)
class AddItem:
    """Command: put `item` in the cart."""

    item: str


@register
@dataclasses.dataclass(frozen=True)
class ItemAdded:
    """Event: `item` was put in the cart."""

    item: str


class Cart(PersistentActor):
    """A shopping cart per user: persists `ItemAdded`, answers "items", "incarnation"."""

    incarnations: int = 0

    def __init__(self, entity_id: str, prefix: str = "cart") -> None:
        self.prefix = prefix
        self.items: list[str] = []
        self.recovered_events = 0

    @property
    def persistence_id(self) -> str:
        return f"{self.prefix}-{self.entity_id}"  # type: ignore[attr-defined]

    def on_recover(self, message: Any) -> None:
        if isinstance(message, ItemAdded):
            self.items.append(message.item)
            self.recovered_events += 1

    def on_command(self, message: Any) -> None:
        match message:
            case AddItem(item):
                sender = self.sender

                def added(event: ItemAdded) -> None:
                    self.items.append(event.item)
                    sender.tell(len(self.items))

                self.persist(ItemAdded(item), added)
            case "items":
                self.sender.tell(list(self.items))
            case "whoami":
                self.sender.tell((self.entity_id, self.self_ref.name))  # type: ignore[attr-defined]
            case "recovered":
                self.sender.tell(self.recovered_events)
            case "pid":
                self.sender.tell(os.getpid())
            case ("refuse", str(reason)):
                self.sender.tell(Status.Failure(LookupError(reason)))
            case "passivate":
                self.context.passivate()
                self.sender.tell("passivating")
            case _:
                self.unhandled(message)


class Counter(Actor):
    """A plain entity: counts messages; "count" answers the count since it started."""

    def __init__(self, entity_id: str) -> None:
        self.count = 0

    def on_receive(self, message: Any) -> None:
        match message:
            case "count":
                self.sender.tell((self.entity_id, self.count))  # type: ignore[attr-defined]
            case "passivate":
                self.context.passivate()
            case _:
                self.count += 1


class Relay(Actor):
    """Sends ``("relay", ref, message)``'s message to `ref`; "last" answers the last reply."""

    def __init__(self, entity_id: str) -> None:
        self.last: Any = None

    def on_receive(self, message: Any) -> None:
        match message:
            case ("relay", ref, payload):
                ref.tell(payload)  # from this entity: the reply comes back here
            case "last":
                self.sender.tell(self.last)
            case "passivate-plain":
                try:
                    self.context.passivate()
                except Exception as e:
                    self.sender.tell(type(e).__name__)
            case _:
                self.last = message


class Front(Actor):
    """A plain actor given a region: ("add", id, item) and ("items", id) go to that entity."""

    def __init__(self, carts: EntityRegion) -> None:
        self.carts = carts

    def on_receive(self, message: Any) -> None:
        match message:
            case ("add", str(entity_id), str(item)):
                self.carts.tell(entity_id, AddItem(item), sender=self.sender)
            case ("items", str(entity_id)):
                self.carts.ref(entity_id).tell("items", sender=self.sender)
            case _:
                self.unhandled(message)


class Fragile(Actor):
    """An entity whose constructor raises for ids starting with "bad"."""

    def __init__(self, entity_id: str) -> None:
        if entity_id.startswith("bad"):
            raise ValueError(f"no entity {entity_id}")

    def on_receive(self, message: Any) -> None:
        self.sender.tell(("ok", message))


class Notifier(AtLeastOnceDeliveryActor):
    """An at-least-once sender as an entity: its redelivery timer runs on the entity host."""

    redeliver_interval = 0.2

    def __init__(self, entity_id: str, destination: ActorRef) -> None:
        self.destination = destination

    @property
    def persistence_id(self) -> str:
        return f"notifier-{self.entity_id}"  # type: ignore[attr-defined]

    def on_command(self, message: Any) -> None:
        if isinstance(message, AddItem):
            self.persist(ItemAdded(message.item), self._deliver)

    def _deliver(self, event: ItemAdded) -> None:
        self.deliver(self.destination, lambda delivery_id: (event.item, delivery_id))

    def on_recover(self, message: Any) -> None:
        if isinstance(message, ItemAdded):
            self._deliver(message)


class SlowEntity(SlowRecovery):
    """`SlowRecovery` as an entity (reports its recovery window); "passivate" passivates it."""

    def __init__(self, entity_id: str, probe: ActorRef) -> None:
        super().__init__(f"slow-{entity_id}", probe)

    def on_command(self, message: Any) -> None:
        if message == "passivate":
            self.context.passivate()
        elif message != "wake":
            super().on_command(message)


@dataclasses.dataclass(frozen=True)
class EntityUp:
    """Published by `RememberedCart` when an incarnation has recovered."""

    entity_id: str
    items: tuple[str, ...]
    pid: int


class RememberedCart(Cart):
    """A `Cart` that publishes `EntityUp` on the event stream once it has recovered."""

    def on_recover(self, message: Any) -> None:
        super().on_recover(message)
        if isinstance(message, RecoveryCompleted):
            self.context.system.event_stream.publish(
                EntityUp(self.entity_id, tuple(self.items), os.getpid()))  # type: ignore[attr-defined]


class RememberedCounter(Counter):
    """A plain `Counter` that publishes `EntityUp` when it starts."""

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.context.system.event_stream.publish(EntityUp(entity_id, (), os.getpid()))


class LoadEntity(PersistentActor):
    """The crash torture's writer as an entity: "go" persists a group of 1..3 events.

    Events are ``{"g": group, "i": index, "n": size}`` (what `tests.crash_torture.check`
    reads); each handler appends ``"<persistence_id> <sequence_nr>"`` to the report file with one
    O_APPEND write, so the test learns of an event only once it was acknowledged; the last one
    answers the group's highest sequence number.
    """

    def __init__(self, entity_id: str, report_path: str) -> None:
        self.report = os.open(report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.group = 0

    @property
    def persistence_id(self) -> str:
        return f"load-{self.entity_id}"  # type: ignore[attr-defined]

    def on_recover(self, message: Any) -> None:
        if isinstance(message, dict):
            self.group = max(self.group, message["g"])

    def on_command(self, message: Any) -> None:
        match message:
            case "go":
                self.group += 1
                size = 1 + self.group % 3
                sender = self.sender

                def acknowledged(event: dict[str, int]) -> None:
                    os.write(self.report, f"{self.persistence_id} {self.last_sequence_nr}\n"
                             .encode())
                    if event["i"] == event["n"] - 1:
                        sender.tell(self.last_sequence_nr)

                self.persist_all([{"g": self.group, "i": i, "n": size} for i in range(size)],
                                 acknowledged)
            case "pid":
                self.sender.tell(os.getpid())
            case _:
                self.unhandled(message)

    def post_stop(self) -> None:
        os.close(self.report)
