"""Serialization of events and snapshots: msgpack plus an explicit type registry, never pickle."""

from __future__ import annotations

import builtins
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import importlib.util
import os
import pickle
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from persistent_actors import SerializationError, register
from persistent_actors._serialization import (
    MAX_NESTING,
    PLAIN_MANIFEST,
    Serializer,
    _bulk_builder,
    default_serializer,
)
from persistent_actors.cli._common import decode_structure


# -- registered with the default registry, in each supported way ---------------------------
@register
@dataclasses.dataclass(frozen=True)
class Decorated:
    value: int


@register(manifest="tests.serialization.WithManifest")
@dataclasses.dataclass(frozen=True)
class WithManifest:
    value: str


@dataclasses.dataclass(frozen=True)
class Called:
    value: float


register(Called, "tests.serialization.Called")


@dataclasses.dataclass(frozen=True)
class Inner:
    when: dt.datetime
    ident: uuid.UUID
    amount: decimal.Decimal


@dataclasses.dataclass(frozen=True)
class Outer:
    inner: Inner
    inners: list[Inner]
    pair: tuple[int, str]
    nested_tuples: tuple[tuple[int, ...], ...]
    tags: set[str]
    frozen: frozenset[int]
    blob: bytes
    by_id: dict[int, str]
    day: dt.date
    optional: Inner | None = None


register(Inner, "tests.serialization.Inner")
register(Outer, "tests.serialization.Outer")


@dataclasses.dataclass(frozen=True)
class NotRegistered:
    value: int


@dataclasses.dataclass(frozen=True)
class Holder:
    item: Any


register(Holder, "tests.serialization.Holder")


def sample_outer() -> Outer:
    inner = Inner(dt.datetime(2024, 2, 29, 12, 30, 45, 123456, tzinfo=dt.UTC),
                  uuid.UUID("12345678-1234-5678-1234-567812345678"), decimal.Decimal("10.25"))
    return Outer(
        inner=inner,
        inners=[inner, Inner(dt.datetime(2020, 1, 1), uuid.UUID(int=7), decimal.Decimal("-0.001"))],
        pair=(1, "one"),
        nested_tuples=((1, 2), (), (3,)),
        tags={"a", "b", "c"},
        frozen=frozenset({3, 1, 2}),
        blob=b"\x00\xff\x80binary",
        by_id={1: "one", -2: "minus two", 2**40: "big"},
        day=dt.date(1999, 12, 31),
    )


def round_trip(obj: Any, serializer: Serializer = default_serializer) -> Any:
    manifest, payload = serializer.to_binary(obj)
    assert isinstance(payload, bytes)
    return serializer.from_binary(manifest, payload)


# -- round trips -----------------------------------------------------------------------------
def test_nested_dataclasses_round_trip() -> None:
    original = sample_outer()
    manifest, payload = default_serializer.to_binary(original)
    assert manifest == "tests.serialization.Outer"
    restored = default_serializer.from_binary(manifest, payload)
    assert restored == original
    assert type(restored) is Outer
    assert type(restored.inner) is Inner
    assert all(type(i) is Inner for i in restored.inners)
    assert type(restored.inners) is list
    assert type(restored.pair) is tuple
    assert all(type(t) is tuple for t in restored.nested_tuples)
    assert type(restored.tags) is set
    assert type(restored.frozen) is frozenset
    assert type(restored.blob) is bytes
    assert type(restored.day) is dt.date
    assert type(restored.inner.when) is dt.datetime
    assert restored.inner.when.tzinfo is not None
    assert restored.inner.when.utcoffset() == dt.timedelta(0)
    assert restored.inners[1].when.tzinfo is None
    assert type(restored.inner.ident) is uuid.UUID
    assert type(restored.inner.amount) is decimal.Decimal
    assert str(restored.inners[1].amount) == "-0.001"
    assert set(restored.by_id) == {1, -2, 2**40}


def test_optional_nested_object() -> None:
    with_optional = dataclasses.replace(sample_outer(), optional=sample_outer().inner)
    assert round_trip(with_optional) == with_optional


def test_datetime_with_offset_keeps_it() -> None:
    when = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    restored = round_trip(Holder(when)).item
    assert restored == when
    assert restored.utcoffset() == dt.timedelta(hours=9)


