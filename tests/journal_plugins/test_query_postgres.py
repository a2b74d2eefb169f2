"""The PostgreSQL journal's read side against the query TCK, and the proof of exact offsets.

`test_live_queries_are_exact_under_writer_processes` is the proof the README cites: several
OS processes, each with its own journal (own pool, own connections), write at once while live
all-events and tag queries page through the log; every event arrives exactly once, in
ordering order, and the live order is the stored order.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from journal_plugins.postgres import PostgresJournal
from journal_plugins.postgres_query import PostgresEventLog
from persistent_actors import ActorSystem
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
from tests.pg import DSN, drop_schema, require_postgres, schema_for, settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def own_schema(tmp_path: Path) -> Iterator[None]:
    """Every test here needs the server, and gets a schema of its own, dropped after."""
    require_postgres()
    yield
    drop_schema(schema_for(tmp_path))


class TestPostgresReadJournal(ReadJournalSpec):
    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "postgres", **settings(schema_for(tmp_path))}


@pytest.mark.multiproc
@only_cases(MULTIPROC_CASES)
class TestPostgresReadJournalMultiproc(ReadJournalSpec):
    """The cases that cross processes, with every actor in its own OS process."""

    base = "multiproc-tcp"
    concurrent_writers = 4
    concurrent_events = 15

    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"plugin": "postgres", **settings(schema_for(tmp_path))}


# --- what only a shared server shows -------------------------------------------------------


def _events(pid: str, first: int, count: int, *tags: str) -> AtomicWrite:
    # Plain msgpack under the empty manifest: what the runtime stores for a str event.
    return AtomicWrite(tuple(PersistentRepr(pid, nr, "", msgpack.packb(f"{pid}-{nr}"), "w",
                                            1.0 + nr, tags)
                             for nr in range(first, first + count)))


# A writer process: its own journal, batches of random sizes and tags, as fast as it can.
_WRITER = """
import asyncio, random, sys, time
from journal_plugins.postgres import PostgresJournal
from tests.journal_plugins.test_query_postgres import _events

async def main(dsn, schema, index, batches, start_at):
    journal = PostgresJournal({"dsn": dsn, "schema": schema, "pool_size": 2})
    await journal.start()
    await asyncio.sleep(max(0.0, start_at - time.time()))  # all writers start together
    rng = random.Random(index)
    nr = {f"w{index}-{k}": 1 for k in range(3)}
    try:
        for batch in range(batches):
            writes = []
            for pid in rng.sample(sorted(nr), rng.randint(1, 3)):
                # Mostly small writes, now and then a big one: a big insert draws orderings
                # for longer, so without the ordering lock small ones would commit past it.
                count = rng.choice((1, 2, 3, 40))
                tags = ("all", "even") if batch % 2 == 0 else ("all",)
                writes.append(_events(pid, nr[pid], count, *tags))
                nr[pid] += count
            assert await journal.write_messages(writes) == [None] * len(writes)
    finally:
        await journal.close()
    print(sum(n - 1 for n in nr.values()))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                 float(sys.argv[5])))
