"""`ActorSystem`: the user's entry point, a facade over one thespian actor system."""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import pkgutil
import sys
import threading
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from thespian.actors import ActorSystem as ThespianActorSystem
from thespian.actors import InvalidActorAddress

from persistent_actors import _protocol as p
from persistent_actors._actor import Actor, ActorRef, HostedRef
from persistent_actors._config import JOURNAL, SNAPSHOT_STORE, Settings, load_settings
from persistent_actors._endpoint import Endpoint
from persistent_actors._event_stream import EventStream
from persistent_actors._region import EntityRegion
from persistent_actors._thespian.event_log import HostedEventLog
from persistent_actors._thespian.frame_auth import secure_transport
from persistent_actors._thespian.guardian import Guardian
from persistent_actors._thespian.ingress import Ingress
from persistent_actors._thespian.lazy_identify import lazy_identify
from persistent_actors._thespian.lifetime import (
    ADMIN,
    REAP_GRACE,
    OwnerProcess,
    admins_started,
    install_sigterm_exit,
    join_admin_starters,
    reap_session,
    record_admin_starters,
)
from persistent_actors._thespian.loopback import (
    bind_where_advertised,
    free_port,
    listened_on,
)
from persistent_actors._thespian.moved import Move
from persistent_actors._thespian.poll_selector import poll_selector
from persistent_actors._thespian.simple_direct import distinct_addresses
from persistent_actors._thespian.wakeups import fast_wakeup_checks
from persistent_actors.cluster._region import ClusterRegion, Routes
from persistent_actors.cluster._transport import cluster_capabilities, node_id_of
from persistent_actors.errors import (
    ActorInitializationError,
    ConfigError,
    InvalidActorNameError,
    PersistentActorsError,
)
from persistent_actors.query import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_REFRESH_INTERVAL,
    ReadJournal,
    connect_read_journal,
)

__all__ = ["ActorSystem"]

log = logging.getLogger("persistent_actors")

A = TypeVar("A", bound=Actor)

# The systems still running, shut down at interpreter exit.
_live: weakref.WeakSet[ActorSystem] = weakref.WeakSet()

# Every admin port this process used for a multi-process system (a new system avoids them: old
# actor processes may still be exiting), and those whose system this process started and has
# not shut down: a test session sweeps these at the end (re-attach and shut down), which cleans
# up after a crashed test and leaves alone a port that another process took since.
ADMIN_PORTS: list[int] = []
OPEN_ADMIN_PORTS: set[int | None] = set()
# Ports tried for a system whose admin_port is left to choose (see `ActorSystem._start_admin`).
_FREE_PORT_ATTEMPTS = 5

