"""Actors, messages and a journal plugin for the PersistentActor behaviour tests.

Everything lives at module level so the multiproc-tcp base can import and pickle it. Messages
are frozen dataclasses. Stored events are plain msgpack values (mostly str) or `@register`ed
dataclasses. The actors report what happens by telling the TestProbe ref they are given; the
tests then `expect_msg` those reports in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from journal_plugins.inmem import InmemJournal
from persistent_actors import (
    ActorRef,
    ActorSystem,
    IllegalActorStateError,
    InvalidActorNameError,
    JournalError,
    Kill,
    PersistentActor,
    PoisonPill,
    Recovery,
    RecoveryCompleted,
    SnapshotOffer,
    SnapshotSelectionCriteria,
    register,
)
from persistent_actors._serialization import default_serializer
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.messages import (
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    DeleteSnapshotFailure,
    DeleteSnapshotsFailure,
    DeleteSnapshotsSuccess,
    DeleteSnapshotSuccess,
    SaveSnapshotFailure,
    SaveSnapshotSuccess,
)
from persistent_actors.testing import TestProbe

# -- stored events ---------------------------------------------------------------------------


@register(manifest="tests.pa.ItemAdded")
@dataclasses.dataclass(frozen=True)
class ItemAdded:
    """A registered dataclass event (the others are plain strings)."""

    item: str
    quantity: int


@dataclasses.dataclass(frozen=True)
class Unregistered:
    """Not registered with the serializer: persisting it must be rejected."""

    value: int


# -- reports: actor -> probe -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Replayed:
    """on_recover got `event`, with `sequence_nr` = last_sequence_nr at that moment."""

    event: Any
    sequence_nr: int


@dataclasses.dataclass(frozen=True)
class Offered:
    """on_recover got a SnapshotOffer for `sequence_nr` holding `snapshot` (as a tuple)."""

    sequence_nr: int
    snapshot: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Recovered:
    """on_recover got RecoveryCompleted; the state and last_sequence_nr at that moment."""

    last_sequence_nr: int
    events: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Persisted:
    """A persist handler ran for `event`, with last_sequence_nr = `sequence_nr`."""

    event: Any
    sequence_nr: int


@dataclasses.dataclass(frozen=True)
class Rejected:
    """on_persist_rejected was called (types by name: a lambda event cannot be pickled)."""

    event_type: str
    sequence_nr: int
    cause_type: str


@dataclasses.dataclass(frozen=True)
class PersistFailed:
    """on_persist_failure was called."""

    event: Any
    sequence_nr: int
    cause_type: str


@dataclasses.dataclass(frozen=True)
class RecoveryFailed:
    """on_recovery_failure was called (`event` is the replayed event, if any)."""

    cause: str
    event: Any


@dataclasses.dataclass(frozen=True)
class Refused:
    """`operation` raised IllegalActorStateError with `message` (persist during replay)."""

    operation: str
    message: str


@dataclasses.dataclass(frozen=True)
class State:
    """Reply to GetState."""

    events: tuple[Any, ...]
    last_sequence_nr: int


@dataclasses.dataclass(frozen=True)
class Restarting:
    """pre_restart ran because of `reason`."""

    reason: str


@dataclasses.dataclass(frozen=True)
class Stopped:
    """post_stop ran."""

    persistence_id: str


@dataclasses.dataclass(frozen=True)
class Published:
    """Published on the event stream by a persist handler."""

    data: str


@dataclasses.dataclass(frozen=True)
class PublishedSub(Published):
    """A subclass of Published: subscribers of Published receive it too."""


@dataclasses.dataclass(frozen=True)
class Marker:
    """Published right after a Published, to tell the test the stream handled both."""

    data: str


# -- commands ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Persist:
    """persist(event); the handler reports Persisted to the probe."""

    event: Any


@dataclasses.dataclass(frozen=True)
class PersistAsync:
    """persist_async(event); the handler reports Persisted to the probe."""

    event: Any


@dataclasses.dataclass(frozen=True)
class PersistEach:
    """One persist call per event; reports "after-persist" right after the calls."""

    events: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class PersistAll:
    """persist_all(events); reports "after-persist-all" right after the call."""

    events: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class PersistReply:
    """persist(event) (or persist_async); the handler replies Persisted to ``self.sender``."""

    event: Any
    asynchronous: bool = False


@dataclasses.dataclass(frozen=True)
class PersistAsyncThenRelay:
    """persist_async(first) replying to our sender, then send ourselves, on behalf of
    `second_sender`, PersistReply(second, asynchronous=True): it is handled before the first
    handler runs, so that handler must not use the latest command's sender."""

    first: str
    second: str
    second_sender: ActorRef


