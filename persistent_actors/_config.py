"""Configuration: a mapping or a TOML file, validated up front with errors that name the key.

Shape (every key optional)::

    [actor_system]
    base = "simple"                  # or "multiproc-tcp"
    admin_port = 19500               # multiproc-tcp only; default: a free port
    bind_address = "127.0.0.1"       # multiproc-tcp only: where actor ports listen
    secret_file = "node.key"         # multiproc-tcp only: authenticate every frame with this key
    host_processes = 2               # multiproc-tcp only: actor_of actors share this many host
                                     # processes (default: CPUs; 0: one process per actor)

    [persistence]
    recovery_event_timeout = 30.0    # seconds recovery may go without progress
    internal_stash_capacity = 100000 # messages stashed while persisting/recovering
    max_concurrent_recoveries = 50   # actors recovering at once; the others wait their turn

    [persistence.replay_filter]      # Akka's replay-filter (several writers of one id)
    mode = "repair-by-discard-old"   # or "fail", "warn", "off"
    window_size = 100                # events held back to detect an old writer
    max_old_writers = 10             # old writers remembered

    [persistence.journal]
    plugin = "inmem"                 # "inmem", "sqlite", an entry-point name, or "module:Class"
    # ...the plugin's own settings sit beside `plugin`
    # event_adapters, event_adapter_bindings: the runtime's (persistent_actors.adapters)

    [persistence.snapshot_store]
    plugin = "inmem"

    [persistence.journals.<id>]      # extra journals an actor selects with journal_plugin_id
    [persistence.snapshot_stores.<id>]

    [sharding]                       # entities (system.entities): Akka's cluster sharding
    shards = 256                     # entity -> shard by zlib.crc32 of its id
    host_processes = 2               # multiproc-tcp: host actors per entity type (default: CPUs)
    passivate_idle_after = 120.0     # seconds without a message before passivation; 0 = never
    max_active_entities = 100000     # per host; the least recently used are passivated first
    remember_entities = false        # true, or a list of type names: restarted with their host
    buffer_size = 100000             # messages held for a restarting host; more are refused

    [cluster]                        # entities across nodes (persistent_actors.cluster)
    leader = "10.0.0.1:19500"        # the thespian convention leader, "host:port"
    admin_port = 19500               # this process's admin port  (these three replace
    bind_address = "10.0.0.1"        # where its ports listen       actor_system's, which a
    secret_file = "/etc/pa/node.key" # frame authentication key     cluster process leaves out)
    node_id = "node-a"               # default: "bind_address:admin_port"
    heartbeat_interval = 1.0         # seconds between a node's membership rounds
    lease_ttl = 10.0                 # seconds a shard lease lasts without renewal
    rebalance_limit = 16             # shards a node hands off per round and entity type
    handoff_timeout = 10.0           # seconds after which a slow handoff is logged

    [cluster.entities]               # a node hosts these (a client process names none)
    cart = "samples.cart:UserCart"

`ActorSystem(name)` with no config reads the TOML file named by ``PERSISTENT_ACTORS_CONFIG``
if that variable is set.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pkgutil
import re
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from persistent_actors._replay_filter import REPLAY_FILTER_MODES, ReplayFilterSettings
from persistent_actors.adapters import (
    ADAPTERS_KEY,
    BINDINGS_KEY,
    AdapterSpec,
    split_adapter_settings,
)
from persistent_actors.errors import ConfigError, PluginError
from persistent_actors.journal import Journal
from persistent_actors.snapshot import SnapshotStore

__all__ = ["CONFIG_ENV_VAR", "ClusterSettings", "PluginConfig", "Settings", "ShardingSettings",
           "load_settings", "resolve_plugin"]

CONFIG_ENV_VAR: Final = "PERSISTENT_ACTORS_CONFIG"

BASES: Final = {"simple": "simpleSystemBase", "multiproc-tcp": "multiprocTCPBase"}

JOURNAL: Final = "journal"
SNAPSHOT_STORE: Final = "snapshot_store"
DEFAULT_PLUGIN_ID: Final = "default"

# [persistence] keys of the runtime itself, with their defaults: the seconds recovery may go
# without progress (Akka's recovery-event-timeout), and how many messages a persistent actor
# stashes while persisting or recovering before its overflow strategy applies, and how many
# actors recover at once (Akka's max-concurrent-recoveries).
_RUNTIME_DEFAULTS: Final[dict[str, float]] = {
    "recovery_event_timeout": 30.0,
    "internal_stash_capacity": 100_000,
    "max_concurrent_recoveries": 50,
}
# Their accepted ranges (inclusive): a recovery that may stall for more than a day has no
# timeout worth the name, and a timer that far away overflows; a stash beyond 100 million
# messages is a memory leak, not a buffer.
_RUNTIME_MAXIMA: Final[dict[str, float]] = {
    "recovery_event_timeout": 86_400.0,
    "internal_stash_capacity": 100_000_000,
    "max_concurrent_recoveries": 1_000_000,
}

_ENTRY_POINT_GROUPS: Final = {
    JOURNAL: "persistent_actors.journal_plugins",
    SNAPSHOT_STORE: "persistent_actors.snapshot_store_plugins",
}
# Built-ins resolve without entry points, so a source checkout works before `pip install`.
_BUILTINS: Final = {
    JOURNAL: {
        "inmem": "journal_plugins.inmem:InmemJournal",
        "sqlite": "journal_plugins.sqlite:SqliteJournal",
    },
    SNAPSHOT_STORE: {
        "inmem": "journal_plugins.inmem:InmemSnapshotStore",
        "sqlite": "journal_plugins.sqlite:SqliteSnapshotStore",
    },
}


def _cpus() -> int:
    """The default number of host processes, for entities and for actor_of actors: the CPUs.

    The CPUs this process may run on (``os.sched_getaffinity``, where the platform has it), not
    the machine's (``os.cpu_count()``): a container pinned to 2 of 64 CPUs gets 2 hosts, as
    Python 3.13's ``os.process_cpu_count()`` counts. Capped at 1024, the keys' maximum, so the
    default always passes their validation.
    """
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count()
    return min(cpus or 1, 1024)


@dataclasses.dataclass(frozen=True, slots=True)
class PluginConfig:
    """One configured journal or snapshot store: its plugin spec and its own settings."""

    kind: str
    plugin_id: str
    spec: str
    settings: dict[str, Any]
    # Journals only: the event adapters bound in the section (runtime keys, not the plugin's).
    adapters: AdapterSpec = dataclasses.field(default_factory=AdapterSpec)


@dataclasses.dataclass(frozen=True, slots=True)
class ShardingSettings:
    """The ``[sharding]`` table: how entities are spread over host actors and passivated."""

    shards: int = 256
    host_processes: int = dataclasses.field(default_factory=_cpus)
    passivate_idle_after: float = 120.0
    max_active_entities: int = 100_000
    # Akka's remember-entities: True for every entity type, or the names of the types.
    remember_entities: bool | frozenset[str] = False
    # Akka's buffer-size: messages held for an entity host whose process is being restarted.
    buffer_size: int = 100_000

    def remembers(self, type_name: str) -> bool:
        """True if the entities of `type_name` are remembered (``remember_entities``)."""
        if isinstance(self.remember_entities, bool):
            return self.remember_entities
        return type_name in self.remember_entities


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSettings:
    """The ``[cluster]`` table: this process is a cluster node or client.

    Membership and shard leases live in the default journal's PostgreSQL schema (README
    "Running a cluster").
    """

    leader: tuple[str, int]
    dsn: str
    schema: str
    admin_port: int | None = None
    bind_address: str = "127.0.0.1"
    secret_file: str | None = None
    node_id: str | None = None
    heartbeat_interval: float = 1.0
    lease_ttl: float = 10.0
    rebalance_limit: int = 16
    handoff_timeout: float = 10.0
    entities: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Validated configuration of one actor system."""

    base: str = "simple"
    admin_port: int | None = None
    journals: dict[str, PluginConfig] = dataclasses.field(default_factory=dict)
    snapshot_stores: dict[str, PluginConfig] = dataclasses.field(default_factory=dict)
    bind_address: str = "127.0.0.1"
    recovery_event_timeout: float = 30.0
    internal_stash_capacity: int = 100_000
    max_concurrent_recoveries: int = 50
    replay_filter: ReplayFilterSettings = dataclasses.field(default_factory=ReplayFilterSettings)
    sharding: ShardingSettings = dataclasses.field(default_factory=ShardingSettings)
    secret_file: str | None = None
    cluster: ClusterSettings | None = None
    # multiproc-tcp: actor_of actors live in this many shared host processes, by default one
    # per CPU as Akka.NET runs many actors on a thread pool in one process: a process per actor
    # costs a fork, a process' memory and a TCP frame per message, which held service traffic
    # back. 0 = one process per actor (thespian's model), an opt-in for isolation: a blocked
    # or crashing handler then touches its own actor only. The simple base ignores it.
    host_processes: int = dataclasses.field(default_factory=_cpus)

    @property
    def thespian_base(self) -> str:
        """The thespian system base class name."""
        return BASES[self.base]

    def plugin(self, kind: str, plugin_id: str | None) -> PluginConfig:
        """The plugin configured under `plugin_id` (the default when None)."""
        table = self.journals if kind == JOURNAL else self.snapshot_stores
        key = plugin_id or DEFAULT_PLUGIN_ID
        if key in table:
            return table[key]
        # A plugin's name ("inmem", "sqlite") is no id: with no section of that id it fell back
        # to the plugin with no settings, silently (events in memory beside a SQLite default).
        section = "persistence.journals" if kind == JOURNAL else "persistence.snapshot_stores"
        raise ConfigError(
            f"no {kind.replace('_', ' ')} named {plugin_id!r}: add a [{section}.{plugin_id}] "
            f"section; configured: {sorted(table)}"
        )