@pytest.mark.parametrize("value", [
    dt.datetime(2021, 11, 7, 1, 30, fold=1),  # the second 01:30 when US clocks go back
    dt.datetime(2021, 11, 7, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)), fold=1),
    dt.time(1, 30, fold=1),
])
def test_a_datetime_or_time_keeps_its_fold(value: dt.datetime | dt.time) -> None:
    # "round-trip exactly": ISO text has no fold, and a naive local time with fold=1 came back
    # as the first of the two 01:30s, an hour off once given its time zone.
    for restored in (round_trip(value), round_trip([value])[0], round_trip(Holder(value)).item):
        assert restored == value
        assert restored.fold == 1
        assert type(restored) is type(value)
    # fold=0, the usual case, keeps the bytes it always had (ISO text alone).
    plain = value.replace(fold=0)
    code = 3 if isinstance(value, dt.datetime) else 10
    assert default_serializer.to_binary(plain)[1] == msgpack.packb(
        msgpack.ExtType(code, msgpack.packb(plain.isoformat())))
    # The CLI shows it as its ISO text, as any other datetime.
    assert decode_structure(default_serializer.to_binary(value)[1]) == value.isoformat()


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 1.5, "", "한국어 text", b"", b"\x00\x01",
    [], [1, [2, [3]]], {}, {"a": {"b": [1, 2]}}, {1: "x", 2: "y"}, (), (1, "a", (2.5, None)),
    {(1, 2): "tuple key"}, {"set": {1, 2}}, frozenset({"x"}), decimal.Decimal("1e-30"),
    uuid.UUID(int=0), dt.date(2000, 1, 1), dt.datetime(2000, 1, 1, 0, 0),
    dt.timedelta(days=-3, seconds=5, microseconds=7), dt.timedelta(0),
    dt.time(23, 59, 1, 250), dt.time(8, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
])
def test_plain_values_need_no_registration(value: Any) -> None:
    manifest, payload = default_serializer.to_binary(value)
    assert manifest == PLAIN_MANIFEST
    restored = default_serializer.from_binary(manifest, payload)
    assert restored == value
    assert type(restored) is type(value)


def test_registered_objects_inside_plain_containers() -> None:
    value = [Decorated(1), {"k": WithManifest("v")}, (Called(2.5),)]
    manifest, payload = default_serializer.to_binary(value)
    assert manifest == PLAIN_MANIFEST
    assert default_serializer.from_binary(manifest, payload) == value


# -- registration ----------------------------------------------------------------------------
def test_register_forms() -> None:
    assert default_serializer.manifest_of(Decorated) == f"{__name__}:Decorated"
    assert default_serializer.manifest_of(WithManifest) == "tests.serialization.WithManifest"
    assert default_serializer.manifest_of(Called) == "tests.serialization.Called"
    assert default_serializer.class_of("tests.serialization.Called") is Called
    for obj in (Decorated(3), WithManifest("x"), Called(0.5)):
        assert round_trip(obj) == obj


def test_register_returns_the_class_unchanged() -> None:
    serializer = Serializer()

    @dataclasses.dataclass(frozen=True)
    class Local:
        n: int

    assert serializer.register(Local, "local") is Local
    assert register(manifest="tests.serialization.Local2")(Local) is Local


def test_registering_the_same_class_again_is_harmless() -> None:
    register(Called, "tests.serialization.Called")
    register(Decorated)
    assert round_trip(Called(1.0)) == Called(1.0)


def test_alias_replays_the_old_manifest_after_a_rename() -> None:
    # Version 1 of the application stored this class under its old manifest...
    old_app = Serializer()

    @dataclasses.dataclass(frozen=True)
    class ItemPut:
        sku: str
        qty: int

    old_app.register(ItemPut, "shop.ItemPut")
    stored = [old_app.to_binary(ItemPut("apple", 2)),
              old_app.to_binary([ItemPut("pear", 1)])]

    # ...version 2 renamed it and lists the old manifest as an alias.
    new_app = Serializer()

    @dataclasses.dataclass(frozen=True)
    class ItemAdded:
        sku: str
        qty: int

    new_app.register(ItemAdded, "shop.ItemAdded", aliases=["shop.ItemPut"])
    assert new_app.from_binary(*stored[0]) == ItemAdded("apple", 2)
    assert new_app.from_binary(*stored[1]) == [ItemAdded("pear", 1)]
    # New writes use the new manifest; the alias is read-only.
    assert new_app.to_binary(ItemAdded("fig", 3))[0] == "shop.ItemAdded"
    assert new_app.manifest_of(ItemAdded) == "shop.ItemAdded"
    assert new_app.class_of("shop.ItemPut") is ItemAdded


def test_alias_via_register_function() -> None:
    @dataclasses.dataclass(frozen=True)
    class Renamed:
        n: int

    register(Renamed, "tests.serialization.Renamed", aliases=["tests.serialization.OldName"])
    payload = msgpack.packb({"n": 5})
    assert default_serializer.from_binary("tests.serialization.OldName", payload) == Renamed(5)


def test_custom_encode_decode_for_a_non_dataclass() -> None:
    class Money:
        def __init__(self, cents: int, currency: str) -> None:
            self.cents, self.currency = cents, currency

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Money) and (other.cents, other.currency) == (
                self.cents, self.currency)

        __hash__ = None  # type: ignore[assignment]

    serializer = Serializer()
    serializer.register(Money, "money", encode=lambda m: [m.cents, m.currency],
                        decode=lambda state: Money(*state))
    assert round_trip(Money(1050, "EUR"), serializer) == Money(1050, "EUR")
    assert round_trip([Money(1, "KRW")], serializer) == [Money(1, "KRW")]


