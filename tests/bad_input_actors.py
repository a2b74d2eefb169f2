"""Actors and plugins for the bad-input table (module level: the multiproc base imports them)."""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import ActorRef, PersistentActor, RecoveryCompleted
from persistent_actors.at_least_once import (
    AtLeastOnceDeliveryActor,
    AtLeastOnceDeliverySnapshot,
    UnconfirmedDelivery,
)


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


@dataclasses.dataclass(frozen=True)
class Attempt:
    """Ask `Misuser` to make the bad call named `name` and report what it raised."""

    name: str


class Misuser(AtLeastOnceDeliveryActor):
    """Makes one bad call per `Attempt`; reports ``(name, error class, text)`` or ``(name, None)``.

    The calls run where an actor's code runs (on_command) unless the name says otherwise.
    """

    persistence_id = "misuser"

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_recover(self, message: Any) -> None:
        pass

    def on_command(self, message: Any) -> None:
        if not isinstance(message, Attempt):
            self.probe.tell(("handled", message))
            return
        try:
            self._attempt(message.name)
        except Exception as e:  # reported to the test
            self.probe.tell((message.name, type(e).__name__, str(e)))
            return
        self.probe.tell((message.name, None))

    def _attempt(self, name: str) -> None:
        match name:
            case "persist from a thread":
                errors: list[BaseException] = []

                def persist() -> None:
                    try:
                        self.persist("from a thread", lambda _: None)
                    except Exception as e:  # handed to the actor's thread
                        errors.append(e)

                thread = threading.Thread(target=persist)
                thread.start()
                thread.join()
                if errors:
                    raise errors[0]
            case "defer None after a persist":
                self.persist("event", lambda _: None)
                self.defer("deferred", None)  # type: ignore[arg-type]
            case "delete_snapshot 2**64":
                self.delete_snapshot(2**64)
            case "context.stop(5)":
                self.context.stop(5)  # type: ignore[arg-type]
            case "context.unwatch(name)":
                self.context.unwatch(self.self_ref.name)  # type: ignore[arg-type]
            case "is_timer_active([1])":
                self.timers.is_timer_active([1])  # type: ignore[arg-type]
            case "delivery snapshot id above its counter":
                self.set_delivery_snapshot(AtLeastOnceDeliverySnapshot(
                    0, (UnconfirmedDelivery(1, "dest", "pay 30 EUR"),)))
            case "delivery snapshot counter 'x'":
                self.set_delivery_snapshot(AtLeastOnceDeliverySnapshot(
                    "x", ()))  # type: ignore[arg-type]
            case "become discard_old='no'":
                self.become(self.on_command, discard_old="no")  # type: ignore[arg-type]
            case "ask inside an actor":
                self.probe.ask("hello", timeout=1)
            case _:
                raise AssertionError(name)

    def destination_for(self, name: str) -> ActorRef:
        return self.probe


class SnapshotsInInit(PersistentActor):
    """Saves a snapshot in its constructor, before its persistence_id is known."""

    persistence_id = "snapshots-in-init"

    def __init__(self) -> None:
        self.save_snapshot("too early")

    def on_recover(self, message: Any) -> None:
        pass

    def on_command(self, message: Any) -> None:
        pass
