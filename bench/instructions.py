"""``python -m bench.instructions KEY [--small N] [--large M]``: instructions per request.

On the shared two-core machine a service row's requests/s and even its CPU per request move by
10-30 % between runs with the load other work puts on the machine, more than most changes move
them. The number of machine instructions a request costs does not: this runs the row twice
under valgrind's callgrind (all threads counted), once with `--small` requests and once with
`--large`, and prints the difference divided by the difference in requests, so that start-up
(imports, system start, actor creation) cancels out. Each run takes about a minute per 1,000
requests; hold the bench lock (it keeps a core busy). Needs ``valgrind`` on the PATH.

Only the service rows (`bench/service.py`), which take a request count. Under valgrind the
threads run one at a time, so a pass gathers slightly different batches than on the machine
(printed per run as batch size: passes); compare like with like.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import service

_TOTAL = re.compile(r"Collected : (\d+)")


def _child(key: str, requests: int) -> None:
    """Run `requests` requests of row `key` once (inside valgrind); report the pass sizes."""
    from persistent_actors._thespian import simple_direct  # noqa: PLC0415 - child only

    passes: collections.Counter[int] = collections.Counter()
    tell_all = simple_direct.SimpleDirect.tell_all

    def counted(self: simple_direct.SimpleDirect, sends: list[tuple[object, object]]) -> None:
        passes[len(sends)] += 1
        tell_all(self, sends)

    simple_direct.SimpleDirect.tell_all = counted  # type: ignore[method-assign,assignment]
    rows = {w.key: w for w in service.workloads()}
    row = rows[key].run
    if not isinstance(row, service._Row):  # noqa: SLF001 - the service rows' own class
        raise SystemExit(f"{key} takes no request count")
    row.requests = requests
    with tempfile.TemporaryDirectory(prefix="persistent-actors-instr-") as tmp:
        row(Path(tmp))
    common = ", ".join(f"{size}: {n}" for size, n in passes.most_common(6))
    print(f"{requests} requests; batch size: passes {common}", file=sys.stderr)


def _count(key: str, requests: int) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not on the PATH")
    with tempfile.TemporaryDirectory(prefix="persistent-actors-callgrind-") as tmp:
        out = subprocess.run(  # noqa: S603 - our own arguments
            [valgrind, "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out",
             sys.executable, "-m", "bench.instructions", key, "--child", str(requests)],
            capture_output=True, text=True, check=True, env=os.environ.copy())
    for line in out.stderr.splitlines():
        if "batch size" in line:
            print(f"  {line}")
    match = _TOTAL.search(out.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from valgrind:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def main(argv: list[str]) -> int:
    """Measure one row; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("key", help="a service row, e.g. service_async")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.key, args.child)
        return 0
    small, large = _count(args.key, args.small), _count(args.key, args.large)
    per = (large - small) / (args.large - args.small)
    print(f"{args.key}: {per:,.0f} instructions per request "
          f"({small:,} for {args.small}, {large:,} for {args.large})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
