"""Test kits: `TestProbe`, the persistence test kit, and the plugin TCKs (these need pytest).

`TestProbe`, `PersistenceTestKit` and the test plugins (`TestJournal`, `TestSnapshotStore`,
which a config names as ``persistent_actors.testing:TestJournal``) need only the package, so
an application that installed it without the ``dev`` extra can use them. The TCKs
(`JournalSpec`, `SnapshotStoreSpec`, `ReadJournalSpec`) are pytest test classes: they are
imported on first access, so pytest is needed only by code that uses them.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from persistent_actors.testing.journal_spec import JournalSpec
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

# The TCKs import pytest at module level; loading them lazily keeps pytest out of the
# import of the probe and the persistence test kit (PEP 562).
_TCKS = {
    "JournalSpec": "persistent_actors.testing.journal_spec",
    "ReadJournalSpec": "persistent_actors.testing.query_spec",
    "SnapshotStoreSpec": "persistent_actors.testing.snapshot_store_spec",
}


def __getattr__(name: str) -> Any:
    module = _TCKS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module not in sys.modules:
        # pytest rewrites the asserts of test files only: registered, a failing TCK check
        # shows the values it compared (a plugin author needs the diff, not a bare
        # AssertionError). Before the import, or it has no effect.
        import pytest  # noqa: PLC0415 - the TCKs need pytest; the rest of the package does not

        pytest.register_assert_rewrite(module)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
