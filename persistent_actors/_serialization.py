"""Serialization of events and snapshots: msgpack plus a type manifest, never pickle.

User types are resolved only through an explicit registry (`register`). A stored manifest that
names no registered type is an error, never an import: stored bytes cannot make this process
load or run code.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import functools
import inspect
import itertools
import keyword
import os
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol, TypeVar, overload

import msgpack

from persistent_actors.errors import SerializationError
from persistent_actors.stored import unstorable

__all__ = ["Serializer", "default_serializer", "register"]

T = TypeVar("T")

# Manifest of a plain msgpack value (None, bool, int, float, str, bytes, list, dict).
PLAIN_MANIFEST: Final = ""
# Payloads from which one streaming Unpacker beats an unpackb call each (about 2 us to set up).
_STREAM_FROM: Final = 32

# msgpack extension codes: why ext types: they keep nested registered objects and common stdlib
# values distinct from dicts/lists, so decoding is exact without guessing.
_EXT_OBJECT: Final = 1
_EXT_TUPLE: Final = 2
_EXT_DATETIME: Final = 3
_EXT_UUID: Final = 4
_EXT_DECIMAL: Final = 5
_EXT_SET: Final = 6
_EXT_FROZENSET: Final = 7
_EXT_DATE: Final = 8
_EXT_TIMEDELTA: Final = 9
_EXT_TIME: Final = 10
# How deep registered objects, tuples, sets and the other extension values may nest in one
# stored value (plain lists and dicts nest up to msgpack's own limit). Why a limit: msgpack
# decodes each nested extension with a call of its own, and an unbounded nesting would end
# in a crash of the process (the C stack) at replay instead of an error at persist.
MAX_NESTING: Final = 100
# Decoding allows more, so that what an earlier version stored deeper (it had no limit, and
# decoded up to about 190 levels) stays readable; beyond it, an error instead of the crash.
_MAX_UNPACK_NESTING: Final = 300
# From this depth on, a nested payload is unpacked by a streaming Unpacker, whose state lives
# on the heap: `msgpack.unpackb` keeps about 35 KB of state on the C stack per call, too much
# for a thread's stack at depth MAX_NESTING; below it, unpackb is the faster call.
_HEAP_UNPACK_FROM: Final = 8
# msgpack's integers: what an int must fit in to be stored.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

# Types stored by their exact type only (`Serializer._extension`); a subclass is refused.
_EXACT_BASES: Final = (_dt.datetime, _dt.date, _dt.time, _dt.timedelta, uuid.UUID,
                       decimal.Decimal, set, frozenset)

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


class Stored(Protocol):
    """A stored event as `Serializer.from_binary_all` reads it (a `PersistentRepr`)."""

    @property
    def manifest(self) -> str:
        """The type manifest."""

    @property
    def payload(self) -> bytes:
        """The msgpack bytes."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Binding:
    cls: type[Any]
    manifest: str
    encode: Encoder
    decode: Decoder
    # `decode` is the dataclass default, ``cls(**state)`` after a check that state is a dict:
    # a replay chunk may call ``cls(**state)`` itself (a failure is then decoded again alone).
    from_map: bool = False
    # With `from_map`: builds the objects of many states at once (`_bulk_builder`), or None.
    build_all: Callable[[Sequence[Any]], list[Any]] | None = None


class _Nesting(threading.local):
    packing = 0
    unpacking = 0


_nesting: Final = _Nesting()


def _too_deep(limit: int) -> SerializationError:
    return SerializationError(
        f"value nests registered objects, tuples, sets or dates more than {limit} levels "
        "deep; flatten it (e.g. a list of nodes instead of a linked chain)")


def unpack_nested(data: bytes, ext_hook: Callable[[int, bytes], Any]) -> Any:
    """Unpack the payload of a nested msgpack extension, within 300 levels.

    Raises `SerializationError` beyond that depth, and for bytes left over after the value.
    """
    nesting = _nesting
    depth = nesting.unpacking
    if depth >= _MAX_UNPACK_NESTING:
        raise _too_deep(_MAX_UNPACK_NESTING)
    nesting.unpacking = depth + 1
    try:
        if depth < _HEAP_UNPACK_FROM:
            return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)
        unpacker = msgpack.Unpacker(ext_hook=ext_hook, raw=False, strict_map_key=False,
                                    max_buffer_size=max(len(data), 1))
        unpacker.feed(data)
        value = unpacker.unpack()
        if unpacker.tell() != len(data):
            raise SerializationError("extra bytes after a nested value")
        return value
    finally:
        nesting.unpacking = depth


