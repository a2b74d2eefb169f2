"""Actors for the service-traffic tests (module level, so multiproc-tcp can import them)."""

from __future__ import annotations

import time
from typing import Any

from persistent_actors import Actor, ActorRef


class Recorder(Actor):
    """Keeps every message it is told, per sender tag; "log" answers with the whole record."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> None:
        """("seq", sender, n) is recorded; "log" replies with the record so far."""
        match message:
            case ("seq", str(), int()):
                self.seen.append(message)
            case "log":
                self.sender.tell(list(self.seen))
            case _:
                self.unhandled(message)


class Slow(Actor):
    """Sleeps `seconds` before answering: a handler that outlasts its asker's timeout."""

    def on_receive(self, message: Any) -> None:
        """("sleep", s) blocks s seconds, then replies "late"; anything else is echoed."""
        match message:
            case ("sleep", float(seconds)):
                time.sleep(seconds)
                self.sender.tell("late")
            case _:
                self.sender.tell(message)


class Flooder(Actor):
    """Tells a target many messages from one handler (they leave as batched frames)."""

    def on_receive(self, message: Any) -> None:
        """("flood", target, tag, n, stop): n ("seq", tag, i) tells, then maybe a stop."""
        match message:
            case ("flood", ActorRef() as target, str(tag), int(count), bool(stop)):
                for n in range(count):
                    target.tell(("seq", tag, n))
                if stop:
                    self.context.stop(target)
                self.sender.tell("sent")
            case _:
                self.unhandled(message)


class LastWords(Recorder):
    """A `Recorder` that tells `witness` everything it recorded when it stops."""

    def __init__(self, witness: ActorRef) -> None:
        super().__init__()
        self._witness = witness

    def post_stop(self) -> None:
        """Its record goes to the witness."""
        self._witness.tell(("final", list(self.seen)))


class Keeper(Actor):
    """Keeps every message; "get" answers with them all."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def on_receive(self, message: Any) -> None:
        """"get" replies with the kept messages; anything else is kept."""
        if message == "get":
            self.sender.tell(list(self.kept))
        else:
            self.kept.append(message)


class RecorderEntity(Recorder):
    """A `Recorder` as an entity (``cls(entity_id)``)."""

    def __init__(self, entity_id: str) -> None:
        super().__init__()
        self.entity_id_seen = entity_id


class Napper(Recorder):
    """A `Recorder` that also sleeps on ("nap", seconds): its process reads nothing meanwhile."""

    def on_receive(self, message: Any) -> None:
        """("nap", seconds) blocks the actor; everything else as `Recorder`."""
        match message:
            case ("nap", float(seconds)):
                time.sleep(seconds)
            case _:
                super().on_receive(message)
