"""Test kits: `TestProbe`, the persistence test kit, and the plugin TCKs (these need pytest)."""

from __future__ import annotations

from persistent_actors.testing.journal_spec import JournalSpec
from persistent_actors.testing.persistence_testkit import (
    Delay,
    Fail,
    Pass,
    PersistenceTestKit,
    Reject,
    TestJournal,
    TestSnapshotStore,
)
from persistent_actors.testing.probe import TestProbe
from persistent_actors.testing.query_spec import ReadJournalSpec
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec

__all__ = [
    "Delay",
    "Fail",
    "JournalSpec",
    "Pass",
    "PersistenceTestKit",
    "ReadJournalSpec",
    "Reject",
    "SnapshotStoreSpec",
    "TestJournal",
    "TestProbe",
    "TestSnapshotStore",
]
