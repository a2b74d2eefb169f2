"""Query TCK: the behaviour every read journal must show (Akka.NET's Query TCK, in Python).

A plugin's test module subclasses `ReadJournalSpec` and says how its journal is configured::

    class TestSqliteReadJournal(ReadJournalSpec):
        def journal_config(self, tmp_path: Path) -> dict[str, Any]:
            return {"plugin": "sqlite", "path": str(tmp_path / "events.db")}

Each test starts an actor system on that journal, writes through real persistent actors
(`QueryTestActor`, Akka's ``Query.TestActor``), and reads with ``system.read_journal()``. As in
Akka, a write adapter (`ColorFruitTagger`) tags string events with the colours and fruits they
mention. The cases follow ``Akka.Persistence.TCK/Query``: CurrentEventsByPersistenceId,
EventsByPersistenceId, CurrentEventsByTag, EventsByTag, (Current)AllEvents, (Current)PersistenceIds,
plus exactly-once delivery in offset order under concurrent writers (Akka.NET issue 2257), read
adapters in queries, and deleted events. Akka's demand-request cases become pull cases: an
async iterator yields exactly what is pulled, and the next pulls continue without loss.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

import pytest
import pytest_asyncio

from persistent_actors import ActorRef, ActorSystem, PersistentActor
from persistent_actors.adapters import ReadEventAdapter, Tagged, WriteEventAdapter
from persistent_actors.journal import MAX_SEQUENCE_NR
from persistent_actors.messages import (
    DeleteMessagesFailure,
    DeleteMessagesSuccess,
    SaveSnapshotSuccess,
)
from persistent_actors.query import NO_OFFSET, EventEnvelope, NoOffset, ReadJournal, Sequence

__all__ = [
    "MULTIPROC_CASES",
    "ColorFruitTagger",
    "DeleteCommand",
    "QueryTestActor",
    "ReadJournalSpec",
    "SnapshotCommand",
    "check_live_queries_under_concurrent_writers",
    "only_cases",
]

T = TypeVar("T")

# Seconds a test waits for an event that must arrive (generous: CI machines are slow).
TIMEOUT: Final = 10.0

COLORS: Final = ("green", "black", "blue", "pink", "yellow")
FRUITS: Final = ("apple", "banana", "kiwi")


class ColorFruitTagger(WriteEventAdapter):
    """Tags a string event with every colour and fruit it mentions (Akka's TCK tagger)."""

    def to_journal(self, event: Any) -> Any:
        """Return `event` tagged, or as is when it mentions none."""
        if not isinstance(event, str):
            return event
        tags = [word for word in (*COLORS, *FRUITS) if word in event]
        return Tagged(event, tags) if tags else event


class UpperCaseReader(ReadEventAdapter):
    """A read adapter for the TCK: "shout:x" is read back as two events, "X" and "X!"."""

    def from_journal(self, event: Any, manifest: str) -> list[Any]:
        """Upcast the stored event."""
        if isinstance(event, str) and event.startswith("shout:"):
            word = event.removeprefix("shout:").upper()
            return [word, word + "!"]
        return [event]


@dataclasses.dataclass(frozen=True)
class DeleteCommand:
    """Ask a `QueryTestActor` to delete its events up to `to_sequence_nr`."""

    to_sequence_nr: int


@dataclasses.dataclass(frozen=True)
class SnapshotCommand:
    """Ask a `QueryTestActor` to save a snapshot; it answers ``"snapshot-<n>"`` once saved."""


class QueryTestActor(PersistentActor):
    """Persists every string it is told and answers ``"<text>-done"`` once it is stored.

    `DeleteCommand(n)` deletes events up to n and answers ``"<n>-deleted"``;
    `SnapshotCommand()` saves a snapshot and answers ``"snapshot-<sequence nr>"``.
    """

    def __init__(self, persistence_id: str) -> None:
        self._persistence_id = persistence_id
        self._deleter: ActorRef | None = None
        self._snapshotter: ActorRef | None = None

    @property
    def persistence_id(self) -> str:
        """The id given to the constructor."""
        return self._persistence_id

    def on_recover(self, message: Any) -> None:
        """Nothing to rebuild: the actor has no state."""

    def on_command(self, message: Any) -> None:
        """Persist strings; delete on request."""
        match message:
            case str():
                self.persist(message, lambda event: self.sender.tell(f"{event}-done"))
            case DeleteCommand(to):
                self._deleter = self.sender
                self.delete_messages(to)
            case DeleteMessagesSuccess(to) if self._deleter is not None:
                self._deleter.tell(f"{to}-deleted")
            case DeleteMessagesFailure(cause) if self._deleter is not None:
                self._deleter.tell(f"delete failed: {cause}")
            case SnapshotCommand():
                self._snapshotter = self.sender
                self.save_snapshot("state")
            case SaveSnapshotSuccess(metadata) if self._snapshotter is not None:
                self._snapshotter.tell(f"snapshot-{metadata.sequence_nr}")
            case _:
                self.unhandled(message)


async def _pull(source: AsyncIterator[T], n: int = 1) -> list[T]:
    """Pull `n` items, failing if they do not arrive within TIMEOUT."""
    return [await asyncio.wait_for(anext(source), TIMEOUT) for _ in range(n)]


async def _expect_end(source: AsyncIterator[Any]) -> None:
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(source), TIMEOUT)