def _dataclass_encoder(cls: type[Any]) -> Encoder:
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    if not all(name.isidentifier() and not keyword.iskeyword(name) for name in names):
        def encode(obj: Any) -> Any:
            return {name: getattr(obj, name) for name in names}

        return encode
    # A dict display with one attribute load per field, as `dataclasses` generates its own
    # methods: a third of the cost of the comprehension of getattr calls above, paid per
    # persisted event. Only identifiers are formatted in (checked above), each key as a repr.
    items = ", ".join(f"{name!r}: obj.{name}" for name in names)
    namespace: dict[str, Any] = {}
    exec(f"def encode(obj):\n    return {{{items}}}\n", namespace)  # noqa: S102
    generated: Encoder = namespace["encode"]
    return generated


def _bulk_builder(cls: type[Any]) -> Callable[[Sequence[Any]], list[Any]] | None:
    """``[cls(**state) for state in states]`` without calling `cls`, where that is the same.

    For a slotted dataclass whose ``__init__`` is the generated one and does nothing but set
    each field (no ``__post_init__``, ``InitVar``, ``init=False`` field, custom ``__new__``,
    or, unfrozen, custom ``__setattr__``), an object is ``object.__new__(cls)`` with each slot
    set through its descriptor: a third of the cost of the ``__init__`` call, which binds
    keyword arguments and sets each field through ``object.__setattr__`` (replay builds one
    object per event). The builder raises (anything) for a state that is not exactly a map of
    every field name; the caller then decodes event by event through ``cls(**state)``, which
    says why. None where the shortcut would not be the same.
    """
    params = getattr(cls, "__dataclass_params__", None)
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if (params is None or not params.init or getattr(code, "co_filename", None) != "<string>"
            or getattr(cls, "__new__", None) is not object.__new__
            or hasattr(cls, "__post_init__")
            or (not params.frozen and getattr(cls, "__setattr__", None) is not object.__setattr__)):
        return None
    fields = dataclasses.fields(cls)
    if not fields or len(fields) != len(cls.__dataclass_fields__) or \
            not all(f.init for f in fields):
        return None  # InitVar or ClassVar pseudo-fields, or a field __init__ does not take
    setters: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = []
    for i, f in enumerate(fields):
        slot = next((k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__), None)
        if type(slot) is not types.MemberDescriptorType:
            return None  # not a slot (a dict attribute, a default, a descriptor of its own)
        setters[f"set{i}"] = slot.__set__
        lines.append(f"        set{i}(o, s[{f.name!r}])\n")  # repr: any str is a safe literal
    defaults = ", ".join(f"{name}={name}" for name in setters)
    source = (f"def build(states, /, *, {defaults}):\n"
              "    out = []\n"
              "    append = out.append\n"
              "    for s in states:\n"
              f"        if len(s) != {len(fields)}:\n"
              "            raise ValueError('not one key per field')\n"
              "        o = new(cls)\n"
              f"{''.join(lines)}"
              "        append(o)\n"
              "    return out\n")
    namespace = dict(setters)
    exec(source, namespace)  # noqa: S102 - only generated names and repr'd field names
    built: Callable[[Sequence[Any]], list[Any]] = namespace["build"]
    return built


def _dataclass_decoder(cls: type[Any]) -> Decoder:
    def decode(state: Any) -> Any:
        if not isinstance(state, dict):
            raise SerializationError(
                f"stored state of {cls.__qualname__} must be a map of field names, "
                f"got {type(state).__name__}"
            )
        return cls(**state)

    return decode