def test_non_dataclass_without_codec_is_a_type_error() -> None:
    class Plain:
        pass

    serializer = Serializer()
    with pytest.raises(TypeError,
                       match=r"Plain is neither a dataclass nor an Enum.*encode= and decode="):
        serializer.register(Plain, "plain")
    with pytest.raises(TypeError, match="neither a dataclass nor an Enum"):
        register(Plain)
    with pytest.raises(TypeError, match="neither a dataclass nor an Enum"):
        serializer.register(Plain, "plain", encode=lambda p: {})  # decode missing
    with pytest.raises(TypeError, match="expects a class"):
        serializer.register(Decorated(1), "instance")  # type: ignore[arg-type]
    assert serializer.class_of("plain") is None


def test_empty_manifest_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Serializer().register(Decorated, "")


def test_same_manifest_for_two_classes_is_a_value_error() -> None:
    serializer = Serializer()

    @dataclasses.dataclass(frozen=True)
    class First:
        n: int

    @dataclasses.dataclass(frozen=True)
    class Second:
        n: int

    serializer.register(First, "event")
    with pytest.raises(ValueError, match=r"'event' is already registered to .*First"):
        serializer.register(Second, "event")
    with pytest.raises(ValueError, match="already registered"):
        serializer.register(Second, "second", aliases=["event"])
    # A failed registration leaves nothing behind: neither the manifest nor the class.
    assert serializer.class_of("event") is First
    assert serializer.class_of("second") is None
    assert serializer.manifest_of(Second) is None
    with pytest.raises(ValueError, match="already registered"):
        register(First, "tests.serialization.Called")


def test_same_name_in_two_modules_is_still_two_classes() -> None:
    # Two classes both called Created, in different modules, must not share a manifest.
    orders = dataclasses.make_dataclass("Created", [("order_id", int)], frozen=True)
    orders.__module__ = "shop.orders.events"
    users = dataclasses.make_dataclass("Created", [("user_id", int)], frozen=True)
    users.__module__ = "shop.users.events"
    serializer = Serializer()
    serializer.register(orders, "Created")
    with pytest.raises(ValueError, match="already registered"):
        serializer.register(users, "Created")
    assert serializer.class_of("Created") is orders


def test_one_module_imported_twice_may_register_again() -> None:
    # The same definition loaded as __main__ and by name (or as "actors" and "tests.actors")
    # yields two class objects; re-registering it must not fail.
    for first_module, second_module in (("__main__", "app.events"),
                                        ("events", "tests.events")):
        first = dataclasses.make_dataclass("Evt", [("n", int)], frozen=True)
        first.__module__ = first_module
        second = dataclasses.make_dataclass("Evt", [("n", int)], frozen=True)
        second.__module__ = second_module
        serializer = Serializer()
        serializer.register(first, "Evt")
        serializer.register(second, "Evt")
        assert serializer.class_of("Evt") is second


# -- errors ----------------------------------------------------------------------------------
def test_unregistered_class_names_it() -> None:
    name = f"{__name__}.NotRegistered"
    with pytest.raises(SerializationError, match=rf"{name} is not registered"):
        default_serializer.to_binary(NotRegistered(1))
    with pytest.raises(SerializationError, match=rf"{name} is not registered"):
        default_serializer.to_binary(Holder([1, {"x": NotRegistered(2)}]))


def test_unregistered_subclass_is_not_stored_as_its_base() -> None:
    @dataclasses.dataclass(frozen=True)
    class SubDecorated(Decorated):
        extra: int = 0

    with pytest.raises(SerializationError, match="SubDecorated is not registered"):
        default_serializer.to_binary(SubDecorated(1, 2))


@pytest.mark.parametrize(
    "value", [object(), lambda: 1, 2**64, -(2**63) - 1, {1, 2}.__iter__(), Ellipsis])
def test_unstorable_plain_values(value: Any) -> None:
    with pytest.raises(SerializationError):
        default_serializer.to_binary(value)


def test_an_int_beyond_64_bits_says_so() -> None:
    # msgpack hands it to the fallback; "register int" would be advice nobody can follow.
    for value in (2**64, -(2**63) - 1, Holder([2**100])):
        with pytest.raises(SerializationError, match="does not fit msgpack's 64-bit integers"):
            default_serializer.to_binary(value)


def test_a_namedtuple_is_refused_not_turned_into_a_tuple() -> None:
    point = collections.namedtuple("point", "x y")
    with pytest.raises(SerializationError, match=r"tuple subclass \(a namedtuple\?\) and is not"):
        default_serializer.to_binary(Holder(point(1, 2)))


