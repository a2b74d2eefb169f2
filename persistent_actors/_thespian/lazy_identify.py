"""Make thespian's per-message debug descriptions cost nothing while nobody logs them.

Thespian 4.0.1 describes every transmit and every received message for a debug line, whether
debug logging is on or not: ``thesplog('actualTransmit of %s', intent.identify(), level=DEBUG)``
(``asyncTransportBase._submitTransmit``), ``thesplog('Attempting intent %s', intent.identify(),
...)`` (``systemCommon._send_intent_to_transport``) and ``thesplog('ACTOR got %s',
envelope.identify(), ...)`` (``actorManager._handleOneMessage``). ``identify()`` builds the
text at once: ``str()`` of the whole message (our dataclasses' reprs, walking every field),
the target address, the intent's remaining time. Profiled over the 20 cart processes of
``service_async_mp`` this was 12 % of their time outside ``select`` (3.7 s of about 30 s,
cumulative, under cProfile).

The patch makes ``identify()`` return a `_Description` that builds the same text only when it
is formatted (``'%s' % d``, ``str(d)``), which thesplog and ``logging`` do only for a line they
emit. ``__str__`` of both classes still returns the same text as before. Upstream thespian
would need the same: pass the intent, not its ``identify()``, to ``thesplog``.
``tests/test_thespian_patches.py`` pins the text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thespian.system import transport as _transport

__all__ = ["lazy_identify"]

_PATCHED = False


class _Description:
    """The text of ``identify()``, built when formatted."""

    __slots__ = ("_build", "_target")

    def __init__(self, build: Callable[[Any], str], target: Any) -> None:
        self._build = build
        self._target = target

    def __str__(self) -> str:
        return self._build(self._target)

    def __repr__(self) -> str:
        return self._build(self._target)


def _lazy(cls: Any) -> None:
    original = cls.identify
    original_str = cls.__str__  # ReceiveEnvelope's returns identify(): now a _Description

    def identify(self: Any) -> _Description:
        return _Description(original, self)

    def __str__(self: Any) -> str:  # noqa: N807 - the class's own method
        return "%s" % (original_str(self),)  # noqa: UP031 - formats a _Description too

    cls.identify = identify
    cls.__str__ = __str__


def lazy_identify() -> None:
    """Patch once per process (idempotent); a no-op on a thespian without these classes."""
    global _PATCHED  # noqa: PLW0603 - a process-wide, once-only patch
    if _PATCHED:
        return
    classes = [getattr(_transport, name, None) for name in ("TransmitIntent", "ReceiveEnvelope")]
    if not all(cls is not None and callable(getattr(cls, "identify", None)) for cls in classes):
        return  # another thespian version: leave it alone
    for cls in classes:
        _lazy(cls)
    _PATCHED = True
