"""``[actor_system] host_processes``: actor_of actors placed in a fixed pool of shared processes.

It is multiproc-tcp's default (one host per CPU), so the behaviour suites run on it (the
``multiproc-tcp`` parametrisation in tests/conftest.py; ``multiproc-tcp-isolated`` is one
process per actor); these are what only the pool has: its size, placement, a dying host.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import ActorInitializationError, ActorSystem, AskTimeoutError
from persistent_actors.messages import DeadLetter
from persistent_actors.testing import TestProbe
from tests.conftest import subscribe_synced
from tests.failure_actors import ProcessReporter
from tests.system_actors import Echo

pytestmark = pytest.mark.multiproc


def _config(host_processes: int, tmp_path: Path | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"actor_system": {"base": "multiproc-tcp",
                                               "host_processes": host_processes}}
    if tmp_path is not None:
        config["persistence"] = {"journal": {"plugin": "sqlite",
                                             "path": str(tmp_path / "events.db")}}
    return config


@pytest.mark.parametrize(("host_processes", "expected"), [(2, [3, 3]), (0, [1] * 6)])
def test_actors_share_the_configured_number_of_processes(
        host_processes: int, expected: list[int]) -> None:
    with ActorSystem("pool", config=_config(host_processes)) as system:
        probe = TestProbe(system)
        actors = [system.actor_of(ProcessReporter, f"pool-{i}", probe.ref) for i in range(6)]
        pids = collections.Counter(actor.ask("pid", timeout=10) for actor in actors)
        # The least-loaded host takes each new actor: 6 actors over 2 hosts, 3 each.
        assert sorted(pids.values()) == expected
        assert os.getpid() not in pids


def test_by_default_actors_share_one_process_per_cpu() -> None:
    hosts = min(len(os.sched_getaffinity(0)), 6)
    with ActorSystem("default", config={"actor_system": {"base": "multiproc-tcp"}}) as system:
        probe = TestProbe(system)
        actors = [system.actor_of(ProcessReporter, f"d-{i}", probe.ref) for i in range(6)]
        pids = {actor.ask("pid", timeout=10) for actor in actors}
        assert len(pids) == hosts
        assert os.getpid() not in pids


def test_a_stopped_actors_ref_does_not_reach_its_successor_in_the_same_host() -> None:
    with ActorSystem("reuse", config=_config(2)) as system:
        dead_letters = TestProbe(system)
        subscribe_synced(system, dead_letters, DeadLetter,
                         DeadLetter("synced", None, dead_letters.ref))
        old = system.actor_of(Echo, name="x")
        assert old.ask("a", timeout=10) == "a"
        system.stop(old)
        new = system.actor_of(Echo, name="x")  # the name is free again
        assert new != old
        assert new.ask("b", timeout=10) == "b"
        old.tell("late")
        letter = dead_letters.expect_msg(timeout=10)
        assert isinstance(letter, DeadLetter)
        assert letter.message == "late"
        assert letter.recipient == old


def test_a_killed_shared_host_restarts_each_of_its_actors_under_its_own_ref(
        tmp_path: Path) -> None:
    # One host: both actors die together, each comes back under its own ref with its own
    # state; twice, so that refs to the first incarnation keep leading to their own actor.
    with ActorSystem("crash", config=_config(1, tmp_path)) as system:
        probe = TestProbe(system)
        a = system.actor_of(ProcessReporter, "a", probe.ref, name="a")
        b = system.actor_of(ProcessReporter, "b", probe.ref, name="b")
        assert [probe.expect_msg(timeout=10) for _ in range(2)] == [("recovered", 0, 0)] * 2
        a.tell(1)
        b.tell(10)
        assert {probe.expect_msg(timeout=10) for _ in range(2)} == {("persisted", 1, 1),
                                                                   ("persisted", 10, 1)}
        pid = a.ask("pid", timeout=10)
        assert b.ask("pid", timeout=10) == pid
        for _ in range(2):
            os.kill(pid, signal.SIGKILL)
            # Sent at once, while the guardian may not know yet: held, then delivered.
            assert a.ask("total?", timeout=20) == ("total", 1, 1)
            assert b.ask("total?", timeout=20) == ("total", 10, 1)
            assert {probe.expect_msg(timeout=10) for _ in range(2)} == {("recovered", 1, 1),
                                                                       ("recovered", 10, 1)}
            new_pid = a.ask("pid", timeout=10)
            assert new_pid != pid
            assert b.ask("pid", timeout=10) == new_pid
            pid = new_pid


def _host_dying_on_start(monkeypatch: pytest.MonkeyPatch, times: int | None,
                         marks: Path) -> None:
    """Shared hosts forked from now on exit at their start, the first `times` (None: always).

    Inherited by thespian's processes, which fork from this one; `marks` counts the deaths.
    """
    from persistent_actors import _protocol as p  # noqa: PLC0415 - the host's start message
    from persistent_actors._thespian import shared_host  # noqa: PLC0415

    original = shared_host.SharedHost.receiveMessage

    def receive(self: Any, message: Any, sender: Any) -> None:
        if isinstance(message, p.StartSharedHost):
            died = len(list(marks.iterdir()))
            if times is None or died < times:
                (marks / f"death-{died}").touch()
                os._exit(3)
        original(self, message, sender)

    monkeypatch.setattr(shared_host.SharedHost, "receiveMessage", receive)


def test_a_shared_host_that_dies_before_it_started_is_replaced(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Its actors used to wait for it until actor_of timed out (60 s); now a new host starts.
    marks = tmp_path / "marks"
    marks.mkdir()
    _host_dying_on_start(monkeypatch, 1, marks)
    with ActorSystem("early", config=_config(1)) as system:
        echo = system.actor_of(Echo, name="echo")
        assert echo.ask("hi", timeout=10) == "hi"
        assert len(list(marks.iterdir())) == 1


def test_a_shared_host_that_never_starts_fails_actor_of(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    _host_dying_on_start(monkeypatch, None, marks)
    with ActorSystem("never", config=_config(1)) as system:
        with pytest.raises(ActorInitializationError, match=r"shared host process 0 .*3 times"):
            system.actor_of(Echo, name="echo")
        assert len(list(marks.iterdir())) == 3
        # The name is free again, and the next actor_of tries a host once more.
        with pytest.raises(ActorInitializationError, match="exited before it started"):
            system.actor_of(Echo, name="echo")
        assert len(list(marks.iterdir())) == 6


def test_an_ask_to_a_process_that_took_nothing_says_so_in_its_timeout() -> None:
    # A host process that does not take its frames (stopped here with SIGSTOP; hung, in the
    # wild) is told apart from an actor that is slow to reply: the timeout names the frame.
    with ActorSystem("stalled", config=_config(1)) as system:
        probe = TestProbe(system)
        actor = system.actor_of(ProcessReporter, "stalled-1", probe.ref)
        pid = actor.ask("pid", timeout=10)
        with pytest.raises(AskTimeoutError) as slow:
            # Answered by nobody, but taken: the timeout only bounds the wait for the process
            # to take the frame, which on a loaded machine may not happen within 0.5 s.
            actor.ask("silence", timeout=3.0)
        assert "acknowledge" not in str(slow.value)
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(AskTimeoutError, match=r"frame carrying it .* has waited "
                                                      r"[0-9.]+s for the receiving process"):
                actor.ask("pid", timeout=0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Nothing was lost: the process takes the frame once it runs again.
        assert actor.ask("pid", timeout=10) == pid


def test_a_shared_host_slow_to_start_is_logged_and_its_actors_still_start(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A host that neither starts nor dies used to leave actor_of waiting without a word.
    from persistent_actors import _protocol as p  # noqa: PLC0415 - the host's start message
    from persistent_actors._thespian import guardian, shared_host  # noqa: PLC0415

    original = shared_host.SharedHost.receiveMessage

    def receive(self: Any, message: Any, sender: Any) -> None:
        if isinstance(message, p.StartSharedHost):
            time.sleep(1.5)  # hung for a while (inherited by the forked host process)
        original(self, message, sender)

    monkeypatch.setattr(shared_host.SharedHost, "receiveMessage", receive)
    monkeypatch.setattr(guardian, "SLOW_HOST_START", 0.3)
    # The guardian's process inherits this handler (pytest's own stay in this process).
    handler = logging.FileHandler(tmp_path / "actors.log")
    logger = logging.getLogger("persistent_actors")
    logger.addHandler(handler)
    try:
        with ActorSystem("slow", config=_config(1)) as system:
            echo = system.actor_of(Echo, name="echo")
            assert echo.ask("hi", timeout=10) == "hi"
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert re.search(r"shared host process 0 .* has not reported itself started 0 s after it "
                     r"was created; the 1 actor_of call\(s\) placed there wait",
                     (tmp_path / "actors.log").read_text())