def test_aliases_given_as_one_str_are_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Renamed:
        x: int

    with pytest.raises(TypeError, match=r"manifest names, got .*aliases=\['shop.Old'\]"):
        register(Renamed, "shop.New", aliases="shop.Old")
    with pytest.raises(ValueError, match="Renamed must be a non-empty string, got ''"):
        register(Renamed, "shop.New", aliases=["shop.Old", ""])
    # Nothing was bound by the refused calls.
    assert default_serializer.class_of("shop.New") is None
    assert default_serializer.class_of("s") is None


def test_unknown_manifest_on_decode() -> None:
    payload = msgpack.packb({"value": 1})
    with pytest.raises(SerializationError, match=r"no type is registered for manifest 'nope'"):
        default_serializer.from_binary("nope", payload)


@contextlib.contextmanager
def imports_recorded() -> Iterator[list[tuple[str, str]]]:
    """Record every import (importer, name) attempted inside the block."""
    attempted: list[tuple[str, str]] = []
    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def spy_import(name: str, globals_: Any = None, *args: Any, **kwargs: Any) -> Any:
        importer = (globals_ or {}).get("__name__", "?")
        attempted.append((importer, name))
        return real_import(name, globals_, *args, **kwargs)

    def spy_import_module(name: str, package: str | None = None) -> Any:
        attempted.append(("importlib.import_module", name))
        return real_import_module(name, package)

    builtins.__import__ = spy_import  # type: ignore[assignment]
    importlib.import_module = spy_import_module
    try:
        yield attempted
    finally:
        builtins.__import__ = real_import
        importlib.import_module = real_import_module


def test_manifest_naming_code_is_never_resolved(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: ran.append(("os.system", a)))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: ran.append(("Popen", a)))
    marker = tmp_path / "pwned"
    evil = f"pa_evil_{uuid.uuid4().hex}"
    (tmp_path / f"{evil}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "class Boom:\n"
        f"    def __init__(self, *a, **k): open({str(marker)!r}, 'w').close()\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    cases = [
        ("os:system", msgpack.packb(f"touch {marker}")),
        ("os.system", msgpack.packb(f"touch {marker}")),
        ("subprocess:Popen", msgpack.packb(["touch", str(marker)])),
        ("builtins:eval", msgpack.packb("__import__('os').system('true')")),
        (f"{evil}:Boom", msgpack.packb({})),
        (f"{evil}.Boom", msgpack.packb({})),
    ]
    for manifest, payload in cases:
        with pytest.raises(SerializationError, match="no type is registered"):
            default_serializer.from_binary(manifest, payload)
    # Nested inside a plain value, through the msgpack extension for objects.
    for manifest, payload in cases:
        nested = msgpack.packb([1, msgpack.ExtType(1, msgpack.packb([manifest,
                                                                      msgpack.unpackb(payload)]))])
        with pytest.raises(SerializationError, match="no type is registered"):
            default_serializer.from_binary(PLAIN_MANIFEST, nested)
    assert ran == []
    assert not marker.exists()
    assert evil not in sys.modules


def test_decoding_performs_no_import() -> None:
    outcomes = []
    stored = default_serializer.to_binary(sample_outer())
    with imports_recorded() as attempted:
        for manifest in ("os:system", "subprocess:Popen", "json:loads",
                         "tests.serialization.Inner"):
            try:
                default_serializer.from_binary(manifest, msgpack.packb({"x": 1}))
            except SerializationError as e:
                outcomes.append(e)
        restored = default_serializer.from_binary(*stored)
    assert attempted == []
    assert len(outcomes) == 4
    assert restored == sample_outer()


def test_pickle_payload_is_not_unpickled(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("true",))

    payload = pickle.dumps(Exploit())  # unpickling it would call os.system
    ran: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: ran.append(a))
    for manifest in (PLAIN_MANIFEST, "tests.serialization.Holder", "pickle"):
        with pytest.raises(SerializationError):
            default_serializer.from_binary(manifest, payload)
    assert ran == []


@pytest.mark.parametrize("payload", [
    b"\xc1",                        # a byte msgpack never uses
    b"\x92\x01",                    # truncated array
    b"",                            # nothing
    b"\x81\xa1a\x01\x01",           # extra data after the value
    msgpack.packb(msgpack.ExtType(99, b"?")),          # unknown extension code
    msgpack.packb(msgpack.ExtType(4, b"short")),       # a UUID of the wrong length
    msgpack.packb(msgpack.ExtType(5, b"not a number")),  # a bad Decimal
    msgpack.packb(msgpack.ExtType(3, msgpack.packb(42))),  # a datetime that is not a str
    msgpack.packb(msgpack.ExtType(3, msgpack.packb(["2020-01-01T00:00:00", 2]))),  # bad fold
    msgpack.packb(msgpack.ExtType(10, msgpack.packb([]))),  # a time of no text
    msgpack.packb(msgpack.ExtType(1, msgpack.packb("no state"))),  # object without a state
])
def test_corrupted_bytes(payload: bytes) -> None:
    with pytest.raises(SerializationError):
        default_serializer.from_binary(PLAIN_MANIFEST, payload)


