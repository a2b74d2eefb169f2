"""Actors for the user-stash tests (Akka's PersistentActorStashingSpec, plain actors' Stash).

Module level, so the multiproc base can import them. Commands are plain strings; every actor
reports to the `probe` it is given.
"""

from __future__ import annotations

from typing import Any, ClassVar

from persistent_actors import (
    Actor,
    ActorRef,
    IllegalActorStateError,
    PersistentActor,
    RecoveryCompleted,
)


class _Recorder(PersistentActor):
    """Keeps its events in order; ``"state"`` answers them (Akka's ExamplePersistentActor)."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        self.pid = pid
        self.probe = probe
        self.events: list[str] = []

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case str():
                self.events.append(message)
            case RecoveryCompleted():
                pass

    def update(self, event: str) -> None:
        self.events.append(event)

    def common(self, message: Any) -> bool:
        if message == "state":
            # After every pending handler, persist_async ones included.
            self.defer_async(None, lambda _: self.probe.tell(list(self.events)))
            return True
        return False


class UserStashActor(_Recorder):
    """Stashes the first "a", answers "b" after persisting it, unstashes on "c"."""

    def __init__(self, pid: str, probe: ActorRef, within_handler: bool = False) -> None:
        super().__init__(pid, probe)
        self.stashed = False
        self.within_handler = within_handler

    def on_command(self, message: Any) -> None:
        match message:
            case "a" if not self.stashed:
                self.stash()
                self.stashed = True
            case "a":
                self.probe.tell("a")
            case "b":
                self.persist("b", self.probe.tell)
            case "c" if self.within_handler:
                def handler(event: str) -> None:
                    self.probe.tell(event)
                    self.unstash_all()
                self.persist("c", handler)
            case "c":
                self.unstash_all()
                self.probe.tell("c")


class UserStashManyActor(_Recorder):
    """ "a" persists and becomes `process_c`, which stashes all but "c"; "c" unbecomes."""

    def __init__(self, pid: str, probe: ActorRef, within_handler: bool = False,
                 fail_on: str = "") -> None:
        super().__init__(pid, probe)
        self.within_handler = within_handler
        self.fail_on = fail_on

    def on_command(self, message: Any) -> None:
        if self.common(message):
            return
        if message == self.fail_on:
            raise ValueError(f"boom on {message}")

        def after_a(event: str) -> None:
            self.update(event)
            self.become(self.process_c)
        self.persist(message, after_a if message == "a" else self.update)

    def process_c(self, message: Any) -> None:
        if message != "c":
            self.stash()
            return
        if self.within_handler:
            def handler(event: str) -> None:
                self.update(event)
                self.unbecome()
                self.unstash_all()
            self.persist("c", handler)
        else:
            def unbecome_after(event: str) -> None:
                self.update(event)
                self.unbecome()
            self.persist("c", unbecome_after)
            self.unstash_all()


class AsyncStashingActor(_Recorder):
    """Stashing mixed with persist_async: the first "b" is stashed until "c"."""

    def __init__(self, pid: str, probe: ActorRef) -> None:
        super().__init__(pid, probe)
        self.stashed = False

    def on_command(self, message: Any) -> None:
        if self.common(message):
            return
        match message:
            case "b" if not self.stashed:
                self.stash()
                self.stashed = True
            case "c":
                self.persist_async("c", self.update)
                self.unstash_all()
            case str():
                self.persist_async(message, self.update)


class BoundedStash(_Recorder):
    """Stashes every string until "release"; its stash holds 3 messages."""

    stash_capacity: ClassVar[int] = 3

    def on_command(self, message: Any) -> None:
        match message:
            case "release":
                self.unstash_all()
                self.become(self.replay)
            case "twice":
                self.stash()
                try:
                    self.stash()
                except IllegalActorStateError as e:
                    self.probe.tell(("refused", str(e)))
            case str():
                self.stash()

    def replay(self, message: Any) -> None:
        self.probe.tell(("unstashed", message))

    def post_restart(self, reason: BaseException) -> None:
        self.probe.tell(("restarted", type(reason).__name__, str(reason)))


class StashInHandler(_Recorder):
    """Calls stash() where there is no current message: inside a persist handler."""

    def on_command(self, message: Any) -> None:
        def handler(event: str) -> None:
            try:
                self.stash()
            except Exception as e:
                self.probe.tell(type(e).__name__)
        self.persist(message, handler)


class PlainStasher(Actor):
    """A plain actor: "open" unstashes everything and switches to answering; stashes before."""

    stash_capacity: ClassVar[int] = 5

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case "open":
                self.become(self.opened)
                self.unstash_all()
            case "boom":
                raise ValueError("boom")
            case _:
                self.stash()

    def opened(self, message: Any) -> None:
        match message:
            case "close":
                self.unbecome()
                self.probe.tell("closed")
            case _:
                self.probe.tell(("handled", message, self.sender))

    def post_restart(self, reason: BaseException) -> None:
        self.probe.tell("restarted")