class Serializer:
    """Encodes registered types and plain values to msgpack bytes and back.

    Contract: `to_binary(obj)` returns `(manifest, payload)`; `from_binary(manifest, payload)`
    returns an equal object, or raises `SerializationError` naming what is wrong.
    """

    def __init__(self) -> None:
        self._by_type: dict[type[Any], _Binding] = {}
        self._by_manifest: dict[str, _Binding] = {}
        self._lock = threading.Lock()
        self._packers = threading.local()  # `_pack`: an idle msgpack.Packer per thread
        # `_unpack` as a C partial: no Python frame per event on the replay path.
        self._unpack_fast: Callable[[bytes], Any] = functools.partial(
            msgpack.unpackb, ext_hook=self._ext_hook, raw=False, strict_map_key=False)

    # -- registry -----------------------------------------------------------------------------
    def register(
        self,
        cls: type[T],
        manifest: str | None = None,
        *,
        aliases: Iterable[str] = (),
        encode: Callable[[T], Any] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> type[T]:
        """Bind `cls` to `manifest` (default `module:QualName`) and to each alias (read only)."""
        if not isinstance(cls, type):
            raise TypeError(f"register() expects a class, got {cls!r}")
        if manifest is None:
            manifest = f"{cls.__module__}:{cls.__qualname__}"
        _check_manifest(cls, "manifest", manifest)
        for name, function in (("encode", encode), ("decode", decode)):
            # Found later, a decode that is no function failed every replay of stored events.
            if function is not None and not callable(function):
                raise TypeError(f"register({cls.__qualname__}): {name}= must be callable (or "
                                f"None), got {function!r}")
        if (encode is None or decode is None) and issubclass(cls, enum.Enum):
            # A member is stored as its value and read back by value (``cls(value)``), so a
            # member can be renamed; its value must be storable itself.
            encode = encode or _enum_value
            decode = decode or cls
        if encode is None or decode is None:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(
                    f"{cls.__qualname__} is neither a dataclass nor an Enum: pass encode= "
                    "and decode= to register() to say how it is stored"
                )
            from_map = decode is None
            if from_map:
                _check_rebuildable(cls)
            build_all = _bulk_builder(cls) if from_map else None
            encode = encode or _dataclass_encoder(cls)
            decode = decode or _dataclass_decoder(cls)
        else:
            from_map, build_all = False, None
        if isinstance(aliases, str | bytes):
            raise TypeError(f"aliases for {cls.__qualname__} must be a list of manifest names, "
                            f"got the str {aliases!r}; write aliases=[{aliases!r}]")
        names = (manifest, *aliases)
        for name in names[1:]:
            _check_manifest(cls, "each alias", name)
        binding = _Binding(cls, manifest, encode, decode, from_map, build_all)
        with self._lock:
            # Check every name before binding any: otherwise a conflict on an alias would leave
            # the manifest (and earlier aliases) bound to a class whose registration failed.
            for name in names:
                existing = self._by_manifest.get(name)
                if existing is not None and existing.cls is not cls and not _same_class(
                    existing.cls, cls
                ):
                    raise ValueError(
                        f"manifest {name!r} is already registered to "
                        f"{existing.cls.__module__}.{existing.cls.__qualname__}"
                    )
            for name in names:
                self._by_manifest[name] = binding
            self._by_type[cls] = binding
        return cls

    def manifest_of(self, cls: type[Any]) -> str | None:
        """Return the manifest `cls` is stored under, or None if it is not registered."""
        binding = self._by_type.get(cls)
        return binding.manifest if binding else None

    def registered(self) -> list[type[Any]]:
        """The registered classes."""
        with self._lock:
            return list(self._by_type)

    def class_of(self, manifest: str) -> type[Any] | None:
        """Return the class registered under `manifest` (or an alias), or None."""
        binding = self._by_manifest.get(manifest)
        return binding.cls if binding else None

    # -- encoding -----------------------------------------------------------------------------
    def to_binary(self, obj: Any) -> tuple[str, bytes]:
        """Encode `obj`; raise `SerializationError` if it (or anything in it) is not storable."""
        binding = self._by_type.get(type(obj))
        try:
            if binding is not None:
                return binding.manifest, self._pack(binding.encode(obj))
            return PLAIN_MANIFEST, self._pack(obj)
        except SerializationError:
            raise
        except Exception as e:
            raise _not_serializable(obj, e) from e

    def to_binary_all(self, objs: Sequence[Any]) -> list[tuple[str, bytes]]:
        """Encode many objects at once (`persist_all`): as `to_binary` on each, in order.

        Raises `SerializationError` for the first that cannot be encoded. The lookups
        `to_binary` makes per call (the thread's packer, the type's binding) are made once per
        call here, and once per run of one type.
        """
        packers = self._packers
        packer: msgpack.Packer | None = getattr(packers, "idle", None)
        # Nested in a pack on this thread, or a subclass encodes its own way: one at a time.
        if packer is None or type(self).to_binary is not Serializer.to_binary:
            return [self.to_binary(obj) for obj in objs]
        packers.idle = None
        encoded: list[tuple[str, bytes]] = []
        append, pack, by_type = encoded.append, packer.pack, self._by_type
        cls: type[Any] | None = None
        manifest, encode = PLAIN_MANIFEST, None
        try:
            for obj in objs:
                if type(obj) is not cls:
                    cls = type(obj)
                    binding = by_type.get(cls)
                    manifest, encode = (PLAIN_MANIFEST, None) if binding is None else \
                        (binding.manifest, binding.encode)
                try:
                    append((manifest, pack(obj if encode is None else encode(obj))))
                except SerializationError:
                    raise
                except Exception as e:
                    raise _not_serializable(obj, e) from e
        finally:
            packers.idle = packer
        return encoded

    def from_binary(self, manifest: str, payload: bytes) -> Any:
        """Decode `payload` stored under `manifest`."""
        try:
            state = self._unpack(payload)
        except SerializationError:
            raise
        except Exception as e:
            raise SerializationError(
                f"corrupted payload for manifest {clip(repr(manifest))}: {clip(str(e))}"
            ) from e
        if manifest == PLAIN_MANIFEST:
            return state
        return self._decode_object(manifest, state)

    def from_binary_all(
        self, stored: Sequence[Stored]
    ) -> tuple[list[Any], SerializationError | None]:
        """Decode many stored events at once (replay): as `from_binary` on each, in order.

        Stops at the first that cannot be decoded and returns what was decoded before it,
        with its error (None if all were decoded). See `from_binary_columns`.
        """
        return self.from_binary_columns([item.manifest for item in stored],
                                        [item.payload for item in stored])

    def from_binary_columns(
        self, manifests: Sequence[str], payloads: Sequence[bytes]
    ) -> tuple[list[Any], SerializationError | None]:
        """`from_binary_all` on columns: ``from_binary(manifests[i], payloads[i])`` for each i.

        The lookups `from_binary` makes per call are made once per run of one manifest; a
        chunk of one manifest (the usual replay) is decoded by two loops in C.
        """
        end = len(payloads)
        if end and manifests.count(manifests[0]) == end:
            binding = self._by_manifest.get(manifests[0])
            decode = self._decoder_of(manifests[0])
            try:
                states = (self._unpack_all(payloads) if end >= _STREAM_FROM
                          else list(map(self._unpack_fast, payloads)))
                if binding is not None and binding.from_map:
                    if binding.build_all is not None:
                        return binding.build_all(states), None
                    cls = binding.cls  # the decoder's own call, without a frame per event
                    return [cls(**state) for state in states], None
                return states if decode is None else list(map(decode, states)), None
            except Exception:  # noqa: BLE001, S110 - the loop below finds which, and says why
                pass
        decoded: list[Any] = []
        append, unpack = decoded.append, self._unpack_fast
        manifest: str | None = None
        decode = None
        index = 0
        while index < end:
            try:
                for item_manifest, payload in zip(
                        manifests[index:], payloads[index:], strict=True):
                    if item_manifest != manifest:
                        manifest = item_manifest
                        decode = self._decoder_of(manifest)
                    state = unpack(payload)
                    append(state if decode is None else decode(state))
                    index += 1
            except Exception:  # noqa: BLE001 - from_binary raises the same, in its own words
                try:
                    append(self.from_binary(manifests[index], payloads[index]))
                except SerializationError as e:
                    return decoded, e
                index += 1
                manifest = None
        return decoded, None

    def _unpack_all(self, payloads: Sequence[bytes]) -> list[Any]:
        """`_unpack` of each payload, by one streaming unpacker over them all.

        Each object must end exactly where its payload ends (a payload with extra bytes, or
        one cut short, would otherwise shift the ones after it): anything else raises, and
        the caller decodes event by event.
        """
        data = b"".join(payloads)
        unpacker = msgpack.Unpacker(ext_hook=self._ext_hook, raw=False, strict_map_key=False,
                                    max_buffer_size=max(len(data), 1))
        unpacker.feed(data)
        states: list[Any] = []
        ends: list[int] = []
        append, end, tell = states.append, ends.append, unpacker.tell
        for state in unpacker:
            append(state)
            end(tell())
        if ends != list(itertools.accumulate(map(len, payloads))):
            raise SerializationError("payloads do not split into one object each")
        return states

    def _decoder_of(self, manifest: str) -> Decoder | None:
        """What turns the unpacked state of `manifest` into its object; None: it is the value."""
        binding = self._by_manifest.get(manifest)
        if binding is not None:
            return binding.decode
        return None if manifest == PLAIN_MANIFEST else _unknown

    def _pack(self, value: Any) -> bytes:
        # msgpack.packb builds a Packer per call, most of the cost of packing a small event;
        # each thread keeps one. A nested call (an object inside an object, or an encoder
        # that serializes) finds none idle and makes its own, so a packer never re-enters.
        packers = self._packers
        packer = getattr(packers, "idle", None)
        if packer is None:
            packer = msgpack.Packer(
                default=self._default, use_bin_type=True, datetime=False, strict_types=True
            )
        else:
            packers.idle = None
        try:
            packed: bytes = packer.pack(value)  # resets the packer's buffer on error
        finally:
            packers.idle = packer
        return packed

    def _default(self, obj: Any) -> Any:
        nesting = _nesting
        depth = nesting.packing
        if depth >= MAX_NESTING:
            raise _too_deep(MAX_NESTING)
        nesting.packing = depth + 1
        try:
            return self._extension(obj)
        finally:
            nesting.packing = depth

    def _extension(self, obj: Any) -> Any:
        binding = self._by_type.get(type(obj))
        if binding is not None:
            return msgpack.ExtType(_EXT_OBJECT, self._pack([binding.manifest, binding.encode(obj)]))
        # Exact types: a subclass (a namedtuple, pandas' Timestamp) would come back as its base.
        kind = type(obj)
        if kind is tuple:
            return msgpack.ExtType(_EXT_TUPLE, self._pack(list(obj)))
        if kind is _dt.datetime:
            return msgpack.ExtType(_EXT_DATETIME, self._pack(_with_fold(obj)))
        if kind is _dt.date:
            return msgpack.ExtType(_EXT_DATE, self._pack(obj.isoformat()))
        if kind is _dt.timedelta:
            return msgpack.ExtType(_EXT_TIMEDELTA, self._pack(
                [obj.days, obj.seconds, obj.microseconds]))
        if kind is _dt.time:
            return msgpack.ExtType(_EXT_TIME, self._pack(_with_fold(obj)))
        if kind is uuid.UUID:
            return msgpack.ExtType(_EXT_UUID, obj.bytes)
        if kind is decimal.Decimal:
            return msgpack.ExtType(_EXT_DECIMAL, str(obj).encode())
        if kind is frozenset:
            return msgpack.ExtType(_EXT_FROZENSET, self._pack(sorted(obj, key=repr)))
        if kind is set:
            return msgpack.ExtType(_EXT_SET, self._pack(sorted(obj, key=repr)))
        if type(obj) is int and not _INT_MIN <= obj <= _INT_MAX:
            raise SerializationError(
                f"an int of {obj.bit_length()} bits does not fit msgpack's 64-bit integers "
                "([-2**63, 2**64-1]); store it as a str or a decimal.Decimal")
        if isinstance(obj, tuple):
            raise SerializationError(
                f"{type(obj).__module__}.{type(obj).__qualname__} is a tuple subclass (a "
                "namedtuple?) and is not registered: it would come back as a plain tuple; "
                "register it with encode= and decode=, or use a registered dataclass")
        base = next((b for b in _EXACT_BASES if isinstance(obj, b)), None)
        if base is not None:
            raise SerializationError(
                f"{type(obj).__module__}.{type(obj).__qualname__} is a subclass of "
                f"{base.__module__}.{base.__qualname__} and is not registered: it would come "
                f"back as a plain {base.__qualname__}; convert it to one, or register it with "
                "encode= and decode=")
        raise SerializationError(
            f"{type(obj).__module__}.{type(obj).__qualname__} is not registered; "
            "decorate it with @persistent_actors.register"
        )

    def _unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False)

    def _unpack_nested(self, data: bytes) -> Any:
        return unpack_nested(data, self._ext_hook)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        unpack = self._unpack_nested
        match code:
            case 1:  # _EXT_OBJECT
                manifest, state = unpack(data)
                return self._decode_object(manifest, state)
            case 2:  # _EXT_TUPLE
                return tuple(unpack(data))
            case 3:  # _EXT_DATETIME
                return _from_iso(_dt.datetime, unpack(data))
            case 4:  # _EXT_UUID
                return uuid.UUID(bytes=data)
            case 5:  # _EXT_DECIMAL
                return decimal.Decimal(data.decode())
            case 6:  # _EXT_SET
                return set(unpack(data))
            case 7:  # _EXT_FROZENSET
                return frozenset(unpack(data))
            case 8:  # _EXT_DATE
                return _dt.date.fromisoformat(unpack(data))
            case 9:  # _EXT_TIMEDELTA
                days, seconds, microseconds = unpack(data)
                return _dt.timedelta(days, seconds, microseconds)
            case 10:  # _EXT_TIME
                return _from_iso(_dt.time, unpack(data))
        raise SerializationError(f"unknown msgpack extension code {code} in stored payload")

    def _decode_object(self, manifest: str, state: Any) -> Any:
        binding = self._by_manifest.get(manifest)
        if binding is None:
            raise SerializationError(
                f"no type is registered for manifest {clip(repr(manifest))}; register the class "
                "(or an alias for its old name) with persistent_actors.register"
            )
        try:
            return binding.decode(state)
        except SerializationError:
            raise
        except Exception as e:
            raise SerializationError(
                f"cannot rebuild {binding.cls.__qualname__} from stored state: {clip(str(e))}"
            ) from e