def _expect_table(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {key!r} must be a table/mapping, got {type(value).__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"unknown config key {where + '.' if where else ''}{key}; "
                f"accepted keys{' in [' + where + ']' if where else ''}: {sorted(allowed)}"
            )


def _plugin_config(kind: str, plugin_id: str, value: Any, key: str) -> PluginConfig:
    table = dict(_expect_table(value, key))
    own = sorted(k for k in table if k not in (ADAPTERS_KEY, BINDINGS_KEY))
    if "plugin" not in table and own:
        # Without `plugin` the in-memory default would reject the settings as its own
        # ("InmemJournal: unknown setting 'path'"), which blames the key, not the omission.
        raise ConfigError(f"config key {key}.plugin is missing: a table with settings "
                          f"({', '.join(own)}) must name its plugin, e.g. "
                          f"plugin = \"sqlite\" (without any settings the default is \"inmem\")")
    spec = table.pop("plugin", "inmem")
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"config key {key}.plugin must be a non-empty string, got {spec!r}")
    cls = resolve_plugin(kind, spec)  # fail at start, naming the key, not at the first write
    adapters = AdapterSpec()
    if kind == JOURNAL:
        table, adapters = split_adapter_settings(table, key)
    # Every configured plugin checks its settings now, also one no actor has used yet: its
    # constructor validates (and does no I/O; connections open in `start`).
    try:
        cls(table)
    except ConfigError as e:
        kind_of_error = PluginError if isinstance(e, PluginError) else ConfigError
        raise kind_of_error(f"[{key}] {e}") from e
    except Exception as e:
        raise PluginError(f"[{key}] plugin {spec!r} rejected its settings: "
                          f"{type(e).__name__}: {e}") from e
    return PluginConfig(kind, plugin_id, spec, table, adapters)


