"""Actor classes shared by the tests (module level, so the multiproc base can import them)."""

from __future__ import annotations

import dataclasses
from typing import Any

from persistent_actors import (
    ActorRef,
    PersistentActor,
    Recovery,
    RecoveryCompleted,
    SnapshotOffer,
    SnapshotSelectionCriteria,
    register,
)

PUT_IN = "담음"
TAKE_OUT = "뺌"


@register(manifest="tests.Cmd")
@dataclasses.dataclass(frozen=True)
class Cmd:
    data: str


@register(manifest="tests.Evt")
@dataclasses.dataclass(frozen=True)
class Evt:
    data: str


@dataclasses.dataclass(frozen=True)
class Shutdown:
    pass


class MyPersistentActor(PersistentActor):
    """The seed test's actor: one event per command; "print" sends the basket count to the probe."""

    persistence_id = "sample-id-1"
    recovery = Recovery(from_snapshot=SnapshotSelectionCriteria.none())

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe
        self.events: list[str] = []

    def _update(self, evt: Evt) -> None:
        self.events.append(evt.data)

    def on_recover(self, message: Any) -> None:
        match message:
            case Evt():
                self._update(message)
            case SnapshotOffer(snapshot=list() as events):
                self.events = events
            case RecoveryCompleted():
                pass

    def on_command(self, message: Any) -> None:
        match message:
            case Cmd(data):
                self.persist(Evt(f"{data}-{len(self.events)}"), self._apply)
            case "snap":
                self.save_snapshot(self.events)
            case "print":
                count = sum(1 if PUT_IN in e else -1 if TAKE_OUT in e else 0 for e in self.events)
                self.probe.tell(count)
            case Shutdown():
                self.context.stop()

    def _apply(self, evt: Evt) -> None:
        self._update(evt)
        self.context.system.event_stream.publish(evt)
