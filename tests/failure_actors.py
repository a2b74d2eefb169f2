"""Actors for the failure-semantics tests (module level: the multiproc base imports them)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from persistent_actors import (
    ActorRef,
    DeleteMessagesFailure,
    PersistentActor,
    PoisonPill,
    RecoveryCompleted,
    SaveSnapshotFailure,
    SnapshotOffer,
    Tagged,
    register,
)
from persistent_actors.supervision import (
    Backoff,
    DiscardToDeadLetterStrategy,
    ReplyToStrategy,
    ThrowOverflowExceptionStrategy,
)


@register(manifest="tests.failures.Added")
@dataclasses.dataclass(frozen=True)
class Added:
    value: int


@register(manifest="tests.failures.Poison")
@dataclasses.dataclass(frozen=True)
class Poison:
    """An event type the test kit is told to fail or reject."""


@dataclasses.dataclass(frozen=True)
class Fill:
    """Persist, and meanwhile send this actor `extra` messages (from `reply_to`)."""

    extra: int
    reply_to: ActorRef


@dataclasses.dataclass(frozen=True)
class DeleteSnapshotCmd:
    sequence_nr: int


@dataclasses.dataclass(frozen=True)
class DeleteMessagesCmd:
    to_sequence_nr: int


class Reporter(PersistentActor):
    """Persists `Added`/`Poison`; reports recovery, handlers, failures and stops to `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.total = 0

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case Added(value):
                self.total += value
            case SnapshotOffer(snapshot=int(total)):
                self.total = total
            case RecoveryCompleted():
                self.probe.tell(("recovered", self.total, self.last_sequence_nr))

    def on_command(self, message: Any) -> None:
        match message:
            case int():
                self.persist(Added(message), self._added)
            case "poison":
                self.persist(Poison(), lambda _: self.probe.tell("poison handler ran"))
            case "snap":
                self.save_snapshot(self.total)
            case DeleteSnapshotCmd(n):
                self.delete_snapshot(n)
            case DeleteMessagesCmd(n):
                self.delete_messages(n)
            case "total":
                self.probe.tell(("total", self.total, self.last_sequence_nr))
            case Fill(extra, reply_to):
                self.persist(Added(0), lambda _: self.probe.tell("filled"))
                for n in range(extra):
                    self.context.self.tell(("queued", n), sender=reply_to)
            case ("queued", n):
                self.probe.tell(("handled", n))
            case ("burst", tuple(values)):  # one persist_async (one AtomicWrite) per value
                for value in values:
                    if value == "poison":
                        self.persist_async(Poison(), lambda _: self.probe.tell("poison ran"))
                    else:
                        self.persist_async(Added(value), self._added)
            case _:
                self.probe.tell(message)  # SaveSnapshotSuccess and friends

    def _added(self, event: Added) -> None:
        self.total += event.value
        self.probe.tell(("persisted", event.value, self.last_sequence_nr))

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("persist-failed", type(cause).__name__, sequence_nr))

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("rejected", type(cause).__name__, type(event).__name__, sequence_nr))

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", type(cause).__name__))

    def post_stop(self) -> None:
        self.probe.tell("stopped")

    def post_restart(self, reason: BaseException) -> None:
        self.probe.tell(("restarted", type(reason).__name__))
        super().post_restart(reason)


class BackoffReporter(Reporter):
    """Restarted with back-off after a journal failure."""

    backoff = Backoff.on_stop(min_backoff=0.2, max_backoff=1.0, random_factor=0.0)


class TinyStashThrow(Reporter):
    internal_stash_capacity = 2
    internal_stash_overflow_strategy = ThrowOverflowExceptionStrategy()


class TinyStashDrop(Reporter):
    internal_stash_capacity = 2
    internal_stash_overflow_strategy = DiscardToDeadLetterStrategy()


class TinyStashReply(Reporter):
    internal_stash_capacity = 2
    internal_stash_overflow_strategy = ReplyToStrategy("stash full, try later")


def is_one(event: Any) -> bool:
    """Predicate for the test kit: any event whose `n` is 1 (it imports no event class)."""
    return getattr(event, "n", None) == 1


def is_big(event: Any) -> bool:
    """Predicate for the test kit: an `Added` over 100 (module level, so it pickles)."""
    return isinstance(event, Added) and event.value > 100


class FailingPreStart(Reporter):
    """`pre_start` raises: an initialization failure (Akka's ActorInitializationException)."""

    def pre_start(self) -> None:
        self.probe.tell("pre_start")
        raise ValueError("pre_start is broken")


class FailingRecoveryProperty(Reporter):
    """Its `recovery` property raises when recovery starts."""

    @property
    def recovery(self) -> Any:
        raise LookupError("no recovery for you")


class FailingPostRestart(Reporter):
    """Restarts on "boom"; the new instance's `post_restart` raises."""

    def on_command(self, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("boom")
        super().on_command(message)

    def post_restart(self, reason: BaseException) -> None:
        self.probe.tell(("post_restart", type(reason).__name__))
        raise ValueError("post_restart is broken")


@dataclasses.dataclass(frozen=True)
class TaggedPair:
    """Persist `Added(1)`, then `Tagged(Added(2), [tag])`: two writes of one batch."""

    tag: str


class TaggingReporter(Reporter):
    def on_command(self, message: Any) -> None:
        if isinstance(message, TaggedPair):
            self.persist(Added(1), self._added)
            self.persist(Tagged(Added(2), [message.tag]), lambda t: self._added(t.payload))
            return
        super().on_command(message)


class StopInHandler(Reporter):
    """``("stop-in-handler",)``: persist_all([1, 2]); the handler of 1 stops the actor, the
    handler of 2 would persist 3. Then "after" is stashed behind the persist."""

    def on_command(self, message: Any) -> None:
        if message == "stop-in-handler":
            self.persist_all([Added(1), Added(2)], self._handle)
            return
        super().on_command(message)

    def _handle(self, event: Added) -> None:
        self.probe.tell(("handler", event.value))
        if event.value == 1:
            self.context.stop()
        else:
            self.persist(Added(3), self._added)


class PersistAllNone(Reporter):
    """``"none"``: persist_all(None) and persist_all_async(None), then report."""

    def on_command(self, message: Any) -> None:
        if message == "none":
            self.persist_all(None, self._added)
            self.persist_all_async(None, self._added)
            self.probe.tell(("after none", self.last_sequence_nr))
            return
        if message == "str":
            self.persist_all("ab", self._added)  # type: ignore[arg-type]
            return
        super().on_command(message)


class AsyncRaces(Reporter):
    """Akka classic's documented races around `persist_async` (README, defects 7 and 8).

    ``"async-then-pill"``: persist_async(Added(1)), then a PoisonPill to itself.
    ``"async-then-boom"``: persist_async(Added(1)), then "boom" to itself, whose handler
    persists Added(2) and raises while the first write is still in flight.
    ``("async-burst-then-pill", n)``: n commands of one persist_async each, then a PoisonPill.
    ``"persist-then-stop"``: persist(Added(1)), then ``context.stop()`` in the same handler.
    """

    def on_command(self, message: Any) -> None:
        match message:
            case "async-then-pill":
                self.persist_async(Added(1), self._added)
                self.context.self.tell(PoisonPill)
            case "async-then-boom":
                self.persist_async(Added(1), self._added)
                self.context.self.tell("boom")
            case ("async-burst-then-pill", int(count)):  # each its own command, then the pill
                for value in range(1, count + 1):
                    self.context.self.tell(("async", value))
                self.context.self.tell(PoisonPill)
            case ("async", int(value)):
                self.persist_async(Added(value), self._added)
            case ("async-reported", int(value)):
                self.persist_async(Added(value), self._added)
                self.probe.tell(("queued", value))
            case "persist-then-stop":
                self.persist(Added(1), self._added)
                self.context.stop()
            case "boom":
                self.persist(Added(2), self._added)
                raise RuntimeError("boom")
            case _:
                super().on_command(message)


class ProcessReporter(Reporter):
    """Also answers "pid" with its OS process id, and "total?" to the asker."""

    def on_command(self, message: Any) -> None:
        match message:
            case "pid":
                self.sender.tell(os.getpid())
            case "total?":
                self.sender.tell(("total", self.total, self.last_sequence_nr))
            case _:
                super().on_command(message)


_constructions: dict[str, int] = {}  # per persistence id, in the hosting process


class FailingSecondConstructor(Reporter):
    """Restarts on "boom"; its constructor raises from the second construction on."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        super().__init__(pid, probe)
        _constructions[pid] = _constructions.get(pid, 0) + 1
        if _constructions[pid] > 1:
            raise ValueError("constructor is broken now")

    def on_command(self, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("boom")
        super().on_command(message)


class Answerer(PersistentActor):
    """Answers the sender of every failure it is sent, as a first draft of an actor might.

    "snap" saves a snapshot that cannot be serialized, ("delete", n) deletes beyond its last
    sequence number: failures no plugin sees. "seen" answers what it noted: per failure its
    name and whether its sender was the actor itself, and every answer that came back.
    """

    def __init__(self, pid: str) -> None:
        self._pid = pid
        self.seen: list[tuple[str, Any]] = []

    @property
    def persistence_id(self) -> str:
        return self._pid

    def on_command(self, message: Any) -> None:
        match message:
            case "snap":
                self.save_snapshot(object())
            case ("delete", int(to_sequence_nr)):
                self.delete_messages(to_sequence_nr)
            case SaveSnapshotFailure() | DeleteMessagesFailure():
                self.seen.append((type(message).__name__, self.sender == self.self_ref))
                self.sender.tell(("answer", type(message).__name__))
            case ("answer", str(name)):
                self.seen.append(("answer", name))
            case "seen":
                self.sender.tell(list(self.seen))

    def on_recover(self, message: Any) -> None:
        pass


class TellsItsRecoverySender(PersistentActor):
    """Tells ``self.sender`` what recovery hands it; "p" persists, "crash" raises."""

    persistence_id = "tells-its-recovery-sender"

    def on_recover(self, message: Any) -> None:
        self.sender.tell(("recovery sender", "event" if isinstance(message, str) else
                          type(message).__name__))

    def on_command(self, message: Any) -> None:
        match message:
            case "p":
                self.persist("ev", lambda _: self.sender.tell("persisted"))
            case "crash":
                raise RuntimeError("crash")
            case "ping":
                self.sender.tell("pong")


class PersistsOnRejection(Reporter):
    """`on_persist_rejected` persists `Added(100)` (a note that the rejection happened)."""

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        super().on_persist_rejected(cause, event, sequence_nr)
        self.persist(Added(100), self._added)


class PatientBackoffReporter(Reporter):
    """Waits 30 s for its back-off restart: a test stops it while it waits."""

    backoff = Backoff.on_stop(min_backoff=30.0, max_backoff=30.0, random_factor=0.0)


class SlowRecovery(Reporter):
    """Takes 100 ms per replayed `Added`: longer per chunk than the test's recovery timeout."""

    def on_recover(self, message: Any) -> None:
        if isinstance(message, Added):
            time.sleep(0.1)
        super().on_recover(message)


class StopsInRecovery(Reporter):
    """Reports each replayed `Added`; stops itself on the one of value 99."""

    def on_recover(self, message: Any) -> None:
        if isinstance(message, Added):
            self.probe.tell(("replayed", message.value))
            if message.value == 99:
                self.context.stop()
        super().on_recover(message)


class RaisingRecoveryFailureHook(Reporter):
    """`on_recovery_failure` raises after it reported."""

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        super().on_recovery_failure(cause, event)
        raise RuntimeError("the hook itself fails")


class WrongRecoveryType(Reporter):
    """Its `recovery` is no `Recovery` (a mistake found at actor_of, not at recovery)."""

    recovery = "from the start"  # type: ignore[assignment]


class WrongRetentionType(Reporter):
    """Its `retention` is no `RetentionCriteria`."""

    retention = 5  # type: ignore[assignment]


class SecondBackoffReporter(Reporter):
    """Waits 1 s for its back-off restart."""

    backoff = Backoff.on_stop(min_backoff=1.0, max_backoff=1.0, random_factor=0.0)
