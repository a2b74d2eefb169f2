"""Actors for the retention and at-least-once delivery tests (importable: multiproc-tcp)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from persistent_actors import (
    Actor,
    ActorRef,
    AtLeastOnceDeliveryActor,
    AtLeastOnceDeliverySnapshot,
    DeleteMessagesSuccess,
    DeleteSnapshotsSuccess,
    MaxUnconfirmedMessagesExceededError,
    PersistentActor,
    RecoveryCompleted,
    RetentionCriteria,
    SaveSnapshotSuccess,
    SnapshotOffer,
    UnconfirmedWarning,
    register,
)


# -- retention ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Recovered:
    """What a retention actor reports once recovered."""

    snapshot_sequence_nr: int | None
    items: tuple[int, ...]
    last_sequence_nr: int


class RetentionCounter(PersistentActor):
    """Persists ints; snapshot every 3, keep 2, delete events (Akka typed's retention)."""

    retention = RetentionCriteria.snapshot_every(3, 2, delete_events_on_snapshot=True)

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.items: list[int] = []
        self.offered: int | None = None

    @property
    def persistence_id(self) -> str:
        return self.pid

    def snapshot_state(self) -> Any:
        return list(self.items)

    def on_command(self, message: Any) -> None:
        match message:
            case ("add", *numbers):
                self.persist_all(numbers, self.items.append)
                self.defer_async("added", lambda _: self.sender.tell(self.last_sequence_nr))
            case SaveSnapshotSuccess(metadata):
                self.probe.tell(("saved", metadata.sequence_nr))
            case DeleteMessagesSuccess(to):
                self.probe.tell(("events-deleted", to))
            case DeleteSnapshotsSuccess(criteria):
                self.probe.tell(("snapshots-deleted", criteria.max_sequence_nr))
            case _:
                self.unhandled(message)

    def on_recover(self, message: Any) -> None:
        match message:
            case SnapshotOffer(metadata, snapshot):
                self.offered = metadata.sequence_nr
                self.items = list(snapshot)
            case RecoveryCompleted():
                self.probe.tell(Recovered(self.offered, tuple(self.items),
                                          self.last_sequence_nr))
            case int():
                self.items.append(message)

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", f"{type(cause).__name__}: {cause}"))


class RetentionKeepEvents(RetentionCounter):
    """Snapshot every 3, keep 1 snapshot, never delete events."""

    retention = RetentionCriteria.snapshot_every(3, 1)


class RetentionWithoutState(PersistentActor):
    """Sets retention but forgets snapshot_state: recovery fails with a clear error."""

    persistence_id = "retention-without-state"
    retention = RetentionCriteria.snapshot_every(2, 1)

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_command(self, message: Any) -> None:
        pass

    def on_recover(self, message: Any) -> None:
        pass

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", str(cause)))


# -- at-least-once delivery ----------------------------------------------------------------------
@register(manifest="tests.ops.MsgSent")
@dataclasses.dataclass(frozen=True)
class MsgSent:
    payload: str


@register(manifest="tests.ops.MsgConfirmed")
@dataclasses.dataclass(frozen=True)
class MsgConfirmed:
    delivery_id: int


@register(manifest="tests.ops.Msg")  # stored inside delivery snapshots
@dataclasses.dataclass(frozen=True)
class Msg:
    delivery_id: int
    payload: str


@dataclasses.dataclass(frozen=True)
class Confirm:
    delivery_id: int


@dataclasses.dataclass(frozen=True)
class Received:
    delivery_id: int
    payload: str
    attempt: int


@register(manifest="tests.ops.SenderState")
@dataclasses.dataclass(frozen=True)
class SenderState:
    sent: tuple[str, ...]
    delivery: AtLeastOnceDeliverySnapshot


class Destination(Actor):
    """Drops the first `drop` attempts of every delivery, then confirms each attempt."""

    def __init__(self, drop: int, probe: ActorRef) -> None:
        self.drop = drop
        self.probe = probe
        self.attempts: dict[int, int] = {}

    def on_receive(self, message: Any) -> None:
        match message:
            case Msg(delivery_id, payload):
                attempt = self.attempts[delivery_id] = self.attempts.get(delivery_id, 0) + 1
                if attempt <= self.drop:
                    return
                self.probe.tell(Received(delivery_id, payload, attempt))
                self.sender.tell(Confirm(delivery_id))
            case _:
                self.unhandled(message)


class Sender(AtLeastOnceDeliveryActor):
    """Persists what to send, delivers it at least once, persists confirmations."""

    redeliver_interval = 0.2
    warn_after_number_of_unconfirmed_attempts = 3
    max_unconfirmed_messages = 3

    def __init__(self, pid: str, destination: ActorRef, probe: ActorRef) -> None:
        self.pid = pid
        self.destination = destination
        self.probe = probe
        self.sent: list[str] = []

    @property
    def persistence_id(self) -> str:
        return self.pid

    def destination_for(self, name: str) -> ActorRef:
        return self.destination

    def on_command(self, message: Any) -> None:
        match message:
            case ("send", str(payload)):
                if self.number_of_unconfirmed >= self.max_unconfirmed_messages:
                    self.sender.tell("refused")  # deliver would raise: say so, store nothing
                    return
                self.persist(MsgSent(payload), self._sent)
            case ("send-unchecked", str(payload)):
                try:
                    self.deliver(self.destination, lambda i: Msg(i, payload))
                except MaxUnconfirmedMessagesExceededError as e:
                    self.sender.tell(("raised", str(e)))
            case Confirm(delivery_id):
                self.persist(MsgConfirmed(delivery_id), self._confirmed)
            case UnconfirmedWarning(deliveries):
                self.probe.tell(("warning", tuple(d.delivery_id for d in deliveries)))
            case "unconfirmed":
                self.sender.tell(self.number_of_unconfirmed)
            case "snap":
                self.save_snapshot(SenderState(tuple(self.sent), self.get_delivery_snapshot()))
            case SaveSnapshotSuccess(metadata):
                self.probe.tell(("saved", metadata.sequence_nr))
            case _:
                self.unhandled(message)

    def _confirmed(self, event: MsgConfirmed) -> None:
        self.confirm_delivery(event.delivery_id)

    def _sent(self, event: MsgSent) -> None:
        self.sent.append(event.payload)
        self.deliver(self.destination, lambda i: Msg(i, event.payload))
        self.sender.tell("accepted")

    def on_recover(self, message: Any) -> None:
        match message:
            case SnapshotOffer(_, SenderState(sent, delivery)):
                self.sent = list(sent)
                self.set_delivery_snapshot(delivery)
            case MsgSent(payload):
                self.sent.append(payload)
                self.deliver(self.destination, lambda i: Msg(i, payload))
            case MsgConfirmed(delivery_id):
                self.confirm_delivery(delivery_id)
            case RecoveryCompleted():
                self.probe.tell(("recovered", tuple(self.sent), self.number_of_unconfirmed))

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", str(cause)))


class WarnAtOnce(Sender):
    """Warns when the first redelivery goes out (N = 1)."""

    warn_after_number_of_unconfirmed_attempts = 1


class QuietSender(Sender):
    """The same, warning only after 100 attempts."""

    warn_after_number_of_unconfirmed_attempts = 100


class PatientSender(QuietSender):
    """The same, redelivering only every 120 s: what recovery leaves must go out at its end."""

    redeliver_interval = 120.0


class BadIntervalSender(Sender):
    """A redelivery interval of 0: actor_of says which attribute is wrong."""

    redeliver_interval = 0


class NanIntervalSender(Sender):
    redeliver_interval = math.nan


class InfiniteIntervalSender(Sender):
    redeliver_interval = math.inf


class HugeIntervalSender(Sender):
    redeliver_interval = 1e16  # finite, beyond a timer's limit