_THESPIAN_LOG_DEFS: dict[str, Any] = {
    # A dict, never False: logDefs=False kills every child actor on the multi-process bases
    # (thespian 4.0.1). Warnings and errors from actor processes reach stderr.
    "version": 1,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                            "level": "WARNING"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


class ActorSystem:
    """An actor system: creates actors, hosts the event stream and the persistence plugins.

    Use it as a context manager, or call `shutdown` (also run at interpreter exit). Config is a
    mapping or a TOML path; see the README for the keys. Methods are safe to call from any
    thread.

    Raises:
        ConfigError: a config key is unknown or has a bad value (the message names it).
        PluginError: a journal or snapshot-store plugin cannot start.

    """

    _latest: ClassVar[weakref.ReferenceType[ActorSystem] | None] = None

    def __init__(self, name: str = "default",
                 config: Mapping[str, Any] | str | os.PathLike[str] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"actor system name must be a non-empty str, got {name!r}")
        self.name = name
        self.settings: Settings = load_settings(config)
        log_defs: Any = False  # simple base: leave the application's logging alone
        self._admin_port: int | None = None  # multiproc-tcp's, once its admin runs
        # Held through a shutdown's cleanup: one called while another runs (the system
        # terminating after its guardian died) returns once that one left no process behind.
        self._shutdown_lock = threading.Lock()
        if self.settings.base != "simple":
            # Before thespian starts: it forks every process from this one (they inherit it).
            secure_transport(self.settings.bind_address, self.settings.secret_file)
            log_defs = _THESPIAN_LOG_DEFS
            # Thespian unpickles whatever reaches an actor's port, so by default every port
            # listens on loopback only; forked actor processes inherit the variable.
            os.environ["THESPIAN_BASE_IPADDR"] = self.settings.bind_address
            bind_where_advertised()
            record_admin_starters()  # their zombies are joined (lifetime.py)
            lazy_identify()  # before thespian forks: every message was described for a debug line
            poll_selector()  # thespian built an epoll set for every wait of its transport
            # Imported here, for multiproc-tcp only: imported with this module, it made the
            # bench's `create_100` row 2x slower in its forked child processes (cause not
            # found; the row run in one process was unchanged).
            from persistent_actors._thespian.transmit_timers import (  # noqa: PLC0415
                transmit_timers,
            )
            transmit_timers()  # and timer views and timedeltas for every deadline it compared
            from persistent_actors._thespian.loop_helpers import loop_helpers  # noqa: PLC0415
            loop_helpers()  # and generic fmap/partition, a generator lock, address hashing
            from persistent_actors._thespian.fewer_turns import fewer_turns  # noqa: PLC0415
            fewer_turns()  # and a turn of its loop per message sent and per message received
            from persistent_actors._thespian.lean_loop import lean_loop  # noqa: PLC0415
            lean_loop()  # and per turn, the watch list, idle-socket walk and timeout rebuild
            from persistent_actors._thespian.exit_notice import exit_notices  # noqa: PLC0415
            # and an actor's exit notice was lost when a timer of it was due as it exited
            exit_notices()
            from persistent_actors._thespian.wakeup_drain import due_wakeups_kept  # noqa: PLC0415
            due_wakeups_kept()  # and a process's timer wakeups while its send queue drained
            from persistent_actors._thespian.actor_processes import (  # noqa: PLC0415
                prepare_actor_processes,
            )
            # and each actor process's collector walked the inherited heap, and its loop
            # started wherever its parent's stack happened to be
            prepare_actor_processes()
            self._asys, self._admin_port = self._start_admin(log_defs)
        else:
            fast_wakeup_checks()  # the simple base scans every pending wakeup per message
            self._asys = ThespianActorSystem(self.settings.thespian_base, {},
                                             logDefs=log_defs, transientUnique=True)
            distinct_addresses(self._asys)  # before its first actor (see the function)
        self._endpoint = Endpoint(name, self._asys, simple=self.settings.base == "simple")
        self._regions: dict[str, EntityRegion] = {}
        self._regions_lock = threading.Lock()
        self._routes: Routes | None = None  # a cluster process's shard owners, once needed
        join_admin_starters()  # this system's (its admin is up) and earlier ones'
        _live.add(self)
        ActorSystem._latest = weakref.ref(self)
        # SIGTERM shuts down as cleanly as SIGINT (see _thespian/lifetime.py).
        install_sigterm_exit(lambda: any(not s.is_terminated for s in _live))
        # Multiproc-tcp: the processes the system ends with, and their session, once the
        # guardian reported them (`p.RuntimeStarted`, early in the start).
        self._runtime: tuple[tuple[str, OwnerProcess], ...] = ()
        self._session_id: int | None = None
        try:
            self._guardian = self._asys.createActor(Guardian)
            # Only the simple base needs the ingress actor (see _driver.py).
            ingress = self._asys.createActor(Ingress) if self._endpoint.simple else None
            self._endpoint.start(self._guardian, ingress)
            started_id = None
            if not self._endpoint.simple:
                started_id = self._endpoint.new_correlation_id()
                started = weakref.WeakMethod(self._runtime_started)  # the driver keeps no
                self._endpoint.add_sink(started_id, lambda m: _call(started, m))  # system alive
            init_ids: list[str] = []

            def init(corr: str) -> p.InitSystem:
                init_ids.append(corr)
                return p.InitSystem(
                    name, self.settings.base, self.settings, corr,
                    None if self.settings.base == "simple" else OwnerProcess.current(),
                    started_id)

            reply = self._endpoint.request(self._guardian, init, timeout=60.0,
                                           what="starting the actor system")
            self._endpoint.ensure_running()  # the reply came as the system was terminating
        except BaseException as e:
            self.shutdown()
            reason = self._endpoint.reason
            if reason is not None and isinstance(e, PersistentActorsError):
                raise PersistentActorsError(
                    f"actor system {name!r} could not start: {reason}") from None
            raise
        if started_id is not None:
            self._endpoint.drop_sink(started_id)
        if isinstance(reply, p.Failure):
            self.shutdown()
            raise reply.error
        self._info: p.SystemInfo = reply.info
        if self._session_id is None:
            self._session_id = self._info.session_id
        self.event_stream = EventStream(ActorRef(self._info.event_stream, "eventStream",
                                                  self._endpoint))
        # The guardian tells of a runtime process that moved under the InitSystem's id.
        self._endpoint.add_standing_sink(init_ids[0], self._runtime_moved)
        if self.settings.journals["default"].spec == "inmem":
            log.warning("actor system %r uses the in-memory journal: events will not survive "
                        "the process (configure [persistence.journal] plugin = \"sqlite\")", name)

    def _runtime_started(self, started: Any) -> None:
        """Watch the processes the system ends with (`p.RuntimeStarted`; multiproc-tcp).

        From the start on: one of them dying during the start fails it at once. The driver
        thread calls this.
        """
        if not isinstance(started, p.RuntimeStarted) or self._runtime:
            return
        self._session_id = started.session_id
        processes = self._runtime = started.processes
        died = weakref.WeakMethod(self._runtime_died)  # the driver keeps no system alive
        dead: list[tuple[str, OwnerProcess]] = []

        def alive() -> bool:
            found = _first_dead(processes)
            if found is not None:
                dead.append(found)
            return found is None

        self._endpoint.watch(alive, lambda: _call(died, *dead[0]))

    def _runtime_moved(self, moved: Any) -> None:
        """Follow the event stream if its process died and runs again (`p.PluginMoved`).

        The handle `event_stream` is the one the application holds: it is re-pointed in place.
        The driver thread calls this.
        """
        if not isinstance(moved, p.PluginMoved):
            return
        info = Move(moved).system(self._info)
        if info is not self._info:
            self._info = info
            self.event_stream._ref = ActorRef(  # noqa: SLF001 - the handle the caller holds
                info.event_stream, "eventStream", self._endpoint)

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
        """True once `shutdown` has run, or the system ended on its own (its guardian died)."""
        return self._endpoint.closed

    @property
    def endpoint(self) -> Endpoint:
        """The external side (send, listen, request); for the package's own tools."""
        return self._endpoint

    def _start_admin(self, log_defs: Any) -> tuple[ThespianActorSystem, int]:
        """Start this system's multiproc-tcp admin: the thespian system and its admin port.

        A port left to choose (no ``admin_port``) is taken again, up to
        `_FREE_PORT_ATTEMPTS` times, when another system took the same one as this one started
        (two applications starting at once on one machine): thespian would otherwise have
        joined that system's admin silently (two systems in one; this one's shutdown ends
        both). A configured port in use is a `ConfigError`.
        """
        configured = self.settings.admin_port
        for attempt in range(1, _FREE_PORT_ATTEMPTS + 1):
            port = configured or free_port(avoid=frozenset(ADMIN_PORTS))
            if configured and listened_on(self.settings.bind_address, port):
                # Thespian would join the admin listening there (another system's, maybe of
                # another service): two systems in one, and this one's shutdown ends both.
                raise ConfigError(
                    f"admin_port {port} is in use on {self.settings.bind_address}: another "
                    "actor system (or program) listens there; give each system its own port, "
                    "or leave admin_port out to take a free one")
            ADMIN_PORTS.append(port)
            capabilities: dict[str, Any] = {"Admin Port": port}
            cluster = self.settings.cluster
            if cluster is not None:  # before thespian forks its admin: see cluster/_transport
                capabilities.update(cluster_capabilities(cluster, port, node_id_of(cluster, port)))
            started = admins_started()
            try:
                asys = ThespianActorSystem(self.settings.thespian_base, capabilities,
                                           logDefs=log_defs, transientUnique=True)
            except InvalidActorAddress as e:
                # Another system took the port between the check and thespian's bind (two
                # started at once): thespian says only that the address is no admin.
                if not configured and attempt < _FREE_PORT_ATTEMPTS:
                    continue
                if not configured:
                    raise
                raise ConfigError(
                    f"admin_port {port} could not be bound: another actor system (or "
                    "program) took it as this one started; give each system its own port, or "
                    f"leave admin_port out to take a free one ({e})") from e
            if started is None or admins_started() != started:
                OPEN_ADMIN_PORTS.add(port)
                return asys, port
            # Thespian joined an admin that another system started on the port between the
            # check above and now: leave that system alone (no shutdown, only our socket).
            asys._systemBase.transport.close()  # noqa: SLF001 - thespian has no other way
            if configured:
                raise ConfigError(
                    f"admin_port {port} is in use: another actor system started on it at the "
                    "same time; give each system its own port, or leave admin_port out to "
                    "take a free one")
        raise ConfigError(
            f"no free admin port could be taken in {_FREE_PORT_ATTEMPTS} attempts: other "
            "actor systems took each one as this one started; set [actor_system] admin_port")

    def shutdown(self) -> None:
        """Stop every actor and the thespian system; idempotent. No process is left behind.

        Also when the system is terminating on its own (its guardian died): then this returns
        once that termination has ended.
        """
        self._terminate(None)

    def _runtime_died(self, what: str, process: OwnerProcess) -> None:
        """A process the system cannot run without is gone (multiproc-tcp; on the driver thread).

        The guardian is the root of the system: it created every actor and keeps names,
        persistence-id claims and supervision. Thespian's admin routes every dead letter (the
        guardian holds those for a crashed actor's next incarnation) and ends thespian's system;
        its logger's death takes the admin with it. Without any of them the system is lost, as
        an Akka ActorSystem terminates with its guardian: every call from now on, and every
        call waiting now, fails with the reason. The rest of the shutdown runs on a thread of
        its own (it waits for the driver); not a daemon, so that it ends before the process
        does.
        """
        if self._endpoint.closed:
            return  # shutting down already (its processes exit with it)
        reason = self._died(what, process)
        threading.Thread(target=self._terminate, args=(reason,),
                         name=f"persistent_actors-terminate-{self.name}").start()

    def _died(self, what: str, process: OwnerProcess) -> str:
        """Log that `process` died; the reason every call gives from now on."""
        reason = f"{what} (pid {process.pid}) died"
        log.error("actor system %r: %s; the system is shut down", self.name, reason)
        return reason

    def _terminate(self, reason: str | None) -> None:
        """`shutdown`; with a `reason` (a runtime process died) what waits fails at once."""
        with self._shutdown_lock:
            if reason is None and not self._endpoint.closed and \
                    (found := _first_dead(self._runtime)) is not None:
                reason = self._died(*found)  # died unnoticed yet: no slow shutdown through it
            admin = next((process for what, process in self._runtime if what == ADMIN), None)
            if self._endpoint.shutdown(reason, admin_alive=None if admin is None else
                                       admin.is_alive):
                orphaned = reason is not None
                if self._endpoint.admin_lost and admin is not None and not orphaned:
                    self._died(ADMIN, admin)  # during this shutdown: nobody asks the rest
                    orphaned = True
                _live.discard(self)
                join_admin_starters()
                if self._session_id is not None:
                    self._reap(self._session_id, orphaned=orphaned)
                OPEN_ADMIN_PORTS.discard(self._admin_port)
        routes, self._routes = self._routes, None
        if routes is not None:
            routes.close()

    def _reap(self, session_id: int, *, orphaned: bool) -> None:
        """Kill what is left of the system's processes (`session_id`) after thespian's shutdown.

        A process stuck in a handler never exits on thespian's request: killed after
        REAP_GRACE, so no process (and no admin port) outlives the system. `orphaned`: a
        runtime process died (the guardian, the only actor that could ask the actor, plugin and
        event stream processes to exit; or thespian's admin, through which the guardian is
        asked): no grace would help them, so what is left is killed at once (also thespian's
        admin if it is still finishing the exit its shutdown asked for).
        """
        if orphaned:
            reap_session(session_id, grace=0.0)
            return
        reaped = reap_session(session_id)
        if reaped:
            log.warning("actor system %r: %d process(es) had not exited %.0f s after the "
                        "shutdown (a handler or plugin call still running, or thespian "
                        "waiting for a child's exit); killed", self.name, len(reaped), REAP_GRACE)

    def __enter__(self) -> ActorSystem:
        """The system itself; `PersistentActorsError` if it has been shut down.

        A system does not start again: make a new one.
        """
        self._endpoint.ensure_running()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "terminated" if self.is_terminated else self.settings.base
        return f"ActorSystem({self.name!r}, {state})"

    # -- actors ------------------------------------------------------------------------------
    def actor_of(self, cls: type[A], *args: Any, name: str | None = None,
                 **kwargs: Any) -> ActorRef:
        """Create an actor of `cls` with ``cls(*args, **kwargs)`` (Akka's ``ActorOf(Props)``).

        Blocks until the actor is constructed and its ``pre_start`` ran. The name must be
        unique among running actors; creating one under the name of an actor that is stopping
        waits for it to exit.

        Raises:
            ActorInitializationError: the constructor, ``pre_start`` or the ``recovery``
                property raised, or there is no persistence_id; the actor is stopped.
            InvalidActorNameError: the name is malformed or taken.
            MessageNotSerializableError: on multiproc-tcp, an argument cannot be pickled.

        """
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"actor_of() needs a subclass of persistent_actors.Actor, got {cls!r}")
        if cls.__module__ == "__main__" and self.settings.base != "simple":
            raise ActorInitializationError(
                f"{cls.__qualname__} is defined in __main__; on the multiproc-tcp base actor "
                "classes must live in an importable module")
        self._check_imported(cls)
        self._check_class(cls)
        reply = self._endpoint.request(
            self._guardian, lambda corr: p.CreateActor(cls, args, kwargs, name, corr),
            timeout=60.0, what=f"creating {cls.__qualname__}")
        if isinstance(reply, p.Failure):
            raise reply.error
        ref: ActorRef = reply.ref
        if isinstance(ref, HostedRef):  # a shared host's cell ([actor_system] host_processes)
            return HostedRef(ref.address, ref.name, ref.cell, self._endpoint)
        return ActorRef(ref.address, ref.name, self._endpoint)

    def entities(self, type_name: str, cls: type[A], *args: Any, **kwargs: Any) -> EntityRegion:
        """The entities of type `type_name`, addressed by id (Akka's ``ClusterSharding.Start``).

        Each entity is ``cls(entity_id, *args, **kwargs)``, started on its first message and
        passivated per the ``[sharding]`` config; see the README's "Entities". Calling it
        again with the same arguments returns the same region. In a ``[cluster]`` process
        the entities run on the nodes that own their shards (README "Running a cluster").

        Raises:
            InvalidActorNameError: `type_name` is malformed, or already names another
                definition (a different class or arguments).
            MessageNotSerializableError: on multiproc-tcp, an argument cannot be pickled.
            PersistentActorsError: the system has been shut down.

        """
        if not isinstance(type_name, str) or not type_name or "/" in type_name:
            raise InvalidActorNameError(
                f"invalid entity type name {type_name!r}: expected a non-empty str without '/'")
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(
                f"entities() needs a subclass of persistent_actors.Actor, got {cls!r}")
        multiproc = self.settings.base != "simple"
        if cls.__module__ == "__main__" and multiproc:
            raise ActorInitializationError(
                f"{cls.__qualname__} is defined in __main__; on the multiproc-tcp base entity "
                "classes must live in an importable module")
        self._check_imported(cls)
        self._check_class(cls)
        # Before the look-up: a shut-down system's region is dead, and handing it back said
        # the system still ran (only a new type reached the endpoint and raised).
        self._endpoint.ensure_running()
        with self._regions_lock:
            region = self._regions.get(type_name)
            if region is not None:
                if not region.same_definition(cls, args, kwargs):
                    raise InvalidActorNameError(
                        f"entity type {type_name!r} is already defined as "
                        f"{region.entity_class.__qualname__} with other arguments or another "
                        f"class than {cls.__qualname__}{args!r}; one type name, one definition")
                return region
            sharding = self.settings.sharding
            if self.settings.cluster is not None:
                hosted = self.settings.cluster.entities.get(type_name)
                if hosted is not None and _resolved(hosted) is not cls:
                    raise ConfigError(
                        f"entity type {type_name!r} is [cluster.entities] {hosted!r} on this "
                        f"node, not {cls.__module__}:{cls.__qualname__}: the nodes' entry "
                        "decides the class")
                if self._routes is None:
                    self._routes = Routes(self.settings.cluster, sharding.shards)
                region = ClusterRegion(type_name, cls, args, kwargs, sharding.shards,
                                       self._endpoint, self._routes)
            else:
                # (Not for a cluster: the nodes' [cluster.entities] build them, not these.)
                _check_entity_constructor(type_name, cls, args, kwargs)
                hosts = self._start_entity_hosts(type_name, cls, args, kwargs)
                region = EntityRegion(type_name, cls, args, kwargs, hosts, sharding.shards,
                                      self._endpoint)
            self._regions[type_name] = region
            return region

    def _check_imported(self, cls: type[Actor]) -> None:
        """Refuse, on multiproc-tcp, a class whose module is still being imported.

        The system's driver pickles the class on its own thread, which waits for that
        module's import lock while the importing thread waits for the actor: it hung 60 s and
        then blamed the receiving process.
        """
        module = sys.modules.get(cls.__module__)
        if self.settings.base != "simple" and \
                getattr(getattr(module, "__spec__", None), "_initializing", False):
            raise ActorInitializationError(
                f"{cls.__qualname__}'s module {cls.__module__!r} is still being imported: on "
                "multiproc-tcp create its actors once the import ended (from a function the "
                "application calls at start), not while the module runs")

    def _check_class(self, cls: type[Actor]) -> None:
        """What can be told of an actor class before any instance runs (`actor_of`, `entities`).

        Its own class-level settings (`Actor._check_class_settings`), so that a bad one fails
        the creation, not a handler after an event is stored (then every recovery too).
        """
        self._check_handlers(cls)
        self._check_retention(cls)
        cls._check_class_settings()

    @staticmethod
    def _check_handlers(actor_class: type[Actor]) -> None:
        """Refuse ``async def`` handlers: they would return a coroutine nobody awaits."""
        for name in ("on_receive", "on_command", "on_recover"):
            if inspect.iscoroutinefunction(getattr(actor_class, name, None)):
                raise TypeError(
                    f"{actor_class.__qualname__}.{name} is async def: handlers are plain "
                    "functions run one message at a time; start awaiting work with "
                    "pipe_to(coroutine, self.self_ref) and handle its result as a message")

    def _check_retention(self, cls: type[Actor]) -> None:
        """Refuse a class whose retention would delete durable events covered by volatile snapshots.

        With ``delete_events_on_snapshot`` the events a snapshot covers are deleted; if that
        snapshot lives in the in-memory store while the journal keeps the events on disk, the
        next process start finds neither (the state is lost).
        """
        retention = getattr(cls, "retention", None)
        if not getattr(retention, "delete_events_on_snapshot", False):
            return
        journal = self.settings.plugin(JOURNAL, getattr(cls, "journal_plugin_id", None))
        snapshots = self.settings.plugin(SNAPSHOT_STORE, getattr(cls, "snapshot_plugin_id", None))
        if _innermost(snapshots.spec, snapshots.settings) == "inmem" and \
                _innermost(journal.spec, journal.settings) != "inmem":
            raise ActorInitializationError(
                f"{cls.__qualname__}: its retention deletes events on snapshot, but its snapshot "
                f"store is the in-memory one while its journal ({journal.spec!r}) keeps events: "
                "the next process start would find neither the events nor the snapshot. "
                "Configure a durable [persistence.snapshot_store] (e.g. plugin = \"sqlite\"), "
                "or drop delete_events_on_snapshot")

    def _start_entity_hosts(self, type_name: str, cls: type[Actor], args: tuple[Any, ...],
                            kwargs: dict[str, Any], host_class: type[Any] | None = None,
                            ) -> tuple[Any, ...]:
        """Start the host actors of an entity type here; their addresses (see `entities`).

        `host_class` replaces `EntityHost` (a cluster node's lease-gated hosts).
        """
        multiproc = self.settings.base != "simple"
        count = self.settings.sharding.host_processes if multiproc else 1
        reply = self._endpoint.request(
            self._guardian,
            lambda corr: p.StartEntityHosts(type_name, cls, args, kwargs, count, corr,
                                            host_class),
            timeout=60.0, what=f"starting the hosts of entity type {type_name!r}")
        if isinstance(reply, p.Failure):
            raise reply.error
        hosts: tuple[Any, ...] = reply.hosts
        return hosts

    def stop(self, ref: ActorRef) -> None:
        """Stop the actor behind `ref` (its post_stop runs); returns without waiting.

        Raises:
            TypeError: `ref` is not an ActorRef.

        """
        if not isinstance(ref, ActorRef):
            raise TypeError(f"stop() needs an ActorRef (from actor_of or a region), got {ref!r}")
        self._endpoint.stop(ref)

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
        self._endpoint.ensure_running()
        return connect_read_journal(self.settings.plugin(JOURNAL, plugin_id),
                                    self._hosted_event_log, page_size=page_size,
                                    refresh_interval=refresh_interval)

    def _hosted_event_log(self, plugin_id: str) -> HostedEventLog:
        reply = self._endpoint.request(
            self._guardian, lambda corr: p.GetPlugin(JOURNAL, plugin_id, corr),
            timeout=60.0, what=f"starting journal {plugin_id!r}")
        if isinstance(reply, p.Failure):
            raise reply.error
        return HostedEventLog.connect(self._endpoint.request, reply.address)

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
        reply = self._endpoint.request(
            self._guardian, lambda corr: p.GetPlugin(kind, plugin_id, corr),
            timeout=60.0, what=f"starting {kind} {plugin_id!r}")
        if isinstance(reply, p.Failure):
            raise reply.error
        result = self._endpoint.request(
            reply.address, lambda corr: p.PluginCommand(message, corr),
            timeout=timeout, what=f"running a {kind} plugin command")
        if isinstance(result, p.Failure):
            raise result.error
        return result


