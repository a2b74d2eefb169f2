"""Faster pickling for the runtime's frozen, slotted dataclasses.

On multiproc-tcp every message between processes is pickled once as a trial (at the `tell`)
and once in its frame, and unpickled at the receiver. For a slotted frozen dataclass Python
3.11 pickles through the generated ``__getstate__``/``__setstate__``, which call
``dataclasses.fields`` (a Python loop over every field) on every object both ways: about 4-8 us
per small message in each direction, most of a shared host's pickling. `compact` gives such a
class a ``__reduce__`` that pickles ``(cls, (field values...))``: the receiver rebuilds it by
calling the class with the values, as the sender's own code would.

Not a user-visible format: both ends of every frame are processes of one actor system running
this package, and a pickle written before still loads (the generated ``__setstate__`` stays).
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["compact", "compact_all", "register_fields", "register_leaf", "surely_picklable"]

T = TypeVar("T", bound=type)
# Pickle's own "new object of this class" reconstructor (typeshed does not list it).
_NEWOBJ: Callable[..., Any] = getattr(copyreg, "__newobj__")  # noqa: B009


def _eligible(cls: type) -> bool:
    """True for a dataclass that ``cls(*values)`` rebuilds.

    Its ``__init__`` is the generated one, every field is set by it, positionally, in field
    order, and it defines no pickling of its own.
    """
    if not dataclasses.is_dataclass(cls) or any(
            name in vars(cls) for name in ("__reduce__", "__reduce_ex__", "__getnewargs__")):
        return False
    # dataclasses compiles __init__ from a string; one written by hand has a file.
    code = getattr(vars(cls).get("__init__"), "__code__", None)
    if code is None or code.co_filename != "<string>":
        return False
    fields = dataclasses.fields(cls)
    return all(f.init and not f.kw_only for f in fields) and \
        len(fields) == len(getattr(cls, "__dataclass_fields__", {}))


def compact(cls: T) -> T:
    """Give the dataclass `cls` a ``__reduce__`` that pickles ``(cls, field values)``.

    Rebuilding calls ``cls(*values)``, so ``__post_init__`` runs again (on values it accepted
    once). Raises TypeError for a class that cannot be rebuilt so (see `_eligible`).
    """
    if not _eligible(cls):
        raise TypeError(f"{cls.__qualname__}: not a dataclass that cls(*fields) rebuilds")
    names = tuple(f.name for f in dataclasses.fields(cls))
    reduce: Callable[[Any], tuple[Any, ...]]
    # A subclass (which may take other arguments) pickles as Python would without this.
    if not names:
        empty: tuple[Any, ...] = (cls, ())

        def reduce(self: Any) -> tuple[Any, ...]:
            return empty if type(self) is cls else _default(self)
    elif len(names) == 1:
        get_one = operator.attrgetter(names[0])

        def reduce(self: Any) -> tuple[Any, ...]:
            return (cls, (get_one(self),)) if type(self) is cls else _default(self)
    else:
        get_all = operator.attrgetter(*names)

        def reduce(self: Any) -> tuple[Any, ...]:
            return (cls, get_all(self)) if type(self) is cls else _default(self)
    reduce.__qualname__ = f"{cls.__qualname__}.__reduce__"
    cls.__reduce__ = reduce  # type: ignore[assignment]
    if not names:
        register_fields(cls, lambda _obj: ())
    elif len(names) == 1:
        register_fields(cls, lambda obj: (get_one(obj),))
    else:
        register_fields(cls, get_all)
    return cls


def _default(obj: Any) -> tuple[Any, ...]:
    """What protocol 2+ pickles for `obj` without a ``__reduce__``: new object, then its state."""
    return (_NEWOBJ, (type(obj),), obj.__getstate__())


# -- knowing that a message pickles without a trial pickle -----------------------------------
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
# Exact type -> what it pickles as besides its class (found by reference: a module-level class
# of this package, which pickles by name): the values `surely_picklable` looks into.
_FIELDS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
# Exact type -> a check that one of its objects pickles (thespian's addresses).
_LEAVES: dict[type, Callable[[Any], bool]] = {}
# Containers longer than this are left to a trial pickle (walking them costs more).
_MAX_ITEMS = 32
_MAX_DEPTH = 10


def register_fields(cls: type, values: Callable[[Any], tuple[Any, ...]]) -> None:
    """Declare that an object of exactly `cls` pickles if every one of `values(obj)` does.

    For a class of this package whose pickling is ``(cls, values)`` or the like: its class
    pickles by reference, and nothing but the values travels with it.
    """
    _FIELDS[cls] = values


def register_leaf(cls: type, pickles: Callable[[Any], bool]) -> None:
    """Declare that an object of exactly `cls` pickles when ``pickles(obj)`` is true."""
    _LEAVES[cls] = pickles


def surely_picklable(obj: Any, depth: int = _MAX_DEPTH) -> bool:
    """True if `obj` certainly pickles, known from its types alone; False if unsure.

    Sure are None, bool, int, float, complex, str and bytes; tuples, lists and dicts (up to
    32 items) of sure values; the runtime's messages and refs whose values are sure
    (`register_fields`), thespian's TCP addresses (`register_leaf`). Exact types only: a
    subclass may pickle otherwise. Everything else (a user's own class, a long list) is unsure:
    the caller tries to pickle it.
    """
    t = type(obj)
    if t in _ATOMS:
        return True
    if depth <= 0:
        return False
    depth -= 1
    if t is tuple or t is list:
        if len(obj) > _MAX_ITEMS:
            return False
        for item in obj:
            if type(item) not in _ATOMS and not surely_picklable(item, depth):
                return False
        return True
    if t is dict:
        if len(obj) > _MAX_ITEMS:
            return False
        for key, value in obj.items():
            if type(key) not in _ATOMS and not surely_picklable(key, depth):
                return False
            if type(value) not in _ATOMS and not surely_picklable(value, depth):
                return False
        return True
    values = _FIELDS.get(t)
    if values is not None:
        for item in values(obj):
            if type(item) not in _ATOMS and not surely_picklable(item, depth):
                return False
        return True
    leaf = _LEAVES.get(t)
    return leaf is not None and leaf(obj)


def compact_all(namespace: dict[str, Any]) -> None:
    """`compact` every eligible dataclass defined in the module whose globals are `namespace`."""
    module = namespace["__name__"]
    for value in list(namespace.values()):
        if isinstance(value, type) and value.__module__ == module and _eligible(value):
            compact(value)
