"""Shared hosts write their actors' events with a journal instance of their own.

`_thespian/local_journal.py`: a journal whose plugin declares `Journal.concurrent_writers`
is started in each shared host process too; its actors' writes skip the plugin process, and
no other request of the host to that journal overtakes a write it gathered.
"""

from __future__ import annotations

import asyncio
import select
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest

from journal_plugins.sqlite import SqliteJournal
from persistent_actors import ActorSystem
from persistent_actors import _protocol as p
from persistent_actors._thespian.local_journal import LocalJournals, _Committer, _Local
from persistent_actors._thespian.shared_host import SharedHost
from persistent_actors.errors import JournalError
from persistent_actors.journal import AtomicWrite, PersistentRepr
from persistent_actors.testing import TestProbe
from tests.entity_actors import AddItem, Cart
from tests.failure_actors import ProcessReporter

_PLUGINS = "tests.local_journal_plugins"


def _config(tmp_path: Path, plugin: str) -> dict[str, Any]:
    return {"actor_system": {"base": "multiproc-tcp", "host_processes": 2},
            "persistence": {"journal": {"plugin": f"{_PLUGINS}:{plugin}",
                                        "path": str(tmp_path / "events.db")}}}


def _writers(tmp_path: Path) -> set[int]:
    return {int(line) for line in (tmp_path / "events.db-pids").read_text().split()}


def _persist_in_each_host(system: ActorSystem, probe: TestProbe) -> set[int]:
    actors = [system.actor_of(ProcessReporter, f"cart-{i}", probe.ref) for i in range(2)]
    assert [probe.expect_msg(timeout=10) for _ in actors] == [("recovered", 0, 0)] * 2
    for value, actor in enumerate(actors, start=1):
        actor.tell(value)
    assert {probe.expect_msg(timeout=10) for _ in actors} == {("persisted", 1, 1),
                                                             ("persisted", 2, 1)}
    pids = {actor.ask("pid", timeout=10) for actor in actors}
    assert len(pids) == 2  # one actor in each host
    return pids


@pytest.mark.multiproc
def test_each_shared_host_writes_its_actors_events_itself(tmp_path: Path) -> None:
    config = _config(tmp_path, "PidNotingJournal")
    with ActorSystem("local", config=config) as system:
        hosts = _persist_in_each_host(system, TestProbe(system))
    assert _writers(tmp_path) == hosts
    with ActorSystem("local", config=config) as system:  # what the hosts wrote is durable
        probe = TestProbe(system)
        for i in range(2):
            system.actor_of(ProcessReporter, f"cart-{i}", probe.ref)
        assert {probe.expect_msg(timeout=10) for _ in range(2)} == {("recovered", 1, 1),
                                                                   ("recovered", 2, 1)}


@pytest.mark.multiproc
def test_a_journal_class_that_does_not_declare_it_is_written_by_its_plugin_process(
        tmp_path: Path) -> None:
    with ActorSystem("remote", config=_config(tmp_path, "UndeclaredPidNotingJournal")) \
            as system:
        hosts = _persist_in_each_host(system, TestProbe(system))
    writers = _writers(tmp_path)
    assert len(writers) == 1  # the plugin process only
    assert not writers & hosts


@pytest.mark.multiproc
def test_entity_hosts_write_their_entities_events_themselves(tmp_path: Path) -> None:
    config = _config(tmp_path, "PidNotingJournal")
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0}
    users = [f"user-{i}" for i in range(8)]
    with ActorSystem("entities", config=config) as system:
        carts = system.entities("cart", Cart)
        for user in users:
            assert carts.ask(user, AddItem("apple"), timeout=10) == 1
        hosts = {carts.ask(user, "pid", timeout=10) for user in users}
    assert len(hosts) == 2  # 8 users over 2 hosts
    assert _writers(tmp_path) == hosts
    with ActorSystem("entities", config=config) as system:
        carts = system.entities("cart", Cart)
        assert [carts.ask(user, "items", timeout=10) for user in users] == [["apple"]] * 8


