"""Actor timers (Akka's IWithTimers) on every base: single, periodic, cancel, restart."""

from __future__ import annotations

import datetime
import math
import time
import uuid
from typing import Any

import pytest

from persistent_actors import ActorRef, ActorSystem, TimerScheduler
from persistent_actors import _protocol as p
from persistent_actors.testing import TestProbe
from persistent_actors.timers import NOT_ACTIVE
from tests.conftest import system_config
from tests.timer_actors import (
    PersistentTimer,
    ReportedTimerEntity,
    TimerEntity,
    TimerUser,
)


@pytest.fixture(params=["actor_of", "entity"])
def timer_user(request: pytest.FixtureRequest,
               system: ActorSystem) -> tuple[ActorRef, TestProbe]:
    probe = TestProbe(system)
    if request.param == "entity":
        ref: ActorRef = system.entities("timer-users", TimerEntity, probe.ref).ref(
            uuid.uuid4().hex)
    else:
        ref = system.actor_of(TimerUser, probe.ref)
    return ref, probe


def _until_mark(ref: ActorRef, probe: TestProbe) -> list[Any]:
    """What `probe` got from `ref` before a mark sent now (the timers' messages so far)."""
    mark = uuid.uuid4().hex
    ref.tell(("mark", mark))
    got: list[Any] = []
    while (message := probe.receive_one(timeout=10.0)) != ("got", ("mark", mark), False):
        got.append(message)
    return got


def test_a_single_timer_fires_once_from_no_sender(
        timer_user: tuple[ActorRef, TestProbe]) -> None:
    ref, probe = timer_user
    ref.tell(("single", "k", "ping", 0.05))
    # From no sender: not from the actor itself (a reply to it goes nowhere).
    assert probe.expect_msg(timeout=10.0) == ("got", "ping", False)
    assert ref.ask(("active", "k"), timeout=10.0) is False
    probe.expect_no_msg(timeout=0.2)


def test_a_periodic_timer_repeats_until_cancelled(
        timer_user: tuple[ActorRef, TestProbe]) -> None:
    ref, probe = timer_user
    ref.tell(("periodic", "tick", "tick", 0.02))
    for _ in range(3):
        assert probe.expect_msg(timeout=10.0) == ("got", "tick", False)
    assert ref.ask(("active", "tick"), timeout=10.0) is True
    ref.tell(("cancel", "tick"))
    assert set(_until_mark(ref, probe)) <= {("got", "tick", False)}
    assert ref.ask(("active", "tick"), timeout=10.0) is False
    probe.expect_no_msg(timeout=0.2)


def test_starting_a_timer_under_a_key_in_use_replaces_it(
        timer_user: tuple[ActorRef, TestProbe]) -> None:
    ref, probe = timer_user
    # "old" is due after 1 s (was 0.2 s): the second tell may follow the first by more than
    # 0.2 s on a loaded machine (on multiproc-tcp it waits for the first frame's
    # acknowledgement), and "old" could fire before it was replaced.
    ref.tell(("single", "k", "old", 1.0))
    ref.tell(("single", "k", "new", 0.01))
    assert probe.expect_msg(timeout=10.0) == ("got", "new", False)
    probe.expect_no_msg(timeout=1.2)  # past the time "old" was due


def test_a_cancelled_timers_message_already_queued_is_not_handled(
        timer_user: tuple[ActorRef, TestProbe]) -> None:
    ref, probe = timer_user
    ref.tell(("fire_then_cancel", "k"))
    assert _until_mark(ref, probe) == []
    probe.expect_no_msg(timeout=0.2)


