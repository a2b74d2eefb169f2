"""`bench.isolated`: each bench round runs in a fresh process and reports back what it measured."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.common import Workload
from bench.isolated import run_isolated

CATALOGUE = "tests.test_bench_isolated:rows"


def _probe(folder: Path) -> float:
    """A row that leaves a file naming the process it ran in."""
    (folder / f"ran-in-{os.getpid()}").touch()
    return 0.25


def _failing(folder: Path) -> float:
    raise ValueError(f"broken row in {folder.name}")


def rows() -> list[Workload]:
    """The catalogue the child looks rows up in."""
    probe = Workload("probe", "test", "probe", 1, _probe, notes="set in the child")
    probe.latencies.extend([0.001, 0.002])
    return [probe, Workload("failing", "test", "failing", 1, _failing)]


def test_each_round_runs_in_its_own_process_and_reports_back(tmp_path: Path) -> None:
    w = Workload("probe", "test", "probe", 1, _probe)
    seconds = [run_isolated(w, tmp_path, CATALOGUE) for _ in range(2)]
    assert seconds == [0.25, 0.25]
    pids = {f.name for f in tmp_path.iterdir()}
    assert len(pids) == 2  # two rounds, two fresh processes
    assert f"ran-in-{os.getpid()}" not in pids  # neither is this one
    assert w.latencies == [0.001, 0.002] * 2  # every round's latencies, in order
    assert w.notes == "set in the child"


def test_a_failing_round_raises_with_the_childs_traceback(tmp_path: Path) -> None:
    w = Workload("failing", "test", "failing", 1, _failing)
    with pytest.raises(RuntimeError, match="broken row in"):
        run_isolated(w, tmp_path, CATALOGUE)
