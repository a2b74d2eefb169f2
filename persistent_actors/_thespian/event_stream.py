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


class EventStreamActor(FrameBatching, Actor):  # type: ignore[misc]
    """Keeps (subscriber, class) pairs and fans published events out to them.

    It also gets the system's dead letters (from the guardian, the registered handler), so it
    can drop subscribers that died and publish `DeadLetter`s.
    """

    def __init__(self) -> None:
        super().__init__()
        self._subscriptions: list[tuple[ActorRef, type[Any]]] = []

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        if isinstance(message, Envelope):
            message = message.message
        match message:
            case StartEventStream():
                self.send(sender, EventStreamStarted())
            case Subscribe(subscriber, cls):
                if (subscriber, cls) not in self._subscriptions:
                    self._subscriptions.append((subscriber, cls))
            case Unsubscribe(subscriber, cls):
                self._subscriptions = [
                    (s, c) for s, c in self._subscriptions
                    if not (s == subscriber and (cls is None or c is cls))
                ]
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
                self._subscriptions = [(s, c) for s, c in self._subscriptions if s != dead]
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

    def _publish(self, event: Any) -> None:
        # Once per subscriber, however many of its classes match (a class and its subclass,
        # or `object`): Akka keeps a set of subscribers per event.
        sent: list[ActorRef] = []
        for subscriber, cls in self._subscriptions:
            if isinstance(event, cls) and subscriber not in sent:
                sent.append(subscriber)
                self.send(subscriber.address, reply_form(subscriber, event))
