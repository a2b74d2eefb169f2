"""Journals and actors for the tests of restarted runtime processes (test_runtime_processes.py).

Module level: the multiproc base imports them in the actor and plugin processes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import Actor, ActorRef
from persistent_actors.journal import AtomicWrite
from persistent_actors.supervision import Backoff
from tests.failure_actors import Reporter


class PidJournal(SqliteJournal):
    """A SQLite journal; its plugin command "pid" answers its process id.

    Declares `concurrent_writers` in its own body: shared hosts write with it themselves.
    """

    def concurrent_writers(self) -> bool:
        return super().concurrent_writers()

    async def receive_plugin_internal(self, message: Any) -> Any:
        if message == "pid":
            return os.getpid()
        return await super().receive_plugin_internal(message)


class StallingJournal(SqliteJournal):
    """Written through its plugin process only; "pid" answers its process id, and after
    "stall" its next write never finishes (its process is killed meanwhile).
    """

    stalls = False

    async def receive_plugin_internal(self, message: Any) -> Any:
        if message == "pid":
            return os.getpid()
        if message == "stall":
            self.stalls = True
            return "stalling"
        return await super().receive_plugin_internal(message)

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        if self.stalls:
            await asyncio.sleep(3600)
        return await super().write_messages(writes)


class Boomer(Reporter):
    """A `Reporter` that raises on "boom" (Akka's default supervision restarts it)."""

    def on_command(self, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("boom")
        super().on_command(message)


class BackoffBoomer(Boomer):
    """Restarted with back-off after a journal failure."""

    backoff = Backoff.on_stop(min_backoff=0.2, max_backoff=1.0, random_factor=0.0)


class Listener(Actor):
    """Subscribes to `str` on the event stream and hands what it gets to `probe`."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def pre_start(self) -> None:
        self.context.system.event_stream.subscribe(self.context.self, str)
        self.probe.tell("subscribed")

    def on_receive(self, message: Any) -> None:
        match message:
            case ("publish", str(text)):  # published from inside an actor
                self.context.system.event_stream.publish(text)
            case "pid":
                self.sender.tell(os.getpid())
            case str():
                self.probe.tell(("got", message))


class Quiet(Actor):
    """Answers "pid" with its process id and nothing else (an ask of anything else waits)."""

    def on_receive(self, message: Any) -> None:
        if message == "pid":
            self.sender.tell(os.getpid())