def _check_entity_constructor(type_name: str, cls: type[Actor], args: tuple[Any, ...],
                              kwargs: dict[str, Any]) -> None:
    """Raise `TypeError` unless ``cls(entity_id, *args, **kwargs)`` binds to its constructor.

    Found only at each entity's start before: every message to the type failed with Python's
    "__init__() takes exactly one argument", which did not say that the id comes first.
    """
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a constructor inspect cannot read: its start will tell
        return
    try:
        signature.bind("entity-id", *args, **kwargs)
    except TypeError as e:
        raise TypeError(
            f"entities({type_name!r}, {cls.__qualname__}, ...): each entity is built as "
            f"{cls.__qualname__}(entity_id, *args, **kwargs), which its constructor does not "
            f"take ({e}); give it an __init__(self, entity_id, ...)") from None


@atexit.register
def _shutdown_all() -> None:
    for system in list(_live):
        try:
            system.shutdown()
        except Exception:
            log.debug("shutdown at exit failed", exc_info=True)


def _call(method: weakref.WeakMethod[Any], *args: Any) -> None:
    """Call the method behind `method` with `args` unless its object was collected."""
    bound = method()
    if bound is not None:
        bound(*args)


def _first_dead(processes: tuple[tuple[str, OwnerProcess], ...]) -> \
        tuple[str, OwnerProcess] | None:
    """The first of `processes` that is no longer alive, or None."""
    for what, process in processes:
        if not process.is_alive():
            return what, process
    return None


def _resolved(spec: str) -> Any:
    """The object a "module:Name" spec names, or None where it does not import."""
    try:
        return pkgutil.resolve_name(spec)
    except Exception:  # noqa: BLE001 - a node checks its specs itself, naming the error
        return None


def _innermost(spec: str, settings: Mapping[str, Any]) -> str:
    """The plugin that stores the data: a test kit plugin's `wrapped` one (inmem by default)."""
    while spec.startswith("persistent_actors.testing") and \
            spec.rpartition(":")[2] in ("TestJournal", "TestSnapshotStore"):
        wrapped = settings.get("wrapped", {"plugin": "inmem"})
        if not isinstance(wrapped, Mapping):
            break
        spec, settings = str(wrapped.get("plugin", "inmem")), wrapped
    return spec
