"""become / unbecome (Akka's Context.Become, BecomeStacked, UnbecomeStacked). Both bases."""

from __future__ import annotations

import pytest

from persistent_actors import Actor, ActorSystem
from persistent_actors.testing import TestProbe
from tests.become_actors import Door, Mood, PersistentToggle, Toggle

TIMEOUT = 10


def test_become_replaces_and_unbecome_returns_to_the_initial_behaviour(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(Mood, probe.ref)
    script = [("mood", "calm"), (("become", "angry"), None), ("mood", "angry"),
              (("become", "happy"), None), ("mood", "happy"),
              ("unbecome", None), ("mood", "calm"),  # replaced, not stacked: back to the start
              ("unbecome", None), ("mood", "calm")]  # nothing left to pop
    for command, answer in script:
        ref.tell(command)
        if answer is not None:
            assert probe.expect_msg(timeout=TIMEOUT) == answer


def test_become_stacked_unbecomes_one_level_at_a_time(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(Mood, probe.ref)
    for command in (("stack", "angry"), ("stack", "happy"), "mood", "unbecome", "mood",
                    "unbecome", "mood"):
        ref.tell(command)
    assert [probe.expect_msg(timeout=TIMEOUT) for _ in range(3)] == ["happy", "angry", "calm"]


def test_a_restart_returns_to_the_initial_behaviour(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(Mood, probe.ref)
    for command in (("become", "angry"), "boom", "mood"):
        ref.tell(command)
    assert probe.expect_msg(timeout=TIMEOUT) == "calm"


def test_become_needs_a_callable(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(Mood, probe.ref)
    for command in (("become", "angry"), "bad", "mood"):
        ref.tell(command)
    # The TypeError restarted the actor: initial behaviour.
    assert probe.expect_msg(timeout=TIMEOUT) == "calm"


def test_a_persistent_actor_becomes_in_handlers_and_during_recovery(system: ActorSystem) -> None:
    probe = TestProbe(system)
    door = system.actor_of(Door, "door", probe.ref, name="door")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", "on_command")
    for command in ("enter", "open", "enter"):
        door.tell(command)
    assert [probe.expect_msg(timeout=TIMEOUT) for _ in range(3)] == [
        "locked out", "opened", "welcome"]
    # A restart resets the behaviour, and replay makes it "open" again.
    door.tell("boom")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", "when_open")
    for command in ("enter", "close", "enter"):
        door.tell(command)
    assert [probe.expect_msg(timeout=TIMEOUT) for _ in range(3)] == [
        "welcome", "closed", "locked out"]
    system.stop(door)
    door = system.actor_of(Door, "door", probe.ref, name="door")
    assert probe.expect_msg(timeout=TIMEOUT) == ("recovered", "on_command")


@pytest.mark.parametrize("cls", [Toggle, PersistentToggle])
def test_self_handler_names_the_class_handler_as_in_akka(system: ActorSystem,
                                                         cls: type[Actor]) -> None:
    # become() set the instance's on_receive/on_command to the new behaviour: become(self.
    # on_command) then passed the current behaviour and stayed in it, and a behaviour handing
    # a message to self.on_command called itself until RecursionError.
    toggle = system.actor_of(cls)
    toggle.tell("go-busy")
    assert toggle.ask("state", timeout=TIMEOUT) == "busy"
    assert toggle.ask("other", timeout=TIMEOUT) == ("idle", "other")  # handed on
    toggle.tell("go-idle")
    assert toggle.ask("state", timeout=TIMEOUT) == ("idle", "state")
