"""Actors as users write them (`Actor`), references to them (`ActorRef`) and `ActorContext`.

A user's actor is a plain object hosted by a thespian actor (see `_thespian/host.py`); it never
subclasses thespian. The host installs an `ActorContext` before the user's ``__init__`` runs, so
calling ``super().__init__()`` is optional and ``self.context`` works in the constructor.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from persistent_actors._compact_pickle import register_fields
from persistent_actors._protocol import CellAddress, CellEnvelope, ShardEnvelope, new_reply
from persistent_actors.errors import ConfigError, IllegalActorStateError, PersistentActorsError
from persistent_actors.messages import Kill, PoisonPill
from persistent_actors.supervision import BackoffOptions
from persistent_actors.timers import TimerScheduler

if TYPE_CHECKING:
    from persistent_actors._event_stream import EventStream

__all__ = [
    "Actor", "ActorContext", "ActorRef", "EntityRef", "ExternalSender", "HostedRef", "SystemView",
    "reply_form",
    "use_as_default",
]

log = logging.getLogger("persistent_actors")

class _Current(threading.local):
    """Per thread: the context of the actor whose message is being processed, if any."""

    # The default for a thread that never set one, as a class attribute: a thread outside
    # every actor (a client's event loop asking) reads it without a failed look-up, which
    # ``getattr(local, name, None)`` pays with an AttributeError raised and caught (about
    # 0.9 us per ask).
    context: ActorContext | None = None


# The context of the actor whose message is being processed on this thread, if any. Thread-local
# because the simple base runs actors on the caller's thread and the multi-process base runs one
# actor per process: either way "inside an actor" is a property of the current thread.
_current = _Current()


def current_context() -> ActorContext | None:
    """The context of the actor processing a message on this thread, or None outside actors."""
    return _current.context


def set_current_context(ctx: ActorContext | None) -> ActorContext | None:
    """Install `ctx` as the current actor context; return the previous one."""
    previous = _current.context  # current_context, inline
    _current.context = ctx
    return previous


class ExternalSender(Protocol):
    """How a ref sends from outside every actor: an actor system's `Endpoint`.

    Refs sit below the actor system in the layers, so they know it only by this Protocol.
    """

    @property
    def closed(self) -> bool:
        """True once the actor system has been shut down."""

    def ensure_running(self) -> None:
        """Raise `PersistentActorsError` if the actor system has been shut down."""

    def tell(self, ref: ActorRef, message: Any, sender: ActorRef | None) -> None:
        """Send `message` to `ref` (see `ActorRef.tell`)."""

    def ask(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` to `ref` and wait for the reply (see `ActorRef.ask`)."""

    async def ask_async(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` to `ref` and await the reply (see `ActorRef.ask_async`)."""


# The sender of refs that are bound to no actor system (a ref that arrived in a message, or was
# unpickled): the most recently started system's endpoint.
_default_sender: weakref.ReferenceType[ExternalSender] | None = None


def use_as_default(sender: ExternalSender) -> None:
    """Make `sender` the one that refs bound to no system send through (a new system's)."""
    global _default_sender  # noqa: PLW0603 - the process-wide default, replaced by each system
    _default_sender = weakref.ref(sender)


def _external_default() -> ExternalSender:
    sender = _default_sender() if _default_sender is not None else None
    if sender is None:
        raise PersistentActorsError(
            "no running ActorSystem in this process to send through; create one first")
    if sender.closed:
        sender.ensure_running()  # its own reason: the system shut down, the process stops
        raise PersistentActorsError("the actor system of this process has stopped")
    return sender


def refuse_coroutine(result: Any, what: str) -> None:
    """Raise if a handler returned a coroutine: an ``async def`` the class check did not see.

    (Behind a decorator, or given to ``persist``.) Its body would never run; closed here, so
    Python adds no "never awaited" warning to the error. Any other return value is ignored.
    """
    if inspect.iscoroutine(result):
        result.close()
    elif not inspect.isasyncgen(result):
        return
    raise TypeError(f"{what} returned {type(result).__name__} (an async def?): handlers are "
                    "plain functions; start awaiting work with pipe_to(coroutine, "
                    "self.self_ref) and handle its result as a message")


def normalize_message(message: Any) -> Any:
    """Accept ``Kill``/``PoisonPill`` as classes too, as in ``ref.tell(Kill)``."""
    if message is Kill or message is PoisonPill:
        return message()
    return message


class ActorRef:
    """An immutable, picklable handle to an actor: send it messages with `tell` (or `ask`).

    Equal refs point at the same actor. A ref may cross processes inside messages.
    """

    __slots__ = ("_address", "_endpoint", "_name")

    def __init__(
        self, address: Any, name: str | None = None, endpoint: ExternalSender | None = None
    ) -> None:
        self._address = address
        self._name = name
        self._endpoint = endpoint

    @property
    def address(self) -> Any:
        """The thespian address behind this ref (opaque)."""
        return self._address

    @property
    def name(self) -> str:
        """The actor's name, or its address when the ref does not know it.

        A ref from `actor_of` knows the name; one the runtime made from a transport address
        (``self.sender`` of an actor's plain tell on the simple base) shows the address. Refs
        compare by address, so either equals the actor's ref: compare refs, not names.
        """
        return self._name if self._name is not None else str(self._address)

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        """Send `message` without waiting.

        Inside an actor the sender defaults to that actor; outside, to no sender (replies go to
        dead letters). Pass `sender` to forward on someone's behalf.

        Raises:
            MessageNotSerializableError: on a multi-process base, if `message` cannot be pickled.

        """
        # `normalize_message` and `current_context`, inline: two calls less per message.
        if message is Kill or message is PoisonPill:
            message = message()
        if sender is not None and not isinstance(sender, ActorRef):
            raise TypeError(f"tell(sender=...) needs an ActorRef or None, got {sender!r}")
        ctx = _current.context
        if ctx is not None:
            ctx._send(self, message, sender)  # noqa: SLF001 - the runtime's own channel
        else:
            self._external().tell(self, message, sender)

    def ask(self, message: Any, timeout: float = 5.0) -> Any:
        """Send `message` and block until the actor replies to ``self.sender``; return the reply.

        Only outside actors: an actor must never block, so inside one use `tell` and handle the
        reply as a message.

        Raises:
            AskTimeoutError: no reply within `timeout` seconds (dead or busy actor).

        """
        if _current.context is not None:  # current_context, inline
            raise IllegalActorStateError(
                "ActorRef.ask() cannot be used inside an actor (it would block the actor); "
                "tell() the request and handle the reply as a message"
            )
        return self._external().ask(self, message, timeout)

    async def ask_async(self, message: Any, timeout: float = 5.0) -> Any:
        """Send `message` and await the reply, without ever blocking the event loop.

        For asyncio code (aiohttp, FastAPI): the actor system's gateway thread sends the
        message and routes the reply back by correlation id, so thousands of asks may be in
        flight from one loop. Once it is used, `tell` from an event-loop thread also goes
        through the gateway (in order with the asks) instead of blocking the loop.

        Raises:
            AskTimeoutError: no reply within `timeout` seconds (dead or busy actor).
            MessageNotSerializableError: on multiproc-tcp, `message` cannot be pickled.

        """
        if _current.context is not None:  # current_context, inline
            raise IllegalActorStateError(
                "ActorRef.ask_async() cannot be used inside an actor; tell() the request and "
                "handle the reply as a message"
            )
        return await self._external().ask_async(self, message, timeout)

    def _external(self) -> ExternalSender:
        if self._endpoint is not None:
            # A ref bound to a system that was shut down must fail clearly: falling back to
            # another running system would send its address where it means nothing.
            self._endpoint.ensure_running()
            return self._endpoint
        return _external_default()

    def _outbound(self, message: Any) -> Any:
        """`message` as it travels to this ref's address (an entity's is wrapped)."""
        return message

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _WRAPPING) and not isinstance(self, _WRAPPING):
            return False
        return isinstance(other, ActorRef) and other._address == self._address

    def __hash__(self) -> int:
        return hash(getattr(self._address, "addressDetails", self._address))

    def __repr__(self) -> str:
        return f"ActorRef({self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The bound system stays behind: it belongs to the process that created the ref.
        return (type(self), (self._address, self._name))


class AskRef(ActorRef):
    """The sender of an ask: a reply to it is routed to the waiting caller by correlation id."""

    __slots__ = ("_correlation_id",)

    def __init__(self, address: Any, correlation_id: str) -> None:
        # Every ask from outside builds one; its name is formatted only when asked for.
        self._address = address
        self._name = None
        self._endpoint = None
        self._correlation_id = correlation_id

    @property
    def name(self) -> str:
        """``ask-<correlation id>``."""
        return f"ask-{self._correlation_id}"

    @property
    def correlation_id(self) -> str:
        """The id that routes a reply to the waiting caller."""
        return self._correlation_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._address, self._correlation_id))


class EntityRef(ActorRef):
    """A ref to one entity (``region.ref(entity_id)``): its host's address plus its identity.

    What is sent through it travels as a `ShardEnvelope` to the host owning the entity's shard,
    which starts the entity if it is not running. Two refs are equal when they name the same
    entity of the same type.
    """

    __slots__ = ("_entity_id", "_type_name")

    def __init__(self, address: Any, type_name: str, entity_id: str,
                 endpoint: ExternalSender | None = None) -> None:
        super().__init__(address, f"{type_name}/{entity_id}", endpoint)
        self._type_name = type_name
        self._entity_id = entity_id

    @property
    def type_name(self) -> str:
        """The entity type (the name given to ``system.entities``)."""
        return self._type_name

    @property
    def entity_id(self) -> str:
        """The entity's id within its type."""
        return self._entity_id

    def _outbound(self, message: Any) -> Any:
        return ShardEnvelope(self._type_name, self._entity_id, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EntityRef) and other._type_name == self._type_name and \
            other._entity_id == self._entity_id and other._address == self._address

    def __hash__(self) -> int:
        return hash((self._type_name, self._entity_id))

    def __repr__(self) -> str:
        return f"EntityRef({self._type_name!r}, {self._entity_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._address, self._type_name, self._entity_id))


class HostedRef(ActorRef):
    """A ref to an actor living in a cell of a shared host process (``host_processes``).

    Its address is the host's; what is sent through it travels as a `CellEnvelope` naming the
    cell. A cell id is given once per system (each incarnation gets a new one, as a new process
    gets a new address), so two refs are equal when they name the same incarnation.
    """

    __slots__ = ("_cell",)

    def __init__(self, address: Any, name: str | None, cell: int,
                 endpoint: ExternalSender | None = None) -> None:
        super().__init__(address, name, endpoint)
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's name (``$cell<n>`` when only its cell is known: a dead letter's)."""
        return self._name if self._name is not None else f"$cell{self._cell}"

    @property
    def cell(self) -> int:
        """The actor's cell id in its host."""
        return self._cell

    def _outbound(self, message: Any) -> Any:
        return CellEnvelope(self._cell, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostedRef) and other._cell == self._cell and \
            other._address == self._address

    def __hash__(self) -> int:
        return hash(self._cell)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._address, self._name, self._cell))


# Refs whose messages travel wrapped: never equal to a plain ref to the same address. A
# tuple: isinstance against a union type is slower, and `__eq__` runs per message.
_WRAPPING = (EntityRef, HostedRef)


def guardian_address(ref: ActorRef) -> Any:
    """The address the guardian knows `ref`'s actor by (a hosted actor's `CellAddress`)."""
    if isinstance(ref, HostedRef):
        return CellAddress(ref.address, ref.cell)
    return ref.address


def ref_of_address(address: Any, name: str | None = None) -> ActorRef:
    """A ref to the actor at `address` (a `CellAddress` gives a `HostedRef`)."""
    if type(address) is CellAddress:
        return HostedRef(address.host, name, address.cell)
    return ActorRef(address, name)


class DeadLettersRef(ActorRef):
    """The sender of a message that has none: what is told to it is dropped (and logged)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, "deadLetters")

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        """Drop `message`, logging it at debug level."""
        log.debug("message to deadLetters dropped: %r", message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), ())


DEAD_LETTERS = DeadLettersRef()

# What each ref pickles as (its __reduce__'s arguments), for `check_picklable`'s fast path.
register_fields(ActorRef, lambda ref: (ref._address, ref._name))  # noqa: SLF001
register_fields(AskRef, lambda ref: (ref._address, ref._correlation_id))  # noqa: SLF001
register_fields(EntityRef, lambda ref: (ref._address, ref._type_name, ref._entity_id))  # noqa: SLF001
register_fields(HostedRef, lambda ref: (ref._address, ref._name, ref._cell))  # noqa: SLF001
register_fields(DeadLettersRef, lambda _ref: ())


def reply_form(target: ActorRef, message: Any) -> Any:
    """`message` as thespian must carry it to `target`: a `Reply` when `target` is an ask."""
    if isinstance(target, AskRef):
        return new_reply(target._correlation_id, message)  # noqa: SLF001 - no property call
    return outbound_form(target, message)


def outbound_form(target: ActorRef, message: Any) -> Any:
    """`message` as it travels to `target`: wrapped in an entity's envelope for entity refs."""
    return target._outbound(message)  # noqa: SLF001 - the ref's own wrapping, kept off its API


class SystemView(ABC):
    """What every actor sees of its system as ``context.system``."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The actor system's name."""

    @property
    @abstractmethod
    def event_stream(self) -> EventStream:
        """The system-wide publish/subscribe bus."""


class ActorContext(ABC):
    """The actor's view of the runtime: itself, the current sender, its system, stopping."""

    @property
    @abstractmethod
    def self(self) -> ActorRef:
        """A ref to this actor."""

    @property
    @abstractmethod
    def sender(self) -> ActorRef:
        """The sender of the message being processed (dead letters if it has none)."""

    @property
    @abstractmethod
    def system(self) -> SystemView:
        """The actor system this actor runs in."""

    @abstractmethod
    def stop(self, ref: ActorRef | None = None) -> None:
        """Stop this actor (or `ref`) after the current message."""

    def watch(self, ref: ActorRef) -> ActorRef:
        """Get ``Terminated(ref)`` once `ref`'s actor stops for good (Akka's ``Watch``).

        At once if it is gone already; once however often it is watched. A ref from
        ``actor_of`` (or a ``self_ref`` such a ref led to); an actor restarted after a failure,
        or after its process died, has not stopped. Returns `ref`.

        Raises:
            TypeError: `ref` is not an `ActorRef`, or it is an entity's (an entity starts and
                stops on demand: passivation is not an end).

        """
        raise NotImplementedError

    def unwatch(self, ref: ActorRef) -> ActorRef:
        """Stop watching `ref`: no ``Terminated(ref)`` arrives after this (Akka's ``Unwatch``).

        Returns `ref`; one not watched is no error.

        Raises:
            TypeError: `ref` is not an `ActorRef`.

        """
        raise NotImplementedError

    def passivate(self) -> None:
        """Stop this entity once it is idle (Akka's ``Passivate``); only entities can.

        Messages that arrive meanwhile are kept and start its next incarnation.

        Raises:
            IllegalActorStateError: this actor is not an entity (``system.entities``).

        """
        raise IllegalActorStateError(
            f"{self.self.name}: passivate() is for entities (system.entities); stop a plain "
            "actor with context.stop()")

    @abstractmethod
    def _send(self, target: ActorRef, message: Any, sender: ActorRef | None) -> None:
        """Deliver `message` to `target` from inside this actor."""

    @abstractmethod
    def _mark_unhandled(self, message: Any) -> None:
        """Record that the current message was not handled."""

    @abstractmethod
    def _schedule_self(self, delay: float, message: Any) -> None:
        """Put `message` in this actor's own mailbox in `delay` seconds (`Actor.timers`)."""

    @abstractmethod
    def _stash(self, capacity: int) -> None:
        """Set the message being handled aside (see `Actor.stash`)."""

    @abstractmethod
    def _unstash_all(self) -> None:
        """Put the stashed messages back in front of the mailbox (see `Actor.unstash_all`)."""


# The largest stash a class may ask for (as the ``internal_stash_capacity`` config bound).
MAX_STASH_CAPACITY = 100_000_000


def check_class_int(cls: type[Any], name: str, value: Any) -> None:
    """Raise `ConfigError` unless `value` (the class attribute `name`) is an int in range."""
    if not isinstance(value, int) or isinstance(value, bool) or \
            not 1 <= value <= MAX_STASH_CAPACITY:
        raise ConfigError(f"{cls.__qualname__}.{name} must be an int in "
                          f"1..{MAX_STASH_CAPACITY:,}, got {value!r}")


class Actor:
    """Base class of plain (non-persistent) actors: override `on_receive`.

    The runtime constructs the actor with the arguments given to ``system.actor_of`` and sets
    ``self.context`` first. An exception escaping a handler restarts the actor: a new instance
    is built from the same arguments (Akka's default supervision).
    """

    context: ActorContext

    backoff: ClassVar[BackoffOptions | None] = None
    """Restart with back-off after a failure stop (``Backoff.on_stop(...)``); None: stay stopped."""

    stash_capacity: ClassVar[int] = 10_000
    """How many messages `stash` holds; stashing one more raises `StashOverflowError`."""

    # The handler `become` replaces: on_receive here, on_command for persistent actors.
    _behavior_attribute: ClassVar[str] = "on_receive"

    @property
    def sender(self) -> ActorRef:
        """The sender of the message being processed (Akka's ``Sender``)."""
        return self.context.sender

    @property
    def self_ref(self) -> ActorRef:
        """A ref to this actor (Akka's ``Self``)."""
        return self.context.self

    @property
    def timers(self) -> TimerScheduler:
        """The timers of this instance (Akka's ``Timers``): see `persistent_actors.timers`."""
        timers: TimerScheduler | None = self.__dict__.get("_pa_timers")
        if timers is None:
            timers = self.__dict__["_pa_timers"] = TimerScheduler(self.context)
        return timers

    def on_receive(self, message: Any) -> None:
        """Handle one message. The default marks every message unhandled."""
        self.unhandled(message)

    def unhandled(self, message: Any) -> None:
        """Declare `message` not handled (Akka's ``Unhandled``); it is logged at debug level."""
        self.context._mark_unhandled(message)  # noqa: SLF001 - the runtime's own channel

    # -- stash (Akka's IWithUnboundedStash, bounded by stash_capacity) ------------------------
    def stash(self) -> None:
        """Set the message being handled aside, with its sender, until `unstash_all`.

        Call it from the message handler (`on_receive`, `on_command`, or a behaviour set with
        `become`). A restart keeps the stash (it is handed back to the new instance); a stop
        sends it to dead letters.

        Raises:
            StashOverflowError: `stash_capacity` messages are already stashed.
            IllegalActorStateError: no message is being handled (e.g. in a persist handler or
                `on_recover`), or this message was stashed already.

        """
        self.context._stash(self.stash_capacity)  # noqa: SLF001 - the runtime's own channel

    def unstash_all(self) -> None:
        """Put every stashed message back in front of the mailbox, in the order stashed.

        They are handled after the current message, before anything else that is waiting
        (for a persistent actor: before the commands in its internal stash, and like them
        only once no persist handler is pending).
        """
        self.context._unstash_all()  # noqa: SLF001 - the runtime's own channel

    # -- become / unbecome (Akka's Become, BecomeStacked, UnbecomeStacked) ---------------------
    def become(self, handler: Callable[[Any], None], *, discard_old: bool = True) -> None:
        """Handle the next messages with `handler` instead of the current behaviour.

        `handler` takes the place of `on_receive` (a persistent actor's `on_command`; its
        `on_recover` is never replaced). With `discard_old` (the default, Akka's ``Become``) it
        replaces the current behaviour; with ``discard_old=False`` (``BecomeStacked``) it is
        pushed on top, and `unbecome` returns to the one below. A restart starts from the
        class's handler. As in Akka, ``self.on_command`` (``self.on_receive``) still names the
        class's handler: ``become(self.on_command)`` returns to it, and a behaviour may hand it
        what it does not handle itself.

        Raises:
            TypeError: `handler` is not callable, or is ``async def`` (see `pipe_to`).

        """
        if not callable(handler):
            raise TypeError(f"become() needs a callable taking the message, got {handler!r}")
        if inspect.iscoroutinefunction(handler):
            raise TypeError(f"become() needs a plain function, got the async def {handler!r}: "
                            "start awaiting work with pipe_to and handle its result as a message")
        if not isinstance(discard_old, bool):  # ("no" would replace the current behaviour)
            raise TypeError(f"become() discard_old must be a bool, got {discard_old!r}")
        stack: list[Callable[[Any], None]] = self.__dict__.setdefault("_behaviors", [])
        if discard_old and stack:
            stack[-1] = handler
        else:
            stack.append(handler)

    def unbecome(self) -> None:
        """Return to the behaviour below the current one (the class's handler at the bottom).

        Does nothing when the class's handler is current.
        """
        stack: list[Callable[[Any], None]] = self.__dict__.get("_behaviors", [])
        if stack:
            stack.pop()

    def _behavior(self) -> Callable[[Any], Any]:
        """What handles the next message: the top of the `become` stack, or the class's handler.

        Not set on the instance as ``on_command``: then ``become(self.on_command)`` passed the
        current behaviour itself and never came back, and a behaviour calling
        ``self.on_command(msg)`` for the rest recursed for ever.
        """
        stack: list[Callable[[Any], Any]] | None = self.__dict__.get("_behaviors")
        if stack:
            return stack[-1]
        handler: Callable[[Any], Any] = getattr(self, self._behavior_attribute)
        return handler

    @classmethod
    def _check_class_settings(cls) -> None:
        """Raise `ConfigError` for a bad class-level setting; subclasses extend it.

        Called by ``actor_of`` and ``entities`` before any instance is built: found later,
        in a handler, it would fail a message (a persistent actor's after its event is stored).
        """
        check_class_int(cls, "stash_capacity", cls.stash_capacity)
        if cls.backoff is not None and not isinstance(cls.backoff, BackoffOptions):
            raise ConfigError(f"{cls.__qualname__}.backoff must be None or Backoff.on_stop(...), "
                              f"got {cls.backoff!r}")

    def pre_start(self) -> None:
        """Called after construction, before the first message."""

    def post_stop(self) -> None:
        """Called once when the actor stops."""

    def pre_restart(self, reason: BaseException, message: Any) -> None:
        """Called on the failing instance before it is replaced; the default calls post_stop."""
        self.post_stop()

    def post_restart(self, reason: BaseException) -> None:
        """Called on the new instance after a restart; the default calls pre_start."""
        self.pre_start()
