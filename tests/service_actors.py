"""Actors for the service-traffic tests (module level, so multiproc-tcp can import them)."""

from __future__ import annotations

import time
from typing import Any

from persistent_actors import Actor


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
