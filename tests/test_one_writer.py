"""Defect 6: one live actor per persistence id per journal; the replay filter for the rest.

Within one system, a second actor claiming a persistence id that a live actor holds is refused
(`PersistenceIdInUseError`), or waits while the first is stopping. Across systems (processes)
nothing can refuse it, so every stored event carries its writer's id and recovery runs Akka's
replay filter over the history.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import (
    MAX_SEQUENCE_NR,
    ActorSystem,
    ConfigError,
    PersistenceIdInUseError,
    ReplayFilterError,
)
from persistent_actors._replay_filter import ReplayFilter, ReplayFilterSettings
from persistent_actors._serialization import default_serializer
from persistent_actors.journal import AtomicWrite, PersistentRepr, ReplayedRows
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.failure_actors import Added
from tests.writer_actors import History, OtherJournalHistory

TIMEOUT = 10


def _sqlite(path: Path) -> dict[str, str]:
    return {"plugin": "sqlite", "path": str(path)}


def _repr(nr: int, writer: str, pid: str = "p") -> PersistentRepr:
    manifest, payload = default_serializer.to_binary(Added(nr))
    return PersistentRepr(pid, nr, manifest, payload, writer, 1.0 + nr)


async def _stored(path: Path, pid: str) -> list[PersistentRepr]:
    journal = SqliteJournal({"path": str(path)})
    await journal.start()
    try:
        return [r async for r in journal.replay_messages(pid, 1, MAX_SEQUENCE_NR,
                                                         MAX_SEQUENCE_NR)]
    finally:
        await journal.close()


async def _write_history(path: Path, history: Sequence[tuple[int, str]], pid: str) -> None:
    """Store events as two writers racing on one file would have: (sequence nr, writer)."""
    journal = SqliteJournal({"path": str(path)})
    await journal.start()
    try:
        for nr, writer in history:
            assert await journal.write_messages([AtomicWrite((_repr(nr, writer, pid),))]) == [
                None]
    finally:
        await journal.close()


# --- one live actor per persistence id, within a system --------------------------------------


def test_a_second_live_actor_with_the_same_persistence_id_is_refused(system: ActorSystem) -> None:
    probe = TestProbe(system)
    first = system.actor_of(History, "shared", probe.ref, name="first")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
    with pytest.raises(PersistenceIdInUseError, match=r"'shared'.*'first'"):
        system.actor_of(History, "shared", probe.ref, name="second")
    # The refused actor never recovered, and its name is free again.
    assert probe.expect_msg(timeout=TIMEOUT) == ("stopped", "shared")
    first.tell(1)
    assert probe.expect_msg(timeout=TIMEOUT) == ("persisted", 1, 1)
    other = system.actor_of(History, "not-shared", probe.ref, name="second")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
    other.tell(2)
    assert probe.expect_msg(timeout=TIMEOUT) == ("persisted", 2, 1)


def test_a_second_actor_waits_while_the_first_is_stopping(system: ActorSystem) -> None:
    probe = TestProbe(system)
    first = system.actor_of(History, "handover", probe.ref, name="old")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
    first.tell(1)
    assert probe.expect_msg(timeout=TIMEOUT) == ("persisted", 1, 1)
    system.stop(first)
    # Started at once under another name: it recovers only after the old one exited.
    second = system.actor_of(History, "handover", probe.ref, name="new")
    assert probe.expect_msg(timeout=TIMEOUT) == ("stopped", "handover")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", ((1, 1),), 1)
    second.tell(2)
    assert probe.expect_msg(timeout=TIMEOUT) == ("persisted", 2, 2)


def test_the_same_persistence_id_on_another_journal_is_another_stream(
        base: str, tmp_path: Path) -> None:
    config = system_config(base, journals={"other": _sqlite(tmp_path / "other.db")})
    with ActorSystem("one-writer", config=config) as system:
        probe = TestProbe(system)
        system.actor_of(History, "twin", probe.ref, name="default-journal")
        assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
        other = system.actor_of(OtherJournalHistory, "twin", probe.ref, name="other-journal")
        assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
        other.tell(5)
        assert probe.expect_msg(timeout=TIMEOUT) == ("persisted", 5, 1)


async def test_every_stored_event_carries_its_writers_id(base: str, tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    with ActorSystem("one-writer", config=system_config(base, journal=_sqlite(db))) as system:
        probe = TestProbe(system)
        ref = system.actor_of(History, "w", probe.ref, name="w")
        assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
        for n in (1, 2):
            ref.tell(n)
            probe.expect_msg(timeout=TIMEOUT)
        system.stop(ref)
        ref = system.actor_of(History, "w", probe.ref, name="w")
        assert probe.expect_msg(timeout=TIMEOUT) == ("stopped", "w")
        assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", ((1, 1), (2, 2)), 2)
        ref.tell(3)
        assert probe.expect_msg(timeout=TIMEOUT) == ("persisted", 3, 3)
    writers = [r.writer_uuid for r in await _stored(db, "w")]
    assert all(len(w) == 32 for w in writers)  # a uuid4 hex per incarnation
    assert writers[0] == writers[1] != writers[2]


# --- the replay filter, on the stored form ---------------------------------------------------

# Writer A wrote 1..3; B started from 3 and wrote 4; A, unaware, had 4 rejected and wrote 5; B 6.
INTERLEAVED = [(1, "A"), (2, "A"), (3, "A"), (4, "B"), (5, "A"), (6, "B")]


def _filtered(mode: str, history: Sequence[tuple[int, str]], window: int = 100,
              chunk: int = 2) -> list[tuple[int, str]]:
    replay = ReplayFilter(ReplayFilterSettings(mode, window, 10), "p")
    out: list[PersistentRepr] = []
    events = [_repr(nr, writer) for nr, writer in history]
    for start in range(0, len(events), chunk):
        out.extend(replay.feed(events[start:start + chunk]))
    out.extend(replay.flush())
    return [(r.sequence_nr, r.writer_uuid) for r in out]


def test_repair_discards_what_an_old_writer_wrote_after_a_new_one_started(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "persistent_actors.persistence"):
        assert _filtered("repair-by-discard-old", INTERLEAVED) == [
            (1, "A"), (2, "A"), (3, "A"), (4, "B"), (6, "B")]
    assert "event 5 of 'p' comes from writer 'A'" in caplog.text


@pytest.mark.parametrize(("window", "expected"), [
    # Only what is still held back can be taken back: with a window of 1, A's 2 and 3 were
    # already applied when B's first event (2) arrived.
    (1, [(1, "A"), (2, "A"), (3, "A"), (2, "B"), (3, "B")]),
    (2, [(1, "A"), (2, "A"), (2, "B"), (3, "B")]),
    (100, [(1, "A"), (2, "B"), (3, "B")]),
])
def test_repair_drops_held_back_events_a_new_writer_contradicts(
        window: int, expected: list[tuple[int, str]]) -> None:
    # B recovered up to 1 and wrote 2 and 3 again, in a journal that kept both copies.
    history = [(1, "A"), (2, "A"), (3, "A"), (2, "B"), (3, "B")]
    assert _filtered("repair-by-discard-old", history, window=window, chunk=1) == expected


def test_repair_drops_an_out_of_order_event_of_one_writer() -> None:
    assert _filtered("repair-by-discard-old", [(1, "A"), (3, "A"), (2, "A")]) == [
        (1, "A"), (3, "A")]


def test_fail_refuses_a_mixed_history() -> None:
    with pytest.raises(ReplayFilterError, match="newer writer 'B'"):
        _filtered("fail", INTERLEAVED)
    assert _filtered("fail", [(1, "A"), (2, "A"), (3, "B")]) == [(1, "A"), (2, "A"), (3, "B")]


def test_warn_replays_everything_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "persistent_actors.persistence"):
        assert _filtered("warn", INTERLEAVED) == INTERLEAVED
    assert "replay filter (warn)" in caplog.text


@pytest.mark.parametrize(("mode", "outcome"), [
    ("repair-by-discard-old", ("recovered", ((1, 1), (2, 2), (3, 3), (4, 4), (6, 6)), 6)),
    ("warn", ("recovered", ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)), 6)),
    ("off", ("recovered", ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)), 6)),
    ("fail", ("recovery-failed", "ReplayFilterError")),
])
async def test_recovery_applies_the_configured_mode(base: str, tmp_path: Path, mode: str,
                                                    outcome: Any) -> None:
    db = tmp_path / "events.db"
    await _write_history(db, INTERLEAVED, "mixed")
    config = system_config(base, journal=_sqlite(db), replay_filter={"mode": mode})
    with ActorSystem("replay-filter", config=config) as system:
        probe = TestProbe(system)
        system.actor_of(History, "mixed", probe.ref)
        assert probe.expect_msg(timeout=TIMEOUT) == outcome
        if mode == "fail":
            assert probe.expect_msg(timeout=TIMEOUT) == ("stopped", "mixed")


def test_two_systems_writing_one_file_leave_a_history_the_filter_repairs(
        base: str, tmp_path: Path) -> None:
    """Two actor systems, each with a live actor for one id, on one file (on multiproc-tcp
    each journal runs in a process of its own)."""
    config = system_config(base, journal=_sqlite(tmp_path / "events.db"))
    with ActorSystem("one", config=config) as one, ActorSystem("two", config=config) as two:
        probe_a, probe_b = TestProbe(one), TestProbe(two)
        a = one.actor_of(History, "split", probe_a.ref)
        assert probe_a.expect_msg(timeout=TIMEOUT) == ("recovered", (), 0)
        for n in (1, 2, 3):
            a.tell(n)
            assert probe_a.expect_msg(timeout=TIMEOUT) == ("persisted", n, n)
        b = two.actor_of(History, "split", probe_b.ref)
        assert probe_b.expect_msg(timeout=TIMEOUT) == (
            "recovered", ((1, 1), (2, 2), (3, 3)), 3)
        b.tell(4)
        assert probe_b.expect_msg(timeout=TIMEOUT) == ("persisted", 4, 4)
        a.tell(40)  # A believes it is at 3: its 4 is taken
        assert probe_a.expect_msg(timeout=TIMEOUT) == ("rejected", "SequenceConflictError", 4)
        a.tell(5)
        assert probe_a.expect_msg(timeout=TIMEOUT) == ("persisted", 5, 5)
        b.tell(6)  # B believes it is at 4: its 5 is taken
        assert probe_b.expect_msg(timeout=TIMEOUT) == ("rejected", "SequenceConflictError", 5)
        b.tell(7)
        assert probe_b.expect_msg(timeout=TIMEOUT) == ("persisted", 7, 6)
    with ActorSystem("three", config=config) as three:
        probe = TestProbe(three)
        three.actor_of(History, "split", probe.ref)
        # A's 5 came after B took over: discarded; B's history stands.
        assert probe.expect_msg(timeout=TIMEOUT) == (
            "recovered", ((1, 1), (2, 2), (3, 3), (4, 4), (7, 6)), 6)


@pytest.mark.parametrize(("value", "match"), [
    ({"mode": "repair"}, "mode"),
    ({"mode": 1}, "mode"),
    ({"window_size": 0}, "window_size"),
    ({"window_size": True}, "window_size"),
    ({"max_old_writers": 2.5}, "max_old_writers"),
    ({"windowsize": 10}, "windowsize"),
    ("off", "replay_filter"),
])
def test_replay_filter_settings_are_validated(value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ActorSystem("bad", config={"persistence": {"replay_filter": value}})


def test_the_filter_leaves_a_single_writers_history_alone() -> None:
    history = [(nr, "A") for nr in range(1, 251)]
    assert _filtered("repair-by-discard-old", history, window=7, chunk=13) == history


def _filtered_rows(mode: str, history: Sequence[tuple[int, str]], window: int,
                   pages: Sequence[int]) -> list[tuple[int, str]]:
    """`_filtered` through `feed_rows` (recovery's path), in pages of the given sizes."""
    replay = ReplayFilter(ReplayFilterSettings(mode, window, 10), "p")
    rows = ReplayedRows.of([_repr(nr, writer) for nr, writer in history])
    out: list[ReplayedRows] = []
    start = 0
    for size in pages:
        out.extend(replay.feed_rows(rows.slice(start, start + size)))
        start += size
    out.append(replay.flush_rows())
    return [(nr, writer) for page in out
            for nr, writer in zip(page.sequence_nrs, page.writer_uuids, strict=True)]


@pytest.mark.parametrize("seed", range(40))
def test_feeding_rows_filters_exactly_as_feeding_events(seed: int) -> None:
    """`feed_rows` moves whole pages of one writer at once; the outcome is `feed`'s, event by
    event, for any history (writers changing, going back, out of order), window and paging."""
    rng = random.Random(seed)
    writers = "ABCD"[:rng.randint(1, 4)]
    history: list[tuple[int, str]] = []
    nr = 0
    for _ in range(rng.randint(0, 400)):
        nr = max(1, nr + rng.choice((1, 1, 1, 1, 1, 1, 0, -1, -3)))
        history.append((nr, rng.choice(writers) if rng.random() < 0.05 or not history
                        else history[-1][1]))
    window = rng.choice((1, 2, 7, 100))
    pages: list[int] = []
    while sum(pages) < len(history):
        pages.append(rng.choice((1, 3, 50, 120, 500)))
    for mode in ("repair-by-discard-old", "warn", "fail"):
        try:
            expected: Any = _filtered(mode, history, window, chunk=1)
        except ReplayFilterError as e:
            expected = str(e)
        try:
            got: Any = _filtered_rows(mode, history, window, pages)
        except ReplayFilterError as e:
            got = str(e)
        assert got == expected, (mode, window, pages)
