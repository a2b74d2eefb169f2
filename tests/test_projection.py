"""Projections: resume from the stored offset, at-least-once and exactly-once, retry or stop.

The kill tests run a projection in a child process, SIGKILL it in the middle of a batch, restart
it here, and compare the read model with one built by a projection that never stopped.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from journal_plugins.sqlite import SqliteJournal
from journal_plugins.sqlite_query import SqliteEventLog
from persistent_actors import ActorSystem, ProjectionError
from persistent_actors._serialization import PLAIN_MANIFEST, default_serializer
from persistent_actors.adapters import AdapterSpec, EventAdapters
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.projection import (
    ErrorStrategy,
    ExactlyOnceProjection,
    InmemOffsetStore,
    Projection,
    SqliteOffsetStore,
)
from persistent_actors.query import (
    NO_OFFSET,
    EventEnvelope,
    EventLogReadJournal,
    NoOffset,
    Offset,
    ReadJournal,
    Sequence,
)
from persistent_actors.testing.query_spec import QueryTestActor
from tests.conftest import system_config

ROOT = Path(__file__).resolve().parent.parent

OnHandle = Callable[[str, int], Awaitable[None]]


async def _no_hook(pid: str, seq: int) -> None:
    del pid, seq


def read_model_projection(
    mode: str, journal_path: str, db_path: str, *, live: bool, on_handle: OnHandle = _no_hook,
) -> tuple[Projection | ExactlyOnceProjection, ReadJournal]:
    """The projection of the kill tests: events per cart into a table ``seen``.

    Exactly-once inserts plainly (a duplicate would violate the primary key); at-least-once
    upserts (idempotent) and counts every delivery in ``deliveries``.
    """
    journal = EventLogReadJournal(SqliteEventLog({"path": journal_path}), page_size=50)
    # NORMAL: in WAL mode a commit survives a killed process (only power loss may lose one).
    store = SqliteOffsetStore(db_path, synchronous="NORMAL")

    def source(offset: Any) -> Any:
        if live:
            return journal.events_by_tag("cart", offset)
        return journal.current_events_by_tag("cart", offset)

    async def create(db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS seen (pid TEXT, seq INTEGER, event TEXT, "
                         "PRIMARY KEY (pid, seq))")
        await db.execute("CREATE TABLE IF NOT EXISTS deliveries (n INTEGER)")

    if mode == "exactly-once":
        async def exactly(envelope: EventEnvelope, db: aiosqlite.Connection) -> None:
            await create(db)
            await db.execute("INSERT INTO seen VALUES (?, ?, ?)",
                             (envelope.persistence_id, envelope.sequence_nr, envelope.event))
            await on_handle(envelope.persistence_id, envelope.sequence_nr)

        return ExactlyOnceProjection("carts", source, exactly, store, batch_size=25), journal

    async def at_least(envelope: EventEnvelope) -> None:
        async with store.transaction() as db:
            await create(db)
            await db.execute("INSERT OR REPLACE INTO seen VALUES (?, ?, ?)",
                             (envelope.persistence_id, envelope.sequence_nr, envelope.event))
            await db.execute("INSERT INTO deliveries VALUES (1)")
        await on_handle(envelope.persistence_id, envelope.sequence_nr)

    return Projection("carts", source, at_least, store, batch_size=25), journal


def _write_journal(path: Path, carts: int = 12, events: int = 50) -> None:
    """Cart events tagged "cart", interleaved across carts, plus untagged noise."""

    async def write() -> None:
        journal = SqliteJournal({"path": str(path)})
        await journal.start()
        try:
            for nr in range(1, events + 1):
                writes = []
                for cart in range(carts):
                    text = f"cart-{cart} item {nr}"
                    tags = ("cart",) if cart != 0 else ()  # cart-0 is untagged noise
                    payload = default_serializer.to_binary(text)[1]
                    writes.append(AtomicWrite((PersistentRepr(
                        f"cart-{cart}", nr, "", payload, "w", float(nr), tags),)))
                assert await journal.write_messages(writes) == [None] * carts
        finally:
            await journal.close()

    asyncio.run(write())


def _rows(db_path: Path, sql: str) -> list[Any]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql))


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    _write_journal(path)
    return path


def _run_to_end(mode: str, journal_path: Path, db_path: Path) -> None:
    async def go() -> None:
        projection, journal = read_model_projection(mode, str(journal_path), str(db_path),
                                                    live=False)
        try:
            await projection.run()
        finally:
            await projection.offset_store.close()
            await journal.close()

    asyncio.run(go())


# --- killed mid-stream and restarted -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["exactly-once", "at-least-once"])
def test_projection_killed_mid_batch_and_restarted_ends_like_one_that_never_stopped(
    mode: str, journal_path: Path, tmp_path: Path,
) -> None:
    reference = tmp_path / "reference.db"
    _run_to_end(mode, journal_path, reference)
    expected = _rows(reference, "SELECT pid, seq, event FROM seen ORDER BY pid, seq")
    assert len(expected) == 11 * 50

    killed = tmp_path / "killed.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.projection_child", mode, str(journal_path), str(killed),
         "230"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert child.stdout is not None
        for n in range(230):  # the child stalls after 230 envelopes, inside a batch
            line = child.stdout.readline()
            assert line.startswith("handling "), f"line {n}: {line!r}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    stored = _rows(killed, "SELECT current_offset FROM projection_offset")
    done_before = _rows(killed, "SELECT count(*) FROM seen")[0][0]
    if mode == "exactly-once":
        # Batches of 25 committed with their offset; the one in progress was rolled back.
        assert done_before == 225
    assert 0 < done_before <= 230
    assert stored  # a restart resumes after this offset, not from the beginning

    _run_to_end(mode, journal_path, killed)
    assert _rows(killed, "SELECT pid, seq, event FROM seen ORDER BY pid, seq") == expected
    assert _rows(killed, "SELECT current_offset FROM projection_offset") == _rows(
        reference, "SELECT current_offset FROM projection_offset")
    if mode == "at-least-once":
        deliveries = _rows(killed, "SELECT count(*) FROM deliveries")[0][0]
        assert len(expected) <= deliveries <= len(expected) + 25  # at most one batch again


async def test_cancelled_projection_resumes_where_it_stopped(journal_path: Path,
                                                             tmp_path: Path) -> None:
    handled: list[tuple[str, int]] = []
    reached = asyncio.Event()

    async def on_handle(pid: str, seq: int) -> None:
        handled.append((pid, seq))
        if len(handled) == 140:
            reached.set()
            await asyncio.Event().wait()  # hold here until cancelled

    db = tmp_path / "cancel.db"
    projection, journal = read_model_projection("exactly-once", str(journal_path), str(db),
                                                 live=True, on_handle=on_handle)
    task = asyncio.ensure_future(projection.run())
    await asyncio.wait_for(reached.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await projection.offset_store.close()
    await journal.close()
    assert _rows(db, "SELECT count(*) FROM seen") == [(125,)]  # 5 batches committed

    second, journal = read_model_projection("exactly-once", str(journal_path), str(db),
                                            live=False)
    await second.run()
    await second.offset_store.close()
    await journal.close()
    assert second.handled == 11 * 50 - 125
    assert _rows(db, "SELECT count(*) FROM seen") == [(11 * 50,)]


# --- offsets and resumption ---------------------------------------------------------------------


async def test_at_least_once_projection_stores_its_offset_and_resumes(
    journal_path: Path,
) -> None:
    store = InmemOffsetStore()
    seen: list[EventEnvelope] = []
    async with EventLogReadJournal(SqliteEventLog({"path": str(journal_path)})) as journal:
        projection = Projection("p", lambda o: journal.current_events_by_tag("cart", o),
                                seen.append, store, batch_size=7)
        await projection.run()
        assert len(seen) == 550
        assert await store.load("p") == seen[-1].offset
        await projection.run()  # nothing new: the stored offset is past everything
        assert len(seen) == 550
        await store.save("p", seen[99].offset)
        await projection.run()
        assert [e.offset for e in seen[550:]] == [e.offset for e in seen[100:550]]
        assert await store.load("other") == NO_OFFSET


async def test_sqlite_offset_store_round_trips_and_rejects_bad_offsets(tmp_path: Path) -> None:
    async with SqliteOffsetStore(tmp_path / "offsets.db") as store:
        assert await store.load("p") == NoOffset()
        await store.save("p", Sequence(42))
        assert await store.load("p") == Sequence(42)
        with pytest.raises(TypeError, match="'nope'"):
            await store.save("p", "nope")  # type: ignore[arg-type]
    async with SqliteOffsetStore(tmp_path / "offsets.db") as store:
        assert await store.load("p") == Sequence(42)


# --- errors ---------------------------------------------------------------------------------------


async def test_handler_errors_are_retried_with_backoff(journal_path: Path) -> None:
    failures = {("cart-3", 2): 2}
    handled: list[tuple[str, int]] = []

    def handler(envelope: EventEnvelope) -> None:
        key = (envelope.persistence_id, envelope.sequence_nr)
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            raise RuntimeError(f"flaky on {key}")
        handled.append(key)

    store = InmemOffsetStore()
    async with EventLogReadJournal(SqliteEventLog({"path": str(journal_path)})) as journal:
        projection = Projection(
            "retry", lambda o: journal.current_events_by_tag("cart", o), handler, store,
            error_strategy=ErrorStrategy.retry(3, min_backoff=0.001, max_backoff=0.002))
        await projection.run()
    assert len(handled) == len(set(handled)) == 550
    assert failures == {("cart-3", 2): 0}


@pytest.mark.parametrize("mode", ["exactly-once", "at-least-once"])
async def test_stopping_keeps_the_offset_before_the_failing_event(
    mode: str, journal_path: Path, tmp_path: Path,
) -> None:
    broken = {"on": True}
    rows: list[tuple[str, int]] = []

    async def on_handle(pid: str, seq: int) -> None:
        if broken["on"] and (pid, seq) == ("cart-5", 3):
            raise RuntimeError("cannot project cart-5 #3")
        rows.append((pid, seq))

    db = tmp_path / "stop.db"
    projection, journal = read_model_projection(mode, str(journal_path), str(db), live=False,
                                                on_handle=on_handle)
    with pytest.raises(ProjectionError, match=r"event 3 of 'cart-5'.*cannot project"):
        await projection.run()
    await projection.offset_store.close()
    await journal.close()
    before = 11 * 2 + 4  # rounds 1-2 of carts 1-11, then carts 1-4 of round 3
    assert len(set(rows)) == before
    if mode == "exactly-once":
        assert _rows(db, "SELECT count(*) FROM seen") == [(before,)]

    broken["on"] = False
    again, journal = read_model_projection(mode, str(journal_path), str(db), live=False,
                                           on_handle=on_handle)
    await again.run()
    await again.offset_store.close()
    await journal.close()
    assert again.handled == 550 - before  # resumed at the failing event, not before
    assert _rows(db, "SELECT count(*) FROM seen") == [(550,)]


async def test_a_failing_query_stops_the_projection(tmp_path: Path) -> None:
    async def broken(offset: Any) -> Any:
        yield EventEnvelope(Sequence(1), "x", 1, "fine", 1.0)
        raise OSError("disk on fire")

    seen: list[Any] = []
    projection = Projection("q", broken, seen.append, InmemOffsetStore())
    with pytest.raises(ProjectionError, match="disk on fire"):
        await projection.run()
    assert [e.event for e in seen] == ["fine"]
    assert await projection.offset_store.load("q") == Sequence(1)


def test_bad_arguments_are_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        ErrorStrategy(-1)
    with pytest.raises(ValueError, match="min_backoff"):
        ErrorStrategy.retry(min_backoff=2, max_backoff=1)
    with pytest.raises(TypeError, match="SqliteOffsetStore"):
        ExactlyOnceProjection("p", lambda o: None, lambda e, d: None,  # type: ignore[arg-type,return-value]
                              InmemOffsetStore())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="projection_id"):
        Projection("", lambda o: None, lambda e: None, InmemOffsetStore())  # type: ignore[arg-type,return-value]
    from persistent_actors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="'SOMETIMES'"):
        SqliteOffsetStore(tmp_path / "x.db", synchronous="SOMETIMES")
    assert ErrorStrategy.retry(min_backoff=0.5, max_backoff=3).backoff(0) == 0.5
    assert ErrorStrategy.retry(min_backoff=0.5, max_backoff=3).backoff(5) == 3


# --- a live projection following actors, on both bases -------------------------------------------


async def test_live_projection_follows_persistent_actors(base: str) -> None:
    with ActorSystem("shop", config=system_config(base)) as system:
        refs = [system.actor_of(QueryTestActor, f"cart-{i}", name=f"cart-{i}") for i in range(3)]
        counts: dict[str, int] = {}
        enough = asyncio.Event()

        def count(envelope: EventEnvelope) -> None:
            counts[envelope.persistence_id] = counts.get(envelope.persistence_id, 0) + 1
            if sum(counts.values()) == 3 * 4:
                enough.set()

        store = InmemOffsetStore()
        async with system.read_journal() as journal:
            projection = Projection("counts", journal.all_events, count, store)
            task = asyncio.ensure_future(projection.run())
            for n in range(4):
                for ref in refs:
                    assert await asyncio.to_thread(ref.ask, f"add {n}", 10) == f"add {n}-done"
            await asyncio.wait_for(enough.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert counts == {"cart-0": 4, "cart-1": 4, "cart-2": 4}
        assert isinstance(await store.load("counts"), Sequence)


# --- a read adapter that splits one stored event into several envelopes -----------------------


def _split_journal(journal_path: Path) -> EventLogReadJournal:
    spec = AdapterSpec((("split", "tests.adapter_actors:Splitter"),),
                       ((PLAIN_MANIFEST, ("split",)),))
    return EventLogReadJournal(SqliteEventLog({"path": str(journal_path)}), EventAdapters(spec),
                               page_size=50)


@pytest.mark.parametrize("mode", ["exactly-once", "at-least-once"])
@pytest.mark.parametrize("batch_size", [1, 4, 25])
async def test_an_offset_is_stored_only_after_every_envelope_of_its_event(
    mode: str, batch_size: int, journal_path: Path, tmp_path: Path,
) -> None:
    # Both envelopes of a stored event carry its offset: storing it after the first would
    # make a restart skip the second (lost for good). A failure on the second, and batches of
    # one (a batch boundary between them), must both resume with the whole event.
    broken = {"on": True}
    seen: list[tuple[str, str, int]] = []
    store = SqliteOffsetStore(str(tmp_path / "split.db"))

    def note(envelope: EventEnvelope) -> None:
        part, _ = envelope.event
        if broken["on"] and (envelope.persistence_id, envelope.sequence_nr, part) == (
                "cart-5", 3, "b"):
            raise RuntimeError("cannot project the second half")
        seen.append((envelope.persistence_id, part, envelope.sequence_nr))

    async def exactly(envelope: EventEnvelope, db: aiosqlite.Connection) -> None:
        note(envelope)

    async def at_least(envelope: EventEnvelope) -> None:
        note(envelope)

    def run_once() -> Projection | ExactlyOnceProjection:
        journal = _split_journal(journal_path)

        def source(offset: Any) -> Any:
            return journal.current_events_by_tag("cart", offset)

        if mode == "exactly-once":
            return ExactlyOnceProjection("split", source, exactly, store, batch_size=batch_size)
        return Projection("split", source, at_least, store, batch_size=batch_size)

    with pytest.raises(ProjectionError, match="cannot project the second half"):
        await run_once().run()
    broken["on"] = False
    await run_once().run()
    await store.close()
    # Every envelope of every event handled; cart-5 #3's first half again after the restart.
    assert {(pid, part, nr) for pid, part, nr in seen} == {
        (f"cart-{c}", part, nr) for c in range(1, 12) for nr in range(1, 51) for part in "ab"}
    if mode == "exactly-once":  # nothing committed twice: only what was rolled back repeats
        committed = [row for row in seen if row != ("cart-5", "a", 3)]
        assert len(committed) == len(set(committed))


async def test_a_cancel_while_begin_waits_for_the_lock_leaves_no_transaction_open(
        tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = SqliteOffsetStore(str(path))
    await store.save("p", Sequence(1))
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock

    async def write() -> None:
        async with store.transaction() as db:
            await store.save_in(db, "p", Sequence(2))

    task = asyncio.ensure_future(write())
    await asyncio.sleep(0.3)  # waiting in BEGIN IMMEDIATE (busy timeout)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    blocker.rollback()
    blocker.close()
    await store.save("p", Sequence(3))  # raised "cannot start a transaction within a transaction"
    assert await store.load("p") == Sequence(3)
    with sqlite3.connect(path, timeout=5) as other:  # and the file is writable by others again
        other.execute("CREATE TABLE other_writer (x INTEGER)")
    await store.close()


async def test_split_envelopes_look_like_any_envelope(journal_path: Path) -> None:
    async with _split_journal(journal_path) as journal:
        first, second = [e async for e in journal.current_events_by_persistence_id("cart-1", 1, 1)]
    plain = EventEnvelope(first.offset, "cart-1", 1, ("a", "cart-1 item 1"), 1.0, ("cart",))
    assert first == plain
    assert plain == first
    assert hash(first) == hash(plain)
    assert repr(first) == repr(plain)
    assert second.event == ("b", "cart-1 item 1")
    assert second.offset == first.offset


@pytest.mark.parametrize("interval", [math.nan, math.inf, 0, True])
def test_refresh_interval_must_be_positive_and_finite(tmp_path: Path, interval: Any) -> None:
    # NaN made an idle live query re-read the journal thousands of times a second.
    with pytest.raises(ValueError, match="refresh_interval must be a positive, finite"):
        EventLogReadJournal(SqliteEventLog({"path": str(tmp_path / "x.db")}),
                            refresh_interval=interval)


@pytest.mark.parametrize("items", [["cart-1", "cart-2"], [None]])
async def test_a_source_of_something_else_than_envelopes_is_an_error(items: list[Any]) -> None:
    # Fed persistence ids (or None), the projection returned having handled nothing.
    async def ids(offset: Any) -> Any:
        for item in items:
            yield item

    handled: list[Any] = []
    projection = Projection("ids", ids, handled.append, InmemOffsetStore())
    with pytest.raises(ProjectionError, match=r"its source yielded a .*, not an EventEnvelope"):
        await projection.run()
    assert handled == []


@pytest.mark.parametrize("bad", ["\udc80", "\x00"], ids=["surrogate", "nul"])
@pytest.mark.parametrize("query", ["id", "tag"])
async def test_an_id_or_tag_no_journal_can_hold_is_refused_by_every_read_journal(
        query: str, tmp_path: Path, bad: str) -> None:
    # A lone surrogate: "[]" on the in-memory journal, a JournalError from SQLite's driver.
    async with EventLogReadJournal(SqliteEventLog({"path": str(tmp_path / "e.db")})) as journal:

        async def first() -> EventEnvelope:  # the tag is checked at the call, the id at start
            events = (journal.current_events_by_persistence_id("cart-" + bad) if query == "id"
                      else journal.current_events_by_tag("fruit-" + bad))
            return await anext(events)

        with pytest.raises(ValueError, match="cannot be stored"):
            await first()


_EXITS_SCRIPT = """
import asyncio, sys
from persistent_actors import SyncReadJournal, open_read_journal
from persistent_actors.projection import InmemOffsetStore, Projection, SqliteOffsetStore