@dataclasses.dataclass(frozen=True)
class GetState:
    """Reply State to the sender."""


@dataclasses.dataclass(frozen=True)
class Ping:
    """Report "ping-<n>" to the probe (a command that persists nothing)."""

    n: int


@dataclasses.dataclass(frozen=True)
class PersistThenPing:
    """persist(event), then tell ourselves Ping(n) for each n: they arrive while pending."""

    event: Any
    pings: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Nested:
    """Akka's NestedPersists docs example; every step is replied to the sender."""

    c: str


@dataclasses.dataclass(frozen=True)
class MixedSyncAsyncSync:
    """persist, persist_async, persist (Akka's AsyncPersistAndPersistMixedSyncAsyncSyncActor)."""

    c: str


@dataclasses.dataclass(frozen=True)
class PersistAsyncEach:
    """Reply the command at once, then persist_async each event, replying from each handler."""

    c: str
    events: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DeferNow:
    """defer_async with nothing pending, then reply "after-<c>"."""

    c: str


@dataclasses.dataclass(frozen=True)
class DeferWithPersist:
    """defer_async, persist, defer_async, defer_async (Akka's DeferringWithPersistActor)."""

    c: str


@dataclasses.dataclass(frozen=True)
class DeferMixed:
    """persist, persist_async, defer_async x2, persist_async, defer_async (Akka's PPADDPAD)."""

    c: str


@dataclasses.dataclass(frozen=True)
class PendingThenPoke:
    """Leave something pending (per `mode`), then tell ourselves Poke(gate).

    Modes: "persist", "persist_async", "defer" (persist_async then defer) and "defer_async"
    (persist_async then defer_async). The handlers report their event strings.
    """

    c: str
    mode: str
    gate: str | None = None


@dataclasses.dataclass(frozen=True)
class Poke:
    """Report "poke-<c>" and open `gate` (if any)."""

    c: str
    gate: str | None = None


@dataclasses.dataclass(frozen=True)
class Snap:
    """save_snapshot(list of events)."""


@dataclasses.dataclass(frozen=True)
class DeleteEvents:
    """delete_messages(to_sequence_nr)."""

    to_sequence_nr: int


@dataclasses.dataclass(frozen=True)
class DeleteSnap:
    """delete_snapshot(sequence_nr)."""

    sequence_nr: int


@dataclasses.dataclass(frozen=True)
class DeleteSnaps:
    """delete_snapshots(criteria)."""

    criteria: SnapshotSelectionCriteria


@dataclasses.dataclass(frozen=True)
class Boom:
    """Raise from on_command."""


@dataclasses.dataclass(frozen=True)
class PersistThenBoom:
    """persist(event), then raise from on_command."""

    event: Any


@dataclasses.dataclass(frozen=True)
class BoomInHandler:
    """persist(event) with a handler that reports "handler-<event>" and raises."""

    event: str


@dataclasses.dataclass(frozen=True)
class PersistUnserializable:
    """persist an event the serializer refuses: kind "lambda" or "unregistered"."""

    kind: str


@dataclasses.dataclass(frozen=True)
class PersistAllWithBad:
    """persist_all([event, Unregistered(0)]): one AtomicWrite holding a bad event."""

    event: str


@dataclasses.dataclass(frozen=True)
class PersistThenPoison:
    """persist(event), then tell ourselves PoisonPill."""

    event: Any


