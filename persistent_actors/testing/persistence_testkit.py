"""Persistence test kit: journal and snapshot-store plugins whose failures a test controls.

Akka.Persistence.TestKit's idea in Python. Configure the test plugins, which wrap any other
plugin (the in-memory one by default)::

    [persistence.journal]
    plugin = "persistent_actors.testing:TestJournal"
    wrapped = { plugin = "sqlite", path = "test.db" }      # optional

    [persistence.snapshot_store]
    plugin = "persistent_actors.testing:TestSnapshotStore"

then, in the test, tell them how to behave::

    kit = PersistenceTestKit(system)
    kit.journal.on_write(Fail(on_type=ItemAdded))           # writes holding an ItemAdded fail
    with kit.journal.on_recovery(Delay(2.0)):               # back to Pass when the block ends
        ...
    kit.snapshots.on_load(Fail())

Behaviours: `Pass`, `Fail`, `Reject` (journal writes only: the event is not stored and the actor
goes on), `Delay`. `Fail` and `Reject` apply to every operation by default, or only to events
of a type (`on_type`, subclasses included) or matching a predicate (`predicate`; a module-level
function, since on the multi-process base it travels to the plugin's process), optionally
inverted with ``unless=True``; they may also wait `delay` seconds first.

Writes are group-committed: a `Fail` on write fails the whole batch the plugin received, which
may hold other actors' writes too, just as a real database failure would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import math
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType, UnionType
from typing import TYPE_CHECKING, Any, Final

from persistent_actors._config import JOURNAL, SNAPSHOT_STORE, resolve_plugin
from persistent_actors._serialization import default_serializer
from persistent_actors.errors import ConfigError, JournalError, PluginError, SnapshotStoreError
from persistent_actors.journal import AtomicWrite, Journal, PersistentRepr
from persistent_actors.snapshot import (
    SelectedSnapshot,
    SnapshotMetadata,
    SnapshotSelectionCriteria,
    SnapshotStore,
)

if TYPE_CHECKING:
    from persistent_actors._system import ActorSystem

log = logging.getLogger(__name__)


# What `isinstance` takes: a class, a tuple of classes, a union (``A | B``).
ClassFilter = type[Any] | tuple[type[Any], ...] | UnionType

__all__ = [
    "Delay",
    "Fail",
    "Pass",
    "PersistenceTestKit",
    "Reject",
    "TestJournal",
    "TestSnapshotStore",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Pass:
    """Behave like the wrapped plugin."""


@dataclasses.dataclass(frozen=True, slots=True)
class Delay:
    """Wait `seconds`, then behave like the wrapped plugin."""

    seconds: float

    def __post_init__(self) -> None:
        _check_delay("Delay.seconds", self.seconds)


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    """Raise a plugin error for matching events (every operation when no filter is given)."""

    on_type: ClassFilter | None = None
    predicate: Callable[[Any], bool] | None = None
    unless: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        _check_delay("Fail.delay", self.delay)
        _check_filter("Fail", self.on_type, self.predicate, self.unless)

    def matches(self, events: Sequence[Any]) -> bool:
        """True if the behaviour applies to an operation on `events`."""
        return _matches(self.on_type, self.predicate, self.unless, events)


def _check_delay(name: str, value: Any) -> None:
    # (1e300 was accepted and held the plugin for ever: no test waits 11 days.)
    if not isinstance(value, int | float) or isinstance(value, bool) or \
            not math.isfinite(value) or not 0 <= value <= _MAX_DELAY:
        raise ValueError(f"{name} must be a finite number of seconds in [0, {_MAX_DELAY:g}], "
                         f"got {value!r}")


_MAX_DELAY = 1e6


def _check_filter(name: str, on_type: Any, predicate: Any, unless: Any) -> None:
    # Checked here: found at the next write, a bad filter failed (and stopped) the actor.
    if on_type is not None:
        try:  # a class, a tuple of classes or a union, as isinstance takes them
            isinstance(None, on_type)
        except TypeError:
            raise TypeError(f"{name}.on_type must be a class, a tuple of classes or a union "
                            f"(or None), got {on_type!r}") from None
    if predicate is not None and not callable(predicate):
        raise TypeError(f"{name}.predicate must be callable (or None), got {predicate!r}")
    if not isinstance(unless, bool):
        raise TypeError(f"{name}.unless must be a bool, got {unless!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    """Reject matching journal writes: not stored, the actor's ``on_persist_rejected`` runs."""

    on_type: ClassFilter | None = None
    predicate: Callable[[Any], bool] | None = None
    unless: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        _check_delay("Reject.delay", self.delay)
        _check_filter("Reject", self.on_type, self.predicate, self.unless)

    def matches(self, events: Sequence[Any]) -> bool:
        """True if the behaviour applies to a write of `events`."""
        return _matches(self.on_type, self.predicate, self.unless, events)


