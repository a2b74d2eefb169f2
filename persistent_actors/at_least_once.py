"""At-least-once delivery (Akka.NET's ``AtLeastOnceDeliveryActor``).

A persistent actor that must get messages to another actor, across its own crashes, derives
from `AtLeastOnceDeliveryActor`. The usual shape (Akka's): a command persists an event; the
event's handler, and `on_recover` for the same event, call ``deliver(destination, make_message)``;
the destination answers with the delivery id; a command persists a confirmation event whose
handler (and `on_recover`) calls ``confirm_delivery(delivery_id)``.

* ``make_message(delivery_id)`` builds the message; the delivery id grows by one per `deliver`
  and is replayed identically on recovery, so it identifies the message to the destination.
* An unconfirmed message is sent again after `redeliver_interval` seconds (at most
  `redelivery_burst_limit` per tick), until confirmed.
* During recovery `deliver` sends nothing; right after recovery every delivery still unconfirmed
  is sent. A message may therefore arrive more than once (after a crash between its persist
  and its confirmation, or when a confirmation is slow): destinations must deduplicate by
  delivery id or be idempotent. Order is not guaranteed.
* When a delivery is sent again after `warn_after_number_of_unconfirmed_attempts` attempts
  went unconfirmed, the actor receives an `UnconfirmedWarning` listing those deliveries (as a
  command; unhandled, it is ignored). Attempts count from recovery: what recovery left
  unconfirmed starts again at 0.
* More than `max_unconfirmed_messages` unconfirmed deliveries make `deliver` raise
  `MaxUnconfirmedMessagesExceededError`.
* `get_delivery_snapshot` / `set_delivery_snapshot` carry the delivery state in the actor's own
  snapshot. A snapshot names destinations by their actor name (refs are not storable);
  `set_delivery_snapshot` asks `destination_for(name)` for the ref to use.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from persistent_actors import _protocol as p
from persistent_actors._actor import ActorRef
from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._serialization import register
from persistent_actors.errors import ConfigError, MaxUnconfirmedMessagesExceededError
from persistent_actors.timers import MAX_TIMER_DELAY

__all__ = [
    "AtLeastOnceDeliveryActor",
    "AtLeastOnceDeliverySnapshot",
    "MaxUnconfirmedMessagesExceededError",
    "UnconfirmedDelivery",
    "UnconfirmedWarning",
]


@register(manifest="persistent_actors.UnconfirmedDelivery")
@dataclasses.dataclass(frozen=True, slots=True)
class UnconfirmedDelivery:
    """A delivery not confirmed yet: its id, the destination's actor name, the message."""

    delivery_id: int
    destination: str
    message: Any


