"""`ActorSystem`: the user's entry point, a facade over one thespian actor system."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import pickle
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from thespian.actors import ActorExitRequest
from thespian.actors import ActorSystem as ThespianActorSystem

from persistent_actors import _protocol as p
from persistent_actors._actor import Actor, ActorRef, normalize_message
from persistent_actors._config import JOURNAL, SNAPSHOT_STORE, Settings, load_settings
from persistent_actors._event_stream import EventStream
from persistent_actors._gateway import Gateway, in_event_loop, resolver
from persistent_actors._thespian.common import StopRequested, check_picklable
from persistent_actors._thespian.event_log import GetPlugin, HostedEventLog
from persistent_actors._thespian.guardian import Guardian
from persistent_actors._thespian.loopback import bind_where_advertised
from persistent_actors._thespian.wakeups import fast_wakeup_checks
from persistent_actors.errors import (
    ActorInitializationError,
    AskTimeoutError,
    MessageNotSerializableError,
    PersistentActorsError,
)
from persistent_actors.messages import Kill, PoisonPill
from persistent_actors.query import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_REFRESH_INTERVAL,
    ReadJournal,
    connect_read_journal,
)

__all__ = ["ActorSystem"]

log = logging.getLogger("persistent_actors")

A = TypeVar("A", bound=Actor)

# Every admin port this process used for a multi-process system: a test session sweeps them at
# the end (re-attach and shut down), which also cleans up after a crashed test.
ADMIN_PORTS: list[int] = []

# How long the external side waits in one thespian listen() before re-checking its deadline.
_LISTEN_SLICE = 0.05

_THESPIAN_LOG_DEFS: dict[str, Any] = {
    # A dict, never False: logDefs=False kills every child actor on the multi-process bases
    # (thespian.md section 5). Warnings and errors from actor processes reach stderr.
    "version": 1,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                            "level": "WARNING"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ActorSystem:
    """An actor system: creates actors, hosts the event stream and the persistence plugins.

    Use it as a context manager, or call `shutdown` (also run at interpreter exit). Config is a
    mapping or a TOML path; see the README for the keys. Methods are safe to call from any
    thread.

    Raises:
        ConfigError: a config key is unknown or has a bad value (the message names it).
        PluginError: a journal or snapshot-store plugin cannot start.

    """

    _live: ClassVar[weakref.WeakSet[ActorSystem]] = weakref.WeakSet()
    _latest: ClassVar[weakref.ReferenceType[ActorSystem] | None] = None

    def __init__(self, name: str = "default",
                 config: Mapping[str, Any] | str | os.PathLike[str] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"actor system name must be a non-empty str, got {name!r}")
        self.name = name
        self.settings: Settings = load_settings(config)
        self._lock = threading.RLock()
        self._sinks: dict[str, Callable[[Any], None]] = {}
        self._terminated = False
        self._gateway: Gateway | None = None  # started by the first ask_async
        self._stopping = False
        capabilities: dict[str, Any] = {}
        log_defs: Any = False  # simple base: leave the application's logging alone
        if self.settings.base != "simple":
            port = self.settings.admin_port or _free_port()
            ADMIN_PORTS.append(port)
            capabilities["Admin Port"] = port
            log_defs = _THESPIAN_LOG_DEFS
            # Thespian unpickles whatever reaches an actor's port, so by default every port
            # listens on loopback only; forked actor processes inherit the variable.
            os.environ["THESPIAN_BASE_IPADDR"] = self.settings.bind_address
            bind_where_advertised()
        else:
            fast_wakeup_checks()  # the simple base scans every pending wakeup per message
        self._asys = ThespianActorSystem(self.settings.thespian_base, capabilities,
                                         logDefs=log_defs, transientUnique=True)
        ActorSystem._live.add(self)
        ActorSystem._latest = weakref.ref(self)
        try:
            self._guardian = self._asys.createActor(Guardian)
            reply = self._request(
                self._guardian,
                lambda corr: p.InitSystem(name, self.settings.base, self.settings, corr),
                timeout=60.0, what="starting the actor system")
        except BaseException:
            self.shutdown()
            raise
        if isinstance(reply, p.Failure):
            self.shutdown()
            raise reply.error
        self._info: p.SystemInfo = reply.info
        self.event_stream = EventStream(ActorRef(self._info.event_stream, "eventStream", self))
        if self.settings.journals["default"].spec == "inmem":
            log.warning("actor system %r uses the in-memory journal: events will not survive "
                        "the process (configure [persistence.journal] plugin = \"sqlite\")", name)

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def current(cls) -> ActorSystem:
        """The most recently started system that is still running (for refs without one)."""
        latest = cls._latest() if cls._latest is not None else None
        if latest is None or latest.is_terminated:
            raise PersistentActorsError(
                "no running ActorSystem in this process to send through; create one first")
        return latest

    @property
    def is_terminated(self) -> bool:
        """True once `shutdown` has run."""
        return self._terminated

    def shutdown(self) -> None:
        """Stop every actor and the thespian system; idempotent. No process is left behind."""
        with self._lock:
            if self._terminated:
                return
            self._stopping = True
            gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()  # sends what event loops queued, fails the asks still waiting
        with self._lock:
            if self._terminated:
                return
            self._terminated = True
            ActorSystem._live.discard(self)
            if self.settings.base == "simple":
                # The simple base's shutdown() stops no actor: without this, every plugin
                # actor kept its event-loop thread and its database connections open.
                with contextlib.suppress(Exception):
                    self._asys.tell(self._guardian, ActorExitRequest())
            self._asys.shutdown()

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "terminated" if self._terminated else self.settings.base
        return f"ActorSystem({self.name!r}, {state})"

    # -- actors ------------------------------------------------------------------------------
    def actor_of(self, cls: type[A], *args: Any, name: str | None = None,
                 **kwargs: Any) -> ActorRef:
        """Create an actor of `cls` with ``cls(*args, **kwargs)`` (Akka's ``ActorOf(Props)``).

        Blocks until the actor is constructed. The name must be unique among running actors;
        creating one under the name of an actor that is stopping waits for it to exit.

        Raises:
            ActorInitializationError: the constructor raised, or there is no persistence_id.
            InvalidActorNameError: the name is malformed or taken.
            MessageNotSerializableError: on multiproc-tcp, an argument cannot be pickled.

        """
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"actor_of() needs a subclass of persistent_actors.Actor, got {cls!r}")
        if cls.__module__ == "__main__" and self.settings.base != "simple":
            raise ActorInitializationError(
                f"{cls.__qualname__} is defined in __main__; on the multiproc-tcp base actor "
                "classes must live in an importable module")
        reply = self._request(
            self._guardian, lambda corr: p.CreateActor(cls, args, kwargs, name, corr),
            timeout=60.0, what=f"creating {cls.__qualname__}")
        if isinstance(reply, p.Failure):
            raise reply.error
        ref: ActorRef = reply.ref
        return ActorRef(ref.address, ref.name, self)

    def stop(self, ref: ActorRef) -> None:
        """Stop the actor behind `ref` (its post_stop runs); returns without waiting."""
        self._ensure_running()
        with self._lock:
            self._asys.tell(ref.address, ActorExitRequest())
        self._stop_requested(ref)

    # -- read side -----------------------------------------------------------------------------
    def read_journal(self, plugin_id: str | None = None, *, page_size: int = DEFAULT_PAGE_SIZE,
                     refresh_interval: float = DEFAULT_REFRESH_INTERVAL) -> ReadJournal:
        """A `ReadJournal` over the journal `plugin_id` (the default journal when None).

        A SQLite journal is read directly from its file; the in-memory journal through its
        plugin actor. Events are decoded with the journal's read adapters. Close it when done.

        Raises:
            ConfigError: no journal is configured under `plugin_id`.
            PluginError: the journal plugin supports no queries.

        """
        self._ensure_running()
        return connect_read_journal(self.settings.plugin(JOURNAL, plugin_id),
                                    self._hosted_event_log, page_size=page_size,
                                    refresh_interval=refresh_interval)

    def _hosted_event_log(self, plugin_id: str) -> HostedEventLog:
        reply = self._request(self._guardian, lambda corr: GetPlugin(JOURNAL, plugin_id, corr),
                              timeout=60.0, what=f"starting journal {plugin_id!r}")
        if isinstance(reply, p.Failure):
            raise reply.error
        return HostedEventLog.connect(self._request, reply.address)

    def plugin_command(self, kind: str, message: Any, plugin_id: str | None = None,
                       timeout: float = 30.0) -> Any:
        """Send `message` to a plugin's ``receive_plugin_internal`` and return its answer.

        `kind` is ``"journal"`` or ``"snapshot_store"``; `plugin_id` names a configured plugin
        (the default one when None). The persistence test kit is built on this.

        Raises:
            ConfigError: no such plugin is configured.
            PluginError: the plugin does not accept the command.

        """
        if kind not in (JOURNAL, SNAPSHOT_STORE):
            raise ValueError(f"plugin kind must be {JOURNAL!r} or {SNAPSHOT_STORE!r}, got {kind!r}")
        reply = self._request(self._guardian, lambda corr: GetPlugin(kind, plugin_id, corr),
                              timeout=60.0, what=f"starting {kind} {plugin_id!r}")
        if isinstance(reply, p.Failure):
            raise reply.error
        result = self._request(reply.address, lambda corr: p.PluginCommand(message, corr),
                               timeout=timeout, what=f"running a {kind} plugin command")
        if isinstance(result, p.Failure):
            raise result.error
        return result

    # -- external messaging (used by ActorRef) ------------------------------------------------
    def tell_external(self, ref: ActorRef, message: Any, sender: ActorRef | None) -> None:
        """Send from outside any actor (see `ActorRef.tell`)."""
        wrapped = ref._wrap_reply(message)  # noqa: SLF001
        if wrapped is message:
            wrapped = p.Envelope(message, sender)
        self._send(ref.address, wrapped)
        if isinstance(message, Kill | PoisonPill):
            self._stop_requested(ref)

    def _stop_requested(self, ref: ActorRef) -> None:
        # See StopRequested: lets an actor_of under the same name, sent right after, wait for
        # the old actor to exit instead of failing with "not unique".
        if ref.address is not None:
            self._send(self._guardian, StopRequested(ref.address))

    def ask_external(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` and wait for the reply (see `ActorRef.ask`)."""
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        box: list[Any] = []
        corr = uuid.uuid4().hex
        with self._lock:
            self._sinks[corr] = box.append
        try:
            self._send(ref.address, p.Envelope(normalize_message(message), None, corr))
            if not self._pump(time.monotonic() + timeout, lambda: bool(box)):
                raise AskTimeoutError(
                    f"no reply from {ref.name} to {type(message).__name__} within {timeout}s "
                    "(the actor may be dead, busy, or not replying to self.sender)")
        finally:
            with self._lock:
                self._sinks.pop(corr, None)
        return box[0]

    async def ask_external_async(self, ref: ActorRef, message: Any, timeout: float) -> Any:
        """Send `message` and await the reply without blocking the loop (see `ActorRef.ask_async`).

        The gateway thread sends it and routes the reply back by correlation id.
        """
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"ask timeout must be a positive number of seconds, got {timeout!r}")
        self._ensure_running()
        corr = uuid.uuid4().hex
        envelope = p.Envelope(normalize_message(message), None, corr)
        if self.settings.base != "simple":
            check_picklable(envelope, ref.address)  # raise here, in the caller
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        on_reply, on_error = resolver(future)
        gateway = self._ensure_gateway()
        gateway.ask(corr, ref.address, envelope, on_reply, on_error)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise AskTimeoutError(
                f"no reply from {ref.name} to {type(message).__name__} within {timeout}s "
                "(the actor may be dead, busy, or not replying to self.sender)") from None
        finally:
            gateway.forget(corr)

    def _ensure_gateway(self) -> Gateway:
        gateway = self._gateway
        if gateway is not None:
            return gateway  # without the lock: a listen or an actor run may hold it for long
        with self._lock:
            if self._stopping or self._terminated:
                raise PersistentActorsError(f"actor system {self.name!r} has been shut down")
            if self._gateway is None:
                self._gateway = Gateway(self)
            return self._gateway

    def _add_sink(self, correlation_id: str, sink: Callable[[Any], None]) -> None:
        with self._lock:
            self._sinks[correlation_id] = sink

    def _drop_sink(self, correlation_id: str) -> None:
        with self._lock:
            self._sinks.pop(correlation_id, None)

    def _listen_and_route(self, timeout: float) -> bool:
        """Receive at most one message for the outside and route it; True if one came."""
        with self._lock:
            self._ensure_running()
            incoming = self._asys.listen(timeout)
            if incoming is not None:
                self._route(incoming)
        return incoming is not None

    def _register_sink(self, correlation_id: str) -> deque[Any]:
        queue: deque[Any] = deque()
        with self._lock:
            self._sinks[correlation_id] = queue.append
        return queue

    def _tell_for_sink(self, ref: ActorRef, message: Any, correlation_id: str) -> None:
        self._send(ref.address, p.Envelope(message, None, correlation_id))

    def _send(self, address: Any, message: Any) -> None:
        self._ensure_running()
        if self.settings.base != "simple":
            check_picklable(message, address)
        gateway = self._gateway
        if gateway is not None and in_event_loop():
            # An event loop must not wait for thespian (or for our lock, held during listens):
            # the gateway sends for it, in the order this thread queued its operations.
            gateway.tell(address, message)
            return
        self._send_direct(address, message)

    def _send_direct(self, address: Any, message: Any) -> None:
        self._ensure_running()
        with self._lock:
            try:
                self._asys.tell(address, message)
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                raise MessageNotSerializableError(
                    f"message {message!r} cannot be sent: {e}") from e

    def _pump(self, deadline: float, done: Callable[[], bool]) -> bool:
        """Receive and route external replies until `done()` or the deadline; return done()."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._lock:
                self._ensure_running()
                # listen(0) first: the simple base's listen(t) sleeps until the next due wakeup
                # within t even when a reply is already waiting (it checks for replies only
                # between deliveries), which with many live timers cost most of a slice.
                incoming = self._asys.listen(0)
                if incoming is None:
                    incoming = self._asys.listen(min(remaining, _LISTEN_SLICE))
                if incoming is not None:
                    self._route(incoming)
            if incoming is None and self.settings.base == "simple":
                # The simple base runs actors only inside our calls and listen() returns at
                # once when they are idle; yield so other threads (and time) move on.
                time.sleep(0.001)
        return True

    def _route(self, incoming: Any) -> None:
        if isinstance(incoming, p.Reply):
            sink = self._sinks.get(incoming.correlation_id)
            if sink is not None:
                sink(incoming.message)
                return
        log.debug("dropped unsolicited message to the outside: %r", incoming)

    def _request(self, target: Any, build: Callable[[str], Any], timeout: float,
                 what: str, cancel: threading.Event | None = None) -> Any:
        # `cancel`: a read-side worker thread gives up early (returns None) when it is set.
        box: list[Any] = []
        corr = uuid.uuid4().hex
        with self._lock:
            self._sinks[corr] = box.append
        try:
            self._send(target, build(corr))
            if not self._pump(time.monotonic() + timeout,
                              lambda: bool(box) or (cancel is not None and cancel.is_set())):
                raise AskTimeoutError(f"timed out after {timeout}s {what}")
        finally:
            with self._lock:
                self._sinks.pop(corr, None)
        return box[0] if box else None

    def _ensure_running(self) -> None:
        if self._terminated:
            raise PersistentActorsError(f"actor system {self.name!r} has been shut down")


@atexit.register
def _shutdown_all() -> None:
    for system in list(ActorSystem._live):  # noqa: SLF001
        try:
            system.shutdown()
        except Exception:
            log.debug("shutdown at exit failed", exc_info=True)