Behaviour = Pass | Fail | Reject | Delay


def _filtered(behaviour: Fail | Reject) -> bool:
    return behaviour.on_type is not None or behaviour.predicate is not None


def _matches(on_type: ClassFilter | None, predicate: Callable[[Any], bool] | None, unless: bool,
             events: Sequence[Any]) -> bool:
    if on_type is None and predicate is None:
        hit = True
    else:
        hit = any((on_type is None or isinstance(e, on_type))
                  and (predicate is None or predicate(e)) for e in events)
    return hit != unless


@dataclasses.dataclass(frozen=True, slots=True)
class SetBehaviour:
    """Plugin command: behave as `behaviour` for `operation`."""

    operation: str
    behaviour: Behaviour
    # The modules of the classes registered where the test runs (see `_import_modules`).
    modules: tuple[str, ...] = ()


JOURNAL_OPERATIONS: Final = ("write", "recovery", "delete")
SNAPSHOT_OPERATIONS: Final = ("save", "load", "delete")


@dataclasses.dataclass(frozen=True, slots=True)
class _Undecodable:
    """An event this process cannot decode (its class is not registered here)."""

    manifest: str
    error: str


def _decode(manifest: str, payload: bytes) -> Any:
    try:
        return default_serializer.from_binary(manifest, payload)
    except Exception as e:  # noqa: BLE001 - only a filtered behaviour needs it (`apply`)
        return _Undecodable(manifest, str(e))


def _import_modules(modules: Sequence[str]) -> None:
    """Import the modules that register the test's event classes, in the plugin's process.

    On multiproc-tcp the plugin runs in a process of its own, which imported only what it
    needed when it started; a `Fail(on_type=...)` must decode events to match them.
    """
    for name in modules:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - an event of it then fails loudly in apply
                log.warning("persistence test kit: cannot import %s in the plugin's process "
                            "(%s: %s)", name, type(e).__name__, e)


class _Behaviours:
    """The behaviour per operation of one test plugin, and applying it."""

    def __init__(self, operations: Sequence[str], error: type[Exception]) -> None:
        self._operations = tuple(operations)
        self._error = error
        self.current: dict[str, Behaviour] = dict.fromkeys(operations, Pass())

    def set(self, command: Any) -> None:
        if not isinstance(command, SetBehaviour) or command.operation not in self._operations:
            raise ConfigError(f"expected SetBehaviour for one of {list(self._operations)}, "
                              f"got {command!r}")
        if isinstance(command.behaviour, Reject) and command.operation != "write":
            raise ConfigError("Reject applies to journal writes only; use Fail for "
                              f"{command.operation!r}")
        _import_modules(command.modules)
        self.current[command.operation] = command.behaviour

    async def apply(self, operation: str, events: Sequence[Any] = ()) -> Behaviour:
        """Wait any delay, raise for a matching Fail, and return the behaviour.

        A Reject is returned for the caller to apply per write. A Fail or Reject filtered by
        type or predicate fails the operation if an event cannot be decoded here: matching
        nothing silently would let a test pass that should fail.
        """
        behaviour = self.current[operation]
        if isinstance(behaviour, Fail | Reject) and _filtered(behaviour):
            undecodable = next((e for e in events if isinstance(e, _Undecodable)), None)
            if undecodable is not None:
                raise self._error(
                    f"the persistence test kit cannot decode an event of manifest "
                    f"{undecodable.manifest!r} in the plugin's process to match {behaviour!r}: "
                    f"{undecodable.error}; register its class in a module the test imports "
                    "before setting the behaviour")
        match behaviour:
            case Delay(seconds):
                await asyncio.sleep(seconds)
            case Fail() if behaviour.matches(events):
                await asyncio.sleep(behaviour.delay)
                raise self._error(f"{operation} failed by the persistence test kit")
            case Reject():
                await asyncio.sleep(behaviour.delay)
        return behaviour


