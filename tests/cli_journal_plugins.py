"""A SQLite journal that notes every atomic write it is asked for (tests/test_cli.py)."""

from __future__ import annotations

from collections.abc import Sequence

from journal_plugins.sqlite import SqliteJournal
from persistent_actors.journal import AtomicWrite


class WriteNotingJournal(SqliteJournal):
    """Appends one line per `write_messages` call to ``<path>-writes``: its atomic writes as
    ``id lowest..highest``, separated by spaces."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        with open(f"{self.settings['path']}-writes", "a", encoding="utf-8") as f:
            f.write(" ".join(f"{w.persistence_id} {w.lowest_sequence_nr}..{w.highest_sequence_nr}"
                             for w in writes) + "\n")
        return await super().write_messages(writes)
