"""`Outbound`: the external side's sends on multiproc-tcp, one frame per destination, unwaited.

Thespian's external ``tell`` schedules one frame and then runs the transport until the receiver
has acknowledged it, so a caller that sends to 20 actors waits for 20 acknowledgements in turn,
and cannot route the replies arriving meanwhile. Measured before this module (service_async_mp,
100 ask_async clients to 20 carts): the driver thread spent 5 ms per pass in ``tell`` while the
frame crossed to the ingress actor, which forwarded each message as a frame of its own.

`Outbound` instead schedules its frames on the external transport, the way thespian's actors
send, and leaves them to complete while the driver listens (a listen runs transmits too):

* everything the driver has for one destination leaves as one frame: the message alone, or a
  `Batch` that the receiver unpacks in order (`frames.batched`; every runtime actor does);
* at most one frame per destination is in flight (thespian's external transport does not order
  two frames to one target, its actors' send queues do that), and what is sent to a busy
  destination waits, then leaves as one frame when the frame in flight is acknowledged. So the
  order per destination is the order of `send` calls, and a busy destination gets bigger frames;
* thespian's own messages (``ActorExitRequest`` from `ActorSystem.stop`, ...) always leave
  as a frame of their own, in their place: thespian acts on them only when they arrive alone
  (inside a `Batch` the actor would see an exit request, but its process would not exit);
* a frame that cannot be delivered goes to the dead letter handler, as thespian's ``tell``
  does it for a dead target (the guardian unpacks a `Batch`).

Only the thread that runs the external transport (the driver) may call `send`.
"""

from __future__ import annotations

import time
from typing import Any

from thespian.actors import ActorSystemMessage, DeadEnvelope
from thespian.system.transport import TransmitIntent

from persistent_actors import _protocol as p
from persistent_actors._thespian.common import log
from persistent_actors._thespian.frames import MAX_BATCH

__all__ = ["Outbound"]


class Outbound:
    """Non-blocking, per-destination ordered frames from outside the actor system.

    Args:
        asys: a multiproc-tcp thespian ``ActorSystem`` (its external transport is used).

    """

    def __init__(self, asys: Any) -> None:
        self._asys = asys
        base = asys._systemBase  # noqa: SLF001 - thespian's external side, see the docstring
        self._transport = base.transport
        self._admin = base.adminAddr
        self._busy: set[Any] = set()  # destinations with a frame in flight
        # When each destination's frame in flight left (`unacknowledged_for`).
        self._since: dict[Any, float] = {}
        # Messages for a busy destination, sent as one frame when its frame is acknowledged.
        self._waiting: dict[Any, tuple[Any, list[Any]]] = {}

    @property
    def in_flight(self) -> bool:
        """True while a frame is not acknowledged yet (the transport must keep running)."""
        return bool(self._busy)

    def unacknowledged_for(self, address: Any) -> float | None:
        """Seconds the frame in flight to `address` has waited for its ack; None if none.

        Any thread may ask (for a timeout's message): a stale answer is harmless there.
        """
        since = self._since.get(getattr(address, "addressDetails", None))
        return None if since is None else time.monotonic() - since

    def send(self, sends: list[tuple[Any, Any]]) -> None:
        """Send each (address, message) in order per address; returns without waiting."""
        groups: dict[Any, tuple[Any, list[Any]]] = {}
        for address, message in sends:
            key = address.addressDetails
            entry = groups.get(key)
            if entry is None:
                groups[key] = (address, [message])
            else:
                entry[1].append(message)
        for key, (address, messages) in groups.items():
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting[1].extend(messages)
            elif key in self._busy:
                self._waiting[key] = (address, messages)
            else:
                self._transmit(key, address, messages)

    def _transmit(self, key: Any, address: Any, messages: list[Any]) -> None:
        size = _frame_size(messages)
        chunk, rest = messages[:size], messages[size:]
        if rest:
            self._waiting[key] = (address, rest)
        frame = chunk[0] if len(chunk) == 1 else p.Batch(tuple(chunk))

        def done(_result: Any, _intent: Any) -> None:
            self._finished(key)

        def failed(result: Any, intent: Any) -> None:
            # The dead letter handler (the guardian) gets it, as from thespian's tell for a
            # dead target; here for any failure: a target whose process was killed may also
            # fail as a reset connection, and the guardian holds its messages for the
            # restarted incarnation. Nobody outside could retry it.
            log.debug("driver: sending %r to %s failed: %s", frame, address, result)
            if address != self._admin:
                try:
                    self._schedule(TransmitIntent(self._admin, DeadEnvelope(address, frame)))
                except Exception:  # noqa: BLE001 - the transport is closing
                    log.warning("driver: %r to %s was lost: %s", frame, address, result)
            self._finished(key)

        self._busy.add(key)
        self._since[key] = time.monotonic()
        try:
            self._schedule(TransmitIntent(address, frame, onSuccess=done, onError=failed))
        except Exception:  # noqa: BLE001 - one bad message must not lose the others
            log.debug("driver: frame send failed, sending one by one", exc_info=True)
            self._busy.discard(key)
            self._since.pop(key, None)
            for message in chunk:  # blocking tells: nothing else is in flight to `address`
                try:
                    self._asys.tell(address, message)
                except Exception:  # noqa: BLE001
                    log.warning("driver: sending %s to %s failed", type(message).__name__,
                                address, exc_info=True)
            self._finished(key)

    def _schedule(self, intent: Any) -> None:
        self._transport.scheduleTransmit(None, intent)

    def _finished(self, key: Any) -> None:
        """The frame to `key` is acknowledged (or failed): what waited for it leaves now."""
        self._busy.discard(key)
        self._since.pop(key, None)
        waiting = self._waiting.pop(key, None)
        if waiting is not None and key not in self._busy:
            self._transmit(key, *waiting)


def _frame_size(messages: list[Any]) -> int:
    """How many of `messages` (not empty) leave in the next frame.

    A thespian message alone; otherwise the ordinary messages before the next thespian one,
    up to `MAX_BATCH` (see the module docstring).
    """
    if len(messages) == 1 or isinstance(messages[0], ActorSystemMessage):
        return 1
    limit = min(len(messages), MAX_BATCH)
    size = 1
    while size < limit and not isinstance(messages[size], ActorSystemMessage):
        size += 1
    return size
