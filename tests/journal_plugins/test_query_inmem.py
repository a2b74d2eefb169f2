"""The in-memory journal's read side against the query TCK, plus the cases only it has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import ActorSystem, ConfigError, PluginError
from persistent_actors.journal import AtomicWrite, Journal, PersistentRepr
from persistent_actors.query import SyncReadJournal, open_read_journal
from persistent_actors.testing.query_spec import (
    MULTIPROC_CASES,
    QueryTestActor,
    ReadJournalSpec,
    only_cases,
)


class TestInmemReadJournal(ReadJournalSpec):
    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "inmem"}


@pytest.mark.multiproc
@only_cases(MULTIPROC_CASES)
class TestInmemReadJournalMultiproc(ReadJournalSpec):
    """The cases that cross processes, with every actor in its own OS process."""

    base = "multiproc-tcp"
    concurrent_writers = 4  # every command crosses processes here: a smaller, same-shape load
    concurrent_events = 15

    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "inmem"}


# --- what only a journal inside the actor system has ---------------------------------------------


class NoQueryJournal(Journal):
    """A journal that offers the read side nothing (it is no EventLog)."""

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        return [None] * len(writes)

    async def replay_messages(self, persistence_id: str, from_sequence_nr: int,
                              to_sequence_nr: int, max_count: int,
                              ) -> AsyncIterator[PersistentRepr]:
        return
        yield

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        return 0

    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        pass


def test_the_in_memory_journal_is_queried_through_its_system_only() -> None:
    with pytest.raises(PluginError, match=r"system\.read_journal\(\)"):
        open_read_journal({"persistence": {"journal": {"plugin": "inmem"}}})


def test_a_journal_without_an_event_log_says_it_supports_no_queries() -> None:
    spec = f"{__name__}:NoQueryJournal"
    with ActorSystem("plain", config={"persistence": {"journal": {"plugin": spec}}}) as system:
        with pytest.raises(PluginError, match="does not support queries"):
            system.read_journal()
        with pytest.raises(ConfigError, match="'nope'"):
            system.read_journal("nope")


def test_blocking_read_journal_for_scripts(system: ActorSystem) -> None:
    ref = system.actor_of(QueryTestActor, "s", name="s")
    assert ref.ask("s-1 green", timeout=10) == "s-1 green-done"
    with SyncReadJournal(system.read_journal()) as journal:
        assert [e.event for e in journal.current_events_by_persistence_id("s")] == ["s-1 green"]
        assert journal.current_events_by_tag("green") == []  # no tagger bound here
        live = journal.events_by_persistence_id("s", 0, 2)
        assert next(live).event == "s-1 green"
        assert ref.ask("s-2", timeout=10) == "s-2-done"
        assert [e.event for e in live] == ["s-2"]  # ends at to_sequence_nr = 2
        assert journal.current_persistence_ids() == ["s"]