async def _all(source: AsyncIterator[T]) -> list[T]:
    return [item async for item in source]


async def check_live_queries_under_concurrent_writers(
    system: ActorSystem, read_journal: ReadJournal, *, writers: int = 6, events: int = 30,
) -> None:
    """Live tag and all-events queries deliver each event exactly once, in offset order.

    `writers` actors persist `events` events each, from as many threads at once, while a live
    all-events query, a live tag query, and a second live query that started from an offset in
    the middle of earlier events read. Every event mentions "green"; half also "blue".
    """
    warmup = system.actor_of(QueryTestActor, "warmup", name="warmup")
    for i in range(4):
        await asyncio.to_thread(warmup.ask, f"warmup green {i}", TIMEOUT)
    before = await _all(read_journal.current_all_events())
    middle = before[1].offset
    refs = [system.actor_of(QueryTestActor, f"w{i}", name=f"w{i}") for i in range(writers)]
    expected_all = {("warmup", n) for n in range(1, 5)}
    expected_all |= {(f"w{i}", n) for i in range(writers) for n in range(1, events + 1)}
    expected_blue = {(f"w{i}", n) for i in range(writers) for n in range(1, events + 1)
                     if n % 2 == 0}

    async def collect(source: AsyncGenerator[EventEnvelope, None],
                      count: int) -> list[EventEnvelope]:
        got: list[EventEnvelope] = []
        try:
            while len(got) < count:
                got.append(await asyncio.wait_for(anext(source), TIMEOUT * 3))
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()
        return got

    readers = [
        asyncio.ensure_future(collect(read_journal.all_events(), len(expected_all))),
        asyncio.ensure_future(collect(read_journal.events_by_tag("green"), len(expected_all))),
        asyncio.ensure_future(collect(read_journal.events_by_tag("blue"), len(expected_blue))),
        asyncio.ensure_future(collect(read_journal.all_events(middle), len(expected_all) - 2)),
    ]
    barrier = threading.Barrier(writers)

    def write(ref: ActorRef, index: int) -> None:
        texts = [f"w{index}-{n} green" + (" blue" if n % 2 == 0 else "")
                 for n in range(1, events + 1)]
        barrier.wait(TIMEOUT)  # all writers start together
        for text in texts[:-1]:
            ref.tell(text)
        # Commands are handled in order: the last one's answer means all are stored.
        assert ref.ask(texts[-1], TIMEOUT) == f"{texts[-1]}-done"

    loop = asyncio.get_running_loop()
    # Own threads: the default executor may be too small for a barrier of `writers`.
    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, write, ref, i)
                               for i, ref in enumerate(refs)))
    results = await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT * 6)
    stored = await _all(read_journal.current_all_events())
    for got, expected in zip(results, (expected_all, expected_all, expected_blue,
                                       expected_all - {(e.persistence_id, e.sequence_nr)
                                                       for e in before[:2]}), strict=True):
        keys = [(e.persistence_id, e.sequence_nr) for e in got]
        assert len(keys) == len(set(keys)), "an event was delivered twice"
        assert set(keys) == expected, "an event was skipped"
        offsets = [e.offset.ordering for e in got]
        assert offsets == sorted(offsets), "events were delivered out of offset order"
        assert len(set(offsets)) == len(offsets)
    # The live order is the stored order: a later current query agrees event for event.
    assert [(e.offset, e.persistence_id, e.sequence_nr) for e in results[0]] == [
        (e.offset, e.persistence_id, e.sequence_nr) for e in stored]
    for ref in refs:  # each actor's own events came in sequence order
        pid = ref.name
        nrs = [e.sequence_nr for e in results[0] if e.persistence_id == pid]
        assert nrs == list(range(1, events + 1))


