"""Actors for the asyncio tests (module level, so the multiproc base can import them)."""

from __future__ import annotations

from typing import Any

from persistent_actors import PersistentActor, RecoveryCompleted


class Counter(PersistentActor):
    """``("add", n)`` persists n and answers the new total; ``"total"`` answers the total."""

    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.total = 0

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        if not isinstance(message, RecoveryCompleted):
            self.total += message

    def on_command(self, message: Any) -> None:
        match message:
            case ("add", int(n)):
                self.persist(n, self._added)
            case ("echo", value):
                self.sender.tell(value)
            case "total":
                self.sender.tell(self.total)
            case "silent":
                pass  # never answers: the asker times out

    def _added(self, n: int) -> None:
        self.total += n
        self.sender.tell(self.total)