def _ipv4_address(key: str, value: Any) -> ipaddress.IPv4Address:
    """`value` as an IPv4 address, or a `ConfigError` naming `key`.

    Thespian's TCP transport speaks IPv4 only ("::1" failed later, as a port "in use" or an
    address family error).
    """
    try:
        # A str only: ip_address(7) would be 0.0.0.7.
        address = ipaddress.ip_address(value if isinstance(value, str) else "-")
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key} must be an IPv4 address string (such as "
                          f"\"127.0.0.1\"), got {value!r}") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise ConfigError(f"config key {key} must be an IPv4 address: thespian's TCP transport "
                          f"speaks IPv4 only, got {value!r}")
    return address


def load_settings(config: Mapping[str, Any] | str | os.PathLike[str] | None) -> Settings:
    """Validate `config` (a mapping, a TOML path, or None for the environment/defaults)."""
    if config is None:
        env = os.environ.get(CONFIG_ENV_VAR)
        config = env if env else {}
    if isinstance(config, str | os.PathLike):
        if not os.fspath(config):
            raise ConfigError("config file path is empty: give the path of a TOML file, a "
                              "mapping, or None for the defaults")
        path = Path(config)
        try:
            with path.open("rb") as f:
                config = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {str(path)!r} is not UTF-8 text, as TOML must be: "
                              f"{e}") from e
        except OSError as e:  # a directory, no permission
            raise ConfigError(f"config file {str(path)!r} cannot be read: "
                              f"{e.strerror or e}") from e
    root = _expect_table(config, "<root>")
    _check_keys(root, {"actor_system", "persistence", "sharding", "cluster"}, "")

    system = _expect_table(root.get("actor_system", {}), "actor_system")
    _check_keys(system, {"base", "admin_port", "bind_address", "secret_file", "host_processes"},
                "actor_system")
    base = system.get("base", "simple")
    # isinstance first: an unhashable value (a TOML array or table) made `in` raise TypeError.
    if not isinstance(base, str) or base not in BASES:
        raise ConfigError(
            f"config key actor_system.base has unknown value {base!r}; accepted: {sorted(BASES)}"
        )
    admin_port = system.get("admin_port")
    if admin_port is not None and (
        not isinstance(admin_port, int) or isinstance(admin_port, bool)
        or not 1024 <= admin_port <= 65535
    ):
        raise ConfigError(
            f"config key actor_system.admin_port must be an int in 1024..65535, got {admin_port!r}"
        )

    bind_address = system.get("bind_address", "127.0.0.1")
    _ipv4_address("actor_system.bind_address", bind_address)
    secret_file = system.get("secret_file")
    if secret_file is not None and (not isinstance(secret_file, str) or not secret_file):
        raise ConfigError(f"config key actor_system.secret_file must be the path of a key file, "
                          f"got {secret_file!r}")

    host_processes = system.get("host_processes", _cpus())
    if not isinstance(host_processes, int) or isinstance(host_processes, bool) or \
            not 0 <= host_processes <= 1024:
        raise ConfigError(f"config key actor_system.host_processes must be an int in 0..1024 "
                          f"(0: one process per actor), got {host_processes!r}")

    persistence = _expect_table(root.get("persistence", {}), "persistence")
    _check_keys(persistence, {"journal", "snapshot_store", "journals", "snapshot_stores",
                              "replay_filter", *_RUNTIME_DEFAULTS}, "persistence")
    runtime = {key: _number(persistence, key, default)
               for key, default in _RUNTIME_DEFAULTS.items()}
    journals = {DEFAULT_PLUGIN_ID: _plugin_config(
        JOURNAL, DEFAULT_PLUGIN_ID, persistence.get("journal", {}), "persistence.journal")}
    snapshot_stores = {DEFAULT_PLUGIN_ID: _plugin_config(
        SNAPSHOT_STORE, DEFAULT_PLUGIN_ID, persistence.get("snapshot_store", {}),
        "persistence.snapshot_store")}
    for kind, key, table in ((JOURNAL, "journals", journals),
                             (SNAPSHOT_STORE, "snapshot_stores", snapshot_stores)):
        for plugin_id, value in _expect_table(persistence.get(key, {}),
                                              f"persistence.{key}").items():
            if plugin_id == DEFAULT_PLUGIN_ID or not plugin_id:
                # It replaced [persistence.journal] without a word (events went to memory).
                single = "journal" if kind == JOURNAL else "snapshot_store"
                raise ConfigError(
                    f"[persistence.{key}.{plugin_id}]: the id {plugin_id!r} is reserved "
                    f"(the default one is configured under [persistence.{single}]); name "
                    "extra ones otherwise")
            table[plugin_id] = _plugin_config(kind, plugin_id, value,
                                              f"persistence.{key}.{plugin_id}")
    cluster = None
    if "cluster" in root:
        cluster = _cluster(root["cluster"], journals[DEFAULT_PLUGIN_ID], system)
        base = "multiproc-tcp"
        admin_port = cluster.admin_port
        bind_address = cluster.bind_address
        secret_file = cluster.secret_file
    return Settings(base, admin_port, journals, snapshot_stores, bind_address,
                    float(runtime["recovery_event_timeout"]),
                    int(runtime["internal_stash_capacity"]),
                    max_concurrent_recoveries=int(runtime["max_concurrent_recoveries"]),
                    replay_filter=_replay_filter(persistence.get("replay_filter", {})),
                    sharding=_sharding(root.get("sharding", {})), secret_file=secret_file,
                    cluster=cluster, host_processes=host_processes)


