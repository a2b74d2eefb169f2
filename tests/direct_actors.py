"""Actors for the direct journal hand-off tests (module level: the multiproc base imports them)."""

from __future__ import annotations

from typing import Any

from persistent_actors import (
    Actor,
    ActorRef,
    DeleteMessagesSuccess,
    PersistentActor,
    RecoveryCompleted,
)


class Ledger(PersistentActor):
    """Persists ints and logs each command, handler and replayed event in the order they ran.

    Commands: ``("p", n)`` persist, ``("pa", n)`` persist_async, ``("raise", n)`` persist then
    raise (the actor restarts), ``("del", n)`` persist and delete up to it in the handler,
    ``("to", target, message)`` tell `target` `message` from the handler of a persist,
    ``("ask", n)`` persist and answer from the handler (or the rejection or failure
    callback), ``"log"`` answer the log.
    """

    def __init__(self, pid: str) -> None:
        self.pid = pid
        self.log: list[Any] = []
        self.asker: ActorRef | None = None

    @property
    def persistence_id(self) -> str:
        return self.pid

    def on_recover(self, message: Any) -> None:
        match message:
            case int():
                self.log.append(("recovered", message, self.last_sequence_nr))
            case RecoveryCompleted():
                self.log.append(("recovery-completed", self.last_sequence_nr))

    def on_command(self, message: Any) -> None:
        match message:
            case ("p", int(n)):
                self.log.append(("cmd", n))
                self.persist(n, self._stored)
            case ("pa", int(n)):
                self.log.append(("cmd", n))
                self.persist_async(n, self._stored)
            case ("raise", int(n)):
                self.log.append(("cmd", n))
                self.persist(n, self._stored)
                raise RuntimeError("the command handler failed after persist")
            case ("del", int(n)):
                self.log.append(("cmd", n))
                self.persist(n, self._stored_then_delete)
            case ("to", target, reply):
                self.persist(0, lambda _: self._tell_both(target, reply))
            case ("ask", int(n)):
                self.log.append(("cmd", n))
                self.asker = self.sender
                self.persist(n, self._stored_then_answer)
            case DeleteMessagesSuccess(to):
                self.log.append(("deleted", to))
            case "log":
                self.sender.tell(list(self.log))
            case _:
                self.unhandled(message)

    def _stored(self, event: int) -> None:
        self.log.append(("evt", event, self.last_sequence_nr))

    def _stored_then_delete(self, event: int) -> None:
        self._stored(event)
        self.delete_messages(self.last_sequence_nr)

    def _stored_then_answer(self, event: int) -> None:
        self._stored(event)
        self.sender.tell(("stored", event, self.last_sequence_nr))

    def _tell_both(self, target: ActorRef, message: Any) -> None:
        target.tell(message)
        self.sender.tell("told")

    def on_persist_rejected(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        self.log.append(("rejected", event, sequence_nr))
        if self.asker is not None:
            self.asker.tell(("rejected", type(cause).__name__, event, sequence_nr))

    def on_persist_failure(self, cause: BaseException, event: Any, sequence_nr: int) -> None:
        if self.asker is not None:
            self.asker.tell(("failed", type(cause).__name__, event, sequence_nr))


class Sender(Actor):
    """Tells each ``(target, message)`` of a list in one receive, so they queue together."""

    def on_receive(self, message: Any) -> None:
        match message:
            case list():
                for target, item in message:
                    assert isinstance(target, ActorRef)
                    target.tell(item)
                self.sender.tell("sent")
            case _:
                self.unhandled(message)
