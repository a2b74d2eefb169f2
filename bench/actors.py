"""The actors the benchmark drives: Akka's JournalPerfSpec ``BenchActor`` and a driver.

They live in an importable module, not in ``__main__``, so they would also run on the
multi-process base.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from persistent_actors import (
    Actor,
    ActorRef,
    PersistentActor,
    RecoveryCompleted,
    SnapshotOffer,
    register,
)

BATCH_SIZE = 50  # JournalPerfSpec's batch for the persist_all modes


@register(manifest="bench.Evt")
@dataclasses.dataclass(frozen=True, slots=True)
class Evt:
    """The stored event: a counter and a short text, like the peer benchmark's ``ItemAdded``."""

    nr: int
    name: str


def event(nr: int) -> Evt:
    """The `nr`-th event of a bench actor (the same bytes whoever writes it)."""
    return Evt(nr, f"item-{nr % 100_000:05d}")


@dataclasses.dataclass(frozen=True, slots=True)
class Cmd:
    """One command: `mode` is p, pb, pa or pba (JournalPerfSpec's modes)."""

    mode: str
    nr: int


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """A bench actor handled the event it was told to report."""

    counter: int


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """Driver: send ``Cmd(mode, 1..commands)`` to every target, interleaved like Broadcast."""

    targets: tuple[ActorRef, ...]
    mode: str
    commands: int


class BenchActor(PersistentActor):
    """Persists one event per command and checks that events arrive in order.

    Like Akka's ``BenchActor``: a handled or replayed event must equal ``counter + 1``,
    and the actor tells its command's sender `Finished` when it handled event `report_at`.
    """

    def __init__(self, pid: str, report_at: int) -> None:
        self._pid = pid
        self.report_at = report_at
        self.counter = 0
        self.batch: list[Evt] = []

    @property
    def persistence_id(self) -> str:
        """One stream per actor."""
        return self._pid

    def _check(self, evt: Evt) -> None:
        if evt.nr != self.counter + 1:
            raise AssertionError(f"{self._pid}: expected event {self.counter + 1}, got {evt.nr}")
        self.counter = evt.nr

    def _apply(self, evt: Evt) -> None:
        self._check(evt)
        if evt.nr == self.report_at:
            self.sender.tell(Finished(self.counter))

    def on_recover(self, message: Any) -> None:
        """Check each replayed event's order; take the counter from a snapshot."""
        match message:
            case Evt():
                self._check(message)
            case SnapshotOffer(snapshot=int(counter)):
                self.counter = counter
            case RecoveryCompleted():
                pass

    def on_command(self, message: Any) -> None:
        """Persist per the command's mode; answer "counter" with the events handled."""
        match message:
            case Cmd("p", nr):
                self.persist(event(nr), self._apply)
            case Cmd("pa", nr):
                self.persist_async(event(nr), self._apply)
            case Cmd("pb" | "pba" as mode, nr):
                self.batch.append(event(nr))
                if len(self.batch) == BATCH_SIZE or nr == self.report_at:
                    batch, self.batch = self.batch, []
                    if mode == "pb":
                        self.persist_all(batch, self._apply)
                    else:
                        self.persist_all_async(batch, self._apply)
            case "counter":
                self.sender.tell(self.counter)
            case _:
                self.unhandled(message)


class Driver(Actor):
    """Sends a `Run`'s commands from inside the system and answers when all targets finished.

    Akka's spec tells the commands from its test probe and the actor's mailbox fills up while
    it works. On the simple base an external ``tell`` runs the actors to completion before it
    returns, which would serialise every workload; sending from an actor queues them instead.
    """

    def __init__(self) -> None:
        self.waiting = 0
        self.requester: ActorRef | None = None

    def on_receive(self, message: Any) -> None:
        """Start a `Run`, or count a `Finished`."""
        match message:
            case Run(targets, mode, commands):
                self.requester = self.sender
                self.waiting = len(targets)
                for nr in range(1, commands + 1):
                    for target in targets:
                        target.tell(Cmd(mode, nr))
            case Finished():
                self.waiting -= 1
                if self.waiting == 0 and self.requester is not None:
                    self.requester.tell("done")
            case _:
                self.unhandled(message)
