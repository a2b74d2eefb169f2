"""The SQLite journal's read side against the query TCK, plus the cases only it has."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from journal_plugins._sqlite_db import commit_signal_key
from journal_plugins.sqlite import SqliteJournal
from journal_plugins.sqlite_query import SqliteEventLog
from persistent_actors import ActorSystem, ConfigError, PluginError
from persistent_actors._serialization import default_serializer
from persistent_actors.event_log import change_signal
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.query import (
    EventEnvelope,
    EventLogReadJournal,
    SyncReadJournal,
    open_read_journal,
)
from persistent_actors.testing.query_spec import (
    MULTIPROC_CASES,
    QueryTestActor,
    ReadJournalSpec,
    only_cases,
)

ROOT = Path(__file__).resolve().parents[2]


class TestSqliteReadJournal(ReadJournalSpec):
    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "sqlite", "path": str(tmp_path / "events.db")}


@pytest.mark.multiproc
@only_cases(MULTIPROC_CASES)
class TestSqliteReadJournalMultiproc(ReadJournalSpec):
    """The cases that cross processes, with every actor in its own OS process."""

    base = "multiproc-tcp"
    concurrent_writers = 4  # every command crosses processes here: a smaller, same-shape load
    concurrent_events = 15

    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "sqlite", "path": str(tmp_path / "events.db")}


# --- what only a file-backed log can do -----------------------------------------------------------


def _events(pid: str, first: int, count: int, *tags: str) -> AtomicWrite:
    return AtomicWrite(tuple(
        PersistentRepr(pid, nr, "", default_serializer.to_binary(f"{pid}-{nr}")[1], "w",
                       1.0 + nr, tags)
        for nr in range(first, first + count)))


async def _started(path: Path) -> SqliteJournal:
    journal = SqliteJournal({"path": str(path)})
    await journal.start()
    return journal


def test_a_consumer_process_reads_the_file_without_an_actor_system(tmp_path: Path) -> None:
    config = {"persistence": {"journal": {"plugin": "sqlite", "path": str(tmp_path / "e.db")}}}
    with ActorSystem("writer", config=config) as system:
        ref = system.actor_of(QueryTestActor, "cart-1", name="cart-1")
        for text in ("banana", "apple"):
            assert ref.ask(text, timeout=10) == f"{text}-done"
    # The writer is gone; a script reads with the blocking API and no actor system at all.
    with SyncReadJournal(open_read_journal(config, page_size=1)) as journal:
        envelopes = journal.current_events_by_persistence_id("cart-1")
        assert [(e.sequence_nr, e.event) for e in envelopes] == [(1, "banana"), (2, "apple")]
        assert journal.current_persistence_ids() == ["cart-1"]
        assert [e.event for e in journal.current_all_events(envelopes[0].offset)] == ["apple"]
        live = journal.all_events()
        assert [next(live).event, next(live).event] == ["banana", "apple"]
        live.close()


def test_closing_a_sync_read_journal_ends_the_live_iterations_of_other_threads(
        tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    asyncio.run(_write_then_close(path))
    config = {"persistence": {"journal": {"plugin": "sqlite", "path": str(path)}}}
    sync = SyncReadJournal(open_read_journal(config))
    seen: list[int] = []

    def consume() -> None:
        seen.extend(e.sequence_nr for e in sync.events_by_tag("t"))  # blocks after 2 events

    consumer = threading.Thread(target=consume)
    consumer.start()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    sync.close()
    consumer.join(timeout=10)
    assert not consumer.is_alive()  # it hung for ever: the loop stopped under its wait
    assert seen == [1, 2]
    with pytest.raises(PluginError, match="closed"):
        sync.current_persistence_ids()


def test_an_interrupt_in_a_live_iteration_propagates_as_itself(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    asyncio.run(_write_then_close(path))
    config = {"persistence": {"journal": {"plugin": "sqlite", "path": str(path)}}}
    with SyncReadJournal(open_read_journal(config)) as sync:
        # Ctrl-C while blocked: simulated by a timer signal raising KeyboardInterrupt.
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGALRM, interrupt)
        seen: list[int] = []
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with pytest.raises(KeyboardInterrupt):  # was RuntimeError (aclose while running)
                seen.extend(envelope.sequence_nr for envelope in sync.events_by_tag("t"))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert seen == [1, 2]
        assert sync.current_persistence_ids() == ["p"]  # the journal is still usable


async def _write_then_close(path: Path) -> None:
    journal = await _started(path)
    try:
        assert await journal.write_messages([_events("p", 1, 2, "t")]) == [None]
    finally:
        await journal.close()


async def test_reader_never_creates_the_file_and_sees_it_appear(tmp_path: Path) -> None:
    path = tmp_path / "later.db"
    async with EventLogReadJournal(SqliteEventLog({"path": str(path)})) as journal:
        assert [e async for e in journal.current_all_events()] == []
        assert [p async for p in journal.current_persistence_ids()] == []
        live = journal.all_events()
        pending = asyncio.ensure_future(anext(live))
        with pytest.raises(TimeoutError):  # nothing to read yet, and it keeps waiting
            await asyncio.wait_for(asyncio.shield(pending), 0.3)
        assert not path.exists()
        writer = await _started(path)
        try:
            await writer.write_messages([_events("late", 1, 1, "t")])
            envelope = await asyncio.wait_for(pending, 10)
            assert (envelope.persistence_id, envelope.event, envelope.tags) == (
                "late", "late-1", ("t",))
        finally:
            await live.aclose()
            await writer.close()


async def test_live_queries_are_exact_under_writers_on_separate_connections(
    tmp_path: Path,
) -> None:
    """Several connections commit concurrently (each its own thread and loop), as several
    writer processes would; live queries paging 3 events at a time miss and repeat nothing."""
    path = tmp_path / "shared.db"
    await (await _started(path)).close()  # the schema exists before the readers start
    writers, batches = 4, 40
    expected = {(f"w{w}", nr) for w in range(writers) for nr in range(1, batches * 2 + 1)}

    def write(index: int) -> None:
        async def run() -> None:
            journal = await _started(path)
            try:
                for batch in range(batches):
                    tags = ("even",) if batch % 2 == 0 else ("odd",)
                    result = await journal.write_messages(
                        [_events(f"w{index}", batch * 2 + 1, 2, "all", *tags)])
                    assert result == [None]
            finally:
                await journal.close()

        asyncio.run(run())

    async with EventLogReadJournal(SqliteEventLog({"path": str(path)}), page_size=3,
                                   refresh_interval=30) as journal:

        async def collect(source: Any, count: int) -> list[EventEnvelope]:
            got: list[EventEnvelope] = []
            async with contextlib.aclosing(source):
                async for envelope in source:
                    got.append(envelope)
                    if len(got) == count:
                        return got
            return got

        readers = [asyncio.ensure_future(collect(journal.all_events(), len(expected))),
                   asyncio.ensure_future(collect(journal.events_by_tag("all"), len(expected))),
                   asyncio.ensure_future(collect(journal.events_by_tag("even"),
                                                 len(expected) // 2))]
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(writers) as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, write, i) for i in range(writers)))
        results = await asyncio.wait_for(asyncio.gather(*readers), 60)
        stored = [e async for e in journal.current_all_events()]
    for got in results:
        keys = [(e.persistence_id, e.sequence_nr) for e in got]
        assert len(set(keys)) == len(keys)
        offsets = [e.offset.ordering for e in got]
        assert offsets == sorted(set(offsets))
    assert {(e.persistence_id, e.sequence_nr) for e in results[0]} == expected
    assert [e.offset for e in results[0]] == [e.offset for e in stored]
    assert [e.offset for e in results[1]] == [e.offset for e in stored]
    assert {(e.persistence_id, (e.sequence_nr - 1) // 2 % 2) for e in results[2]} == {
        (f"w{w}", 0) for w in range(writers)}


async def test_live_query_wakes_on_a_commit_from_another_process(tmp_path: Path) -> None:
    """No in-process signal fires: the reader notices the commit through PRAGMA data_version."""
    path = tmp_path / "ipc.db"
    await (await _started(path)).close()
    key = commit_signal_key(path)
    generation = change_signal.generation(key)
    script = (
        "import asyncio, sys\n"
        "from journal_plugins.sqlite import SqliteJournal\n"
        "from tests.journal_plugins.test_query_sqlite import _events\n"
        "async def main():\n"
        "    j = SqliteJournal({'path': sys.argv[1]})\n"
        "    await j.start()\n"
        "    assert await j.write_messages([_events('other', 1, 2, 'ipc')]) == [None]\n"
        "    await j.close()\n"
        "asyncio.run(main())\n"
    )
    async with EventLogReadJournal(SqliteEventLog({"path": str(path)}),
                                   refresh_interval=30) as journal:
        live = journal.events_by_tag("ipc")
        pending = asyncio.ensure_future(anext(live))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(path),
                                                    cwd=ROOT)
        assert await proc.wait() == 0
        try:
            first = await asyncio.wait_for(pending, 10)
            second = await asyncio.wait_for(anext(live), 10)
        finally:
            await live.aclose()
    assert [first.event, second.event] == ["other-1", "other-2"]
    assert change_signal.generation(key) == generation  # woken by data_version alone


async def test_persistence_ids_beyond_one_scan_window(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    writer = await _started(path)
    try:
        await writer.write_messages([_events("first", 1, 10_050)])
        await writer.write_messages([_events("second", 1, 1)])
        async with EventLogReadJournal(SqliteEventLog({"path": str(path)})) as journal:
            assert [p async for p in journal.current_persistence_ids()] == ["first", "second"]
            live = journal.persistence_ids()
            try:
                assert [await anext(live), await anext(live)] == ["first", "second"]
            finally:
                await live.aclose()
    finally:
        await writer.close()


def test_sqlite_event_log_rejects_bad_settings_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'path'"):
        SqliteEventLog({})
    with pytest.raises(ConfigError, match="poll_interval"):
        SqliteEventLog({"path": str(tmp_path / "x.db")}, poll_interval=0)
    with pytest.raises(ValueError, match="page_size"):
        EventLogReadJournal(SqliteEventLog({"path": str(tmp_path / "x.db")}), page_size=0)


async def test_queries_started_together_share_one_connection_and_close_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "together.db"
    writer = await _started(path)
    await writer.write_messages([_events("a", 1, 3, "t")])
    await writer.close()
    before = set(threading.enumerate())
    journal = EventLogReadJournal(SqliteEventLog({"path": str(path)}))
    results = await asyncio.gather(*(_collect(journal.current_events_by_tag("t"))
                                     for _ in range(5)))
    assert all(len(result) == 3 for result in results)
    await journal.close()
    # Each connection owns a thread: one left open would leak it (and its file handle).
    # All of them must end once the read journal is closed.
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=10)
        assert not thread.is_alive(), thread


async def _collect(source: Any) -> list[Any]:
    return [item async for item in source]
