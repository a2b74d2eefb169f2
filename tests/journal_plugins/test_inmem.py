"""The in-memory plugins against the journal and snapshot-store TCKs."""

from __future__ import annotations

from pathlib import Path

import pytest

from journal_plugins.inmem import InmemJournal, InmemSnapshotStore
from persistent_actors.errors import ConfigError
from persistent_actors.journal import Journal
from persistent_actors.snapshot import SnapshotStore
from persistent_actors.testing.journal_spec import JournalSpec
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec


class TestInmemJournal(JournalSpec):
    supports_replay_only_last = True

    async def create_journal(self, tmp_path: Path) -> Journal:
        return InmemJournal()

    async def reopen_journal(self, tmp_path: Path, closed: Journal) -> Journal:
        # The in-memory store lives as long as the journal object (in the runtime: the system).
        return closed


class TestInmemSnapshotStore(SnapshotStoreSpec):
    async def create_snapshot_store(self, tmp_path: Path) -> SnapshotStore:
        return InmemSnapshotStore()

    async def reopen_snapshot_store(self, tmp_path: Path, closed: SnapshotStore) -> SnapshotStore:
        return closed


@pytest.mark.parametrize("cls", [InmemJournal, InmemSnapshotStore])
def test_unknown_setting_is_rejected_by_name(cls: type[InmemJournal | InmemSnapshotStore]) -> None:
    with pytest.raises(ConfigError, match="'pathh'"):
        cls({"pathh": "x.db"})