def test_a_restart_and_cancel_all_end_every_timer(
        timer_user: tuple[ActorRef, TestProbe]) -> None:
    ref, probe = timer_user
    ref.tell(("periodic", "a", "a", 0.02))
    assert probe.expect_msg(timeout=10.0) == ("got", "a", False)
    ref.tell("fail")  # the new instance has no timers
    _until_mark(ref, probe)
    probe.expect_no_msg(timeout=0.2)
    ref.tell(("periodic", "b", "b", 0.02))
    ref.tell(("periodic", "c", "c", 0.02))
    assert probe.expect_msg_type(tuple, timeout=10.0)[0] == "got"
    ref.tell("cancel_all")
    _until_mark(ref, probe)
    probe.expect_no_msg(timeout=0.2)


def test_a_passivated_entitys_timer_does_not_start_it_again(system: ActorSystem) -> None:
    # Entities start on their first message; the entity host fires a cell's timers only while
    # that cell runs, so the timers of a passivated incarnation (one even due as it
    # passivates) start no new one, and the next incarnation has none of them.
    probe = TestProbe(system)
    region = system.entities("reported-timers", ReportedTimerEntity, probe.ref)
    region.tell("e1", ("periodic", "tick", "tick", 0.05))
    assert probe.expect_msg(timeout=10.0) == ("started", "e1")
    assert probe.expect_msg(timeout=10.0) == ("got", "tick", False)
    region.tell("e1", "fire_then_passivate")
    # What it handled before the passivation may still arrive first; the window below starts
    # at the stop (from the send, on a loaded machine, ticks could come on after it).
    while (message := probe.receive_one(timeout=10.0)) != ("stopped", "e1"):
        assert message[0] == "got", message
    deadline = time.monotonic() + 0.5  # ten ticks' worth: none of them may start it again
    seen = []
    while (left := deadline - time.monotonic()) > 0:
        seen.append(probe.receive_one(timeout=left))  # a tick still on its way, or nothing
    assert ("started", "e1") not in seen
    region.tell("e1", ("mark", "next"))  # the next incarnation starts on a real message
    assert probe.expect_msg(timeout=10.0) == ("started", "e1")
    assert probe.expect_msg(timeout=10.0) == ("got", ("mark", "next"), False)
    probe.expect_no_msg(timeout=0.2)  # and it has no timer of the old one


def test_a_persistent_actors_timer_message_is_a_command(system: ActorSystem) -> None:
    probe = TestProbe(system)
    pid = f"timed-{uuid.uuid4().hex}"
    ref = system.actor_of(PersistentTimer, pid, probe.ref)
    ref.tell("start")
    # Three ticks persisted one after another (each tick waits in the stash while the
    # previous persist is in flight), then the handler cancels the timer.
    assert probe.expect_msg(timeout=10.0) == ("persisted", 3, False)
    probe.expect_no_msg(timeout=0.2)


# -- the scheduler alone ---------------------------------------------------------------------
class _Mailbox:
    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Any]] = []

    def _schedule_self(self, delay: float, message: Any) -> None:
        self.scheduled.append((delay, message))


def test_a_firing_of_a_replaced_or_cancelled_timer_is_not_active() -> None:
    mailbox = _Mailbox()
    timers = TimerScheduler(mailbox)
    timers.start_single_timer("k", "first", 1.0)
    timers.start_single_timer("k", "second", 2.0)
    (_, first), (_, second) = mailbox.scheduled
    assert timers.fired(first) is NOT_ACTIVE
    assert timers.fired(second) == "second"
    assert timers.fired(second) is NOT_ACTIVE  # a single timer fires once
    timers.start_periodic_timer("p", "tick", 0.5, initial_delay=0)
    periodic = mailbox.scheduled[-1]
    assert periodic[0] == 0
    assert timers.fired(periodic[1]) == "tick"
    assert mailbox.scheduled[-1] == (0.5, periodic[1])  # scheduled again, same generation
    timers.cancel("p")
    assert timers.fired(periodic[1]) is NOT_ACTIVE
    timers.cancel("nothing")  # no timer under it: nothing happens
    # Another scheduler (a restarted instance) never takes an earlier instance's firing.
    again = TimerScheduler(mailbox)
    again.start_single_timer("k", "third", 1.0)
    assert again.fired(second) is NOT_ACTIVE
    assert isinstance(mailbox.scheduled[-1][1], p.TimerFired)


