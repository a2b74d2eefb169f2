"""Actors for the become/unbecome tests (Akka's BecomeSpec; module level for multiproc)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from persistent_actors import Actor, ActorRef, PersistentActor, RecoveryCompleted


class Mood(Actor):
    """Plain actor switching behaviours (Akka's BecomeSpec): replace or stack, and back."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        self._common(message, "calm")

    def angry(self, message: Any) -> None:
        self._common(message, "angry")

    def happy(self, message: Any) -> None:
        self._common(message, "happy")

    def _common(self, message: Any, mood: str) -> None:
        handlers: dict[str, Callable[[Any], None]] = {"angry": self.angry, "happy": self.happy}
        match message:
            case ("become", str(name)):
                self.become(handlers[name])
            case ("stack", str(name)):
                self.become(handlers[name], discard_old=False)
            case "unbecome":
                self.unbecome()
            case "mood":
                self.probe.tell(mood)
            case "bad":
                self.become(42)  # type: ignore[arg-type]
            case "boom":
                raise ValueError("boom")


class Door(PersistentActor):
    """A persistent actor whose command handler follows its state: open or closed.

    The state is rebuilt by replay, and so is the behaviour: `on_recover` becomes too.
    """

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case "opened":
                self.become(self.when_open)
            case "closed":
                self.unbecome()
            case RecoveryCompleted():
                self.probe.tell(("recovered", self._behavior().__name__))

    def on_command(self, message: Any) -> None:  # closed
        match message:
            case "open":
                def opened(event: str) -> None:
                    self.become(self.when_open)
                    self.probe.tell(event)
                self.persist("opened", opened)
            case "enter":
                self.probe.tell("locked out")
            case "boom":
                raise ValueError("boom")

    def when_open(self, message: Any) -> None:
        match message:
            case "close":
                def closed(event: str) -> None:
                    self.unbecome()
                    self.probe.tell(event)
                self.persist("closed", closed)
            case "enter":
                self.probe.tell("welcome")
            case "boom":
                raise ValueError("boom")


class Toggle(Actor):
    """Akka's idiom: ``Become(Busy)``, back with ``Become(OnReceive)``, the rest handed on."""

    def on_receive(self, message: Any) -> None:
        match message:
            case "go-busy":
                self.become(self.busy)
            case _:
                self.sender.tell(("idle", message))

    def busy(self, message: Any) -> None:
        match message:
            case "go-idle":
                self.become(self.on_receive)  # the class's handler, as Akka's OnReceive
            case "state":
                self.sender.tell("busy")
            case _:
                self.on_receive(message)  # Akka's `default: OnReceive(msg)`


class PersistentToggle(PersistentActor):
    """The same for a persistent actor's on_command."""

    persistence_id = "persistent-toggle"

    def on_recover(self, message: Any) -> None:
        pass

    def on_command(self, message: Any) -> None:
        match message:
            case "go-busy":
                self.become(self.busy)
            case _:
                self.sender.tell(("idle", message))

    def busy(self, message: Any) -> None:
        match message:
            case "go-idle":
                self.become(self.on_command)
            case "state":
                self.sender.tell("busy")
            case _:
                self.on_command(message)
