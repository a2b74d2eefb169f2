"""Test kits: `TestProbe` for actor tests; the journal and snapshot-store TCKs (need pytest)."""

from __future__ import annotations

from persistent_actors.testing.journal_spec import JournalSpec
from persistent_actors.testing.probe import TestProbe
from persistent_actors.testing.snapshot_store_spec import SnapshotStoreSpec

__all__ = ["JournalSpec", "SnapshotStoreSpec", "TestProbe"]
