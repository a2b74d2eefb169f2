"""The SQLite journal's read side against the query TCK, plus the cases only it has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from persistent_actors.testing.query_spec import MULTIPROC_CASES, ReadJournalSpec, only_cases


class TestSqliteReadJournal(ReadJournalSpec):
    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "sqlite", "path": str(tmp_path / "events.db")}


@pytest.mark.multiproc
@only_cases(MULTIPROC_CASES)
class TestSqliteReadJournalMultiproc(ReadJournalSpec):
    """The cases that cross processes, with every actor in its own OS process."""

    base = "multiproc-tcp"

    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "sqlite", "path": str(tmp_path / "events.db")}
