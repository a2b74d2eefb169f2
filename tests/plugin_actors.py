"""Actors for the plugin-selection tests (module level, so the multiproc base can import them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from journal_plugins.inmem import InmemJournal
from persistent_actors import Actor, ActorRef, PersistentActor, RecoveryCompleted
from persistent_actors.journal import AtomicWrite


class Counter(PersistentActor):
    """Persists every int it is told; reports rejections and its recovered total to `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.total = 0

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case int():
                self.total += message
            case RecoveryCompleted():
                self.probe.tell(("recovered", self.total, self.last_sequence_nr))

    def on_command(self, message: Any) -> None:
        match message:
            case int():
                self.persist(message, self._apply)
            case "total":
                self.probe.tell(("total", self.total))

    def _apply(self, value: int) -> None:
        self.total += value
        self.probe.tell(("persisted", value, self.last_sequence_nr))

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("rejected", type(cause).__name__, event, sequence_nr))


class AuditCounter(Counter):
    """The same actor, stored in the journal configured under the id "audit"."""

    journal_plugin_id = "audit"


class GroupRecordingJournal(InmemJournal):
    """Records how many persistence ids each `write_messages` call carried.

    Class-level, so only meaningful on the simple base, where the plugin runs in-process.
    """

    ids_per_call: ClassVar[list[int]] = []

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Record the call's distinct persistence ids, then store as usual."""
        GroupRecordingJournal.ids_per_call.append(len({w.persistence_id for w in writes}))
        return await super().write_messages(writes)


class Broadcaster(Actor):
    """Tells every ref it is given the value: the tells are queued together."""

    def on_receive(self, message: Any) -> None:
        refs, value = message
        for ref in refs:
            ref.tell(value)


class NeverStarts(InmemJournal):
    """A journal whose start() never returns (a server that accepts and never answers)."""

    async def start(self) -> None:
        await asyncio.sleep(3600)