@pytest.mark.parametrize(("call", "error", "text"), [
    (lambda t: t.start_single_timer([], "m", 1.0), TypeError, "timer key must be hashable"),
    (lambda t: t.start_single_timer("k", "m", -1), ValueError, "delay must be a finite"),
    (lambda t: t.start_single_timer("k", "m", math.inf), ValueError, "delay must be a finite"),
    (lambda t: t.start_single_timer("k", "m", "1"), ValueError, "got '1'"),
    (lambda t: t.start_single_timer("k", "m", True), ValueError, "got True"),
    (lambda t: t.start_periodic_timer("k", "m", 0), ValueError, "interval must be .* > 0"),
    (lambda t: t.start_periodic_timer("k", "m", 1, initial_delay=-0.5), ValueError,
     "initial_delay must be"),
    # Beyond thespian's datetimes: an OverflowError deep inside it, the timer left active.
    (lambda t: t.start_single_timer("k", "m", 1e15), ValueError,
     r"delay must be .* <= 1e\+09, got 1000000000000000\.0"),
    (lambda t: t.start_periodic_timer("k", "m", 2e9), ValueError, "interval must be .* <= 1e"),
])
def test_bad_timer_arguments_are_refused_naming_them(call: Any, error: type[Exception],
                                                     text: str) -> None:
    timers = TimerScheduler(_Mailbox())
    with pytest.raises(error, match=text):
        call(timers)
    assert not timers.is_timer_active("k")


class _FailingMailbox(_Mailbox):
    def _schedule_self(self, delay: float, message: Any) -> None:
        raise OverflowError("the scheduler failed")


def test_a_timer_whose_scheduling_fails_is_not_active() -> None:
    timers = TimerScheduler(_FailingMailbox())
    with pytest.raises(OverflowError):
        timers.start_single_timer("k", "m", 1.0)
    assert not timers.is_timer_active("k")


def test_an_entitys_own_timer_does_not_keep_it_from_idle_passivation(base: str) -> None:
    # As in Akka, where an entity's timer messages do not pass through its shard: only
    # messages from elsewhere are activity. A ticking entity nobody talks to is passivated.
    config = system_config(base)
    config["sharding"] = {"passivate_idle_after": 0.3}
    with ActorSystem("idle-timers", config=config) as system:
        probe = TestProbe(system)
        region = system.entities("ticking", ReportedTimerEntity, probe.ref)
        region.tell("e1", ("periodic", "tick", "tick", 0.05))
        assert probe.expect_msg(timeout=10.0) == ("started", "e1")
        ticks = 0
        # Until it stops (passivated, and its timers with it): a 0.5 s silence was taken for
        # the stop, which a loaded machine can make while the entity still ticks.
        while (message := probe.receive_one(timeout=10.0)) != ("stopped", "e1"):
            assert message == ("got", "tick", False), message
            ticks += 1
        assert ticks >= 3
        region.tell("e1", ("mark", "back"))  # a real message starts the next incarnation
        assert probe.expect_msg(timeout=10.0) == ("started", "e1")


def _host_on_a_fake_clock(host_class: str,
                          monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[float]]:
    """An entity or shared host outside thespian, whose clock is the returned list's item."""
    from persistent_actors._thespian import cells  # noqa: PLC0415 - internal, only here
    from persistent_actors._thespian.entity_host import EntityHost  # noqa: PLC0415
    from persistent_actors._thespian.shared_host import SharedHost  # noqa: PLC0415

    now = [100.0]
    monkeypatch.setattr(cells, "time", type("Clock", (), {"monotonic": lambda: now[0]}))
    return (EntityHost() if host_class == "entity" else SharedHost()), now


