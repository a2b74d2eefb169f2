"""No acknowledged event is ever lost: a bounded crash torture (``make torture``: a long one)."""

from __future__ import annotations

from pathlib import Path

from tests.crash_torture import main, torture


def test_sigkill_at_random_moments_loses_and_tears_nothing(tmp_path: Path) -> None:
    totals = torture(tmp_path, cycles=20, seed=20261126)
    assert totals.cycles == 20
    assert totals.acknowledged > 0, "the writer never acknowledged an event"
    assert totals.lost == 0, totals
    assert totals.torn == 0, totals
    assert totals.gaps == 0, totals
    assert totals.integrity_errors == 0, totals


def test_sigkill_on_postgres_loses_and_tears_nothing(tmp_path: Path, pg_schema: str) -> None:
    totals = torture(tmp_path, cycles=20, seed=20261201, store=f"postgres:{pg_schema}")
    assert totals.cycles == 20
    assert totals.acknowledged > 0, "the writer never acknowledged an event"
    assert totals.lost == 0, totals
    assert totals.torn == 0, totals
    assert totals.gaps == 0, totals
    assert totals.integrity_errors == 0, totals


def test_the_long_run_command_makes_its_work_folder(tmp_path: Path) -> None:
    # The README's `python -m tests.crash_torture 500 /tmp/torture ...` on a fresh machine: the
    # folder did not exist, and the run ended at once in a FileNotFoundError traceback.
    workdir = tmp_path / "fresh" / "torture"
    assert main(["crash_torture", "1", str(workdir)]) == 0
    assert workdir.is_dir()
