"""What `persistent_actors._thespian.wakeups` changes in thespian's simple base, pinned.

Wakeups must still fire in deadline order (ties in the order they were set), none lost or
fired early; the send queue must stay first-in first-out; and a timer must still fire on time
when 10,000 actors each keep one pending.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

import pytest
from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorSystem as ThespianActorSystem
from thespian.actors import WakeupMessage

from persistent_actors import ActorSystem
from persistent_actors._thespian.wakeups import fast_wakeup_checks
from persistent_actors.testing import Delay, PersistenceTestKit, TestProbe
from tests.failure_actors import Reporter
from tests.test_failures import kit_config


class _Timers(ThespianActor):  # type: ignore[misc]
    """Sets the timers it is told, records the wakeups in the order they came."""

    def __init__(self) -> None:
        super().__init__()
        self.fired: list[Any] = []
        self.seen: list[Any] = []

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian's name
        if isinstance(message, WakeupMessage):
            self.fired.append((message.payload, time.monotonic()))
        elif isinstance(message, tuple) and message[0] == "set":
            for delay, payload in message[1]:
                self.wakeupAfter(datetime.timedelta(seconds=delay), payload=payload)
            self.send(sender, "set")
        elif message == "fired":
            self.send(sender, list(self.fired))
        elif isinstance(message, tuple) and message[0] == "seq":
            self.seen.append(message[1])
        elif message == "seen":
            self.send(sender, list(self.seen))


def _raw_simple_system() -> Any:
    fast_wakeup_checks()
    return ThespianActorSystem("simpleSystemBase", transientUnique=True, logDefs=False)


def test_wakeups_fire_in_deadline_order_none_early_none_lost() -> None:
    asys = _raw_simple_system()
    try:
        timers = asys.createActor(_Timers)
        # Out of order on purpose, with ties (fire in the order set) and one far in the future.
        plan = [(0.30, "c"), (0.10, "a1"), (0.20, "b"), (0.10, "a2"), (60.0, "never"),
                (0.0, "now")]
        set_at = time.monotonic()
        assert asys.ask(timers, ("set", plan), 5) == "set"
        deadline = time.monotonic() + 5
        fired: list[Any] = []
        while time.monotonic() < deadline and len(fired) < 5:
            asys.listen(0.05)  # the simple base runs actors and due wakeups only inside calls
            fired = asys.ask(timers, "fired", 5)
        assert [payload for payload, _ in fired] == ["now", "a1", "a2", "b", "c"]
        delays = {payload: delay for delay, payload in plan}
        for payload, at in fired:
            assert at - set_at >= delays[payload] - 0.01, f"{payload} fired early"
    finally:
        asys.shutdown()


def test_send_queue_stays_first_in_first_out() -> None:
    asys = _raw_simple_system()
    try:
        timers = asys.createActor(_Timers)
        for nr in range(2000):
            asys.tell(timers, ("seq", nr))
        assert asys.ask(timers, "seen", 5) == list(range(2000))
    finally:
        asys.shutdown()


def test_a_recovery_timeout_fires_with_10000_actors_keeping_timers() -> None:
    config = kit_config("simple")
    config["persistence"]["recovery_event_timeout"] = 5.0
    with ActorSystem("many-timers", config=config) as system:
        kit, probe = PersistenceTestKit(system), TestProbe(system)
        quiet = TestProbe(system)
        refs = [system.actor_of(Reporter, f"idle-{i}", quiet.ref) for i in range(10_000)]
        assert len(set(refs)) == 10_000
        for _ in range(10_000):  # every one recovered; each left a recovery-timeout timer
            assert quiet.expect_msg(timeout=30)[0] == "recovered"
        kit.journal.on_recovery(Delay(8.0))
        system.actor_of(Reporter, "slow", probe.ref)
        assert probe.expect_msg(timeout=30) == ("recovery-failed", "RecoveryTimedOutError")
        assert probe.expect_msg(timeout=10) == "stopped"
        # The 10,000 expired timers fired too, and did nothing to the recovered actors.
        refs[0].tell("total")
        assert quiet.expect_msg(timeout=10) == ("total", 0, 0)


def test_delivered_messages_are_still_logged_when_thespian_debug_logging_is_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """The patched receive skips thespian's per-message debug line only while it is off."""
    asys = _raw_simple_system()
    try:
        timers = asys.createActor(_Timers)
        with caplog.at_level(logging.INFO, "Thespian"):
            asys.tell(timers, ("seq", "quiet"))
        assert "quiet" not in caplog.text
        with caplog.at_level(logging.DEBUG, "Thespian"):
            asys.tell(timers, ("seq", "loud"))
        assert "got message \"('seq', 'loud')\"" in caplog.text
        assert asys.ask(timers, "seen", 5) == ["quiet", "loud"]
    finally:
        asys.shutdown()
