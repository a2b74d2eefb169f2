"""Frame batching: what an actor sends to one address while handling a message travels together.

On multiproc-tcp every thespian message is its own pickled TCP frame, acknowledged before the
next one to the same target goes (about 1,250 round trips/s per pair of actors), while a frame
carrying 100 messages costs little more than a frame carrying one. So the runtime's actors
(`FrameBatching` + `batched`) collect what they send while they handle one message and send it
at the end, per destination: a lone message bare, several as one `Batch` that the receiver
unpacks and handles in order, as if each had arrived alone from the same sender. An entity
host that handles 50 commands in one receive thus sends the journal one frame with 50 writes,
and the journal answers with one frame; replies to the outside go back 50 to a frame.

Order per sender and receiver is kept: the messages for one destination keep their send order,
and thespian keeps the order of the frames between two actors. Only messages to *different*
destinations may leave in another order than they were sent in, which Akka does not promise
either. Thespian's own messages (``ActorExitRequest``, ``WakeupMessage``, ...) never go in a
`Batch`, since thespian acts on them itself, and neither do replay chunks, which are large
already and should stream while the replay is read: both leave at once, right behind whatever
waits for the same destination.

The same code runs on the simple base, where it saves thespian dispatches, so both bases run
(and test) one delivery path. The price: on multiproc-tcp a message now leaves when the handler
that sent it returns, not while it still runs (as on the simple base all along).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorAddress, ActorSystemMessage
from thespian.system import simpleSystemBase as _simple  # noqa: N813 - thespian's module name

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log

__all__ = [
    "MAX_BATCH",
    "NESTED",
    "SENT_ALONE",
    "FrameBatching",
    "batched",
    "frame_has_more",
    "frame_rest",
    "take_from_frame",
    "unbatch",
]

# Most messages in one Batch (one frame).
MAX_BATCH = 500
# Sent alone, never in a Batch (see the module docstring).
_ALONE = (ActorSystemMessage, p.ReplayedMessages)
SENT_ALONE = _ALONE  # for a caller that inlines `FrameBatching.send`'s shortcut (the host's)
# An outbox that is never flushed: marks an object whose receives always run nested inside its
# owner's (an entity host's cells send through the host, see `_EntityCell`).
NESTED: dict[Any, tuple[Any, list[Any]]] = {}

R = TypeVar("R", bound=Callable[[Any, Any, Any], None])
_UNRESOLVED: Any = object()  # `FrameBatching._frames_outside` not looked up yet


def unbatch(message: Any) -> tuple[Any, ...]:
    """The messages a frame carried: those of a `Batch`, or `message` alone."""
    if type(message) is p.Batch:
        return message.messages
    return (message,)


def frame_has_more(actor: Any) -> bool:
    """True while `actor` handles a message of a `Batch` that has more messages after it.

    A receiver that would act at once when nothing else is queued (a group commit that skips
    waiting) must wait for the rest of the frame: it is already here.
    """
    return bool(getattr(actor, "_frame_left", 0))


def frame_rest(actor: Any) -> tuple[Any, ...]:
    """The messages of the `Batch` `actor` handles that come after the current one (or none)."""
    left: int = getattr(actor, "_frame_left", 0)
    messages: tuple[Any, ...] = getattr(actor, "_frame_messages", ())
    return messages[len(messages) - left:] if left and messages else ()


def take_from_frame(actor: Any, count: int) -> None:
    """Skip the first `count` messages of `frame_rest` (at most all): `actor` dealt with them.

    It stashed them, in order, as it would have one by one; they are not handed to it again.
    """
    actor._frame_left -= count  # noqa: SLF001 - this module's own attribute


class FrameBatching:
    """Mixin for a thespian actor whose ``receiveMessage`` is wrapped by `batched`.

    While a receive runs, `send` collects per destination; the receive's end sends them.
    Outside a receive (there is none for a thespian actor) it sends at once.
    """

    _outbox: dict[Any, tuple[Any, list[Any]]] | None = None
    # Thespian's send for a frame to an ActorAddress, found at the first frame (`_thespian_send`).
    _frame_send: Callable[[Any, Any], None] | None = None
    _frame_left = 0  # messages of the current Batch after the one being handled
    _frame_messages: tuple[Any, ...] = ()  # the current Batch's messages (`frame_rest`)
    # Simple base: the outside's address and the list its messages wait in (`_outside_of`).
    _frames_outside: Any = _UNRESOLVED  # (address, append), None, or not looked up yet
    # The address object the last collected message went to, and the list it joined in the
    # outbox: a sender that sends many in a row to one actor (a driver, a reply stream) skips
    # the address's key and the dict lookup. Reset wherever that list leaves the outbox.
    _last_address: Any = None
    _last_messages: list[Any] | None = None

    def send(self, targetAddr: Any, msg: Any) -> None:  # noqa: N803 - thespian's names
        """Thespian's ``Actor.send``, collected until the end of the current receive.

        On the simple base a reply to an ask from outside goes straight into the list the
        driver takes replies from: collecting it would change nothing, since that list is read
        only once the system is idle, and the replies to the outside keep their order.
        """
        outside = self._frames_outside
        if outside is _UNRESOLVED:
            outside = self._frames_outside = _outside_of(self)
        if type(msg) is p.Reply and outside is not None and \
                targetAddr is outside[0]:
            outside[1](msg)
            return
        outbox = self._outbox
        if outbox is None or not isinstance(targetAddr, ActorAddress):
            super().send(targetAddr, msg)  # type: ignore[misc]  # thespian's Actor.send
            return
        alone = isinstance(msg, _ALONE)
        if targetAddr is self._last_address and not alone:
            self._last_messages.append(msg)  # type: ignore[union-attr]  # set with the address
            return
        key = targetAddr.addressDetails
        try:
            entry = outbox.get(key)
        except TypeError:  # an address thespian cannot hash (not created yet): keep the order
            self._last_address = self._last_messages = None
            self._send_collected(outbox)
            outbox.clear()
            super().send(targetAddr, msg)  # type: ignore[misc]
            return
        if alone:
            # At once, behind what waits for the same address: a replay streams while it is
            # read, and thespian acts on its own messages itself.
            if entry is not None:
                if entry[1] is self._last_messages:
                    self._last_address = self._last_messages = None
                del outbox[key]
                self._send_frames(targetAddr, entry[1])
            super().send(targetAddr, msg)  # type: ignore[misc]
            return
        if entry is None:
            messages = [msg]
            outbox[key] = (targetAddr, messages)
        else:
            messages = entry[1]
            messages.append(msg)
        self._last_address, self._last_messages = targetAddr, messages

    def _send_collected(self, outbox: dict[Any, tuple[Any, list[Any]]]) -> None:
        for address, messages in outbox.values():
            if len(messages) == 1:  # the common case: one message for this destination
                self._send_frame(address, messages[0])
            else:
                self._send_frames(address, messages)

    def _send_frames(self, address: Any, messages: list[Any]) -> None:
        if len(messages) == 1:  # the common case: one message for this destination
            self._send_frame(address, messages[0])
            return
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            self._send_frame(address, chunk[0] if len(chunk) == 1 else p.Batch(tuple(chunk)))

    def _send_frame(self, address: Any, frame: Any) -> None:
        try:
            send = self._frame_send
            if send is None:
                send = self._frame_send = _thespian_send(self)
            send(address, frame)
        except Exception:  # noqa: BLE001 - at the end of a receive nobody is left to raise to
            log.exception("%s: sending %r to %s failed", type(self).__name__, frame, address)


def _outside_of(actor: Any) -> tuple[Any, Callable[[Any], None]] | None:
    """On the patched simple base (`wakeups`): the outside's address and its list's append."""
    base = getattr(getattr(getattr(actor, "_myRef", None), "_system", None), "_systemBase", None)
    outside = getattr(base, "_pa_outside", None)
    if type(outside) is not tuple:
        return None
    address, responses = outside
    return address, responses.append


def _thespian_send(actor: Any) -> Callable[[Any, Any], None]:
    """The send that `FrameBatching` hands `actor`'s frames to: the next ``send`` in its MRO.

    When that is thespian's ``Actor.send``, which checks the address (a frame's always is an
    ActorAddress) and hands the message to the actor's system reference, and the reference is
    the simple base's (which only adds the sender's address and calls the system base's
    ``actor_send``), the innermost step is called directly: two Python calls less per frame.
    """
    send: Callable[[Any, Any], None] = super(FrameBatching, actor).send
    ref = getattr(actor, "_myRef", None)
    if getattr(send, "__func__", None) is not ThespianActor.send or ref is None:
        return send
    if type(ref) is _simple.ActorRef:
        base = getattr(getattr(ref, "_system", None), "_systemBase", None)
        address = getattr(ref, "_addr", None)
        if base is not None and address is not None and callable(getattr(base, "actor_send", None)):
            return functools.partial(base.actor_send, address)
    inner: Callable[[Any, Any], None] = ref.actor_send
    return inner


def batched(receive: R) -> R:
    """Wrap a ``receiveMessage``: unpack a `Batch`, and send what it sent per destination."""

    @functools.wraps(receive)
    def receiveMessage(self: Any, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's
        if self._outbox is not None:  # nested in a receive already: its end sends
            # Each message of a frame comes through here: no `unbatch` call and 1-tuple for it.
            if type(message) is not p.Batch:
                receive(self, message, sender)
            else:
                for item in message.messages:
                    receive(self, item, sender)
            return
        outbox: dict[Any, tuple[Any, list[Any]]] = {}
        self._outbox = outbox
        self._last_address = self._last_messages = None
        try:
            if type(message) is not p.Batch:
                receive(self, message, sender)
            else:
                _receive_all(self, message.messages, sender)
        finally:
            self._outbox = self._last_address = self._last_messages = None
            if outbox:
                self._send_collected(outbox)

    receiveMessage.batched_inner = receive  # type: ignore[attr-defined]  # see `_receive_all`
    return receiveMessage  # type: ignore[return-value]


def _receive_all(actor: Any, messages: tuple[Any, ...], sender: Any) -> None:
    """Handle the messages of one `Batch` in order; one that fails does not stop the others.

    Each goes through ``actor.receiveMessage``, so a subclass that overrides it (and calls the
    wrapped one for the rest) sees every message of a frame as it sees a lone one. Where the
    class's ``receiveMessage`` is a `batched` wrapper itself, the function it wraps is called
    directly: inside a receive the wrapper would only pass the message on (one call less).
    """
    inner = getattr(type(actor).receiveMessage, "batched_inner", None)
    count = left = len(messages)
    actor._frame_messages = messages  # noqa: SLF001 - this module's own attribute
    try:
        while left:
            item = messages[count - left]
            left -= 1
            actor._frame_left = left  # noqa: SLF001
            try:
                if inner is not None and type(item) is not p.Batch:
                    inner(actor, item, sender)
                else:
                    # A Batch in a Batch: `frame_rest` must not offer this frame's messages
                    # while that one's are handled.
                    actor._frame_messages = ()  # noqa: SLF001
                    try:
                        actor.receiveMessage(item, sender)
                    finally:
                        actor._frame_messages = messages  # noqa: SLF001
            except Exception:  # noqa: BLE001 - thespian would deliver the whole batch again
                log.exception(
                    "%s failed on %r (one message of a batch; the others are handled)",
                    type(actor).__name__,
                    item,
                )
            left = actor._frame_left  # noqa: SLF001 - less where the actor took some (`take_from_frame`)
    finally:
        actor._frame_left = 0  # noqa: SLF001
        actor._frame_messages = ()  # noqa: SLF001
