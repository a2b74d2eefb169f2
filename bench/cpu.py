"""``python -m bench.cpu KEY [--rounds N]``: CPU per event of a multiproc-tcp row, per process kind.

On a shared two-core machine a multiproc-tcp row's events/s swing by 2x between runs (the run
queue decides how long each process hop waits), while the CPU its processes spend per event
does not: it is the number to A/B a change by. Runs the row's set-up and one timed round
`--rounds` times and prints, per round, events/s and CPU milliseconds per event: the external
process (this one: clients and driver thread, from start to shutdown of its system) and each
kind of actor process (thespian's ``ActorManager.run``, from its start to its exit, summed per
actor class). Start-up and recovery are included in both, the same for both sides of an A/B.

A second line per round, "traffic", counts the timed traffic alone: the CPU each process spent
between the start and the end of the timed clients (nanosecond task clocks from
``/proc/<pid>/task/*/schedstat`` of this process and every process descended from it, read just
before and just after), without the start-up and recovery of the actor processes, which on
service_async_mp_isolated (20 cart processes, 1,000 requests) are a large share of the first
line.
``--requests N`` runs N timed requests instead of the row's own count (a longer window, less
noise).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thespian.system import actorManager

from bench import entities, service

_Snapshot = dict[int, int]  # pid -> CPU nanoseconds of all its threads so far


def _processes() -> dict[int, tuple[int, int]]:
    """Pid -> (parent pid, session id), over every process on the machine now."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry)] = (int(fields[1]), int(fields[3]))
    return found


def _task_ns(pid: int) -> int:
    """CPU nanoseconds the live threads of `pid` have run (0 if the process is gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            continue
    return total


def _snapshot() -> _Snapshot:
    """CPU nanoseconds of this process and of every actor process of its systems, by pid.

    thespian's multiproc admin daemonizes (a new session, its parent exits), so its processes
    are not this one's descendants: they are the processes in the sessions of its children.
    """
    me = os.getpid()
    processes = _processes()
    own = processes[me][1]
    sessions = {sid for ppid, sid in processes.values() if ppid == me and sid != own}
    pids = [me, *(pid for pid, (_, sid) in processes.items() if sid in sessions)]
    return {pid: _task_ns(pid) for pid in pids}


@dataclasses.dataclass
class _Window:
    """The snapshots around the timed traffic of one round."""

    before: _Snapshot | None = None
    after: _Snapshot | None = None


def _record_traffic(window: _Window) -> Callable[[], None]:
    """Make the timed client functions of the service and entity rows fill `window`.

    Service rows time one ``_async_clients``/``_thread_clients`` call; entity rows time the
    ``_clients`` call that persists (the one before it, read-only, starts the entities).
    Returns the function that undoes it.
    """
    # The rows' private client functions, looked up by name at every call of a row.
    timed_calls = [(service, "_async_clients"), (service, "_thread_clients")]
    originals = [getattr(module, name) for module, name in timed_calls]
    entity_clients = entities._clients  # noqa: SLF001 - the entity rows' client function

    def timed(fn: Callable[..., float]) -> Callable[..., float]:
        def run(*args: Any, **kwargs: Any) -> float:
            window.before = _snapshot()
            try:
                return fn(*args, **kwargs)
            finally:
                window.after = _snapshot()
        return run

    async def clients(*args: Any, persist: bool, **kwargs: Any) -> None:
        if persist:
            window.before = _snapshot()
        try:
            await entity_clients(*args, persist=persist, **kwargs)
        finally:
            if persist:
                window.after = _snapshot()

    for (module, name), fn in zip(timed_calls, originals, strict=True):
        setattr(module, name, timed(fn))
    setattr(entities, "_clients", clients)  # noqa: B010 - private name

    def undo() -> None:
        for (module, name), fn in zip(timed_calls, originals, strict=True):
            setattr(module, name, fn)
        setattr(entities, "_clients", entity_clients)  # noqa: B010 - private name

    return undo


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


def _traffic_line(events: int, before: _Snapshot, after: _Snapshot,
                  kind_of: dict[int, str]) -> str:
    """The "traffic" line: CPU ms per event per process kind between the two snapshots."""
    me = os.getpid()
    per_kind: dict[str, float] = {}
    for pid, ns in after.items():
        kind = "external" if pid == me else kind_of.get(pid, "other")
        per_kind[kind] = per_kind.get(kind, 0.0) + (ns - before.get(pid, 0)) / 1e6 / events
    total = sum(per_kind.values())
    external = per_kind.pop("external", 0.0)
    parts = " + ".join(f"{k} {v:.3f}" for k, v in sorted(per_kind.items()))
    return f"  traffic only: CPU ms per event {total:.3f} = external {external:.3f} + {parts}"


def main(argv: list[str]) -> int:
    """Measure one row; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("key", help="a multiproc-tcp row, e.g. service_async_mp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, help="timed requests per round")
    args = parser.parse_args(argv)
    rows = {w.key: w for w in service.workloads() + entities.workloads()}
    if args.key not in rows:
        raise SystemExit(f"unknown workload {args.key!r}; one of: {', '.join(rows)}")
    w = rows[args.key]
    if args.requests:
        if not hasattr(w.run, "requests"):
            raise SystemExit(f"{args.key} has no request count to change")
        w = dataclasses.replace(w, events=args.requests,
                                run=dataclasses.replace(w.run, requests=args.requests))  # type: ignore[type-var]
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="persistent-actors-cpu-") as tmp:
            root = Path(tmp)
            (actors := root / "cpu").mkdir()
            (data := root / "data").mkdir()
            undo = _record_actor_cpu(actors)
            window = _Window()
            undo_traffic = _record_traffic(window)
            start = time.process_time()
            try:
                seconds = w.run(data)
            finally:
                external = time.process_time() - start
                undo_traffic()
                undo()
            time.sleep(1.0)  # the actor processes write at their exit
            per_kind: dict[str, float] = {}
            kind_of: dict[int, str] = {}
            for f in actors.iterdir():
                kind, pid = f.name.rsplit("-", 1)
                kind_of[int(pid)] = kind
                per_kind[kind] = per_kind.get(kind, 0.0) + float(f.read_text())
        total = external + sum(per_kind.values())
        parts = " + ".join(f"{k} {v * 1e3 / w.events:.2f}" for k, v in sorted(per_kind.items()))
        print(f"{w.key}: {w.events / seconds:,.0f} events/s; CPU ms per event: "
              f"{total * 1e3 / w.events:.2f} = external {external * 1e3 / w.events:.2f} + {parts}")
        if window.before is not None and window.after is not None:
            print(_traffic_line(w.events, window.before, window.after, kind_of))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
