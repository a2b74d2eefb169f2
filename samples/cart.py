"""The seed's shopping cart: an event-sourced actor that is killed and recovers by replay.

Run it with ``make sample`` (or ``python -m samples.cart [config.toml]``). With no config it
uses the in-memory journal, which lives as long as the actor system: the killed cart recovers
because the system is still running. Point it at ``samples/sqlite.toml`` to store the events
in a SQLite file that survives the process too.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from typing import Any

from persistent_actors import (
    ActorRef,
    ActorSystem,
    Kill,
    PersistentActor,
    PersistentActorsError,
    Recovery,
    RecoveryCompleted,
    SnapshotOffer,
    SnapshotSelectionCriteria,
    register,
)

PUT_IN = "담음"  # "put in", as in the seed
TAKE_OUT = "뺌"  # "took out"


@register(manifest="cart.Cmd")
@dataclasses.dataclass(frozen=True)
class Cmd:
    """A command: put an item in, or take one out."""

    data: str


@register(manifest="cart.Evt")
@dataclasses.dataclass(frozen=True)
class Evt:
    """An event: what happened to the basket."""

    data: str


@dataclasses.dataclass(frozen=True)
class Shutdown:
    """Stop the cart (the seed's Shutdown command)."""


@register(manifest="cart.ExampleState")
@dataclasses.dataclass(frozen=True)
class ExampleState:
    """The basket: an immutable list of event texts (the seed's ExampleState)."""

    events: tuple[str, ...] = ()

    def updated(self, evt: Evt) -> ExampleState:
        """Return the state with `evt` applied."""
        return ExampleState((*self.events, evt.data))

    @property
    def count(self) -> int:
        """Items in the basket: +1 per "put in", -1 per "took out"."""
        return sum(1 if PUT_IN in e else -1 if TAKE_OUT in e else 0 for e in self.events)


class Cart(PersistentActor):
    """The seed's ``MyPersistentActor(probe)``: reports the basket count to `reporter`."""

    persistence_id = "sample-id-1"
    recovery = Recovery(from_snapshot=SnapshotSelectionCriteria.none())

    def __init__(self, reporter: ActorRef | None = None, verbose: bool = False) -> None:
        self.reporter = reporter
        self.verbose = verbose
        self.state = ExampleState()

    def _say(self, text: str) -> None:
        if self.verbose:
            print(f"  [cart] {text}", flush=True)

    def _apply(self, evt: Evt) -> None:
        self.state = self.state.updated(evt)
        self.context.system.event_stream.publish(evt)
        self._say(f"persisted {evt.data!r} (sequence_nr {self.last_sequence_nr})")

    def on_recover(self, message: Any) -> None:
        match message:
            case Evt():
                self.state = self.state.updated(message)
                self._say(f"replayed {message.data!r}")
            case SnapshotOffer(snapshot=ExampleState() as snapshot):
                self.state = snapshot
            case RecoveryCompleted():
                self._say(f"recovered: {self.state.count} item(s) in the basket")

    def on_command(self, message: Any) -> None:
        match message:
            case Cmd(data):
                self._say(f"command {data!r}")
                # The handler runs only after the event is stored, and after on_command returned.
                self.persist(Evt(f"{data}-{len(self.state.events)}"), self._apply)
            case "snap":
                self.save_snapshot(self.state)
            case "print":
                self._say(f"print: {self.state.count} item(s) in the basket")
                target = self.reporter if self.reporter is not None else self.sender
                target.tell(self.state.count)
            case Shutdown():
                self.context.stop()
            case _:
                self.unhandled(message)


class UserCart(Cart):
    """The cart as an entity, one per user: ``system.entities("cart", UserCart)``."""

    entity_id: str  # set by the entity host before __init__

    def __init__(self, entity_id: str) -> None:
        super().__init__()

    @property  # a class attribute in Cart, per entity here
    def persistence_id(self) -> str:  # type: ignore[override]
        """One event stream per user."""
        return f"cart-{self.entity_id}"


# The seed test's four commands: put in, take out, put in, put in -> 2 items.
COMMANDS = (
    Cmd(f"장바구니를 물건을 {PUT_IN}+1"),
    Cmd(f"장바구니에 물건을 {TAKE_OUT}-0"),
    Cmd(f"장바구니에 물건을 {PUT_IN}+1"),
    Cmd(f"장바구니에 물건을 {PUT_IN}+2"),
)


def main(argv: list[str]) -> int:
    """Tell the cart four commands, print the count, kill it, respawn it, print again."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = argv[1] if len(argv) > 1 else None
    try:
        system = ActorSystem("shop", config=config)
    except PersistentActorsError as e:  # a mistake in the config: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    with system:
        print(f"actor system {system.name!r} on base {system.settings.base!r}, journal "
              f"{system.settings.journals['default'].spec!r}")
        cart = system.actor_of(Cart, None, True, name="persistentActor")
        for cmd in COMMANDS:
            print(f"tell {cmd}")
            cart.tell(cmd)
        count = cart.ask("print", timeout=5)
        print(f"count before kill: {count}")
        cart.tell(Kill)
        print("killed the cart; waiting 500 ms")
        time.sleep(0.5)
        cart = system.actor_of(Cart, None, True, name="persistentActor")
        print("respawned the cart under the same name")
        recovered = cart.ask("print", timeout=5)
        print(f"recovered count: {recovered}")
        return 0 if recovered == count else 1


if __name__ == "__main__":
    if __spec__ is not None and __spec__.name == "samples.cart":  # python -m samples.cart
        # Run the copy imported as `samples.cart`: on multiproc-tcp the actor processes import
        # the cart's class by its module, which `__main__` is not.
        from samples.cart import main as _main

        sys.exit(_main(sys.argv))
    sys.exit(main(sys.argv))  # run as a file (python samples/cart.py): the simple base
