"""Actors and messages for the actor-system tests (module level: the multiproc base imports them).

Every message is a frozen dataclass or a plain value, so it pickles across processes.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from persistent_actors import (
    Actor,
    ActorRef,
    Kill,
    MessageNotSerializableError,
    PersistentActor,
    PoisonPill,
    Terminated,
)


# -- messages ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Forward:
    """Ask a `Forwarder` to tell `message` to `target` on behalf of the current sender."""

    target: ActorRef
    message: Any


@dataclasses.dataclass(frozen=True)
class Holder:
    """Carries anything, e.g. a lambda that cannot be pickled."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Ping:
    """An event-stream event."""

    n: int


@dataclasses.dataclass(frozen=True)
class SubPing(Ping):
    """A subclass of `Ping`: subscribers of `Ping` receive it too."""


@dataclasses.dataclass(frozen=True)
class Pong:
    """An event unrelated to `Ping`."""

    n: int


@dataclasses.dataclass(frozen=True)
class Publish:
    """Tell a `Publisher` to publish `event` on the event stream."""

    event: Any


@dataclasses.dataclass(frozen=True)
class SubscribeTo:
    """Tell a `Subscriber` to subscribe itself to `cls` and then publish `marker`."""

    cls: type[Any]
    marker: Any


@dataclasses.dataclass(frozen=True)
class Lifecycle:
    """What a `LifecycleActor` reports to its probe: a hook ran (with a detail)."""

    hook: str
    detail: str = ""


# -- actors -----------------------------------------------------------------------------------
class NotAnActor:
    """A plain class: actor_of must refuse it."""


class OutOfStockError(Exception):
    """A user's own exception, replied inside a `Status.Failure` (pickled on multiproc-tcp)."""


class CodedError(Exception):
    """An exception whose __init__ takes other arguments than it gives BaseException.

    Pickled plainly it does not unpickle (``CodedError(*args)`` misses `code`).
    """

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


class Echo(Actor):
    """Replies to every message with the message itself."""

    def on_receive(self, message: Any) -> None:
        self.sender.tell(message)


class Ticker(Actor):
    """Once told "start", sends itself "tick" for ever; answers "ticks" with how many it had."""

    def __init__(self) -> None:
        self.ticks = 0

    def on_receive(self, message: Any) -> None:
        match message:
            case "start":
                self.self_ref.tell("tick")
            case "tick":
                self.ticks += 1
                self.self_ref.tell("tick")
            case "ticks":
                self.sender.tell(self.ticks)


class Perpetual(PersistentActor):
    """Once told "start", persists again from every persist handler, for ever, sending nothing.

    Every later command waits in the stash behind the persist in flight (Akka's `persist`); a
    new instance answers "count" with the events it recovered.
    """

    persistence_id = "perpetual"

    def __init__(self) -> None:
        self.count = 0

    def on_command(self, message: Any) -> None:
        if message == "start":
            self.persist(0, self._again)
        elif message == "count":
            self.sender.tell(self.count)

    def _again(self, event: Any) -> None:
        self.count += 1
        self.persist(self.count, self._again)

    def on_recover(self, message: Any) -> None:
        if isinstance(message, int):
            self.count += 1


class Watcher(Actor):
    """Watches refs on command; tells `probe` ("terminated", ref) for each Terminated from ref.

    ("watch", ref) and ("unwatch", ref) answer once done; "fail" raises (a restart, which keeps
    the watches); a watch the context refuses answers the error's text.
    """

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case ("watch", ActorRef() as ref):
                try:
                    self.context.watch(ref)
                except TypeError as e:
                    self.sender.tell(str(e))
                    return
                self.sender.tell("watching")
            case ("unwatch", ActorRef() as ref):
                self.context.unwatch(ref)
                self.sender.tell("unwatched")
            case Terminated(actor):
                # From the stopped actor, as in Akka: anything else is reported as such.
                self.probe.tell(("terminated", actor) if self.sender == actor else
                                ("terminated", actor, "from", self.sender))
            case "fail":
                raise RuntimeError("restart, keeping the watches")


class PersistentWatcher(PersistentActor):
    """A persistent actor that watches on ("watch", ref) and persists each Terminated."""

    persistence_id = "persistent-watcher"

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_command(self, message: Any) -> None:
        match message:
            case ("watch", ActorRef() as ref):
                self.context.watch(ref)
                self.sender.tell("watching")
            case Terminated(actor):
                self.persist(actor.name, lambda name: self.probe.tell(("persisted", name)))

    def on_recover(self, message: Any) -> None:
        pass


class Silent(Actor):
    """Never replies."""

    def on_receive(self, message: Any) -> None:
        pass


class CtorArgs(Actor):
    """Replies to anything with the constructor arguments it was built from."""

    def __init__(self, a: Any, b: Any = None, *, c: Any = None, d: Any = "default") -> None:
        self.args = (a, b, c, d)

    def on_receive(self, message: Any) -> None:
        self.sender.tell(self.args)


class FailingInit(Actor):
    """A constructor that raises."""

    def __init__(self, reason: str) -> None:
        raise ValueError(reason)


