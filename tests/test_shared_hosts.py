"""``[actor_system] host_processes``: actor_of actors placed in a fixed pool of shared processes.

The behaviour suites run on it too (the ``multiproc-tcp-shared`` parametrisation in
tests/conftest.py); these are what only the pool has: its size, placement, a dying host.
"""

from __future__ import annotations

import collections
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import ActorSystem
from persistent_actors.messages import DeadLetter
from persistent_actors.testing import TestProbe
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


def test_a_stopped_actors_ref_does_not_reach_its_successor_in_the_same_host() -> None:
    with ActorSystem("reuse", config=_config(2)) as system:
        dead_letters = TestProbe(system)
        system.event_stream.subscribe(dead_letters.ref, DeadLetter)
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
