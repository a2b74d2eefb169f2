"""Plugin TCK for snapshot stores: the behaviour every `SnapshotStore` implementation must show.

A plugin's test module subclasses `SnapshotStoreSpec` and overrides `create_snapshot_store`::

    class TestSqliteSnapshotStore(SnapshotStoreSpec):
        async def create_snapshot_store(self, tmp_path: Path) -> SnapshotStore:
            return SqliteSnapshotStore({"path": str(tmp_path / "snapshots.db")})

The cases follow the core SnapshotStoreSpec of Akka.NET and the JVM, Akka.NET's two cases on the
timestamp of `SnapshotMetadata` given to `delete`, its SnapshotStoreSaveSnapshotSpec (rapid
saves, with journal writes in between), and a few more: metadata round trip, the timestamp bound
honoured under a sequence-number bound, durability across close and reopen, awkward ids.
`tests/test_tck_mutants.py` runs this spec against deliberately broken stores.

Hooks a subclass provides:

* `create_snapshot_store(tmp_path)` (required): a new, not yet started store.
* `reopen_snapshot_store(tmp_path, closed)` (optional): a not yet started store over the same
  data as `closed`, which was closed; the default calls `create_snapshot_store(tmp_path)`
  again (right for a file under `tmp_path` or a shared database server).
* `create_journal_beside(tmp_path)` (optional): a not yet started journal that shares the
  store's file or database, so the "saves with journal writes in between" case interleaves
  them; the default None skips that case (nothing is shared).

The JVM's optional free-form snapshot metadata (`supportsMetadata`) has no counterpart:
`SnapshotMetadata` is (persistence id, sequence number, timestamp), and case 13 here checks
that those round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar, Final

import pytest
import pytest_asyncio

from persistent_actors.journal import MAX_SEQUENCE_NR, AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

__all__ = ["SnapshotStoreSpec"]

MANIFEST: Final = "tck.Snapshot"

# One second apart, so "a little earlier than snapshot N" (minus a millisecond) is unambiguous.
BASE_TIMESTAMP: Final = 1_700_000_000.5

_pid_counter = itertools.count(1)


def _criteria(
    max_sequence_nr: int = MAX_SEQUENCE_NR, max_timestamp: float = float("inf")
) -> SnapshotSelectionCriteria:
    return SnapshotSelectionCriteria(max_sequence_nr=max_sequence_nr, max_timestamp=max_timestamp)


class SnapshotStoreSpec:
    """Plugin TCK: subclass it as `Test...` and override `create_snapshot_store`.

    Before each test, a fresh persistence id `pid` holds five snapshots `s-1`..`s-5` at
    sequence numbers 11..15, taken one second apart; the `metadata` fixture lists them.
    """

    # Its tests and fixtures are async: marked for pytest-asyncio, so a plugin's test file
    # runs in its default (strict) mode too, with no configuration of the author's.
    pytestmark = pytest.mark.asyncio

    # Size of the "bigger snapshot" case (Akka's SnapshotByteSizeLimit is 10,000 bytes).
    big_snapshot_size: ClassVar[int] = 1_000_000

    async def create_snapshot_store(self, tmp_path: Path) -> SnapshotStore:
        """Return a new, not yet started snapshot store; `tmp_path` is a fresh per-test folder."""
        msg = f"{type(self).__name__} must override create_snapshot_store"
        raise NotImplementedError(msg)

    async def reopen_snapshot_store(self, tmp_path: Path, closed: SnapshotStore) -> SnapshotStore:
        """Return a not yet started store over the data `closed` used; `closed` is closed.

        The default opens `create_snapshot_store(tmp_path)` again (see the module docstring).
        """
        del closed
        return await self.create_snapshot_store(tmp_path)

    async def create_journal_beside(self, tmp_path: Path) -> Journal | None:
        """Return a not yet started journal sharing the store's file or database, or None."""
        del tmp_path
        return None

    @pytest.fixture
    def pid(self) -> str:
        """Return a persistence id no other test uses, even against a shared database."""
        return f"p-{next(_pid_counter)}-{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def metadata(self, pid: str) -> list[SnapshotMetadata]:
        """Metadata of the fixture's snapshots `s-1`..`s-5` (sequence numbers 11..15)."""
        return [SnapshotMetadata(pid, 10 + index, BASE_TIMESTAMP + index) for index in range(1, 6)]

    @pytest_asyncio.fixture
    async def store(
        self, tmp_path: Path, metadata: list[SnapshotMetadata]
    ) -> AsyncIterator[SnapshotStore]:
        """Yield a started store holding the five fixture snapshots; close it after the test."""
        store = await self.create_snapshot_store(tmp_path)
        await store.start()
        try:
            for index, md in enumerate(metadata, start=1):
                await store.save(md, MANIFEST, f"s-{index}".encode())
            yield store
        finally:
            await store.close()

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def snapshot(metadata: SnapshotMetadata, payload: bytes) -> SelectedSnapshot:
        """Build the `SelectedSnapshot` a load must return for a fixture-style snapshot."""
        return SelectedSnapshot(metadata, MANIFEST, payload)

    # --- core SnapshotStoreSpec (Akka.NET and JVM) ---------------------------------------------

    async def test_no_snapshot_for_unknown_persistence_id(
        self, store: SnapshotStore, pid: str
    ) -> None:
        """Case 1: an id without snapshots loads nothing."""
        assert await store.load(pid + "-unknown", SnapshotSelectionCriteria.latest()) is None

    async def test_no_snapshot_for_non_matching_timestamp(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 2: a max timestamp older than every snapshot loads nothing."""
        criteria = _criteria(max_timestamp=metadata[0].timestamp - 1.0)
        assert await store.load(pid, criteria) is None

    async def test_no_snapshot_for_non_matching_sequence_nr(
        self, store: SnapshotStore, pid: str
    ) -> None:
        """Case 3: a max sequence number below every snapshot (7, directly or via limit)."""
        assert await store.load(pid, _criteria(7)) is None
        assert await store.load(pid, SnapshotSelectionCriteria.latest().limit(7)) is None

    async def test_load_most_recent_snapshot(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 4: `latest` loads s-5 with its metadata intact, its payload as bytes."""
        loaded = await store.load(pid, SnapshotSelectionCriteria.latest())
        assert loaded == self.snapshot(metadata[4], b"s-5")
        # Exactly bytes: a driver's memoryview compares equal but does not pickle.
        assert type(loaded.payload) is bytes, "load must return the payload as bytes"

    async def test_load_most_recent_matching_upper_sequence_nr_bound(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 5: max sequence number 13, directly or via limit, loads s-3."""
        expected = self.snapshot(metadata[2], b"s-3")
        assert await store.load(pid, _criteria(13)) == expected
        assert await store.load(pid, SnapshotSelectionCriteria.latest().limit(13)) == expected

    async def test_load_most_recent_matching_sequence_nr_and_timestamp_bounds(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 6: bounds on both sequence number and timestamp of s-3 load s-3."""
        expected = self.snapshot(metadata[2], b"s-3")
        md = metadata[2]
        assert await store.load(pid, _criteria(md.sequence_nr, md.timestamp)) == expected
        assert await store.load(pid, _criteria(max_timestamp=md.timestamp).limit(13)) == expected
        assert await store.load(pid, _criteria(max_timestamp=md.timestamp)) == expected

    async def test_delete_single_snapshot_by_sequence_nr(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 7: deleting s-3 by its metadata makes max-13 criteria load s-2."""
        await store.delete(metadata[2])
        assert await store.load(pid, _criteria(13)) == self.snapshot(metadata[1], b"s-2")

    async def test_delete_all_snapshots_matching_criteria(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 8: deleting by s-3's bounds removes s-1..s-3; s-4 still loads."""
        md = metadata[2]
        criteria = _criteria(md.sequence_nr, md.timestamp)
        await store.delete_by_criteria(pid, criteria)
        assert await store.load(pid, criteria) is None
        s4 = metadata[3]
        loaded = await store.load(pid, _criteria(s4.sequence_nr, s4.timestamp))
        assert loaded == self.snapshot(s4, b"s-4")

    async def test_no_delete_for_non_matching_upper_timestamp_bound(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 9: a max timestamp just before s-4's leaves s-4 in place."""
        s4 = metadata[3]
        await store.delete_by_criteria(pid, _criteria(s4.sequence_nr, s4.timestamp - 0.001))
        loaded = await store.load(pid, _criteria(s4.sequence_nr, s4.timestamp))
        assert loaded == self.snapshot(s4, b"s-4")
        # The bounds did match s-1..s-3.
        assert await store.load(pid, _criteria(13)) is None

    async def test_save_and_overwrite_snapshot_with_same_sequence_nr(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Case 10: saving again at sequence number 15 replaces s-5."""
        md = dataclasses.replace(metadata[4], timestamp=metadata[4].timestamp + 10.0)
        await store.save(md, MANIFEST, b"s-5-modified")
        loaded = await store.load(pid, SnapshotSelectionCriteria.latest())
        assert loaded is not None
        assert loaded.payload == b"s-5-modified"
        assert loaded.metadata.sequence_nr == 15
        # Only one snapshot remains at 15: deleting it by sequence number exposes s-4.
        await store.delete(SnapshotMetadata(pid, 15))
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) == self.snapshot(
            metadata[3], b"s-4"
        )

    async def test_save_bigger_snapshot(self, store: SnapshotStore, pid: str) -> None:
        """Case 11: a large payload (default 1 MB) is stored and loads back byte for byte."""
        payload = bytes(index % 251 for index in range(self.big_snapshot_size))
        md = SnapshotMetadata(pid, 100, BASE_TIMESTAMP + 100)
        await store.save(md, MANIFEST, payload)
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) == self.snapshot(
            md, payload
        )

    async def test_serialize_snapshot(self, store: SnapshotStore, pid: str) -> None:
        """Case 12: payload bytes (every byte value) and a unicode manifest round-trip exactly."""
        md = SnapshotMetadata(pid, 100, 1_712_345_678.123456)
        payload = bytes(range(256)) + b"\x00\xff"
        await store.save(md, "módulo:Estado\u65e5", payload)
        loaded = await store.load(pid, SnapshotSelectionCriteria.latest())
        assert loaded == SelectedSnapshot(md, "módulo:Estado\u65e5", payload)

    # --- Akka.NET: the timestamp of the metadata given to delete (issue #7312) ---------------

    async def test_delete_single_snapshot_when_timestamp_is_unknown(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Akka.NET: metadata with timestamp 0.0 ("unknown") deletes by sequence number."""
        await store.delete(SnapshotMetadata(pid, metadata[2].sequence_nr, 0.0))
        assert await store.load(pid, _criteria(13)) == self.snapshot(metadata[1], b"s-2")

    async def test_no_delete_when_timestamp_is_earlier_than_stored(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Akka.NET: a timestamp earlier than the stored one deletes nothing, without error."""
        md = metadata[2]
        await store.delete(SnapshotMetadata(pid, md.sequence_nr, md.timestamp - 1.0))
        assert await store.load(pid, _criteria(13)) == self.snapshot(md, b"s-3")

    # --- further cases -----------------------------------------------------------------------

    async def test_rapid_multiple_saves_keep_the_latest(
        self, store: SnapshotStore, pid: str
    ) -> None:
        """Many saves in quick succession, new or overwriting, leave the last one loadable."""
        for nr in range(16, 66):
            await store.save(SnapshotMetadata(pid, nr, BASE_TIMESTAMP + nr), MANIFEST, b"%d" % nr)
        for version in range(50):
            md = SnapshotMetadata(pid, 70, BASE_TIMESTAMP + 70)
            await store.save(md, MANIFEST, b"v%d" % version)
        loaded = await store.load(pid, SnapshotSelectionCriteria.latest())
        assert loaded == self.snapshot(SnapshotMetadata(pid, 70, BASE_TIMESTAMP + 70), b"v49")
        assert await store.load(pid, _criteria(65)) == self.snapshot(
            SnapshotMetadata(pid, 65, BASE_TIMESTAMP + 65), b"65"
        )

    async def test_save_same_sequence_nr_twice_does_not_fail(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Saving identical metadata twice (a retried save) succeeds; the second wins."""
        await store.save(metadata[4], MANIFEST, b"again")
        await store.save(metadata[4], MANIFEST, b"again-2")
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) == self.snapshot(
            metadata[4], b"again-2"
        )

    async def test_criteria_none_loads_nothing(self, store: SnapshotStore, pid: str) -> None:
        """`SnapshotSelectionCriteria.none()` never selects a snapshot."""
        assert await store.load(pid, SnapshotSelectionCriteria.none()) is None

    async def test_minimum_bounds_are_inclusive(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Minimum sequence number and timestamp bounds select inclusively."""
        s3 = metadata[2]
        between = SnapshotSelectionCriteria(max_sequence_nr=13, min_sequence_nr=13)
        assert await store.load(pid, between) == self.snapshot(s3, b"s-3")
        empty = SnapshotSelectionCriteria(max_sequence_nr=13, min_sequence_nr=14)
        assert await store.load(pid, empty) is None
        newest_only = SnapshotSelectionCriteria(min_timestamp=metadata[4].timestamp)
        assert await store.load(pid, newest_only) == self.snapshot(metadata[4], b"s-5")
        too_new = SnapshotSelectionCriteria(max_sequence_nr=14, min_timestamp=metadata[4].timestamp)
        assert await store.load(pid, too_new) is None

    async def test_deletes_of_missing_snapshots_succeed(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Deleting what does not exist is not an error and removes nothing else."""
        await store.delete(SnapshotMetadata(pid, 99))
        await store.delete(SnapshotMetadata(pid + "-unknown", 11))
        await store.delete_by_criteria(pid + "-unknown", SnapshotSelectionCriteria.latest())
        await store.delete_by_criteria(pid, _criteria(10))
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) == self.snapshot(
            metadata[4], b"s-5"
        )
        assert await store.load(pid, _criteria(11)) == self.snapshot(metadata[0], b"s-1")

    async def test_persistence_ids_stay_separate(self, store: SnapshotStore, pid: str) -> None:
        """Awkward ids (quotes, unicode, SQL, LIKE wildcards) never see each other's snapshots."""
        suffixes = ["-it's", '-"double"', "-ünïcødé-日本語", "'; DROP TABLE snapshot; --", "-%"]
        ids = [pid + suffix for suffix in suffixes]
        for other in ids:
            await store.save(SnapshotMetadata(other, 1, BASE_TIMESTAMP), MANIFEST, other.encode())
        await store.delete_by_criteria(ids[0], SnapshotSelectionCriteria.latest())
        assert await store.load(ids[0], SnapshotSelectionCriteria.latest()) is None
        for other in ids[1:]:
            loaded = await store.load(other, SnapshotSelectionCriteria.latest())
            assert loaded == self.snapshot(
                SnapshotMetadata(other, 1, BASE_TIMESTAMP), other.encode()
            )
        latest = await store.load(pid, SnapshotSelectionCriteria.latest())
        assert latest is not None
        assert latest.payload == b"s-5"

    async def test_an_id_never_sees_the_snapshots_of_ids_it_is_a_prefix_of(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """``cart-1`` loads and deletes its own snapshots, never ``cart-10``'s (newer, higher)."""
        longer = [pid + "0", pid + "-1"]
        for other in longer:
            await store.save(SnapshotMetadata(other, 99, BASE_TIMESTAMP + 100), MANIFEST,
                             other.encode())
        loaded = await store.load(pid, SnapshotSelectionCriteria.latest())
        assert loaded == self.snapshot(metadata[4], b"s-5")
        await store.delete_by_criteria(pid, SnapshotSelectionCriteria.latest())
        await store.delete(SnapshotMetadata(pid, 99))
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) is None
        for other in longer:
            assert await store.load(other, SnapshotSelectionCriteria.latest()) == self.snapshot(
                SnapshotMetadata(other, 99, BASE_TIMESTAMP + 100), other.encode())

    async def test_delete_by_criteria_keeps_what_is_below_its_minimum_bounds(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Minimum sequence number and timestamp bounds limit a delete as they limit a load."""
        await store.delete_by_criteria(pid, SnapshotSelectionCriteria(
            max_sequence_nr=14, min_sequence_nr=13))
        await store.delete_by_criteria(pid, SnapshotSelectionCriteria(
            max_sequence_nr=12, min_timestamp=metadata[1].timestamp))
        remaining = [
            loaded.metadata.sequence_nr
            for nr in (11, 12, 13, 14, 15)
            if (loaded := await store.load(pid, _criteria(nr))) is not None
            and loaded.metadata.sequence_nr == nr
        ]
        assert remaining == [11, 15]

    async def test_latest_is_the_highest_sequence_nr_not_the_newest_timestamp(
        self, store: SnapshotStore, pid: str
    ) -> None:
        """A snapshot at a higher sequence number wins over a newer one at a lower number."""
        older_higher = SnapshotMetadata(pid, 20, BASE_TIMESTAMP - 100)
        await store.save(older_higher, MANIFEST, b"s-20")
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) == self.snapshot(
            older_higher, b"s-20")

    async def test_metadata_round_trips(self, store: SnapshotStore, pid: str) -> None:
        """Case 13: persistence id, sequence number and timestamp come back exactly."""
        awkward = [
            SnapshotMetadata(pid, 101, 1_712_345_678.123456),
            SnapshotMetadata(pid, 102, 0.0),
            SnapshotMetadata(pid, MAX_SEQUENCE_NR - 1, 4_102_444_800.5),
        ]
        for md in awkward:
            await store.save(md, MANIFEST, b"m-%d" % md.sequence_nr)
        for md in awkward:
            exact = SnapshotSelectionCriteria(max_sequence_nr=md.sequence_nr,
                                              min_sequence_nr=md.sequence_nr)
            loaded = await store.load(pid, exact)
            assert loaded == self.snapshot(md, b"m-%d" % md.sequence_nr)
            assert type(loaded.metadata.sequence_nr) is int
            assert type(loaded.metadata.timestamp) is float

    async def test_timestamp_bound_holds_under_a_sequence_nr_bound(
        self, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """`max_timestamp` still selects when `max_sequence_nr` is bounded but looser."""
        s2, s3 = metadata[1], metadata[2]
        assert await store.load(pid, _criteria(14, s3.timestamp)) == self.snapshot(s3, b"s-3")
        assert await store.load(pid, _criteria(15, s2.timestamp)) == self.snapshot(s2, b"s-2")
        limited = _criteria(max_timestamp=s2.timestamp).limit(14)
        assert await store.load(pid, limited) == self.snapshot(s2, b"s-2")
        assert await store.load(pid, _criteria(14, metadata[0].timestamp - 1.0)) is None

    async def test_snapshots_survive_close_and_reopen(
        self, tmp_path: Path, store: SnapshotStore, pid: str, metadata: list[SnapshotMetadata]
    ) -> None:
        """Durability: after close and reopen, snapshots and deletions are all kept."""
        await store.delete(metadata[4])
        await store.close()
        reopened = await self.reopen_snapshot_store(tmp_path, store)
        await reopened.start()
        try:
            loaded = await reopened.load(pid, SnapshotSelectionCriteria.latest())
            assert loaded == self.snapshot(metadata[3], b"s-4"), (
                "snapshots saved before close are not loaded after reopening: "
                "create_snapshot_store(tmp_path) must open the same store again, or override "
                "reopen_snapshot_store"
            )
            assert await reopened.load(pid, _criteria(11)) == self.snapshot(metadata[0], b"s-1")
        finally:
            await reopened.close()

    async def test_saves_with_journal_writes_in_between(
        self, tmp_path: Path, store: SnapshotStore, pid: str
    ) -> None:
        """Akka.NET SaveSnapshotSpec: rapid saves with journal writes between them; latest wins."""
        journal = await self.create_journal_beside(tmp_path)
        if journal is None:
            pytest.skip("no journal shares this snapshot store's storage")
        await journal.start()
        try:
            for nr in range(16, 46):
                event = PersistentRepr(pid, nr, MANIFEST, b"e-%d" % nr, "w", BASE_TIMESTAMP + nr)
                assert await journal.write_messages([AtomicWrite((event,))]) == [None]
                await store.save(SnapshotMetadata(pid, nr, BASE_TIMESTAMP + nr), MANIFEST,
                                 b"%d" % nr)
            replayed = [e.sequence_nr async for e in journal.replay_messages(
                pid, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)]
            assert replayed == list(range(16, 46))
        finally:
            await journal.close()
        latest = SnapshotMetadata(pid, 45, BASE_TIMESTAMP + 45)
        assert await store.load(pid, SnapshotSelectionCriteria.latest()) == self.snapshot(
            latest, b"45")
        assert await store.load(pid, _criteria(30)) == self.snapshot(
            SnapshotMetadata(pid, 30, BASE_TIMESTAMP + 30), b"30")

    async def test_close_is_idempotent(self, tmp_path: Path) -> None:
        """`close` may be called twice, and on a store that was never started."""
        idle = await self.create_snapshot_store(tmp_path / "idle")
        await idle.close()
        started = await self.create_snapshot_store(tmp_path)
        await started.start()
        await started.close()
        await started.close()