def test_truncated_registered_payload() -> None:
    manifest, payload = default_serializer.to_binary(sample_outer())
    for cut in (1, len(payload) // 2, len(payload) - 1):
        with pytest.raises(SerializationError, match="corrupted payload"):
            default_serializer.from_binary(manifest, payload[:cut])


@pytest.mark.parametrize("state", [[1, 2], "text", {"value": 1, "unknown_field": 2}, {}])
def test_state_that_does_not_fit_the_class(state: Any) -> None:
    with pytest.raises(SerializationError, match="WithManifest"):
        default_serializer.from_binary("tests.serialization.WithManifest", msgpack.packb(state))


@dataclasses.dataclass(frozen=True)
class _StoredItem:
    manifest: str
    payload: bytes


def test_from_binary_all_decodes_as_from_binary_and_stops_at_the_first_failure() -> None:
    """Replay decodes a chunk in one call: the same objects, and the same error, in order."""
    values: list[Any] = [Decorated(1), "plain", WithManifest("x"), Decorated(2), (1, "t"),
                         Called(1.5), None, Decorated(3)]
    stored = [_StoredItem(*default_serializer.to_binary(v)) for v in values]
    decoded, error = default_serializer.from_binary_all(stored)
    assert (decoded, error) == (values, None)
    assert default_serializer.from_binary_all([]) == ([], None)
    for bad in (_StoredItem("tests.serialization.Nowhere", stored[0].payload),
                _StoredItem(stored[0].manifest, b"\xc1"),  # not msgpack
                _StoredItem(stored[0].manifest, msgpack.packb({"nope": 1}))):
        with pytest.raises(SerializationError) as expected:
            default_serializer.from_binary(bad.manifest, bad.payload)
        decoded, error = default_serializer.from_binary_all([*stored[:3], bad, *stored[3:]])
        assert decoded == values[:3]
        assert str(error) == str(expected.value)


def test_from_binary_columns_of_one_manifest_decodes_as_from_binary() -> None:
    """A chunk of one manifest takes the all-in-C path; an error in it is found as before."""
    stored = [default_serializer.to_binary(Decorated(nr)) for nr in range(40)]
    manifests, payloads = [m for m, _ in stored], [b for _, b in stored]
    assert default_serializer.from_binary_columns(manifests, payloads) == (
        [Decorated(nr) for nr in range(40)], None)
    plain = [default_serializer.to_binary(v) for v in ("a", (1, 2), None)]
    assert default_serializer.from_binary_columns([m for m, _ in plain], [b for _, b in plain]) \
        == (["a", (1, 2), None], None)
    for bad in (b"\xc1", msgpack.packb({"nope": 1})):
        with pytest.raises(SerializationError) as expected:
            default_serializer.from_binary(manifests[0], bad)
        decoded, error = default_serializer.from_binary_columns(
            manifests, [*payloads[:2], bad, *payloads[3:]])
        assert decoded == [Decorated(0), Decorated(1)]
        assert str(error) == str(expected.value)


@pytest.mark.parametrize("payloads", [
    [b"\x01\x02", b""],  # as one stream: two objects, as many as payloads, shifted
    [b"\x01", b"\x92\x01", b"\x02"],  # a cut-short array swallows the next payload
    [b"\x01", b"\x92\x01"],  # the last one cut short: the stream just ends
])
def test_from_binary_columns_never_lets_a_payload_run_into_the_next(
        payloads: list[bytes]) -> None:
    """A chunk is unpacked as one stream; each object must end where its payload ends."""
    payloads = [b"\x07"] * 40 + payloads  # long enough for the streaming unpacker
    manifests = [PLAIN_MANIFEST] * len(payloads)
    expected: list[Any] = []
    error_text = ""
    for payload in payloads:
        try:
            expected.append(default_serializer.from_binary(PLAIN_MANIFEST, payload))
        except SerializationError as e:
            error_text = str(e)
            break
    decoded, error = default_serializer.from_binary_columns(manifests, payloads)
    assert decoded == expected
    assert str(error) == error_text


def test_packing_after_a_failure_nested_or_on_threads_gives_the_same_bytes() -> None:
    """Each thread reuses one msgpack packer: a failed, nested or concurrent pack leaves none
    half-filled or shared."""
    value = Outer(Inner(dt.datetime(2026, 1, 2, tzinfo=dt.UTC), uuid.UUID(int=7),
                        decimal.Decimal("1.5")), [], (1, "a"), ((1, 2),), {"t"}, frozenset({3}),
                  b"\x00", {1: "x"}, dt.date(2026, 1, 2))
    expected = default_serializer.to_binary(value)
    with pytest.raises(SerializationError):
        default_serializer.to_binary(Holder([1, 2, NotRegistered(3)]))  # fails mid-way
    assert default_serializer.to_binary(value) == expected

    serializer = Serializer()

    class Box:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

    # An encoder that serializes on its own while the outer pack is under way.
    serializer.register(Box, "tests.Box", encode=lambda b: serializer.to_binary(b.inner)[1],
                        decode=lambda packed: Box(serializer.from_binary("", packed)))
    boxed = serializer.to_binary([Box([1, 2]), Box("x")])
    assert [b.inner for b in serializer.from_binary(*boxed)] == [[1, 2], "x"]

    def pack_many(n: int) -> bool:
        return all(default_serializer.to_binary(Decorated(i)) ==
                   ("tests.test_serialization:Decorated", msgpack.packb({"value": i}))
                   for i in range(n, n + 2000))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(pack_many, range(0, 8000, 2000)))


