"""Compact pickling of the runtime's dataclasses (`persistent_actors._compact_pickle`).

Every protocol message and stored-data type pickles as ``(class, field values)`` instead of
through the slow generated ``__getstate__``; these tests pin that form, that every message
round-trips equal, and the cases that must keep Python's own pickling.
"""

from __future__ import annotations

import dataclasses
import pickle
import pickletools
from typing import Any

import pytest

from persistent_actors import _protocol as p
from persistent_actors import stored
from persistent_actors._compact_pickle import compact, compact_all, surely_picklable


def _protocol_classes() -> list[type]:
    return [c for c in vars(p).values()
            if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == p.__name__]


def _opcodes(data: bytes) -> set[str]:
    return {op.name for op, _, _ in pickletools.genops(data)}


@pytest.mark.parametrize("cls", [*_protocol_classes(), stored.PersistentRepr, stored.AtomicWrite,
                                 stored.ReplayedRows], ids=lambda c: c.__name__)
def test_runtime_dataclasses_pickle_as_class_and_values(cls: type) -> None:
    # Without `compact` these pickle through the generated __getstate__ (a BUILD opcode).
    assert "__reduce__" in vars(cls)


def test_messages_round_trip_equal_without_state() -> None:
    event = stored.PersistentRepr("cart-1", 5, "ItemAdded", b"payload", "writer", 1.5, ("t",))
    messages: list[Any] = [
        p.WriteMessages((stored.AtomicWrite((event,)),), 7),
        p.WriteMessagesResult((p.STORED, p.WriteRejected(ValueError("no"))), 7),
        p.Envelope(p.CellEnvelope(3, ("add", "x")), None, "17", None),
        p.Reply("17", {"ok": 1}),
        p.Batch((p.Reply("1", 1), p.Reply("2", 2))),
        p.LoopMessage(),
    ]
    for message in messages:
        data = pickle.dumps(message)
        assert "BUILD" not in _opcodes(data)
        back = pickle.loads(data)
        assert type(back) is type(message)
        assert repr(back) == repr(message)
    assert pickle.loads(pickle.dumps(messages[0])) == messages[0]


def test_rebuilding_runs_post_init_validation() -> None:
    event = stored.PersistentRepr("cart-1", 1, "m", b"", "w")
    write = stored.AtomicWrite((event,))
    assert write.__reduce__() == (stored.AtomicWrite, ((event,),))
    with pytest.raises(ValueError, match="at least one event"):
        stored.AtomicWrite(())


@dataclasses.dataclass(frozen=True, slots=True)
class _Base:
    a: int
    b: str = "b"


@dataclasses.dataclass(frozen=True, slots=True)
class _Child(_Base):
    c: float = 0.0


class _Plain(_Base):
    """A subclass that is no dataclass of its own (takes other arguments)."""

    __slots__ = ("extra",)

    def __init__(self, extra: str) -> None:
        super().__init__(1, "x")
        object.__setattr__(self, "extra", extra)


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class _HandInit:
    a: int

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "a", int(text))


@dataclasses.dataclass(frozen=True, slots=True)
class _NoInitField:
    a: int
    b: int = dataclasses.field(init=False, default=0)


compact_all({"__name__": __name__, "_Base": _Base, "_Child": _Child})


def test_a_subclass_pickles_as_python_would() -> None:
    child = _Child(1, "x", 2.5)
    assert pickle.loads(pickle.dumps(child)) == child
    plain = _Plain("more")
    back = pickle.loads(pickle.dumps(plain))
    # Python's own pickling of it: new object, then the state of _Base's generated
    # __getstate__ (its fields; `extra` is lost either way).
    assert type(back) is _Plain
    assert (back.a, back.b) == (1, "x")


def test_classes_that_cls_of_values_cannot_rebuild_are_refused() -> None:
    for cls in (_HandInit, _NoInitField, int):
        with pytest.raises(TypeError):
            compact(cls)
    compact_all({"__name__": __name__, "_HandInit": _HandInit, "_NoInitField": _NoInitField})
    assert "__reduce__" not in vars(_HandInit)
    assert "__reduce__" not in vars(_NoInitField)
    assert pickle.loads(pickle.dumps(_HandInit("4"))) == _HandInit("4")


# -- surely_picklable: check_picklable's fast path ------------------------------------------
def _tcp_address(port: int) -> Any:
    from thespian.actors import ActorAddress  # noqa: PLC0415 - only these tests need it
    from thespian.system.transport.IPBase import TCPv4ActorAddress  # noqa: PLC0415

    return ActorAddress(TCPv4ActorAddress("127.0.0.1", port, external=True))


def test_runtime_messages_of_plain_values_are_sure() -> None:
    import persistent_actors._thespian.common  # noqa: F401, PLC0415 - registers addresses
    from persistent_actors._actor import ActorRef, AskRef, HostedRef  # noqa: PLC0415

    address = _tcp_address(45678)
    event = stored.PersistentRepr("cart-1", 5, "ItemAdded", b"payload", "writer", 1.5, ("t",))
    for message in [
        p.WriteMessages((stored.AtomicWrite((event,)),), 7),
        p.Envelope(p.CellEnvelope(3, ("add", 7)), ActorRef(address, "a"), "17", address),
        p.Envelope({"k": [1, 2.5, None, b"x"]}, AskRef(address, "9"), None, None),
        p.Reply("17", HostedRef(address, None, 4)),
    ]:
        assert surely_picklable(message)
        pickle.dumps(message)


class _Local:
    """A user's class: pickles or not by where it lives; only a trial pickle can tell."""


def test_anything_else_is_left_to_a_trial_pickle() -> None:
    unsure: list[Any] = [
        p.Reply("1", lambda: 1),
        p.Reply("1", _Local()),
        p.WriteMessages((p.RejectedItem((1,), ValueError("x")),), 1),
        p.Reply("1", list(range(33))),
        p.Reply("1", _NoInitField(1)),  # a dataclass `compact` did not take
        p.Envelope(ActorAddressLike(), None),
    ]
    for message in unsure:
        assert not surely_picklable(message)
    nested: Any = 1
    for _ in range(20):
        nested = (nested,)
    assert not surely_picklable(nested)


class ActorAddressLike:
    """Not thespian's ActorAddress: unsure."""


def test_check_picklable_still_raises_for_what_does_not_pickle() -> None:
    from persistent_actors._thespian.common import check_picklable  # noqa: PLC0415
    from persistent_actors.errors import MessageNotSerializableError  # noqa: PLC0415

    with pytest.raises(MessageNotSerializableError):
        check_picklable(p.Reply("1", lambda: 1), "target")
    with pytest.raises(MessageNotSerializableError):
        check_picklable(p.Envelope(("add", 1), None, "1", object.__new__(_Unpicklable)), "t")
    check_picklable(p.Reply("1", ("add", 1)), "target")


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("no")