@pytest.mark.parametrize("host_class", ["entity", "shared"])
def test_a_hosts_timer_wakeup_long_overdue_is_armed_again(
        host_class: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A host multiplexes its actors' timers on one thespian wakeup and arms none while one is
    # pending: when that wakeup was lost (seen once under load), no timer of the host ever
    # fired again, new ones included. Thespian is faked here: a clock, and wakeups recorded.
    host, now = _host_on_a_fake_clock(host_class, monkeypatch)
    armed: list[float] = []  # the timers' wakeups (not their checks)

    def wakeup_after(delay: datetime.timedelta, payload: Any = None) -> None:
        if payload == host._TIMER_PAYLOAD:
            armed.append(delay.total_seconds())

    monkeypatch.setattr(host, "wakeupAfter", wakeup_after)
    host.schedule("a", 0.05, "first")
    host.schedule("b", 0.5, "later")  # a wakeup before it is pending: none more
    assert armed == [pytest.approx(0.05)]
    now[0] += 0.5  # due, but not overdue enough to be taken for lost: still none
    host.schedule("c", 0.05, "third")
    assert len(armed) == 1
    now[0] += 2.0  # the wakeup never came
    host.schedule("d", 0.05, "fourth")
    assert len(armed) == 2
    assert armed[1] == pytest.approx(0.001)  # for the overdue timers, at once


@pytest.mark.parametrize("host_class", ["entity", "shared"])
def test_a_hosts_periodic_timer_goes_on_though_its_wakeup_was_lost(
        host_class: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A periodic timer's next firing is scheduled only once the previous one is handled: when
    # the one wakeup a host's timers ride on was lost and nothing else was scheduled, the
    # timer stopped for good. A check follows that wakeup and fires the timers if it did not
    # come. Thespian is faked here: a clock, wakeups recorded (and one dropped), a cell.
    from thespian.actors import WakeupMessage  # noqa: PLC0415 - only here

    host, now = _host_on_a_fake_clock(host_class, monkeypatch)
    armed: list[tuple[float, Any]] = []  # (when due, payload)
    monkeypatch.setattr(host, "wakeupAfter", lambda delay, payload=None: armed.append(
        (now[0] + delay.total_seconds(), payload)))
    fired: list[Any] = []

    class _Cell:
        def fire_timer(self, payload: Any) -> None:
            fired.append(payload)
            host.schedule("k", 0.02, payload)  # as a periodic timer's handled firing does

    cell = _Cell()
    monkeypatch.setattr(host, "_cell", lambda key: cell if key == "k" else None)

    def deliver(wakeup: tuple[float, Any]) -> None:
        now[0] = max(now[0], wakeup[0])
        host.receiveMessage(WakeupMessage(datetime.timedelta(0), wakeup[1]), None)

    host.schedule("k", 0.02, "tick")
    timer, check = armed
    assert (timer[1], check[1]) == (host._TIMER_PAYLOAD, host._CHECK_PAYLOAD)
    armed.clear()
    deliver(check)  # the timers' wakeup never came
    assert fired == ["tick"]
    assert [payload for _, payload in armed] == [host._TIMER_PAYLOAD, host._CHECK_PAYLOAD]
    timer, check = armed
    armed.clear()
    deliver(timer)  # it comes again: the timer goes on; the check pending still serves
    assert fired == ["tick", "tick"]
    assert [payload for _, payload in armed] == [host._TIMER_PAYLOAD]
    deliver(armed.pop())
    deliver(check)  # the timers' wakeups came: it fires nothing, and follows the next one
    assert fired == ["tick", "tick", "tick"]
    assert [payload for _, payload in armed] == [host._TIMER_PAYLOAD, host._CHECK_PAYLOAD]
    deliver(check)  # a check before the one pending (one taken for lost, late): nothing
    assert fired == ["tick", "tick", "tick"]
    assert len(armed) == 2
