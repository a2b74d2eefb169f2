"""The event-stream actor: fans published events out to subscribers; handles dead letters."""

from __future__ import annotations

from typing import Any

from thespian.actors import Actor, ActorAddress, ActorExitRequest, ActorSystemMessage, DeadEnvelope

from persistent_actors._actor import ActorRef, ref_of_address, reply_form
from persistent_actors._protocol import (
    Envelope,
    EventStreamStarted,
    Publish,
    StartEventStream,
    Subscribe,
    Unsubscribe,
)
from persistent_actors._thespian.common import log
from persistent_actors._thespian.frames import FrameBatching, batched
from persistent_actors.messages import DeadLetter

_PROTOCOL = Envelope.__module__  # the runtime's internal messages


class Subscriptions:
    """(subscriber, class) pairs, in subscription order.

    The event stream's, or the guardian's copy of them, which the event stream's successor
    starts with if its process dies.
    """

    def __init__(self, pairs: tuple[tuple[ActorRef, type[Any]], ...] = ()) -> None:
        self.pairs: list[tuple[ActorRef, type[Any]]] = list(pairs)

    def subscribe(self, subscriber: ActorRef, cls: type[Any]) -> bool:
        """Add the pair unless it is there; True if added."""
        if (subscriber, cls) in self.pairs:
            return False
        self.pairs.append((subscriber, cls))
        return True

    def unsubscribe(self, subscriber: ActorRef, cls: type[Any] | None) -> bool:
        """Remove `subscriber`'s pair for `cls` (None: all of its pairs); True if any was."""
        kept = [(s, c) for s, c in self.pairs
                if not (s == subscriber and (cls is None or c is cls))]
        removed = len(kept) != len(self.pairs)
        self.pairs = kept
        return removed


class EventStreamActor(FrameBatching, Actor):  # type: ignore[misc]
    """Keeps (subscriber, class) pairs and fans published events out to them.

    It also gets the system's dead letters (from the guardian, the registered handler), so it
    can drop subscribers that died and publish `DeadLetter`s.
    """

    def __init__(self) -> None:
        super().__init__()
        self._subscriptions = Subscriptions()
        self._guardian: Any = None  # told each change of the subscriptions (`StartEventStream`)

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        if isinstance(message, Envelope):
            message = message.message
        match message:
            case StartEventStream(subscriptions, report):
                self._subscriptions = Subscriptions(subscriptions)
                self._guardian = sender if report else None
                self.send(sender, EventStreamStarted())
            case Subscribe(subscriber, cls):
                if self._subscriptions.subscribe(subscriber, cls):
                    self._report(message)
            case Unsubscribe(subscriber, cls):
                if self._subscriptions.unsubscribe(subscriber, cls):
                    self._report(message)
            case Publish(event):
                self._publish(event)
            case DeadEnvelope():
                address = message.deadAddress
                if isinstance(address, str):
                    # thespian's simple base puts the address *string* in DeadEnvelope
                    # (simpleSystemBase._runSingleSend); rebuild the ActorAddress, or the
                    # dead subscriber is never matched (and so never dropped).
                    address = ActorAddress(address)
                dead = ref_of_address(address)  # a shared host's cell: a HostedRef
                if self._subscriptions.unsubscribe(dead, None):
                    self._report(Unsubscribe(dead, None))
                log.debug("dead letter to %s: %r", message.deadAddress, message.deadMessage)
                dead_message, dead_sender = message.deadMessage, None
                # Unwrap the runtime's envelope: subscribers must see the user's message (and
                # its sender), not the internal Envelope it travelled in.
                if isinstance(dead_message, Envelope):
                    dead_message, dead_sender = dead_message.message, dead_message.sender
                if not isinstance(dead_message, DeadLetter | ActorSystemMessage) and \
                        type(dead_message).__module__ != _PROTOCOL:
                    # (thespian's own messages, such as a timer's wakeup that came due after
                    # the actor stopped, and the runtime's, such as a journal's answer to it,
                    # are no user's: `Host.publish_dead_letter` skips the same.)
                    self._publish(DeadLetter(dead_message, dead_sender, dead))
            case ActorExitRequest():
                pass

    def _report(self, change: Subscribe | Unsubscribe) -> None:
        """Tell the guardian a change of the subscriptions (it keeps a copy for a successor)."""
        if self._guardian is not None:
            self.send(self._guardian, change)

    def _publish(self, event: Any) -> None:
        # Once per subscriber, however many of its classes match (a class and its subclass,
        # or `object`): Akka keeps a set of subscribers per event.
        sent: list[ActorRef] = []
        for subscriber, cls in self._subscriptions.pairs:
            if isinstance(event, cls) and subscriber not in sent:
                sent.append(subscriber)
                self.send(subscriber.address, reply_form(subscriber, event))
