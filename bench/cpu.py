"""``python -m bench.cpu KEY [--rounds N]``: CPU per event of a multiproc-tcp row, per process kind.

On a shared two-core machine a multiproc-tcp row's events/s swing by 2x between runs (the run
queue decides how long each process hop waits), while the CPU its processes spend per event
does not: it is the number to A/B a change by. Runs the row's set-up and one timed round
`--rounds` times and prints, per round, events/s and CPU milliseconds per event: the external
process (this one: clients and driver thread, from start to shutdown of its system) and each
kind of actor process (thespian's ``ActorManager.run``, from its start to its exit, summed per
actor class). Start-up and recovery are included in both, the same for both sides of an A/B.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thespian.system import actorManager

from bench import entities, service


def _record_actor_cpu(folder: Path) -> Callable[[], None]:
    """Make every actor process forked from now on write its CPU seconds to `folder` at exit.

    Returns the function that undoes it.
    """
    original: Callable[[Any], None] = actorManager.ActorManager.run

    def run(self: Any) -> None:
        start = time.process_time()
        try:
            original(self)
        finally:
            kind = getattr(self._actorClass, "__name__", str(self._actorClass)).split(".")[-1]
            (folder / f"{kind}-{os.getpid()}").write_text(str(time.process_time() - start))

    actorManager.ActorManager.run = run

    def undo() -> None:
        actorManager.ActorManager.run = original

    return undo


def main(argv: list[str]) -> int:
    """Measure one row; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("key", help="a multiproc-tcp row, e.g. service_async_mp")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = {w.key: w for w in service.workloads() + entities.workloads()}
    if args.key not in rows:
        raise SystemExit(f"unknown workload {args.key!r}; one of: {', '.join(rows)}")
    w = rows[args.key]
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="persistent-actors-cpu-") as tmp:
            root = Path(tmp)
            (actors := root / "cpu").mkdir()
            (data := root / "data").mkdir()
            undo = _record_actor_cpu(actors)
            start = time.process_time()
            try:
                seconds = w.run(data)
            finally:
                external = time.process_time() - start
                undo()
            time.sleep(1.0)  # the actor processes write at their exit
            per_kind: dict[str, float] = {}
            for f in actors.iterdir():
                kind = f.name.rsplit("-", 1)[0]
                per_kind[kind] = per_kind.get(kind, 0.0) + float(f.read_text())
        total = external + sum(per_kind.values())
        parts = " + ".join(f"{k} {v * 1e3 / w.events:.2f}" for k, v in sorted(per_kind.items()))
        print(f"{w.key}: {w.events / seconds:,.0f} events/s; CPU ms per event: "
              f"{total * 1e3 / w.events:.2f} = external {external * 1e3 / w.events:.2f} + {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