_CLUSTER_SECONDS: Final = {"heartbeat_interval": (1.0, 60.0), "lease_ttl": (10.0, 3600.0),
                           "handoff_timeout": (10.0, 3600.0)}


def _cluster(value: Any, journal: PluginConfig,
             system: Mapping[str, Any]) -> ClusterSettings:
    where = "cluster"
    table = _expect_table(value, where)
    _check_keys(table, {"leader", "admin_port", "bind_address", "secret_file", "node_id",
                        "entities", "rebalance_limit", *_CLUSTER_SECONDS}, where)
    for key in ("admin_port", "bind_address", "secret_file"):
        if key in system:
            raise ConfigError(f"config key actor_system.{key} and the [cluster] section: a "
                              f"cluster process sets it once, as cluster.{key}")
    if system.get("base", "multiproc-tcp") != "multiproc-tcp":
        raise ConfigError("a [cluster] process runs on the multiproc-tcp base; remove "
                          f"actor_system.base = {system.get('base')!r}")
    leader = table.get("leader")
    host, _, port = leader.rpartition(":") if isinstance(leader, str) else ("", "", "")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"config key cluster.leader must be \"host:port\" (the convention "
                          f"leader's address and admin port), got {leader!r}")
    admin_port = table.get("admin_port")
    if admin_port is not None and (not isinstance(admin_port, int) or isinstance(admin_port, bool)
                                   or not 1024 <= admin_port <= 65535):
        raise ConfigError(f"config key cluster.admin_port must be an int in 1024..65535, "
                          f"got {admin_port!r}")
    bind_address = table.get("bind_address", "127.0.0.1")
    loopback = _ipv4_address("cluster.bind_address", bind_address).is_loopback
    secret_file = table.get("secret_file")
    if secret_file is not None and (not isinstance(secret_file, str) or not secret_file):
        raise ConfigError(f"config key cluster.secret_file must be a file path, got "
                          f"{secret_file!r}")
    if secret_file is None and not loopback:
        raise ConfigError(f"config key cluster.bind_address = {bind_address!r} is not a loopback "
                          "address: without cluster.secret_file every frame is an "
                          "unauthenticated pickle, so a node binds to loopback only")
    node_id = table.get("node_id")
    if node_id is not None and (not isinstance(node_id, str) or not node_id.strip()):
        raise ConfigError(f"config key cluster.node_id must be a non-empty str, got {node_id!r}")
    seconds = {}
    for key, (default, maximum) in _CLUSTER_SECONDS.items():
        number = table.get(key, default)
        if not isinstance(number, int | float) or isinstance(number, bool) or \
                not 0.05 <= number <= maximum:
            raise ConfigError(f"config key cluster.{key} must be a number of seconds in "
                              f"0.05..{maximum:.0f}, got {number!r}")
        seconds[key] = float(number)
    if seconds["lease_ttl"] < 3 * seconds["heartbeat_interval"]:
        raise ConfigError(f"config key cluster.lease_ttl ({seconds['lease_ttl']}) must be at "
                          f"least 3 x cluster.heartbeat_interval ({seconds['heartbeat_interval']})"
                          ": a lease must survive a missed renewal")
    limit = table.get("rebalance_limit", 16)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1_000_000:
        raise ConfigError(f"config key cluster.rebalance_limit must be an int in 1..1000000, "
                          f"got {limit!r}")
    entities = dict(_expect_table(table.get("entities", {}), "cluster.entities"))
    for type_name, spec in entities.items():
        if not type_name or "/" in type_name:
            # Checked apart from the value: a bad type name was reported as a bad class path.
            raise ConfigError(f"config key cluster.entities.{type_name!r}: an entity type name "
                              "must be a non-empty str without '/', as for system.entities()")
        if not isinstance(spec, str) or not re.fullmatch(r"[\w.]+:[\w.]+", spec):
            raise ConfigError(f"config key cluster.entities.{type_name} must be "
                              f"\"package.module:Class\" (an entity class), got {spec!r}")
    if journal.spec != "postgres":
        raise ConfigError("a [cluster] needs the PostgreSQL journal ([persistence.journal] "
                          f"plugin = \"postgres\"): it holds membership and shard leases too; "
                          f"configured: {journal.spec!r}")
    dsn = journal.settings.get("dsn", os.environ.get("PERSISTENT_ACTORS_PG_DSN"))
    schema = journal.settings.get("schema", "persistent_actors")
    return ClusterSettings((host.strip("[]"), int(port)), str(dsn), str(schema), admin_port,
                           bind_address, secret_file, node_id, seconds["heartbeat_interval"],
                           seconds["lease_ttl"], limit, seconds["handoff_timeout"], entities)


