"""Actors for the one-writer tests (module level: the multiproc base imports them)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from persistent_actors import (
    Actor,
    ActorRef,
    PersistentActor,
    RecoveryCompleted,
    SaveSnapshotSuccess,
    SnapshotOffer,
)
from tests.failure_actors import Added


class History(PersistentActor):
    """Persists `Added(n)` for each int; reports what recovery replayed, in order, to `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.replayed: list[tuple[int, int]] = []  # (value, sequence nr)

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case Added(value):
                self.replayed.append((value, self.last_sequence_nr))
            case RecoveryCompleted():
                self.probe.tell(("recovered", tuple(self.replayed), self.last_sequence_nr))

    def on_command(self, message: Any) -> None:
        match message:
            case int():
                self.persist(Added(message), lambda e: self.probe.tell(
                    ("persisted", e.value, self.last_sequence_nr)))
            case _:
                self.unhandled(message)

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("rejected", type(cause).__name__, sequence_nr))

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", type(cause).__name__))

    def post_stop(self) -> None:
        self.probe.tell(("stopped", self.pid))


class OtherJournalHistory(History):
    """The same, on the journal configured as ``other``."""

    journal_plugin_id: ClassVar[str | None] = "other"


class SlowRecovery(PersistentActor):
    """Reports the window of its recovery from its snapshot offer to RecoveryCompleted.

    On the offer it sleeps `pause` seconds (so unbounded concurrent recoveries would overlap on
    the multi-process base); with `fail`, its RecoveryCompleted handler raises. "boom" makes
    it restart, and so recover again.
    """

    def __init__(self, pid: str, probe: ActorRef, pause: float = 0.0, fail: bool = False) -> None:
        self.pid = pid
        self.probe = probe
        self.pause = pause
        self.fail = fail
        self.started = 0.0

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case SnapshotOffer():
                self.started = time.monotonic()
                time.sleep(self.pause)
            case RecoveryCompleted():
                if self.fail:
                    raise ValueError(f"{self.pid} refuses to recover")
                self.probe.tell(("window", self.pid, self.started, time.monotonic()))

    def on_command(self, message: Any) -> None:
        match message:
            case "snap":
                self.save_snapshot(self.pid)
            case SaveSnapshotSuccess():
                self.probe.tell(("snapped", self.pid))
            case "boom":
                raise ValueError("restart and recover again")
            case _:
                self.unhandled(message)

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", self.pid))

    def post_stop(self) -> None:
        self.probe.tell(("stopped", self.pid))


class Script(Actor):
    """Tells each (ref, message) pair it is given, in order, in one go."""

    def on_receive(self, message: Any) -> None:
        for ref, value in message:
            ref.tell(value)
