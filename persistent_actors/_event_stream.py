"""The event stream: the actor system's in-process publish/subscribe bus (Akka's EventStream)."""

from __future__ import annotations

from typing import Any

from persistent_actors._actor import ActorRef
from persistent_actors._protocol import Publish, Subscribe, Unsubscribe

__all__ = ["EventStream"]


class EventStream:
    """Handle to the system's event stream; usable from outside actors and inside them.

    A subscriber receives every published instance of the class it subscribed to, and of its
    subclasses, as an ordinary message. Subscribers that have stopped are dropped.
    """

    __slots__ = ("_ref",)

    def __init__(self, ref: ActorRef) -> None:
        self._ref = ref

    def subscribe(self, subscriber: ActorRef, cls: type[Any]) -> None:
        """Deliver every published instance of `cls` (and subclasses) to `subscriber`."""
        if not isinstance(subscriber, ActorRef):
            raise TypeError(f"subscriber must be an ActorRef, got {type(subscriber).__name__}")
        if not isinstance(cls, type):
            raise TypeError(f"subscribe() needs a class to match events against, got {cls!r}")
        self._ref.tell(Subscribe(subscriber, cls))

    def unsubscribe(self, subscriber: ActorRef, cls: type[Any] | None = None) -> None:
        """Stop delivering `cls` (or, when None, everything) to `subscriber`."""
        if not isinstance(subscriber, ActorRef):
            raise TypeError(f"subscriber must be an ActorRef, got {type(subscriber).__name__}")
        if cls is not None and not isinstance(cls, type):
            # Checked like subscribe(): a non-class never matches, so the call would silently
            # leave the subscription in place.
            raise TypeError(f"unsubscribe() needs a class or None, got {cls!r}")
        self._ref.tell(Unsubscribe(subscriber, cls))

    def publish(self, event: Any) -> None:
        """Deliver `event` to every subscriber of its class or a base class."""
        self._ref.tell(Publish(event))