# The cases worth re-running with the actor system spread over processes (the multiproc base):
# live waiting across processes, offsets, adapters and concurrent writers.
MULTIPROC_CASES: Final = frozenset({
    "test_events_by_persistence_id_finds_new_events",
    "test_events_by_tag_finds_new_events",
    "test_all_events_offset_is_exclusive",
    "test_persistence_ids_finds_new_ids",
    "test_cancelled_live_query_ends_promptly_and_releases_the_journal",
    "test_read_adapters_apply_to_queries",
    "test_live_queries_deliver_every_event_once_in_offset_order_under_concurrent_writers",
})

S = TypeVar("S", bound=type)


def only_cases(names: frozenset[str]) -> Callable[[S], S]:
    """Class decorator: keep only the TCK tests named in `names` (e.g. `MULTIPROC_CASES`)."""

    def restrict(cls: S) -> S:
        for name in dir(cls):
            if name.startswith("test_") and name not in names:
                setattr(cls, name, None)  # pytest collects only callables
        return cls

    return restrict


class ReadJournalSpec:
    """Query TCK: subclass it as `Test...` and override `journal_config`.

    Flags: `base` is the thespian base the system runs on; `page_size` is deliberately small so
    the 150-event cases cross many pages; `refresh_interval` is the live queries' safety-net
    re-read (the tests must pass on change signals alone, so it is long); `concurrent_*` size
    the concurrent-writer case.
    """

    # Its tests and fixtures are async: marked for pytest-asyncio, so a plugin's test file
    # runs in its default (strict) mode too, with no configuration of the author's.
    pytestmark = pytest.mark.asyncio

    base: ClassVar[str] = "simple"
    page_size: ClassVar[int] = 7
    refresh_interval: ClassVar[float] = 30.0
    # Size of the concurrent-writer case: actors writing at once, events each.
    concurrent_writers: ClassVar[int] = 6
    concurrent_events: ClassVar[int] = 30

    def journal_config(self, tmp_path: Path) -> dict[str, Any]:
        """Return the ``[persistence.journal]`` section (``plugin`` plus its settings)."""
        msg = f"{type(self).__name__} must override journal_config"
        raise NotImplementedError(msg)

    @pytest.fixture
    def system(self, tmp_path: Path) -> Iterator[ActorSystem]:
        """Yield an actor system on the plugin's journal, with the TCK's adapters bound."""
        journal = dict(self.journal_config(tmp_path))
        journal["event_adapters"] = {
            **journal.get("event_adapters", {}),
            "tck-tagger": f"{__name__}:ColorFruitTagger",
            "tck-shout": f"{__name__}:UpperCaseReader",
        }
        journal["event_adapter_bindings"] = {
            **journal.get("event_adapter_bindings", {}),
            "builtins:str": ["tck-tagger", "tck-shout"],
        }
        config = {"actor_system": {"base": self.base}, "persistence": {"journal": journal}}
        actor_system = ActorSystem("query-tck", config=config)
        try:
            yield actor_system
        finally:
            actor_system.shutdown()

    @pytest_asyncio.fixture
    async def read_journal(self, system: ActorSystem) -> AsyncIterator[ReadJournal]:
        """Yield the system's read journal; closed after the test."""
        journal = system.read_journal(page_size=self.page_size,
                                      refresh_interval=self.refresh_interval)
        try:
            yield journal
        finally:
            await journal.close()

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def actor(system: ActorSystem, persistence_id: str) -> ActorRef:
        """Start a `QueryTestActor` for `persistence_id` (no events yet)."""
        return system.actor_of(QueryTestActor, persistence_id, name=persistence_id)

    @staticmethod
    async def tell(ref: ActorRef, *texts: str) -> None:
        """Persist each text through `ref`, waiting until each is stored."""
        for text in texts:
            reply = await asyncio.to_thread(ref.ask, text, TIMEOUT)
            assert reply == f"{text}-done"

    async def setup(self, system: ActorSystem, persistence_id: str, n: int = 3) -> ActorRef:
        """Akka's ``Setup``: an actor whose events are ``"<id>-1"`` .. ``"<id>-n"``."""
        ref = self.actor(system, persistence_id)
        await self.tell(ref, *(f"{persistence_id}-{i}" for i in range(1, n + 1)))
        return ref

    @staticmethod
    async def delete(ref: ActorRef, to_sequence_nr: int) -> None:
        """Delete `ref`'s events up to `to_sequence_nr` and wait for the confirmation."""
        reply = await asyncio.to_thread(ref.ask, DeleteCommand(to_sequence_nr), TIMEOUT)
        assert reply == f"{to_sequence_nr}-deleted"

    async def tag_fixture(self, system: ActorSystem) -> tuple[ActorRef, ActorRef]:
        """Akka's tag scenario: a and b persist six events, three of them green."""
        a, b = self.actor(system, "a"), self.actor(system, "b")
        await self.tell(a, "hello", "a green apple")
        await self.tell(b, "a black car")
        await self.tell(a, "something else", "a green banana")
        await self.tell(b, "a green leaf")
        return a, b

    @staticmethod
    def expect_envelope(envelope: EventEnvelope, persistence_id: str, sequence_nr: int,
                        event: Any, tag: str | None = None) -> EventEnvelope:
        """Check an envelope's identity, event and (if given) that it carries `tag`."""
        assert (envelope.persistence_id, envelope.sequence_nr, envelope.event) == (
            persistence_id, sequence_nr, event)
        assert isinstance(envelope.offset, Sequence)
        if tag is not None:
            assert tag in envelope.tags
        return envelope

    @staticmethod
    def events(envelopes: Iterable[EventEnvelope]) -> list[Any]:
        """The events of some envelopes."""
        return [e.event for e in envelopes]

    # --- CurrentEventsByPersistenceId ---------------------------------------------------------

    async def test_current_events_by_persistence_id_finds_existing_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: finds existing events; pulled 2, then the rest."""
        await self.setup(system, "a")
        source = read_journal.current_events_by_persistence_id("a", 0, MAX_SEQUENCE_NR)
        assert self.events(await _pull(source, 2)) == ["a-1", "a-2"]
        assert self.events(await _pull(source, 1)) == ["a-3"]
        await _expect_end(source)

    async def test_current_events_by_persistence_id_finds_existing_events_up_to_a_sequence_nr(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: finds existing events up to a sequence number."""
        await self.setup(system, "b")
        got = await _all(read_journal.current_events_by_persistence_id("b", 0, 2))
        assert self.events(got) == ["b-1", "b-2"]

    async def test_current_events_by_persistence_id_does_not_see_new_events_after_start(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: does not see events stored after it started."""
        ref = await self.setup(system, "f")
        source = read_journal.current_events_by_persistence_id("f", 0, MAX_SEQUENCE_NR)
        assert self.events(await _pull(source, 2)) == ["f-1", "f-2"]
        await self.tell(ref, "f-4")
        assert self.events(await _all(source)) == ["f-3"]  # f-4 not seen

    async def test_current_events_by_persistence_id_is_empty_for_a_cleaned_journal(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: empty for a cleaned journal, from (0, max) and (0, 0)."""
        ref = await self.setup(system, "g1")
        await self.delete(ref, 3)
        assert await _all(read_journal.current_events_by_persistence_id("g1")) == []
        assert await _all(read_journal.current_events_by_persistence_id("g1", 0, 0)) == []

    async def test_current_events_by_persistence_id_returns_the_rest_after_partial_cleanup(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: returns the remaining events after a partial cleanup."""
        ref = await self.setup(system, "h")
        await self.delete(ref, 2)
        got = await _all(read_journal.current_events_by_persistence_id("h"))
        assert self.events(got) == ["h-3"]

    async def test_current_events_by_persistence_id_is_empty_for_an_empty_journal(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: empty for an empty journal, also from (0, 0)."""
        self.actor(system, "i")
        assert await _all(read_journal.current_events_by_persistence_id("i")) == []
        assert await _all(read_journal.current_events_by_persistence_id("i", 0, 0)) == []
        assert await _all(read_journal.current_events_by_persistence_id("never-written")) == []

    async def test_current_events_by_persistence_id_is_empty_from_0_to_0(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: empty from (0, 0) on a journal with events."""
        await self.setup(system, "k1")
        assert await _all(read_journal.current_events_by_persistence_id("k1", 0, 0)) == []

    async def test_current_events_by_persistence_id_is_empty_from_beyond_the_highest(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: empty when from > the highest sequence number."""
        await self.setup(system, "l")
        assert await _all(read_journal.current_events_by_persistence_id("l", 4, 3)) == []
        assert await _all(read_journal.current_events_by_persistence_id("l", 4)) == []

    async def test_current_events_by_persistence_id_envelopes_carry_a_timestamp(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByPersistenceId: includes a timestamp; offsets grow."""
        await self.setup(system, "t")
        got = await _all(read_journal.current_events_by_persistence_id("t"))
        assert [e.sequence_nr for e in got] == [1, 2, 3]
        assert all(e.timestamp > 0 for e in got)
        assert [e.offset.ordering for e in got] == sorted(e.offset.ordering for e in got)

    # --- EventsByPersistenceId (live) ---------------------------------------------------------

    async def test_events_by_persistence_id_finds_new_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """EventsByPersistenceId: finds new events."""
        ref = await self.setup(system, "c")
        source = read_journal.events_by_persistence_id("c", 0, MAX_SEQUENCE_NR)
        try:
            assert self.events(await _pull(source, 3)) == ["c-1", "c-2", "c-3"]
            pending = asyncio.ensure_future(_pull(source, 1))
            await self.tell(ref, "c-4")
            assert self.events(await pending) == ["c-4"]
        finally:
            await source.aclose()

    async def test_events_by_persistence_id_finds_new_events_up_to_a_sequence_nr(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """EventsByPersistenceId: finds new events up to a sequence number, then ends."""
        ref = await self.setup(system, "d")
        source = read_journal.events_by_persistence_id("d", 0, 4)
        assert self.events(await _pull(source, 3)) == ["d-1", "d-2", "d-3"]
        await self.tell(ref, "d-4")
        assert self.events(await _pull(source, 1)) == ["d-4"]
        await _expect_end(source)

    async def test_events_by_persistence_id_finds_new_events_after_a_pause(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """EventsByPersistenceId: finds new events after a pause in pulling."""
        ref = await self.setup(system, "e")
        source = read_journal.events_by_persistence_id("e", 0, MAX_SEQUENCE_NR)
        try:
            assert self.events(await _pull(source, 2)) == ["e-1", "e-2"]
            await self.tell(ref, "e-4")
            assert self.events(await _pull(source, 2)) == ["e-3", "e-4"]
        finally:
            await source.aclose()

    async def test_events_by_persistence_id_waits_for_an_id_with_no_events_yet(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """EventsByPersistenceId: waits for an id's first event; includes a timestamp."""
        source = read_journal.events_by_persistence_id("late", 0, 1)
        pending = asyncio.ensure_future(_pull(source, 1))
        ref = self.actor(system, "late")
        await self.tell(ref, "late-1")
        envelope = (await pending)[0]
        self.expect_envelope(envelope, "late", 1, "late-1")
        assert envelope.timestamp > 0
        await _expect_end(source)

    # --- CurrentEventsByTag -------------------------------------------------------------------

    async def test_current_events_by_tag_finds_existing_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByTag: finds existing events; envelopes carry their tags."""
        await self.tag_fixture(system)
        green = read_journal.current_events_by_tag("green", NO_OFFSET)
        first = await _pull(green, 2)
        self.expect_envelope(first[0], "a", 2, "a green apple", "green")
        self.expect_envelope(first[1], "a", 4, "a green banana", "green")
        rest = await _all(green)
        assert len(rest) == 1
        self.expect_envelope(rest[0], "b", 2, "a green leaf", "green")
        black = await _all(read_journal.current_events_by_tag("black", NoOffset()))
        assert len(black) == 1
        self.expect_envelope(black[0], "b", 1, "a black car", "black")
        apple = await _all(read_journal.current_events_by_tag("apple"))
        assert len(apple) == 1
        self.expect_envelope(apple[0], "a", 2, "a green apple", "apple")
        assert set(apple[0].tags) == {"green", "apple"}

    async def test_current_events_by_tag_completes_when_no_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByTag: completes when no events carry the tag."""
        await self.tell(self.actor(system, "a"), "a green apple")
        await self.tell(self.actor(system, "b"), "a black car")
        assert await _all(read_journal.current_events_by_tag("pink")) == []

    async def test_current_events_by_tag_does_not_see_new_events_after_start(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByTag: does not see events stored after it started."""
        await self.tag_fixture(system)
        c = self.actor(system, "c")
        green = read_journal.current_events_by_tag("green")
        first = await _pull(green, 2)
        self.expect_envelope(first[0], "a", 2, "a green apple", "green")
        self.expect_envelope(first[1], "a", 4, "a green banana", "green")
        await self.tell(c, "a green cucumber")
        rest = await _all(green)
        assert [(e.persistence_id, e.event) for e in rest] == [("b", "a green leaf")]

    async def test_current_events_by_tag_offset_is_exclusive(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByTag: finds events from an offset, exclusive."""
        await self.tag_fixture(system)
        await self.tell(self.actor(system, "c"), "a green cucumber")
        first = await _all(read_journal.current_events_by_tag("green"))
        banana = self.expect_envelope(first[1], "a", 4, "a green banana", "green")
        after = await _all(read_journal.current_events_by_tag("green", banana.offset))
        assert [(e.persistence_id, e.sequence_nr, e.event) for e in after] == [
            ("b", 2, "a green leaf"), ("c", 1, "a green cucumber")]

    async def test_current_events_by_tag_sees_all_150_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByTag: sees all 150 events (across many pages)."""
        await self.tell(self.actor(system, "a"), *(["a green apple"] * 150))
        got = await _all(read_journal.current_events_by_tag("green"))
        assert [e.sequence_nr for e in got] == list(range(1, 151))
        assert all(e.event == "a green apple" for e in got)

    async def test_current_events_by_tag_envelopes_carry_a_timestamp(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentEventsByTag: includes a timestamp in the envelope."""
        await self.tell(self.actor(system, "testTimestamp"), "a green apple", "a black car",
                        "a green banana")
        got = await _all(read_journal.current_events_by_tag("green"))
        assert len(got) == 2
        assert all(e.timestamp > 0 for e in got)

    # --- EventsByTag (live) -------------------------------------------------------------------

    async def test_events_by_tag_finds_new_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """EventsByTag: finds new events."""
        b, d = self.actor(system, "b"), self.actor(system, "d")
        await self.tell(b, "a black car")
        black = read_journal.events_by_tag("black", NO_OFFSET)
        try:
            self.expect_envelope((await _pull(black))[0], "b", 1, "a black car", "black")
            pending = asyncio.ensure_future(_pull(black, 1))
            await self.tell(d, "a black dog")
            self.expect_envelope((await pending)[0], "d", 1, "a black dog", "black")
            await self.tell(d, "a black night")
            self.expect_envelope((await _pull(black))[0], "d", 2, "a black night", "black")
        finally:
            await black.aclose()

    async def test_events_by_tag_offset_is_exclusive(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """EventsByTag: finds events from an offset, exclusive; then new ones."""
        await self.tag_fixture(system)
        await self.tell(self.actor(system, "c"), "a green cucumber")
        first = read_journal.events_by_tag("green")
        try:
            got = await _pull(first, 2)
        finally:
            await first.aclose()
        banana = self.expect_envelope(got[1], "a", 4, "a green banana", "green")
        second = read_journal.events_by_tag("green", banana.offset)
        try:
            leaf, cucumber = await _pull(second, 2)
            self.expect_envelope(leaf, "b", 2, "a green leaf", "green")
            self.expect_envelope(cucumber, "c", 1, "a green cucumber", "green")
            pending = asyncio.ensure_future(_pull(second, 1))
            await self.tell(self.actor(system, "e"), "a green egg")
            self.expect_envelope((await pending)[0], "e", 1, "a green egg", "green")
        finally:
            await second.aclose()

    # --- CurrentAllEvents / AllEvents ---------------------------------------------------------

    async def test_current_all_events_finds_existing_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentAllEvents: finds existing events in the global order."""
        await self.tag_fixture(system)
        got = await _all(read_journal.current_all_events(NO_OFFSET))
        assert [(e.persistence_id, e.sequence_nr, e.event) for e in got] == [
            ("a", 1, "hello"), ("a", 2, "a green apple"), ("b", 1, "a black car"),
            ("a", 3, "something else"), ("a", 4, "a green banana"), ("b", 2, "a green leaf")]
        assert got[0].tags == ()
        assert set(got[1].tags) == {"green", "apple"}

    async def test_current_all_events_completes_on_an_empty_journal(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentAllEvents: completes on an empty journal."""
        self.actor(system, "a")
        assert await _all(read_journal.current_all_events()) == []

    async def test_current_all_events_does_not_see_new_events_after_start(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentAllEvents: does not see events stored after it started."""
        await self.setup(system, "a")
        source = read_journal.current_all_events()
        assert self.events(await _pull(source, 2)) == ["a-1", "a-2"]
        await self.tell(self.actor(system, "b"), "b-1")
        assert self.events(await _all(source)) == ["a-3"]

    async def test_current_all_events_offset_is_exclusive(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentAllEvents: offsets are exclusive; Sequence(0) is the beginning."""
        await self.tag_fixture(system)
        first = await _all(read_journal.current_all_events())
        rest = await _all(read_journal.current_all_events(first[2].offset))
        assert [(e.persistence_id, e.sequence_nr) for e in rest] == [
            ("a", 3), ("a", 4), ("b", 2)]
        assert await _all(read_journal.current_all_events(first[-1].offset)) == []
        again = await _all(read_journal.current_all_events(Sequence(0)))
        assert [e.offset for e in again] == [e.offset for e in first]

    async def test_current_all_events_sees_all_150_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentAllEvents: sees all 150 events (across many pages)."""
        await self.tell(self.actor(system, "a"), *(f"a-{i}" for i in range(1, 76)))
        await self.tell(self.actor(system, "b"), *(f"b-{i}" for i in range(1, 76)))
        got = await _all(read_journal.current_all_events())
        assert len(got) == 150
        assert [e.event for e in got if e.persistence_id == "a"] == [
            f"a-{i}" for i in range(1, 76)]

    async def test_current_all_events_envelopes_carry_a_timestamp(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentAllEvents: includes a timestamp in the envelope."""
        await self.setup(system, "a", 2)
        assert all(e.timestamp > 0 for e in await _all(read_journal.current_all_events()))

    async def test_all_events_finds_new_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """AllEvents: finds new events."""
        await self.setup(system, "a", 2)
        source = read_journal.all_events()
        try:
            assert self.events(await _pull(source, 2)) == ["a-1", "a-2"]
            pending = asyncio.ensure_future(_pull(source, 2))
            await self.tell(self.actor(system, "b"), "b-1", "b-2")
            assert self.events(await pending) == ["b-1", "b-2"]
        finally:
            await source.aclose()

    async def test_all_events_offset_is_exclusive(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """AllEvents: finds events from an offset, exclusive; then new ones."""
        await self.setup(system, "a", 3)
        first = await _all(read_journal.current_all_events())
        source = read_journal.all_events(first[1].offset)
        try:
            assert self.events(await _pull(source, 1)) == ["a-3"]
            pending = asyncio.ensure_future(_pull(source, 1))
            await self.tell(self.actor(system, "b"), "b-1")
            assert self.events(await pending) == ["b-1"]
        finally:
            await source.aclose()

    # --- CurrentPersistenceIds / PersistenceIds -----------------------------------------------

    async def test_current_persistence_ids_finds_existing_ids(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentPersistenceIds: finds existing ids."""
        for pid in ("a", "b", "c"):
            await self.setup(system, pid, 1)
        assert sorted(await _all(read_journal.current_persistence_ids())) == ["a", "b", "c"]

    async def test_current_persistence_ids_delivers_each_id_once(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentPersistenceIds: delivers each id once despite many events."""
        await self.setup(system, "d", 100)
        assert await _all(read_journal.current_persistence_ids()) == ["d"]

    async def test_current_persistence_ids_does_not_see_new_ids_after_start(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentPersistenceIds: does not see ids that appear after it started."""
        for pid in ("a", "b", "c"):
            await self.setup(system, pid, 1)
        source = read_journal.current_persistence_ids()
        first = await _pull(source, 2)
        await self.setup(system, "d", 1)
        rest = await _all(source)
        assert sorted(first + rest) == ["a", "b", "c"]

    async def test_current_persistence_ids_include_ids_whose_events_were_deleted(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """CurrentPersistenceIds: an id whose events were all deleted still exists."""
        ref = await self.setup(system, "gone", 2)
        await self.delete(ref, 2)
        assert await _all(read_journal.current_persistence_ids()) == ["gone"]

    async def test_persistence_ids_finds_new_ids(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """PersistenceIds: finds new ids."""
        await self.setup(system, "e", 1)
        await self.setup(system, "f", 1)
        source = read_journal.persistence_ids()
        try:
            assert sorted(await _pull(source, 2)) == ["e", "f"]
            pending = asyncio.ensure_future(_pull(source, 1))
            await self.setup(system, "g", 1)
            assert await pending == ["g"]
        finally:
            await source.aclose()

    async def test_persistence_ids_finds_new_ids_after_a_pause(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """PersistenceIds: finds new ids after a pause in pulling."""
        await self.setup(system, "h", 1)
        await self.setup(system, "i", 1)
        source = read_journal.persistence_ids()
        try:
            first = await _pull(source, 1)
            await self.setup(system, "j", 1)
            assert sorted(first + await _pull(source, 2)) == ["h", "i", "j"]
        finally:
            await source.aclose()

    async def test_persistence_ids_yields_only_what_is_pulled(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """PersistenceIds: delivers only what is requested, and the rest on later pulls."""
        for pid in ("k", "l", "m", "n", "o"):
            await self.setup(system, pid, 1)
        source = read_journal.persistence_ids()
        try:
            first, second = await _pull(source, 2), await _pull(source, 2)
            third = await _pull(source, 1)
            assert sorted(first + second + third) == ["k", "l", "m", "n", "o"]
        finally:
            await source.aclose()

    async def test_persistence_ids_delivers_each_id_once_despite_many_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """PersistenceIds: delivers each id once despite many events, old and new."""
        p = await self.setup(system, "p", 100)
        source = read_journal.persistence_ids()
        try:
            assert await _pull(source, 1) == ["p"]
            pending = asyncio.ensure_future(_pull(source, 1))
            await self.tell(p, *(f"p-{i}" for i in range(101, 131)))  # more of the same id
            await self.setup(system, "q", 50)
            assert await pending == ["q"]
        finally:
            await source.aclose()

    async def test_cancelled_live_query_ends_promptly_and_releases_the_journal(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """Deallocates when the subscriber leaves: a cancelled wait ends at once."""
        await self.setup(system, "r", 1)
        source = read_journal.events_by_tag("never-used")
        started = time.monotonic()
        # Nothing carries the tag, so the query is waiting when the timeout cancels it.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(source), 0.3)
        assert time.monotonic() - started < TIMEOUT / 2
        await source.aclose()
        # The read journal keeps working, for new queries and for live ones.
        assert self.events(await _all(read_journal.current_all_events())) == ["r-1"]
        live = read_journal.all_events()
        try:
            assert self.events(await _pull(live, 1)) == ["r-1"]
        finally:
            await live.aclose()

    async def test_persistence_ids_come_from_the_journal_only(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """An id with events and a snapshot appears once; one with only a snapshot, never."""
        both = await self.setup(system, "both", 2)
        assert await asyncio.to_thread(both.ask, SnapshotCommand(), TIMEOUT) == "snapshot-2"
        only = self.actor(system, "snapshot-only")
        assert await asyncio.to_thread(only.ask, SnapshotCommand(), TIMEOUT) == "snapshot-0"
        assert await _all(read_journal.current_persistence_ids()) == ["both"]
        source = read_journal.persistence_ids()
        try:
            assert await _pull(source, 1) == ["both"]
            pending = asyncio.ensure_future(_pull(source, 1))
            await self.setup(system, "later", 1)
            assert await pending == ["later"]
        finally:
            await source.aclose()

    async def test_cancelled_live_persistence_ids_query_is_released(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """A live persistence-ids query cancelled while waiting ends at once; others go on."""
        await self.setup(system, "t", 1)
        source = read_journal.persistence_ids()
        assert await _pull(source, 1) == ["t"]
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(source), 0.3)
        assert time.monotonic() - started < TIMEOUT / 2
        await source.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(source)
        live = read_journal.persistence_ids()
        try:
            assert await _pull(live, 1) == ["t"]
            pending = asyncio.ensure_future(_pull(live, 1))
            await self.setup(system, "u", 1)
            assert await pending == ["u"]
        finally:
            await live.aclose()

    async def test_all_events_live_pages_across_more_than_one_page(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """AllEvents: events stored after the query caught up arrive over several pages."""
        await self.setup(system, "a", 1)
        source = read_journal.all_events()
        try:
            assert self.events(await _pull(source, 1)) == ["a-1"]
            pending = asyncio.ensure_future(_pull(source, 1))  # waiting for the next event
            ref = self.actor(system, "b")
            await self.tell(ref, "b-0")
            assert self.events(await pending) == ["b-0"]
            # Stored while nobody pulls: the next pulls read them in several pages.
            count = 3 * self.page_size + 2
            await self.tell(ref, *(f"b-{i}" for i in range(1, count + 1)))
            got = await _pull(source, count)
            assert self.events(got) == [f"b-{i}" for i in range(1, count + 1)]
            values = [e.offset.value for e in got if isinstance(e.offset, Sequence)]
            assert len(values) == count
            assert values == sorted(set(values))
        finally:
            await source.aclose()

    # --- adapters, deletion and concurrency ---------------------------------------------------

    async def test_read_adapters_apply_to_queries(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """Read adapters apply to queries: one stored event, two envelopes with one offset."""
        await self.tell(self.actor(system, "s"), "before", "shout:green", "after")
        got = await _all(read_journal.current_events_by_persistence_id("s"))
        assert [(e.sequence_nr, e.event) for e in got] == [
            (1, "before"), (2, "GREEN"), (2, "GREEN!"), (3, "after")]
        assert got[1].offset == got[2].offset  # one stored event: one offset
        tagged = await _all(read_journal.current_events_by_tag("green"))
        assert self.events(tagged) == ["GREEN", "GREEN!"]

    async def test_deleted_events_are_not_delivered_by_tag_or_all_events(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """Deleted events are never delivered, by tag or over all events."""
        a = self.actor(system, "a")
        await self.tell(a, "a green apple", "a green kiwi", "a green banana")
        await self.tell(self.actor(system, "b"), "b green")
        await self.delete(a, 2)
        green = await _all(read_journal.current_events_by_tag("green"))
        assert self.events(green) == ["a green banana", "b green"]
        assert self.events(await _all(read_journal.current_all_events())) == [
            "a green banana", "b green"]
        assert await _all(read_journal.current_events_by_tag("kiwi")) == []

    async def test_live_queries_deliver_every_event_once_in_offset_order_under_concurrent_writers(
        self, system: ActorSystem, read_journal: ReadJournal,
    ) -> None:
        """Akka.NET #2257: under concurrent writers nothing is skipped or repeated."""
        await check_live_queries_under_concurrent_writers(
            system, read_journal, writers=self.concurrent_writers, events=self.concurrent_events)