@dataclasses.dataclass(frozen=True)
class PersistThenKill:
    """persist(event), then tell ourselves Kill; post_stop opens `gate`."""

    event: Any
    gate: str | None = None


@dataclasses.dataclass(frozen=True)
class PublishEvent:
    """persist(data); the handler publishes Published (or PublishedSub), then Marker."""

    data: str
    sub: bool = False


@dataclasses.dataclass(frozen=True)
class ManyKinds:
    """persist, persist_all (2), persist_async, defer_async, persist: all in one handler."""

    c: str


@dataclasses.dataclass(frozen=True)
class PersistAsyncThenSelf:
    """persist_async(first), then tell ourselves Persist(second): two consecutive batches."""

    first: str
    second: str


# -- gates: hold journal writes of one persistence id ------------------------------------------

GATE_TIMEOUT = 10.0  # a gate left closed by a broken runtime delays, never hangs, the test


def gate_path(directory: Path | str, persistence_id: str) -> Path:
    """The file whose existence holds writes of `persistence_id` in a RecordingJournal."""
    return Path(directory) / f"{persistence_id}.closed"


def close_gate(directory: Path | str, persistence_id: str) -> str:
    """Hold writes of `persistence_id` until the gate is opened; return the gate's path."""
    path = gate_path(directory, persistence_id)
    path.touch()
    return str(path)


def set_switch(directory: Path | str, persistence_id: str, switch: str) -> None:
    """Make a RecordingJournal fail for `persistence_id`: "fail-write" or "fail-replay"."""
    (Path(directory) / f"{persistence_id}.{switch}").touch()


def clear_switch(directory: Path | str, persistence_id: str, switch: str) -> None:
    """Undo `set_switch`."""
    (Path(directory) / f"{persistence_id}.{switch}").unlink(missing_ok=True)


def open_gate(path: str | None) -> None:
    """Let held writes through (called by the actor under test at the decisive moment)."""
    if path is not None:
        Path(path).unlink(missing_ok=True)


# -- the main test actor -----------------------------------------------------------------------