def _wrapped(kind: str, settings: Mapping[str, Any]) -> Any:
    extra = set(settings) - {"wrapped"}
    if extra:
        raise ConfigError(f"unknown test plugin setting(s) {sorted(extra)}; accepted: ['wrapped']")
    given = settings.get("wrapped", {"plugin": "inmem"})
    # Checked here: dict() of a str or a list failed with a message naming neither the setting
    # nor what it takes ("dictionary update sequence element #0 has length 1").
    if not isinstance(given, Mapping):
        raise ConfigError(f"setting 'wrapped' must be a table of the wrapped plugin's settings, "
                          f"as wrapped = {{ plugin = \"sqlite\", path = \"...\" }}, got {given!r}")
    wrapped = dict(given)
    spec = wrapped.pop("plugin", "inmem")
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"setting 'wrapped.plugin' must be a plugin name (\"inmem\", "
                          f"\"sqlite\", ...) or \"package.module:Class\", got {spec!r}")
    return resolve_plugin(kind, spec)(wrapped)


class _Wrapping:
    """The test kit plugins' common part: the wrapped plugin's start and close, and commands."""

    wrapped: Journal | SnapshotStore
    behaviours: _Behaviours

    async def start(self) -> None:
        """Start the wrapped plugin."""
        await self.wrapped.start()

    async def close(self) -> None:
        """Close the wrapped plugin."""
        await self.wrapped.close()

    async def receive_plugin_internal(self, message: Any) -> Any:
        """Accept a `SetBehaviour` command."""
        self.behaviours.set(message)


class TestJournal(_Wrapping, Journal):
    """A journal that wraps another and fails, rejects or delays as the test says."""

    __test__ = False  # not a pytest test class

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.wrapped: Journal = _wrapped(JOURNAL, self.settings)
        self.behaviours = _Behaviours(JOURNAL_OPERATIONS, JournalError)

    async def write_messages(self, writes: Sequence[AtomicWrite]) -> list[BaseException | None]:
        """Write through, unless the write behaviour fails or rejects."""
        decoded = [[_decode(r.manifest, r.payload) for r in w.payload] for w in writes]
        behaviour = await self.behaviours.apply(
            "write", [e for events in decoded for e in events])
        if not isinstance(behaviour, Reject):
            return await self.wrapped.write_messages(writes)
        results: list[BaseException | None] = [
            JournalError("write rejected by the persistence test kit")
            if behaviour.matches(events) else None for events in decoded]
        kept = [w for w, r in zip(writes, results, strict=True) if r is None]
        stored = iter(await self.wrapped.write_messages(kept) if kept else [])
        return [r if r is not None else next(stored) for r in results]

    async def replay_messages(self, persistence_id: str, from_sequence_nr: int,
                              to_sequence_nr: int, max_count: int) -> AsyncIterator[PersistentRepr]:
        """Replay through; a typed Fail raises at the first matching event."""
        async for repr_ in self.wrapped.replay_messages(persistence_id, from_sequence_nr,
                                                        to_sequence_nr, max_count):
            behaviour = self.behaviours.current["recovery"]
            if isinstance(behaviour, Fail) and _filtered(behaviour):
                await self.behaviours.apply("recovery", [_decode(repr_.manifest, repr_.payload)])
            yield repr_

    async def read_highest_sequence_nr(self, persistence_id: str, from_sequence_nr: int) -> int:
        """Read through, after the recovery behaviour (Fail, Delay)."""
        # Recovery starts here: an unfiltered Fail or a Delay applies once, here; a Fail on a
        # type or predicate waits for a matching replayed event.
        behaviour = self.behaviours.current["recovery"]
        if not (isinstance(behaviour, Fail) and _filtered(behaviour)):
            await self.behaviours.apply("recovery")
        return await self.wrapped.read_highest_sequence_nr(persistence_id, from_sequence_nr)

    async def delete_messages_to(self, persistence_id: str, to_sequence_nr: int) -> None:
        """Delete through, unless the delete behaviour fails."""
        await self.behaviours.apply("delete")
        await self.wrapped.delete_messages_to(persistence_id, to_sequence_nr)


class TestSnapshotStore(_Wrapping, SnapshotStore):
    """A snapshot store that wraps another and fails or delays as the test says."""

    __test__ = False  # not a pytest test class

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.wrapped: SnapshotStore = _wrapped(SNAPSHOT_STORE, self.settings)
        self.behaviours = _Behaviours(SNAPSHOT_OPERATIONS, SnapshotStoreError)

    async def load(self, persistence_id: str,
                   criteria: SnapshotSelectionCriteria) -> SelectedSnapshot | None:
        """Load through; the load behaviour may fail or delay it."""
        selected = await self.wrapped.load(persistence_id, criteria)
        events = [] if selected is None else [_decode(selected.manifest, selected.payload)]
        await self.behaviours.apply("load", events)
        return selected

    async def save(self, metadata: SnapshotMetadata, manifest: str, payload: bytes) -> None:
        """Save through, unless the save behaviour fails."""
        await self.behaviours.apply("save", [_decode(manifest, payload)])
        await self.wrapped.save(metadata, manifest, payload)

    async def delete(self, metadata: SnapshotMetadata) -> None:
        """Delete through, unless the delete behaviour fails."""
        await self.behaviours.apply("delete")
        await self.wrapped.delete(metadata)

    async def delete_by_criteria(self, persistence_id: str,
                                 criteria: SnapshotSelectionCriteria) -> None:
        """Delete through, unless the delete behaviour fails."""
        await self.behaviours.apply("delete")
        await self.wrapped.delete_by_criteria(persistence_id, criteria)