"""


async def test_live_queries_are_exact_under_writer_processes(tmp_path: Path) -> None:
    schema = schema_for(tmp_path)
    starter = PostgresJournal(settings(schema))
    await starter.start()  # the schema exists before the readers start
    await starter.close()
    writers, batches = 4, 100

    async def collect(source: Any, into: list[EventEnvelope]) -> None:
        async with contextlib.aclosing(source):
            async for envelope in source:
                into.append(envelope)

    async def tight(got: list[int], done: asyncio.Event) -> None:
        """Read the raw log's head as fast as it answers: the reader most likely to pass a gap.

        Pages are large so it keeps up with the writers (the live queries page by 20).
        """
        after = 0
        while not done.is_set() or after < await log.highest_ordering():
            page = await log.fetch_events(after, 500)
            got.extend(stored.ordering for stored in page.events)
            after = page.scanned_to

    async def until(count: int, got: list[Any]) -> None:
        while len(got) < count:
            await asyncio.sleep(0.05)

    # page_size 20: the queries cross many pages while the writers commit between them.
    log = PostgresEventLog(settings(schema))
    async with EventLogReadJournal(log, page_size=20, refresh_interval=30) as journal:
        results: list[list[EventEnvelope]] = [[], [], []]
        readers = [asyncio.ensure_future(collect(journal.all_events(), results[0])),
                   asyncio.ensure_future(collect(journal.events_by_tag("all"), results[1])),
                   asyncio.ensure_future(collect(journal.events_by_tag("even"), results[2]))]
        tight_got: list[int] = []
        writers_done = asyncio.Event()
        tight_reader = asyncio.ensure_future(tight(tight_got, writers_done))
        start_at = time.time() + 3
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, DSN, schema, str(i), str(batches), str(start_at),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE) for i in range(writers)]
        outputs = [await proc.communicate() for proc in procs]
        assert [proc.returncode for proc in procs] == [0] * writers
        written = sum(int(out) for out, _ in outputs)
        writers_done.set()
        await asyncio.wait_for(tight_reader, 60)
        stored = [e async for e in journal.current_all_events()]
        stored_even = [e async for e in journal.current_events_by_tag("even")]
        for got, expected in zip(results, (stored, stored, stored_even), strict=True):
            await asyncio.wait_for(until(len(expected), got), 60)
        await asyncio.sleep(0.5)  # time for a duplicate, if any, to arrive
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    assert len(stored) == written
    assert tight_got == [e.offset.ordering for e in stored], "the raw reader passed a gap"
    all_events, tagged_all, tagged_even = results
    for got in results:
        keys = [(e.persistence_id, e.sequence_nr) for e in got]
        assert len(keys) == len(set(keys)), "an event was delivered twice"
        offsets = [e.offset.ordering for e in got]
        assert offsets == sorted(set(offsets)), "events were delivered out of offset order"
    # Every event exactly once, and in the stored order, live as afterwards.
    assert [(e.offset, e.persistence_id, e.sequence_nr) for e in all_events] == [
        (e.offset, e.persistence_id, e.sequence_nr) for e in stored]
    assert [e.offset for e in tagged_all] == [e.offset for e in stored]
    assert [e.offset for e in tagged_even] == [e.offset for e in stored_even]
    assert stored_even
    for pid in {e.persistence_id for e in stored}:  # each id in sequence order, no gap
        nrs = [e.sequence_nr for e in all_events if e.persistence_id == pid]
        assert nrs == list(range(1, len(nrs) + 1))


async def test_live_query_wakes_on_notify_from_another_process(tmp_path: Path) -> None:
    """With a 30 s refresh, only the NOTIFY can wake the query within the 10 s allowed."""
    schema = schema_for(tmp_path)
    starter = PostgresJournal(settings(schema))
    await starter.start()
    await starter.close()
    script = (
        "import asyncio, sys\n"
        "from journal_plugins.postgres import PostgresJournal\n"
        "from tests.journal_plugins.test_query_postgres import _events\n"
        "async def main():\n"
        "    j = PostgresJournal({'dsn': sys.argv[1], 'schema': sys.argv[2]})\n"
        "    await j.start()\n"
        "    assert await j.write_messages([_events('other', 1, 2, 'ipc')]) == [None]\n"
        "    await j.close()\n"
        "asyncio.run(main())\n"
    )
    async with EventLogReadJournal(PostgresEventLog(settings(schema)),
                                   refresh_interval=30) as journal:
        live = journal.events_by_tag("ipc")
        pending = asyncio.ensure_future(anext(live))
        await asyncio.sleep(0.5)  # the query is waiting now
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, DSN, schema,
                                                    cwd=ROOT)
        assert await proc.wait() == 0
        try:
            first = await asyncio.wait_for(pending, 10)
            second = await asyncio.wait_for(anext(live), 10)
        finally:
            await live.aclose()
    assert [first.event, second.event] == ["other-1", "other-2"]


async def test_reader_before_any_writer_sees_an_empty_log_then_events(tmp_path: Path) -> None:
    schema = schema_for(tmp_path)
    async with EventLogReadJournal(PostgresEventLog(settings(schema))) as journal:
        assert [e async for e in journal.current_all_events()] == []
        assert [p async for p in journal.current_persistence_ids()] == []
        live = journal.all_events()
        pending = asyncio.ensure_future(anext(live))
        with pytest.raises(TimeoutError):  # nothing to read yet, and it keeps waiting
            await asyncio.wait_for(asyncio.shield(pending), 0.5)
        writer = PostgresJournal(settings(schema))
        await writer.start()
        try:
            await writer.write_messages([_events("late", 1, 1, "t")])
            envelope = await asyncio.wait_for(pending, 10)
            assert (envelope.persistence_id, envelope.sequence_nr, envelope.tags) == (
                "late", 1, ("t",))
        finally:
            await live.aclose()
            await writer.close()


def test_a_consumer_process_reads_without_an_actor_system(tmp_path: Path) -> None:
    journal_config = {"plugin": "postgres", **settings(schema_for(tmp_path))}
    config = {"persistence": {"journal": journal_config}}
    with ActorSystem("writer", config=config) as system:
        ref = system.actor_of(QueryTestActor, "cart-1", name="cart-1")
        for text in ("banana", "apple"):
            assert ref.ask(text, timeout=10) == f"{text}-done"
    with SyncReadJournal(open_read_journal(config, page_size=1)) as journal:
        envelopes = journal.current_events_by_persistence_id("cart-1")
        assert [(e.sequence_nr, e.event) for e in envelopes] == [(1, "banana"), (2, "apple")]
        assert journal.current_persistence_ids() == ["cart-1"]
        assert [e.event for e in journal.current_all_events(envelopes[0].offset)] == ["apple"]