@register(manifest="persistent_actors.AtLeastOnceDeliverySnapshot")
@dataclasses.dataclass(frozen=True, slots=True)
class AtLeastOnceDeliverySnapshot:
    """The delivery state to store inside the actor's snapshot (storable like an event)."""

    current_delivery_id: int
    unconfirmed_deliveries: tuple[UnconfirmedDelivery, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class UnconfirmedWarning:
    """Sent to the actor itself: these deliveries reached the warning number of attempts."""

    unconfirmed_deliveries: tuple[UnconfirmedDelivery, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class _RedeliveryTick:
    # Ticks of an instance that was restarted since are ignored: each instance runs one chain.
    token: str


@dataclasses.dataclass(slots=True)
class _Delivery:
    destination: ActorRef
    message: Any
    timestamp: float  # monotonic time of the last attempt
    attempt: int


class _DeliveryState:
    def __init__(self) -> None:
        self.current_id = 0
        self.unconfirmed: dict[int, _Delivery] = {}
        self.token = uuid.uuid4().hex
        self.tick_pending = False


class AtLeastOnceDeliveryActor(PersistentActor):
    """A `PersistentActor` that delivers messages at least once (see the module docstring)."""

    redeliver_interval: ClassVar[float] = 5.0
    """Seconds after which an unconfirmed message is sent again (Akka's default: 5 s)."""

    redelivery_burst_limit: ClassVar[int] = 10_000
    """At most this many messages are sent again per redelivery tick."""

    warn_after_number_of_unconfirmed_attempts: ClassVar[int] = 5
    """After this many attempts of one delivery, the actor gets an `UnconfirmedWarning`."""

    max_unconfirmed_messages: ClassVar[int] = 100_000
    """`deliver` raises `MaxUnconfirmedMessagesExceededError` beyond this many unconfirmed."""

    def _delivery_state(self) -> _DeliveryState:
        # Created on first use: subclasses need not call super().__init__().
        state: _DeliveryState | None = self.__dict__.get("_at_least_once")
        if state is None:
            self._check_settings()
            state = self.__dict__["_at_least_once"] = _DeliveryState()
        return state

    @classmethod
    def _check_class_settings(cls) -> None:
        super()._check_class_settings()
        cls._check_settings()

    @classmethod
    def _check_settings(cls) -> None:
        name = cls.__qualname__
        interval = cls.redeliver_interval
        if not isinstance(interval, int | float) or isinstance(interval, bool) or \
                not 0 < interval <= MAX_TIMER_DELAY:
            raise ConfigError(f"{name}.redeliver_interval must be a finite number of seconds "
                              f"> 0 and <= {MAX_TIMER_DELAY:.0e} (a timer's limit), got "
                              f"{interval!r}")
        for attribute in ("redelivery_burst_limit", "warn_after_number_of_unconfirmed_attempts",
                          "max_unconfirmed_messages"):
            value = getattr(cls, attribute)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}.{attribute} must be an int >= 1, got {value!r}")

    # -- the API ------------------------------------------------------------------------------
    def deliver(self, destination: ActorRef, make_message: Callable[[int], Any]) -> None:
        """Send ``make_message(delivery_id)`` to `destination` until `confirm_delivery`.

        Call it from a persist handler and from `on_recover` for the same event. During
        recovery nothing is sent: what is still unconfirmed when recovery ends is sent then.

        Raises:
            MaxUnconfirmedMessagesExceededError: `max_unconfirmed_messages` are unconfirmed.
            TypeError: `destination` is not an ActorRef or `make_message` is not callable.

        """
        if not isinstance(destination, ActorRef):
            raise TypeError(f"deliver() needs an ActorRef destination, got {destination!r}")
        if not callable(make_message):
            raise TypeError(f"deliver() needs a callable make_message, got {make_message!r}")
        state = self._delivery_state()
        if len(state.unconfirmed) >= self.max_unconfirmed_messages:
            raise MaxUnconfirmedMessagesExceededError(
                f"{type(self).__qualname__} has {len(state.unconfirmed)} unconfirmed deliveries "
                f"(max_unconfirmed_messages = {self.max_unconfirmed_messages})")
        state.current_id += 1
        delivery_id = state.current_id
        message = make_message(delivery_id)
        now = time.monotonic()
        if self.is_recovering:
            # Overdue at once: sent when replay ends (`_on_replay_success`).
            state.unconfirmed[delivery_id] = _Delivery(destination, message,
                                                       now - self.redeliver_interval, 0)
        else:
            state.unconfirmed[delivery_id] = _Delivery(destination, message, now, 1)
            destination.tell(message)
        self._schedule_tick()

    def confirm_delivery(self, delivery_id: int) -> bool:
        """Stop redelivering `delivery_id`; False if it was not (or no longer) unconfirmed."""
        return self._delivery_state().unconfirmed.pop(delivery_id, None) is not None

    @property
    def number_of_unconfirmed(self) -> int:
        """How many deliveries wait for confirmation."""
        return len(self._delivery_state().unconfirmed)

    def get_delivery_snapshot(self) -> AtLeastOnceDeliverySnapshot:
        """The delivery state, to store inside the actor's own snapshot."""
        state = self._delivery_state()
        return AtLeastOnceDeliverySnapshot(state.current_id, tuple(
            UnconfirmedDelivery(delivery_id, d.destination.name, d.message)
            for delivery_id, d in sorted(state.unconfirmed.items())))

    def set_delivery_snapshot(self, snapshot: AtLeastOnceDeliverySnapshot) -> None:
        """Restore the delivery state from a `SnapshotOffer` (destinations via `destination_for`).

        The unconfirmed deliveries are sent again when recovery ends.
        """
        if not isinstance(snapshot, AtLeastOnceDeliverySnapshot):
            raise TypeError(f"set_delivery_snapshot() needs an AtLeastOnceDeliverySnapshot, got "
                            f"{type(snapshot).__name__}")
        _check_snapshot(snapshot)
        state = self._delivery_state()
        overdue = time.monotonic() - self.redeliver_interval
        state.current_id = snapshot.current_delivery_id
        state.unconfirmed = {
            u.delivery_id: _Delivery(self.destination_for(u.destination), u.message, overdue, 0)
            for u in snapshot.unconfirmed_deliveries}
        if state.unconfirmed:
            self._schedule_tick()

    def destination_for(self, name: str) -> ActorRef:
        """The ref of the destination a delivery snapshot names; override to use snapshots.

        The default raises: refs cannot be stored, so the actor says which ref a name means
        (typically one it received in its constructor).
        """
        raise NotImplementedError(
            f"{type(self).__qualname__}.destination_for({name!r}): override it to map the "
            "destination names of a delivery snapshot to refs")

    # -- redelivery ---------------------------------------------------------------------------
    def _on_replay_success(self) -> None:
        # Akka's onReplaySuccess: what recovery left unconfirmed goes out now, not a tick later.
        state: _DeliveryState | None = self.__dict__.get("_at_least_once")
        if state is not None and state.unconfirmed:  # none if nothing was delivered in replay
            self._redeliver_overdue()

    def _schedule_tick(self) -> None:
        state = self._delivery_state()
        if state.tick_pending:
            return
        state.tick_pending = True
        delay = max(self.redeliver_interval / 2, 0.01)
        self._eventsourced.cell.schedule(delay, p.Scheduled(_RedeliveryTick(state.token)))

    def _receive_command(self, message: Any) -> None:
        if not isinstance(message, _RedeliveryTick):
            self._behavior()(message)
            return
        state = self._delivery_state()
        if message.token != state.token:
            return  # from an instance that was restarted since
        state.tick_pending = False
        self._redeliver_overdue()
        if state.unconfirmed:
            self._schedule_tick()

    def _redeliver_overdue(self) -> None:
        state = self._delivery_state()
        now = time.monotonic()
        warnings: list[UnconfirmedDelivery] = []
        sent = 0
        for delivery_id, delivery in list(state.unconfirmed.items()):
            if sent >= self.redelivery_burst_limit:
                break
            if delivery.timestamp + self.redeliver_interval > now:
                continue
            # As Akka's: the warning counts the attempts made before this one (N attempts
            # went unconfirmed), so N = 1 warns at the first redelivery.
            if delivery.attempt == self.warn_after_number_of_unconfirmed_attempts:
                warnings.append(UnconfirmedDelivery(delivery_id, delivery.destination.name,
                                                    delivery.message))
            delivery.destination.tell(delivery.message)
            delivery.timestamp = now
            delivery.attempt += 1
            sent += 1
        if warnings:
            self.self_ref.tell(UnconfirmedWarning(tuple(warnings)))


def _check_snapshot(snapshot: AtLeastOnceDeliverySnapshot) -> None:
    """Refuse a snapshot that contradicts itself, before any of it is applied.

    An unconfirmed id above the counter was given out again by the next `deliver`, which
    replaced that delivery: it was never sent again.
    """
    current = snapshot.current_delivery_id
    if not isinstance(current, int) or isinstance(current, bool) or current < 0:
        raise ValueError(f"AtLeastOnceDeliverySnapshot.current_delivery_id must be an int >= 0, "
                         f"got {current!r}")
    deliveries = snapshot.unconfirmed_deliveries
    if not isinstance(deliveries, tuple | list):
        raise TypeError(f"AtLeastOnceDeliverySnapshot.unconfirmed_deliveries must be a tuple of "
                        f"UnconfirmedDelivery, got {type(deliveries).__name__}")
    seen: set[int] = set()
    for delivery in deliveries:
        if not isinstance(delivery, UnconfirmedDelivery):
            raise TypeError(f"AtLeastOnceDeliverySnapshot.unconfirmed_deliveries holds "
                            f"{delivery!r}: expected UnconfirmedDelivery")
        nr = delivery.delivery_id
        if not isinstance(nr, int) or isinstance(nr, bool) or not 1 <= nr <= current or nr in seen:
            raise ValueError(
                f"AtLeastOnceDeliverySnapshot: delivery id {nr!r} must be a distinct int in "
                f"[1, current_delivery_id = {current}]")
        if not isinstance(delivery.destination, str):
            raise TypeError(f"UnconfirmedDelivery.destination must be a str (the name "
                            f"destination_for maps), got {delivery.destination!r}")
        seen.add(nr)
