"""``python -m bench.profile KEY [--sort tottime] [--top 25]``: one workload under cProfile.

Runs the set-up (untimed, unprofiled), then one round of the workload with the profiler on,
and prints the top functions. Every thread started during the round (the system's driver
thread, where the simple base runs the actors; SQLite connection threads) is profiled too and
merged into one table; a thread hop still shows as time in ``Event.wait``/``lock.acquire`` on
the waiting thread.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import entities, peer, raw, service, workloads


@contextmanager
def _every_thread() -> Iterator[list[cProfile.Profile]]:
    """Profile the calling thread and every thread started meanwhile (one profiler each)."""
    profilers: list[cProfile.Profile] = []
    original: Callable[[threading.Thread], None] = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()
        try:
            original(thread)
        finally:
            profiler.disable()

    main = cProfile.Profile()
    profilers.append(main)
    threading.Thread.run = run  # type: ignore[method-assign,assignment]
    main.enable()
    try:
        yield profilers
    finally:
        main.disable()
        threading.Thread.run = original  # type: ignore[method-assign,assignment]


def main(argv: list[str]) -> int:
    """Profile one workload; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("key", help="workload key, e.g. persist or recovering")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    parser.add_argument("--top", type=int, default=25, help="functions to print (default 25)")
    parser.add_argument("--save", type=Path, help="also write the raw profile here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    rows = {w.key: w for w in workloads.workloads() + service.workloads() + entities.workloads()
            + raw.workloads() + peer.workloads()}
    if args.key not in rows:
        raise SystemExit(f"unknown workload {args.key!r}; one of: {', '.join(rows)}")
    w = rows[args.key]
    with tempfile.TemporaryDirectory(prefix="persistent-actors-profile-") as tmp:
        root = Path(tmp)
        folders = [root / "warm-up", root / "profiled"]
        for folder in folders:
            folder.mkdir()
        if w.setup is not None:  # set-up workloads read one prepared folder in every round
            w.setup(root)
            folders = [root, root]
        w.run(folders[0])  # warm-up: imports, first connections
        with _every_thread() as profilers:
            seconds = w.run(folders[1])
    print(f"{w.key}: {seconds:.3f} s under the profiler ({w.events / seconds:,.0f} events/s), "
          f"{len(profilers)} threads")
    stats = pstats.Stats(*profilers, stream=sys.stdout)
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    if args.save is not None:
        stats.dump_stats(args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
