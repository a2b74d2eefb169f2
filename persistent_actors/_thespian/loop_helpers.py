"""Faster equivalents of the helpers thespian's TCP transport calls on every turn of its loop.

Thespian 4.0.1's ``TCPTransport._runWithExpiry`` turns its loop about 4.5 times per message a
process receives (a cart process of ``service_async_mp``: about 9 turns per request it
serves), and every turn, before it waits, sorts its pending transmits with the generic
``utilis.partition`` (a ``functools.reduce`` over lambdas building tuples) and maps them to
file descriptors with the generic ``utilis.fmap`` (a ``functools.partial`` per level and three
type checks per element); it enters ``exclusive_processing`` (a ``contextlib`` generator) twice;
and it hashes actor addresses (``IPActorAddress.__hash__`` reads two properties and builds
three tuples) to look up idle sockets and transmit intents. Under cProfile these were about a
sixth of the function calls a cart process made per request.

The replacements compute the same values:

- `partition` for ``list`` (thespian's default) and ``deque`` outputs: one loop, the elements
  in their order; other output types go to thespian's own.
- `fmap` over a ``tuple`` or a ``list`` (exactly those types): the same container of the
  mapped elements, each element through thespian's own ``fmap`` (so an element's own ``fmap``
  method, a dict, a nested container are handled as before).
- `ExclusiveProcessing`: the same flag protocol (spin on ``_exclusively_processing``, release
  with ``_not_processing``), and as thespian's generator, the flag is released only when the
  block ends without an exception.
- ``IPActorAddress.__hash__``: the same number (``hash((socketArgs, connectArgs))``) without
  the property calls.

Only the transport modules' global names are redirected (``TCPTransport.fmap``,
``TCPTransport.partition``, ``TCPTransport.exclusive_processing``,
``asyncTransportBase.partition``, ``asyncTransportBase.exclusive_processing``) and the one
method replaced; ``thespian.system.utilis`` is unchanged. ``tests/test_thespian_patches.py`` pins
the values. Upstream thespian would need the same: plain loops in its loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from thespian.system import utilis
from thespian.system.transport import IPBase
from thespian.system.transport import TCPTransport as _tcp  # noqa: N813 - thespian's module
from thespian.system.transport import asyncTransportBase as _atb  # noqa: N813

__all__ = ["ExclusiveProcessing", "fmap", "loop_helpers", "partition"]

_PATCHED = False
_thespian_fmap = utilis.fmap
_thespian_partition = utilis.partition


def partition(test: Callable[[Any], Any], items: Iterable[Any],
              output_type: Any = list) -> tuple[Any, Any]:
    """``(passing, failing)`` of `items` by `test`, each in input order (as thespian's)."""
    if output_type is not list and output_type is not deque:
        return _thespian_partition(test, items, output_type)  # type: ignore[no-any-return]
    passing: Any = output_type()
    failing: Any = output_type()
    add_passing, add_failing = passing.append, failing.append
    for item in items:
        if test(item):
            add_passing(item)
        else:
            add_failing(item)
    return passing, failing


def fmap(func: Callable[[Any], Any], obj: Any) -> Any:
    """`func` mapped over `obj`'s structure, as thespian's ``utilis.fmap``."""
    kind = type(obj)
    if kind is tuple:
        return tuple([fmap(func, item) for item in obj])
    if kind is list:
        return [fmap(func, item) for item in obj]
    return _thespian_fmap(func, obj)


class ExclusiveProcessing:
    """thespian's ``exclusive_processing(transport)`` as a plain context manager."""

    __slots__ = ("_transport",)

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __enter__(self) -> None:
        transport = self._transport
        if not transport._exclusively_processing():  # noqa: SLF001 - thespian's flag
            _spin(transport)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is None:  # thespian's generator never gets past its yield on an exception
            self._transport._not_processing()  # noqa: SLF001 - thespian's flag


def _spin(transport: Any) -> None:
    """Wait for another thread to release the transport's flag, as thespian does."""
    import time  # noqa: PLC0415 - only when two threads contend

    while not transport._exclusively_processing():  # noqa: SLF001 - thespian's flag
        time.sleep(0.000001)


def _address_hash(self: Any) -> int:
    return hash(((self.af, self.socktype, self.proto), (self.sockname,)))


def loop_helpers() -> None:
    """Patch once per process (idempotent); a no-op on a thespian that differs."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    address = getattr(IPBase, "IPActorAddress", None)
    if getattr(_tcp, "fmap", None) is not _thespian_fmap or \
            getattr(_tcp, "partition", None) is not _thespian_partition or \
            getattr(_atb, "partition", None) is not _thespian_partition or \
            getattr(_tcp, "exclusive_processing", None) is not _atb.exclusive_processing or \
            address is None or "__hash__" not in vars(address):
        return  # another thespian version: leave it alone
    _tcp.fmap = fmap
    _tcp.partition = partition
    _atb.partition = partition
    _tcp.exclusive_processing = ExclusiveProcessing
    _atb.exclusive_processing = ExclusiveProcessing
    address.__hash__ = _address_hash
    _PATCHED = True