def test_to_binary_all_encodes_as_to_binary_and_raises_the_first_failure() -> None:
    """persist_all encodes its events in one call: the same bytes, and the same error."""
    values: list[Any] = [Decorated(1), "plain", WithManifest("x"), Decorated(2), (1, "t"),
                         Called(1.5), None, Decorated(3), sample_outer()]
    assert default_serializer.to_binary_all(values) == \
        [default_serializer.to_binary(v) for v in values]
    assert default_serializer.to_binary_all([]) == []
    bad = Holder([1, NotRegistered(3)])
    with pytest.raises(SerializationError) as expected:
        default_serializer.to_binary(bad)
    with pytest.raises(SerializationError) as got:
        default_serializer.to_binary_all([*values[:3], bad, *values[3:]])
    assert str(got.value) == str(expected.value)
    # The packer it used is whole again: the next pack gives the same bytes.
    assert default_serializer.to_binary_all(values) == \
        [default_serializer.to_binary(v) for v in values]


@dataclasses.dataclass
class _Awkward:
    """Field names a generated encoder must not trip over."""

    obj: int
    __private: str  # mangled to _Awkward__private
    name: str = "n"
    derived: int = dataclasses.field(init=False, default=7)  # not stored: not an __init__ arg


def test_dataclass_encoder_stores_every_init_field_by_name() -> None:
    s = Serializer()
    s.register(_Awkward, manifest="awkward")
    value = _Awkward(1, "p", "x")
    manifest, payload = s.to_binary(value)
    assert manifest == "awkward"
    assert msgpack.unpackb(payload) == {"obj": 1, "_Awkward__private": "p", "name": "x"}
    decoded = s.from_binary(manifest, payload)
    assert decoded == value
    assert decoded.derived == 7


@dataclasses.dataclass(frozen=True, slots=True)
class _SlottedEvent:
    nr: int
    name: str
    note: str = "none"


@dataclasses.dataclass(slots=True)
class _MutableSlotted:
    nr: int
    items: list[int]


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    nr: int
    seen: list[int] = dataclasses.field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if self.nr < 0:
            raise ValueError("negative")
        self.seen.append(self.nr)


@dataclasses.dataclass(frozen=True, slots=True)
class _OwnInit:
    nr: int

    def __init__(self, nr: int) -> None:
        object.__setattr__(self, "nr", nr * 2)


def _columns(s: Serializer, states: list[Any], manifest: str) -> tuple[list[str], list[bytes]]:
    return [manifest] * len(states), [msgpack.packb(state) for state in states]


def test_replay_builds_slotted_dataclasses_as_their_init_does() -> None:
    """A chunk of slotted dataclasses is built without `__init__` only where that is the same:
    equal, still frozen objects; a state that does not fit fails as `from_binary` says."""
    s = Serializer()
    s.register(_SlottedEvent, manifest="slotted")
    s.register(_MutableSlotted, manifest="mutable")
    states: list[dict[str, Any]] = [{"nr": nr, "name": f"n{nr}", "note": "x"} for nr in range(40)]
    decoded, error = s.from_binary_columns(*_columns(s, states, "slotted"))
    assert error is None
    assert decoded == [_SlottedEvent(**state) for state in states]
    assert all(type(event) is _SlottedEvent for event in decoded)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded[0].nr = 5
    mutable = [{"nr": nr, "items": [nr]} for nr in range(40)]
    assert s.from_binary_columns(*_columns(s, mutable, "mutable")) == (
        [_MutableSlotted(nr, [nr]) for nr in range(40)], None)
    # A default left out, and states that do not fit: as `cls(**state)` decides, event by event.
    short = [{"nr": nr, "name": "n"} for nr in range(40)]
    assert s.from_binary_columns(*_columns(s, short, "slotted")) == (
        [_SlottedEvent(nr, "n") for nr in range(40)], None)
    for bad in ({"nr": 1, "name": "n", "note": "x", "extra": 1}, {"nr": 1, "note": "x", 2: 3},
                [1, "n", "x"], {"nr": 1}):
        with pytest.raises(SerializationError) as expected:
            s.from_binary("slotted", msgpack.packb(bad))
        decoded, error = s.from_binary_columns(*_columns(s, [*states[:3], bad, *states[3:]],
                                                         "slotted"))
        assert decoded == [_SlottedEvent(**state) for state in states[:3]]
        assert str(error) == str(expected.value)


