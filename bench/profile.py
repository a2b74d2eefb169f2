"""``python -m bench.profile KEY [--sort tottime] [--top 25]``: one workload under cProfile.

Runs the set-up (untimed, unprofiled), then one round of the workload with the profiler on,
and prints the top functions. Thread hops (the plugin's event loop, aiosqlite's thread) show
up as time in ``Event.wait``/``lock.acquire`` on the calling thread.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
from pathlib import Path

from bench import peer, raw, workloads


def main(argv: list[str]) -> int:
    """Profile one workload; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("key", help="workload key, e.g. persist or recovering")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    parser.add_argument("--top", type=int, default=25, help="functions to print (default 25)")
    parser.add_argument("--save", type=Path, help="also write the raw profile here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    rows = {w.key: w for w in workloads.workloads() + raw.workloads() + peer.workloads()}
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
        profiler = cProfile.Profile()
        profiler.enable()
        seconds = w.run(folders[1])
        profiler.disable()
    print(f"{w.key}: {seconds:.3f} s under the profiler ({w.events / seconds:,.0f} events/s)")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)
    if args.save is not None:
        stats.dump_stats(args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