def _unknown(state: Any) -> Any:
    """The decoder of an unregistered manifest: `from_binary` then reports it."""
    raise SerializationError(f"unknown manifest for {type(state).__name__}")


def _with_fold(value: _dt.datetime | _dt.time) -> str | list[Any]:
    """A datetime's or time's stored form: its ISO text, with ``fold`` beside it when it is 1.

    ISO text has no place for ``fold`` (the second of two equal wall-clock times when a clock
    goes back), so it came back as 0: another instant once converted with a time zone. A value
    with ``fold=0`` is stored as before, so existing payloads keep their bytes.
    """
    return [value.isoformat(), 1] if value.fold else value.isoformat()


_Clock = TypeVar("_Clock", _dt.datetime, _dt.time)


def _from_iso(kind: type[_Clock], stored: Any) -> _Clock:
    """Rebuild what `_with_fold` stored."""
    if isinstance(stored, list):
        text, fold = stored
        return kind.fromisoformat(text).replace(fold=fold)
    return kind.fromisoformat(stored)


def clip(text: str, limit: int = 300) -> str:
    """Return `text` cut to about `limit` characters.

    Stored data (a manifest, a value) may be megabytes long; an error message or a log line
    must not grow with it.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _check_manifest(cls: type[Any], what: str, name: object) -> None:
    """Refuse a manifest no journal could store or an operator could read."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} of {cls.__qualname__} must be a non-empty string, "
                         f"got {clip(repr(name))}")
    reason = unstorable(name)
    if reason is not None:
        raise ValueError(f"{what} of {cls.__qualname__} must be text a journal can store, "
                         f"got {clip(repr(name))}: {reason}")


