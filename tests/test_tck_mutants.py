"""The shipped TCKs catch broken plugins: each mutant (tests/tck_mutants.py) fails its case.

Each case runs one spec in an inner pytest session (pytester) and checks that the named TCK
case fails there; the unbroken in-memory plugins under the same specs pass every case, so a
failure is the mutant's doing, not the harness's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]

_INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def _run(pytester: pytest.Pytester, spec: str, *args: str) -> tuple[set[str], int]:
    """Run `TestMutant = <spec>` in an inner session; return its failed case names, passed count."""
    pytester.makeini(_INI)
    pytester.makepyfile(test_mutant=f"from tests.tck_mutants import *  # noqa: F403\n"
                                    f"TestMutant = {spec}\n")
    reprec = pytester.inline_run("-p", "no:cacheprovider", "-p", "no:randomly", *args)
    passed, _, failed = reprec.listoutcomes()
    return {report.nodeid.rsplit("::", 1)[-1] for report in failed}, len(passed)


MUTANTS = [
    ("journal_spec(ForgetsOnReopenJournal)", "test_events_survive_close_and_reopen"),
    ("journal_spec(OverwritingJournal, rejects_conflicts=False)",
     "test_overlapping_atomic_write_is_not_stored_and_overwrites_nothing"),
    ("journal_spec(PartialWriteJournal)",
     "test_overlapping_atomic_write_is_not_stored_and_overwrites_nothing"),
    ("journal_spec(UpperBoundIgnoredWithLimitJournal)",
     "test_replay_using_upper_bound_with_count_limit"),
    ("journal_spec(TagDroppingJournal)", "test_event_metadata_round_trips"),
    ("journal_spec(WriterUuidDroppingJournal)", "test_event_metadata_round_trips"),
    ("journal_spec(ResultsOutOfOrderJournal)", "test_write_results_line_up_with_writes"),
    ("journal_spec(HighestResetByDeleteJournal)",
     "test_highest_sequence_nr_survives_journal_cleanup"),
    ("snapshot_store_spec(ForgetsOnReopenSnapshotStore)",
     "test_snapshots_survive_close_and_reopen"),
    ("snapshot_store_spec(TimestampIgnoredUnderSequenceBoundStore)",
     "test_timestamp_bound_holds_under_a_sequence_nr_bound"),
    ("snapshot_store_spec(MillisecondTimestampStore)", "test_metadata_round_trips"),
    ("journal_spec(PrefixDeletingJournal)",
     "test_deleting_an_id_spares_the_ids_it_is_a_prefix_of"),
    ("journal_spec(MemoryviewJournal)", "test_replay_all_messages"),
    ("snapshot_store_spec(PrefixLoadingStore)",
     "test_an_id_never_sees_the_snapshots_of_ids_it_is_a_prefix_of"),
    ("snapshot_store_spec(MinimumBoundsIgnoredOnDeleteStore)",
     "test_delete_by_criteria_keeps_what_is_below_its_minimum_bounds"),
    ("snapshot_store_spec(NewestTimestampStore)",
     "test_latest_is_the_highest_sequence_nr_not_the_newest_timestamp"),
]


@pytest.mark.parametrize(("spec", "caught_by"), MUTANTS, ids=[m[0] for m in MUTANTS])
def test_the_tck_catches_the_mutant(pytester: pytest.Pytester, spec: str, caught_by: str) -> None:
    failed, passed = _run(pytester, spec)
    assert caught_by in failed, f"{spec} passed {caught_by}; failed only {sorted(failed)}"
    assert passed > 0  # the harness ran the spec, not just an import error


def test_the_query_tck_catches_a_log_that_skips_pages(pytester: pytest.Pytester) -> None:
    failed, _ = _run(pytester, "query_spec(SkipsPagesJournal)", "-k", "all_events")
    assert "test_all_events_live_pages_across_more_than_one_page" in failed
    assert "test_current_all_events_sees_all_150_events" in failed


@pytest.mark.parametrize("spec", ["MutantInmemJournal", "MutantInmemSnapshotStore",
                                  "query_spec(InmemJournal)"])
def test_the_unbroken_plugins_pass_the_same_specs(pytester: pytest.Pytester, spec: str) -> None:
    args = ("-k", "all_events") if spec.startswith("query") else ()
    failed, passed = _run(pytester, spec, *args)
    assert failed == set()
    assert passed > 5


_AUTHORS_TCK_FILE = """
from pathlib import Path
from journal_plugins.inmem import InmemJournal
from persistent_actors.journal import Journal
from persistent_actors.testing import JournalSpec


class Forgetful(InmemJournal):
    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        return 0


class TestForgetful(JournalSpec):
    async def create_journal(self, tmp_path: Path) -> Journal:
        return Forgetful()
"""


def test_a_plugin_authors_tck_file_runs_without_configuration_and_shows_values(
        tmp_path: Path) -> None:
    # Outside this repository: pytest-asyncio in its default (strict) mode, no conftest. The
    # specs' async fixtures failed there ("requested an async fixture"), and a failing check
    # was a bare AssertionError (pytest rewrote only the author's file).
    (tmp_path / "test_forgetful.py").write_text(_AUTHORS_TCK_FILE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), "-k", "highest", str(tmp_path / "test_forgetful.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "requested an async fixture" not in result.stdout
    assert "assert 0 == " in result.stdout, result.stdout[-3000:]
    assert " failed" in result.stdout