def test_replay_calls_init_and_post_init_where_they_do_more() -> None:
    s = Serializer()
    s.register(_Checked, manifest="checked")
    s.register(_OwnInit, manifest="own-init")
    s.register(_Awkward, manifest="awkward")
    decoded, error = s.from_binary_columns(*_columns(s, [{"nr": nr} for nr in range(40)],
                                                     "checked"))
    assert error is None
    assert [event.seen for event in decoded] == [[nr] for nr in range(40)]
    decoded, error = s.from_binary_columns(*_columns(s, [{"nr": -1}] * 40, "checked"))
    assert decoded == []
    assert "negative" in str(error)
    assert s.from_binary_columns(*_columns(s, [{"nr": nr} for nr in range(40)], "own-init")) \
        == ([_OwnInit(nr) for nr in range(40)], None)
    assert [event.nr for event in s.from_binary_columns(
        *_columns(s, [{"nr": 3}] * 40, "own-init"))[0]] == [6] * 40
    awkward = [{"obj": nr, "_Awkward__private": "p", "name": "x"} for nr in range(40)]
    decoded, error = s.from_binary_columns(*_columns(s, awkward, "awkward"))
    assert error is None
    assert [event.derived for event in decoded] == [7] * 40
    # Which classes take the shortcut: slotted, with the generated __init__ and nothing more.
    assert _bulk_builder(_SlottedEvent) is not None
    assert _bulk_builder(_MutableSlotted) is not None
    assert [_bulk_builder(cls) for cls in (_Checked, _OwnInit, _Awkward, Decorated)] == [None] * 4


# -- Enums, and other classes through the public register -----------------------------------
@register(manifest="tests.serialization.Size")
class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@register(manifest="tests.serialization.Priority")
class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@register(manifest="tests.serialization.Sized")
@dataclasses.dataclass(frozen=True)
class Sized:
    size: Size
    priority: Priority


