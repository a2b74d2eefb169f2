"""The runtime's own processes (journal plugin, event stream) are started again after a SIGKILL.

multiproc-tcp only: the simple base has no processes to kill. Each test kills one process of a
running system and checks that what used it before goes on using its successor (README,
"The runtime's own processes"); the death of the guardian, or of thespian's admin or logger,
instead terminates the system (or fails its start).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persistent_actors import ActorSystem
from persistent_actors._thespian import event_stream, guardian
from persistent_actors._thespian.lifetime import _proc_stat, _session_members
from persistent_actors.errors import AskTimeoutError, PersistentActorsError, PluginError
from persistent_actors.testing import TestProbe
from tests.conftest import system_config
from tests.entity_actors import AddItem, Cart
from tests.runtime_process_actors import BackoffBoomer, Boomer, Listener, Quiet

pytestmark = pytest.mark.multiproc

_ACTORS = "tests.runtime_process_actors"
_SHARED_HOSTS = [pytest.param(None, id="shared-hosts"), pytest.param(0, id="isolated")]


def _config(tmp_path: Path, journal: str = "PidJournal", host_processes: int | None = None,
            **sections: Any) -> dict[str, Any]:
    config = system_config("multiproc-tcp", journal={
        "plugin": f"{_ACTORS}:{journal}", "path": str(tmp_path / "events.db")})
    if host_processes is not None:
        config["actor_system"]["host_processes"] = host_processes
    config.update(sections)
    return config


def _kill_journal(system: ActorSystem, dead: int | None = None) -> None:
    """SIGKILL the journal plugin's process (`dead`: its pid, if known); return once its
    successor answers.
    """
    if dead is None:
        dead = system.plugin_command("journal", "pid")
    os.kill(dead, signal.SIGKILL)
    _until(lambda: system.plugin_command("journal", "pid", timeout=1.0) != dead)


def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Call `check` until it returns True (an ask that times out counts as False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except AskTimeoutError:  # sent to the dead process, before the guardian noticed
            pass
        time.sleep(0.05)
    raise AssertionError(f"not done within {timeout}s")


@pytest.mark.parametrize("host_processes", _SHARED_HOSTS)
def test_an_actor_restarted_after_its_journal_died_recovers_from_the_new_one(
        tmp_path: Path, host_processes: int | None) -> None:
    # The actor kept the dead plugin's address: its restart's recovery timed out for good.
    with ActorSystem("journal-dies", config=_config(tmp_path, host_processes=host_processes)
                     ) as system:
        probe = TestProbe(system)
        actor = system.actor_of(Boomer, "boomer", probe.ref, name="boomer")
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        actor.tell(5)
        assert probe.expect_msg(timeout=10) == ("persisted", 5, 1)
        _kill_journal(system)
        actor.tell("boom")  # Akka's default supervision: restarted, it recovers again
        assert probe.expect_msg(timeout=10) == "stopped"  # pre_restart of the old instance
        assert probe.expect_msg(timeout=10) == ("restarted", "RuntimeError")
        assert probe.expect_msg(timeout=10) == ("recovered", 5, 1)
        actor.tell(2)
        assert probe.expect_msg(timeout=10) == ("persisted", 2, 2)


@pytest.mark.parametrize("host_processes", _SHARED_HOSTS)
def test_a_write_in_flight_to_a_dead_journal_fails_and_the_actor_restarts(
        tmp_path: Path, host_processes: int | None) -> None:
    # A journal written through its plugin process: the write in flight when that process
    # died was never answered, and the actor waited for it for ever (its commands stashed).
    # Now it fails as Akka's circuit breaker fails it (on_persist_failure: the actor stops),
    # and the back-off restart recovers from the new process.
    config = _config(tmp_path, journal="StallingJournal", host_processes=host_processes)
    with ActorSystem("write-lost", config=config) as system:
        probe = TestProbe(system)
        actor = system.actor_of(BackoffBoomer, "stalled", probe.ref, name="stalled")
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        actor.tell(5)
        assert probe.expect_msg(timeout=10) == ("persisted", 5, 1)
        journal = system.plugin_command("journal", "pid")  # (it answers nothing while stalled)
        assert system.plugin_command("journal", "stall") == "stalling"
        actor.tell(3)  # its write never finishes
        probe.expect_no_msg(0.3)
        _kill_journal(system, journal)
        assert probe.expect_msg(timeout=10) == ("persist-failed", "JournalError", 2)
        assert probe.expect_msg(timeout=10) == "stopped"
        assert probe.expect_msg(timeout=10) == ("recovered", 5, 1)  # the write was lost
        actor.tell(2)
        assert probe.expect_msg(timeout=10) == ("persisted", 2, 2)


def test_a_journal_that_dies_too_often_is_not_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As for actors, a process killed over and over is not started again for ever; whatever
    # needs it then fails at once, naming why. (One restart here instead of 10: the guardian's
    # process is forked from this one, with the limit as set.)
    monkeypatch.setattr(guardian, "MAX_CRASH_RESTARTS", 1)
    with ActorSystem("journal-gives-up", config=_config(tmp_path)) as system:
        probe = TestProbe(system)
        system.actor_of(Boomer, "first", probe.ref, name="first")
        assert probe.expect_msg(timeout=10) == ("recovered", 0, 0)
        _kill_journal(system)  # started again once
        os.kill(system.plugin_command("journal", "pid"), signal.SIGKILL)  # not again
        _until(lambda: _refused(system, probe))


def _refused(system: ActorSystem, probe: TestProbe) -> bool:
    try:
        system.actor_of(Boomer, f"second-{time.monotonic()}", probe.ref)
    except PluginError as e:
        assert "journal plugin 'default' died 2 times within 60s" in str(e)  # noqa: PT017
        return True
    return False  # (started: the guardian had not heard of the death yet)


def test_entities_recover_after_their_journal_died(tmp_path: Path) -> None:
    # Every entity host kept the dead plugin's address (and the guardian restarted a crashed
    # entity host with it): a new or passivated entity never recovered again.
    config = _config(tmp_path, sharding={"host_processes": 1, "passivate_idle_after": 0})
    with ActorSystem("entities-journal-dies", config=config) as system:
        carts = system.entities("cart", Cart)
        assert carts.ask("a", AddItem("a-1"), timeout=10) == 1
        assert carts.ask("b", AddItem("b-1"), timeout=10) == 1
        assert carts.ask("b", "passivate", timeout=10) == "passivating"
        host = carts.ask("a", "pid", timeout=10)
        _kill_journal(system)
        # Passivated: recovers again. (A recovery that began before its host heard of the new
        # journal fails when it hears, and the next message starts the entity again.)
        _until(lambda: carts.ask("b", "items", timeout=2) == ["b-1"])
        assert carts.ask("c", AddItem("c-1"), timeout=10) == 1  # new
        os.kill(host, signal.SIGKILL)  # its successor starts with the new journal too
        assert carts.ask("a", "items", timeout=20) == ["a-1"]
        assert carts.ask("a", AddItem("a-2"), timeout=10) == 2


def test_the_event_stream_is_started_again_with_its_subscriptions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The event stream's process was not restarted: publish and subscribe did nothing after
    # its death. Its successor keeps the subscriptions (Akka's live in the ActorSystem).
    pid_file = tmp_path / "event-stream-pid"
    started = event_stream.EventStreamActor.__init__

    def noting_pid(self: Any) -> None:  # runs in the process forked for the event stream
        started(self)
        pid_file.write_text(str(os.getpid()))

    monkeypatch.setattr(event_stream.EventStreamActor, "__init__", noting_pid)
    with ActorSystem("stream-dies", config=_config(tmp_path)) as system:
        probe = TestProbe(system)
        listener = system.actor_of(Listener, probe.ref, name="listener")
        assert probe.expect_msg(timeout=10) == "subscribed"
        _until(lambda: _heard(system, probe, "before"))
        dead, handle = int(pid_file.read_text()), system.event_stream._ref
        os.kill(dead, signal.SIGKILL)
        _until(lambda: pid_file.read_text() != str(dead))
        # From outside, and from inside an actor, to the subscriber it had.
        _until(lambda: _heard(system, probe, "after"))
        # The application's handle follows (not only the guardian's forwarding of what is
        # sent to the dead process, a slower path, which delivered "after" too).
        _until(lambda: system.event_stream._ref != handle)
        listener.tell(("publish", "from inside"))
        assert _got(probe, "from inside", 10)


def _heard(system: ActorSystem, probe: TestProbe, text: str) -> bool:
    """Publish `text`; True if the probe hears it within 0.3 s (earlier texts are skipped)."""
    system.event_stream.publish(text)
    return _got(probe, text, 0.3)


def _got(probe: TestProbe, text: str, timeout: float) -> bool:
    """True once the probe gets ``("got", text)`` within `timeout` (earlier texts skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = probe.receive_one(left)
        if message == ("got", text):
            return True
        if not (isinstance(message, tuple) and message[0] == "got"):
            return False  # nothing (or something else) came
    return False


# What every call raises once the system terminated after its guardian's death.
_GUARDIAN_DIED = r"has been shut down: the actor system's guardian process \(pid \d+\) died"


def _kill_guardian(system: ActorSystem) -> int:
    """SIGKILL the system's guardian; the session id of the system's processes.

    The guardian is the parent of every plugin process (thespian forks a child from its
    parent), so its pid is the journal plugin's parent's.
    """
    journal = system.plugin_command("journal", "pid")
    stat = _proc_stat(journal)
    assert stat is not None
    os.kill(int(stat[1]), signal.SIGKILL)  # field 4: the parent's pid
    return os.getsid(journal)


def _timed(call: Callable[[], object]) -> Callable[[float], tuple[BaseException | None, float]]:
    """Run `call` on a thread now; the returned function waits up to its argument in seconds
    for the end and gives what it raised (None if nothing) and the seconds it took.
    """
    outcome: list[tuple[BaseException | None, float]] = []
    start = time.monotonic()

    def run() -> None:
        try:
            call()
        except BaseException as e:  # handed to the test
            outcome.append((e, time.monotonic() - start))
        else:
            outcome.append((None, time.monotonic() - start))

    thread = threading.Thread(target=run, daemon=True)  # daemon: without the fix it hangs 60 s
    thread.start()

    def result(timeout: float) -> tuple[BaseException | None, float]:
        thread.join(timeout)
        assert outcome, f"still waiting after {time.monotonic() - start:.1f}s"
        return outcome[0]

    return result


def _none_left(session: int, timeout: float = 5.0) -> None:
    """Every process of `session` exits within `timeout` seconds (zombies do not count)."""
    _until(lambda: not _session_members(session), timeout)


def test_calls_fail_at_once_when_the_guardian_dies(tmp_path: Path) -> None:
    # With the guardian's process dead, actor_of waited out its 60 s and an ask waiting for a
    # reply its timeout; every process of the system lived on. Now the system terminates:
    # what waits fails within about a second, naming why, and what comes later fails at once.
    with ActorSystem("guardian-dies", config=_config(tmp_path)) as system, \
            ActorSystem("bystander", config=_config(tmp_path / "other")) as bystander:
        quiet = system.actor_of(Quiet, name="quiet")
        assert quiet.ask("pid", timeout=10) > 0
        waiting = _timed(lambda: quiet.ask("no answer", timeout=30))
        awaiting = _timed(lambda: asyncio.run(quiet.ask_async("no answer", timeout=30)))
        session = _kill_guardian(system)
        creating = _timed(lambda: system.actor_of(Quiet))
        for result in (creating, waiting, awaiting):
            error, took = result(10)
            assert isinstance(error, PersistentActorsError), error
            assert re.search(_GUARDIAN_DIED, str(error)), error
            assert took < 5, took
        assert system.is_terminated
        with pytest.raises(PersistentActorsError, match=_GUARDIAN_DIED):
            quiet.tell("later")
        with pytest.raises(PersistentActorsError, match=_GUARDIAN_DIED):
            asyncio.run(quiet.ask_async("pid", timeout=10))
        system.shutdown()  # the termination's: it returns once that ended
        _none_left(session)
        # Another system of the same application goes on.
        assert bystander.actor_of(Quiet).ask("pid", timeout=10) > 0


def test_an_idle_system_terminates_when_its_guardian_dies(tmp_path: Path) -> None:
    # Nobody calls: the guardian's death is noticed all the same, and no process of the
    # system outlives it (they did, until the application exited: the guardian, which
    # watches the application, was gone).
    with ActorSystem("idle-guardian-dies", config=_config(tmp_path)) as system:
        quiet = system.actor_of(Quiet, name="quiet")
        session = _kill_guardian(system)
        _until(lambda: system.is_terminated, timeout=5)
        _none_left(session)
        with pytest.raises(PersistentActorsError, match=_GUARDIAN_DIED):
            quiet.ask("pid", timeout=10)


@pytest.mark.parametrize("step", [
    pytest.param("_start_runtime", id="before-the-plugins"),  # its first step after the report
    pytest.param("_event_stream_started", id="plugins-starting"),
])
def test_the_start_fails_when_the_guardian_dies_during_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    # The guardian's pid came with SystemReady only: with the guardian dead while the plugins
    # started, the start waited out its 60 s. Now it fails at once, naming why, and leaves no
    # process behind (the plugin processes started meanwhile included).
    session_file = tmp_path / "session"

    def dying(*args: Any) -> None:  # in the guardian's process, forked from this one
        del args
        session_file.write_text(str(os.getsid(0)))
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(guardian.Guardian, step, dying)
    starting = _timed(lambda: ActorSystem("guardian-dies-starting", config=_config(tmp_path)))
    error, _ = starting(30)  # (the old wait, 60 s, ended in a timeout)
    assert isinstance(error, PersistentActorsError), error
    assert re.search(r"'guardian-dies-starting' could not start: the actor system's guardian "
                     r"process \(pid \d+\) died", str(error)), error
    _none_left(int(session_file.read_text()))


def _thespian_process(system: ActorSystem, which: str) -> tuple[int, int]:
    """The pid of thespian's admin or logger process of `system`, and the system's session.

    The admin is the guardian's parent (the application creates the guardian through it);
    the logger is the admin's other child at the start (see `runtime_processes`).
    """
    journal = system.plugin_command("journal", "pid")
    stat = _proc_stat(journal)
    assert stat is not None
    guardian_pid = int(stat[1])
    stat = _proc_stat(guardian_pid)
    assert stat is not None
    admin = int(stat[1])
    session = os.getsid(journal)
    if which == "admin":
        return admin, session
    children = [pid for pid in _session_members(session)
                if pid != guardian_pid and (stat := _proc_stat(pid)) and stat[1] == str(admin)]
    assert len(children) == 1, children
    return children[0], session


_THESPIAN_PROCESSES = ["admin", "logger"]


@pytest.mark.parametrize("which", _THESPIAN_PROCESSES)
def test_the_system_terminates_when_thespians_admin_or_logger_dies(
        tmp_path: Path, which: str, caplog: pytest.LogCaptureFixture) -> None:
    # The system went on (actors answered) without the admin that routes dead letters (the
    # guardian holds those for a crashed actor's restart) and ends thespian's system (a
    # dead logger takes the admin with it), and its shutdown killed what was left only after
    # 3 s (13 s without the admin). Now it terminates as with the guardian's death.
    with ActorSystem(f"{which}-dies", config=_config(tmp_path)) as system:
        quiet = system.actor_of(Quiet, name="quiet")
        assert quiet.ask("pid", timeout=10) > 0
        waiting = _timed(lambda: quiet.ask("no answer", timeout=30))
        victim, session = _thespian_process(system, which)
        os.kill(victim, signal.SIGKILL)
        error, _ = waiting(10)
        died = rf"has been shut down: thespian's {which} process \(pid {victim}\) died"
        assert isinstance(error, PersistentActorsError), error
        assert re.search(died, str(error)), error
        _until(lambda: system.is_terminated, timeout=5)
        with pytest.raises(PersistentActorsError, match=died):
            system.actor_of(Quiet)
        system.shutdown()
        _none_left(session)
    # What was left was killed at once: no grace for processes nobody could ask to exit.
    assert "had not exited" not in caplog.text


@pytest.mark.parametrize("which", _THESPIAN_PROCESSES)
def test_a_shutdown_right_after_thespians_admin_or_logger_died_is_prompt(
        tmp_path: Path, which: str, caplog: pytest.LogCaptureFixture) -> None:
    # The death is not noticed yet (the driver looks every 0.5 s): thespian's shutdown waited
    # 10 s for the dead admin's answer, and then the processes it could not ask to exit had
    # 3 s of grace. Now it looks at the admin while it waits, and kills them at once.
    system = ActorSystem(f"{which}-dies-shutdown", config=_config(tmp_path))
    try:
        assert system.actor_of(Quiet).ask("pid", timeout=10) > 0
        victim, session = _thespian_process(system, which)
        os.kill(victim, signal.SIGKILL)
        # kill() returns before the process has exited: dead (or a zombie) before the shutdown,
        # as the test means, or the shutdown may begin while it still runs.
        _until(lambda: (stat := _proc_stat(victim)) is None or stat[0] in ("Z", "X"))
    finally:
        system.shutdown()
    _none_left(session)
    assert "had not exited" not in caplog.text  # not the slow path
