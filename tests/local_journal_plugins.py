"""SQLite journals that note which process wrote each batch (tests/test_local_journal.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from journal_plugins.sqlite import SqliteJournal
from persistent_actors.journal import AtomicWrite


class PidNotingJournal(SqliteJournal):
    """Appends the writing process's pid to ``<path>-pids`` before each batch.

    Declares `concurrent_writers` in its own body: shared hosts write with it themselves.
    """

    def concurrent_writers(self) -> bool:
        return super().concurrent_writers()

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        with open(f"{self.settings['path']}-pids", "a", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        return await super().write_messages(writes)


class UndeclaredPidNotingJournal(PidNotingJournal):
    """The same, but its own body does not declare `concurrent_writers`: not inherited."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        return await super().write_messages(writes)