class Journaled(PersistentActor):
    """A persistent actor whose state is the list of its events; reports everything.

    The persistence id and the recovery come from constructor arguments.
    """

    def __init__(self, persistence_id: str, probe: ActorRef, recovery: Recovery | None = None,
                 *, accept_snapshots: bool = True, quiet: bool = False) -> None:
        self._pid = persistence_id
        self._recovery = recovery if recovery is not None else Recovery()
        self.probe = probe
        self.accept_snapshots = accept_snapshots
        self.quiet = quiet
        self.events: list[Any] = []
        self.gate: str | None = None

    @property
    def persistence_id(self) -> str:
        return self._pid

    @property
    def recovery(self) -> Recovery:
        return self._recovery

    # -- recovery ------------------------------------------------------------------------------
    def on_recover(self, message: Any) -> None:
        match message:
            case SnapshotOffer(metadata=md, snapshot=snapshot):
                self.probe.tell(Offered(md.sequence_nr, tuple(snapshot)))
                if self.accept_snapshots:
                    self.events = list(snapshot)
                else:
                    self.unhandled(message)
            case RecoveryCompleted():
                self.probe.tell(Recovered(self.last_sequence_nr, tuple(self.events)))
            case _:
                self.events.append(message)
                if not self.quiet:
                    self.probe.tell(Replayed(message, self.last_sequence_nr))

    # -- handlers ------------------------------------------------------------------------------
    def _report(self, event: Any) -> None:
        self.events.append(event)
        self.probe.tell(Persisted(event, self.last_sequence_nr))

    def _reply(self, event: Any) -> None:
        self.events.append(event)
        self.sender.tell(Persisted(event, self.last_sequence_nr))

    def _say(self, event: Any) -> None:
        """Apply `event` and report its string to the probe (ordering tests)."""
        self.events.append(event)
        self.probe.tell(event)

    def _reply_str(self, event: Any) -> None:
        """Reply the event itself to the sender (Akka-style ordering tests)."""
        self.sender.tell(event)

    def _reply_with_seq(self, event: Any) -> None:
        self.events.append(event)
        self.sender.tell(f"{event}-{self.last_sequence_nr}")

    # -- commands ------------------------------------------------------------------------------
    def on_command(self, message: Any) -> None:
        match message:
            case Persist(event):
                self.persist(event, self._report)
            case PersistAsync(event):
                self.persist_async(event, self._report)
            case PersistEach(events):
                for event in events:
                    self.persist(event, self._report)
                self.probe.tell("after-persist")
            case PersistAll(events):
                self.persist_all(events, self._report)
                self.probe.tell("after-persist-all")
            case PersistReply(event, asynchronous):
                if asynchronous:
                    self.persist_async(event, self._reply)
                else:
                    self.persist(event, self._reply)
            case PersistAsyncThenRelay(first, second, second_sender):
                self.persist_async(first, self._reply)
                self.self_ref.tell(PersistReply(second, asynchronous=True), sender=second_sender)
            case GetState():
                self.sender.tell(State(tuple(self.events), self.last_sequence_nr))
            case Ping(n):
                self.probe.tell(f"ping-{n}")
            case PersistThenPing(event, pings):
                self.persist(event, self._report)
                for n in pings:
                    self.self_ref.tell(Ping(n))
            case Nested(c):
                self._nested(c)
            case MixedSyncAsyncSync(c):
                self.sender.tell(c)
                self.persist(f"{c}-e1", self._reply_with_seq)
                self.persist_async(f"{c}-ea2", self._reply_with_seq)
                self.persist(f"{c}-e3", self._reply_with_seq)
            case PersistAsyncEach(c, events):
                self.sender.tell(c)
                for event in events:
                    self.persist_async(event, self._reply_with_seq)
            case DeferNow(c):
                self.defer_async(f"d-{c}", self._reply_str)
                self.sender.tell(f"after-{c}")
            case DeferWithPersist(c):
                self.defer_async(f"d-{c}-1", self._reply_str)
                self.persist(f"p-{c}-2", self._reply_str)
                self.defer_async(f"d-{c}-3", self._reply_str)
                self.defer_async(f"d-{c}-4", self._reply_str)
            case DeferMixed(c):
                self.persist(f"p-{c}-1", self._reply_str)
                self.persist_async(f"pa-{c}-2", self._reply_str)
                self.defer_async(f"d-{c}-3", self._reply_str)
                self.defer_async(f"d-{c}-4", self._reply_str)
                self.persist_async(f"pa-{c}-5", self._reply_str)
                self.defer_async(f"d-{c}-6", self._reply_str)
            case PendingThenPoke(c, mode, gate):
                self._pending_then_poke(c, mode, gate)
            case Poke(c, gate):
                open_gate(gate)
                self.probe.tell(f"poke-{c}")
            case Snap():
                self.save_snapshot(list(self.events))
            case DeleteEvents(to):
                self.delete_messages(to)
            case DeleteSnap(seq):
                self.delete_snapshot(seq)
            case DeleteSnaps(criteria):
                self.delete_snapshots(criteria)
            case (SaveSnapshotSuccess() | SaveSnapshotFailure() | DeleteMessagesSuccess()
                  | DeleteMessagesFailure() | DeleteSnapshotSuccess() | DeleteSnapshotFailure()
                  | DeleteSnapshotsSuccess() | DeleteSnapshotsFailure()):
                self.probe.tell(message)
            case Boom():
                raise RuntimeError("boom in on_command")
            case PersistThenBoom(event):
                self.persist(event, self._report)
                raise RuntimeError(f"boom after persisting {event!r}")
            case BoomInHandler(event):
                self.persist(event, self._boom_handler)
            case PersistUnserializable(kind):
                bad: Any = (lambda: None) if kind == "lambda" else Unregistered(1)
                self.persist(bad, self._report)
            case PersistAllWithBad(event):
                self.persist_all([event, Unregistered(0)], self._report)
            case PersistThenPoison(event):
                self.persist(event, self._report)
                self.self_ref.tell(PoisonPill)
            case PersistThenKill(event, gate):
                self.gate = gate
                self.persist(event, self._report)
                self.self_ref.tell(Kill)
            case PublishEvent(data, sub):
                self.persist(data, self._publish_sub if sub else self._publish)
            case ManyKinds(c):
                self.persist(f"{c}-1", self._say)
                self.persist_all([f"{c}-2", f"{c}-3"], self._say)
                self.persist_async(f"{c}-4", self._say)
                self.defer_async(f"{c}-deferred", self._say)
                self.persist(f"{c}-5", self._say)
            case PersistAsyncThenSelf(first, second):
                self.persist_async(first, self._report)
                self.self_ref.tell(Persist(second))
            case _:
                self.unhandled(message)

    def _nested(self, c: str) -> None:
        self.sender.tell(c)

        def outer(n: int) -> Any:
            def handler(event: str) -> None:
                self.sender.tell(event)
                self.persist(f"{c}-inner-{n}", self._reply_str)

            return handler

        self.persist(f"{c}-outer-1", outer(1))
        self.persist(f"{c}-outer-2", outer(2))

    def _pending_then_poke(self, c: str, mode: str, gate: str | None) -> None:
        match mode:
            case "persist":
                self.persist(f"p-{c}", self._say)
            case "persist_async":
                self.persist_async(f"pa-{c}", self._say)
            case "defer":
                self.persist_async(f"pa-{c}", self._say)
                self.defer(f"d-{c}", self._say)
            case "defer_async":
                self.persist_async(f"pa-{c}", self._say)
                self.defer_async(f"d-{c}", self._say)
            case _:
                raise ValueError(f"unknown mode {mode!r}")
        self.self_ref.tell(Poke(c, gate))

    def _boom_handler(self, event: str) -> None:
        self.probe.tell(f"handler-{event}")
        raise RuntimeError(f"boom in the handler of {event!r}")

    def _publish(self, data: str) -> None:
        self.events.append(data)
        self.context.system.event_stream.publish(Published(data))
        self.context.system.event_stream.publish(Marker(data))

    def _publish_sub(self, data: str) -> None:
        self.events.append(data)
        self.context.system.event_stream.publish(PublishedSub(data))
        self.context.system.event_stream.publish(Marker(data))

    # -- failures and lifecycle ----------------------------------------------------------------
    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(Rejected(type(event).__name__, sequence_nr, type(cause).__name__))

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(PersistFailed(event, sequence_nr, type(cause).__name__))

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(RecoveryFailed(str(cause), event))

    def pre_restart(self, reason: BaseException, message: Any) -> None:
        self.probe.tell(Restarting(str(reason)))

    def post_stop(self) -> None:
        open_gate(self.gate)
        self.probe.tell(Stopped(self._pid))


