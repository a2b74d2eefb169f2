"""Actors for the one-writer tests (module level: the multiproc base imports them)."""

from __future__ import annotations

from typing import Any, ClassVar

from persistent_actors import ActorRef, PersistentActor, RecoveryCompleted
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

