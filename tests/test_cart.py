"""The seed's test, ported: tell four commands, print, kill, respawn, print again (within 5 s)."""

from __future__ import annotations

import time

from persistent_actors import ActorSystem, Kill
from persistent_actors.testing import TestProbe
from tests.actors import Cmd, MyPersistentActor


def test_events_are_stored_replayed_and_recovered(system: ActorSystem) -> None:
    expected_count = 2
    probe = TestProbe(system)
    actor = system.actor_of(MyPersistentActor, probe.ref, name="persistentActor")
    started = time.monotonic()

    actor.tell(Cmd("장바구니를 물건을 담음+1"))
    actor.tell(Cmd("장바구니에 물건을 뺌-0"))
    actor.tell(Cmd("장바구니에 물건을 담음+1"))
    actor.tell(Cmd("장바구니에 물건을 담음+2"))
    actor.tell("print")
    assert probe.expect_msg(timeout=5) == expected_count

    actor.tell(Kill)
    time.sleep(0.5)

    actor = system.actor_of(MyPersistentActor, probe.ref, name="persistentActor")
    actor.tell("print")
    assert probe.expect_msg(timeout=5) == expected_count
    assert time.monotonic() - started < 5
