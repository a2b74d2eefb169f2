"""`Guardian`: the top-level actor that owns everything else in one actor system.

It creates the event stream and the plugin actors, creates user actors (as children, so it
sees every one of them exit), and keeps the table of actor names. Identity by name is kept
here rather than with thespian's globalName, because a stopped actor's globalName keeps
resolving to the dead actor for a while on the TCP base. A creation under the name of an actor
that is stopping waits until it has exited: that is what makes the seed's kill-and-respawn
deterministic.

Persistence ids are kept the same way: within one system, a persistence id has at most one live
actor per journal. A second actor claiming it while the first runs is refused
(`PersistenceIdInUseError` from ``actor_of``); while the first is stopping, the second waits
until it exited, as a name does. An actor recovers only once it holds its persistence id.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import ActorExitRequest, ChildActorExited, PoisonMessage

from persistent_actors import _protocol as p
from persistent_actors._actor import Actor, ActorRef
from persistent_actors._config import JOURNAL, SNAPSHOT_STORE, Settings
from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._thespian.common import StopRequested, log, portable_error
from persistent_actors._thespian.event_log import GetPlugin, PluginRef
from persistent_actors._thespian.event_stream import EventStreamActor
from persistent_actors._thespian.host import EntityHost
from persistent_actors._thespian.plugin_host import PluginHost
from persistent_actors.errors import (
    ActorInitializationError,
    InvalidActorNameError,
    PersistenceIdInUseError,
)

PluginKey = tuple[str, str]  # (kind, plugin id as configured)
Claim = tuple[str, str]  # (journal plugin id, persistence id)

_RESERVED = object()  # name taken by an actor still being created
_EVENT_STREAM: PluginKey = ("event_stream", "")


def _key(address: Any) -> Any:
    # Thespian addresses are unhashable; their addressDetails are hashable and compare alike.
    return getattr(address, "addressDetails", address)


class Guardian(ThespianActor):  # type: ignore[misc]
    """Root of one actor system; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._info: p.SystemInfo | None = None
        self._settings = Settings()
        self._plugins: dict[PluginKey, Any] = {}  # key -> plugin actor address
        self._plugin_errors: dict[PluginKey, BaseException] = {}
        self._plugin_ready: set[PluginKey] = set()
        self._waiters: list[tuple[set[PluginKey], Callable[[BaseException | None], None]]] = []
        self._names: dict[str, Any] = {}  # actor name -> host address (or _RESERVED)
        self._by_address: dict[Any, str] = {}
        self._stopping: set[Any] = set()
        self._deferred: dict[str, list[tuple[p.CreateActor, Any]]] = {}
        self._starting: dict[int, tuple[p.CreateActor, Any, str]] = {}
        self._host_ids = itertools.count(1)
        self._anonymous = itertools.count()
        self._event_stream: Any = None
        # Persistence ids: the live host holding each, and started hosts waiting for one.
        self._claims: dict[Claim, Any] = {}  # claim -> host key
        self._claim_of: dict[Any, Claim] = {}  # host key -> claim
        self._claim_waiting: dict[Claim, list[tuple[int, Any, p.CreateActor, Any, str]]] = {}
        # Recovery permits: hosts recovering now, and hosts waiting to (in request order).
        self._recovering: set[Any] = set()
        self._recovery_queue: deque[tuple[Any, Any]] = deque()  # (host key, host address)
        self._queued: set[Any] = set()  # keys in the queue; an exited host's entry is skipped

    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        match message:
            case p.InitSystem():
                self._init(message, sender)
            case p.CreateActor():
                self._create(message, sender)
            case p.EntityStarted(host_id, persistence_id):
                self._entity_started(host_id, sender, persistence_id)
            case p.StartRecovery():
                self._queue_recovery(sender)
            case p.RecoveryDone():
                self._recovering.discard(_key(sender))
                self._grant_recoveries()
            case p.EntityFailed(host_id, error):
                self._entity_failed(host_id, error)
            case p.EntityStopping():
                self._stopping.add(_key(sender))
            case StopRequested(address):
                # Only a live named actor: an address that already exited must not linger.
                if _key(address) in self._by_address:
                    self._stopping.add(_key(address))
            case p.EventStreamStarted():
                self._event_stream = sender
                self._plugin_ready.add(_EVENT_STREAM)
                self._wake_waiters()
            case p.PluginStarted(plugin_id, kind):
                # The reply's sender is the plugin's final address (see EntityStarted).
                self._plugins[(kind, plugin_id)] = sender
                self._plugin_ready.add((kind, plugin_id))
                self._wake_waiters()
            case p.PluginFailed(plugin_id, kind, error):
                self._plugins.pop((kind, plugin_id), None)
                self._plugin_errors[(kind, plugin_id)] = error
                self._wake_waiters()
            case GetPlugin():
                self._get_plugin(message, sender)
            case ChildActorExited():
                self._child_exited(message.childAddress)
            case PoisonMessage():
                log.warning("guardian: a message could not be delivered: %s", message.details)
            case ActorExitRequest():
                pass

    # -- system start ------------------------------------------------------------------------
    def _init(self, init: p.InitSystem, requester: Any) -> None:
        self._settings = init.settings
        self.send(self.createActor(EventStreamActor), p.StartEventStream())
        keys = {_EVENT_STREAM, self._ensure_plugin(JOURNAL, None),
                self._ensure_plugin(SNAPSHOT_STORE, None)}

        def done(error: BaseException | None) -> None:
            if error is not None:
                self.send(requester, p.Reply(init.correlation_id, p.Failure(error)))
                return
            self._info = p.SystemInfo(init.name, init.base, self.myAddress, self._event_stream,
                                      self._settings.recovery_event_timeout,
                                      self._settings.internal_stash_capacity,
                                      replay_filter=self._settings.replay_filter)
            self.send(requester, p.Reply(init.correlation_id, p.SystemReady(self._info)))

        self._when_ready(keys, done)

    def _ensure_plugin(self, kind: str, plugin_id: str | None) -> PluginKey:
        config = self._settings.plugin(kind, plugin_id)
        key = (kind, config.plugin_id)
        if key not in self._plugins:
            self._plugin_errors.pop(key, None)
            self._plugin_ready.discard(key)
            address = self.createActor(PluginHost)
            self._plugins[key] = address
            self.send(address, p.StartPlugin(kind, config.plugin_id, config.spec, config.settings))
        return key

    def _get_plugin(self, request: GetPlugin, requester: Any) -> None:
        """Answer the facade with a plugin actor's address (the read side queries it)."""

        def reply(message: Any) -> None:
            self.send(requester, p.Reply(request.correlation_id, message))

        try:
            key = self._ensure_plugin(request.kind, request.plugin_id)
        except Exception as e:  # noqa: BLE001 - a config error names the plugin id
            reply(p.Failure(portable_error(e)))
            return

        def ready(error: BaseException | None) -> None:
            reply(p.Failure(error) if error is not None else PluginRef(self._plugins[key]))

        self._when_ready({key}, ready)

    def _when_ready(self, keys: set[PluginKey],
                    callback: Callable[[BaseException | None], None]) -> None:
        self._waiters.append((keys, callback))
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        # A waiter is answered only once each of its keys is settled (ready or failed), not at
        # the first failure. Why: thespian registers a child with its parent only when the
        # child reports ready; a system whose start failed was shut down at once, while a
        # sibling plugin host was still starting, and that orphaned host process (with its
        # loop thread) lived on forever. Its PluginStarted/PluginFailed arrives after its
        # ready report (same sender, FIFO), so once it is settled the shutdown reaches it.
        waiting = []
        for keys, callback in self._waiters:
            if not all(k in self._plugin_ready or k in self._plugin_errors for k in keys):
                waiting.append((keys, callback))
                continue
            errors = [self._plugin_errors[k] for k in keys if k in self._plugin_errors]
            callback(errors[0] if errors else None)
        self._waiters = waiting

    # -- user actors -------------------------------------------------------------------------
    def _create(self, request: p.CreateActor, requester: Any) -> None:
        def fail(error: BaseException) -> None:
            self.send(requester, p.Reply(request.correlation_id,
                                         p.Failure(portable_error(error))))

        name = request.name
        if name is None:
            name = f"$a{next(self._anonymous)}"
        elif not isinstance(name, str) or not name or "/" in name or name.startswith("$"):
            fail(InvalidActorNameError(
                f"invalid actor name {name!r}: expected a non-empty str without '/' that does "
                "not start with '$'"))
            return
        current = self._names.get(name)
        if current is not None:
            if current is not _RESERVED and _key(current) in self._stopping:
                self._deferred.setdefault(name, []).append((request, requester))
                return
            fail(InvalidActorNameError(
                f"actor name {name!r} is not unique: an actor with that name is running"))
            return
        cls = request.cls
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            fail(ActorInitializationError(
                f"actor_of() needs a subclass of persistent_actors.Actor, got {cls!r}"))
            return
        keys: set[PluginKey] = set()
        if issubclass(cls, PersistentActor):
            try:
                keys = {self._ensure_plugin(JOURNAL, cls.journal_plugin_id),
                        self._ensure_plugin(SNAPSHOT_STORE, cls.snapshot_plugin_id)}
            except Exception as e:  # noqa: BLE001 - a config error names the plugin id
                fail(e)
                return
        self._names[name] = _RESERVED

        def plugins_ready(error: BaseException | None) -> None:
            if error is not None:
                del self._names[name]
                fail(error)
                self._run_deferred(name)
                return
            self._start_entity(request, requester, name, keys)

        self._when_ready(keys, plugins_ready)

    def _start_entity(self, request: p.CreateActor, requester: Any, name: str,
                      keys: set[PluginKey]) -> None:
        assert self._info is not None  # noqa: S101
        journal = snapshots = None
        for key in keys:
            if key[0] == JOURNAL:
                journal = self._plugins[key]
            else:
                snapshots = self._plugins[key]
        host_id = next(self._host_ids)
        self._starting[host_id] = (request, requester, name)
        adapters = None
        if journal is not None:
            adapters = self._settings.plugin(JOURNAL, request.cls.journal_plugin_id).adapters
        self.send(self.createActor(EntityHost), p.StartEntity(
            request.cls, request.args, request.kwargs, name, self._info, journal, snapshots,
            host_id, adapters))

    def _entity_started(self, host_id: int, host: Any, persistence_id: str | None) -> None:
        started = self._starting.pop(host_id, None)
        if started is None:
            return
        request, requester, name = started
        if persistence_id is not None and not self._claim(host_id, host, persistence_id,
                                                          request, requester, name):
            return
        self._names[name] = host
        self._by_address[_key(host)] = name
        self.send(requester, p.Reply(request.correlation_id, p.ActorCreated(ActorRef(host, name))))

    def _claim(self, host_id: int, host: Any, persistence_id: str,  # noqa: PLR0917
               request: p.CreateActor, requester: Any, name: str) -> bool:
        """Give `host` its persistence id; False if it must wait for it or was refused."""
        journal_id = self._settings.plugin(JOURNAL, request.cls.journal_plugin_id).plugin_id
        claim = (journal_id, persistence_id)
        holder = self._claims.get(claim)
        if holder is None:
            self._claims[claim] = _key(host)
            self._claim_of[_key(host)] = claim
            self._grant_recoveries()
            return True
        if holder in self._stopping:
            self._claim_waiting.setdefault(claim, []).append(
                (host_id, host, request, requester, name))
            return False
        holder_name = self._by_address.get(holder, "an actor being created")
        error = PersistenceIdInUseError(
            f"cannot start {request.cls.__qualname__} as {name!r}: persistence id "
            f"{persistence_id!r} is in use by the live actor {holder_name!r} on journal "
            f"{journal_id!r}; one persistence id has at most one live actor per journal "
            "(stop the other first)")
        self.send(host, ActorExitRequest())
        if self._names.get(name) is _RESERVED:
            del self._names[name]
        self.send(requester, p.Reply(request.correlation_id, p.Failure(error)))
        self._run_deferred(name)
        return False

    def _release_claim(self, key: Any) -> None:
        claim = self._claim_of.pop(key, None)
        if claim is None or self._claims.get(claim) != key:
            return
        del self._claims[claim]
        waiting = self._claim_waiting.pop(claim, [])
        for host_id, host, request, requester, name in waiting:
            # Each waiter is started again: the first takes the id, the others wait on it.
            self._starting[host_id] = (request, requester, name)
            self._entity_started(host_id, host, claim[1])

    def _queue_recovery(self, host: Any) -> None:
        key = _key(host)
        if key not in self._recovering and key not in self._queued:
            self._queued.add(key)
            self._recovery_queue.append((key, host))
        self._grant_recoveries()

    def _grant_recoveries(self) -> None:
        """Let queued hosts recover, in request order, once they hold their persistence id.

        At most ``[persistence] max_concurrent_recoveries`` recover at once (Akka's
        RecoveryPermitter); a host returns its permit when recovery ended, or by exiting.
        """
        blocked: list[tuple[Any, Any]] = []
        limit = self._settings.max_concurrent_recoveries
        while self._recovery_queue and len(self._recovering) < limit:
            key, host = self._recovery_queue.popleft()
            if key not in self._queued:
                continue  # the host exited while it waited
            if key not in self._claim_of:
                blocked.append((key, host))  # its claim is pending (or it was refused)
                continue
            self._queued.discard(key)
            self._recovering.add(key)
            self.send(host, p.RecoveryPermitted())
        # Few and short-lived (a claim is settled within a message or two): back in front.
        self._recovery_queue.extendleft(reversed(blocked))

    def _entity_failed(self, host_id: int, error: BaseException) -> None:
        started = self._starting.pop(host_id, None)
        if started is None:
            return
        request, requester, name = started
        # The failed host stops by itself; its name was never published, so free it now.
        if self._names.get(name) is _RESERVED:
            del self._names[name]
        self.send(requester, p.Reply(request.correlation_id, p.Failure(error)))
        self._run_deferred(name)

    def _child_exited(self, address: Any) -> None:
        # Thespian's TCP base may report one exit twice: everything here is idempotent.
        key = _key(address)
        self._stopping.discard(key)
        self._recovering.discard(key)
        self._queued.discard(key)
        for claim, waiting in list(self._claim_waiting.items()):
            self._claim_waiting[claim] = [w for w in waiting if _key(w[1]) != key]
        self._release_claim(key)
        self._grant_recoveries()
        name = self._by_address.pop(key, None)
        if name is not None and self._names.get(name) == address:
            del self._names[name]
            self._run_deferred(name)
        for plugin_key, plugin in list(self._plugins.items()):
            if plugin == address:
                del self._plugins[plugin_key]
                self._plugin_ready.discard(plugin_key)

    def _run_deferred(self, name: str) -> None:
        waiting = self._deferred.pop(name, [])
        for request, requester in waiting:
            self._create(request, requester)