class _Restore:
    """Returned by the ``on_*`` setters: a context manager that restores `Pass` on exit."""

    def __init__(self, reset: Callable[[], None]) -> None:
        self._reset = reset

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._reset()


class _PluginControls:
    def __init__(self, system: ActorSystem, kind: str, plugin_id: str | None) -> None:
        self._system = system
        self._kind = kind
        self._plugin_id = plugin_id

    def _set(self, operation: str, behaviour: Behaviour) -> _Restore:
        if not isinstance(behaviour, Pass | Fail | Reject | Delay):
            raise TypeError(f"expected Pass, Fail, Reject or Delay, got {behaviour!r}")
        modules: tuple[str, ...] = ()
        if isinstance(behaviour, Fail | Reject) and _filtered(behaviour):
            modules = tuple(sorted({cls.__module__ for cls in default_serializer.registered()
                                    if cls.__module__ not in ("__main__", "builtins")}))
        try:
            self._system.plugin_command(self._kind, SetBehaviour(operation, behaviour, modules),
                                        self._plugin_id)
        except PluginError as e:
            if "accepts no plugin commands" not in str(e):
                raise
            test_plugin = "TestJournal" if self._kind == JOURNAL else "TestSnapshotStore"
            raise ConfigError(
                f"the persistence test kit needs the {self._kind.replace('_', ' ')} "
                f"{self._plugin_id or 'default'!r} to be persistent_actors.testing:"
                f"{test_plugin} (plugin = \"persistent_actors.testing:{test_plugin}\", "
                f"optionally wrapping another with wrapped = {{ plugin = ... }}): {e}") from e
        def restore() -> None:
            self._set(operation, Pass())

        return _Restore(restore)


class JournalControls(_PluginControls):
    """Behaviour of a `TestJournal`'s writes, recoveries (replay) and deletes."""

    def on_write(self, behaviour: Behaviour) -> _Restore:
        """Apply `behaviour` to writes (persist calls)."""
        return self._set("write", behaviour)

    def on_recovery(self, behaviour: Behaviour) -> _Restore:
        """Apply `behaviour` to replays (a typed Fail fails on the first matching event)."""
        return self._set("recovery", behaviour)

    def on_delete(self, behaviour: Behaviour) -> _Restore:
        """Apply `behaviour` to ``delete_messages``."""
        return self._set("delete", behaviour)


class SnapshotControls(_PluginControls):
    """Behaviour of a `TestSnapshotStore`'s saves, loads and deletes."""

    def on_save(self, behaviour: Behaviour) -> _Restore:
        """Apply `behaviour` to ``save_snapshot``."""
        return self._set("save", behaviour)

    def on_load(self, behaviour: Behaviour) -> _Restore:
        """Apply `behaviour` to loading a snapshot during recovery."""
        return self._set("load", behaviour)

    def on_delete(self, behaviour: Behaviour) -> _Restore:
        """Apply `behaviour` to ``delete_snapshot(s)``."""
        return self._set("delete", behaviour)


class PersistenceTestKit:
    """Controls the `TestJournal` and `TestSnapshotStore` of a running actor system."""

    __test__ = False  # not a pytest test class

    def __init__(self, system: ActorSystem, journal_plugin_id: str | None = None,
                 snapshot_plugin_id: str | None = None) -> None:
        # The plugin processes import this module for TestJournal; they need no ActorSystem.
        from persistent_actors._system import ActorSystem  # noqa: PLC0415

        # Checked here, as TestProbe does: anything else failed only at the first setter.
        if not isinstance(system, ActorSystem):
            raise TypeError(f"PersistenceTestKit needs the ActorSystem whose test plugins it "
                            f"controls, got {system!r}")
        self.journal = JournalControls(system, JOURNAL, journal_plugin_id)
        self.snapshots = SnapshotControls(system, SNAPSHOT_STORE, snapshot_plugin_id)