config = {"persistence": {"journal": {"plugin": "sqlite", "path": sys.argv[1]}}}
if sys.argv[2] == "live-iterator-kept":
    journal = SyncReadJournal(open_read_journal(config))
    live = journal.all_events()
    print(next(live).sequence_nr, flush=True)  # and the script ends, the iterator in a global
else:
    store = SqliteOffsetStore(sys.argv[1] + "-offsets.db")  # never closed
    async def main():
        async with open_read_journal(config) as rj:
            def fail(envelope):
                raise ValueError("handler crashed")
            await Projection("p", lambda offset: rj.current_all_events(offset), fail,
                             store).run()
    asyncio.run(main())
"""


@pytest.mark.parametrize("case", ["live-iterator-kept", "offset-store-left-open"])
def test_a_script_that_leaves_a_reader_open_still_exits(journal_path: Path, case: str) -> None:
    # Both hung the interpreter's exit for ever: the SyncReadJournal's iterator waited for a
    # loop thread that runs no more; aiosqlite's thread is not a daemon.
    done = subprocess.run([sys.executable, "-c", _EXITS_SCRIPT, str(journal_path), case],
                          capture_output=True, text=True, timeout=60, check=False)
    if case == "live-iterator-kept":
        assert (done.returncode, done.stdout) == (0, "1\n"), done.stderr
    else:
        assert done.returncode == 1
        assert "ProjectionError" in done.stderr
        assert "handler crashed" in done.stderr


async def test_projections_starting_together_share_one_new_offset_store(
        tmp_path: Path) -> None:
    # Each opened a connection and set WAL mode at once: now and then "database is locked"
    # (about 1 start in 20 with 8 projections; here 30 at a time, 100 times).
    for attempt in range(100):
        async with SqliteOffsetStore(tmp_path / f"offsets-{attempt}.db") as store:
            loaded = await asyncio.gather(*(store.load(f"p{n}") for n in range(30)))
        assert loaded == [NO_OFFSET] * 30


async def test_an_offset_store_that_is_no_database_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db.db"
    path.write_bytes(b"this is not a SQLite file" * 100)
    async with SqliteOffsetStore(path) as store:
        with pytest.raises(ProjectionError, match=rf"offset store '{path}'.*not a database"):
            await store.load("p")


def test_an_offset_store_serves_one_event_loop_after_another(tmp_path: Path) -> None:
    # Its locks were bound to the first loop that waited on them: a second asyncio.run failed
    # with "is bound to a different event loop".
    store = SqliteOffsetStore(tmp_path / "offsets.db")

    async def burst(tag: str) -> list[Offset]:
        await asyncio.gather(*(store.save(f"{tag}{i}", Sequence(i + 1)) for i in range(5)))
        return [await store.load(f"{tag}{i}") for i in range(5)]

    assert asyncio.run(burst("a")) == [Sequence(i + 1) for i in range(5)]
    assert asyncio.run(burst("b")) == [Sequence(i + 1) for i in range(5)]
    asyncio.run(store.close())
