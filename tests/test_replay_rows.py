"""`Journal.replay_rows`, recovery's path: which implementation runs, and its page type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from journal_plugins.inmem import InmemJournal
from journal_plugins.sqlite import SqliteJournal
from persistent_actors.journal import (
    MAX_SEQUENCE_NR,
    AtomicWrite,
    PersistentRepr,
    ReplayedRows,
    replay_rows_of,
)


class _Doubling(SqliteJournal):
    """A third-party subclass that changes `replay_messages` only (as a wrapper would)."""

    async def replay_messages(self, persistence_id: str, from_sequence_nr: int,
                              to_sequence_nr: int, max_count: int) -> AsyncIterator[PersistentRepr]:
        async for repr_ in super().replay_messages(persistence_id, from_sequence_nr,
                                                   to_sequence_nr, max_count):
            yield PersistentRepr(persistence_id, repr_.sequence_nr, repr_.manifest,
                                 repr_.payload * 2, repr_.writer_uuid)


def _write(nr: int) -> AtomicWrite:
    return AtomicWrite((PersistentRepr("p", nr, "m", f"e{nr}".encode(), "w"),))


async def _rows(journal: SqliteJournal | InmemJournal) -> list[tuple[int, str, bytes, str]]:
    return [row async for page in replay_rows_of(journal, "p", 1, MAX_SEQUENCE_NR, 10)
            for row in zip(page.sequence_nrs, page.manifests, page.payloads, page.writer_uuids,
                           strict=True)]


async def test_a_subclass_overriding_only_replay_messages_is_replayed_through_it(
        tmp_path: Path) -> None:
    journal = _Doubling({"path": f"{tmp_path}/j.db"})
    await journal.start()
    try:
        assert await journal.write_messages([_write(1), _write(2)]) == [None, None]
        assert await _rows(journal) == [(1, "m", b"e1e1", "w"), (2, "m", b"e2e2", "w")]
        plain = SqliteJournal({"path": f"{tmp_path}/j.db"})
        await plain.start()
        try:
            assert await _rows(plain) == [(1, "m", b"e1", "w"), (2, "m", b"e2", "w")]
        finally:
            await plain.close()
    finally:
        await journal.close()


async def test_the_default_pages_what_replay_messages_yields() -> None:
    journal = InmemJournal()
    await journal.start()
    assert await journal.write_messages([_write(nr) for nr in range(1, 1202)]) == [None] * 1201
    pages = [page async for page in journal.replay_rows("p", 1, MAX_SEQUENCE_NR,
                                                        MAX_SEQUENCE_NR)]
    assert [len(page) for page in pages] == [500, 500, 201]
    assert pages[2].sequence_nrs[-1] == 1201


def test_replayed_rows_columns_must_line_up() -> None:
    with pytest.raises(ValueError, match="same length"):
        ReplayedRows([1, 2], ["m"], [b"", b""], ["w", "w"])
    rows = ReplayedRows.from_tuples([(1, "m", b"a", "w"), (2, "n", b"b", "v")])
    assert len(rows) == 2
    assert rows.slice(1).reprs("p") == [PersistentRepr("p", 2, "n", b"b", "v")]
    assert len(ReplayedRows.from_tuples([])) == 0