class Point:
    """Neither a dataclass nor an Enum: stored through the codec given to `register`."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (other.x, other.y) == (self.x, self.y)

    __hash__ = None  # type: ignore[assignment]


register(Point, "tests.serialization.Point", encode=lambda p: [p.x, p.y],
         decode=lambda state: Point(*state))


def test_a_registered_enum_is_stored_by_value_and_read_back_as_its_member() -> None:
    assert round_trip(Size.LARGE) is Size.LARGE
    event = Sized(Size.SMALL, Priority.HIGH)
    back = round_trip(event)
    assert back == event
    # An IntEnum is an int, but comes back as its member, not as a plain 2.
    assert type(back.priority) is Priority
    manifest, payload = default_serializer.to_binary(Size.LARGE)
    assert (manifest, msgpack.unpackb(payload)) == ("tests.serialization.Size", "l")


def test_an_enum_value_no_member_has_any_more_fails_naming_the_class() -> None:
    manifest, _ = default_serializer.to_binary(Size.SMALL)
    with pytest.raises(SerializationError, match=r"cannot rebuild Size.*'m' is not a valid Size"):
        default_serializer.from_binary(manifest, msgpack.packb("m"))


def test_the_public_register_takes_a_codec_for_any_other_class() -> None:
    assert round_trip(Point(1, 2)) == Point(1, 2)
    assert round_trip({"path": [Point(0, 0), Point(3, 4)]}) == {"path": [Point(0, 0), Point(3, 4)]}

    class Celsius:
        def __init__(self, degrees: float) -> None:
            self.degrees = degrees

    decorated = register(manifest="tests.serialization.Celsius", encode=lambda c: c.degrees,
                         decode=Celsius)(Celsius)
    assert decorated is Celsius
    back = round_trip(Celsius(21.5))
    assert isinstance(back, Celsius)
    assert back.degrees == 21.5


# -- limits and what register() refuses up front ------------------------------------------
def _chain(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = (value,)
    return value


def test_nesting_beyond_the_limit_is_refused_at_encode_and_read_up_to_it() -> None:
    s = Serializer()
    manifest, payload = s.to_binary(_chain(MAX_NESTING))
    assert s.from_binary(manifest, payload) == _chain(MAX_NESTING)
    with pytest.raises(SerializationError, match=f"more than {MAX_NESTING} levels deep"):
        s.to_binary(_chain(MAX_NESTING + 1))
    with pytest.raises(SerializationError, match="levels deep"):
        s.to_binary_all([1, [_chain(MAX_NESTING + 1)]])
    # The depth count is per value: a failed encode leaves none behind.
    assert s.from_binary(*s.to_binary(_chain(MAX_NESTING))) == _chain(MAX_NESTING)


def _crafted_chain(depth: int) -> bytes:
    # A payload nested deeper than encoding allows (an earlier version had no limit).
    payload = msgpack.packb([None])
    for _ in range(depth - 1):
        payload = msgpack.packb([msgpack.ExtType(2, payload)])
    return bytes(msgpack.packb(msgpack.ExtType(2, payload)))


def test_deep_stored_values_decode_or_fail_cleanly_on_a_small_thread_stack() -> None:
    # msgpack's unpackb keeps ~35 KB on the C stack per nested call: 60 levels crashed the
    # process on a 2 MB thread stack (200 on the main thread's 8 MB), at replay.
    outcomes: list[Any] = []

    def decode_all() -> None:
        for depth in (250, 301):
            for decode in (lambda p: default_serializer.from_binary(PLAIN_MANIFEST, p),
                           decode_structure):
                try:
                    value = decode(_crafted_chain(depth))
                except SerializationError as e:
                    outcomes.append(str(e))
                else:
                    levels = 0
                    while value is not None:
                        value, levels = value[0], levels + 1
                    outcomes.append(levels)

    old = threading.stack_size(2 * 1024 * 1024)
    try:
        thread = threading.Thread(target=decode_all)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old)
    assert outcomes[:2] == [250, 250]
    assert all("more than 300 levels deep" in str(o) for o in outcomes[2:]), outcomes
    assert len(outcomes) == 4


def test_a_subclass_of_a_stored_stdlib_type_is_refused_not_stored_as_its_base() -> None:
    class Stamp(dt.datetime):
        pass

    class Money(decimal.Decimal):
        pass

    for value, base in ((Stamp(2026, 1, 1), "datetime.datetime"),
                        (Money("1.5"), "decimal.Decimal")):
        with pytest.raises(SerializationError, match=rf"subclass of {base} and is not registered"):
            default_serializer.to_binary({"at": value})
    assert default_serializer.from_binary(
        *default_serializer.to_binary(dt.datetime(2026, 1, 1))) == dt.datetime(2026, 1, 1)


@pytest.mark.parametrize("manifest", ["   ", "x\udc80", "x\x00"])
def test_a_manifest_no_journal_can_store_is_refused(manifest: str) -> None:
    with pytest.raises(ValueError, match="manifest of Decorated must be"):
        Serializer().register(Decorated, manifest)
    with pytest.raises(ValueError, match="each alias of Decorated must be"):
        Serializer().register(Decorated, "ok", aliases=[manifest])


def test_a_dataclass_its_stored_fields_cannot_rebuild_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Priced:
        amount: int
        rate: dataclasses.InitVar[float]

    with pytest.raises(TypeError, match=r"Priced cannot be rebuilt.*requires rate"):
        Serializer().register(Priced, "priced")

    @dataclasses.dataclass(frozen=True)
    class Defaulted:
        amount: int
        rate: dataclasses.InitVar[float] = 1.0

    s = Serializer()
    s.register(Defaulted, "defaulted")  # an InitVar with a default rebuilds
    assert s.from_binary(*s.to_binary(Defaulted(3))) == Defaulted(3)
    # With a codec of its own, the class says how it is rebuilt.
    s.register(Priced, "priced", encode=lambda p: p.amount, decode=lambda a: Priced(a, 1.0))


def _load(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_a_module_named_like_the_tail_of_another_holds_another_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A top-level "shop_events" and a package's "orders.shop_events" are two definitions of
    # Created; the files tell them apart where the names alone cannot.
    head = "import dataclasses\n@dataclasses.dataclass(frozen=True)\nclass Created:\n"
    (tmp_path / "top.py").write_text(head + "    user_id: int\n")
    (tmp_path / "nested.py").write_text(head + "    order_id: int\n")
    top = _load(tmp_path / "top.py", "shop_events", monkeypatch)
    nested = _load(tmp_path / "nested.py", "orders.shop_events", monkeypatch)
    again = _load(tmp_path / "top.py", "app.shop_events", monkeypatch)
    s = Serializer()
    s.register(top.Created, "Created")
    with pytest.raises(ValueError, match="already registered"):
        s.register(nested.Created, "Created")
    s.register(again.Created, "Created")  # one file imported under two names: one class
    assert s.class_of("Created") is again.Created


def test_a_str_that_is_no_text_is_named_as_such_not_as_a_type_to_register() -> None:
    with pytest.raises(SerializationError, match="a str in it is not valid UTF-8 text") as info:
        default_serializer.to_binary({"x": "a\udc80"})
    assert "register" not in str(info.value)


def test_plain_containers_nested_beyond_msgpacks_limit_say_so() -> None:
    value: Any = []
    for _ in range(1100):
        value = [value]
    with pytest.raises(SerializationError, match="deeper than msgpack's limit") as info:
        default_serializer.to_binary(value)
    assert "register" not in str(info.value)  # the hint led nowhere: a list is no class
