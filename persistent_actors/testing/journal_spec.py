"""Plugin TCK for journals: the behaviour every `Journal` implementation must show.

A plugin's test module subclasses `JournalSpec` and overrides `create_journal`::

    class TestSqliteJournal(JournalSpec):
        async def create_journal(self, tmp_path: Path) -> Journal:
            return SqliteJournal({"path": str(tmp_path / "journal.db")})

The cases follow Akka.NET's `JournalSpec` (all 16), the JVM's "highest sequence number without
replaying" and its optional "replay only last", Pekko's deleted-prefix cases, and more that a
broken plugin would otherwise slip through (`tests/test_tck_mutants.py` runs this spec against
deliberately broken journals and shows each one caught): durability across close and reopen,
atomicity and no overwrite even without conflict rejection, one result per write in order,
the upper bound honoured with a count limit, every event's writer uuid, timestamp and tags
stored, separation of awkward persistence ids, streaming a long replay.

Optional behaviour sits behind the `supports_*` capability flags; a plugin documents a limit by
turning one off, and the matching tests are skipped with a reason.

Hooks a subclass provides:

* `create_journal(tmp_path)` (required): a new, not yet started journal.
* `reopen_journal(tmp_path, closed)` (optional): a not yet started journal over the same store
  as `closed`, which was closed. The default calls `create_journal(tmp_path)` again, which is
  right for a store named by `tmp_path` (a file) or shared by every test (a database server);
  a plugin whose `create_journal` makes a fresh empty store each time overrides it (the
  in-memory journal's store lives as long as its object: its spec returns `closed` itself).

The JVM's optional `supportsMetadata` (free-form metadata on an event) has no counterpart here:
`PersistentRepr` carries no such field. What it does carry beyond the payload (writer uuid,
timestamp, tags) every journal must store, and `test_event_metadata_round_trips` checks it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar, Final

import pytest
import pytest_asyncio

from persistent_actors.errors import SequenceConflictError
from persistent_actors.journal import (
    MAX_SEQUENCE_NR,
    AtomicWrite,
    Journal,
    PersistentRepr,
    replay_rows_of,
)

__all__ = ["JournalSpec"]

MANIFEST: Final = "tck.Event"

# Fixed timestamps make stored events comparable by equality after a round-trip.
BASE_TIMESTAMP: Final = 1_700_000_000.25

_pid_counter = itertools.count(1)


def _event(pid: str, sequence_nr: int, writer_uuid: str) -> PersistentRepr:
    return PersistentRepr(
        persistence_id=pid,
        sequence_nr=sequence_nr,
        manifest=MANIFEST,
        payload=f"a-{sequence_nr}".encode(),
        writer_uuid=writer_uuid,
        timestamp=BASE_TIMESTAMP + sequence_nr,
    )


def _write(pid: str, writer_uuid: str, *sequence_nrs: int) -> AtomicWrite:
    return AtomicWrite(tuple(_event(pid, nr, writer_uuid) for nr in sequence_nrs))


class JournalSpec:
    """Plugin TCK: subclass it as `Test...`, override `create_journal`, adjust the flags.

    Before each test, a fresh persistence id `pid` holds events 1..5 (payloads `a-1`..`a-5`),
    written as `AtomicWrite(1)`, `(2)`, `(3)`, `(4, 5)`.
    """

    # Its tests and fixtures are async: marked for pytest-asyncio, so a plugin's test file
    # runs in its default (strict) mode too, with no configuration of the author's.
    pytestmark = pytest.mark.asyncio

    # Whether one AtomicWrite may hold several events (else 4 and 5 are written separately).
    supports_atomic_persist_all_of_several_events: ClassVar[bool] = True
    # Whether a replay window starting inside a deleted prefix yields the survivors in it.
    supports_replay_window_spanning_deleted_prefix: ClassVar[bool] = True
    # Whether a write reusing a stored sequence number is rejected (SequenceConflictError).
    supports_rejecting_sequence_conflicts: ClassVar[bool] = True
    # Whether `from_sequence_nr = -1` replays only the last live event (JVM supportsReplayOnlyLast).
    supports_replay_only_last: ClassVar[bool] = False
    # How many events the streaming test writes and replays.
    long_replay_event_count: ClassVar[int] = 10_000

    async def create_journal(self, tmp_path: Path) -> Journal:
        """Return a new, not yet started journal; `tmp_path` is a fresh per-test folder."""
        msg = f"{type(self).__name__} must override create_journal"
        raise NotImplementedError(msg)

    async def reopen_journal(self, tmp_path: Path, closed: Journal) -> Journal:
        """Return a not yet started journal over the store `closed` used; `closed` is closed.

        The default opens `create_journal(tmp_path)` again (see the module docstring).
        """
        del closed
        return await self.create_journal(tmp_path)

    @pytest.fixture
    def pid(self) -> str:
        """Return a persistence id no other test uses, even against a shared database."""
        return f"p-{next(_pid_counter)}-{uuid.uuid4().hex[:8]}"

    @pytest.fixture
    def writer_uuid(self) -> str:
        """Return the writer identity stamped on the fixture's events."""
        return str(uuid.uuid4())

    @pytest_asyncio.fixture
    async def journal(self, tmp_path: Path, pid: str, writer_uuid: str) -> AsyncIterator[Journal]:
        """Yield a started journal holding events 1..5 of `pid`; close it after the test."""
        journal = await self.create_journal(tmp_path)
        await journal.start()
        try:
            if self.supports_atomic_persist_all_of_several_events:
                tail = [_write(pid, writer_uuid, 4, 5)]
            else:
                tail = [_write(pid, writer_uuid, 4), _write(pid, writer_uuid, 5)]
            writes = [_write(pid, writer_uuid, nr) for nr in (1, 2, 3)] + tail
            assert await journal.write_messages(writes) == [None] * len(writes)
            yield journal
        finally:
            await journal.close()

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    async def replayed(
        journal: Journal,
        pid: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> list[PersistentRepr]:
        """Collect the events a replay yields; recovery's `replay_rows` must yield the same.

        Every replay case thus covers both paths: `replay_messages` and the columns of
        `Journal.replay_rows` (the plugin's own, or the default over `replay_messages`).
        """
        events = [
            event
            async for event in journal.replay_messages(
                pid, from_sequence_nr, to_sequence_nr, max_count
            )
        ]
        pages = [page async for page in replay_rows_of(
            journal, pid, from_sequence_nr, to_sequence_nr, max_count)]
        assert all(len(page) for page in pages), "replay_rows yielded an empty page"
        # Exactly bytes: a driver's memoryview compares equal, but does not pickle to the
        # process of the recovering actor (multiproc-tcp).
        assert all(type(e.payload) is bytes for e in events), \
            "replay_messages must yield payloads of type bytes (convert a memoryview)"
        assert all(type(payload) is bytes for page in pages for payload in page.payloads), \
            "replay_rows must yield payloads of type bytes (convert a memoryview)"
        rows = [row for page in pages for row in zip(
            page.sequence_nrs, page.manifests, page.payloads, page.writer_uuids, strict=True)]
        assert rows == [(e.sequence_nr, e.manifest, e.payload, e.writer_uuid) for e in events], \
            "replay_rows and replay_messages disagree"
        return events

    async def replayed_nrs(
        self,
        journal: Journal,
        pid: str,
        from_sequence_nr: int = 1,
        to_sequence_nr: int = MAX_SEQUENCE_NR,
        max_count: int = MAX_SEQUENCE_NR,
    ) -> list[int]:
        """Replay and return the sequence numbers, checking each event's identity and payload."""
        events = await self.replayed(journal, pid, from_sequence_nr, to_sequence_nr, max_count)
        for event in events:
            assert event.persistence_id == pid
            assert event.payload == f"a-{event.sequence_nr}".encode()
            assert event.manifest == MANIFEST
        return [event.sequence_nr for event in events]

    @staticmethod
    async def highest(journal: Journal, pid: str, from_sequence_nr: int = 1) -> int:
        """Read the highest sequence number the way recovery does (hint `from - 1`)."""
        return await journal.read_highest_sequence_nr(pid, max(0, from_sequence_nr - 1))

    # --- Akka.NET JournalSpec, cases 1-16 ----------------------------------------------------

    async def test_replay_all_messages(self, journal: Journal, pid: str, writer_uuid: str) -> None:
        """Case 1: (1, max, max) replays 1..5 exactly as written; highest is 5."""
        events = await self.replayed(journal, pid)
        assert events == [_event(pid, nr, writer_uuid) for nr in range(1, 6)]
        assert await self.highest(journal, pid) == 5

    async def test_replay_using_lower_sequence_number_bound(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 2: from 3 replays 3..5; highest is 5."""
        assert await self.replayed_nrs(journal, pid, 3) == [3, 4, 5]
        assert await self.highest(journal, pid, 3) == 5

    async def test_replay_using_upper_sequence_number_bound(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 3: to 3 replays 1..3; the highest is not capped by `to` and stays 5."""
        assert await self.replayed_nrs(journal, pid, 1, 3) == [1, 2, 3]
        assert await self.highest(journal, pid) == 5

    async def test_replay_using_count_limit(self, journal: Journal, pid: str) -> None:
        """Case 4: max 3 replays 1..3; highest is 5."""
        assert await self.replayed_nrs(journal, pid, 1, MAX_SEQUENCE_NR, 3) == [1, 2, 3]
        assert await self.highest(journal, pid) == 5

    async def test_replay_using_lower_and_upper_bound(self, journal: Journal, pid: str) -> None:
        """Case 5: (2, 3) replays 2..3."""
        assert await self.replayed_nrs(journal, pid, 2, 3) == [2, 3]

    async def test_replay_using_bounds_and_count_limit(self, journal: Journal, pid: str) -> None:
        """Case 6: (2, 5, max 2) replays 2..3."""
        assert await self.replayed_nrs(journal, pid, 2, 5, 2) == [2, 3]

    async def test_replay_single_message_when_lower_equals_upper(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 7: (2, 2) replays only 2."""
        assert await self.replayed_nrs(journal, pid, 2, 2) == [2]

    async def test_replay_single_message_when_count_limit_is_one(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 8: (2, 4, max 1) replays only 2."""
        assert await self.replayed_nrs(journal, pid, 2, 4, 1) == [2]

    async def test_no_replay_when_count_limit_is_zero(self, journal: Journal, pid: str) -> None:
        """Case 9: (2, 4, max 0) replays nothing; highest is 5."""
        assert await self.replayed_nrs(journal, pid, 2, 4, 0) == []
        assert await self.highest(journal, pid, 2) == 5

    async def test_no_replay_when_lower_bound_above_upper(self, journal: Journal, pid: str) -> None:
        """Case 10: (3, 2) replays nothing; highest is 5."""
        assert await self.replayed_nrs(journal, pid, 3, 2) == []
        assert await self.highest(journal, pid, 3) == 5

    async def test_no_replay_for_persistence_id_without_messages(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 11: an id that never wrote replays nothing and has highest 0."""
        assert await self.replayed_nrs(journal, pid + "-unknown") == []
        assert await self.highest(journal, pid + "-unknown") == 0

    async def test_no_replay_of_permanently_deleted_messages(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 12: after deleting to 3 (inclusive), a full replay yields only 4 and 5."""
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid) == [4, 5]

    async def test_highest_sequence_nr_survives_deletion(self, journal: Journal, pid: str) -> None:
        """Case 13: after deleting to 3, the replay is 4..5 and the highest is still 5."""
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid) == [4, 5]
        assert await self.highest(journal, pid) == 5

    async def test_highest_sequence_nr_survives_journal_cleanup(
        self, journal: Journal, pid: str
    ) -> None:
        """Case 14: deleting to MAX_SEQUENCE_NR removes every event; the highest stays 5."""
        await journal.delete_messages_to(pid, MAX_SEQUENCE_NR)
        assert await self.replayed_nrs(journal, pid) == []
        assert await self.highest(journal, pid) == 5
        assert await self.highest(journal, pid, 6) == 5

    async def test_serialize_events(self, journal: Journal, pid: str) -> None:
        """Case 15: payload bytes, manifest, tags, writer uuid and timestamp round-trip exactly."""
        rich = PersistentRepr(
            persistence_id=pid,
            sequence_nr=6,
            manifest="módulo:Événement\u65e5",
            # Every byte value, NUL and invalid UTF-8 included: stored as bytes, never decoded.
            payload=bytes(range(256)) + b"\x00\xff\xfe",
            writer_uuid=str(uuid.uuid4()),
            timestamp=1_712_345_678.123456,
            tags=("tag-a", "tág-b"),
        )
        bare = PersistentRepr(persistence_id=pid, sequence_nr=7, manifest="", payload=b"")
        assert await journal.write_messages([AtomicWrite((rich,)), AtomicWrite((bare,))]) == [
            None,
            None,
        ]
        assert await self.replayed(journal, pid, 6) == [rich, bare]
        assert await self.highest(journal, pid, 6) == 7

    async def test_reject_sequence_conflict_in_batch(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """Case 16: in a batch (6, 3, 7) only the conflicting write is rejected, in order."""
        if not self.supports_rejecting_sequence_conflicts:
            pytest.skip("plugin does not reject sequence-number conflicts")
        impostor = AtomicWrite((PersistentRepr(pid, 3, MANIFEST, b"impostor", writer_uuid),))
        results = await journal.write_messages(
            [_write(pid, writer_uuid, 6), impostor, _write(pid, writer_uuid, 7)]
        )
        assert len(results) == 3
        assert results[0] is None
        assert isinstance(results[1], SequenceConflictError)
        assert results[2] is None
        # The rejected write overwrote nothing.
        assert await self.replayed(journal, pid, 3, 3) == [_event(pid, 3, writer_uuid)]
        assert await self.replayed_nrs(journal, pid) == [1, 2, 3, 4, 5, 6, 7]
        assert await self.highest(journal, pid) == 7

    async def test_reject_conflict_between_writes_of_one_batch(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """Two writes of one batch claiming sequence number 6: the first wins."""
        if not self.supports_rejecting_sequence_conflicts:
            pytest.skip("plugin does not reject sequence-number conflicts")
        impostor = AtomicWrite((PersistentRepr(pid, 6, MANIFEST, b"impostor", writer_uuid),))
        results = await journal.write_messages([_write(pid, writer_uuid, 6), impostor])
        assert results[0] is None
        assert isinstance(results[1], SequenceConflictError)
        assert await self.replayed(journal, pid, 6) == [_event(pid, 6, writer_uuid)]

    # --- JVM TCK -----------------------------------------------------------------------------

    async def test_read_highest_sequence_nr_without_replaying(
        self, journal: Journal, pid: str
    ) -> None:
        """JVM: (0, 0, max 1) replays nothing, yet the highest is 5."""
        assert await self.replayed_nrs(journal, pid, 0, 0, 1) == []
        assert await self.highest(journal, pid, 0) == 5

    # --- Pekko: replay windows around a deleted prefix (events 1..3 deleted) ------------------

    async def test_replay_from_last_deleted_sequence_nr(self, journal: Journal, pid: str) -> None:
        """Pekko: with 1..3 deleted, from 3 replays the survivors 4, 5; highest 5."""
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid, 3) == [4, 5]
        assert await self.highest(journal, pid, 3) == 5

    async def test_no_replay_when_upper_bound_within_deleted_prefix(
        self, journal: Journal, pid: str
    ) -> None:
        """Pekko: with 1..3 deleted, (1, 2) replays nothing; highest 5."""
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid, 1, 2) == []
        assert await self.highest(journal, pid) == 5

    async def test_no_replay_when_upper_bound_equals_last_deleted(
        self, journal: Journal, pid: str
    ) -> None:
        """Pekko: with 1..3 deleted, (1, 3) replays nothing; highest 5."""
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid, 1, 3) == []
        assert await self.highest(journal, pid) == 5

    async def test_replay_from_first_surviving_sequence_nr(
        self, journal: Journal, pid: str
    ) -> None:
        """Pekko: with 1..3 deleted, from 4 replays 4, 5."""
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid, 4) == [4, 5]

    async def test_replay_window_spanning_deleted_prefix(self, journal: Journal, pid: str) -> None:
        """Pekko (optional): with 1..3 deleted, (1, 4) replays only 4; highest 5."""
        if not self.supports_replay_window_spanning_deleted_prefix:
            pytest.skip("plugin does not replay windows that start in a deleted prefix")
        await journal.delete_messages_to(pid, 3)
        assert await self.replayed_nrs(journal, pid, 1, 4) == [4]
        assert await self.highest(journal, pid) == 5

    # --- further cases -----------------------------------------------------------------------

    async def test_atomic_write_is_all_or_nothing_on_conflict(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """An AtomicWrite (6, 7, 8) conflicting at 7 stores none of its events."""
        if not (
            self.supports_rejecting_sequence_conflicts
            and self.supports_atomic_persist_all_of_several_events
        ):
            pytest.skip("needs atomic multi-event writes and sequence-conflict rejection")
        assert await journal.write_messages([_write(pid, writer_uuid, 7)]) == [None]
        results = await journal.write_messages([_write(pid, writer_uuid, 6, 7, 8)])
        assert len(results) == 1
        assert isinstance(results[0], SequenceConflictError)
        assert await self.replayed_nrs(journal, pid) == [1, 2, 3, 4, 5, 7]
        assert await self.highest(journal, pid) == 7
        # The rejected events' sequence numbers are still free.
        assert await journal.write_messages(
            [_write(pid, writer_uuid, 6), _write(pid, writer_uuid, 8)]
        ) == [None, None]
        assert await self.replayed_nrs(journal, pid) == [1, 2, 3, 4, 5, 6, 7, 8]

    async def test_write_of_no_atomic_writes_returns_empty_list(self, journal: Journal) -> None:
        """An empty batch is a no-op with an empty result list."""
        assert await journal.write_messages([]) == []

    async def test_batch_of_many_persistence_ids(self, journal: Journal, pid: str) -> None:
        """One batch may interleave writes of several ids (group commit); each id stays ordered."""
        other = pid + "-other"
        writes = [_write(other, "w", 1), _write(pid, "w", 6), _write(other, "w", 2, 3)]
        assert await journal.write_messages(writes) == [None, None, None]
        assert await self.replayed_nrs(journal, pid) == [1, 2, 3, 4, 5, 6]
        assert await self.replayed_nrs(journal, other) == [1, 2, 3]

    async def test_persistence_ids_stay_separate(self, journal: Journal, pid: str) -> None:
        """Awkward ids (quotes, unicode, SQL, LIKE wildcards) never see each other's events."""
        suffixes = [
            "-it's",
            '-"double"',
            "-ünïcødé-日本語-🙂",
            "'; DROP TABLE journal; --",
            "-%",
            "-_",
            "-back\\slash",
            " ",
        ]
        ids = [pid + suffix for suffix in suffixes]
        for index, other in enumerate(ids):
            writes = [_write(other, "w", nr) for nr in range(1, index + 2)]
            assert await journal.write_messages(writes) == [None] * len(writes)
        await journal.delete_messages_to(ids[0], MAX_SEQUENCE_NR)
        for index, other in enumerate(ids):
            expected = [] if index == 0 else list(range(1, index + 2))
            assert await self.replayed_nrs(journal, other) == expected
            assert await self.highest(journal, other) == index + 1
        assert await self.replayed_nrs(journal, pid) == [1, 2, 3, 4, 5]
        assert await self.highest(journal, pid) == 5

    async def test_deleting_an_id_spares_the_ids_it_is_a_prefix_of(
        self, journal: Journal, pid: str
    ) -> None:
        """Deleting ``cart-1`` leaves ``cart-10``: ids match exactly, never as prefixes."""
        longer = [pid + "0", pid + "-1", pid + " "]
        for other in longer:
            writes = [_write(other, "w", nr) for nr in (1, 2, 3)]
            assert await journal.write_messages(writes) == [None] * len(writes)
        await journal.delete_messages_to(pid, MAX_SEQUENCE_NR)
        assert await self.replayed_nrs(journal, pid) == []
        for other in longer:
            assert await self.replayed_nrs(journal, other) == [1, 2, 3]
            assert await self.highest(journal, other) == 3

    async def test_write_after_deleting_everything_continues(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """After deleting every event, new events continue after the highest and replay."""
        await journal.delete_messages_to(pid, MAX_SEQUENCE_NR)
        assert await journal.write_messages([_write(pid, writer_uuid, 6)]) == [None]
        assert await self.replayed_nrs(journal, pid) == [6]
        assert await self.highest(journal, pid) == 6

    async def test_delete_is_idempotent_and_tolerates_unknown_ids(
        self, journal: Journal, pid: str
    ) -> None:
        """Deleting twice, deleting below what was deleted, or an unknown id, all succeed."""
        await journal.delete_messages_to(pid, 3)
        await journal.delete_messages_to(pid, 3)
        await journal.delete_messages_to(pid, 2)
        await journal.delete_messages_to(pid + "-unknown", 10)
        assert await self.replayed_nrs(journal, pid) == [4, 5]
        assert await self.highest(journal, pid + "-unknown") == 0

    async def test_replay_streams_many_events_in_order(self, journal: Journal, pid: str) -> None:
        """A long replay yields every event once, in order, and honours bounds and count."""
        count = self.long_replay_event_count
        many = pid + "-many"
        batch = 1_000
        for start in range(1, count + 1, batch):
            writes = [_write(many, "w", nr) for nr in range(start, min(start + batch, count + 1))]
            assert await journal.write_messages(writes) == [None] * len(writes)
        expected = 1
        async for event in journal.replay_messages(many, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR):
            assert event.sequence_nr == expected
            assert event.payload == f"a-{expected}".encode()
            expected += 1
        assert expected == count + 1
        pages = [page async for page in replay_rows_of(
            journal, many, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)]
        assert [nr for page in pages for nr in page.sequence_nrs] == list(range(1, count + 1))
        assert all(len(page) for page in pages), "replay_rows yielded an empty page"
        assert all(type(payload) is bytes for page in pages for payload in page.payloads), \
            "replay_rows must yield payloads of type bytes (convert a memoryview)"
        half = count // 2
        window = await self.replayed_nrs(journal, many, half, MAX_SEQUENCE_NR, count // 4)
        assert window == list(range(half, half + count // 4))
        assert await self.highest(journal, many) == count

    async def test_replay_stopped_early_leaves_journal_usable(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """A consumer may stop a replay midway (recovery failed); the journal keeps working."""
        replay = journal.replay_messages(pid, 1, MAX_SEQUENCE_NR, MAX_SEQUENCE_NR)
        first = await anext(replay)
        assert first.sequence_nr == 1
        aclose = getattr(replay, "aclose", None)
        if aclose is not None:
            await aclose()
        assert await journal.write_messages([_write(pid, writer_uuid, 6)]) == [None]
        assert await self.replayed_nrs(journal, pid) == [1, 2, 3, 4, 5, 6]

    async def test_replay_using_upper_bound_with_count_limit(
        self, journal: Journal, pid: str
    ) -> None:
        """The upper bound holds when a count limit larger than the window is given too."""
        assert await self.replayed_nrs(journal, pid, 1, 3, 4) == [1, 2, 3]
        assert await self.replayed_nrs(journal, pid, 2, 3, 10) == [2, 3]
        assert await self.replayed_nrs(journal, pid, 4, 4, 2) == [4]
        assert await self.highest(journal, pid) == 5

    async def test_replay_only_last(self, journal: Journal, pid: str) -> None:
        """JVM (optional): `from_sequence_nr = -1` replays only the last live event."""
        if not self.supports_replay_only_last:
            pytest.skip("plugin does not replay only the last event for from_sequence_nr = -1")
        assert await self.replayed_nrs(journal, pid, -1) == [5]
        assert await self.replayed_nrs(journal, pid, -1, 3) == [3]
        await journal.delete_messages_to(pid, MAX_SEQUENCE_NR)
        assert await self.replayed_nrs(journal, pid, -1) == []
        assert await self.highest(journal, pid) == 5

    async def test_events_survive_close_and_reopen(
        self, tmp_path: Path, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """Durability: after close and reopen, events, deletions and the highest are all kept."""
        await journal.delete_messages_to(pid, 2)
        await journal.close()
        reopened = await self.reopen_journal(tmp_path, journal)
        await reopened.start()
        try:
            events = await self.replayed(reopened, pid)
            assert events == [_event(pid, nr, writer_uuid) for nr in (3, 4, 5)], (
                "events stored before close are not replayed after reopening: create_journal"
                "(tmp_path) must open the same store again, or override reopen_journal"
            )
            assert await self.highest(reopened, pid) == 5
            await reopened.delete_messages_to(pid, MAX_SEQUENCE_NR)
            assert await reopened.write_messages([_write(pid, writer_uuid, 6)]) == [None]
        finally:
            await reopened.close()
        again = await self.reopen_journal(tmp_path, reopened)
        await again.start()
        try:
            assert await self.replayed(again, pid) == [_event(pid, 6, writer_uuid)]
            assert await self.highest(again, pid) == 6
        finally:
            await again.close()

    async def test_overlapping_atomic_write_is_not_stored_and_overwrites_nothing(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """Any plugin, rejecting conflicts or not: a write (5', 6, 7) overlapping stored event 5.

        It may be rejected (an exception in its result) or fail the call (raise), but it is
        never reported stored: event 5 keeps its payload, and 6 and 7 are not stored either,
        since an AtomicWrite is stored whole or not at all.
        """
        impostor = PersistentRepr(pid, 5, MANIFEST, b"impostor", writer_uuid)
        overlapping = AtomicWrite((impostor, _event(pid, 6, writer_uuid),
                                   _event(pid, 7, writer_uuid)))
        try:
            results: list[BaseException | None] | None = await journal.write_messages(
                [overlapping])
        except Exception:  # noqa: BLE001 - failing the whole call is an allowed outcome
            results = None
        if results is not None:
            assert len(results) == 1
            assert results[0] is not None, "a write overlapping stored events was reported stored"
        assert await self.replayed(journal, pid) == [
            _event(pid, nr, writer_uuid) for nr in range(1, 6)]
        assert await self.highest(journal, pid) == 5

    async def test_write_results_line_up_with_writes(
        self, journal: Journal, pid: str, writer_uuid: str
    ) -> None:
        """One result per AtomicWrite, in the order of the writes, in a mixed batch."""
        other = pid + "-mixed"
        writes = [
            _write(other, writer_uuid, 1),
            _write(pid, writer_uuid, 6),
            _write(other, writer_uuid, 2, 3),
            _write(pid, writer_uuid, 7),
            _write(other, writer_uuid, 4),
            _write(pid, writer_uuid, 8, 9),
        ]
        conflicting: set[int] = set()
        if self.supports_rejecting_sequence_conflicts:
            # Writes reusing stored sequence numbers (6: stored earlier in this batch), at
            # uneven positions, so results returned in reverse cannot pass either.
            conflicting = {0, 3, 4}
            for position, nr in zip(sorted(conflicting), (2, 6, 4), strict=True):
                writes.insert(position, _write(pid, writer_uuid, nr))
        results = await journal.write_messages(writes)
        assert len(results) == len(writes)
        for position, result in enumerate(results):
            if position in conflicting:
                assert isinstance(result, SequenceConflictError), (position, result)
            else:
                assert result is None, (position, result)
        assert await self.replayed_nrs(journal, pid) == list(range(1, 10))
        assert await self.replayed_nrs(journal, other) == [1, 2, 3, 4]

    async def test_event_metadata_round_trips(self, journal: Journal, pid: str) -> None:
        """Every event of a multi-event write keeps its own writer uuid, timestamp and tags."""
        first = PersistentRepr(pid, 6, MANIFEST, b"a-6", "writer-é-1", 1_712_345_678.5,
                               ("x", "y"))
        second = PersistentRepr(pid, 7, MANIFEST, b"a-7", str(uuid.uuid4()), 1_712_345_679.25)
        third = PersistentRepr(pid, 8, MANIFEST, b"a-8", "", 0.0, ("z",))
        if self.supports_atomic_persist_all_of_several_events:
            writes = [AtomicWrite((first, second, third))]
        else:
            writes = [AtomicWrite((e,)) for e in (first, second, third)]
        assert await journal.write_messages(writes) == [None] * len(writes)
        assert await self.replayed(journal, pid, 6) == [first, second, third]

    async def test_close_is_idempotent(self, tmp_path: Path) -> None:
        """`close` may be called twice, and on a journal that was never started."""
        journal = await self.create_journal(tmp_path / "idle")
        await journal.close()
        started = await self.create_journal(tmp_path)
        await started.start()
        await started.close()
        await started.close()
