"""Actors and plugins for the bad-input table (module level: the multiproc base imports them)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import ActorRef, PersistentActor, RecoveryCompleted


class Recorder(PersistentActor):
    """Persists what it is told (``("persist", event)``) and reports every outcome to `probe`."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.events: list[Any] = []

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        if isinstance(message, RecoveryCompleted):
            self.probe.tell(("recovered", [_summary(e) for e in self.events],
                             self.last_sequence_nr))
        else:
            self.events.append(message)

    def on_command(self, message: Any) -> None:
        match message:
            case ("persist", event):
                self.persist(event, self._persisted)

    def _persisted(self, event: Any) -> None:
        self.events.append(event)
        self.probe.tell(("persisted", _summary(event), self.last_sequence_nr))

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("persist-failed", type(cause).__name__, str(cause), sequence_nr))

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.probe.tell(("rejected", type(cause).__name__, sequence_nr))

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        self.probe.tell(("recovery-failed", type(cause).__name__, str(cause)))

    def post_stop(self) -> None:
        self.probe.tell("stopped")


def _summary(event: Any) -> Any:
    # Large payloads are reported by size, so the probe's messages stay small.
    if isinstance(event, bytes) and len(event) > 1024:
        return ("bytes", len(event), event[:8])
    return event


class FullDiskJournal(SqliteJournal):
    """A SQLite journal whose file may grow by only a few pages: SQLITE_FULL on a big write.

    This is SQLite's own "database or disk is full" path (``PRAGMA max_page_count``), the same
    error a full file system produces, without needing a small mounted file system.
    """

    async def start(self) -> None:
        await super().start()
        writer, _ = self._connections()
        rows = await writer.execute_fetchall("PRAGMA page_count")
        await writer.execute_fetchall(f"PRAGMA max_page_count = {int(rows[0][0]) + 4}")


class Evil:
    """Unpickling this runs code: the payload of the security test."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class DefaultHooks(Recorder):
    """Reports like `Recorder`, then logs with the default `on_recovery_failure`."""

    def on_recovery_failure(self, cause: BaseException, event: Any | None) -> None:
        super().on_recovery_failure(cause, event)
        PersistentActor.on_recovery_failure(self, cause, event)


@dataclasses.dataclass(frozen=True)
class Unregistered:
    """An event class its author forgot to decorate with ``@register``."""

    item: str


class Basket(PersistentActor):
    """Persists an `Unregistered` event for every command but "items", which it answers."""

    persistence_id = "basket-unregistered"

    def __init__(self) -> None:
        self.items: list[str] = []

    def on_command(self, message: Any) -> None:
        if message == "items":
            self.sender.tell(list(self.items))
        else:
            self.persist(Unregistered(str(message)), self._added)

    def _added(self, event: Unregistered) -> None:
        self.items.append(event.item)

    def on_recover(self, message: Any) -> None:
        if isinstance(message, Unregistered):
            self._added(message)
