"""Child process of the crash torture: persistent actors persisting until killed.

``python -m tests.torture_writer STORE REPORT ACTORS``: STORE is an SQLite file or
``postgres:<schema>``. Each actor persists groups of 1..4 events
with ``persist_all`` (one atomic write per group) for ever. After a handler ran, it appends
``"<persistence_id> <sequence_nr>"`` to REPORT with a single O_APPEND write: the observer outside
this process learns of an event only once the runtime acknowledged it. The parent kills this
process with SIGKILL at a random moment.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

from persistent_actors import (
    Actor,
    ActorSystem,
    PersistentActor,
    RecoveryCompleted,
    SnapshotOffer,
)
from tests.pg import DSN as PG_DSN

SNAPSHOT_EVERY = 500  # events per actor between snapshots


class TortureActor(PersistentActor):
    """Persists event groups continuously; tells itself to go on after each group."""

    def __init__(self, pid: str, report_path: str) -> None:
        self.pid = pid
        self.report = os.open(report_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.group = 0
        self.snapshot_sequence_nr_seen = 0
        self.random = random.Random(f"{pid}-{time.time_ns()}")

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case SnapshotOffer(snapshot={"g": int(group)}):
                self.group = group
            case {"g": int(group)}:
                self.group = max(self.group, group)
            case RecoveryCompleted():
                self.snapshot_sequence_nr_seen = self.last_sequence_nr // SNAPSHOT_EVERY

    def on_command(self, message: Any) -> None:
        if message == "go":
            self.group += 1
            size = self.random.randint(1, 4)
            events = [{"g": self.group, "i": i, "n": size} for i in range(size)]
            self.persist_all(events, self._acknowledged)

    def _acknowledged(self, event: dict[str, int]) -> None:
        os.write(self.report, f"{self.pid} {self.last_sequence_nr}\n".encode())
        if event["i"] == event["n"] - 1:
            # A snapshot now and then keeps each restart's recovery short, so a long torture
            # run does not slow down as the journal grows (and snapshots are exercised too).
            if self.last_sequence_nr // SNAPSHOT_EVERY > self.snapshot_sequence_nr_seen:
                self.snapshot_sequence_nr_seen = self.last_sequence_nr // SNAPSHOT_EVERY
                self.save_snapshot({"g": self.group})
            self.context.self.tell("go")

    def post_stop(self) -> None:
        os.close(self.report)


class Kickoff(Actor):
    """Tells every ref it is given to "go"."""

    def on_receive(self, message: Any) -> None:
        for ref in message:
            ref.tell("go")


def main(store: str, report: str, actors: int) -> None:
    """`store` is an SQLite file, or ``postgres:<schema>`` on the tests' PostgreSQL server."""
    if store.startswith("postgres:"):
        settings = {"plugin": "postgres", "dsn": PG_DSN, "schema": store.removeprefix("postgres:")}
    else:
        settings = {"plugin": "sqlite", "path": store}
    config = {"persistence": {"journal": settings, "snapshot_store": settings}}
    system = ActorSystem("torture", config=config)
    refs = [system.actor_of(TortureActor, f"torture-{n}", report) for n in range(actors)]
    print("started", flush=True)
    # On the simple base a tell from outside runs actors until they are idle, which these
    # never are: so the first outside tell would never return. One actor tells them all.
    # On the simple base this tell never returns: it runs the actors until we are killed.
    system.actor_of(Kickoff).tell(refs)
    system.endpoint.pump(float("inf"), lambda: False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