@pytest.mark.multiproc
def test_concurrent_writes_through_background_commits_are_stored_in_order_once(
        tmp_path: Path) -> None:
    # Each entity host commits on a thread of its own while it takes the next frames: 20
    # users' persists interleave over two hosts with commits in flight, and the system stops
    # right after the last reply. Every write was answered with its own position, and after a
    # restart each cart holds exactly its items, in order.
    config = _config(tmp_path, "PidNotingJournal")
    config["sharding"] = {"host_processes": 2, "passivate_idle_after": 0}
    users = [f"user-{i}" for i in range(20)]
    with ActorSystem("burst", config=config) as system:
        carts = system.entities("cart", Cart)

        async def client(user: str) -> list[int]:
            return [await carts.ask_async(user, AddItem(f"{user}:{k}"), timeout=30)
                    for k in range(10)]

        async def burst() -> list[list[int]]:
            return list(await asyncio.gather(*(client(user) for user in users)))

        answers = asyncio.run(burst())
    assert answers == [list(range(1, 11))] * len(users)
    with ActorSystem("burst", config=config) as system:
        carts = system.entities("cart", Cart)
        for user in users:
            assert carts.ask(user, "items", timeout=10) == [f"{user}:{k}" for k in range(10)]


# -- the host's side, without thespian --------------------------------------------------------
class _Cell:
    def __init__(self, cell: int) -> None:
        self.cell = self.key = cell
        self.instance_ids: list[int] = []
        self.stopped = False


class _Host(SharedHost):
    """A shared host whose sends are recorded, with the SQLite journal at "journal"."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.sent: list[tuple[Any, Any, int]] = []  # (address, message, rows stored then)
        self._guardian = "guardian"
        self._journals = LocalJournals("test")
        assert self._journals.register("journal", p.StartPlugin(
            "journal", "default", "sqlite", {"path": str(path)}))

    @property
    def myAddress(self) -> Any:  # noqa: N802 - thespian's name
        return "host"

    def send(self, targetAddr: Any, msg: Any) -> None:  # noqa: N803 - thespian's names
        with sqlite3.connect(self.path) as db:
            (rows,) = db.execute("SELECT count(*) FROM journal").fetchone()
        self.sent.append((targetAddr, msg, rows))


def _write(seq: int) -> p.WriteMessages:
    event = PersistentRepr("a", seq, "m", b"x")
    return p.WriteMessages((AtomicWrite((event,)),), actor_instance_id=7)


def test_no_other_request_overtakes_a_write_the_host_gathered(tmp_path: Path) -> None:
    host = _Host(tmp_path / "events.db")
    cell: Any = _Cell(1)
    try:
        host.cell_send(cell, "journal", _write(1))
        host.cell_send(cell, "journal", _write(2))
        assert host.sent == [("host", p.LocalFlush(), 0)]  # gathered, a flush is due
        replay = p.ReplayMessages("a", 1, 10, 100, 8)
        host.cell_send(cell, "journal", replay)
        # Both writes were committed (one transaction) before the replay left for the plugin.
        assert host.sent[-1] == ("journal", replay, 2)
        results = list(host._local)
        assert results == [p.CellEnvelope(1, p.WriteMessagesResult((p.STORED,), 7))] * 2
        host.receiveMessage(p.LocalFlush(), "host")  # nothing left to write
        assert [sent for sent in host.sent if sent[0] == "journal"] == [("journal", replay, 2)]
    finally:
        assert host._journals is not None
        host._journals.close()


def _committed(host: _Host, fd: int) -> None:
    """Wait until the host's commit thread says a commit finished, then let the host collect."""
    readable, _, _ = select.select([fd], [], [], 30)
    assert readable == [fd]
    host._collect_local()