def _check_rebuildable(cls: type[Any]) -> None:
    """Refuse a dataclass that ``cls(**stored_fields)`` cannot rebuild.

    Its stored form is its ``init`` fields; an ``__init__`` parameter without a default that is
    not one of them (an ``InitVar``) would let every event be stored and every replay fail.
    """
    stored = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return  # no signature to read: the first decode says what is wrong
    missing = [p.name for p in parameters if p.name not in stored and p.default is p.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise TypeError(
            f"{cls.__qualname__} cannot be rebuilt from its stored fields: its __init__ "
            f"requires {', '.join(missing)}, which is not a field (an InitVar?); give it a "
            "default, or register the class with encode= and decode=")


def _module_file(name: str) -> str | None:
    file = getattr(sys.modules.get(name), "__file__", None)
    return os.path.realpath(file) if isinstance(file, str) else None


def _same_class(a: type[Any], b: type[Any]) -> bool:
    # A module imported twice (e.g. as __main__ and by name, or as "actors" and "tests.actors")
    # yields two class objects for one definition; re-registering it must not be an error.
    # The module must match too: comparing only the qualname let two different classes, e.g.
    # orders.events.Created and users.events.Created, share a manifest silently. Where both
    # modules were loaded from files, the files decide (a module "events" and a package's
    # "orders.events" are two definitions); without files, the names up to a prefix do.
    if a.__qualname__ != b.__qualname__:
        return False
    ma, mb = a.__module__, b.__module__
    if ma == mb:
        return True
    fa, fb = _module_file(ma), _module_file(mb)
    if fa is not None and fb is not None:
        return fa == fb
    return "__main__" in (ma, mb) or ma.endswith("." + mb) or mb.endswith("." + ma)


default_serializer: Final = Serializer()


def _enum_value(member: Any) -> Any:
    return member.value


@overload
def register(
    cls: type[T], manifest: str | None = None, *, aliases: Iterable[str] = (),
    encode: Callable[[T], Any] | None = None, decode: Callable[[Any], T] | None = None,
) -> type[T]: ...
@overload
def register(
    cls: None = None, manifest: str | None = None, *, aliases: Iterable[str] = (),
    encode: Callable[[Any], Any] | None = None, decode: Callable[[Any], Any] | None = None,
) -> Callable[[type[T]], type[T]]: ...
def register(
    cls: type[T] | None = None, manifest: str | None = None, *, aliases: Iterable[str] = (),
    encode: Callable[[Any], Any] | None = None, decode: Callable[[Any], Any] | None = None,
) -> type[T] | Callable[[type[T]], type[T]]:
    """Register a class for storage, as `@register`, `@register(manifest=...)` or a call.

    The manifest (default `module:QualName`) is what is stored; give it explicitly so the class
    can be renamed or moved later, and list old names in `aliases` to keep replaying them.
    A dataclass is stored as its fields, an Enum as its members' values; any other class
    needs `encode` (an instance to a storable value) and `decode` (that value back).

    Raises:
        TypeError: `cls` is not a class, or neither a dataclass nor an Enum and `encode` or
            `decode` is missing.
        ValueError: the manifest is empty, or a name is registered to another class already.

    """
    if cls is None:

        def decorator(c: type[T]) -> type[T]:
            return default_serializer.register(c, manifest, aliases=aliases, encode=encode,
                                               decode=decode)

        return decorator
    return default_serializer.register(cls, manifest, aliases=aliases, encode=encode,
                                       decode=decode)


def _not_serializable(obj: Any, cause: Exception) -> SerializationError:
    if isinstance(cause, ValueError) and "recursion limit" in str(cause):  # msgpack's own
        return SerializationError(
            f"cannot serialize {type(obj).__qualname__}: it nests lists or dicts deeper than "
            "msgpack's limit (1,024 levels); flatten it")
    if isinstance(cause, UnicodeEncodeError):  # not a type missing: a str that is no text
        return SerializationError(
            f"cannot serialize {type(obj).__qualname__}: a str in it is not valid UTF-8 text "
            f"(a lone surrogate, as a JSON body can carry): {cause}")
    return SerializationError(
        f"cannot serialize {type(obj).__qualname__}: {cause}; register the type with "
        "persistent_actors.register or store plain msgpack values")