class NamesWhatFailed(Journaled):
    """Reports the message its pre_restart is given: ("pre_restart", type name)."""

    def pre_restart(self, reason: BaseException, message: Any) -> None:
        self.probe.tell(("pre_restart", type(message).__name__))


class PersistsOnRecovery(Journaled):
    """Persists "started-<n>" from its RecoveryCompleted handler (n = events recovered + 1)."""

    def on_recover(self, message: Any) -> None:
        super().on_recover(message)
        if isinstance(message, RecoveryCompleted):
            self.persist(f"started-{len(self.events) + 1}", self._report)


class PersistsDuringReplay(Journaled):
    """Tries persist, persist_all and defer_async for every replayed event; reports refusals."""

    def on_recover(self, message: Any) -> None:
        if isinstance(message, str):
            attempts: list[tuple[str, Any]] = [
                ("persist", lambda: self.persist("nope", self._report)),
                ("persist_all", lambda: self.persist_all(["nope"], self._report)),
                ("persist_async", lambda: self.persist_async("nope", self._report)),
                ("defer_async", lambda: self.defer_async("nope", self._report)),
            ]
            for operation, attempt in attempts:
                try:
                    attempt()
                except IllegalActorStateError as e:
                    self.probe.tell(Refused(operation, str(e)))
                else:
                    self.probe.tell(Refused(operation, "NOT REFUSED"))
        super().on_recover(message)