def _sharding(value: Any) -> ShardingSettings:
    table = _expect_table(value, "sharding")
    defaults = ShardingSettings()
    _check_keys(table, {"shards", "host_processes", "passivate_idle_after",
                        "max_active_entities", "remember_entities", "buffer_size"}, "sharding")
    ints = {}
    for key, maximum in (("shards", 1_000_000), ("host_processes", 1024),
                         ("max_active_entities", 100_000_000), ("buffer_size", 100_000_000)):
        number = table.get(key, getattr(defaults, key))
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= maximum:
            raise ConfigError(f"config key sharding.{key} must be an int in 1..{maximum}, "
                              f"got {number!r}")
        ints[key] = number
    idle = table.get("passivate_idle_after", defaults.passivate_idle_after)
    # `not 0 <= idle <= ...` is also true for nan.
    if not isinstance(idle, int | float) or isinstance(idle, bool) or not 0 <= idle <= 86_400:
        raise ConfigError("config key sharding.passivate_idle_after must be a number of seconds "
                          f"in 0..86400 (0: never), got {idle!r}")
    remember = table.get("remember_entities", False)
    if isinstance(remember, list) and all(isinstance(t, str) and t for t in remember):
        remember = frozenset(remember)
    elif not isinstance(remember, bool):
        raise ConfigError("config key sharding.remember_entities must be true, false or a list "
                          f"of entity type names, got {remember!r}")
    return ShardingSettings(ints["shards"], ints["host_processes"], float(idle),
                            ints["max_active_entities"], remember, ints["buffer_size"])