def test_commits_run_in_the_background_and_what_is_gathered_meanwhile_goes_next(
        tmp_path: Path) -> None:
    host = _Host(tmp_path / "events.db")
    watched: list[int] = []
    stopped: list[int] = []

    def watch(fd: int) -> Any:
        watched.append(fd)
        return lambda: stopped.append(fd)

    journals = host._journals
    assert journals is not None
    journals.commit_in_background(watch)
    cell: Any = _Cell(1)
    try:
        host.cell_send(cell, "journal", _write(1))
        host._start_local_flush()  # the LocalFlush: write 1 goes to the commit thread
        host.cell_send(cell, "journal", _write(2))  # meanwhile: gathered
        host.cell_send(cell, "journal", _write(3))
        host._start_local_flush()  # a commit is in flight: 2 and 3 wait for it
        _committed(host, watched[0])
        assert list(host._local) == [p.CellEnvelope(1, p.WriteMessagesResult((p.STORED,), 7))]
        _committed(host, watched[0])  # 2 and 3 went as the next batch, when 1 was done
        assert list(host._local) == [
            p.CellEnvelope(1, p.WriteMessagesResult((p.STORED,), 7))] * 3
        with sqlite3.connect(tmp_path / "events.db") as db:
            rows = db.execute("SELECT sequence_nr FROM journal ORDER BY ordering").fetchall()
        assert rows == [(1,), (2,), (3,)]
        assert not journals.unstored
    finally:
        journals.close()
    assert stopped == watched  # the watch ends with the journals


def test_a_request_that_must_not_overtake_waits_for_the_commit_in_flight(
        tmp_path: Path) -> None:
    host = _Host(tmp_path / "events.db")
    journals = host._journals
    assert journals is not None
    journals.commit_in_background(lambda fd: lambda: None)
    cell: Any = _Cell(1)
    try:
        host.cell_send(cell, "journal", _write(1))
        host._start_local_flush()  # in flight
        host.cell_send(cell, "journal", _write(2))  # gathered behind it
        replay = p.ReplayMessages("a", 1, 10, 100, 8)
        host.cell_send(cell, "journal", replay)
        # The replay left once the commit in flight and the gathered write were stored.
        assert host.sent[-1] == ("journal", replay, 2)
        assert list(host._local) == [
            p.CellEnvelope(1, p.WriteMessagesResult((p.STORED,), 7))] * 2
        assert not journals.unstored
    finally:
        journals.close()


def test_without_a_loop_to_wake_the_host_commits_inline(tmp_path: Path) -> None:
    host = _Host(tmp_path / "events.db")
    journals = host._journals
    assert journals is not None
    journals.commit_in_background(lambda fd: None)  # the loop is not lean_loop's
    cell: Any = _Cell(1)
    try:
        host.cell_send(cell, "journal", _write(1))
        host._start_local_flush()
        assert list(host._local) == [p.CellEnvelope(1, p.WriteMessagesResult((p.STORED,), 7))]
    finally:
        journals.close()


class _Boom(BaseException):
    """Escapes `write_batch`'s own handling (it catches Exception)."""


class _CountingJournal:
    async def write_messages(self, writes: Any) -> list[None]:
        return [None] * len(writes)


class _ExplodingLoop:
    def run(self, coro: Any) -> Any:
        coro.close()
        raise _Boom


def test_a_commit_that_raises_fails_its_writes_and_answers_each_item_as_a_failed_write(
) -> None:
    # The commit thread must answer every request whatever escapes the write, item by item
    # as write_batch maps a failed write_messages (a deferred handler's place: Looped).
    committer = _Committer("test")
    try:
        local = _Local("journal", cast(Any, _CountingJournal()), _ExplodingLoop(), "test")
        event = PersistentRepr("a", 1, "m", b"x")
        request = p.WriteMessages((AtomicWrite((event,)), p.LoopMessage()), actor_instance_id=7)
        committer.submit(local, [request])
        done_local, batch, outcomes = committer.wait()
        assert done_local is local
        assert batch == [request]
        ((failed, looped),) = outcomes
        assert isinstance(failed, p.WriteFailed)
        assert isinstance(failed.cause, JournalError)
        assert "_Boom" in str(failed.cause)
        assert looped == p.Looped()
    finally:
        committer.close()


def test_sqlite_in_memory_is_not_written_from_many_processes() -> None:
    assert SqliteJournal({"path": "events.db"}).concurrent_writers()
    assert not SqliteJournal({"path": ":memory:"}).concurrent_writers()
