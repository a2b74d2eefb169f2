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

The event stream's and the plugins' processes are started again when they die while the system
runs (at most `MAX_CRASH_RESTARTS` times within `CRASH_RESTART_WINDOW`, as actors' are), and
every holder of the dead address is told the new one (`p.PluginMoved`, `_announce_if_replacing`).
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from thespian.actors import Actor as ThespianActor
from thespian.actors import (
    ActorAddress,
    ActorExitRequest,
    ChildActorExited,
    DeadEnvelope,
    PoisonMessage,
    WakeupMessage,
)

from persistent_actors import _protocol as p
from persistent_actors._actor import (
    Actor,
    AskRef,
    guardian_address,
    outbound_form,
    ref_of_address,
)
from persistent_actors._config import JOURNAL, SNAPSHOT_STORE, PluginConfig, Settings
from persistent_actors._persistent_actor import PersistentActor
from persistent_actors._thespian.common import log, portable_error
from persistent_actors._thespian.entity_host import EntityHost
from persistent_actors._thespian.event_stream import EventStreamActor, Subscriptions
from persistent_actors._thespian.frames import FrameBatching, batched
from persistent_actors._thespian.host import ActorHost
from persistent_actors._thespian.lifetime import (
    OWNER_POLL_INTERVAL,
    OwnerProcess,
    reap_session_later,
    runtime_processes,
)
from persistent_actors._thespian.moved import Move
from persistent_actors._thespian.moved import address_key as _key
from persistent_actors._thespian.plugin_host import PluginHost
from persistent_actors.errors import (
    ActorInitializationError,
    EntityUnavailableError,
    InvalidActorNameError,
    PersistenceIdInUseError,
    PluginError,
)
from persistent_actors.messages import Terminated

PluginKey = tuple[str, str]  # (kind, plugin id as configured)
Claim = tuple[str, str]  # (journal plugin id, persistence id)

_RESERVED = object()  # name taken by an actor still being created
_EVENT_STREAM: PluginKey = ("event_stream", "")

# An actor whose process dies is restarted at most this many times within this many seconds;
# then it stays dead (a process killed over and over, e.g. by the OOM killer, is not retried
# for ever).
MAX_CRASH_RESTARTS = 10
CRASH_RESTART_WINDOW = 60.0
# Seconds an unannounced exit waits for the host's ActorStopping before it counts as a crash
# (thespian does not order its ChildActorExited with the host's own last messages).
CRASH_GRACE = 0.5
# Times in a row a shared host process may die before it reports itself started: then the
# actors waiting for it fail to start (a host that cannot start is not retried for ever).
POOL_START_ATTEMPTS = 3
# Seconds after its creation at which a shared host that has not reported itself started is
# logged (it neither started nor died: a hung process, which nothing else would report while
# the actor_of calls placed there wait out their timeout).
SLOW_HOST_START = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class _StartRuntime:
    """To itself: go on with the system's start (`Guardian._init`)."""

    init: p.InitSystem
    requester: Any


@dataclasses.dataclass(frozen=True, slots=True)
class _CrashCheck:
    key: Any


@dataclasses.dataclass(frozen=True, slots=True)
class _StartCheck:
    """A check, some seconds on, that the host created for pool `index` has started."""

    index: int
    created: Any


def _given_up() -> str:
    """What is said of a process that died too often to be started again (`_may_restart`)."""
    # This death included: the restarts within the window were all used.
    return (f"died {MAX_CRASH_RESTARTS + 1} times within {CRASH_RESTART_WINDOW:.0f}s; it is not "
            "restarted again")



def _start_plugin(kind: str, config: PluginConfig) -> p.StartPlugin:
    """How to start the configured plugin `config` (by its plugin process, or a host)."""
    return p.StartPlugin(kind, config.plugin_id, config.spec, config.settings)

class Guardian(FrameBatching, ThespianActor):  # type: ignore[misc]
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
        # Runtime processes started again after their death (plugins, the event stream; not
        # during shutdown): the address each replacement stands in for until it reports
        # started, every dead address's successor so far (`_key(dead)` -> (dead, successor)),
        # and those not started again (they died too often): `_ensure_plugin` fails with it.
        self._replacing: dict[PluginKey, Any] = {}
        self._successors: dict[Any, tuple[Any, Any]] = {}
        self._given_up: dict[PluginKey, BaseException] = {}
        # The event stream's process (as created), what was sent to the event stream while
        # none ran (its process being restarted), the addresses of its dead predecessors, and
        # a copy of its subscriptions (multiproc-tcp: it reports each change), which its
        # successor starts with.
        self._event_stream_process: Any = None
        self._stream_waiting: list[Any] = []
        self._dead_streams: set[Any] = set()
        self._subscriptions = Subscriptions()
        # The facade listens for moves (`p.PluginMoved`) under its InitSystem's correlation id.
        self._init_id: str | None = None
        # What each actor in a process of its own was started with, until it reports started
        # (a move meanwhile is sent to it then: see `_catch_up`).
        self._start_records: dict[int, p.StartActor] = {}
        # Crash restarts (a host process died without being stopped; multiproc-tcp only).
        self._outside: Any = None  # the facade's endpoint: where asks came from
        self._requests: dict[str, p.CreateActor] = {}  # name -> how it was created
        self._crashes: dict[str, list[float]] = {}  # name -> times of its crash restarts
        self._restarting: dict[Any, str] = {}  # dead host key -> name, until restarted
        self._held: dict[str, list[Any]] = {}  # name -> dead letters for its next incarnation
        self._redirects: dict[Any, Any] = {}  # dead host key -> its name's current address
        self._suspects: dict[Any, str] = {}  # exited unannounced: host key -> name (grace)
        self._exiting = False
        # DeathWatch: per watched actor's name, its watchers and the ref each watched. By name,
        # not address: an actor restarted after its process died keeps its name and watchers.
        self._watchers: dict[str, dict[Any, tuple[Any, str | None]]] = {}
        # ... and per watcher's name, what it watches: dropped when the watcher stops.
        self._watching: dict[str, set[tuple[str, Any]]] = {}
        # Persistence ids: the live host holding each, and started hosts waiting for one.
        self._claims: dict[Claim, Any] = {}  # claim -> host key
        self._claim_of: dict[Any, Claim] = {}  # host key -> claim
        self._claim_waiting: dict[Claim, list[tuple[int, Any, p.CreateActor, Any, str]]] = {}
        # Recovery permits: hosts recovering now, and hosts waiting to (in request order).
        self._recovering: set[Any] = set()
        self._recovery_queue: deque[tuple[Any, Any]] = deque()  # (host key, host address)
        self._queued: set[Any] = set()  # keys in the queue; an exited host's entry is skipped
        # Entity hosts being started: request correlation id -> (requester, hosts so far).
        self._entity_hosts: dict[str, tuple[Any, list[Any]]] = {}
        # Live entity hosts (host key -> how it was started), starts awaiting their host
        # (correlation id -> start; and, for a crash restart, the dead host's key), and the
        # messages held for a dead host until its successor runs (dead host key -> letters).
        self._entity_starts: dict[str, tuple[p.StartEntityHost, Any]] = {}
        self._entity_live: dict[Any, tuple[Any, p.StartEntityHost]] = {}  # key -> (host, start)
        self._entity_held: dict[Any, list[Any]] = {}
        # Entity hosts not restarted again (they died too often): their messages fail at once.
        self._entity_dead: dict[Any, EntityUnavailableError] = {}
        self._entity_suspects: dict[Any, p.StartEntityHost] = {}  # exited unannounced (grace)
        # Shared host processes ([actor_system] host_processes, multiproc-tcp): each index's
        # final address (None until it started), index by host key, starts waiting for a host,
        # actors per index (placement), and the index and host key of each live cell.
        self._pool: list[Any] = []
        self._pool_index: dict[Any, int] = {}
        self._pool_waiting: dict[int, list[tuple[int, p.StartActor]]] = {}
        self._pool_load: list[int] = []
        self._cell_index: dict[int, int] = {}
        # Hosts created but not started yet (index -> the address createActor gave, which
        # thespian resolves to the final one) and how often each index's host died before it
        # reported itself started, in a row (see `_pool_died_early`).
        self._pool_creating: dict[int, Any] = {}
        self._pool_records: dict[int, p.StartSharedHost] = {}  # each one's start (`_catch_up`)
        self._pool_early_deaths: dict[int, int] = {}

    @batched
    def receiveMessage(self, message: Any, sender: Any) -> None:  # noqa: N802 - thespian API
        self._on_message(message, sender)

    def send(self, targetAddr: Any, msg: Any) -> None:  # noqa: N803 - thespian's names
        """Thespian's send; to a shared host's cell (a `CellAddress`) in its `CellEnvelope`."""
        if type(targetAddr) is p.CellAddress:
            super().send(targetAddr.host, p.CellEnvelope(targetAddr.cell, msg))
            return
        super().send(targetAddr, msg)

    def _on_message(self, message: Any, sender: Any) -> None:
        match message:
            case p.FromCell(cell, inner):
                # A shared host's actor: keyed by its cell as a process is by its address.
                self._on_message(inner, p.CellAddress(sender, cell))
            case p.CellExited():
                # A cell exits only after it stopped: never a crash.
                self._stopping.add(_key(sender))
                self._cell_exited(sender)
                self._child_exited(sender)
            case p.SharedHostStarted(index):
                self._pool_started(index, sender)
            case p.InitSystem():
                self._init(message, sender)
            case _StartRuntime(init, requester):
                self._start_runtime(init, requester)
            case p.CreateActor():
                self._create(message, sender)
            case p.ActorStarted(host_id, persistence_id):
                self._actor_started(host_id, sender, persistence_id)
            case p.StartRecovery():
                self._queue_recovery(sender)
            case p.RecoveryDone():
                self._recovering.discard(_key(sender))
                self._grant_recoveries()
            case p.ActorFailed(host_id, error):
                self._actor_failed(host_id, error)
            case p.ActorStopping():
                key = _key(sender)
                if key in self._suspects:  # its exit overtook this: a normal stop after all
                    self._exited(self._suspects.pop(key))
                else:
                    self._stopping.add(key)
            case p.Watch(address, watched, watcher):
                self._watch(address, watched, watcher)
            case p.Unwatch(address, watcher):
                self._unwatch(address, watcher)
            case p.StopRequested(address):
                # A ref to a crashed incarnation stops the current one (it gets the stop too).
                address = self._current(address)
                # Only a live named actor: an address that already exited must not linger.
                if _key(address) in self._by_address:
                    self._stopping.add(_key(address))
            case p.EventStreamStarted():
                self._event_stream_started(sender)
            case p.PluginStarted(plugin_id, kind):
                # The reply's sender is the plugin's final address (see ActorStarted).
                self._plugins[(kind, plugin_id)] = sender
                self._plugin_ready.add((kind, plugin_id))
                self._announce_if_replacing((kind, plugin_id), sender)
                self._wake_waiters()
            case p.Subscribe(subscriber, cls):  # the event stream's copy (`_start_event_stream`)
                self._subscriptions.subscribe(subscriber, cls)
            case p.Unsubscribe(subscriber, cls):
                self._subscriptions.unsubscribe(subscriber, cls)
            case p.PluginFailed(plugin_id, kind, error):
                self._plugins.pop((kind, plugin_id), None)
                self._plugin_errors[(kind, plugin_id)] = error
                self._wake_waiters()
            case p.GetPlugin():
                self._get_plugin(message, sender)
            case p.StartEntityHosts():
                self._start_entity_hosts(message, sender)
            case p.EntityHostStarted(correlation_id):
                self._entity_host_started(correlation_id, sender)
            case p.CurrentAddress(address, correlation_id):
                self.send(sender, p.Reply(correlation_id, self._current(address)))
            case ChildActorExited():
                self._child_exited(message.childAddress)
            case DeadEnvelope(deadMessage=p.Batch() as batch):
                # A frame of several messages (frames.py) to a dead actor: each is a dead letter.
                for item in batch.messages:
                    self._dead_letter(self._with_sender(
                        DeadEnvelope(message.deadAddress, item), sender))
            case DeadEnvelope():
                self._dead_letter(self._with_sender(message, sender))
            case WakeupMessage(payload=OwnerProcess() as owner):
                self._watch_owner(owner)
            case WakeupMessage(payload=_CrashCheck(key)) if key in self._entity_suspects:
                start = self._entity_suspects.pop(key)
                if key in self._stopping or self._exiting:  # it stopped: the system shuts down
                    self._stopping.discard(key)
                    self._entity_held.pop(key, None)
                else:
                    self._restart_entity_host(key, start)
            case WakeupMessage(payload=_StartCheck(index, created)):
                self._check_started(index, created)
            case WakeupMessage(payload=_CrashCheck(key)) if key in self._suspects:
                name = self._suspects.pop(key)
                if not self._restart_crashed(name, key):
                    self._exited(name)
            case PoisonMessage():
                log.warning("guardian: a message could not be delivered: %s", message.details)
            case ActorExitRequest():
                self._exiting = True  # the system shuts down: children exit, none restarts

    # -- system start ------------------------------------------------------------------------
    def _init(self, init: p.InitSystem, requester: Any) -> None:
        self._settings = init.settings
        self._outside = requester
        self._init_id = init.correlation_id
        # Every dead letter comes here first: those for a crashed actor are held for its next
        # incarnation; the rest go on to the event stream, which publishes them.
        self.handleDeadLetters(startHandling=True)
        if init.owner is not None:
            self._watch_owner(init.owner)
        if init.started_id is not None:
            self.send(requester, p.Reply(init.started_id, p.RuntimeStarted(
                runtime_processes(), os.getsid(0))))
            # The plugins' processes are forked in the next turn: the report leaves first, so
            # that the facade watches the guardian while they are forked too (12-16 ms of a
            # 50 ms start, measured).
            self.send(self.myAddress, _StartRuntime(init, requester))
            return
        self._start_runtime(init, requester)

    def _start_runtime(self, init: p.InitSystem, requester: Any) -> None:
        """Start the event stream and the default plugins; answer `SystemReady` once they run."""
        self._start_event_stream()
        keys = {_EVENT_STREAM, self._ensure_plugin(JOURNAL, None),
                self._ensure_plugin(SNAPSHOT_STORE, None)}

        def done(error: BaseException | None) -> None:
            if error is not None:
                self.send(requester, p.Reply(init.correlation_id, p.Failure(error)))
                return
            self._info = p.SystemInfo(init.name, init.base, self.myAddress, self._event_stream,
                                      self._settings.recovery_event_timeout,
                                      self._settings.internal_stash_capacity,
                                      replay_filter=self._settings.replay_filter,
                                      session_id=None if init.owner is None else os.getsid(0))
            self.send(requester, p.Reply(init.correlation_id, p.SystemReady(self._info)))

        self._when_ready(keys, done)

    def _watch_owner(self, owner: OwnerProcess) -> None:
        """Shut the whole system down once the application process is gone (lifetime.py)."""
        if owner.is_alive():
            self.wakeupAfter(datetime.timedelta(seconds=OWNER_POLL_INTERVAL), payload=owner)
            return
        log.warning("guardian: the application process %d is gone; shutting the actor system "
                    "down", owner.pid)
        reap_session_later()  # what the shutdown cannot stop (a handler stuck) is killed
        self.actorSystemShutdown()

    def _ensure_plugin(self, kind: str, plugin_id: str | None) -> PluginKey:
        config = self._settings.plugin(kind, plugin_id)
        key = (kind, config.plugin_id)
        given_up = self._given_up.get(key)
        if given_up is not None:  # its process died too often: whoever needs it fails
            self._plugin_errors[key] = given_up
            return key
        if key not in self._plugins:
            self._plugin_errors.pop(key, None)
            self._plugin_ready.discard(key)
            address = self.createActor(PluginHost)
            self._plugins[key] = address
            self.send(address, _start_plugin(kind, config))
        return key

    def _get_plugin(self, request: p.GetPlugin, requester: Any) -> None:
        """Answer the facade with a plugin actor's address (the read side queries it)."""

        def reply(message: Any) -> None:
            self.send(requester, p.Reply(request.correlation_id, message))

        try:
            key = self._ensure_plugin(request.kind, request.plugin_id)
        except Exception as e:  # noqa: BLE001 - a config error names the plugin id
            reply(p.Failure(portable_error(e)))
            return

        def ready(error: BaseException | None) -> None:
            reply(p.Failure(error) if error is not None else p.PluginRef(self._plugins[key]))

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

    # -- the runtime's own processes: started again after their death -------------------------
    def _start_event_stream(self) -> None:
        """Create the event stream's process, with the subscriptions its predecessor had."""
        # On multiproc-tcp it reports each change of its subscriptions here, for its successor.
        report = self._settings.base != "simple"
        self._event_stream_process = self.createActor(EventStreamActor)
        self.send(self._event_stream_process,
                  p.StartEventStream(tuple(self._subscriptions.pairs), report))

    def _event_stream_started(self, stream: Any) -> None:
        self._event_stream = stream  # its final address
        self._plugin_ready.add(_EVENT_STREAM)
        self._announce_if_replacing(_EVENT_STREAM, stream)
        waiting, self._stream_waiting = self._stream_waiting, []
        for message in waiting:
            self.send(stream, message)
        self._wake_waiters()

    def _to_event_stream(self, message: Any) -> None:
        """Send `message` to the event stream; kept while its process is being restarted."""
        if self._event_stream is not None:
            self.send(self._event_stream, message)
        elif _EVENT_STREAM in self._replacing and not self._exiting:
            self._stream_waiting.append(message)

    def _event_stream_exited(self) -> None:
        """The event stream's process exited: start another, unless the system shuts down."""
        if self._event_stream is not None:
            self._dead_streams.add(_key(self._event_stream))
            self._replacing.setdefault(_EVENT_STREAM, self._event_stream)
        self._event_stream = self._event_stream_process = None
        self._plugin_ready.discard(_EVENT_STREAM)
        if not self._restarts_runtime_process("the event stream"):
            self._replacing.pop(_EVENT_STREAM, None)
            self._stream_waiting.clear()
            return
        self._start_event_stream()

    def _plugin_exited(self, key: PluginKey) -> None:
        """A plugin's process exited: start another at once, unless the system shuts down.

        Its successor is announced once it reports started (`_announce_if_replacing`). After
        too many deaths (`_may_restart`) it is not started again: whatever needs it then
        fails with a `PluginError` (`_ensure_plugin`).
        """
        if key in self._plugin_ready:  # the address the actors hold
            self._replacing.setdefault(key, self._plugins[key])
        del self._plugins[key]
        self._plugin_ready.discard(key)
        kind, plugin_id = key
        name = f"{kind.replace('_', ' ')} plugin {plugin_id!r}"
        if not self._restarts_runtime_process(name):
            if not self._exiting:
                self._given_up[key] = PluginError(f"the process of {name} {_given_up()}")
            return
        self._ensure_plugin(kind, plugin_id)

    def _restarts_runtime_process(self, name: str) -> bool:
        """True if the runtime process `name`, which just died, is to be started again."""
        if self._exiting or self._settings.base == "simple":
            return False  # the system shuts down (the simple base has no processes to lose)
        if not self._may_restart(name):
            return False
        log.warning("guardian: the process of %s died; starting it again", name)
        return True

    def _announce_if_replacing(self, key: PluginKey, new: Any) -> None:
        """`key`'s process reported started at `new`: if it replaces a dead one, announce it.

        Every host running now, and the facade, get `p.PluginMoved` and hold `new` wherever
        they held the dead address; the guardian's own start records (what it starts or
        restarts hosts from) are moved too. A host started before and reporting started later
        is told then (`_catch_up`).
        """
        old = self._replacing.pop(key, None)
        if old is None:
            return
        moved = p.PluginMoved(old, new)
        move = Move(moved)
        # Every dead address's successor: a dead predecessor's is now `new` too.
        for dead_key, (dead, successor) in list(self._successors.items()):
            if move.holds_old(successor):
                self._successors[dead_key] = (dead, new)
        self._successors[move.old] = (old, new)
        if self._info is not None:
            self._info = move.system(self._info)
        for live_key, (host, start) in self._entity_live.items():
            self._entity_live[live_key] = (host, move.start(start))
        for suspect_key, start in self._entity_suspects.items():
            self._entity_suspects[suspect_key] = move.start(start)
        for waiting in self._pool_waiting.values():  # not sent yet: sent as they are now
            waiting[:] = [(cell, move.start(start)) for cell, start in waiting]
        for host in self._live_hosts():
            self.send(host, moved)
        if self._outside is not None and self._init_id is not None:
            self.send(self._outside, p.Reply(self._init_id, moved))

    def _live_hosts(self) -> list[Any]:
        """The processes hosting actors that may hold a runtime process's address.

        Those of actors in processes of their own (also those waiting for their persistence
        id), the shared hosts and the entity hosts; an actor in a shared host is reached
        through its host.
        """
        hosts = [address for address in self._names.values()
                 if address is not _RESERVED and type(address) is not p.CellAddress]
        hosts.extend(waiting[1] for entries in self._claim_waiting.values()
                     for waiting in entries if type(waiting[1]) is not p.CellAddress)
        hosts.extend(host for host in self._pool if host is not None)
        hosts.extend(host for host, _ in self._entity_live.values())
        return hosts

    def _catch_up(self, host: Any, start: Any) -> Any:
        """Tell `host`, which just reported started, the moves since its start was sent.

        `start` is the record it was started with (`StartActor`, `StartEntityHost`,
        `StartSharedHost`): a runtime process that died and was announced meanwhile was
        announced to the hosts running then, not to it. Returns the record with today's
        addresses.
        """
        if not self._successors:
            return start
        for address in (start.system.event_stream, getattr(start, "journal", None),
                        getattr(start, "snapshot_store", None)):
            entry = self._successors.get(_key(address)) if address is not None else None
            if entry is not None:
                moved = p.PluginMoved(*entry)
                self.send(host, moved)
                start = Move(moved).start(start)
        return start

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
        try:
            keys = self._plugins_of(cls)
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
            self._start_actor(request, requester, name, keys)

        self._when_ready(keys, plugins_ready)

    def _plugins_of(self, cls: type[Any]) -> set[PluginKey]:
        """The plugins an actor of `cls` needs (started if needed): none for a plain actor."""
        if not issubclass(cls, PersistentActor):
            return set()
        return {self._ensure_plugin(JOURNAL, cls.journal_plugin_id),
                self._ensure_plugin(SNAPSHOT_STORE, cls.snapshot_plugin_id)}

    def _start_actor(self, request: p.CreateActor, requester: Any, name: str,
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
        adapters = config = None
        if journal is not None:
            config = self._settings.plugin(JOURNAL, request.cls.journal_plugin_id)
            adapters = config.adapters
        start = p.StartActor(request.cls, request.args, request.kwargs, name, self._info,
                             journal, snapshots, host_id, adapters)
        if self._settings.host_processes and self._info.base != "simple":
            if config is not None:  # the shared host may write this journal itself
                start = dataclasses.replace(start, journal_plugin=_start_plugin(JOURNAL, config))
            self._start_in_pool(host_id, start)
            return
        self._start_records[host_id] = start
        self.send(self.createActor(ActorHost), start)

    def _actor_started(self, host_id: int, host: Any, persistence_id: str | None) -> None:
        record = self._start_records.pop(host_id, None)
        if record is not None:
            self._catch_up(host, record)
        started = self._starting.pop(host_id, None)
        if started is None:
            return
        request, requester, name = started
        if persistence_id is not None and not self._claim(host_id, host, persistence_id,
                                                          request, requester, name):
            return
        self._names[name] = host
        self._by_address[_key(host)] = name
        self._requests[name] = request
        if requester is None:  # a crash restart: old refs now lead here
            olds = {old for old, held_name in self._restarting.items() if held_name == name}
            for old in olds:
                del self._restarting[old]
            # Refs to its earlier incarnations too (only its own: a shared host's death
            # restarts several actors at once, each must keep its own refs).
            for old, current in list(self._redirects.items()):
                if _key(current) in olds:
                    self._redirects[old] = host
            for old in olds:
                self._redirects[old] = host
            for message in self._held.pop(name, []):
                self._forward(host, message)
            return
        self.send(requester, p.Reply(request.correlation_id,
                                     p.ActorCreated(ref_of_address(host, name))))

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
        if requester is None:  # a crash restart found its id taken: it stays down
            log.error("guardian: %s", error)
        else:
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
            self._actor_started(host_id, host, claim[1])

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

    def _actor_failed(self, host_id: int, error: BaseException) -> None:
        self._start_records.pop(host_id, None)
        started = self._starting.pop(host_id, None)
        if started is None:
            return
        request, requester, name = started
        if requester is None:  # a crash restart failed in the constructor: it stays dead
            log.error("guardian: %r could not be restarted after its process died: %s",
                      name, error)
            self._give_up(name)
            return
        # The failed host stops by itself; its name was never published, so free it now.
        if self._names.get(name) is _RESERVED:
            del self._names[name]
        self.send(requester, p.Reply(request.correlation_id, p.Failure(error)))
        self._run_deferred(name)

    def _child_exited(self, address: Any) -> None:
        # Thespian's TCP base may report one exit twice: everything here is idempotent.
        key = _key(address)
        if key in self._pool_index:
            self._pool_host_exited(key, address)
            return
        for index, created in self._pool_creating.items():
            if created == address:  # thespian compares the provisional and final address
                self._pool_died_early(index)
                return
        live = self._entity_live.pop(key, None)
        if live is not None:
            entity_host = live[1]
            if key not in self._stopping and not self._exiting and self._info is not None \
                    and self._info.base != "simple":
                # Exited without ActorStopping: its process died, unless that message is
                # still on its way (as for actors: CRASH_GRACE).
                self._entity_suspects[key] = entity_host
                self.wakeupAfter(datetime.timedelta(seconds=CRASH_GRACE),
                                 payload=_CrashCheck(key))
            else:
                self._stopping.discard(key)
            return
        stopping = key in self._stopping
        self._stopping.discard(key)
        self._recovering.discard(key)
        self._queued.discard(key)
        for claim, waiting in list(self._claim_waiting.items()):
            self._claim_waiting[claim] = [w for w in waiting if _key(w[1]) != key]
        self._release_claim(key)
        self._grant_recoveries()
        name = self._by_address.pop(key, None)
        if name is not None and self._names.get(name) == address:
            if not stopping and not self._exiting and self._info is not None and \
                    self._info.base != "simple":
                # Exited without ActorStopping: its process died (SIGKILL, the OOM killer),
                # unless that message is still on its way.
                self._suspects[key] = name
                self.wakeupAfter(datetime.timedelta(seconds=CRASH_GRACE),
                                 payload=_CrashCheck(key))
                return
            self._exited(name)
        for plugin_key, plugin in list(self._plugins.items()):
            if plugin == address:  # (thespian's equality: a provisional address too)
                self._plugin_exited(plugin_key)
        if self._event_stream_process is not None and self._event_stream_process == address:
            self._event_stream_exited()

    def _exited(self, name: str) -> None:
        """The actor named `name` is gone for good: free the name."""
        if self._names.get(name) is not None:
            del self._names[name]
        self._terminated(name)
        self._requests.pop(name, None)
        self._flush_held(name)
        self._run_deferred(name)

    def _current(self, address: Any) -> Any:
        """`address`, or for an incarnation whose process died its successor's (same name)."""
        return self._redirects.get(_key(address), address)

    # -- DeathWatch ----------------------------------------------------------------------------
    def _watch(self, address: Any, watched: Any, watcher: Any) -> None:
        """`watcher` watches the actor at `address`: noted, or told at once if it is gone."""
        name = self._by_address.get(_key(self._current(address)))
        if name is None or self._names.get(name) is None:
            self._tell_terminated(watcher, watched)
            return
        # An entity (no name here) watches until the watched actor ends.
        watcher_name = self._by_address.get(_key(guardian_address(watcher)))
        self._watchers.setdefault(name, {})[watcher] = (watched, watcher_name)
        if watcher_name is not None:
            self._watching.setdefault(watcher_name, set()).add((name, watcher))

    def _unwatch(self, address: Any, watcher: Any) -> None:
        name = self._by_address.get(_key(self._current(address)))
        entry = self._watchers.get(name, {}).pop(watcher, None) if name is not None else None
        if entry is not None and entry[1] is not None:
            self._watching.get(entry[1], set()).discard((name, watcher))

    def _terminated(self, name: str) -> None:
        """The actor named `name` is gone for good: tell whoever watched it; drop its watches."""
        for watcher, (watched, watcher_name) in self._watchers.pop(name, {}).items():
            self._tell_terminated(watcher, watched)
            if watcher_name is not None:
                self._watching.get(watcher_name, set()).discard((name, watcher))
        for watched_name, watcher in self._watching.pop(name, ()):
            self._watchers.get(watched_name, {}).pop(watcher, None)

    def _tell_terminated(self, watcher: Any, watched: Any) -> None:
        # The watcher keeps the set of refs it watches and drops anything else (unwatch).
        # From the stopped actor, as Akka tells it (a reply to it is a dead letter), not from
        # the guardian, whose address a reply would reach unseen.
        self.send(watcher.address, p.Envelope(outbound_form(watcher, Terminated(watched)),
                                              watched))

    # -- crash restarts (a host process died: SIGKILL, the OOM killer) -----------------------
    def _restart_crashed(self, name: str, key: Any) -> bool:
        """Start a new incarnation of `name`, whose process died unasked; False: give up.

        As Akka's default supervision restarts a crashed actor: the new one is built from the
        same arguments and recovers from the journal. Messages that were in the dead process
        are lost, as in a crash; those sent to it since are held and delivered to the new one.
        """
        request = self._requests.get(name)
        if request is None:
            return False
        if not self._may_restart(repr(name)):
            self._flush_held(name)
            return False
        log.warning("guardian: the process of actor %r died; restarting it", name)
        self._names[name] = _RESERVED
        self._restarting[key] = name
        keys: set[PluginKey] = set()
        cls = request.cls
        if issubclass(cls, PersistentActor):
            keys = {self._ensure_plugin(JOURNAL, cls.journal_plugin_id),
                    self._ensure_plugin(SNAPSHOT_STORE, cls.snapshot_plugin_id)}

        def plugins_ready(error: BaseException | None) -> None:
            if error is not None:
                log.error("guardian: cannot restart %r: %s", name, error)
                self._give_up(name)
                return
            self._start_actor(request, None, name, keys)

        self._when_ready(keys, plugins_ready)
        return True

    def _may_restart(self, name: str) -> bool:
        """Note that the process of `name` died; False if it is not to be started again.

        At most `MAX_CRASH_RESTARTS` restarts within `CRASH_RESTART_WINDOW` seconds: a process
        killed over and over (the OOM killer) is not retried for ever. Giving up is logged.
        """
        now = time.monotonic()
        recent = [t for t in self._crashes.get(name, []) if now - t < CRASH_RESTART_WINDOW]
        if len(recent) >= MAX_CRASH_RESTARTS:
            log.error("guardian: the process of %s %s", name, _given_up())
            return False
        self._crashes[name] = [*recent, now]
        return True

    def _give_up(self, name: str) -> None:
        if self._names.get(name) is _RESERVED:
            del self._names[name]
        self._terminated(name)
        self._requests.pop(name, None)
        for old, held_name in list(self._restarting.items()):
            if held_name == name:
                del self._restarting[old]
        self._flush_held(name)
        self._run_deferred(name)

    def _flush_held(self, name: str) -> None:
        for message in self._held.pop(name, []):
            self._to_event_stream(message)

    def _with_sender(self, dead: DeadEnvelope, sender: Any) -> DeadEnvelope:
        """`dead` with its sender named, if it was a bare tell from another actor.

        Thespian hands the dead letter over from the actor that sent it, but the event stream
        gets it from here: a bare tell (an actor's own, which names no sender) is wrapped in an
        `Envelope` naming that actor, so its DeadLetter has the sender Akka's would.
        """
        message = dead.deadMessage
        if isinstance(sender, ActorAddress) and \
                not isinstance(message, p.Envelope | p.CellEnvelope | p.Reply) and \
                type(message).__module__ != p.__name__:
            # Only an actor this guardian started: on multiproc-tcp the admin forwards the
            # dead letter, and its own address says nothing about who sent it.
            name = self._by_address.get(_key(sender))
            if name is not None:
                return DeadEnvelope(dead.deadAddress,
                                    p.Envelope(message, ref_of_address(sender, name)))
        return dead

    def _dead_letter(self, dead: DeadEnvelope) -> None:
        match dead.deadMessage:  # to a cell of a shared host (that died): as to its process
            case p.CellEnvelope(cell, inner):
                dead = DeadEnvelope(p.CellAddress(dead.deadAddress, cell), inner)
            case p.Envelope(message=p.CellEnvelope(cell, inner)) as envelope:
                dead = DeadEnvelope(p.CellAddress(dead.deadAddress, cell),
                                    dataclasses.replace(envelope, message=inner))
        key = _key(dead.deadAddress)
        if key in self._dead_streams:  # to an event stream that died: to its successor
            self._to_event_stream(dead.deadMessage)
            return
        given_up = self._entity_dead.get(key)
        if given_up is not None:  # every later ask fails at once, as the held ones did
            self._refuse(dead, given_up)
            return
        if not self._exiting and (key in self._entity_held or key in self._entity_live
                                  or key in self._entity_suspects):
            # An entity host died (its exit may not be reported yet): held for its successor,
            # up to [sharding] buffer_size messages (Akka's buffer-size); more are refused.
            held = self._entity_held.setdefault(key, [])
            bound = self._settings.sharding.buffer_size
            if len(held) < bound:
                held.append(dead)
            else:
                self._refuse(dead, EntityUnavailableError(
                    f"an entity host is being restarted and {bound} messages wait for it "
                    "already ([sharding] buffer_size); this one was refused"))
            return
        name = self._restarting.get(key)
        if name is None:
            name = self._suspects.get(key)
        if name is None and key in self._by_address and key not in self._stopping and \
                self._info is not None and self._info.base != "simple":
            name = self._by_address[key]  # died, and its exit is not reported yet
        if name is not None:
            self._held.setdefault(name, []).append(dead)
            return
        current = self._redirects.get(key)
        if current is not None:
            given_up = self._entity_dead.get(_key(current))
            if given_up is not None:  # refused before `_forward` rewrites an ask's envelope
                self._refuse(dead, given_up)
                return
            self._forward(current, dead)
            return
        self._to_event_stream(dead)  # it publishes the DeadLetter

    def _refuse(self, dead: DeadEnvelope, error: EntityUnavailableError) -> None:
        """A held message cannot be delivered: its ask fails with `error`; else a dead letter."""
        message = dead.deadMessage
        if isinstance(message, p.Envelope) and isinstance(message.correlation_id, str) and \
                self._outside is not None:  # an ask from outside (as in _forward)
            self.send(self._outside, p.Reply(message.correlation_id, p.AskRefused(error)))
            return
        log.warning("guardian: %s", error)
        self._to_event_stream(dead)  # it publishes the DeadLetter

    def _forward(self, target: Any, dead: DeadEnvelope) -> None:
        """Deliver a message sent to a dead incarnation to the current one."""
        message = dead.deadMessage
        match message:
            case p.Envelope(correlation_id=str(correlation_id)) if self._outside is not None:
                # An ask from outside: the reply must go to the asker, not to us.
                message = p.Envelope(message.message, AskRef(self._outside, correlation_id))
            case p.Envelope() | p.ShardEnvelope() | ActorExitRequest():
                pass
            case _ if type(message).__module__ == p.__name__:
                return  # a plugin's answer to the dead instance: meaningless to the new one
            case _:
                message = p.Envelope(message, None)  # its sender is unknown now
        self.send(target, message)

    # -- entity hosts (system.entities) -------------------------------------------------------
    def _start_entity_hosts(self, request: p.StartEntityHosts, requester: Any) -> None:
        """Create the hosts of one entity type; answer with their final addresses."""
        def fail(error: BaseException) -> None:
            self.send(requester, p.Reply(request.correlation_id,
                                         p.Failure(portable_error(error))))

        cls = request.cls
        try:
            keys = self._plugins_of(cls)
            if not keys and self._settings.sharding.remembers(request.type_name):
                # Remembered plain actors: their ids go to the default journal.
                keys = self._plugins_of(PersistentActor)
        except Exception as e:  # noqa: BLE001 - a config error names the plugin id
            fail(e)
            return

        def plugins_ready(error: BaseException | None) -> None:
            if error is not None:
                fail(error)
                return
            assert self._info is not None  # noqa: S101
            journal = snapshots = adapters = journal_plugin = None
            for key in keys:
                if key[0] == JOURNAL:
                    journal = self._plugins[key]
                    config = self._settings.plugin(JOURNAL,
                                                   getattr(cls, "journal_plugin_id", None))
                    adapters = config.adapters
                    # The host may write the entities' events itself (`local_journal`).
                    journal_plugin = _start_plugin(JOURNAL, config)
                else:
                    snapshots = self._plugins[key]
            self._entity_hosts[request.correlation_id] = (requester, [None] * request.count)
            for index in range(request.count):
                self._create_entity_host(p.StartEntityHost(
                    request.type_name, cls, request.args, request.kwargs, self._info, journal,
                    snapshots, adapters, self._settings.sharding,
                    self._settings.max_concurrent_recoveries,
                    f"{request.correlation_id}/{index}", request.host_class, index,
                    request.count, journal_plugin), None)

        self._when_ready(keys, plugins_ready)

    def _create_entity_host(self, start: p.StartEntityHost, replaces: Any) -> None:
        self._entity_starts[start.correlation_id] = (start, replaces)
        self.send(self.createActor(start.host_class or EntityHost), start)

    def _restart_entity_host(self, key: Any, start: p.StartEntityHost) -> None:
        """An entity host's process died: start another; letters for the dead one go to it.

        Its entities recover from the journal on their next message. Messages that were
        inside the dead process are lost, as in any crash (their asks time out).
        """
        name = f"entity host {start.type_name!r} #{start.correlation_id.rpartition('/')[2]}"
        if not self._may_restart(name):
            error = EntityUnavailableError(f"the process of {name} {_given_up()}")
            self._entity_dead[key] = error
            for dead in self._entity_held.pop(key, []):
                self._refuse(dead, error)
            return
        log.warning("guardian: the process of %s died; restarting it", name)
        self._entity_held.setdefault(key, [])
        self._create_entity_host(start, key)

    def _entity_host_started(self, correlation_id: str, host: Any) -> None:
        started = self._entity_starts.pop(correlation_id, None)
        if started is None:
            return
        start, replaces = started
        self._entity_live[_key(host)] = (host, self._catch_up(host, start))
        if replaces is not None:  # a crash restart: refs to the dead host now lead here
            for old, current in list(self._redirects.items()):
                if _key(current) == replaces:
                    self._redirects[old] = host
            self._redirects[replaces] = host
            for dead in self._entity_held.pop(replaces, []):
                self._forward(host, dead)
            return
        request_id, _, index = correlation_id.rpartition("/")
        pending = self._entity_hosts.get(request_id)
        if pending is None:
            return
        requester, hosts = pending
        hosts[int(index)] = host  # its final address (see ActorStarted)
        if all(h is not None for h in hosts):
            del self._entity_hosts[request_id]
            self.send(requester, p.Reply(request_id, p.EntityHostsStarted(tuple(hosts))))

    # -- shared host processes ([actor_system] host_processes) ---------------------------------
    def _start_in_pool(self, cell: int, start: p.StartActor) -> None:
        """Place a new actor in the shared host with the fewest actors (lowest index on a tie)."""
        count = self._settings.host_processes
        if not self._pool:
            self._pool = [None] * count
            self._pool_load = [0] * count
        index = min(range(count), key=lambda i: (self._pool_load[i], i))
        self._pool_load[index] += 1
        self._cell_index[cell] = index
        host = self._pool[index]
        if host is not None:
            self.send(p.CellAddress(host, cell), start)
            return
        waiting = self._pool_waiting.get(index)
        if waiting is None:  # the host is not being started either
            waiting = self._pool_waiting[index] = []
            assert self._info is not None  # noqa: S101
            # Imported here, at the first shared host: with host_processes = 0 the guardian
            # loads nothing new (a module-level import once made create_100 2x slower in the
            # children it forks).
            from persistent_actors._thespian.shared_host import SharedHost  # noqa: PLC0415
            created = self._pool_creating[index] = self.createActor(SharedHost)
            record = self._pool_records[index] = p.StartSharedHost(self._info, index)
            self.send(created, record)
            self.wakeupAfter(datetime.timedelta(seconds=SLOW_HOST_START),
                             payload=_StartCheck(index, created))
        waiting.append((cell, start))

    def _check_started(self, index: int, created: Any) -> None:
        """Log a shared host that is still being started `SLOW_HOST_START` after its creation."""
        if self._pool_creating.get(index) is created and not self._exiting:
            log.warning("guardian: shared host process %d ([actor_system] host_processes) has "
                        "not reported itself started %.0f s after it was created; the %d "
                        "actor_of call(s) placed there wait for it", index, SLOW_HOST_START,
                        len(self._pool_waiting.get(index, ())))

    def _pool_started(self, index: int, host: Any) -> None:
        record = self._pool_records.pop(index, None)
        if record is not None:
            self._catch_up(host, record)
        self._pool_creating.pop(index, None)
        self._pool_early_deaths.pop(index, None)
        self._pool[index] = host  # its final address (see ActorStarted)
        self._pool_index[_key(host)] = index
        for cell, start in self._pool_waiting.pop(index, []):
            self.send(p.CellAddress(host, cell), start)

    def _pool_died_early(self, index: int) -> None:
        """The host being started for `index` exited before it reported itself started.

        The actors waiting for it are placed again (a new host process), as a crashed host's
        actors are; after `POOL_START_ATTEMPTS` such deaths in a row their `actor_of` fails
        with `ActorInitializationError` instead of waiting out its timeout, and the next
        actor placed there tries a new host again.
        """
        del self._pool_creating[index]
        self._pool_records.pop(index, None)
        waiting = self._pool_waiting.pop(index, [])
        for cell, _ in waiting:
            if self._cell_index.pop(cell, None) is not None:
                self._pool_load[index] -= 1
        if self._exiting:
            return
        deaths = self._pool_early_deaths[index] = self._pool_early_deaths.get(index, 0) + 1
        log.warning("guardian: shared host process %d exited before it started (%d in a row)",
                    index, deaths)
        if deaths < POOL_START_ATTEMPTS:
            for cell, start in waiting:
                self._start_in_pool(cell, start)
            return
        del self._pool_early_deaths[index]
        for cell, _ in waiting:
            self._actor_failed(cell, ActorInitializationError(
                f"shared host process {index} ([actor_system] host_processes) exited before it "
                f"started, {deaths} times in a row: its actors could not be started"))

    def _cell_exited(self, address: p.CellAddress) -> None:
        index = self._cell_index.pop(address.cell, None)
        if index is not None:
            self._pool_load[index] -= 1

    def _pool_host_exited(self, key: Any, address: Any) -> None:
        """A shared host exited: its actors exited with it (a crash: each is restarted)."""
        index = self._pool_index.pop(key)
        stopped = key in self._stopping or self._exiting
        self._stopping.discard(key)
        self._pool[index] = None
        cells = [cell for cell, i in self._cell_index.items() if i == index]
        for cell in cells:
            del self._cell_index[cell]
        self._pool_load[index] = 0
        # Actors whose start it never answered: started again (elsewhere, or in its successor).
        for cell in cells:
            started = self._starting.pop(cell, None)
            if started is not None and not self._exiting:
                request, requester, name = started
                self._start_actor(request, requester, name, self._plugins_of(request.cls))
        for cell in cells:
            cell_address = p.CellAddress(address, cell)
            if stopped:
                self._stopping.add(_key(cell_address))
            self._child_exited(cell_address)

    def _run_deferred(self, name: str) -> None:
        waiting = self._deferred.pop(name, [])
        for request, requester in waiting:
            self._create(request, requester)