def _replay_filter(value: Any) -> ReplayFilterSettings:
    where = "persistence.replay_filter"
    table = _expect_table(value, where)
    defaults = ReplayFilterSettings()
    _check_keys(table, {"mode", "window_size", "max_old_writers"}, where)
    mode = table.get("mode", defaults.mode)
    if not isinstance(mode, str) or mode not in REPLAY_FILTER_MODES:
        raise ConfigError(f"config key {where}.mode has unknown value {mode!r}; accepted: "
                          f"{list(REPLAY_FILTER_MODES)}")
    sizes = {}
    for key in ("window_size", "max_old_writers"):
        size = table.get(key, getattr(defaults, key))
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1_000_000:
            raise ConfigError(f"config key {where}.{key} must be an int in 1..1000000, "
                              f"got {size!r}")
        sizes[key] = size
    return ReplayFilterSettings(mode, sizes["window_size"], sizes["max_old_writers"])


def _number(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key, default)
    maximum = _RUNTIME_MAXIMA[key]
    integral = isinstance(default, int)
    # `not 0 < value <= maximum` is also true for nan.
    if not isinstance(value, int | float) or isinstance(value, bool) or \
            not 0 < value <= maximum or (integral and not isinstance(value, int)):
        kind = "an int in 1.." if integral else "a finite number of seconds in (0, "
        bound = f"{maximum:.0f}" + ("" if integral else "]")
        raise ConfigError(f"config key persistence.{key} must be {kind}{bound}, got {value!r}")
    return value


def available_plugins(kind: str) -> list[str]:
    """Names usable as `plugin = ...` for `kind`: built-ins plus installed entry points."""
    names = set(_BUILTINS[kind])
    names.update(ep.name for ep in metadata.entry_points(group=_ENTRY_POINT_GROUPS[kind]))
    return sorted(names)


def resolve_plugin(kind: str, spec: str) -> type[Any]:
    """Import the plugin class named by `spec` (a plugin name or ``module:Class``)."""
    target = _BUILTINS[kind].get(spec)
    if target is None:
        for ep in metadata.entry_points(group=_ENTRY_POINT_GROUPS[kind], name=spec):
            target = ep.value
    if target is None:
        if ":" not in spec:
            raise PluginError(
                f"unknown {kind.replace('_', ' ')} plugin {spec!r}; available: "
                f"{available_plugins(kind)}, or 'package.module:Class'"
            )
        target = spec
    try:
        obj: Any = pkgutil.resolve_name(target)
    except (ImportError, AttributeError, ValueError) as e:
        raise PluginError(f"cannot load {kind.replace('_', ' ')} plugin {spec!r}: {e}") from e
    base = Journal if kind == JOURNAL else SnapshotStore
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(f"{kind.replace('_', ' ')} plugin {spec!r} is not a {base.__name__} "
                          "subclass")
    return obj
