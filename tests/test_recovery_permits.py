"""Recovery permits (Akka's RecoveryPermitter): at most N actors of a system recover at once.

Each `SlowRecovery` actor reports the window of its recovery, from its snapshot offer to its
RecoveryCompleted handler, in CLOCK_MONOTONIC time (one clock for every process of the
machine). A permit is granted before the snapshot is loaded and returned after that handler,
so no more than `max_concurrent_recoveries` windows may overlap. The actors recover together
because one broadcast makes them all restart: without the limit their windows do overlap
(the control test), as their LoadSnapshot requests are all answered before any replay
(simple base) or they sleep in parallel processes (multiproc-tcp).
"""

from __future__ import annotations

from typing import Any

import pytest

from persistent_actors import ActorSystem, ConfigError, Kill
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.plugin_actors import Broadcaster
from tests.writer_actors import Script, SlowRecovery

TIMEOUT = 20
ACTORS = 6


def _snapshotted(system: ActorSystem, probe: TestProbe, pids: list[str]) -> None:
    """Give each id a snapshot, then stop its actor, so recovery starts with an offer."""
    for pid in pids:
        ref = system.actor_of(SlowRecovery, pid, probe.ref, name=pid)
        assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("window", pid)  # nothing to recover
        ref.tell("snap")
        assert probe.expect_msg(timeout=TIMEOUT) == ("snapped", pid)
        system.stop(ref)
        assert probe.expect_msg(timeout=TIMEOUT) == ("stopped", pid)


def _max_overlap(windows: list[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in windows] + [(end, -1) for _, end in windows],
                    key=lambda point: (point[0], point[1]))  # an end before a start at a tie
    current = highest = 0
    for _, step in points:
        current += step
        highest = max(highest, current)
    return highest


def _recover_all(base: str, limit: int | None) -> int:
    config = system_config(base)
    if limit is not None:
        config["persistence"] = {"max_concurrent_recoveries": limit}
    with ActorSystem("permits", config=config) as system:
        probe = TestProbe(system)
        refs = []
        for n in range(ACTORS):
            pid = f"slow-{n}"
            refs.append(system.actor_of(SlowRecovery, pid, probe.ref, 0.2, name=pid))
            assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("window", pid)
            refs[-1].tell("snap")
            assert probe.expect_msg(timeout=TIMEOUT) == ("snapped", pid)
        system.actor_of(Broadcaster).tell((refs, "boom"))  # every actor restarts at once
        # pre_restart reports ("stopped", pid) as well (it calls post_stop).
        got = [probe.expect_msg(timeout=TIMEOUT) for _ in range(2 * ACTORS)]
        reports = [report for report in got if report[0] == "window"]
    assert sorted(report[1] for report in reports) == [f"slow-{n}" for n in range(ACTORS)]
    return _max_overlap([(report[2], report[3]) for report in reports])


@pytest.mark.parametrize("limit", [1, 2])
def test_at_most_max_concurrent_recoveries_actors_recover_at_once(base: str, limit: int) -> None:
    assert _recover_all(base, limit) <= limit


def test_without_a_tight_limit_the_recoveries_overlap(base: str) -> None:
    """The control: with the default (50) the same actors do recover concurrently."""
    assert _recover_all(base, None) > 2


def test_a_failed_recovery_returns_its_permit(base: str) -> None:
    config = system_config(base)
    config["persistence"] = {"max_concurrent_recoveries": 1}
    with ActorSystem("permits", config=config) as system:
        probe = TestProbe(system)
        _snapshotted(system, probe, ["fails", "waits"])
        system.actor_of(SlowRecovery, "fails", probe.ref, 0.0, True, name="fails")
        system.actor_of(SlowRecovery, "waits", probe.ref, name="waits")
        assert probe.expect_msg(timeout=TIMEOUT) == ("recovery-failed", "fails")
        assert probe.expect_msg(timeout=TIMEOUT) == ("stopped", "fails")
        assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("window", "waits")


def test_an_actor_stopped_while_waiting_for_a_permit_gives_up_its_turn(base: str) -> None:
    config = system_config(base)
    config["persistence"] = {"max_concurrent_recoveries": 1}
    with ActorSystem("permits", config=config) as system:
        probe = TestProbe(system)
        refs = {}
        for pid in ("first", "quitter", "last"):
            refs[pid] = system.actor_of(SlowRecovery, pid, probe.ref, 0.3, name=pid)
            assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("window", pid)
            refs[pid].tell("snap")
            assert probe.expect_msg(timeout=TIMEOUT) == ("snapped", pid)
        # All three restart together; "quitter" is killed while it waits for (or holds) the
        # one permit. Had its permit or its place in the queue leaked, "last" would never
        # recover.
        system.actor_of(Script).tell([(refs["first"], "boom"), (refs["quitter"], "boom"),
                                      (refs["last"], "boom"), (refs["quitter"], Kill)])
        got = sorted(probe.expect_msg(timeout=TIMEOUT)[:2] for _ in range(6))
        assert got == [("stopped", "first"), ("stopped", "last"), ("stopped", "quitter"),
                       ("stopped", "quitter"), ("window", "first"), ("window", "last")]


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "50"])
def test_max_concurrent_recoveries_is_validated(value: Any) -> None:
    with pytest.raises(ConfigError, match="max_concurrent_recoveries"):
        ActorSystem("bad", config={"persistence": {"max_concurrent_recoveries": value}})
