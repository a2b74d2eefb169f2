"""Run one round of one workload in a fresh process, so that no row measures another's leftovers.

Every row used to run in the bench's own process, round after round: a row then ran among the
objects, threads and garbage its predecessors left alive, and the cyclic GC scanned all of it.
The 10,000-actor rows paid most (a full collection is proportional to everything alive: 167-187
ms at the end of a full run), so their ratios to the 100-actor rows depended on which rows ran
before them. Now each (row, round) runs in a child forked from a forkserver that has imported
the bench and nothing else, the way an application process would run it.

The child looks its row up by key (workloads are not picklable: they close over functions) and
sends back the seconds, the latencies of the round (service rows report p50/p99 over all rounds)
and the notes the row wrote. A round costs about 30 ms more this way (the fork, and the
system start that was never timed anyway), some 7 s over a full `make bench`.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import Workload
from persistent_actors._thespian.headroom import call_with_headroom

__all__ = ["run_isolated"]

_PRELOAD = ["bench.workloads", "bench.service", "bench.entities", "bench.raw", "bench.peer",
            "bench.postgres", "bench.cluster"]
_context: Any = None


def _catalogues() -> list[Callable[[], list[Workload]]]:
    from bench import cluster, entities, peer, postgres, raw, service, workloads  # noqa: PLC0415

    # The PostgreSQL ones last: building them probes the server.
    return [workloads.workloads, service.workloads, entities.workloads, raw.workloads,
            peer.workloads, postgres.rows, cluster.workloads]


def all_rows() -> Iterator[Workload]:
    """Every row the bench knows (the default catalogue a child looks its row up in).

    Lazily, module by module, so that a child stops at its own row's module.
    """
    for catalogue in _catalogues():
        yield from catalogue()


def _child(catalogue: str, key: str, folder: str, conn: Connection) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("persistent_actors").setLevel(logging.ERROR)
    try:
        module, _, function = catalogue.partition(":")
        rows = getattr(importlib.import_module(module), function)()
        w = next(row for row in rows if row.key == key)
        # Its clients' loop off frame-chunk boundaries, wherever the forkserver's stack was
        # (persistent_actors/_thespian/headroom.py): else a row could pay a chunk per call.
        seconds = call_with_headroom(w.run, Path(folder))
        conn.send(("ok", seconds, list(w.latencies), w.notes))
    except BaseException:  # noqa: BLE001 - the parent raises it with the child's traceback
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_isolated(w: Workload, folder: Path, catalogue: str = "bench.isolated:all_rows") -> float:
    """Run `w` once on `folder` in a fresh child process; returns its seconds.

    The child finds the row by its key in what `catalogue` (``"module:function"``, a function
    returning or yielding workloads) gives. The round's latencies are appended to
    ``w.latencies`` and its notes replace ``w.notes``.

    Raises:
        RuntimeError: the round failed in the child (its traceback is the message).

    """
    global _context  # noqa: PLW0603 - one forkserver for the whole bench run
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
    receiver, sender = _context.Pipe(duplex=False)
    process = _context.Process(target=_child, args=(catalogue, w.key, str(folder), sender),
                               name=f"bench-{w.key}")
    process.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        result = ("error", f"the child died without an answer (exit code {process.exitcode})")
    finally:
        receiver.close()
        process.join()
    if result[0] != "ok":
        raise RuntimeError(f"{w.key} failed in its child process:\n{result[1]}")
    _, seconds, latencies, notes = result
    w.latencies.extend(latencies)
    if notes:
        w.notes = notes
    return float(seconds)