class LifecycleActor(Actor):
    """Reports its lifecycle hooks and every message to `probe`; "stop" stops itself.

    It counts the messages it handled: "count" replies with the count, "boom" raises (the
    actor restarts, so the count starts again from zero).
    """

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe
        self.count = 0

    def pre_start(self) -> None:
        self.probe.tell(Lifecycle("pre_start"))

    def post_stop(self) -> None:
        self.probe.tell(Lifecycle("post_stop"))

    def pre_restart(self, reason: BaseException, message: Any) -> None:
        self.probe.tell(Lifecycle("pre_restart", f"{type(reason).__name__}: {reason} "
                                                 f"on {message!r}"))

    def post_restart(self, reason: BaseException) -> None:
        self.probe.tell(Lifecycle("post_restart", f"{type(reason).__name__}: {reason}"))

    def on_receive(self, message: Any) -> None:
        match message:
            case "stop":
                self.context.stop()
            case "boom":
                raise RuntimeError("boom!")
            case "count":
                self.sender.tell(self.count)
            case _:
                self.count += 1
                self.probe.tell(message)


class Forwarder(Actor):
    """On `Forward(target, message)`, tells `message` to `target` with the current sender."""

    def on_receive(self, message: Any) -> None:
        match message:
            case Forward(target, inner):
                target.tell(inner, sender=self.sender)
            case _:
                self.unhandled(message)


class Relay(Actor):
    """Tells a `Forward`'s message to its target as itself; reports every other message to
    `probe` as ``(name, message)``."""

    def __init__(self, name: str, probe: ActorRef) -> None:
        self.name = name
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case Forward(target, inner):
                target.tell(inner)
            case _:
                self.probe.tell((self.name, message))


class Publisher(Actor):
    """Publishes events on the event stream from inside an actor."""

    def on_receive(self, message: Any) -> None:
        match message:
            case Publish(event):
                self.context.system.event_stream.publish(event)
            case _:
                self.unhandled(message)


class Subscriber(Actor):
    """Subscribes itself (from inside) on request; forwards every event it gets to `probe`.

    After subscribing it publishes a marker: the event stream handles one sender's messages in
    order, so once the marker reaches the probe the subscription is in place.
    """

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        match message:
            case SubscribeTo(cls, marker):
                stream = self.context.system.event_stream
                stream.subscribe(self.self_ref, cls)
                stream.publish(marker)
            case "unsubscribe":
                self.context.system.event_stream.unsubscribe(self.self_ref)
            case _:
                self.probe.tell(message)


class LambdaSender(Actor):
    """Tells `probe` a message holding a lambda; reports the error it gets as a string."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe

    def on_receive(self, message: Any) -> None:
        try:
            self.probe.tell(Holder(lambda: 42))
        except MessageNotSerializableError as e:
            self.probe.tell(f"error: {type(e).__name__}: {e}")
        else:
            self.probe.tell("sent")


class LambdaReplier(Actor):
    """Answers "lambda" with a lambda (which cannot travel), anything else with itself.

    Also an entity: ``LambdaReplier(entity_id)``.
    """

    def __init__(self, entity_id: str = "") -> None:
        self.entity_id_given = entity_id

    def on_receive(self, message: Any) -> None:
        self.sender.tell((lambda: 42) if message == "lambda" else message)


class DefaultHooks(Actor):
    """Overrides only pre_start/post_stop: the default restart hooks must call them."""

    def __init__(self, probe: ActorRef) -> None:
        self.probe = probe
        self.count = 0

    def pre_start(self) -> None:
        self.probe.tell(Lifecycle("pre_start"))

    def post_stop(self) -> None:
        self.probe.tell(Lifecycle("post_stop"))

    def on_receive(self, message: Any) -> None:
        match message:
            case "boom":
                raise RuntimeError("boom!")
            case "count":
                self.sender.tell(self.count)
            case _:
                self.count += 1


class AskInside(Actor):
    """Tries `ask` inside an actor (refused) and replies with the error it got."""

    def __init__(self, target: ActorRef) -> None:
        self.target = target

    def on_receive(self, message: Any) -> None:
        try:
            self.target.ask(message, timeout=1)
        except RuntimeError as e:
            self.sender.tell(f"{type(e).__name__}: {e}")
        else:
            self.sender.tell("no error")


@dataclasses.dataclass(frozen=True)
class StopOther:
    """Tell a `Stopper` to stop `target`: with context.stop ("stop") or a Kill ("kill")."""

    target: ActorRef
    how: str


class Stopper(Actor):
    """Stops other actors from inside."""

    def on_receive(self, message: Any) -> None:
        match message:
            case StopOther(target, "stop"):
                self.context.stop(target)
            case StopOther(target, "kill"):
                target.tell(Kill)
            case StopOther(target, "poison"):
                target.tell(PoisonPill())
            case _:
                self.unhandled(message)


class StackProbe(Actor):
    """Answers whether its handler runs under `call_with_headroom` (its frame on the stack)."""

    def on_receive(self, message: Any) -> None:
        from persistent_actors._thespian import headroom  # noqa: PLC0415 - the probe's subject

        roomy = headroom._roomy.__code__
        frame = sys._getframe()
        while frame is not None and frame.f_code is not roomy:
            frame = frame.f_back  # type: ignore[assignment]
        self.sender.tell(frame is not None)


class Stuck(Actor):
    """Sleeps as many seconds as it is told, in its handler (a call that hangs)."""

    def on_receive(self, message: Any) -> None:
        time.sleep(message)