class FailsOnReplay(Journaled):
    """on_recover raises for the event "bad"."""

    def on_recover(self, message: Any) -> None:
        if message == "bad":
            raise ValueError("cannot apply 'bad'")
        super().on_recover(message)


# -- actors that cannot be created --------------------------------------------------------------


class NoPersistenceId(PersistentActor):
    """Forgets to set persistence_id."""

    def on_command(self, message: Any) -> None:
        self.unhandled(message)

    def on_recover(self, message: Any) -> None:
        pass


class EmptyPersistenceId(NoPersistenceId):
    """Sets persistence_id to the empty string."""

    persistence_id = ""


class FailingConstructor(PersistentActor):
    """Its constructor raises."""

    persistence_id = "failing-constructor"

    def __init__(self, why: str) -> None:
        raise ValueError(f"constructor refuses: {why}")

    def on_command(self, message: Any) -> None:
        self.unhandled(message)

    def on_recover(self, message: Any) -> None:
        pass


# -- a journal that records its write_messages calls and can hold writes -------------------------

RECORD_PID = "journal-record"
"""Replaying this persistence id from a RecordingJournal yields one event per write call."""


class RecordingJournal(InmemJournal):
    """Plugin API: InmemJournal that records every write_messages call and can hold writes.

    Observations are read back through the journal itself, so they cross processes on
    multiproc-tcp: replaying `RECORD_PID` yields one event per `write_messages` call, a list of
    ``[persistence_id, [sequence_nr, ...]]`` per AtomicWrite (see `read_journal_record`).

    Setting ``gate_dir``: a write of persistence id P waits while ``<gate_dir>/P.closed``
    exists (at most `GATE_TIMEOUT` seconds), so a test can keep a write pending until the actor
    under test has done something. If ``P.fail-write`` exists, the next write_messages call
    holding P raises (every write of the call fails) and removes the file; while
    ``P.fail-replay`` exists, replaying P raises.
    """

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        own = dict(settings or {})
        gate_dir = own.pop("gate_dir", None)
        super().__init__(own)
        self._gate_dir = Path(gate_dir) if gate_dir else None
        self._calls: list[list[list[Any]]] = []

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Plugin API: wait for closed gates, record the call, then store as InmemJournal."""
        await self._wait_for_gates(writes)
        for pid in {w.persistence_id for w in writes}:
            if self._switched(pid, "fail-write"):
                clear_switch(self._gate_dir or "", pid, "fail-write")  # one shot
                raise JournalError(f"simulated write failure for {pid!r}")
        self._calls.append([[w.persistence_id, [r.sequence_nr for r in w.payload]]
                            for w in writes])
        return await super().write_messages(writes)

    def _switched(self, persistence_id: str, switch: str) -> bool:
        return (self._gate_dir is not None
                and (self._gate_dir / f"{persistence_id}.{switch}").exists())

    async def _wait_for_gates(self, writes: Sequence[AtomicWrite]) -> None:
        if self._gate_dir is None:
            return
        deadline = time.monotonic() + GATE_TIMEOUT
        for pid in {w.persistence_id for w in writes}:
            gate = gate_path(self._gate_dir, pid)
            while gate.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)

    async def replay_messages(
        self, persistence_id: str, from_sequence_nr: int, to_sequence_nr: int, max_count: int
    ) -> AsyncIterator[PersistentRepr]:
        """Plugin API: the recorded calls for RECORD_PID, else as InmemJournal."""
        if self._switched(persistence_id, "fail-replay"):
            raise JournalError(f"simulated replay failure for {persistence_id!r}")
        if persistence_id != RECORD_PID:
            async for repr_ in super().replay_messages(
                    persistence_id, from_sequence_nr, to_sequence_nr, max_count):
                yield repr_
            return
        last = min(to_sequence_nr, len(self._calls), from_sequence_nr - 1 + max_count)
        for nr in range(from_sequence_nr, last + 1):
            manifest, payload = default_serializer.to_binary(self._calls[nr - 1])
            yield PersistentRepr(RECORD_PID, nr, manifest, payload)

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Plugin API: the number of recorded calls for RECORD_PID, else as InmemJournal."""
        if persistence_id == RECORD_PID:
            return len(self._calls)
        return await super().read_highest_sequence_nr(persistence_id, from_sequence_nr)


