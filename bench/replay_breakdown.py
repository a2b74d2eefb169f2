"""``python -m bench.replay_breakdown [--runs N]``: where the `recovering` row's time goes.

Times, on the `recovering` row's own SQLite file (10,000 bench events, synchronous=FULL),
each step of a replay on its own and the whole recovery, in one process, interleaved, and
prints the best and median of each (best: what the step costs without interference from other
processes on the machine). The steps:

* ``raw_read``: the raw row (select of the payload column, ``msgpack.unpackb`` per row);
* ``select``: the plugin's pages (`SqliteJournal.replay_rows`) through the plugin's loop, as
  the plugin host reads them;
* ``unpack``: the payloads to msgpack values (`Serializer.from_binary_columns` without objects);
* ``objects``: the bench's `Evt` from those values, as replay builds them (`_bulk_builder`:
  no ``__init__`` call for a slotted dataclass; ``Evt(**state)`` costs about 1.7x that);
* ``on_recover``: the bench actor's handler on each event;
* ``machine``: the recovering machine applying the pages (replay filter, decode, handler);
* ``fixed``: recovering an actor with one event (actor start, snapshot load, messages);
* ``recovering``: the row itself (``actor_of`` to the answer of the first ``ask``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import raw, workloads
from bench.actors import BenchActor, Evt
from bench.common import EVENTS
from journal_plugins.sqlite import SqliteJournal
from persistent_actors import _protocol as p
from persistent_actors._actor import DEAD_LETTERS
from persistent_actors._eventsourced import Eventsourced
from persistent_actors._replay_filter import ReplayFilterSettings
from persistent_actors._serialization import PLAIN_MANIFEST, _bulk_builder, default_serializer
from persistent_actors._thespian.plugin_host import _next_page, _PluginLoop
from persistent_actors.journal import MAX_SEQUENCE_NR, ReplayedRows

PID = "recover-10k"


class _Cell:
    """The least an `Eventsourced` needs to recover outside an actor system."""

    journal: Any = "journal"
    snapshot_store: Any = None
    recovery_event_timeout = 600.0
    internal_stash_capacity = 10_000
    replay_filter = ReplayFilterSettings()

    def schedule(self, delay: float, message: Any) -> None:
        del delay, message

    def dead_letter(self, message: Any, sender: Any) -> None:
        del message, sender

    def send_to_address(self, address: Any, message: Any) -> None:
        del address, message

    def write_messages(self, request: Any) -> None:
        del request

    def send_to_self(self, message: Any) -> None:
        del message

    def stop_self(self, *, failed: bool = False) -> None:
        raise RuntimeError(f"recovery stopped the actor (failed={failed})")

    def set_sender(self, sender: Any) -> None:
        del sender

    def begin_handling(self) -> None:
        pass

    def was_unhandled(self) -> bool:
        return False


def _read_pages(loop: _PluginLoop, journal: SqliteJournal) -> list[ReplayedRows]:
    highest = loop.run(journal.read_highest_sequence_nr(PID, 0))
    source = journal.replay_rows(PID, 1, highest, MAX_SEQUENCE_NR)
    pages = []
    while (page := loop.run(_next_page(source))) is not None:
        pages.append(page)
    return pages


def _machine(pages: list[ReplayedRows]) -> None:
    actor = BenchActor.__new__(BenchActor)
    machine = Eventsourced(actor, _Cell(), PID, 1, default_serializer)
    actor._eventsourced = machine  # noqa: SLF001 - as the host does
    actor.__init__(PID, 0)  # type: ignore[misc]
    machine.start_recovery()
    for chunk, page in enumerate(pages):
        machine.receive(p.ReplayedMessages(page, 1, chunk), DEAD_LETTERS)
    machine.receive(p.RecoverySuccess(EVENTS, 1, len(pages)), DEAD_LETTERS)
    if actor.counter != EVENTS:
        raise RuntimeError(f"recovered {actor.counter} events")


def main(argv: list[str]) -> int:
    """Time each step; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.replay_breakdown", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs of each step (default 15)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="persistent-actors-breakdown-") as tmp:
        root = Path(tmp)
        for name in ("recovering", "raw_read", "one"):
            (root / name).mkdir()
        workloads._setup_recovering(root / "recovering")  # noqa: SLF001 - the row's own set-up
        raw._setup_read(root / "raw_read")  # noqa: SLF001
        asyncio.run(workloads._write_history(root / "one", "one", 1, None))  # noqa: SLF001
        loop = _PluginLoop("breakdown")
        journal = SqliteJournal({"path": str(root / "recovering" / "journal.db"),
                                 "synchronous": "FULL"})
        loop.run(journal.start())
        pages = _read_pages(loop, journal)
        payloads = [payload for page in pages for payload in page.payloads]
        manifests = [PLAIN_MANIFEST] * len(payloads)  # values, no class
        states, _ = default_serializer.from_binary_columns(manifests, payloads)
        events = [Evt(**state) for state in states]
        build = _bulk_builder(Evt)
        if build is None:
            raise RuntimeError("Evt no longer takes replay's shortcut (see _bulk_builder)")
        handler = BenchActor("x", 0)

        def on_recover() -> None:
            handler.counter = 0
            for event in events:
                handler.on_recover(event)

        steps: dict[str, Callable[[], object]] = {
            "raw_read": lambda: raw._read(root / "raw_read"),  # noqa: SLF001
            "select": lambda: _read_pages(loop, journal),
            "unpack": lambda: default_serializer.from_binary_columns(manifests, payloads),
            "objects": lambda: build(states),
            "on_recover": on_recover,
            "machine": lambda: _machine(pages),
            "fixed": lambda: workloads.recover_workload("one", 1)(root / "one"),
            "recovering": lambda: workloads.recover_workload(PID, EVENTS)(
                root / "recovering"),
        }
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _, (name, step) in itertools.product(range(args.runs), steps.items()):
            start = time.perf_counter()
            timed = step()  # the rows time themselves (without system start and stop)
            elapsed = time.perf_counter() - start
            times[name].append(timed if isinstance(timed, float) else elapsed)
        loop.run(journal.close())
        loop.close()
    raw_best = min(times["raw_read"])
    print(f"{'step':12s} {'best ms':>8s} {'median ms':>10s} {'best / raw_read':>16s}")
    for name, seconds in times.items():
        print(f"{name:12s} {min(seconds) * 1e3:8.2f} {statistics.median(seconds) * 1e3:10.2f} "
              f"{min(seconds) / raw_best:15.2f}x")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
