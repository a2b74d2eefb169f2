"""User stash: Akka's PersistentActorStashingSpec, and plain actors' Stash. Both bases."""

from __future__ import annotations

from persistent_actors import ActorSystem
from persistent_actors.messages import DeadLetter, PoisonPill
from persistent_actors.testing import TestProbe
from tests.conftest import subscribe_synced
from tests.stash_actors import (
    AsyncStashingActor,
    BoundedStash,
    PlainStasher,
    StashInHandler,
    UserStashActor,
    UserStashManyActor,
)

TIMEOUT = 10


# --- PersistentActorStashingSpec -------------------------------------------------------------


def test_user_stash_operations(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(UserStashActor, "stash-1", probe.ref)
    for command in ("a", "b", "c"):
        ref.tell(command)
    assert [probe.expect_msg(timeout=TIMEOUT) for _ in range(3)] == ["b", "c", "a"]


def test_user_stash_operations_within_a_handler(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(UserStashActor, "stash-2", probe.ref, True)
    for command in ("a", "b", "c"):
        ref.tell(command)
    assert [probe.expect_msg(timeout=TIMEOUT) for _ in range(3)] == ["b", "c", "a"]


def _several(system: ActorSystem, probe: TestProbe, pid: str, *args: object) -> list[str]:
    ref = system.actor_of(UserStashManyActor, pid, probe.ref, *args)
    for _ in range(10):
        for command in ("a", "b-1", "b-2", "c"):
            ref.tell(command)
    ref.tell("state")
    state: list[str] = probe.expect_msg(timeout=TIMEOUT)
    return state


def test_user_stash_with_several_stashed_messages(system: ActorSystem) -> None:
    probe = TestProbe(system)
    assert _several(system, probe, "stash-3") == ["a", "c", "b-1", "b-2"] * 10


def test_user_stash_within_a_handler_with_several_stashed_messages(system: ActorSystem) -> None:
    probe = TestProbe(system)
    assert _several(system, probe, "stash-4", True) == ["a", "c", "b-1", "b-2"] * 10


def _under_failure(system: ActorSystem, probe: TestProbe, pid: str, within: bool) -> list[str]:
    ref = system.actor_of(UserStashManyActor, pid, probe.ref, within, "b-2")
    ref.tell("a")
    for n in range(1, 11):
        ref.tell(f"b-{n}")
    ref.tell("c")
    ref.tell("state")
    state: list[str] = probe.expect_msg(timeout=TIMEOUT)
    return state


def test_user_stash_under_failures(system: ActorSystem) -> None:
    """b-2 raises once unstashed: the actor restarts; the rest of the stash survives."""
    probe = TestProbe(system)
    expected = ["a", "c", "b-1", *(f"b-{n}" for n in range(3, 11))]
    assert _under_failure(system, probe, "stash-5", False) == expected


def test_user_stash_within_a_handler_under_failures(system: ActorSystem) -> None:
    probe = TestProbe(system)
    expected = ["a", "c", "b-1", *(f"b-{n}" for n in range(3, 11))]
    assert _under_failure(system, probe, "stash-6", True) == expected


def test_user_stash_mixed_with_persist_async(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(AsyncStashingActor, "stash-7", probe.ref)
    for command in ("a", "b", "c", "state"):
        ref.tell(command)
    assert probe.expect_msg(timeout=TIMEOUT) == ["a", "c", "b"]


# --- bounds and misuse -----------------------------------------------------------------------


def test_a_full_user_stash_raises_stash_overflow_and_the_actor_restarts(
        system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(BoundedStash, "stash-8", probe.ref)
    for n in range(4):
        ref.tell(f"m{n}")
    restarted = probe.expect_msg(timeout=TIMEOUT)
    assert restarted[:2] == ("restarted", "StashOverflowError")
    assert "3" in restarted[2]  # names the capacity
    # The three stashed before the overflow survive the restart, in order.
    ref.tell("release")
    assert [probe.expect_msg(timeout=TIMEOUT) for _ in range(3)] == [
        ("unstashed", "m0"), ("unstashed", "m1"), ("unstashed", "m2")]


def test_stashing_one_message_twice_is_refused(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(BoundedStash, "stash-9", probe.ref)
    ref.tell("twice")
    refused = probe.expect_msg(timeout=TIMEOUT)
    assert refused[0] == "refused"
    assert "same message twice" in refused[1]
    ref.tell("release")  # stashed once
    assert probe.expect_msg(timeout=TIMEOUT) == ("unstashed", "twice")


def test_stash_outside_a_command_handler_is_an_error(system: ActorSystem) -> None:
    probe = TestProbe(system)
    ref = system.actor_of(StashInHandler, "stash-10", probe.ref)
    ref.tell("x")
    assert probe.expect_msg(timeout=TIMEOUT) == "IllegalActorStateError"


def test_a_plain_actor_stashes_and_unstashes_in_order_with_senders(system: ActorSystem) -> None:
    probe, other = TestProbe(system), TestProbe(system)
    ref = system.actor_of(PlainStasher, probe.ref)
    ref.tell("one", sender=other.ref)
    ref.tell("two")
    ref.tell("boom")  # a restart keeps the stash: Akka unstashes it back into the mailbox
    assert probe.expect_msg(timeout=TIMEOUT) == "restarted"
    ref.tell("open")
    ref.tell("three")
    assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("handled", "one")
    assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("handled", "two")
    assert probe.expect_msg(timeout=TIMEOUT)[:2] == ("handled", "three")
    ref.tell("close")
    assert probe.expect_msg(timeout=TIMEOUT) == "closed"
    ref.tell("four")  # stashed again: closed
    probe.expect_no_msg(0.3)


def test_a_plain_actors_unstashed_message_keeps_its_sender(system: ActorSystem) -> None:
    probe, other = TestProbe(system), TestProbe(system)
    ref = system.actor_of(PlainStasher, probe.ref)
    ref.tell("hello", sender=other.ref)
    ref.tell("open")
    assert probe.expect_msg(timeout=TIMEOUT) == ("handled", "hello", other.ref)


def test_a_plain_actor_stopped_with_stashed_messages_makes_them_dead_letters(
        system: ActorSystem) -> None:
    # Akka: a stopped actor's stash goes to dead letters, each with its sender (the stop
    # raised AttributeError here before, and the stash was lost silently).
    probe, other, dead_letters = TestProbe(system), TestProbe(system), TestProbe(system)
    subscribe_synced(system, dead_letters, DeadLetter, DeadLetter("synced", None, probe.ref))
    ref = system.actor_of(PlainStasher, probe.ref)
    ref.tell("one", sender=other.ref)
    ref.tell(PoisonPill)
    letter = dead_letters.expect_msg(timeout=TIMEOUT)
    assert letter == DeadLetter("one", other.ref, ref)
