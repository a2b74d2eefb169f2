"""Event adapters and tags: what is stored may differ from what the actor persisted.

A *write adapter* turns the event an actor persists into what the journal stores, for example
`Tagged(event, tags)` so the read side can select it by tag, or a smaller storage class. The
persist handler still receives the original event. A *read adapter* turns one stored event into
zero or more events on replay and in queries: that is how an old version of an event is upcast
to the current one. Adapters are bound per journal in config, by event type (Akka.NET's
``event-adapters`` and ``event-adapter-bindings``)::

    [persistence.journal]
    plugin = "sqlite"
    path = "events.db"
    event_adapters = { tagger = "shop.adapters:Tagger", v1 = "shop.adapters:ItemAddedV1ToV2" }
    event_adapter_bindings = { "shop.events:ItemAdded" = "tagger", "shop.ItemAdded.v1" = "v1" }

A binding key names a class as ``module:QualName``, or a registered manifest. A read adapter
bound to a manifest that no registered class carries any more receives the stored state as a
plain ``dict``: that is how an event whose class was renamed or removed is still read.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from persistent_actors._serialization import (
    PLAIN_MANIFEST,
    Serializer,
    clip,
    default_serializer,
)
from persistent_actors.errors import ConfigError, SerializationError
from persistent_actors.journal import PersistentRepr

__all__ = [
    "ADAPTERS_KEY",
    "BINDINGS_KEY",
    "AdapterSpec",
    "EventAdapter",
    "EventAdapters",
    "ReadEventAdapter",
    "Tagged",
    "WriteEventAdapter",
    "split_adapter_settings",
]

# The runtime's keys inside a journal's config section; stripped before the plugin sees it.
ADAPTERS_KEY: Final = "event_adapters"
BINDINGS_KEY: Final = "event_adapter_bindings"


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Tagged:
    """An event with tags: the journal stores `payload` and indexes it under each tag.

    Persist it directly (the handler then receives the `Tagged`), or return it from a write
    adapter (the handler receives the original event). Tags are non-empty strings; duplicates
    are dropped, the first-seen order is kept.
    """

    payload: Any
    tags: tuple[str, ...]

    def __init__(self, payload: Any, tags: Iterable[str]) -> None:
        if isinstance(tags, str | bytes | bytearray):
            # A bare string is iterable too; "green" must not become ("g", "r", "e", "n").
            raise TypeError(f"Tagged tags must be an iterable of str, not the "
                            f"{type(tags).__name__} {tags!r}")
        if not isinstance(tags, Iterable):
            raise TypeError(f"Tagged tags must be an iterable of str, got {tags!r}")
        unique: dict[str, None] = {}
        for tag in tags:
            if not isinstance(tag, str) or not tag:
                raise ValueError(f"a tag must be a non-empty str, got {tag!r}")
            unique[tag] = None
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "tags", tuple(unique))


class WriteEventAdapter(ABC):
    """Turns a persisted event into what is stored. Must be stateless: one instance is shared."""

    @abstractmethod
    def to_journal(self, event: Any) -> Any:
        """Return what to store for `event`: any storable value, possibly a `Tagged`."""


class ReadEventAdapter(ABC):
    """Turns a stored event into the events replay and queries deliver. Must be stateless."""

    @abstractmethod
    def from_journal(self, event: Any, manifest: str) -> Sequence[Any]:
        """Return the events `event` stands for today: none, one (possibly upcast) or several.

        `manifest` is the type name the event was stored under. When the binding names a
        manifest that no registered class carries, `event` is the stored state as a dict.
        """


class EventAdapter(WriteEventAdapter, ReadEventAdapter):
    """Both directions in one class (Akka's ``IEventAdapter``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AdapterSpec:
    """The adapter config of one journal, validated, as strings (it pickles across processes).

    `adapters` maps adapter names to ``module:Class``; `bindings` maps an event type (a
    ``module:QualName`` or a manifest) to adapter names, in config order.
    """

    adapters: tuple[tuple[str, str], ...] = ()
    bindings: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when no adapter is bound."""
        return not self.bindings


def split_adapter_settings(
    settings: Mapping[str, Any], where: str
) -> tuple[dict[str, Any], AdapterSpec]:
    """Separate the runtime's adapter keys from a journal's own settings and validate them.

    Args:
        settings: a journal config section (``plugin`` already removed).
        where: the section's config path, for error messages.

    Returns:
        The settings without the adapter keys, and the validated `AdapterSpec`.

    Raises:
        ConfigError: a key has the wrong shape, an adapter class cannot be imported or is not an
            adapter, or a binding names an undeclared adapter; the message names the key.

    """
    rest = dict(settings)
    adapters_value = rest.pop(ADAPTERS_KEY, {})
    bindings_value = rest.pop(BINDINGS_KEY, {})
    if not isinstance(adapters_value, Mapping):
        raise ConfigError(f"config key {where}.{ADAPTERS_KEY} must be a table of name = "
                          f"\"module:Class\", got {type(adapters_value).__name__}")
    if not isinstance(bindings_value, Mapping):
        raise ConfigError(f"config key {where}.{BINDINGS_KEY} must be a table of event type = "
                          f"adapter name(s), got {type(bindings_value).__name__}")
    adapters: list[tuple[str, str]] = []
    for name, target in adapters_value.items():
        key = f"{where}.{ADAPTERS_KEY}.{name}"
        if not isinstance(target, str) or ":" not in target:
            raise ConfigError(f"config key {key} must be a \"module:Class\" string, got {target!r}")
        try:
            _resolve_adapter_class(target)
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            raise ConfigError(f"config key {key}: cannot load event adapter {target!r}: {e}") from e
        adapters.append((str(name), target))
    declared = {name for name, _ in adapters}
    bindings: list[tuple[str, tuple[str, ...]]] = []
    for event_type, names in bindings_value.items():
        key = f"{where}.{BINDINGS_KEY}.{event_type!r}"
        listed = (names,) if isinstance(names, str) else names
        if not isinstance(listed, list | tuple) or not listed or not all(
            isinstance(n, str) for n in listed
        ):
            raise ConfigError(f"config key {key} must be an adapter name or a non-empty list of "
                              f"names, got {names!r}")
        for name in listed:
            if name not in declared:
                raise ConfigError(f"config key {key} names unknown event adapter {name!r}; "
                                  f"declared in {where}.{ADAPTERS_KEY}: {sorted(declared)}")
        writers = [n for n in listed if _is_write_adapter(dict(adapters)[n])]
        if len(writers) > 1:
            raise ConfigError(f"config key {key} binds {len(writers)} write adapters {writers}; "
                              "an event type can have at most one (any number of read adapters)")
        if writers and not _names_a_class(str(event_type)):
            # A write adapter acts on events persisted now, of classes that exist: a mistyped
            # key bound it to nothing, and every event was stored untagged, silently.
            raise ConfigError(
                f"config key {key} binds write adapter {writers[0]!r} to {event_type!r}, which "
                "names no class of that module and is the manifest of no registered class (is "
                "it mistyped?)")
        bindings.append((str(event_type), tuple(listed)))
    return rest, AdapterSpec(tuple(adapters), tuple(bindings))


def _names_a_class(event_type: str) -> bool:
    """False if `event_type` is ``module:QualName`` of a module that has no such class (a typo).

    A key whose module cannot be imported is trusted: it may be a manifest with a colon that
    a module not imported yet registers (a cluster node reads its config before it imports
    its entity classes).
    """
    if default_serializer.class_of(event_type) is not None or ":" not in event_type or \
            "<locals>" in event_type:
        return True  # (a class defined in a function: no import reaches it)
    module_name, _, qualname = event_type.partition(":")
    try:
        module: Any = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - not importable here: cannot tell, so trusted
        return True
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return isinstance(obj, type)


def _resolve_adapter_class(target: str) -> type[Any]:
    obj: Any = pkgutil.resolve_name(target)
    if not (isinstance(obj, type) and issubclass(obj, WriteEventAdapter | ReadEventAdapter)):
        raise TypeError(f"{target} is not a WriteEventAdapter or ReadEventAdapter subclass")
    return obj


def _is_write_adapter(target: str) -> bool:
    return issubclass(_resolve_adapter_class(target), WriteEventAdapter)


class EventAdapters:
    """The adapters of one journal, resolved: applied on persist, on replay and in queries.

    The binding used for an event is the one of the most specific class in its MRO that has
    one (a class matches by ``module:QualName`` or by its registered manifest). On read, a
    binding for the stored manifest itself comes first.
    """

    def __init__(self, spec: AdapterSpec | None = None,
                 serializer: Serializer = default_serializer) -> None:
        self.spec = spec or AdapterSpec()
        self.serializer = serializer
        instances = {name: _resolve_adapter_class(target)()
                     for name, target in self.spec.adapters}
        self._bindings: dict[str, tuple[Any, ...]] = {
            event_type: tuple(instances[name] for name in names)
            for event_type, names in self.spec.bindings
        }
        self._by_class: dict[type[Any], tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    @property
    def is_empty(self) -> bool:
        """True if no adapter is bound: events are stored and replayed as they are."""
        return not self._bindings

    def _bound_to(self, cls: type[Any]) -> tuple[Any, ...]:
        cached = self._by_class.get(cls)
        if cached is not None:
            return cached
        found: tuple[Any, ...] = ()
        for klass in cls.__mro__:
            # A class bound under both of its keys has the adapters of both (it took those of
            # the first key only: a read adapter by class hid a write adapter by manifest).
            for key in (f"{klass.__module__}:{klass.__qualname__}",
                        self.serializer.manifest_of(klass)):
                if key is not None and key in self._bindings:
                    found += tuple(a for a in self._bindings[key] if a not in found)
            if found:
                break
        with self._lock:
            self._by_class[cls] = found
        return found

    def to_journal(self, event: Any) -> tuple[Any, tuple[str, ...]]:
        """Return what to store for `event` and its tags.

        Raises:
            SerializationError: the write adapter raised (the write is then rejected).

        """
        stored = event
        if not isinstance(event, Tagged) and self._bindings:
            writers = [a for a in self._bound_to(type(event)) if isinstance(a, WriteEventAdapter)]
            if len(writers) > 1:  # bound by its class and by its manifest
                raise SerializationError(
                    f"{type(event).__qualname__} is bound to {len(writers)} write adapters (by "
                    f"its class and by its manifest: "
                    f"{[type(w).__qualname__ for w in writers]}); an event type can have at most "
                    "one")
            writer = writers[0] if writers else None
            if writer is not None:
                try:
                    stored = writer.to_journal(event)
                except Exception as e:
                    raise SerializationError(
                        f"write adapter {type(writer).__qualname__} failed on "
                        f"{type(event).__qualname__}: {type(e).__name__}: {e}") from e
        if isinstance(stored, Tagged):
            return stored.payload, stored.tags
        return stored, ()

    def from_journal(self, repr_: PersistentRepr) -> list[Any]:
        """Decode a stored event and apply its read adapters: zero or more events.

        Raises:
            SerializationError: the payload cannot be decoded, or a read adapter raised; the
                message names the persistence id and sequence number.

        """
        readers: tuple[Any, ...] = ()
        try:
            if self._bindings and repr_.manifest in self._bindings:
                readers = tuple(a for a in self._bindings[repr_.manifest]
                                if isinstance(a, ReadEventAdapter))
            if readers:
                # A manifest no class carries any more (renamed, removed): its read adapters
                # get the state. (Only read adapters: a write adapter bound by a removed
                # class's manifest handed its events on as dicts, with no error.)
                manifest = (repr_.manifest if self.serializer.class_of(repr_.manifest)
                            else PLAIN_MANIFEST)
                event = self.serializer.from_binary(manifest, repr_.payload)
            else:
                event = self.serializer.from_binary(repr_.manifest, repr_.payload)
                if self._bindings:
                    readers = self._bound_to(type(event))
        except SerializationError as e:
            raise SerializationError(f"cannot decode event {repr_.sequence_nr} of "
                                     f"{repr_.persistence_id!r}: {e}") from e
        readers = tuple(a for a in readers if isinstance(a, ReadEventAdapter))
        if not readers:
            return [event]
        events: list[Any] = []
        for reader in readers:  # several read adapters: their results concatenated, as in Akka
            try:
                events.extend(_events_read(reader.from_journal(event, repr_.manifest)))
            except Exception as e:
                raise SerializationError(
                    f"read adapter {type(reader).__qualname__} failed on event "
                    f"{repr_.sequence_nr} of {repr_.persistence_id!r}: {type(e).__name__}: {e}"
                ) from e
        return events


def _events_read(read: Any) -> Sequence[Any]:
    # A dict or a str is iterable too: extending by it would replay its keys or characters.
    if not isinstance(read, Sequence) or isinstance(read, str | bytes | bytearray):
        raise TypeError("from_journal must return a list of events (none, one or several), "
                        f"got {type(read).__name__}: {clip(repr(read))}")
    return read


_cache: dict[AdapterSpec, EventAdapters] = {}
_cache_lock = threading.Lock()


def event_adapters_for(spec: AdapterSpec | None) -> EventAdapters:
    """The resolved adapters of `spec`, built once per process (adapters are stateless)."""
    key = spec or AdapterSpec()
    with _cache_lock:
        adapters = _cache.get(key)
        if adapters is None:
            adapters = _cache[key] = EventAdapters(key)
    return adapters
