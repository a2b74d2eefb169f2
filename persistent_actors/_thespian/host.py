"""`ActorHost`: the thespian actor that hosts one user actor (plain or persistent).

The user's object never sees thespian. The host unwraps envelopes, sets the current context
and sender, feeds persistent actors through their `Eventsourced` machine, and applies Akka's
default supervision: an exception in a handler restarts the actor from the same arguments.
"""

from __future__ import annotations

import datetime
import itertools
import time
from collections import deque
from typing import Any

from thespian.actors import (
    Actor as ThespianActor,
)
from thespian.actors import (
    ActorExitRequest,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from persistent_actors import _protocol as p
from persistent_actors._actor import (
    DEAD_LETTERS,
    Actor,
    ActorContext,
    ActorRef,
    AskRef,
    EntityRef,
    SystemView,
    _current,
    guardian_address,
    refuse_coroutine,
    reply_form,
    set_current_context,
)
from persistent_actors._event_stream import EventStream
from persistent_actors._eventsourced import Eventsourced
from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._serialization import default_serializer
from persistent_actors._thespian.common import (
    check_picklable,
    log,
    portable_error,
)
from persistent_actors._thespian.direct_journal import DirectJournal
from persistent_actors._thespian.frames import (
    NESTED,
    SENT_ALONE,
    FrameBatching,
    batched,
    frame_rest,
    take_from_frame,
)
from persistent_actors._thespian.moved import Move
from persistent_actors._thespian.thread_inbox import close_inbox, deliver_inbox, install_inbox
from persistent_actors.adapters import event_adapters_for
from persistent_actors.errors import (
    ActorInitializationError,
    IllegalActorStateError,
    MessageNotSerializableError,
    StashOverflowError,
)
from persistent_actors.messages import DeadLetter, Kill, PoisonPill, Terminated
from persistent_actors.stored import unstorable
from persistent_actors.supervision import BackoffOptions
from persistent_actors.timers import NOT_ACTIVE

_instance_ids = itertools.count(1)


class _SystemView(SystemView):
    def __init__(self, info: p.SystemInfo) -> None:
        self._info = info
        self._event_stream = EventStream(ActorRef(info.event_stream, "eventStream"))

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def event_stream(self) -> EventStream:
        return self._event_stream

    def moved(self, move: Move) -> None:
        """The event stream's process may have moved: its handle (which actors may keep) too."""
        info = move.system(self._info)
        if info is not self._info:
            self._info = info
            self._event_stream._ref = ActorRef(info.event_stream, "eventStream")  # noqa: SLF001


class _HostContext(ActorContext):
    """The `ActorContext` of a hosted actor, and the `EntityCell` of its machine."""

    # The host's address, set where `_direct` is looked up (a class default: no entry per
    # context, of which an entity host keeps many).
    _direct_requester: Any = None

    def __init__(self, host: ActorHost, start: p.StartActor) -> None:
        self._host = host
        self._self_ref = ActorRef(host.myAddress, start.name)
        self._system = _SystemView(start.system)
        self._sender: ActorRef = DEAD_LETTERS
        self._unhandled = False
        self._multiproc = start.system.base != "simple"
        self._guardian = start.system.guardian
        self.journal = start.journal
        self.snapshot_store = start.snapshot_store
        self.recovery_event_timeout = start.system.recovery_event_timeout
        self.internal_stash_capacity = start.system.internal_stash_capacity
        self.replay_filter = start.system.replay_filter
        # The user's stash (Actor.stash): kept across restarts. A plain actor's message being
        # handled, and its unstashed messages, handled before the next mailbox message. Both
        # deques are created on first use: an empty deque costs 760 bytes, and an entity host
        # keeps 100,000 mostly idle contexts.
        self.current: tuple[Any, ActorRef] | None = None
        self._user_stash: deque[tuple[Any, ActorRef]] | None = None
        self._unstashed: deque[tuple[Any, ActorRef]] | None = None
        # The simple base's direct path to the journal (see `write_messages`), looked for at
        # the first write; None where there is none.
        self._direct: DirectJournal | None = None
        self._direct_looked = False
        # The refs it watches (`watch`): a Terminated for any other is dropped. Kept across
        # restarts, as Akka keeps an actor's watches; created on first use.
        self._watching: set[ActorRef] | None = None

    def moved(self, move: Move) -> None:
        """Hold `move`'s new address wherever this context held the dead one."""
        self.journal = move.address(self.journal)
        self.snapshot_store = move.address(self.snapshot_store)
        self._system.moved(move)  # (a cell's is its host's: moved once, then a no-op)

    @property
    def user_stash(self) -> deque[tuple[Any, ActorRef]]:
        """The messages set aside by ``stash()`` (created on first use)."""
        if self._user_stash is None:
            self._user_stash = deque()
        return self._user_stash

    @property
    def unstashed(self) -> deque[tuple[Any, ActorRef]]:
        """A plain actor's unstashed messages, handled before its mailbox (created on use)."""
        if self._unstashed is None:
            self._unstashed = deque()
        return self._unstashed

    def take_stashed(self) -> list[tuple[Any, ActorRef]]:
        """Remove and return the user stash, then the unstashed messages (the actor stops)."""
        taken = [*(self._user_stash or ()), *(self._unstashed or ())]
        self._user_stash = self._unstashed = None
        return taken

    @property
    def has_unstashed(self) -> bool:
        """True if unstashed messages wait (without creating the deque)."""
        return bool(self._unstashed)

    # ActorContext
    @property
    def self(self) -> ActorRef:
        return self._self_ref

    @property
    def sender(self) -> ActorRef:
        return self._sender

    @property
    def system(self) -> SystemView:
        return self._system

    def stop(self, ref: ActorRef | None = None) -> None:
        if ref is not None and not isinstance(ref, ActorRef):
            raise TypeError(f"context.stop() needs an ActorRef, or nothing to stop this actor; "
                            f"got {ref!r}")
        if ref is None or ref == self._self_ref:
            self._host.stop_actor()
        else:
            self._host.send(ref.address, reply_form(ref, ActorExitRequest()))
            self._stop_requested(ref)

    def watch(self, ref: ActorRef) -> ActorRef:
        if not isinstance(ref, ActorRef) or isinstance(ref, EntityRef | AskRef):
            raise TypeError(
                f"watch() takes a ref of an actor from actor_of, got {ref!r}"
                + (" (entities start and stop on demand: passivation is no end to watch for)"
                   if isinstance(ref, EntityRef) else ""))
        watching = self._watching
        if watching is None:
            watching = self._watching = set()
        if ref not in watching:
            watching.add(ref)
            self._host.send(self._guardian, p.Watch(guardian_address(ref), ref, self.self))
        return ref

    def unwatch(self, ref: ActorRef) -> ActorRef:
        if not isinstance(ref, ActorRef):
            # It was a silent no-op: unwatch(ref.name) left the watch in place, and the
            # Terminated the caller meant to cancel still came.
            raise TypeError(f"unwatch() takes the ActorRef given to watch(), got {ref!r}")
        if self._watching is not None and ref in self._watching:
            self._watching.discard(ref)
            self._host.send(self._guardian, p.Unwatch(guardian_address(ref), self.self))
        return ref

    def take_terminated(self, message: Terminated) -> bool:
        """True if `message` is for a ref this actor watches (which it then no longer does)."""
        watching = self._watching
        if watching is None or message.actor not in watching:
            return False
        watching.discard(message.actor)
        return True

    def _stop_requested(self, ref: ActorRef) -> None:
        # See StopRequested: the guardian defers a re-creation under the same name.
        if ref != self._self_ref:
            self._host.send(self._guardian, p.StopRequested(guardian_address(ref)))

    def _send(self, target: ActorRef, message: Any, sender: ActorRef | None) -> None:
        address = target._address  # noqa: SLF001 - the `address` property, without its call
        if address is None:
            target.tell(message)  # dead letters
            return
        # A plain ref (the usual target) neither answers an ask nor wraps for an entity.
        cls = type(target)
        if cls is ActorRef:
            wrapped = message
        elif cls is AskRef:  # a reply to an ask: `reply_form`, inline
            wrapped = p.new_reply(target._correlation_id, message)  # type: ignore[attr-defined]  # noqa: SLF001
        else:
            wrapped = reply_form(target, message)
        if sender is not None and sender != self._self_ref and not isinstance(wrapped, p.Reply):
            wrapped = p.Envelope(wrapped, sender)
        if self._multiproc:  # `send_to_address`, inline: one call less per message
            self._check_picklable(wrapped, address)
        host = self._host
        if address is host._last_address and type(wrapped) is not p.Reply and \
                not isinstance(wrapped, SENT_ALONE):  # noqa: SLF001 - frames' own shortcut
            # `FrameBatching.send`'s shortcut, inline (one call less per message): a run of
            # tells to the actor the last one went to joins its list in the outbox.
            host._last_messages.append(wrapped)  # type: ignore[union-attr]  # noqa: SLF001
        else:
            host.send(address, wrapped)
        if isinstance(message, _STOPS):
            self._stop_requested(target)

    def _mark_unhandled(self, message: Any) -> None:
        self._unhandled = True
        log.debug("%s did not handle %r", self._self_ref.name, message)

    def _stash(self, capacity: int) -> None:
        es = self._host.eventsourced
        current = es.current_command if es is not None else self.current
        if current is None:
            raise IllegalActorStateError(
                f"{self._self_ref.name}: stash() sets aside the message being handled; call it "
                "from on_receive/on_command (or a behaviour set with become), not from a "
                "persist handler, on_recover or a lifecycle hook")
        if self._user_stash and self._user_stash[-1] is current:
            raise IllegalActorStateError(
                f"{self._self_ref.name}: cannot stash the same message twice "
                f"({type(current[0]).__name__})")
        if len(self.user_stash) >= capacity:
            raise StashOverflowError(
                f"stash of {self._self_ref.name} is full ({capacity} messages, its "
                f"stash_capacity); {type(current[0]).__name__} was not stashed")
        self.user_stash.append(current)

    def _unstash_all(self) -> None:
        self.restore_user_stash()

    def restore_user_stash(self) -> None:
        """Put the user's stashed messages back in front of what waits (the host's hook)."""
        if not self._user_stash:
            return
        es = self._host.eventsourced
        # A persistent actor's go in front of its internal stash (Akka's InternalStashAwareStash).
        front = es.stash if es is not None else self.unstashed
        front.extendleft(reversed(self.user_stash))
        self.user_stash.clear()

    def _check_picklable(self, message: Any, address: Any) -> None:
        """`check_picklable`; a reply to an ask that cannot travel also fails that ask.

        The handler gets `MessageNotSerializableError`, as for any tell of what cannot travel
        (the actor restarts); the asker, which waited for its timeout, now raises it at once.
        """
        try:
            check_picklable(message, address)
        except MessageNotSerializableError as e:
            if type(message) is p.Reply:
                self._host.send(address, p.new_reply(
                    message.correlation_id, p.AskRefused(MessageNotSerializableError(str(e)))))
            raise

    # EntityCell
    def send_to_address(self, address: Any, message: Any) -> None:
        if self._multiproc:
            self._check_picklable(message, address)
        self._host.send(address, message)

    def write_messages(self, request: p.WriteMessages) -> None:
        """Send `request` to the journal, or on the simple base hand it over directly.

        Directly (`DirectJournal`) only where a message would change nothing: no message of
        this frame follows (it would be handled before the request), and `DirectJournal.write`
        finds nothing sent in this receive and nothing queued in the system that could act
        first or join the batch. The result is then handled as this actor's next message
        (`ActorHost.receiveMessage`). Where other work is queued, the request joins the host's
        batch instead, without a message (`PluginHost.join_batch`).
        """
        host = self._host
        if not self._direct_looked:
            self._direct_looked = True
            # Not on multiproc-tcp, and not for an entity (its receives nest in its host's).
            if not self._multiproc and host._outbox is not NESTED:  # noqa: SLF001 - frames'
                self._direct = DirectJournal.of(host, self.journal)
                # Thespian's ``myAddress`` is two property calls; an actor's address is fixed.
                self._direct_requester = host.myAddress
        direct = self._direct
        # `frame_has_more(host)`, inline (one call less per write).
        if direct is not None and not host._frame_left and host.direct_result is None:  # noqa: SLF001
            result = direct.write(request, host._outbox, self._direct_requester)  # noqa: SLF001
            if result is True:  # it joined the host's batch; its result comes as a message
                return
            if result is not False:
                host.direct_result = (result, self.journal)
                return
        self.send_to_address(self.journal, request)

    def send_to_self(self, message: Any) -> None:
        self._host.send(self._host.myAddress, message)

    def _schedule_self(self, delay: float, message: Any) -> None:
        self.schedule(delay, p.Scheduled(message))

    def stop_self(self, *, failed: bool = False) -> None:
        self._host.stop_actor(failed=failed)

    def schedule(self, delay: float, message: Any) -> None:
        self._host.wakeupAfter(datetime.timedelta(seconds=max(delay, 0.001)), payload=message)

    def dead_letter(self, message: Any, sender: ActorRef) -> None:
        self._host.publish_dead_letter(message, sender)

    def set_sender(self, sender: ActorRef) -> None:
        self._sender = sender

    def begin_handling(self) -> None:
        self._unhandled = False

    def was_unhandled(self) -> bool:
        return self._unhandled


_STOPS = (Kill, PoisonPill)  # a tuple: isinstance against a union type is slower
_NO_SENDER = object()  # matches no thespian address
# Most direct write results (`direct_journal`) one message of an actor handles in a row; the
# next one goes through the send queue (`ActorHost.receiveMessage`).
DIRECT_TURNS = 100
_CONTROL = (p.StartActor, p.RecoveryPermitted, ActorExitRequest, WakeupMessage, ChildActorExited,
            PoisonMessage, p.InboxWake, p.PluginMoved)
# Never stashed with the rest of a frame (`_stash_frame_rest`): `_receive_one` acts on them.
_TAKEN_ALONE = (*_CONTROL, Kill, p.TimerFired, Terminated)


class ActorHost(FrameBatching, ThespianActor):  # type: ignore[misc]
    """Hosts one user actor; created by the guardian, started by a `StartActor`."""

    _context_class: type[_HostContext] = _HostContext

    def __init__(self) -> None:
        super().__init__()
        self._start: p.StartActor | None = None
        self._ctx: _HostContext | None = None
        self._actor: Actor | None = None
        self._es: Eventsourced | None = None
        self._stopped = False
        # Back-off restarts (BackoffOptions): messages kept while waiting, restarts so far.
        self._backing_off: deque[tuple[Any, ActorRef]] | None = None
        self._restarts = 0
        self._started_at = 0.0
        # Recovery waits for the guardian (StartRecovery -> RecoveryPermitted): the persistence
        # id must be this actor's alone in the system, and a recovery permit free.
        self._awaiting_recovery = False
        self._holds_permit = False
        # A direct write's result and its journal's address (`_HostContext.write_messages`),
        # handled once the current message is done, as the next message would be.
        self.direct_result: tuple[p.WriteMessagesResult, Any] | None = None
        # The ref of the last plain message's sender: a driver sends many in a row.
        self._sender_address: Any = _NO_SENDER
        self._sender_ref: ActorRef = DEAD_LETTERS

    @property
    def eventsourced(self) -> Eventsourced | None:
        """The persistence machine of the hosted actor (None for a plain actor or none yet)."""
        return self._es

    # -- thespian entry point ----------------------------------------------------------------
    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        if type(message) is p.WriteMessagesResult and not self._frame_left:
            # A group commit's result (its own queue entry on the simple base): the checks of
            # `_receive_one` that only other messages need are skipped, as for a direct result.
            self._receive_result(message, sender)
        else:
            self._receive_one(message, sender)
        turns = 0
        while self.direct_result is not None:  # a direct write's result: the next message
            (result, journal), self.direct_result = self.direct_result, None
            turns += 1
            if turns > DIRECT_TURNS:
                # An actor that persists from every handler would stay in this loop for ever,
                # holding the simple base's one thread: its result now waits in the send
                # queue behind everything else, as a result that came as a message would.
                self.send(self.myAddress, result)
                break
            self._receive_result(result, journal)

    def _receive_result(self, result: p.WriteMessagesResult, journal: Any) -> None:
        """`_receive_one` of a journal result, without its tests for other kinds of message.

        Anything but a running persistent actor takes `_receive_one` itself.
        """
        if self._stopped or self._es is None or self._ctx is None or self._actor is None or \
                self._backing_off is not None:
            self._receive_one(result, journal)
            return
        self._handle(result, DEAD_LETTERS)  # the sender of a journal result is not used
        if self._holds_permit:
            self._return_permit_if_recovered()

    def _receive_one(self, message: Any, sender: Any) -> None:
        # One isinstance against all control classes: a command (the usual message) is none of
        # them, and the match below would test it against each in turn.
        if type(message) is not p.Envelope and isinstance(message, _CONTROL):
            match message:
                case p.StartActor():
                    self._on_start(message, sender)
                    return
                case p.RecoveryPermitted():
                    self._on_recovery_permitted()
                    return
                case ActorExitRequest():
                    self._on_exit()
                    return
                case WakeupMessage():
                    self._on_timer(message.payload)
                    return
                case ChildActorExited():
                    return
                case PoisonMessage():
                    log.error("%s: a message it sent could not be delivered: %r (%s)",
                              self._name(), message.poisonMessage, message.details)
                    return
                case p.InboxWake():
                    deliver_inbox(self)
                    return
                case p.PluginMoved():
                    lost = self.plugin_moved(Move(message))
                    if lost is not None:
                        self._receive_result(lost, message.new)
                    return
        if self._stopped or self._ctx is None or \
                (self._actor is None and self._backing_off is None):
            if not _is_timer(message):  # a stopped actor's timers are gone, not undelivered
                self.publish_dead_letter(message, sender)
            return
        if type(message) is p.Envelope:  # never subclassed, as the test at the top assumes
            if message.correlation_id is not None:
                reply_to = message.reply_to if message.reply_to is not None else sender
                sender_ref: ActorRef = AskRef(reply_to, message.correlation_id)
            else:
                sender_ref = message.sender if message.sender is not None else DEAD_LETTERS
            message = message.message
        elif sender is self._sender_address:
            sender_ref = self._sender_ref  # refs are immutable: one per sender, not per message
        else:
            sender_ref = self._sender_ref = ActorRef(sender)
            self._sender_address = sender
        if type(message) is Terminated and not self._ctx.take_terminated(message):
            return  # unwatched meanwhile (or never watched): Akka delivers none then
        if type(message) is p.TimerFired:  # a user timer: its message, if still active
            message = self._timer_message(message)
            if message is NOT_ACTIVE:
                return
            sender_ref = DEAD_LETTERS
        if isinstance(message, Kill):
            self.stop_actor()
            return
        if self._backing_off is not None:
            if isinstance(message, PoisonPill):
                self.stop_actor()
            elif type(message).__module__ != p.__name__:
                # (A plugin's late answer to the stopped instance, such as the replay of a
                # recovery that timed out, is not kept: the next instance got it as a command.)
                self._backing_off.append((message, sender_ref))
            return
        es = self._es
        # A command that only waits for a persist in flight (persist_all's): stashed without
        # the context `_handle` sets up. `_pending_stashing` is read first: most commands of
        # an actor that is not persisting pay no call.
        if es is None or not es._pending_stashing or not es.stash_if_waiting(  # noqa: SLF001
                message, sender_ref):
            self._handle(message, sender_ref)
            es = self._es
        # The rest of the frame waits for the same persist (persist_all's commands): at once.
        if self._frame_left and es is not None and es._pending_stashing:  # noqa: SLF001
            self._stash_frame_rest(es, sender)
        if self._es is None:
            self._drain_unstashed()
        if self._holds_permit:
            self._return_permit_if_recovered()

    def _timer_message(self, firing: p.TimerFired) -> Any:
        """The message of the user timer that fired, or NOT_ACTIVE.

        NOT_ACTIVE: cancelled, replaced, or of an instance that is gone (a restart cancels
        every timer).
        """
        timers = self._actor.__dict__.get("_pa_timers") if self._actor is not None else None
        if timers is None or self._backing_off is not None:
            return NOT_ACTIVE
        return timers.fired(firing)

    def _stash_frame_rest(self, es: Eventsourced, sender: Any) -> None:
        """While a stashing persist is in flight, stash what follows in the current frame.

        What `_receive_one` would do for each (`stash_if_waiting`), in one call: the run of
        commands up to the first message it treats otherwise (an Envelope, a control message,
        a Kill, one for the machine) or a full stash; those are handed over one by one.
        """
        if self._stopped or self._backing_off is not None or self._holds_permit or \
                self.direct_result is not None or \
                type(self).receiveMessage is not ActorHost.receiveMessage:  # sees each message
            return
        rest = frame_rest(self)
        count = 0
        for item in rest:
            if type(item) is p.Envelope or isinstance(item, _TAKEN_ALONE):
                break
            count += 1
        if not count:
            return
        if sender is self._sender_address:
            sender_ref = self._sender_ref
        else:
            sender_ref = self._sender_ref = ActorRef(sender)
            self._sender_address = sender
        take_from_frame(self, es.stash_all_waiting(rest[:count], sender_ref))

    def _drain_unstashed(self) -> None:
        """A plain actor handles its unstashed messages before its next mailbox message."""
        ctx = self._ctx
        while ctx is not None and ctx.has_unstashed and not self._stopped and self._es is None \
                and self._backing_off is None:
            self._handle(*ctx.unstashed.popleft())

    def _handle(self, message: Any, sender: ActorRef) -> None:
        """Run one message in the actor's context: the persistence machine's or the actor's.

        Akka's default supervision: any error restarts the actor.
        """
        current = _current  # set_current_context, inline: two calls less per message
        previous = current.context
        current.context = self._ctx
        es = self._es
        try:
            if es is not None:
                es.receive(message, sender)
            else:
                self._dispatch(message, sender)
        except Exception as e:  # noqa: BLE001 - restart on any error
            self._restart(e, message)
        finally:
            current.context = previous

    def _dispatch(self, message: Any, sender: ActorRef) -> None:
        """A plain actor's message (a persistent actor's goes to its machine, `_handle`)."""
        assert self._ctx is not None  # noqa: S101
        assert self._actor is not None  # noqa: S101
        self._ctx.set_sender(sender)
        if isinstance(message, PoisonPill):
            self.stop_actor()
            return
        self._ctx.begin_handling()
        self._ctx.current = (message, sender)
        try:
            actor = self._actor
            behaviors = actor.__dict__.get("_behaviors")  # `Actor._behavior`, inline
            result = (behaviors[-1] if behaviors else actor.on_receive)(message)
            if result is not None:  # an async def (behind a decorator) returned a coroutine
                refuse_coroutine(result, "on_receive")
        finally:
            self._ctx.current = None

    # -- lifecycle ---------------------------------------------------------------------------
    def plugin_moved(self, move: Move, *, writes_here: bool = False) -> Any:
        """Hold `move`'s new address wherever this actor held the dead one (`p.PluginMoved`).

        Returns the failure to hand the actor as its plugin's answer (`_receive_result`) for
        a request lost in the dead process (`Eventsourced.lost_reply`), or None. `writes_here`:
        the host writes the actor's journal itself (`local_journal`), so no write was lost.
        """
        if self._start is not None:
            self._start = move.start(self._start)
        ctx = self._ctx
        if ctx is None:
            return None
        journal, snapshot_store = move.holds_old(ctx.journal), move.holds_old(ctx.snapshot_store)
        ctx.moved(move)
        es = self._es
        if es is None or self._stopped or self._backing_off is not None or \
                not (journal or snapshot_store):
            return None
        kind = "journal" if journal else "snapshot store"
        return es.lost_reply(
            f"{self._name()}: the process of its {kind} plugin died with its request in "
            "flight (the plugin was started again)", journal=journal,
            snapshot_store=snapshot_store, writes=journal and not writes_here)

    def _on_start(self, start: p.StartActor, guardian: Any) -> None:
        self._start = start
        # Its own process (host_processes = 0): the actor's other threads tell through it.
        self._delivers_inbox = install_inbox(self, start.system.guardian)
        self._ctx = self._context_class(self, start)
        previous = set_current_context(self._ctx)
        try:
            # pre_start and the start of recovery belong to initialization, as in Akka: their
            # failure is an ActorInitializationException, which stops the actor (no restart).
            self._construct(stash=None)
            self._after_start()
        except Exception as e:  # noqa: BLE001 - reported to the creator, then we stop
            error = e if isinstance(e, ActorInitializationError) else ActorInitializationError(
                f"cannot create {start.cls.__qualname__}: {type(e).__name__}: {e}")
            error.__cause__ = e
            self._stopped = True
            self._call_post_stop()
            self.send(guardian, p.ActorFailed(start.host_id, portable_error(error)))
            self.send(self.myAddress, ActorExitRequest())
            return
        finally:
            set_current_context(previous)
        pid = self._es.persistence_id if self._es is not None else None
        self.send(guardian, p.ActorStarted(start.host_id, pid))

    def _construct(self, stash: Any) -> None:
        assert self._start is not None  # noqa: S101
        assert self._ctx is not None  # noqa: S101
        cls: Any = self._start.cls
        actor = cls.__new__(cls)
        actor.context = self._ctx
        self._prepare_instance(actor)
        es: Eventsourced | None = None
        if isinstance(actor, PersistentActor):
            es = Eventsourced(actor, self._ctx, "", next(_instance_ids), default_serializer, stash,
                              adapters=event_adapters_for(self._start.event_adapters))
            actor._eventsourced = es  # noqa: SLF001 - installed before the user's __init__
        cls.__init__(actor, *self._constructor_args(), **self._start.kwargs)
        if es is not None:
            pid = actor.persistence_id
            if not isinstance(pid, str) or not pid:
                raise ActorInitializationError(
                    f"{cls.__module__}.{cls.__qualname__} has no persistence_id: set a class "
                    f"attribute or a property returning a non-empty str (got {pid!r})")
            reason = unstorable(pid)
            if reason is not None:
                raise ActorInitializationError(
                    f"{cls.__qualname__}: persistence_id {pid[:80]!r} cannot be stored: "
                    f"{reason}")
            es.persistence_id = pid
        self._actor = actor
        self._es = es

    def _constructor_args(self) -> tuple[Any, ...]:
        """The positional arguments of the actor's constructor (an entity's id goes first)."""
        assert self._start is not None  # noqa: S101
        return self._start.args

    def _own_ref(self) -> ActorRef:
        """A ref to this actor, as a dead letter names its recipient."""
        assert self._start is not None  # noqa: S101
        return ActorRef(self.myAddress, self._start.name)

    def _prepare_instance(self, actor: Any) -> None:
        """Set up a new instance before its ``__init__`` runs (an entity gets its id)."""

    def _after_start(self) -> None:
        assert self._actor is not None  # noqa: S101
        self._started_at = time.monotonic()
        self._actor.pre_start()
        if self._es is not None:
            # Read now, while a failure still fails actor_of (ActorInitializationError):
            # recovery itself starts later, when the guardian grants a recovery permit.
            self._es.recovery_settings()
            self._want_recovery()

    def _want_recovery(self) -> None:
        assert self._start is not None  # noqa: S101
        self._awaiting_recovery = True
        self.send(self._start.system.guardian, p.StartRecovery())

    def _on_recovery_permitted(self) -> None:
        self._holds_permit = True
        if self._stopped or self._es is None or not self._awaiting_recovery:
            self._return_permit()  # stopped, or restarted meanwhile: a new request is queued
            return
        self._awaiting_recovery = False
        self._run_user(self._es.start_recovery)
        self._return_permit_if_recovered()

    def _run_user(self, fn: Any) -> None:
        previous = set_current_context(self._ctx)
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - Akka's default supervision
            self._restart(e, None)
        finally:
            set_current_context(previous)

    def _return_permit_if_recovered(self) -> None:
        if self._holds_permit and (self._es is None or not self._es.is_recovering):
            self._return_permit()

    def _return_permit(self) -> None:
        if self._holds_permit and self._start is not None:
            self._holds_permit = False
            self.send(self._start.system.guardian, p.RecoveryDone())

    def _initialize(self, fn: Any) -> None:
        """Run the start hooks of a new instance; their failure stops the actor.

        Akka's default strategy stops an actor on an ActorInitializationException (pre_start,
        post_restart): restarting would fail the same way, for ever.
        """
        previous = set_current_context(self._ctx)
        try:
            fn()
        except Exception:  # noqa: BLE001 - logged, then the actor stops
            log.exception("%s failed to initialize; it stops", self._name())
            self.stop_actor()
        finally:
            set_current_context(previous)

    def _restart(self, reason: Exception, message: Any) -> None:
        es = self._es
        if es is not None and es.failed_command is not None:
            # A command taken from the stash after a journal reply (or a timer) failed: name
            # the command, not the message whose handling ran it.
            message, es.failed_command = es.failed_command, None
        if self._stopped:  # e.g. on_recovery_failure raised: the actor stops all the same
            log.error("%s raised as it stopped (it stays stopped): %s: %s", self._name(),
                      type(reason).__name__, reason, exc_info=reason)
            return
        log.error("%s failed on %r and restarts: %s: %s", self._name(), message,
                  type(reason).__name__, reason, exc_info=reason)
        old = self._actor
        try:
            if old is not None:
                old.pre_restart(reason, message)
        except Exception:  # noqa: BLE001 - a hook failure is logged, never propagated
            log.exception("%s: pre_restart raised", self._name())
        if self._ctx is not None:
            self._ctx.restore_user_stash()  # Akka: the user stash goes back on restart
        stash = self._es.stash if self._es is not None else None
        self._return_permit()  # the new instance asks again
        try:
            self._construct(stash)
        except Exception:  # noqa: BLE001 - a hook failure is logged, never propagated
            log.exception("%s could not be re-created; it stops", self._name())
            self._actor = None  # the old instance had its post_stop already
            self.stop_actor()
            return
        assert self._actor is not None  # noqa: S101
        actor = self._actor

        def after_restart() -> None:
            actor.post_restart(reason)
            if self._es is not None:
                self._want_recovery()

        self._initialize(after_restart)

    def _on_timer(self, payload: Any) -> None:
        if self._stopped or self._ctx is None:
            return
        match payload:
            case p.RecoveryTick() if self._es is not None and self._backing_off is None:
                previous = set_current_context(self._ctx)
                try:
                    self._es.receive(payload, DEAD_LETTERS)
                except Exception as e:  # noqa: BLE001 - Akka's default supervision
                    self._restart(e, payload)
                finally:
                    set_current_context(previous)
                self._return_permit_if_recovered()
            case p.BackoffRestart() if self._backing_off is not None:
                self._backoff_restart()
            case p.Scheduled(message):
                self.send(self.myAddress, message)

    def _backoff_restart(self) -> None:
        assert self._backing_off is not None  # noqa: S101
        kept, self._backing_off = self._backing_off, None
        self._restarts += 1
        previous = set_current_context(self._ctx)
        try:
            self._construct(stash=kept if self._is_persistent() else None)
        except Exception:  # noqa: BLE001 - a constructor failing now is final
            log.exception("%s could not be started again; it stops", self._name())
            self._actor = None  # the old instance had its post_stop already
            self.stop_actor()
            return
        finally:
            set_current_context(previous)
        self._initialize(self._after_start)
        if not self._is_persistent():
            for message, sender in kept:
                self.receiveMessage(p.Envelope(message, sender), None)

    def _is_persistent(self) -> bool:
        return self._start is not None and issubclass(self._start.cls, PersistentActor)

    def stop_actor(self, *, failed: bool = False) -> None:
        """Stop the hosted actor: tell the guardian, post_stop, then exit.

        With `failed` (a plugin failed) and a ``backoff`` on the class, start it again later.
        """
        if self._stopped:
            return
        if self._es is not None:
            self._es.stopped(failed=failed)  # what it was doing (a persist_all's handlers) ends
        backoff = getattr(self._start.cls, "backoff", None) if self._start else None
        if failed and isinstance(backoff, BackoffOptions) and self._backing_off is None:
            self._schedule_backoff(backoff)
            return
        self._stopped = True
        assert self._start is not None  # noqa: S101
        self._return_permit()
        # The guardian first: whoever observes post_stop and then re-creates the name must
        # find the guardian already waiting for this actor's exit, not refusing the name.
        self.send(self._start.system.guardian, p.ActorStopping())
        self._call_post_stop()
        left = self._take_stashed()
        if left:
            self._left_behind(left, failed=failed)
        self.send(self.myAddress, ActorExitRequest())

    def _take_stashed(self) -> list[tuple[Any, Any]]:
        """Remove and return what waits in the actor's stashes: (message, sender ref) pairs.

        What waits for a back-off restart, else the persistence machine's, then the user's.
        """
        left: list[tuple[Any, Any]] = []
        if self._backing_off:  # what waited for a back-off restart (that stash, then later)
            left.extend(self._backing_off)
            self._backing_off.clear()
        if self._es is not None:
            left.extend(self._es.stash)
            self._es.stash.clear()
        if self._ctx is not None:
            left.extend(self._ctx.take_stashed())
        return left

    def _left_behind(self, messages: list[tuple[Any, Any]], *, failed: bool) -> None:
        """The messages (message, sender ref) a stopping actor had stashed: dead letters.

        An entity's go to its next incarnation instead (`EntityHost`).
        """
        for message, sender in messages:
            self.publish_dead_letter(message, sender)

    def _schedule_backoff(self, backoff: BackoffOptions) -> None:
        if time.monotonic() - self._started_at >= backoff.min_backoff:
            self._restarts = 0  # the last instance ran long enough: Akka's auto reset
        self._call_post_stop()
        self._actor = None  # its post_stop ran: a stop while backing off must not run it again
        kept: deque[tuple[Any, ActorRef]] = deque()
        if self._ctx is not None:  # the user stash waits with the rest, in front
            self._ctx.restore_user_stash()
            kept.extend(self._ctx.unstashed)
            self._ctx.unstashed.clear()
        if self._es is not None:
            kept.extend(self._es.stash)
        self._backing_off = kept
        self._es = None
        self._return_permit()
        delay = backoff.delay(self._restarts)
        log.warning("%s stopped after a failure; starting it again in %.2fs (restart %d)",
                    self._name(), delay, self._restarts + 1)
        self.wakeupAfter(datetime.timedelta(seconds=delay), payload=p.BackoffRestart(
            self._restarts))

    def _on_exit(self) -> None:
        if getattr(self, "_delivers_inbox", False):
            close_inbox()
        if not self._stopped:
            self._stopped = True
            if self._es is not None:
                self._es.stopped()  # what it persisted before the stop is written
            if self._start is not None:
                # A stop, not a crash: the guardian must not restart us (guardian.py).
                self.send(self._start.system.guardian, p.ActorStopping())
            self._call_post_stop()
            # system.stop (Akka's Stop): what waited in its stashes is dead letters, published
            # as `stop_actor` publishes them, not dropped unseen.
            for message, sender in self._take_stashed():
                self.publish_dead_letter(message, sender)

    def _call_post_stop(self) -> None:
        if self._actor is None:
            return
        previous = set_current_context(self._ctx)
        try:
            self._actor.post_stop()
        except Exception:  # noqa: BLE001 - a hook failure is logged, never propagated
            log.exception("%s: post_stop raised", self._name())
        finally:
            set_current_context(previous)

    def publish_dead_letter(self, message: Any, sender: Any) -> None:
        """Publish `message` from `sender` on the event stream as a DeadLetter.

        `sender`: a thespian address, or the ref a stashed message kept (a hosted actor's
        `HostedRef` names more than its address).
        """
        if isinstance(sender, ActorRef):
            sender_ref: ActorRef | None = sender if sender.address is not None else None
        else:
            sender_ref = ActorRef(sender) if sender is not None else None
        if isinstance(message, p.Envelope):
            # The envelope names the real sender (None for a plain tell from outside); the
            # transport's sender would be the external endpoint, unlike the DeadLetter the
            # event stream publishes for the same message once the actor has exited.
            message, sender_ref = message.message, message.sender
        log.debug("%s is stopped; dead letter %r", self._name(), message)
        if type(message).__module__ == p.__name__:
            return  # a plugin's answer to the stopped actor (its last writes'): not the user's
        if self._start is not None and not isinstance(message, DeadLetter):
            try:
                self.send(self._start.system.event_stream, p.Publish(DeadLetter(
                    message, sender_ref, self._own_ref())))
            except Exception:  # noqa: BLE001 - a dead letter that cannot be published is logged
                log.debug("dead letter could not be published", exc_info=True)

    def _name(self) -> str:
        if self._start is None:
            return "actor"
        return f"{self._start.cls.__qualname__}({self._start.name!r})"


def _is_timer(message: Any) -> bool:
    """True for a user timer's firing, as it arrives (perhaps in an Envelope, from a cell)."""
    return type(message) is p.TimerFired or (
        type(message) is p.Envelope and type(message.message) is p.TimerFired)