WriteCall = tuple[tuple[str, tuple[int, ...]], ...]


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """The write_messages calls a RecordingJournal saw: per call, (pid, sequence_nrs) per write."""

    calls: tuple[WriteCall, ...]

    def writes_of(self, persistence_id: str) -> list[list[tuple[int, ...]]]:
        """Per call that stored something for `persistence_id`: its AtomicWrites' numbers."""
        result = []
        for call in self.calls:
            writes = [seqs for pid, seqs in call if pid == persistence_id]
            if writes:
                result.append(writes)
        return result


class JournalRecordReader(PersistentActor):
    """Recovers RECORD_PID, reports the JournalRecord to the probe, and stops."""

    persistence_id = RECORD_PID
    recovery = Recovery(from_snapshot=SnapshotSelectionCriteria.none())

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe
        self.calls: list[WriteCall] = []

    def on_recover(self, message: Any) -> None:
        if isinstance(message, RecoveryCompleted):
            self.probe.tell(JournalRecord(tuple(self.calls)))
            self.context.stop()
        else:
            self.calls.append(tuple((pid, tuple(seqs)) for pid, seqs in message))

    def on_command(self, message: Any) -> None:
        self.unhandled(message)


def read_journal_record(system: ActorSystem) -> JournalRecord:
    """What the system's RecordingJournal has seen so far."""
    probe = TestProbe(system)
    system.actor_of(JournalRecordReader, probe.ref)
    record: JournalRecord = probe.expect_msg_type(JournalRecord, timeout=5)
    return record


# -- helpers for the tests ----------------------------------------------------------------------


def spawn(system: ActorSystem, persistence_id: str, probe: TestProbe,
          cls: type[Journaled] = Journaled, **kwargs: Any) -> ActorRef:
    """Create a `cls` named after its persistence id (so a respawn reuses the name).

    A respawn right after `kill` may still find the name taken for a moment: the host runs
    post_stop (our "it stopped" signal) before it tells the guardian it is stopping, and the
    two messages travel on different connections. So a name conflict is retried (each attempt
    is a round trip to the guardian) until a deadline (generous: the guardian can be slow to
    hear on a loaded machine), after which it is raised.
    """
    deadline = time.monotonic() + 20.0
    while True:
        try:
            return system.actor_of(cls, persistence_id, probe.ref, name=persistence_id,
                                   **kwargs)
        except InvalidActorNameError:
            if time.monotonic() > deadline:
                raise


def kill(ref: ActorRef, probe: TestProbe, persistence_id: str) -> None:
    """Kill the actor and wait until its post_stop has reported."""
    ref.tell(Kill)
    probe.expect_msg(Stopped(persistence_id))


def persist_events(ref: ActorRef, probe: TestProbe, events: Sequence[Any],
                   first_sequence_nr: int = 1) -> None:
    """Persist `events` one command each and wait for every handler."""
    for event in events:
        ref.tell(Persist(event))
    for i, event in enumerate(events):
        probe.expect_msg(Persisted(event, first_sequence_nr + i))


def respawn(system: ActorSystem, ref: ActorRef, persistence_id: str, probe: TestProbe,
            cls: type[Journaled] = Journaled, **kwargs: Any) -> ActorRef:
    """Kill the actor, then create it again under the same name."""
    kill(ref, probe, persistence_id)
    return spawn(system, persistence_id, probe, cls, **kwargs)
